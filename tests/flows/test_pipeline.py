"""The whole pipeline as Prefect flows, on real photos, under an ephemeral Prefect server."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from flows.pipeline import pipeline
from landmarks.dedup import dihedral_phashes, hex_to_words
from landmarks.storage import read_json, read_jsonl

pytestmark = pytest.mark.slow


def _overrides(storage: Path, source: Path) -> dict:
    return {
        "storage_dir": str(storage),
        "source": str(source),
        "augment": {"multiplier": 0.5, "chunk_size": 10, "output_size": 64},
        "train": {
            "model": "original_cnn",  # tiny and fast; the default is the pretrained model
            "epochs": 1,
            "image_size": 32,
            "batch_size": 16,
            "conv_blocks": 2,
            "first_filters": 8,
            "dense_units": 32,
        },
    }


def test_pipeline_end_to_end_without_leakage(prefect_harness, tmp_path: Path, small_subset: Path):
    storage = tmp_path / "storage"
    first = pipeline(overrides=_overrides(storage, small_subset))

    run_dir = Path(first["run_dir"])
    assert Path(first["model_path"]).is_file()
    assert (run_dir / "report.md").is_file() and (run_dir / "confusion_matrix.png").is_file()
    metrics = read_json(run_dir / "metrics.json")
    assert 0.0 <= metrics["top1"] <= metrics["top3"] <= 1.0
    assert np.isfinite(metrics["loss"]) and metrics["loss"] > 0
    assert set(metrics["per_class"]) == {"colosseum", "eiffel_tower", "petra", "taj_mahal"}
    for v in metrics["per_class"].values():
        assert all(0.0 <= v[k] <= 1.0 for k in ("precision", "recall", "f1"))
    assert first["num_augmented"] == len(list((storage / "augmented").rglob("chunk-*/*.jpg")))

    # No test image, nor a near duplicate of one (any flip or rotation), is in train.
    split = read_jsonl(storage / "splits" / "split.jsonl")
    test = [r for r in split if r["split"] == "test"]
    train = [r for r in split if r["split"] == "train"]
    assert test and train
    assert not {r["pixel_hash"] for r in test} & {r["pixel_hash"] for r in train}

    def hashes(rows):
        return [dihedral_phashes(Image.open(storage / "clean" / r["path"])) for r in rows]

    test_h = hex_to_words(h[0] for h in hashes(test))
    train_v = hex_to_words(v for h in hashes(train) for v in h).reshape(len(train), 8, -1)
    dist = np.bitwise_count(test_h[:, None, None, :] ^ train_v[None]).sum(-1).min(-1)
    assert dist.min() > 10, "a near duplicate of a test image reached training"
    augmented_sources = {
        f["source"]
        for c in (storage / "augmented").rglob("chunk.json")
        for f in read_json(c)["files"]
    }
    assert augmented_sources <= {r["path"] for r in train}

    # A second run on unchanged input: no clean/dedup work redone, a new run folder.
    clean_lines = (storage / "clean" / "manifest.jsonl").read_text()
    dedup_mtime = (storage / "dedup" / "report.json").stat().st_mtime_ns
    second = pipeline(overrides=_overrides(storage, small_subset))
    assert (storage / "clean" / "manifest.jsonl").read_text() == clean_lines
    assert (storage / "dedup" / "report.json").stat().st_mtime_ns == dedup_mtime
    assert second["dataset_version"] == first["dataset_version"]
    assert second["run_dir"] != first["run_dir"]
    assert Path(first["model_path"]).is_file() and Path(second["model_path"]).is_file()
