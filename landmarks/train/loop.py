"""Train stage: fit a model on the train split (clean + augmented), streaming from disk.

A run lives in its own folder. Keras' BackupAndRestore saves the state every epoch, so a
retried or re-run training with the same folder resumes from the last finished epoch.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from landmarks.manifest import fault_point
from landmarks.plots import pyplot, save_figure
from landmarks.storage import atomic_path, atomic_write_json
from landmarks.train.finetune import (
    backbone_of,
    cached_features,
    feature_dataset,
    pooled,
    split_for_fine_tuning,
    unfreeze_top,
)
from landmarks.train.finetune import fit_head as finetune_head

log = logging.getLogger(__name__)

EpochCallback = Callable[[int, int, dict[str, float]], None]
CLASSES_FILE = "classes.json"


@dataclass(frozen=True)
class TrainOptions:
    image_size: int | None = None  # None: the model's own input size
    batch_size: int = 32
    epochs: int = 20
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    early_stopping_patience: int = 5
    shuffle_buffer: int = 2048
    augment_on_the_fly: str = "none"  # "none" | "flip" | "light", see landmarks.train.data.augment
    class_weighting: bool = True
    mixed_precision: str = "auto"  # "auto" (on when a GPU is visible) | "on" | "off"
    time_limit_s: float = 0.0  # stop before an epoch would end past this budget; 0 = none
    lr_plateau_patience: int = 0  # epochs without improvement before the LR is cut; 0 = never
    lr_plateau_factor: float = 0.3
    # Pretrained backbones (efficientnet_lite0): the head first on cached frozen features,
    # then the top blocks at a lower rate in the epoch loop (``epochs``).
    head_epochs: int = 40
    head_learning_rate: float = 1e-3
    fine_tune_blocks: int = 4
    fine_tune_learning_rate: float = 1e-4
    seed: int = 42


@dataclass(frozen=True)
class TrainResult:
    model_path: Path
    history_path: Path
    curves_path: Path
    epochs_run: int
    resumed_from_epoch: int
    best_val_loss: float | None
    train_seconds: float = 0.0
    classes_path: Path | None = None


def class_weights(labels: list[int], num_classes: int) -> dict[int, float]:
    """'Balanced' weights: n_samples / (n_classes * count); absent classes get 1."""
    counts = [0] * num_classes
    for y in labels:
        counts[y] += 1
    total = len(labels)
    return {c: (total / (num_classes * n) if n else 1.0) for c, n in enumerate(counts)}


def _read_history(path: Path) -> list[dict[str, float]]:
    """Rows of history.csv, one per epoch (a resumed run may log an epoch twice; last wins)."""
    if not path.exists():
        return []
    with path.open(newline="") as fh:
        rows = {}
        for row in csv.DictReader(fh):
            if row.get("epoch") in (None, "", "epoch"):
                continue
            # CSVLogger writes "NA" for a metric missing in an epoch (e.g. no validation).
            rows[int(float(row["epoch"]))] = {
                k: float(v) for k, v in row.items() if v not in ("", "NA", None)
            }
    return [rows[e] for e in sorted(rows)]


def completed_epochs(run_dir: Path) -> int:
    """Epochs finished according to the per-epoch backup (0 when there is none)."""
    meta = run_dir / "backup" / "training_metadata.json"
    if not meta.exists():
        return 0
    return int(json.loads(meta.read_text()).get("epoch", 0))


def _time_limit_callback(limit_s: float) -> Any:
    """Stops training when the next epoch would likely end past ``limit_s`` seconds."""
    import keras

    class TimeLimit(keras.callbacks.Callback):
        def on_train_begin(self, logs: dict | None = None) -> None:
            self.start = time.monotonic()
            self.epochs_done = 0

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            self.epochs_done += 1
            elapsed = time.monotonic() - self.start
            if elapsed + elapsed / self.epochs_done > limit_s:
                log.info("time limit %.0f s: stopping after %.0f s", limit_s, elapsed)
                self.model.stop_training = True

    return TimeLimit()


def _use_mixed_precision(mode: str) -> bool:
    import tensorflow as tf

    if mode == "on":
        return True
    if mode == "off":
        return False
    if mode != "auto":
        raise ValueError(f"mixed_precision is auto, on or off, not {mode!r}")
    return bool(tf.config.list_physical_devices("GPU"))


def write_classes(run_dir: Path, class_names: list[str]) -> Path:
    """The label order of a model, beside it: predict and evaluate read it back."""
    path = run_dir / CLASSES_FILE
    atomic_write_json(path, {"class_names": list(class_names)})
    return path


def history_figure(history_path: Path) -> Any:
    """Loss and accuracy per epoch (train and validation), whole epochs on the x axis."""
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    rows = _read_history(history_path)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    epochs = [int(r["epoch"]) + 1 for r in rows]
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        for prefix, style in (("", "-o"), ("val_", "--o")):
            key = prefix + metric
            if rows and key in rows[0]:
                ax.plot(epochs, [r[key] for r in rows], style, label=key)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    return fig


def plot_history(history_path: Path, out_path: Path) -> Path:
    return save_figure(history_figure(history_path), out_path, dpi=100)


def _pretrained_phase(
    model: Any,
    backbone: Any,
    train_items: tuple[list[str], list[int]],
    val_items: tuple[list[str], list[int]],
    num_classes: int,
    image_size: int,
    run_dir: Path,
    options: TrainOptions,
    weights: dict[int, float] | None,
    fit_head: bool,
) -> tuple[Any, Any, Any, float]:
    """Cache the frozen bottom's output, fit the head on it (unless resuming), unfreeze the
    top blocks. Returns what the epoch loop fits (the top of ``model``, sharing its layers),
    its train and val datasets of cached features, and its learning rate."""
    bottom, to_pooled, top = split_for_fine_tuning(model, backbone, options.fine_tune_blocks)
    mirrored = ("train",) if options.augment_on_the_fly != "none" else ()
    cached = cached_features(
        bottom,
        {"train": train_items[0], "val": val_items[0]},
        image_size,
        options.batch_size,
        run_dir,
        mirrored=mirrored,
    )
    train_rows, train_labels = cached["train"], list(train_items[1])
    if mirrored:  # each mirror image is one more train row
        train_rows = np.concatenate([train_rows, cached["train_flip"]])
        train_labels = train_labels * 2
    if fit_head and options.head_epochs:
        logs = finetune_head(
            model,
            backbone,
            {
                "train": pooled(to_pooled, train_rows, options.batch_size),
                "val": pooled(to_pooled, cached["val"], options.batch_size),
            },
            {"train": train_labels, "val": val_items[1]},
            num_classes,
            epochs=options.head_epochs,
            learning_rate=options.head_learning_rate,
            batch_size=options.batch_size,
            class_weight=weights,
            patience=options.early_stopping_patience,
            seed=options.seed,
        )
        atomic_write_json(run_dir / "head_phase.json", logs)
    trainable = unfreeze_top(backbone, options.fine_tune_blocks)
    log.info("fine-tuning %d backbone layers (top %d blocks)", trainable, options.fine_tune_blocks)
    train_ds = feature_dataset(
        train_rows, train_labels, num_classes, options.batch_size, True, options.seed
    )
    val_ds = (
        feature_dataset(cached["val"], val_items[1], num_classes, options.batch_size)
        if val_items[0]
        else None
    )
    rate = (
        options.fine_tune_learning_rate if options.fine_tune_blocks else options.head_learning_rate
    )
    return top, train_ds, val_ds, rate


def train_model(
    model_builder: Callable[[int], Any],
    train_items: tuple[list[str], list[int]],
    val_items: tuple[list[str], list[int]],
    num_classes: int,
    run_dir: Path,
    options: TrainOptions,
    on_epoch: EpochCallback | None = None,
    class_names: list[str] | None = None,
) -> TrainResult:
    """Fit ``model_builder(num_classes)`` and save ``model.keras`` in ``run_dir``.

    A run folder that holds a per-epoch backup resumes after its last finished epoch; asking
    for more epochs than were run continues the same training.

    Args:
        train_items, val_items: (image paths, label indices).
        on_epoch: called after each epoch with (epoch, epochs, logs).
        class_names: written to ``classes.json`` beside the model (label order).
    """
    import keras

    from landmarks.train.data import make_dataset

    run_dir.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(options.seed)
    train_paths, train_labels = train_items
    val_paths, val_labels = val_items
    if not train_paths:
        raise ValueError("the train split is empty: nothing to train on")
    previous_policy = keras.mixed_precision.global_policy().name
    if _use_mixed_precision(options.mixed_precision):
        # float16 compute, float32 variables; the softmax layer stays float32 (see models).
        keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = model_builder(num_classes)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
    image_size = options.image_size or int(model.input_shape[1])
    train_ds = make_dataset(
        train_paths,
        train_labels,
        num_classes,
        image_size,
        options.batch_size,
        shuffle=True,
        seed=options.seed,
        shuffle_buffer=options.shuffle_buffer,
        augment_mode=options.augment_on_the_fly,
    )
    val_ds = (
        make_dataset(val_paths, val_labels, num_classes, image_size, options.batch_size)
        if val_paths
        else None
    )
    optimizers = {"adam": keras.optimizers.Adam, "rmsprop": keras.optimizers.RMSprop}
    if options.optimizer not in optimizers:
        raise ValueError(f"unknown optimizer {options.optimizer!r}; choose adam or rmsprop")
    history_path = run_dir / "history.csv"
    previous_epochs = completed_epochs(run_dir)
    weights = class_weights(train_labels, num_classes) if options.class_weighting else None
    started = time.monotonic()
    learning_rate = options.learning_rate
    fit_model = model  # a pretrained model fits its top on cached features instead
    backbone = backbone_of(model)
    if backbone is not None:
        fit_model, train_ds, val_ds, learning_rate = _pretrained_phase(
            model,
            backbone,
            train_items,
            val_items,
            num_classes,
            image_size,
            run_dir,
            options,
            weights,
            fit_head=not previous_epochs,
        )
    fit_model.compile(
        optimizer=optimizers[options.optimizer](learning_rate=learning_rate),
        loss="categorical_crossentropy",
        metrics=[
            "accuracy",
            keras.metrics.TopKCategoricalAccuracy(k=min(3, num_classes), name="top3"),
        ],
    )
    monitor = "val_loss" if val_ds is not None else "loss"
    # The history row is written before the backup, so a backed-up epoch is always logged.
    callbacks: list[keras.callbacks.Callback] = [
        keras.callbacks.CSVLogger(str(history_path), append=True),
        keras.callbacks.BackupAndRestore(str(run_dir / "backup"), delete_checkpoint=False),
        keras.callbacks.ModelCheckpoint(
            str(run_dir / "best.keras"), monitor=monitor, save_best_only=True
        ),
        keras.callbacks.TensorBoard(str(run_dir / "tensorboard"), write_graph=False),
    ]
    if options.early_stopping_patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=monitor,
                patience=options.early_stopping_patience,
                restore_best_weights=True,
            )
        )
    if options.lr_plateau_patience:
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor=monitor,
                factor=options.lr_plateau_factor,
                patience=options.lr_plateau_patience,
                min_lr=learning_rate * 1e-3,
            )
        )
    if options.time_limit_s:
        spent = time.monotonic() - started
        callbacks.append(_time_limit_callback(max(1.0, options.time_limit_s - spent)))
    if on_epoch is not None:
        callbacks.append(
            keras.callbacks.LambdaCallback(
                on_epoch_end=lambda epoch, logs: on_epoch(
                    epoch + 1, options.epochs, {k: float(v) for k, v in (logs or {}).items()}
                )
            )
        )
    if previous_epochs:
        log.info("resuming training in %s after epoch %d", run_dir, previous_epochs)
    fit_model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=options.epochs,
        class_weight=weights,
        callbacks=callbacks,
        shuffle=False,  # the tf.data pipeline shuffles itself; Keras warns otherwise
        verbose=2,
    )
    train_seconds = time.monotonic() - started
    model_path = run_dir / "model.keras"
    with atomic_path(model_path) as tmp:
        # Keras insists on the .keras suffix; save beside the temp name, then rename.
        keras_tmp = tmp.with_suffix(".keras")
        model.save(keras_tmp)
        keras_tmp.replace(tmp)
    fault_point("train", "model-saved")  # model.keras in place, no metrics yet
    classes_path = write_classes(run_dir, class_names) if class_names else None
    rows = _read_history(history_path)
    curves = plot_history(history_path, run_dir / "training_curves.png")
    best = min((r[monitor] for r in rows if monitor in r), default=None)
    return TrainResult(
        model_path=model_path,
        history_path=history_path,
        curves_path=curves,
        epochs_run=len(rows),
        resumed_from_epoch=previous_epochs,
        best_val_loss=best,
        train_seconds=train_seconds,
        classes_path=classes_path,
    )


def train_run(
    split_manifest: Path,
    clean_dir: Path,
    augmented_dir: Path | None,
    run_dir: Path,
    spec: Any,
    options: TrainOptions,
    on_epoch: EpochCallback | None = None,
) -> TrainResult:
    """Train ``spec`` (a :class:`landmarks.train.models.ModelSpec`) on a split manifest's train part
    plus the augmented chunks, validating on its val part."""
    from landmarks.train.dataset import load_dataset
    from landmarks.train.models import make_model

    view = load_dataset(split_manifest, clean_dir, augmented_dir)
    log.info(
        "training on %d images (%d augmented), validating on %d, %d classes",
        len(view.train),
        view.num_augmented,
        len(view.val),
        len(view.class_names),
    )
    return train_model(
        lambda n: make_model(spec, n),
        (view.train.paths, view.train.labels),
        (view.val.paths, view.val.labels),
        len(view.class_names),
        run_dir,
        options,
        on_epoch=on_epoch,
        class_names=view.class_names,
    )
