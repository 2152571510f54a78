"""tf.data input pipelines that stream images from disk (never the whole set in RAM)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tensorflow as tf

AUTOTUNE = tf.data.AUTOTUNE


def _decode(path: tf.Tensor, image_size: int) -> tf.Tensor:
    data = tf.io.read_file(path)
    image = tf.io.decode_jpeg(data, channels=3, try_recover_truncated=False)
    image = tf.image.resize(image, (image_size, image_size), antialias=True)
    return tf.cast(image, tf.float32)  # 0..255; the model rescales


def make_dataset(
    paths: list[str | Path],
    labels: list[int],
    num_classes: int,
    image_size: int,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 42,
    shuffle_buffer: int = 2048,
) -> tf.data.Dataset:
    """Batches of (image float32 [0, 255], one-hot label), decoded in parallel, prefetched.

    Only file paths are held in memory; shuffling happens on paths before decoding, so the
    shuffle buffer costs bytes, not images.
    """
    if len(paths) != len(labels):
        raise ValueError("paths and labels differ in length")
    ds = tf.data.Dataset.from_tensor_slices(
        ([str(p) for p in paths], tf.constant(labels, dtype=tf.int32))
    )
    if shuffle:
        ds = ds.shuffle(
            min(shuffle_buffer, max(1, len(paths))), seed=seed, reshuffle_each_iteration=True
        )
    ds = ds.map(
        lambda p, y: (_decode(p, image_size), tf.one_hot(y, num_classes)),
        num_parallel_calls=AUTOTUNE,
        deterministic=not shuffle,
    )
    return ds.batch(batch_size).prefetch(AUTOTUNE)


def items_to_arrays(
    items: list[dict[str, Any]], root: Path, class_names: list[str]
) -> tuple[list[str], list[int]]:
    """Split records (``path`` relative to ``root``, ``class``) into paths and label indices."""
    index = {name: i for i, name in enumerate(class_names)}
    return [str(root / r["path"]) for r in items], [index[r["class"]] for r in items]
