"""Open, verify and normalise one image. Narrow exceptions, each with a reason code."""

from __future__ import annotations

import contextlib
import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# We enforce our own pixel limit before decoding; Pillow's own check stays as a backstop.
Image.MAX_IMAGE_PIXELS = None

# Reason codes, stable: they name quarantine folders and appear in reports.
EMPTY = "empty"
NOT_AN_IMAGE = "not_an_image"
TRUNCATED = "truncated"
UNREADABLE = "unreadable"
TOO_SMALL = "too_small"
TOO_LARGE = "too_large"
EXTREME_ASPECT = "extreme_aspect"
BLANK = "blank"
LOW_INFORMATION = "low_information"
REASONS = (
    EMPTY,
    NOT_AN_IMAGE,
    TRUNCATED,
    UNREADABLE,
    TOO_SMALL,
    TOO_LARGE,
    EXTREME_ASPECT,
    BLANK,
    LOW_INFORMATION,
)


class ImageRejected(Exception):
    """An image the pipeline will not use; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class ImageLimits:
    min_side: int = 64
    max_pixels: int = 50_000_000
    max_aspect_ratio: float = 5.0
    min_std: float = 4.0
    # Grey-histogram entropy in bits: photos score 5-7.5; flat icons, silhouettes and
    # logos (found among crawled landmark "photos") score under 3.5.
    min_entropy: float = 3.5


@dataclass(frozen=True)
class NormalizedImage:
    image: Image.Image  # RGB, EXIF orientation applied
    source_format: str
    source_mode: str
    animated: bool
    grey: Image.Image  # ``image`` in grey levels ("L"), made for the checks


def load_normalized(path: Path, limits: ImageLimits) -> NormalizedImage:
    """Decode ``path`` fully and return it as an upright RGB image.

    Raises:
        ImageRejected: the file is empty, not an image, truncated, too small, too large,
            of an extreme aspect ratio or (near) blank.
    """
    path = Path(path)
    if path.stat().st_size == 0:
        raise ImageRejected(EMPTY, "zero-byte file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
    except UnidentifiedImageError as exc:
        raise ImageRejected(NOT_AN_IMAGE, f"no image decoder recognises it ({exc})") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageRejected(UNREADABLE, f"cannot open: {exc}") from exc
    with im:
        width, height = im.size
        if width * height > limits.max_pixels:
            raise ImageRejected(
                TOO_LARGE, f"{width}x{height} = {width * height} px > limit {limits.max_pixels}"
            )
        fmt = im.format or "unknown"
        mode = im.mode
        animated = bool(getattr(im, "is_animated", False))
        try:
            im.seek(0)
            im.load()
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            text = str(exc).lower()
            reason = TRUNCATED if "truncat" in text or isinstance(exc, EOFError) else UNREADABLE
            raise ImageRejected(reason, f"cannot decode: {exc}") from exc
        # in place: no copy of the pixels when there is nothing to turn (to_rgb copies); a
        # broken EXIF block must not cost the pixels
        with contextlib.suppress(OSError, SyntaxError, ValueError, TypeError):
            ImageOps.exif_transpose(im, in_place=True)
        rgb = to_rgb(im)
    grey = check_content(rgb, limits)
    return NormalizedImage(
        image=rgb, source_format=fmt, source_mode=mode, animated=animated, grey=grey
    )


def to_rgb(im: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB; transparency is flattened onto white."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
        return Image.fromarray(scaled.astype(np.uint8), "L").convert("RGB")
    if im.mode == "P":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if im.mode != "RGB":
        return im.convert("RGB")
    return im.copy()


def check_content(rgb: Image.Image, limits: ImageLimits) -> Image.Image:
    """Reject pictures too small, too elongated, blank or of too little information; returns
    the picture in grey levels ("L"), which the checks need."""
    width, height = rgb.size
    if min(width, height) < limits.min_side:
        raise ImageRejected(TOO_SMALL, f"{width}x{height}, shorter side < {limits.min_side}")
    aspect = max(width, height) / max(1, min(width, height))
    if aspect > limits.max_aspect_ratio:
        raise ImageRejected(
            EXTREME_ASPECT, f"aspect ratio {aspect:.1f} > {limits.max_aspect_ratio}"
        )
    grey = rgb if rgb.mode == "L" else rgb.convert("L")
    std = float(np.asarray(grey.reduce(max(1, min(width, height) // 64)), dtype=np.float32).std())
    if std < limits.min_std:
        raise ImageRejected(BLANK, f"grey-level std {std:.2f} < {limits.min_std}")
    entropy = grey_entropy(grey)
    if entropy < limits.min_entropy:
        raise ImageRejected(
            LOW_INFORMATION, f"grey-histogram entropy {entropy:.2f} bits < {limits.min_entropy}"
        )
    return grey


def grey_entropy(im: Image.Image, side: int = 128) -> float:
    """Shannon entropy (bits) of the grey-level histogram of a small copy."""
    grey = im.convert("L") if im.mode != "L" else im.copy()  # thumbnail works in place
    grey.thumbnail((side, side))
    counts = np.bincount(np.asarray(grey).ravel(), minlength=256).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def fit_within(im: Image.Image, max_side: int) -> Image.Image:
    """Downscale so the long side is at most ``max_side``; never upscale."""
    width, height = im.size
    scale = max_side / max(width, height)
    if scale >= 1:
        return im
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return im.resize(size, Image.Resampling.LANCZOS)


def encode_jpeg(im: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality, optimize=True)
    return buf.getvalue()


def pixel_hash(im: Image.Image) -> str:
    """Hash of decoded RGB pixels and size: a re-saved identical image gets the same hash."""
    digest = hashlib.sha256(f"{im.size[0]}x{im.size[1]}".encode())
    digest.update((im if im.mode == "RGB" else im.convert("RGB")).tobytes())  # rows of RGB bytes
    return digest.hexdigest()
