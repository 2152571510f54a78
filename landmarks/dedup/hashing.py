"""Fast perceptual hashes: imagehash's pHash, for the 8 dihedral variants and centre crops.

The hash is imagehash's ``phash`` (32x32 grey, 2-D DCT-II, the low 8x8 block compared with its
median), computed faster:

* a JPEG is decoded at the size the hash needs (``Image.draft``: libjpeg scales in the DCT
  domain, 1/2..1/8), other formats are shrunk with ``Image.reduce`` before the resize;
* the 8 variants (rotations by 90 degrees, with and without a mirror) come from *one* DCT:
  mirroring a picture negates its odd DCT coefficients along that axis, and transposing it
  transposes the coefficients, so no variant is resized or transformed again;
* centre crops are cut from the same small grey picture; a copy that another site cropped
  matches the crop of its original, which the whole-image hash does not see. One of them is
  the centre square of the short side, which training sets keep of every photo (resized to
  224 or so): that copy matches its original's square.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

NUM_DIHEDRAL = 8
HIGHFREQ_FACTOR = 4  # imagehash.phash's default: the DCT runs on (4 * hash_size)^2 pixels
# The grey working picture: large enough that an 80% centre crop still has >= 32 px a side.
WORK_SIDE = 64
DEFAULT_CROPS = (0.8,)


@dataclass(frozen=True)
class ImageHashes:
    """Perceptual hashes of one image, each row a hash as big-endian uint64 words.

    ``dihedral[v]`` is the pHash of dihedral variant ``v`` (0 is the image as it is);
    ``crops[c]`` is the pHash of the centre crop to ``crop_fractions[c]`` of each side, then
    (``square``) that of the centre square of the short side.
    """

    dihedral: np.ndarray  # (8, words) uint64
    crops: np.ndarray  # (num_crops, words) uint64

    def hex(self) -> list[str]:
        return [words_to_hex(w) for w in self.dihedral]


@cache
def _dct_matrix(hash_size: int) -> np.ndarray:
    """The rows of scipy.fftpack's (unnormalised) DCT-II that the hash keeps."""
    n = hash_size * HIGHFREQ_FACTOR
    k = np.arange(hash_size)[:, None]
    x = np.arange(n)[None, :]
    return 2.0 * np.cos(np.pi * k * (2 * x + 1) / (2 * n))


@cache
def _dihedral_signs(hash_size: int) -> np.ndarray:
    """(4, h, h) sign patterns: identity, mirror left-right, flip up-down, both."""
    u = np.arange(hash_size)
    cols = np.where(u % 2, -1.0, 1.0)[None, :]  # mirroring columns negates odd v
    rows = np.where(u % 2, -1.0, 1.0)[:, None]  # flipping rows negates odd u
    one = np.ones((hash_size, hash_size))
    return np.stack([one, one * cols, one * rows, rows * cols])


def bits_to_words(bits: np.ndarray) -> np.ndarray:
    """(..., nbits) bool -> (..., words) uint64, the first bit most significant, left-padded
    to whole words (the integer a hex string of the same bits reads as)."""
    nbits = bits.shape[-1]
    words = (nbits + 63) // 64
    pad = words * 64 - nbits
    if pad:
        bits = np.concatenate([np.zeros((*bits.shape[:-1], pad), dtype=bool), bits], axis=-1)
    packed = np.packbits(bits, axis=-1, bitorder="big")
    return packed.view(">u8").astype(np.uint64).reshape(*bits.shape[:-1], words)


def words_to_hex(words: np.ndarray, nbits: int = 64) -> str:
    value = 0
    for w in np.asarray(words, dtype=np.uint64).ravel():
        value = (value << 64) | int(w)
    width = (nbits + 3) // 4 if len(np.ravel(words)) == 1 else len(np.ravel(words)) * 16
    return f"{value:0{width}x}"


def _low_dct(pixels: np.ndarray, hash_size: int) -> np.ndarray:
    """(k, n, n) grey pixels -> (k, h, h) low-frequency DCT block, as imagehash computes it."""
    d = _dct_matrix(hash_size)
    return d @ pixels.astype(np.float64) @ d.T


def _variant_bits(low: np.ndarray) -> np.ndarray:
    """(k, h, h) DCT blocks -> (k, 8, h*h) bits of the 8 dihedral variants.

    Variant order: ``np.rot90(x, r)`` for r = 0..3, then the same of ``np.fliplr(x)``.
    ``np.rot90(x) == fliplr(x).T``, and mirroring negates the odd columns of the block.
    """
    cols = _dihedral_signs(low.shape[-1])[1]
    variants = []
    for block in (low, low * cols):
        for _ in range(4):
            variants.append(block)
            block = np.swapaxes(block * cols, -1, -2)
    stacked = np.stack(variants, axis=1)
    flat = stacked.reshape(*stacked.shape[:2], -1)
    med = np.median(flat, axis=-1, keepdims=True)
    return flat > med


def grey_work_image(im: Image.Image, side: int = WORK_SIDE) -> Image.Image:
    """A small grey copy whose short side is at least ``side`` (``draft`` already applied)."""
    if im.mode != "L":
        im = im.convert("L")
    factor = min(im.size) // side
    if factor >= 2:
        im = im.reduce(factor)
    return im


def open_grey(path: Path, side: int = WORK_SIDE) -> Image.Image:
    """Open ``path`` as a small grey picture, decoding a JPEG at a reduced scale."""
    with Image.open(path) as im:
        if im.format == "JPEG":
            im.draft("L", (side, side))
        im.load()
        return grey_work_image(im, side)


def hash_grey(
    grey: Image.Image,
    hash_size: int = 8,
    crop_fractions: tuple[float, ...] = DEFAULT_CROPS,
    square: bool = True,
) -> ImageHashes:
    """Dihedral and centre-crop pHashes of a grey work picture (and of its centre square)."""
    n = hash_size * HIGHFREQ_FACTOR
    width, height = grey.size
    pictures = [grey.resize((n, n), Image.Resampling.LANCZOS)]
    boxes = [(round(width * f), round(height * f)) for f in crop_fractions]
    if square:  # the centre square of the short side: the training copy many datasets keep
        boxes.append((min(width, height), min(width, height)))
    for cw, ch in boxes:
        cw, ch = max(1, cw), max(1, ch)
        left, top = (width - cw) / 2, (height - ch) / 2
        pictures.append(
            grey.resize((n, n), Image.Resampling.LANCZOS, box=(left, top, left + cw, top + ch))
        )
    pixels = np.stack([np.asarray(p, dtype=np.float64) for p in pictures])
    bits = _variant_bits(_low_dct(pixels, hash_size))
    words = bits_to_words(bits)
    return ImageHashes(dihedral=words[0], crops=words[1:, 0])


def hash_image(
    im: Image.Image,
    hash_size: int = 8,
    crop_fractions: tuple[float, ...] = DEFAULT_CROPS,
    square: bool = True,
) -> ImageHashes:
    return hash_grey(grey_work_image(im), hash_size, crop_fractions, square)


def hash_path(
    path: Path,
    hash_size: int = 8,
    crop_fractions: tuple[float, ...] = DEFAULT_CROPS,
    square: bool = True,
) -> ImageHashes:
    return hash_grey(open_grey(path), hash_size, crop_fractions, square)
