"""The local-feature route of the dedup: candidates from shared ORB features, verified.

:mod:`landmarks.feature_index` turns every image's ORB descriptors into votes for the images
that share them (the mirror picture's descriptors vote too, for mirrored copies). The best
voted pairs are verified with the features already in memory (:func:`verify.verify_matches`:
a RANSAC similarity of any rotation, then the aligned pixels must correlate), so a crop
anywhere, a copy turned by a few degrees or one with a text band is confirmed, and a second
photo of the same place from the same spot is not.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from landmarks.dedup import feature_index, features
from landmarks.dedup import verify as verifier
from landmarks.storage import atomic_write_bytes

# A copy's keypoints may be turned by any angle (ORB is rotation invariant); the aligned
# pixels still have to correlate, which a different photo of the same place does not.
FEATURE_VERIFY = verifier.VerifyOptions(
    max_rotation_deg=180.0, min_inliers=10, min_inlier_ratio=0.25
)
MIN_TILE_CORRELATION = 0.85


def verify_settings() -> list:
    """What a feature verification's outcome depends on (cached outcomes are keyed by it)."""
    return sorted(vars(FEATURE_VERIFY).items()) + [
        ("max_inlier_error", verifier.MAX_INLIER_ERROR),
        ("min_tile_share", verifier.MIN_TILE_SHARE),
        ("min_exact_tile_share", verifier.MIN_EXACT_TILE_SHARE),
        ("weak_geometry", verifier.SURE_INLIER_RATIO, verifier.SURE_INLIER_ERROR),
        ("weak_geometry_min_tiles", verifier.WEAK_GEOMETRY_MIN_TILES),
        ("detail", verifier.DETAILED_SAMPLING, verifier.MIN_DETAIL_CORRELATION),
        ("sure_tiles", verifier.SURE_TILES),
        ("min_tiles", MIN_TILE_CORRELATION),
        ("ratio", verifier.RATIO),
    ]


@dataclass(frozen=True)
class FeatureCandidate:
    """Image ``b`` (its mirror picture if ``mirrored``; its coarse view if ``coarse``) shares
    ``votes`` features with ``a``."""

    a: int
    b: int
    votes: int
    mirrored: bool
    coarse: bool = False

    @property
    def view(self) -> int:
        """The view of ``b`` that voted, as cached verification outcomes name it (8-11)."""
        return 8 + int(self.mirrored) + 2 * int(self.coarse)


def candidates(
    feats: Sequence[features.LocalFeatures], options: feature_index.IndexOptions
) -> list[FeatureCandidate]:
    """The best-voted pair per unordered pair of images, most votes first."""
    if len(feats) < 2:
        return []
    index = feature_index.FeatureIndex([f.descriptors for f in feats], options)
    best: dict[tuple[int, int], FeatureCandidate] = {}
    for coarse in (False, True):
        for mirrored in (False, True):
            found = index.votes([f.view(mirrored, coarse)[1] for f in feats])
            for q, db, v in zip(
                found.query.tolist(), found.db.tolist(), found.votes.tolist(), strict=True
            ):
                key = (min(q, db), max(q, db))
                if key not in best or best[key].votes < v:
                    best[key] = FeatureCandidate(db, q, v, mirrored, coarse)
    return sorted(best.values(), key=lambda c: (-c.votes, c.a, c.b))


def verify_candidate(
    c: FeatureCandidate,
    feats: Sequence[features.LocalFeatures],
    pixels: Callable[[int], np.ndarray],
    options: verifier.VerifyOptions = FEATURE_VERIFY,
    min_tiles: float | None = MIN_TILE_CORRELATION,
) -> verifier.Verification:
    """Verify ``c.b`` against ``c.a`` from their cached features; ``pixels(i)`` loads the
    normalised grey picture of image ``i`` (only when the keypoints agree)."""
    fa, fb = feats[c.a], feats[c.b]
    points_b, desc_b = fb.view(c.mirrored, c.coarse)
    if c.mirrored:

        def pixels_b() -> np.ndarray:
            return np.ascontiguousarray(pixels(c.b)[:, ::-1])
    else:

        def pixels_b() -> np.ndarray:
            return pixels(c.b)

    return verifier.verify_matches(
        fa.points,
        fa.descriptors,
        points_b,
        desc_b,
        lambda: pixels(c.a),
        pixels_b,
        options,
        min_tiles,
        (fa.source_side, fb.source_side),
    )


def _verify_job(
    job: tuple[FeatureCandidate, features.LocalFeatures, features.LocalFeatures, Path, Path],
) -> verifier.Verification:
    c, fa, fb, path_a, path_b = job
    pixels = pixel_loader([path_a, path_b])
    return verify_candidate(FeatureCandidate(0, 1, c.votes, c.mirrored, c.coarse), [fa, fb], pixels)


def verify_many(
    found: Sequence[FeatureCandidate],
    feats: Sequence[features.LocalFeatures],
    paths: Sequence[Path],
    pool: Executor | None = None,
) -> list[verifier.Verification]:
    """``verify_candidate`` of every candidate, in ``pool`` when given."""
    if pool is None:
        pixels = pixel_loader(paths)
        return [verify_candidate(c, feats, pixels) for c in found]
    jobs = [(c, feats[c.a], feats[c.b], paths[c.a], paths[c.b]) for c in found]
    return list(pool.map(_verify_job, jobs, chunksize=16))


def pixel_loader(paths: Sequence[Path]) -> Callable[[int], np.ndarray]:
    """``pixels(i)``: the normalised grey picture of ``paths[i]``, the last few kept."""

    @lru_cache(maxsize=64)
    def pixels(i: int) -> np.ndarray:
        return features.open_normalised_grey(paths[i])

    return pixels


class FeatureCache:
    """One ``.npz`` file per image content (sha256) under ``root``, written atomically."""

    def __init__(self, root: Path, num_features: int) -> None:
        self.root = Path(root) / f"v{features.FEATURE_VERSION}-n{num_features}"

    def _path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / f"{sha256}.npz"

    def get(self, sha256: str) -> features.LocalFeatures | None:
        path = self._path(sha256)
        try:
            return features.LocalFeatures.from_bytes(path.read_bytes())
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return None  # missing or damaged: computed again

    def put(self, sha256: str, feats: features.LocalFeatures) -> None:
        path = self._path(sha256)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, feats.to_bytes())
