"""The albumentations presets, decoding a source and encoding an output; seeds per image."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from landmarks.augment.options import PRESETS


def build_transform(preset: str, output_size: int) -> Any:
    """The albumentations pipeline of a named preset, producing output_size x output_size."""
    import albumentations as A
    import cv2

    size = (output_size, output_size)
    if preset == "original":
        # The original project's Keras ImageDataGenerator(rotation_range=15, shear_range=0.1,
        # zoom_range=0.2, width/height_shift_range=0.1, horizontal_flip=True,
        # fill_mode="nearest"), applied after resizing, as it did. Keras reads shear_range in
        # degrees (apply_affine_transform: np.deg2rad(shear)), so 0.1 means 0.1 degree, not
        # 0.1 rad; we keep its meaning. Keras draws the x and y zoom independently and its
        # zoom z shrinks the content by 1/z; scale 1/1.2 .. 1/0.8 per axis reproduces that.
        steps = [
            A.Resize(*size),
            A.Affine(
                rotate=(-15, 15),
                shear=(-0.1, 0.1),
                scale=(1 / 1.2, 1 / 0.8),
                keep_ratio=False,
                translate_percent=(-0.1, 0.1),
                border_mode=cv2.BORDER_REPLICATE,  # Keras fill_mode="nearest"
                p=1.0,
            ),
            A.HorizontalFlip(p=0.5),
        ]
    elif preset == "landmark":
        # Stronger and closer to how landmark photos differ: framing (crop, zoom, aspect),
        # viewpoint (perspective, tilt), light and camera (colour, blur, JPEG), occlusion by
        # people and cars (dropout). Mirror images of a landmark are still that landmark.
        steps = [
            A.RandomResizedCrop(size=size, scale=(0.45, 1.0), ratio=(0.75, 1.333), p=1.0),
            A.HorizontalFlip(p=0.5),
            A.Perspective(scale=(0.02, 0.06), p=0.3),
            A.Affine(rotate=(-10, 10), border_mode=cv2.BORDER_REFLECT_101, p=0.4),
            A.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.03, p=0.8),
            A.OneOf([A.GaussianBlur(blur_limit=(3, 5)), A.MotionBlur(blur_limit=5)], p=0.2),
            A.CoarseDropout(
                num_holes_range=(1, 3),
                hole_height_range=(0.05, 0.15),
                hole_width_range=(0.05, 0.15),
                fill="random_uniform",
                p=0.2,
            ),
            A.ImageCompression(quality_range=(50, 95), p=0.3),
            A.ToGray(p=0.05),
        ]
    elif preset == "none":
        steps = [A.Resize(*size)]
    else:
        raise ValueError(f"unknown augmentation preset {preset!r}; choose one of {PRESETS}")
    return A.Compose(steps)


def decode_size(preset: str, output_size: int) -> int:
    """Smallest side worth decoding: the JPEG decoder may downscale (draft) to this.

    ``landmark`` crops down to 45 % of the area (67 % of the side) before resizing, so it
    needs 1.5x the output side to avoid upscaling; the other presets resize the whole image.
    """
    return int(output_size * 1.5) if preset == "landmark" else output_size


def load_source(path: Path, min_side: int) -> np.ndarray:
    """Decode one clean image as RGB uint8, letting libjpeg downscale it to >= ``min_side``."""
    try:
        with Image.open(path) as im:
            im.draft("RGB", (min_side, min_side))
            return np.asarray(im.convert("RGB"))
    except (OSError, UnidentifiedImageError) as exc:
        raise RuntimeError(
            f"cannot read clean image {path}: {exc}; rerun `landmarks clean` to rebuild it"
        ) from exc


def image_seed(seed: int, source: str, copy: int) -> int:
    """The seed of one output image: independent of chunking, order and workers."""
    digest = hashlib.sha256(f"{seed}|{source}|{copy}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def encode_jpeg(pixels: np.ndarray, quality: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()
