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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

VERIFY_SIDE = 320  # long side the pictures are compared at
RATIO = 0.8  # Lowe's ratio test
MAX_INLIER_ERROR = 1.8  # median reprojection error (px) of a copy's inliers, tile mode
MIN_TILE_SHARE = 0.7  # share of a copy's tiles that correlate at 0.7 or more, tile mode
# ... or share of its tiles that correlate at 0.95 or more: a text band or a logo over part of a
# copy spoils the tiles under it and no others, a second photo from the same spot rarely has so
# many tiles that close
MIN_EXACT_TILE_SHARE = 0.45
# Tile mode: geometry this weak (inliers under this share of the matches, or fitting worse than
# this) also passes, with pixels that agree better (a crop's matches outside its frame, a heavy
# re-encode's blurred corners); second photos from the same spot sit there too, and their tiles
# correlate at 0.87-0.93 at best, where copies reach 0.95
SURE_INLIER_RATIO = 0.55
SURE_INLIER_ERROR = 1.4
WEAK_GEOMETRY_MIN_TILES = 0.95
# Tile mode, when both pictures hold full detail at the compared scale (at least this many
# stored pixels per compared pixel): their fine detail (a band-pass, see :func:`detail_scores`)
# must correlate too. A copy's does (0.9+); a second photo from the same spot lines up in its
# coarse shapes but not in leaves, people, waves and clouds (0.57-0.81 on the real photos).
DETAILED_SAMPLING = 0.9
MIN_DETAIL_CORRELATION = 0.82
# ... unless their tiles already agree this well: resampled copies (a crop brought to a
# training size) lose fine detail but keep their tiles at 0.97+; a second photo from the
# same spot reaches 0.94 at best
SURE_TILES = 0.975
# ... or unless, aligned more finely (ECC, an affine warp from the RANSAC fit), their fine
# detail correlates at least this well. The RANSAC fit of a crop or a rotated copy can be off
# by a pixel, which the fine detail does not forgive; aligned finely, copies reach 0.97-0.997,
# and second photos from the same spot (or frames of one video) 0.94 at best, on the real
# photos and their edits.
MIN_ALIGNED_DETAIL = 0.96
# A pair whose tiles fail but still correlate this well (a fit off by a pixel or two blurs
# them less than it does the fine detail) passes if aligned finely its detail does; ECC is
# too slow (5-20 ms) to try on every pair that fails, most of which are not copies.
RESCUE_MIN_TILES = 0.8


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
    tiles: float = 0.0  # median correlation of the overlap's tiles (verify_matches only)


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
    pa = np.array([k.pt for k in ka], dtype=np.float32)
    pb = np.array([k.pt for k in kb], dtype=np.float32)
    return verify_matches(pa, da, pb, db, lambda: a, lambda: b, options)


def verify_matches(
    points_a: np.ndarray,
    desc_a: np.ndarray,
    points_b: np.ndarray,
    desc_b: np.ndarray,
    pixels_a: Callable[[], np.ndarray],
    pixels_b: Callable[[], np.ndarray],
    options: VerifyOptions,
    min_tiles: float | None = None,
    source_sides: tuple[int, int] = (0, 0),
) -> Verification:
    """Verify ``b`` against ``a`` from their keypoints (``points`` in the coordinates of the
    grey pictures ``pixels_*`` return, loaded only if the keypoints agree on a transform).

    With ``min_tiles``, the pixels pass on the median correlation of the tiles of the overlap
    instead, with ``MIN_TILE_SHARE`` of them at 0.7 or more or ``MIN_EXACT_TILE_SHARE`` at 0.95
    or more (see :func:`tile_scores`), and
    the inliers must fit the similarity to within ``MAX_INLIER_ERROR`` pixels (median): a
    copy is the same pixels under it, a second photo from nearly the same spot is not quite
    (perspective, parallax). ``source_sides`` (the pictures' long sides as stored, 0 if not
    known) tell whether both hold full detail at the compared scale; if so, their fine detail
    must correlate too (``MIN_DETAIL_CORRELATION``)."""
    if len(desc_a) < 2 or len(desc_b) < 2:
        return Verification(False, 0, 0, 0.0, "too few keypoints")
    # the two nearest of a's descriptors for each of b's, as arrays (no DMatch objects)
    dist, nearest = cv2.batchDistance(desc_b, desc_a, cv2.CV_32S, normType=cv2.NORM_HAMMING, K=2)
    good = np.flatnonzero(dist[:, 0] < RATIO * dist[:, 1])
    if len(good) < options.min_inliers:
        return Verification(False, 0, len(good), 0.0, "too few matches")
    src = np.ascontiguousarray(points_b[good])
    dst = np.ascontiguousarray(points_a[nearest[good, 0]])
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
    if min_tiles is not None:
        kept = mask.ravel() > 0
        moved = src[kept] @ matrix[:, :2].T + matrix[:, 2]
        error = float(np.median(np.linalg.norm(moved - dst[kept], axis=1)))
        if error > MAX_INLIER_ERROR:
            return Verification(False, inliers, len(good), 0.0, f"inlier error {error:.2f} px")
        if inliers < SURE_INLIER_RATIO * len(good) or error > SURE_INLIER_ERROR:
            min_tiles = max(min_tiles, WEAK_GEOMETRY_MIN_TILES)
    a, b = pixels_a(), pixels_b()
    warped, mask = _warp(a, b, matrix)  # once, for the correlation, the tiles and the detail
    corr, overlap = _warped_correlation(a, warped, mask, b.size * scale**2)
    if overlap < options.min_overlap:
        return Verification(False, inliers, len(good), corr, f"overlap {overlap:.2f}")
    if min_tiles is None:
        ok = corr >= options.min_correlation
        return Verification(ok, inliers, len(good), corr, "" if ok else f"correlation {corr:.2f}")
    scores = _tile_scores(a, warped, mask)
    tiles = float(np.median(scores)) if len(scores) >= 3 else 0.0
    share = float((scores >= 0.7).mean()) if len(scores) >= 3 else 0.0
    exact = float((scores >= 0.95).mean()) if len(scores) >= 3 else 0.0
    ok = tiles >= min_tiles and (share >= MIN_TILE_SHARE or exact >= MIN_EXACT_TILE_SHARE)
    why = "" if ok else f"tile correlation {tiles:.2f}, {share:.0%} of tiles >= 0.7"
    detailed = (
        min(source_sides) > 0
        and min(source_sides[0] / max(a.shape), source_sides[1] / max(b.shape) / scale)
        >= DETAILED_SAMPLING
    )
    if ok and tiles < SURE_TILES and detailed:
        fine = _detail_scores(a, warped, mask)
        detail = float(np.median(fine)) if len(fine) >= 3 else 1.0
        if detail < MIN_DETAIL_CORRELATION:
            aligned = aligned_detail(a, warped, mask)
            if aligned < MIN_ALIGNED_DETAIL:
                ok = False
                why = f"fine detail correlation {detail:.2f} ({aligned:.2f} aligned finely)"
    elif not ok and detailed and tiles >= RESCUE_MIN_TILES:
        # the tiles of a copy whose fit is off by a pixel or two: aligned finely, the same
        # pixels show the same fine detail
        aligned = aligned_detail(a, warped, mask)
        if aligned >= MIN_ALIGNED_DETAIL:
            ok, why = True, ""
        else:
            why += f"; fine detail {aligned:.2f} aligned finely"
    return Verification(ok, inliers, len(good), corr, why, tiles)


def aligned_detail(a: np.ndarray, warped: np.ndarray, mask: np.ndarray) -> float:
    """The median fine-detail correlation (:func:`detail_scores`) of ``a`` and the picture
    ``warped`` onto it, once ``warped`` is aligned more finely: the affine warp that best
    matches it to ``a`` over ``mask`` (OpenCV's ECC, from no change). 0 if ECC fails."""
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 50, 1e-4)
    try:
        _, warp = cv2.findTransformECC(
            a.astype(np.float32),
            warped.astype(np.float32),
            np.eye(2, 3, dtype=np.float32),
            cv2.MOTION_AFFINE,
            criteria,
            mask.astype(np.uint8),
            5,
        )
    except cv2.error:  # did not converge
        return 0.0
    h, w = a.shape
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    finer = cv2.warpAffine(warped, warp, (w, h), flags=flags)
    inside = cv2.warpAffine(
        mask.astype(np.uint8) * 255, warp, (w, h), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP
    )
    fine = _detail_scores(a, finer, cv2.erode(inside, np.ones((5, 5), np.uint8)) > 0)
    return float(np.median(fine)) if len(fine) >= 3 else 0.0


def _warped_correlation(
    a: np.ndarray, warped: np.ndarray, mask: np.ndarray, b_area: float
) -> tuple[float, float]:
    """NCC of ``a`` and the picture ``warped`` onto it, over the ``mask``; and the overlap's
    share of the smaller picture (``b_area``: the other's area in ``a``'s frame)."""
    area = mask.sum()
    overlap = float(area) / max(1, min(a.size, b_area))
    if area < 100:
        return 0.0, overlap
    # Blur both a little: JPEG blocks and resampling differ between copies, the content not.
    x = cv2.GaussianBlur(a, (5, 5), 0)[mask].astype(np.float64)
    y = cv2.GaussianBlur(warped, (5, 5), 0)[mask].astype(np.float64)
    x -= x.mean()
    y -= y.mean()
    denom = math.sqrt(float((x * x).sum() * (y * y).sum()))
    return (float((x * y).sum()) / denom if denom > 0 else 0.0), min(1.0, overlap)


def _warp(a: np.ndarray, b: np.ndarray, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``b`` warped onto ``a``'s frame, and the mask of where it lands (the seam eroded:
    resampling smears the border)."""
    h, w = a.shape
    warped = cv2.warpAffine(b, matrix, (w, h), flags=cv2.INTER_AREA, borderValue=0)
    inside = cv2.warpAffine(
        np.full(b.shape, 255, np.uint8), matrix, (w, h), flags=cv2.INTER_NEAREST
    )
    return warped, cv2.erode(inside, np.ones((5, 5), np.uint8)) > 0


def tile_scores(a: np.ndarray, b: np.ndarray, matrix: np.ndarray, grid: int = 8) -> np.ndarray:
    """NCC of every tile (``grid`` x ``grid`` of ``a``) that ``b``, warped onto ``a``, covers
    and that is not flat in both. Each tile has its own brightness and contrast, so a colour
    shift or a text band over a few tiles does not count against a copy; a second photo from
    the same spot, off by a little parallax or light (trees, people, clouds), fails in many."""
    return _tile_scores(a, *_warp(a, b, matrix), grid)


def _tile_scores(a: np.ndarray, warped: np.ndarray, mask: np.ndarray, grid: int = 8) -> np.ndarray:
    x_all = cv2.GaussianBlur(a, (5, 5), 0).astype(np.float32)
    y_all = cv2.GaussianBlur(warped, (5, 5), 0).astype(np.float32)
    return _tile_correlations(x_all, y_all, mask, grid, min_var=16.0)


def detail_scores(a: np.ndarray, b: np.ndarray, matrix: np.ndarray, grid: int = 8) -> np.ndarray:
    """NCC per tile, as :func:`tile_scores`, of the pictures' fine detail: a difference of
    Gaussians (sigma 1 and 3 pixels), which keeps edges and texture and drops shading."""
    return _detail_scores(a, *_warp(a, b, matrix), grid)


def _detail_scores(
    a: np.ndarray, warped: np.ndarray, mask: np.ndarray, grid: int = 8
) -> np.ndarray:
    def band(x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float32)
        return cv2.GaussianBlur(x, (0, 0), 1.0) - cv2.GaussianBlur(x, (0, 0), 3.0)

    return _tile_correlations(band(a), band(warped), mask, grid, min_var=4.0)


def _tile_correlations(
    x_all: np.ndarray, y_all: np.ndarray, mask: np.ndarray, grid: int, min_var: float
) -> np.ndarray:
    """NCC of ``x_all`` and ``y_all`` in every tile of a ``grid`` x ``grid`` mostly inside
    ``mask``, tiles whose variance is under ``min_var`` in both left out."""
    h, w = x_all.shape
    scores = []
    for r in range(grid):
        for c in range(grid):
            rows = slice(r * h // grid, (r + 1) * h // grid)
            cols = slice(c * w // grid, (c + 1) * w // grid)
            m = mask[rows, cols]
            if m.mean() < 0.6:
                continue
            x, y = x_all[rows, cols][m], y_all[rows, cols][m]
            x = x - x.mean()
            y = y - y.mean()
            sx, sy = float((x * x).sum()), float((y * y).sum())
            if sx < min_var * len(x) and sy < min_var * len(y):  # flat in both: sky, a wall
                continue
            scores.append(float((x * y).sum()) / math.sqrt(sx * sy) if sx * sy > 0 else 0.0)
    return np.array(scores)


def verify_files(
    path_a: Path, path_b: Path, variant: int, options: VerifyOptions | None = None
) -> Verification:
    """Verify ``path_b`` against ``path_a``; ``variant`` turns b into a's orientation."""
    a = load_grey(path_a)
    b = dihedral(load_grey(path_b), variant)
    return verify_pixels(a, b, options or VerifyOptions())
