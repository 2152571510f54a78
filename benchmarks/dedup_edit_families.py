"""Edit families for the near-duplicate benchmark: the edits other sites make to a photo.

Every edit draws its own parameters at random (seeded per photo), so the benchmark measures a
spread of settings and not one fixed crop or angle.
"""

from __future__ import annotations

import io
import math
import random

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

FAMILIES = ("crop", "square", "rotate", "dihedral", "overlay", "colour", "lowjpeg", "chain")
TRAINING_SIDES = (160, 224, 256, 299, 384)


def crop(im: Image.Image, rng: random.Random) -> tuple[Image.Image, str]:
    """Keep 40-95% of each side, anywhere in the frame."""
    w, h = im.size
    fw, fh = rng.uniform(0.4, 0.95), rng.uniform(0.4, 0.95)
    cw, ch = max(8, round(w * fw)), max(8, round(h * fh))
    left, top = rng.randint(0, w - cw), rng.randint(0, h - ch)
    return im.crop((left, top, left + cw, top + ch)), f"crop {fw:.2f}x{fh:.2f}"


def square(im: Image.Image, rng: random.Random) -> tuple[Image.Image, str]:
    """A centre square (the short side, or 60-100% of it), resized to a training size."""
    w, h = im.size
    side = round(min(w, h) * rng.choice([1.0, rng.uniform(0.6, 1.0)]))
    left, top = (w - side) // 2, (h - side) // 2
    size = rng.choice(TRAINING_SIDES)
    out = im.crop((left, top, left + side, top + side)).resize(
        (size, size), Image.Resampling.BICUBIC
    )
    return out, f"square {side}->{size}"


def _inscribed(w: int, h: int, angle: float) -> tuple[int, int]:
    """The largest axis-aligned rectangle inside a w x h picture turned by ``angle``."""
    a = math.radians(abs(angle))
    sin, cos = math.sin(a), math.cos(a)
    long_side, short_side = max(w, h), min(w, h)
    if short_side <= 2 * sin * cos * long_side or abs(sin - cos) < 1e-10:
        x = 0.5 * short_side
        wr, hr = (x / sin, x / cos) if w >= h else (x / cos, x / sin)
    else:
        cos2 = cos * cos - sin * sin
        wr, hr = (w * cos - h * sin) / cos2, (h * cos - w * sin) / cos2
    return int(wr), int(hr)


def rotate(im: Image.Image, rng: random.Random) -> tuple[Image.Image, str]:
    """Turn by 1-25 degrees either way; black corners kept, or cropped away."""
    angle = rng.uniform(1, 25) * rng.choice([-1, 1])
    out = im.rotate(angle, Image.Resampling.BICUBIC, expand=True)
    if rng.random() < 0.5:
        return out, f"rotate {angle:.0f} black corners"
    cw, ch = _inscribed(*im.size, angle)
    ow, oh = out.size
    left, top = (ow - cw) // 2, (oh - ch) // 2
    return out.crop((left, top, left + cw, top + ch)), f"rotate {angle:.0f} cropped"


def dihedral(im: Image.Image, rng: random.Random) -> tuple[Image.Image, str]:
    """A mirror and/or a turn by 90, 180 or 270 degrees (not the identity)."""
    v = rng.randint(1, 7)
    out = ImageOps.mirror(im) if v >= 4 else im
    return out.rotate(90 * (v % 4), expand=True), f"dihedral {v}"


def overlay(im: Image.Image, rng: random.Random) -> tuple[Image.Image, str]:
    """A text band across the top or bottom, or a logo, covering 5-20% of the area."""
    out = im.copy()
    w, h = out.size
    draw = ImageDraw.Draw(out)
    share = rng.uniform(0.05, 0.2)
    colour = tuple(rng.randint(0, 255) for _ in range(3))
    text_colour = (255, 255, 255) if sum(colour) < 384 else (0, 0, 0)
    if rng.random() < 0.5:
        bh = max(4, round(h * share))
        top = h - bh if rng.random() < 0.7 else 0
        draw.rectangle((0, top, w, top + bh), fill=colour)
        draw.text(
            (w * 0.03, top + bh * 0.15),
            "© www.travel-photos.example  #landmark",
            fill=text_colour,
            font_size=max(8, int(bh * 0.6)),
        )
        return out, f"band {share:.2f}"
    aspect = rng.uniform(1.0, 3.0)
    lh = max(4, round(math.sqrt(w * h * share / aspect)))
    lw = min(w, round(lh * aspect))
    left, top = rng.randint(0, w - lw), rng.randint(0, max(0, h - lh))
    if rng.random() < 0.5:
        draw.rounded_rectangle((left, top, left + lw, top + lh), radius=lh // 4, fill=colour)
    else:
        draw.ellipse((left, top, left + lw, top + lh), fill=colour)
    draw.text(
        (left + lw * 0.1, top + lh * 0.25), "LOGO", fill=text_colour, font_size=max(8, lh // 2)
    )
    return out, f"logo {share:.2f}"


def colour(im: Image.Image, rng: random.Random) -> tuple[Image.Image, str]:
    """Grey, or a hue shift (with a saturation and contrast change)."""
    if rng.random() < 0.4:
        return ImageOps.grayscale(im).convert("RGB"), "grey"
    shift = rng.randint(20, 160)
    hsv = np.array(im.convert("HSV"))
    hsv[..., 0] = (hsv[..., 0].astype(np.int32) + shift) % 256
    out = Image.fromarray(hsv, "HSV").convert("RGB")
    out = ImageEnhance.Color(out).enhance(rng.uniform(0.7, 1.5))
    out = ImageEnhance.Contrast(out).enhance(rng.uniform(0.8, 1.2))
    return out, f"hue +{shift}"


def lowjpeg(im: Image.Image, rng: random.Random) -> tuple[Image.Image, str]:
    """Downscale to 20-60% and re-encode at JPEG quality 8-30."""
    f = rng.uniform(0.2, 0.6)
    w, h = im.size
    small = im.resize((max(16, round(w * f)), max(16, round(h * f))), Image.Resampling.BILINEAR)
    q = rng.randint(8, 30)
    buf = io.BytesIO()
    small.save(buf, "JPEG", quality=q)
    buf.seek(0)
    return Image.open(buf).convert("RGB"), f"jpeg q{q} x{f:.2f}"


EDITS = {
    "crop": crop,
    "square": square,
    "rotate": rotate,
    "dihedral": dihedral,
    "overlay": overlay,
    "colour": colour,
    "lowjpeg": lowjpeg,
}


def chain(im: Image.Image, rng: random.Random) -> tuple[Image.Image, str]:
    """Two or three different edits in a row."""
    names = rng.sample(sorted(EDITS), rng.choice([2, 3]))
    notes = []
    for name in names:
        im, note = EDITS[name](im, rng)
        notes.append(note)
    return im, " + ".join(notes)


def apply(family: str, im: Image.Image, rng: random.Random) -> tuple[Image.Image, str]:
    return chain(im, rng) if family == "chain" else EDITS[family](im, rng)
