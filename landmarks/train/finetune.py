"""Training steps for a pretrained backbone, shaped for a CPU.

The bottom of the backbone stays frozen, so its output for a given image never changes: it is
computed once per train and val image (and for its mirror image when on-the-fly augmentation
is on), kept in the run folder (``features.npz``; a resumed run reuses it), and every epoch
after that runs only the top blocks and the head: seconds instead of minutes per epoch on two
cores. Phase 1 fits the head alone on the pooled features; phase 2 unfreezes the top MBConv
blocks (BatchNorm stays frozen and in inference mode, keeping the ImageNet statistics that
small batches would spoil) and fine-tunes them at a lower rate in the ordinary epoch loop of
:mod:`landmarks.train.loop`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

FEATURES_FILE = "features.npz"


def backbone_of(model: Any) -> Any | None:
    """The pretrained backbone nested in ``model`` (None for models without one)."""
    from landmarks.train.efficientnet_lite import BACKBONE

    for layer in model.layers:
        if layer.name == BACKBONE:
            return layer
    return None


def head_model(model: Any, backbone: Any) -> Any:
    """A model from pooled features to the class probabilities, sharing ``model``'s head
    layers (training it trains them)."""
    import keras

    inputs = keras.Input(shape=backbone.output.shape[1:])
    return keras.Model(inputs, _head_on(model, backbone, inputs), name="head_on_features")


def _head_on(model: Any, backbone: Any, x: Any) -> Any:
    """Apply ``model``'s layers after ``backbone`` (its head) to ``x``."""
    after = False
    for layer in model.layers:
        if after:
            x = layer(x)
        after = after or layer is backbone
    return x


def _block_input(backbone: Any, block: int) -> Any:
    """The tensor that enters MBConv block ``block`` (its first conv's input)."""
    for suffix in ("expand_conv", "depthwise_conv"):
        name = f"blocks.{block}.{suffix}"
        if any(layer.name == name for layer in backbone.layers):
            return backbone.get_layer(name).input
    raise ValueError(f"the backbone has no block {block}")


def split_for_fine_tuning(model: Any, backbone: Any, blocks: int) -> tuple[Any, Any, Any]:
    """(bottom, to_pooled, top): ``bottom`` maps images to what the frozen part outputs,
    ``to_pooled`` maps that to the pooled features (None when nothing is fine-tuned: the
    bottom's output is already pooled), ``top`` maps it to class probabilities. All share
    ``model``'s layers, so training ``top`` trains ``model``."""
    import keras

    from landmarks.train.efficientnet_lite import NUM_BLOCKS

    if blocks <= 0:
        return backbone, None, head_model(model, backbone)
    cut = _block_input(backbone, NUM_BLOCKS - min(blocks, NUM_BLOCKS))
    bottom = keras.Model(backbone.input, cut, name="frozen_bottom")
    to_pooled = keras.Model(cut, backbone.output, name="top_blocks")
    inputs = keras.Input(shape=cut.shape[1:])
    x = _head_on(model, backbone, to_pooled(inputs, training=False))
    return bottom, to_pooled, keras.Model(inputs, x, name="top_and_head")


def cached_features(
    bottom: Any,
    splits: dict[str, Sequence[str]],
    image_size: int,
    batch_size: int,
    run_dir: Path,
    mirrored: Sequence[str] = (),
) -> dict[str, np.ndarray]:
    """``bottom``'s output per split, computed once and kept in ``features.npz``. Splits named
    in ``mirrored`` are also computed on left-right mirrored images (as ``<split>_flip``)."""
    import tensorflow as tf

    from landmarks.storage import atomic_path
    from landmarks.train.data import decode

    wanted = {**splits, **{f"{name}_flip": splits[name] for name in mirrored}}
    shape = tuple(bottom.output.shape[1:])
    path = run_dir / FEATURES_FILE
    if path.exists():
        with np.load(path) as cached:
            if all(
                name in cached
                and len(cached[name]) == len(paths)
                and tuple(cached[name].shape[1:]) == shape
                for name, paths in wanted.items()
            ):
                log.info("reusing cached backbone features %s", path)
                return {name: cached[name] for name in wanted}
    out: dict[str, np.ndarray] = {}
    for name, paths in wanted.items():
        if not paths:
            out[name] = np.zeros((0, *shape), np.float32)
            continue
        flip = name.endswith("_flip")
        log.info("frozen backbone features of %d %s images", len(paths), name)

        def load(p: tf.Tensor, flip: bool = flip) -> tf.Tensor:
            image = decode(p, image_size)
            return tf.image.flip_left_right(image) if flip else image

        dataset = (
            tf.data.Dataset.from_tensor_slices([str(p) for p in paths])
            .map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .batch(batch_size)
            .prefetch(tf.data.AUTOTUNE)
        )
        out[name] = bottom.predict(dataset, verbose=0).astype(np.float32)
    with atomic_path(path) as tmp, tmp.open("wb") as fh:
        np.savez(fh, **out)  # type: ignore[arg-type]
    return out


def pooled(to_pooled: Any, rows: np.ndarray, batch_size: int) -> np.ndarray:
    """Pooled features from cached bottom outputs (the rows themselves without top blocks)."""
    if to_pooled is None or not len(rows):
        return rows if to_pooled is None else np.zeros((0, to_pooled.output.shape[-1]))
    return to_pooled.predict(rows, batch_size=batch_size * 4, verbose=0)


def feature_dataset(
    rows: np.ndarray,
    labels: Sequence[int],
    num_classes: int,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 42,
) -> Any:
    """Batches of (cached features, one-hot label) for the epoch loop."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices(
        (rows, tf.one_hot(tf.constant(list(labels), tf.int32), num_classes))
    )
    if shuffle:
        ds = ds.shuffle(max(1, len(rows)), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def fit_head(
    model: Any,
    backbone: Any,
    features: dict[str, np.ndarray],
    labels: dict[str, list[int]],
    num_classes: int,
    epochs: int,
    learning_rate: float,
    batch_size: int,
    class_weight: dict[int, float] | None,
    patience: int,
    seed: int,
) -> dict[str, float]:
    """Fit the head of ``model`` on cached features; returns the last (best) epoch's logs."""
    import keras

    head = head_model(model, backbone)
    head.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
    )
    y_train = keras.utils.to_categorical(labels["train"], num_classes)
    has_val = len(features["val"]) > 0
    validation = (
        (features["val"], keras.utils.to_categorical(labels["val"], num_classes))
        if has_val
        else None
    )
    callbacks = []
    if patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss" if has_val else "loss",
                patience=patience,
                restore_best_weights=True,
            )
        )
    keras.utils.set_random_seed(seed)
    history = head.fit(
        features["train"],
        y_train,
        validation_data=validation,
        epochs=epochs,
        batch_size=batch_size,
        class_weight=class_weight,
        callbacks=callbacks,
        shuffle=True,
        verbose=0,
    )
    logs = {k: float(v[-1]) for k, v in history.history.items()}
    log.info("head on cached features: %d epochs, %s", len(history.history["loss"]), logs)
    return logs


def unfreeze_top(backbone: Any, blocks: int) -> int:
    """Make the last ``blocks`` MBConv blocks and the head conv trainable, BatchNorm excepted;
    returns the number of trainable backbone layers."""
    from keras import layers

    from landmarks.train.efficientnet_lite import NUM_BLOCKS, block_of

    if blocks <= 0:
        backbone.trainable = False
        return 0
    backbone.trainable = True
    first = NUM_BLOCKS - min(blocks, NUM_BLOCKS)
    trainable = 0
    for layer in backbone.layers:
        block = block_of(layer.name)
        top = (block is not None and block >= first) or layer.name == "conv_head"
        layer.trainable = top and not isinstance(layer, layers.BatchNormalization)
        trainable += bool(layer.trainable and layer.weights)
    return trainable
