"""Sweeps and the leakage study: plan parsing, the shipped original table, and tiny real runs
through the Prefect flows."""

import csv
from pathlib import Path

import pytest

from landmarks.config import load_settings
from landmarks.storage import read_json, read_jsonl, write_jsonl
from landmarks.train.sweep import leaky_split, load_sweep, table_row, write_results

ROOT = Path(__file__).resolve().parents[2]


def test_plan_trials_grid_scale_and_only(tmp_path: Path):
    path = tmp_path / "s.toml"
    path.write_text(
        '[sweep]\nname = "t"\nepoch_scale = 0.5\n[base]\nimage_size = 32\nepochs = 10\n'
        '[[trial]]\nlabel = "a"\nepochs = 3\n'
        '[grid]\nactivation = ["relu", "elu"]\ndropout = [0.0]\n'
    )
    plan = load_sweep(path)
    assert [t.label for t in plan.trials] == [
        "a",
        "activation=relu,dropout=0.0",
        "activation=elu,dropout=0.0",
    ]
    assert [t.train["epochs"] for t in plan.trials] == [2, 5, 5]
    assert plan.trials[2].train == {
        "image_size": 32,
        "epochs": 5,
        "activation": "elu",
        "dropout": 0.0,
    }
    assert [t.train["epochs"] for t in load_sweep(path, epoch_scale=0.01).trials] == [1, 1, 1]
    assert [t.label for t in load_sweep(path, only=["a"]).trials] == ["a"]
    with pytest.raises(ValueError, match="no trials named"):
        load_sweep(path, only=["zzz"])
    path.write_text('[[trial]]\nlabel = "a"\n[[trial]]\nlabel = "a"\n')
    with pytest.raises(ValueError, match="duplicate"):
        load_sweep(path)


def test_shipped_config_reproduces_the_original_rows():
    plan = load_sweep(ROOT / "configs" / "original_table.toml")
    labels = [t.label for t in plan.trials]
    assert labels == [f"try_{i}" for i in range(1, 19)] + ["try_23"]
    by = {t.label: t.train for t in plan.trials}
    for train in by.values():
        load_settings(None, {"train": train})  # every row is a valid [train] section
    row = table_row(
        "try_1",
        {**by["try_1"], "name": by["try_1"]["model"]},
        by["try_1"],
        {"loss": 1.0, "top1": 0.5, "top3": 0.8},
        10,
        1.0,
        "r",
    )
    assert (row["# of layers"], row["image_size"], row["epoch"], row["batchsize"]) == (
        "5",
        32,
        10,
        64,
    )
    assert (
        row["1st_conv2d"],
        row["1st_activation"],
        row["max_pooling2d"],
        row["dropout"],
        row["2nd_or_3rd_activation"],
        row["optimizer"],
    ) == ("(32,3,3)", "Relu", "Max(2,2)", "-", "-", "rmsprop")
    t23 = by["try_23"]
    row = table_row(
        "try_23",
        {**t23, "name": "original_cnn"},
        t23,
        {"loss": 1.0, "top1": 0.5, "top3": 0.8},
        140,
        1.0,
        "r",
    )
    assert (row["# of layers"], row["epoch"], row["batchsize"], row["1st_activation"]) == (
        "7",
        140,
        128,
        "LeakyRelu(alpha=0.01)",
    )
    vgg = {**by["try_17"], "name": "vgg"}
    assert (
        table_row("try_17", vgg, vgg, {"loss": 1, "top1": 0, "top3": 0}, 1, 1, "r")["# of layers"]
        == "13"
    )
    assert [
        t.train["epochs"]
        for t in load_sweep(ROOT / "configs" / "original_table.toml", epoch_scale=0.1).trials
    ][10] == 30


def test_results_table_markdown_and_csv(tmp_path: Path):
    rows = [
        table_row(
            x,
            {"name": "original_cnn", "conv_blocks": 3},
            {"epochs": 2},
            {"loss": 1.5, "top1": a, "top3": 0.9},
            2,
            3.0,
            x,
        )
        for x, a in (("a", 0.5), ("b", 0.7))
    ]
    md, csv_path = write_results(rows, tmp_path, "T")
    assert "Best top-1: **b** (0.7000)" in md.read_text()
    with csv_path.open() as fh:
        assert [r["accuracy"] for r in csv.DictReader(fh)] == ["0.5", "0.7"]


def test_leaky_split_puts_copies_of_one_photo_on_both_sides(tmp_path: Path):
    kept = [{"path": f"c/{i}.jpg", "class": "c"} for i in range(20)]
    augmented = [(tmp_path / f"aug/c__{i}__{k:03d}.jpg", "c") for i in range(20) for k in range(3)]
    manifest = leaky_split(kept, tmp_path / "clean", augmented, tmp_path / "leaky.jsonl")
    records = read_jsonl(manifest)
    assert len(records) == 80 and {r["split"] for r in records} == {"train", "val", "test"}

    def photo(p: str) -> str:
        name = Path(p).stem
        return name.split("__")[1] if "__" in name else name

    test_photos = {photo(r["path"]) for r in records if r["split"] == "test"}
    train_photos = {photo(r["path"]) for r in records if r["split"] == "train"}
    assert test_photos & train_photos  # the leak the study measures


@pytest.fixture
def tiny_storage(tmp_path: Path, small_subset: Path) -> Path:
    """A storage root whose clean/ is the real subset and whose split is made by hand."""
    storage = tmp_path / "storage"
    storage.mkdir()
    (storage / "clean").symlink_to(small_subset)
    records = []
    for c in sorted(d.name for d in small_subset.iterdir()):
        files = [f for f in sorted((small_subset / c).iterdir()) if f.suffix == ".jpg"][:9]
        for i, f in enumerate(files):
            split = "test" if i < 2 else "val" if i < 3 else "train"
            records.append(
                {"path": f"{c}/{f.name}", "class": c, "split": split, "pixel_hash": f.name}
            )
    write_jsonl(storage / "splits" / "split.jsonl", records)
    return storage


TINY = {
    "image_size": 32,
    "batch_size": 8,
    "conv_blocks": 1,
    "first_filters": 4,
    "dense_units": 8,
    "early_stopping_patience": 0,
}


@pytest.mark.slow
def test_sweep_flow_writes_the_table_and_a_rerun_skips_finished_trials(
    prefect_harness, tiny_storage: Path, tmp_path: Path
):
    from flows.sweep import sweep

    path = tmp_path / "s.toml"
    path.write_text(
        '[sweep]\nname = "tiny"\n[base]\nepochs = 2\n[grid]\nactivation = ["relu", "elu"]\n'
    )
    overrides = {"storage_dir": str(tiny_storage), "train": TINY}
    result = sweep(sweep_path=str(path), overrides=overrides, epoch_scale=0.5)
    rows = result["rows"]
    assert [r["trial"] for r in rows] == ["activation=relu", "activation=elu"]
    assert [r["1st_activation"] for r in rows] == ["Relu", "Elu"]
    assert all(r["epochs_run"] == 1 and 0 <= r["accuracy"] <= r["top3"] <= 1 for r in rows)
    with Path(result["results_csv"]).open() as fh:
        assert len(list(csv.DictReader(fh))) == 2
    champion = read_json(tiny_storage / "runs" / "champion.json")
    assert champion["run_id"] in {r["run_id"] for r in rows}
    report = (tiny_storage / "runs" / rows[1]["run_id"] / "report.md").read_text()
    assert "## Champion" in report and "same test split" in report
    history = tiny_storage / "runs" / rows[0]["run_id"] / "history.csv"
    before = history.read_text()
    again = sweep(sweep_path=str(path), overrides=overrides, epoch_scale=0.5)
    assert history.read_text() == before  # not retrained
    assert [r["accuracy"] for r in again["rows"]] == [r["accuracy"] for r in rows]


@pytest.mark.slow
def test_leakage_flow_reports_both_protocols(prefect_harness, tiny_storage: Path):
    from flows.sweep import leakage

    overrides = {
        "storage_dir": str(tiny_storage),
        "train": {**TINY, "epochs": 1},
        "augment": {"multiplier": 1.0, "output_size": 48, "chunk_size": 50},
    }
    result = leakage(overrides=overrides)
    rows = {r["protocol"]: r for r in result["rows"]}
    assert set(rows) == {"original", "ours"}
    # Same photos: the original protocol's pool is every photo plus one copy of each.
    assert rows["original"]["train_images"] + rows["original"]["test_images"] > 36
    assert rows["ours"]["test_images"] == 8
    text = Path(result["report_path"]).read_text()
    assert "The original protocol inflates top-1 by" in text
