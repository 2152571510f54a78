"""Verify a candidate duplicate pair: ORB keypoints, a RANSAC similarity, then the pixels.

Perceptual hashes put two different photos of one building, shot from the same spot, within
a few bits of each other. A copy, however resized, cropped, re-encoded, brightened or
watermarked, is the *same pixels* under a similarity transform (scale + shift, after the
dihedral variant the hash search found). So a pair is confirmed when

1. enough ORB keypoint matches (Lowe's ratio test) agree on one similarity (RANSAC), with a
   rotation near zero and a plausible scale, and
2. the second picture, warped by that similarity onto the first, correlates with it over
   their overlap (normalised cross-correlation of the grey pixels), which a second photo taken
   from the same spot does not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

VERIFY_SIDE = 320  # long side the pictures are compared at


@dataclass(frozen=True)
class VerifyOptions:
    min_inliers: int = 12
    min_inlier_ratio: float = 0.25
    min_correlation: float = 0.6
    max_rotation_deg: float = 8.0
    min_overlap: float = 0.3


@dataclass(frozen=True)
class Verification:
    ok: bool
    inliers: int
    matches: int
    correlation: float
    why: str


def load_grey(path: Path, side: int = VERIFY_SIDE) -> np.ndarray:
    """Grey uint8 picture with the long side at most ``side`` (JPEGs decoded at a reduced scale)."""
    with Image.open(path) as im:
        if im.format == "JPEG":
            im.draft("L", (side, side))
        grey = im.convert("L")
        grey.thumbnail((side, side), Image.Resampling.BILINEAR)
        return np.asarray(grey)


def dihedral(pixels: np.ndarray, variant: int) -> np.ndarray:
    """Variant ``v`` in :mod:`landmarks.hashing`'s order: ``rot90(x, v % 4)``, mirrored first
    for ``v >= 4``."""
    if variant >= 4:
        pixels = np.fliplr(pixels)
    return np.ascontiguousarray(np.rot90(pixels, variant % 4))


_ORB = None


def _orb() -> cv2.ORB:
    global _ORB
    if _ORB is None:
        _ORB = cv2.ORB_create(nfeatures=800, fastThreshold=10)  # type: ignore[attr-defined]
    return _ORB


def verify_pixels(a: np.ndarray, b: np.ndarray, options: VerifyOptions) -> Verification:
    """Is ``b`` (already in ``a``'s orientation) a resized/cropped/re-encoded copy of ``a``?"""
    orb = _orb()
    ka, da = orb.detectAndCompute(a, None)
    kb, db = orb.detectAndCompute(b, None)
    if da is None or db is None or len(ka) < 2 or len(kb) < 2:
        return Verification(False, 0, 0, 0.0, "too few keypoints")
    knn = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(db, da, k=2)
    good = [m[0] for m in knn if len(m) == 2 and m[0].distance < 0.8 * m[1].distance]
    if len(good) < options.min_inliers:
        return Verification(False, 0, len(good), 0.0, "too few matches")
    src = np.array([kb[m.queryIdx].pt for m in good], dtype=np.float32)
    dst = np.array([ka[m.trainIdx].pt for m in good], dtype=np.float32)
    matrix, mask = cv2.estimateAffinePartial2D(
        src, dst, method=cv2.RANSAC, ransacReprojThreshold=3.0, maxIters=2000
    )
    inliers = int(mask.sum()) if mask is not None else 0
    if matrix is None or inliers < options.min_inliers:
        return Verification(False, inliers, len(good), 0.0, "no consistent transform")
    if inliers < options.min_inlier_ratio * len(good):
        return Verification(False, inliers, len(good), 0.0, "inliers a small minority")
    scale = math.hypot(matrix[0, 0], matrix[1, 0])
    angle = math.degrees(math.atan2(matrix[1, 0], matrix[0, 0]))
    if abs(angle) > options.max_rotation_deg or not 0.2 < scale < 5.0:
        why = f"rotation {angle:.0f}, scale {scale:.2f}"
        return Verification(False, inliers, len(good), 0.0, why)
    corr, overlap = _warped_correlation(a, b, matrix)
    if overlap < options.min_overlap:
        return Verification(False, inliers, len(good), corr, f"overlap {overlap:.2f}")
    ok = corr >= options.min_correlation
    return Verification(ok, inliers, len(good), corr, "" if ok else f"correlation {corr:.2f}")


def _warped_correlation(a: np.ndarray, b: np.ndarray, matrix: np.ndarray) -> tuple[float, float]:
    """NCC of ``a`` and ``b`` warped onto it, over the overlap; and the overlap's share of the
    smaller picture."""
    h, w = a.shape
    warped = cv2.warpAffine(b, matrix, (w, h), flags=cv2.INTER_AREA, borderValue=0)
    inside = cv2.warpAffine(
        np.full(b.shape, 255, np.uint8), matrix, (w, h), flags=cv2.INTER_NEAREST
    )
    # Erode the seam: resampling smears the border.
    mask = cv2.erode(inside, np.ones((5, 5), np.uint8)) > 0
    area = mask.sum()
    overlap = float(area) / max(1, min(a.size, b.size * (matrix[0, 0] ** 2 + matrix[1, 0] ** 2)))
    if area < 100:
        return 0.0, overlap
    # Blur both a little: JPEG blocks and resampling differ between copies, the content not.
    x = cv2.GaussianBlur(a, (5, 5), 0)[mask].astype(np.float64)
    y = cv2.GaussianBlur(warped, (5, 5), 0)[mask].astype(np.float64)
    x -= x.mean()
    y -= y.mean()
    denom = math.sqrt(float((x * x).sum() * (y * y).sum()))
    return (float((x * y).sum()) / denom if denom > 0 else 0.0), min(1.0, overlap)


def verify_files(
    path_a: Path, path_b: Path, variant: int, options: VerifyOptions | None = None
) -> Verification:
    """Verify ``path_b`` against ``path_a``; ``variant`` turns b into a's orientation."""
    a = load_grey(path_a)
    b = dihedral(load_grey(path_b), variant)
    return verify_pixels(a, b, options or VerifyOptions())
