"""tf.data input pipelines that stream images from disk (never the whole set in RAM)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import tensorflow as tf

AUTOTUNE = tf.data.AUTOTUNE
ON_THE_FLY = ("none", "flip", "light")


def decode(path: tf.Tensor, image_size: int) -> tf.Tensor:
    """Read one file and return it as float32 RGB in [0, 255], ``image_size`` square.

    ``decode_image`` takes JPEG (what clean and augment write) as well as PNG, GIF and BMP.
    """
    data = tf.io.read_file(path)
    image = tf.io.decode_image(data, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    image = tf.image.resize(image, (image_size, image_size), antialias=True)
    return tf.cast(image, tf.float32)  # 0..255; the model rescales


def augment(image: tf.Tensor, mode: str, image_size: int) -> tf.Tensor:
    """Random augmentation on one decoded image (train batches only)."""
    if mode == "none":
        return image
    if mode not in ON_THE_FLY:
        raise ValueError(f"unknown on-the-fly augmentation {mode!r}; choose one of {ON_THE_FLY}")
    image = tf.image.random_flip_left_right(image)
    if mode == "light":
        side = tf.cast(tf.random.uniform([], 0.8, 1.0) * image_size, tf.int32)
        image = tf.image.random_crop(image, tf.stack([side, side, 3]))
        image = tf.image.resize(image, (image_size, image_size))
        image = tf.image.random_brightness(image, 0.1 * 255)
        image = tf.image.random_contrast(image, 0.8, 1.2)
        image = tf.clip_by_value(image, 0.0, 255.0)
    return image


def make_dataset(
    paths: Sequence[str | Path],
    labels: list[int],
    num_classes: int,
    image_size: int,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 42,
    shuffle_buffer: int = 2048,
    augment_mode: str = "none",
) -> tf.data.Dataset:
    """Batches of (image float32 [0, 255], one-hot label), decoded in parallel, prefetched.

    Only file paths are held in memory; shuffling happens on paths before decoding, so the
    shuffle buffer costs bytes, not images. Memory is bounded by the parallel decodes plus
    the prefetched batches, whatever the number of files.
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

    def load(p: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        image = augment(decode(p, image_size), augment_mode, image_size)
        return image, tf.one_hot(y, num_classes)

    ds = ds.map(load, num_parallel_calls=AUTOTUNE, deterministic=not shuffle)
    return ds.batch(batch_size).prefetch(AUTOTUNE)


def make_image_dataset(paths: Sequence[str | Path], image_size: int, batch_size: int) -> Any:
    """Batches of images alone, in order (prediction)."""
    ds = tf.data.Dataset.from_tensor_slices([str(p) for p in paths])
    ds = ds.map(lambda p: decode(p, image_size), num_parallel_calls=AUTOTUNE, deterministic=True)
    return ds.batch(batch_size).prefetch(AUTOTUNE)


def items_to_arrays(
    items: list[dict[str, Any]], root: Path, class_names: list[str]
) -> tuple[list[str], list[int]]:
    """Split records (``path`` relative to ``root``, ``class``) into paths and label indices."""
    index = {name: i for i, name in enumerate(class_names)}
    return [str(root / r["path"]) for r in items], [index[r["class"]] for r in items]
