"""Suspects benchmark on the real photos: how many of 20 randomly swapped labels land in the
top 40 suspects, over several random swaps, next to baselines measured in the same run.

    .venv/bin/python benchmarks/suspects.py [--real ../shared/datasets/landmarks-real/raw]
        [--swaps 20]

Suspects use EfficientNet-Lite0 ImageNet features (the default). Baselines, same folds and
kernel ridge: the features learned from the photos alone (the default before; patch words, Lab
grid, GIST), a colour-only model (the Lab grid group alone) and a random order (expected
hits = 20 * 40 / n). Features do not depend on labels, so they are extracted once and every
swap reuses them; one full end-to-end run is timed separately.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from landmarks.ingest import list_class_folders  # noqa: E402
from landmarks.review import suspects  # noqa: E402


def hits_in_top(scores: np.ndarray, labels: np.ndarray, swapped: set[int], top: int) -> int:
    rows = np.arange(len(labels))
    own = scores[rows, labels]
    others = scores.copy()
    others[rows, labels] = -np.inf
    order = np.argsort(-(others.max(1) - own), kind="stable")
    return len(set(order[:top].tolist()) & swapped)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--real", type=Path, default=ROOT.parent / "shared/datasets/landmarks-real/raw"
    )
    parser.add_argument("--swaps", type=int, default=20, help="Random swap draws.")
    args = parser.parse_args()
    options = suspects.SuspectsOptions()

    tree = list_class_folders(args.real)
    class_names = sorted(tree)
    paths = [p for c in class_names for p in tree[c]]
    truth = np.array([class_names.index(c) for c in class_names for _ in tree[c]])

    # One full end-to-end run on a tree with 20 swapped labels, timed.
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        swapped = set(rng.sample(range(len(paths)), 20))
        for i, p in enumerate(paths):
            label = class_names[truth[i]]
            if i in swapped:
                label = rng.choice([c for c in class_names if c != label])
            (Path(tmp) / label).mkdir(exist_ok=True)
            (Path(tmp) / label / p.name).symlink_to(p)
        start = time.perf_counter()
        result = suspects.suspects_in_folder(Path(tmp), options)
        full_s = time.perf_counter() - start
    print(
        f"end to end: {len(result.suspects)} photos in {full_s:.1f} s, "
        f"out-of-fold top-1 {result.accuracy:.3f}"
    )

    start = time.perf_counter()
    pixels, ok, _ = suspects.load_all(paths)
    decode_s = time.perf_counter() - start
    start = time.perf_counter()
    groups = suspects.extract_features(pixels, options)
    features_s = time.perf_counter() - start
    start = time.perf_counter()
    own_groups = suspects.extract_features(pixels, replace(options, pretrained=False))
    own_s = time.perf_counter() - start
    ids = suspects.near_duplicate_groups(pixels)
    print(
        f"decode {decode_s:.1f} s, features {features_s:.1f} s "
        f"({'+'.join(g.name for g in groups)}), photos-only features {own_s:.1f} s"
    )

    ours, own, colour, accuracy = [], [], [], []
    fit_s = 0.0
    for draw in range(args.swaps):
        r = np.random.default_rng(100 + draw)
        swapped_idx = r.choice(len(truth), 20, replace=False)
        labels = truth.copy()
        for i in swapped_idx:
            labels[i] = r.choice([c for c in range(len(class_names)) if c != truth[i]])
        scores = np.zeros((len(truth), len(class_names)))
        colour_scores = np.zeros_like(scores)
        own_scores = np.zeros_like(scores)
        for repeat in range(options.repeats):
            # the same fold draws as suspects_in_folder makes, repeated and averaged
            folds = suspects.assign_folds(labels, ids, options.num_folds, 1000 * draw + repeat)
            start = time.perf_counter()
            scores += suspects.out_of_fold_scores(
                groups, labels, folds, len(class_names), options.ridge
            )
            fit_s += time.perf_counter() - start
            own_scores += suspects.out_of_fold_scores(
                own_groups, labels, folds, len(class_names), options.ridge
            )
            colour_scores += suspects.out_of_fold_scores(
                [g for g in own_groups if g.name == "lab_grid"],
                labels,
                folds,
                len(class_names),
                options.ridge,
            )
        ours.append(hits_in_top(scores, labels, set(swapped_idx.tolist()), 40))
        own.append(hits_in_top(own_scores, labels, set(swapped_idx.tolist()), 40))
        colour.append(hits_in_top(colour_scores, labels, set(swapped_idx.tolist()), 40))
        accuracy.append(float((scores.argmax(1) == truth).mean()))
    random_hits = 20 * 40 / len(truth)
    print(f"{args.swaps} draws of 20 swapped labels among {len(truth)} photos, hits in top 40:")
    print(f"  suspects     mean {np.mean(ours):5.1f}  min {min(ours):2d}  {ours}")
    print(f"  photos only  mean {np.mean(own):5.1f}  min {min(own):2d}  {own}  (baseline)")
    print(f"  colour only  mean {np.mean(colour):5.1f}  min {min(colour):2d}  {colour}")
    print(f"  random order mean {random_hits:5.1f}")
    print(
        f"  ratio suspects / photos only {np.mean(ours) / np.mean(own):.2f}, "
        f"suspects / colour only {np.mean(ours) / np.mean(colour):.2f}, "
        f"suspects / random {np.mean(ours) / random_hits:.1f}"
    )
    print(
        f"  out-of-fold top-1 vs true labels {np.mean(accuracy):.3f}; "
        f"k-fold fit {fit_s / args.swaps:.1f} s per draw"
    )


if __name__ == "__main__":
    main()
