"""Sweeps (a grid of training configurations) and the leakage study.

A sweep file is TOML::

    [sweep]
    name = "original-table"
    epoch_scale = 1.0          # multiplies every trial's epochs (CPU: 0.1 or less)

    [base]                     # [train] fields shared by every trial
    model = "original_cnn"

    [[trial]]                  # explicit rows...
    label = "try_1"
    image_size = 32

    [grid]                     # ...and/or a cartesian product, one trial per combination
    activation = ["relu", "elu"]

The rows of the results table carry the original project's columns, so a reproduced table
reads like the original.
"""

from __future__ import annotations

import csv
import io
import itertools
import logging
import random
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from landmarks.storage import atomic_write_text, digest_records, write_jsonl

log = logging.getLogger(__name__)

COLUMNS = [
    "trial",
    "loss",
    "accuracy",
    "top3",
    "# of layers",
    "image_size",
    "epoch",
    "epochs_run",
    "batchsize",
    "1st_conv2d",
    "1st_activation",
    "max_pooling2d",
    "dropout",
    "2nd_or_3rd_activation",
    "optimizer",
    "train_seconds",
    "run_id",
]


@dataclass(frozen=True)
class Trial:
    label: str
    train: dict[str, Any]  # [train] settings for this trial (base merged in)


@dataclass(frozen=True)
class SweepPlan:
    name: str
    epoch_scale: float
    trials: list[Trial]


def scale_epochs(epochs: int, scale: float) -> int:
    return max(1, round(epochs * scale))


def load_sweep(
    path: Path, epoch_scale: float | None = None, only: list[str] | None = None
) -> SweepPlan:
    """Read a sweep file into trials; ``epoch_scale`` overrides the file's; ``only`` keeps
    the named trials."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sweep file {path} not found")
    with path.open("rb") as fh:
        data = tomllib.load(fh)
    head = data.get("sweep", {})
    name = str(head.get("name") or path.stem)
    scale = float(epoch_scale if epoch_scale is not None else head.get("epoch_scale", 1.0))
    if scale <= 0:
        raise ValueError("epoch_scale must be > 0")
    base = dict(data.get("base", {}))
    trials: list[Trial] = []
    for i, row in enumerate(data.get("trial", []), start=1):
        row = dict(row)
        label = str(row.pop("label", f"trial_{i}"))
        trials.append(Trial(label, {**base, **row}))
    grid = data.get("grid", {})
    if grid:
        keys = sorted(grid)
        for values in itertools.product(
            *(grid[k] if isinstance(grid[k], list) else [grid[k]] for k in keys)
        ):
            combo = dict(zip(keys, values, strict=True))
            label = ",".join(f"{k}={v}" for k, v in combo.items())
            trials.append(Trial(label, {**base, **combo}))
    if not trials:
        raise ValueError(f"{path} defines no [[trial]] rows and no [grid]")
    labels = [t.label for t in trials]
    duplicates = sorted({x for x in labels if labels.count(x) > 1})
    if duplicates:
        raise ValueError(f"{path}: duplicate trial labels {duplicates}")
    if only:
        missing = sorted(set(only) - set(labels))
        if missing:
            raise ValueError(f"no trials named {missing} in {path}; it has {labels}")
        trials = [t for t in trials if t.label in only]
    scaled = []
    for t in trials:
        train = dict(t.train)
        train["epochs"] = scale_epochs(int(train.get("epochs", 20)), scale)
        scaled.append(Trial(t.label, train))
    return SweepPlan(name=name, epoch_scale=scale, trials=scaled)


def trial_run_id(sweep_name: str, dataset_version: str, label: str) -> str:
    """Stable per (sweep, dataset, trial): rerunning a sweep finds and resumes its runs."""
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in label)
    return f"sweep-{sweep_name}-{dataset_version[:8]}-{safe}"


def layers_label(model: dict[str, Any]) -> str:
    """The original table's '# of layers' for a model spec: 2 blocks -> 5, 3 -> 7 (each
    block a Conv2D + pooling, plus the dense layer), VGG -> its conv layer count."""
    from_name = model.get("name", "original_cnn")
    blocks = int(model.get("conv_blocks", 3))
    if from_name == "original_cnn":
        return str(2 * blocks + 1)
    if from_name == "vgg":
        return str(sum((2, 2, 3, 3, 3)[:blocks]))
    return from_name


def _activation_label(name: str, alpha: float) -> str:
    return {"relu": "Relu", "elu": "Elu"}.get(name, f"LeakyRelu(alpha={alpha:g})")


def table_row(
    label: str,
    model: dict[str, Any],
    train: dict[str, Any],
    metrics: dict[str, Any],
    epochs_run: int,
    train_seconds: float,
    run_id: str,
) -> dict[str, Any]:
    """One results row in the original table's columns (plus top-3, epochs run, time)."""
    activation = model.get("activation", "leaky_relu")
    alpha = float(model.get("leaky_alpha", 0.01))
    later = model.get("later_activation", "same")
    later_label = (
        "-"
        if later == "none"
        else _activation_label(activation if later == "same" else later, alpha)
    )
    pool = int(model.get("pool_size", 2))
    pooling = "Max" if model.get("pooling", "max") == "max" else "Avg"
    k = int(model.get("kernel_size", 3))
    dropout = float(model.get("dropout", 0.0))
    return {
        "trial": label,
        "loss": round(float(metrics["loss"]), 4),
        "accuracy": round(float(metrics["top1"]), 4),
        "top3": round(float(metrics.get("top3", float("nan"))), 4),
        "# of layers": layers_label(model),
        "image_size": train.get("image_size", model.get("image_size")),
        "epoch": train.get("epochs"),
        "epochs_run": epochs_run,
        "batchsize": train.get("batch_size"),
        "1st_conv2d": f"({model.get('first_filters', 32)},{k},{k})",
        "1st_activation": _activation_label(activation, alpha),
        "max_pooling2d": f"{pooling}({pool},{pool})",
        "dropout": f"{dropout:g}" if dropout else "-",
        "2nd_or_3rd_activation": later_label,
        "optimizer": train.get("optimizer", "adam"),
        "train_seconds": round(train_seconds, 1),
        "run_id": run_id,
    }


def render_table(rows: list[dict[str, Any]], title: str) -> str:
    lines = [f"# {title}", "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        lines.append("| " + " | ".join(str(r.get(c, "")) for c in COLUMNS) + " |")
    if rows:
        best = max(rows, key=lambda r: (r["accuracy"], -r["loss"]))
        lines += ["", f"Best top-1: **{best['trial']}** ({best['accuracy']:.4f})."]
    return "\n".join(lines) + "\n"


def write_results(rows: list[dict[str, Any]], out_dir: Path, title: str) -> tuple[Path, Path]:
    """``results.md`` and ``results.csv`` in ``out_dir``, written atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    md_path, csv_path = out_dir / "results.md", out_dir / "results.csv"
    atomic_write_text(md_path, render_table(rows, title))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(csv_path, buf.getvalue())
    return md_path, csv_path


# ---------------------------------------------------------------------------------------------
# Leakage study: the original protocol (augment everything, then split) next to ours.


def leaky_split(
    kept: list[dict[str, Any]],
    clean_dir: Path,
    augmented: list[tuple[Path, str]],
    out_path: Path,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 42,
) -> Path:
    """The original project's protocol: pool every clean image with the augmented copies of
    *all* of them, then split the pool at random per class. Copies of one photo land on both
    sides, which is the leak. Writes a split manifest with absolute paths."""
    pool: dict[str, list[str]] = {}
    for r in kept:
        pool.setdefault(r["class"], []).append(str((Path(clean_dir) / r["path"]).resolve()))
    for path, class_name in augmented:
        pool.setdefault(class_name, []).append(str(Path(path).resolve()))
    rng = random.Random(seed)
    records = []
    for class_name in sorted(pool):
        members = sorted(pool[class_name])
        rng.shuffle(members)
        n_test = max(1, round(test_fraction * len(members)))
        n_val = round(val_fraction * len(members))
        for i, p in enumerate(members):
            split = "test" if i < n_test else "val" if i < n_test + n_val else "train"
            records.append({"path": p, "class": class_name, "split": split})
    write_jsonl(out_path, records)
    log.info("leaky split: %d images (%s)", len(records), digest_records(records)[:8])
    return out_path


def render_leakage(rows: list[dict[str, Any]]) -> str:
    """Markdown: each protocol's numbers and how much the leak inflates them."""
    lines = [
        "# Leakage study",
        "",
        "Same photos, same model, same epochs. *original*: augment every image, then split "
        "(augmented copies of test photos are trained on). *ours*: split first (after dedup), "
        "augment the train split only.",
        "",
        "| protocol | train images | test images | test loss | top-1 | top-3 |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['protocol']} | {r['train_images']} | {r['test_images']} | {r['loss']:.4f} "
            f"| {r['top1']:.4f} | {r['top3']:.4f} |"
        )
    by = {r["protocol"]: r for r in rows}
    if "original" in by and "ours" in by:
        d1 = by["original"]["top1"] - by["ours"]["top1"]
        d3 = by["original"]["top3"] - by["ours"]["top3"]
        lines += [
            "",
            f"The original protocol inflates top-1 by **{d1:+.4f}** and top-3 by {d3:+.4f}.",
        ]
    return "\n".join(lines) + "\n"
