"""The local-feature route of the dedup: candidates from shared ORB features, verified.

:mod:`~landmarks.dedup.feature_index` turns every image's ORB descriptors into votes for the
images that share them (the descriptors of its mirror picture and of its coarse view vote too,
for mirrored copies and crops). The best
voted pairs are verified with the features already in memory (:func:`verify.verify_matches`:
a RANSAC similarity of any rotation, then the aligned pixels must correlate), so a crop
anywhere, a copy turned by a few degrees or one with a text band is confirmed, and a second
photo of the same place from the same spot is not.
"""

from __future__ import annotations

import multiprocessing
import zipfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from landmarks.dedup import feature_index, features, search
from landmarks.dedup import verify as verifier
from landmarks.storage import atomic_write_bytes

# A copy's keypoints may be turned by any angle (ORB is rotation invariant); the aligned
# pixels still have to correlate, which a different photo of the same place does not.
FEATURE_VERIFY = verifier.VerifyOptions(
    max_rotation_deg=180.0, min_inliers=10, min_inlier_ratio=0.25
)
MIN_TILE_CORRELATION = 0.85
# A candidate whose views voted this often in all (both ways) and that fails in its best view
# is tried again in the full view: the other way round (the ratio test looks from one picture
# into the other, and a crop's corners find their match from one side better than from the
# other), and as is for a coarse or a mirrored candidate. On the real photos and their edits
# this found 5% more of the chains, 2% more of the crops and rotations, for 5% more
# verifications.
RETRY_MIN_VOTES = 10
# images looked up per search job at most (a progress step; the votes do not depend on it)
SEARCH_SPAN = 2048


def verify_settings() -> list:
    """What a feature verification's outcome depends on (cached outcomes are keyed by it)."""
    return sorted(vars(FEATURE_VERIFY).items()) + [
        ("max_inlier_error", verifier.MAX_INLIER_ERROR),
        ("min_tile_share", verifier.MIN_TILE_SHARE),
        ("min_exact_tile_share", verifier.MIN_EXACT_TILE_SHARE),
        ("weak_geometry", verifier.SURE_INLIER_RATIO, verifier.SURE_INLIER_ERROR),
        ("weak_geometry_min_tiles", verifier.WEAK_GEOMETRY_MIN_TILES),
        ("detail", verifier.DETAILED_SAMPLING, verifier.MIN_DETAIL_CORRELATION),
        ("aligned_detail", verifier.MIN_ALIGNED_DETAIL, verifier.RESCUE_MIN_TILES),
        ("sure_tiles", verifier.SURE_TILES),
        ("min_tiles", MIN_TILE_CORRELATION),
        ("ratio", verifier.RATIO),
        ("retry_min_votes", RETRY_MIN_VOTES),
    ]


@dataclass(frozen=True)
class FeatureCandidate:
    """Image ``b`` (its mirror picture if ``mirrored``; its coarse view if ``coarse``) shares
    ``votes`` features with ``a``; ``total``: the votes of all views between the two images,
    both ways."""

    a: int
    b: int
    votes: int
    mirrored: bool
    coarse: bool = False
    total: int = 0

    @property
    def view(self) -> int:
        """The view of ``b`` that voted, as cached verification outcomes name it: 8 as is,
        9 mirrored, 10 coarse."""
        return 8 + int(self.mirrored) + 2 * int(self.coarse)

    def attempts(self) -> list[FeatureCandidate]:
        """The ways to verify it, in order: itself, then (with ``RETRY_MIN_VOTES`` in all)
        the full view as is for a coarse candidate, the other way round, and not mirrored for
        a mirrored one."""
        tries = [self]
        if self.total >= RETRY_MIN_VOTES:
            if self.coarse:
                tries.append(FeatureCandidate(self.a, self.b, self.votes, self.mirrored))
            tries.append(FeatureCandidate(self.b, self.a, self.votes, self.mirrored))
            if self.mirrored:  # a symmetric scene votes for its copy through its mirror too
                tries.append(FeatureCandidate(self.a, self.b, self.votes, False))
        return tries


def candidates(
    feats: Sequence[features.LocalFeatures],
    options: feature_index.IndexOptions,
    threads: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> list[FeatureCandidate]:
    """The best-voted pair per unordered pair of images, most votes first. The views (as is,
    mirrored, coarse) are looked up in ``threads`` processes (:mod:`~landmarks.dedup.search`),
    spans of ``SEARCH_SPAN`` images at a time; ``progress(done, total)`` counts the images
    whose three views are looked up (0 while the index is built)."""
    if len(feats) < 2:
        return []
    if progress:
        progress(0, len(feats))  # the index is built first
    index = feature_index.FeatureIndex([f.descriptors for f in feats], options)
    views = (
        (False, False, options.top_k),
        (True, False, options.top_k_mirror),
        (False, True, options.top_k_coarse),
    )
    spans = search.split(len(feats), max(threads, -(-len(feats) // SEARCH_SPAN)))
    jobs = [
        search.SearchJob((mirrored, coarse), start, stop, top_k)
        for start, stop in spans
        for mirrored, coarse, top_k in views
    ]

    def source(job: search.SearchJob) -> list[np.ndarray]:
        return [f.view(*job.view)[1] for f in feats[job.start : job.stop]]

    def on_done(k: int) -> None:
        if progress and k % len(views) == 0:
            progress(jobs[k - 1].stop, len(feats))

    with search.search_pool(index, source, threads) as run:
        done = run(jobs, on_done)
    found_per_view = [
        search.merge([v for job, v in zip(jobs, done, strict=True) if job.view == view[:2]])
        for view in views
    ]
    best: dict[tuple[int, int], FeatureCandidate] = {}
    total: dict[tuple[int, int], int] = {}
    for (mirrored, coarse, _), found in zip(views, found_per_view, strict=True):
        for q, db, v in zip(
            found.query.tolist(), found.db.tolist(), found.votes.tolist(), strict=True
        ):
            key = (min(q, db), max(q, db))
            total[key] = total.get(key, 0) + v
            if key not in best or best[key].votes < v:
                best[key] = FeatureCandidate(db, q, v, mirrored, coarse)
    ranked = [replace(c, total=total[min(c.a, c.b), max(c.a, c.b)]) for c in best.values()]
    return sorted(ranked, key=lambda c: (-c.votes, c.a, c.b))


def verify_candidate(
    c: FeatureCandidate,
    feats: Sequence[features.LocalFeatures],
    pixels: Callable[[int], np.ndarray],
    options: verifier.VerifyOptions = FEATURE_VERIFY,
    min_tiles: float | None = MIN_TILE_CORRELATION,
) -> verifier.Verification:
    """Verify ``c.b`` against ``c.a`` from their cached features, in each of
    :meth:`FeatureCandidate.attempts` until one passes (the first one's outcome if none does);
    ``pixels(i)`` loads the normalised grey picture of image ``i`` (only when the keypoints
    agree)."""
    first = None
    for attempt in c.attempts():
        result = verify_view(attempt, feats, pixels, options, min_tiles)
        if result.ok:
            return result
        first = first or result
    assert first is not None
    return first


def verify_either_way(
    a: int,
    b: int,
    feats: Sequence[features.LocalFeatures],
    pixels: Callable[[int], np.ndarray],
    mirrored_first: bool = False,
) -> bool:
    """Do images ``a`` and ``b`` verify in the full view, either way round, mirrored or not
    (``mirrored_first``: the mirror is tried first)?"""
    return any(
        verify_view(FeatureCandidate(x, y, 0, mirrored), feats, pixels).ok
        for mirrored in (mirrored_first, not mirrored_first)
        for x, y in ((a, b), (b, a))
    )


def verify_view(
    c: FeatureCandidate,
    feats: Sequence[features.LocalFeatures],
    pixels: Callable[[int], np.ndarray],
    options: verifier.VerifyOptions = FEATURE_VERIFY,
    min_tiles: float | None = MIN_TILE_CORRELATION,
) -> verifier.Verification:
    """Verify ``c.b`` (in the view ``c`` names) against ``c.a``, this one way only."""
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


# What a verifying process works on: every image's features, paths and a pixel cache. Set
# in each process by the pool's initializer (a forked process inherits its arguments).
_WORKER: tuple[Sequence[features.LocalFeatures], Callable[[int], np.ndarray]] | None = None


def _init_worker(feats: Sequence[features.LocalFeatures], paths: Sequence[Path]) -> None:
    global _WORKER
    _WORKER = (feats, pixel_loader(paths))


def _verify_in_worker(c: FeatureCandidate) -> verifier.Verification:
    assert _WORKER is not None, "verify_pool sets the features up"
    feats, pixels = _WORKER
    return verify_candidate(c, feats, pixels)


@contextmanager
def verify_pool(
    feats: Sequence[features.LocalFeatures], paths: Sequence[Path], workers: int
) -> Iterator[Executor]:
    """Processes that verify candidates of ``feats``; a job carries only the candidate. The
    features reach a process through its initializer: a forked one inherits them (nothing is
    copied or pickled, and nothing is set in this process, so pools of several threads do not
    mix), a spawned one receives them once."""
    context = multiprocessing.get_context()
    pool = ProcessPoolExecutor(
        workers, mp_context=context, initializer=_init_worker, initargs=(feats, paths)
    )
    try:
        yield pool
    finally:
        pool.shutdown()


def verify_many(
    found: Sequence[FeatureCandidate],
    feats: Sequence[features.LocalFeatures],
    paths: Sequence[Path],
    pool: Executor | None = None,
) -> list[verifier.Verification]:
    """``verify_candidate`` of every candidate, in ``pool`` (from :func:`verify_pool` over the
    same ``feats``) when given."""
    if pool is None:
        pixels = pixel_loader(paths)
        return [verify_candidate(c, feats, pixels) for c in found]
    return list(pool.map(_verify_in_worker, found, chunksize=32))


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
