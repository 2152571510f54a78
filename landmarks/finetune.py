"""Training steps for a pretrained backbone: the head on cached features, then the top blocks.

Phase 1 computes the frozen backbone's pooled features of every train and val image once (kept
in the run folder, so a resumed run does not pay again) and fits the small head on them: on a
CPU this is seconds instead of an epoch-long forward pass per head epoch. Phase 2 unfreezes
the top MBConv blocks (BatchNorm stays frozen and in inference mode) and fine-tunes them with
a lower learning rate through the ordinary epoch loop of :mod:`landmarks.train`.
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
    from landmarks.efficientnet_lite import BACKBONE

    for layer in model.layers:
        if layer.name == BACKBONE:
            return layer
    return None


def head_model(model: Any, backbone: Any) -> Any:
    """A model from pooled features to the class probabilities, sharing ``model``'s head
    layers (training it trains them)."""
    import keras

    inputs = keras.Input(shape=backbone.output.shape[1:])
    x = inputs
    after = False
    for layer in model.layers:
        if after:
            x = layer(x)
        after = after or layer is backbone
    return keras.Model(inputs, x, name="head_on_features")


def cached_features(
    backbone: Any,
    splits: dict[str, Sequence[str]],
    image_size: int,
    batch_size: int,
    run_dir: Path,
) -> dict[str, np.ndarray]:
    """Pooled backbone features per split, computed once and kept in ``features.npz``."""
    from landmarks.data import make_image_dataset
    from landmarks.storage import atomic_path

    path = run_dir / FEATURES_FILE
    if path.exists():
        with np.load(path) as cached:
            if all(
                name in cached and len(cached[name]) == len(paths) for name, paths in splits.items()
            ):
                log.info("reusing cached backbone features %s", path)
                return {name: cached[name] for name in splits}
    out: dict[str, np.ndarray] = {}
    for name, paths in splits.items():
        if not paths:
            out[name] = np.zeros((0, backbone.output.shape[-1]), np.float32)
            continue
        log.info("backbone features of %d %s images", len(paths), name)
        dataset = make_image_dataset(list(paths), image_size, batch_size)
        out[name] = backbone.predict(dataset, verbose=0).astype(np.float32)
    with atomic_path(path) as tmp, tmp.open("wb") as fh:
        np.savez(fh, **out)
    return out


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

    from landmarks.efficientnet_lite import NUM_BLOCKS, block_of

    if blocks <= 0:
        backbone.trainable = False
        return 0
    backbone.trainable = True
    first = NUM_BLOCKS - min(blocks, NUM_BLOCKS)
    trainable = 0
    for layer in backbone.layers:
        block = block_of(layer.name)
        top = (block is not None and block >= first) or layer.name in ("_conv_head",)
        layer.trainable = top and not isinstance(layer, layers.BatchNormalization)
        trainable += bool(layer.trainable and layer.weights)
    return trainable
