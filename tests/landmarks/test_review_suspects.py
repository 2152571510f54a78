"""Suspects on real photos: deliberately swapped labels must rank on top, out of fold."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

import numpy as np
from conftest import REAL_RAW, real_files
from typer.testing import CliRunner

from flows.cli import app
from landmarks.review import suspects

FAST = suspects.SuspectsOptions(num_centroids=64, num_folds=4)


def _swapped_tree(
    dest: Path, per_class: int | None, num_swaps: int, seed: int, classes: list[str] | None = None
) -> dict[str, str]:
    """A DIR/<class>/<file> tree of symlinks to real photos with ``num_swaps`` files filed
    under a random wrong class. Returns {relative path: true class} of the swapped ones."""
    rng = random.Random(seed)
    classes = classes or sorted(p.name for p in REAL_RAW.iterdir() if p.is_dir())
    files = [(c, f) for c in classes for f in real_files(c, per_class)]
    swapped = set(rng.sample(range(len(files)), num_swaps))
    truth = {}
    for i, (true_class, src) in enumerate(files):
        label = rng.choice([c for c in classes if c != true_class]) if i in swapped else true_class
        (dest / label).mkdir(parents=True, exist_ok=True)
        (dest / label / src.name).symlink_to(src)
        if i in swapped:
            truth[f"{label}/{src.name}"] = true_class
    return truth


def test_acceptance_20_swapped_labels_on_all_real_photos(tmp_path: Path, real_raw: Path):
    """20 labels swapped at random among the 822 real photos: at least 18 in the top 40 with
    the ImageNet features (the photos-only features reached 15 on this draw)."""
    truth = _swapped_tree(tmp_path / "tree", None, 20, seed=2024)
    out = tmp_path / "suspects.json"
    result = CliRunner().invoke(app, ["suspects", str(tmp_path / "tree"), "--json", str(out)])
    assert result.exit_code == 0, result.output
    ranked = json.loads(out.read_text())
    assert len(ranked) == sum(1 for _ in (tmp_path / "tree").rglob("*.*"))
    assert {"path", "label", "score", "suggested"} <= set(ranked[0])
    scores = [r["score"] for r in ranked]
    assert scores == sorted(scores, reverse=True), "most suspect first"
    top = {r["path"] for r in ranked[:40]}
    hits = top & set(truth)
    assert len(hits) >= 18, f"only {len(hits)} of 20 swapped labels in the top 40"
    # For most caught swaps the suggested class is the true one.
    by_path = {r["path"]: r for r in ranked}
    right = sum(by_path[p]["suggested"] == truth[p] for p in hits)
    assert right >= len(hits) // 2
    assert all(by_path[p]["label"] != truth[p] for p in truth)


def test_small_subset_swaps_rank_near_the_top(tmp_path: Path, real_raw: Path):
    classes = ["colosseum", "eiffel_tower", "niagara_falls", "petra", "taj_mahal"]
    truth = _swapped_tree(tmp_path / "tree", 30, 3, seed=0, classes=classes)
    result = suspects.suspects_in_folder(tmp_path / "tree", suspects.SuspectsOptions())
    assert len(result.suspects) == 5 * 30 and not result.unreadable
    ranks = sorted(i for i, s in enumerate(result.suspects) if s.path in truth)
    # The real photos carry their own junk (drawings, beaches, neighbours) that also ranks
    # high; a random order would put the swapped ones around rank 75.
    assert ranks[0] < 10 and ranks[1] < 30, f"swapped photos ranked {ranks} of 150"
    caught = [s for s in result.suspects if s.path in truth][:2]
    assert all(s.score > 0 and s.suggested == truth[s.path] for s in caught)
    assert result.accuracy > 0.6


def test_no_photo_is_scored_by_a_model_that_saw_it(real_raw: Path):
    photos = [p for c in ("colosseum", "petra", "taj_mahal") for p in real_files(c, 10)]
    labels = np.repeat(np.arange(3), 10)
    pixels, ok, bad = suspects.load_all(photos)
    assert len(ok) == 30 and not bad
    groups = suspects.extract_features(pixels, FAST)
    assert [g.name for g in groups] == ["imagenet"] and groups[0].plain.shape == (30, 1280)
    own = suspects.extract_features(pixels, replace(FAST, pretrained=False))
    assert [g.name for g in own] == ["patch_words", "lab_grid", "gist"]
    ids = suspects.near_duplicate_groups(pixels)
    folds = suspects.assign_folds(labels, ids, 3, seed=0)
    for g in np.unique(ids):
        assert len(set(folds[ids == g])) == 1, "a duplicate group straddles two folds"
    for c in range(3):
        assert len(set(folds[labels == c])) == 3, "every class in every fold"
    before = suspects.out_of_fold_scores(groups, labels, folds, 3, ridge=0.1)
    # Relabelling photo 0 changes what other folds learn, but never photo 0's own scores.
    relabelled = labels.copy()
    relabelled[0] = 2
    after = suspects.out_of_fold_scores(groups, relabelled, folds, 3, ridge=0.1)
    np.testing.assert_allclose(after[0], before[0], rtol=1e-9, atol=1e-12)
    assert not np.allclose(after[folds != folds[0]], before[folds != folds[0]])


def test_unreadable_files_are_listed_not_dropped(tmp_path: Path, real_raw: Path):
    truth = _swapped_tree(tmp_path / "tree", 6, 0, seed=1)
    assert truth == {}
    (tmp_path / "tree" / "petra" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    out = tmp_path / "out.json"
    result = CliRunner().invoke(
        app, ["suspects", str(tmp_path / "tree"), "--json", str(out)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert "petra/broken.jpg" in result.output
    ranked = json.loads(out.read_text())
    assert len(ranked) == 66 and "petra/broken.jpg" not in {r["path"] for r in ranked}


def test_outliers_are_flagged_far_from_every_class(real_raw: Path):
    photos = [p for c in ("colosseum", "eiffel_tower") for p in real_files(c, 12)]
    pixels, _, _ = suspects.load_all(photos)
    # A blank-ish synthetic frame is far from every real photo: the one case no real file shows.
    odd = np.zeros((1, *pixels.shape[1:]), np.uint8)
    odd[0, :, ::2] = 255
    pixels = np.concatenate([pixels, odd])
    labels = ["colosseum"] * 12 + ["eiffel_tower"] * 13
    keys = [f"p{i}" for i in range(25)]
    result = suspects.score_photos(pixels, labels, keys, FAST)
    by_key = {s.path: s for s in result.suspects}
    assert suspects.OUTLIER in by_key["p24"].flags
    assert by_key["p24"].outlier >= sorted(s.outlier for s in result.suspects)[-2]
