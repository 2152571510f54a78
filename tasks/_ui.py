"""Progress, table and link artifacts shared by the tasks.

Every artifact has a fixed key, so the UI's Artifacts page shows its history across runs (the
per-class counts of every refresh, the report of every training). Keys are lower-case with
dashes, as Prefect requires.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from landmarks.storage import Layout, read_json, read_jsonl


def progress_reporter(
    key: str, description: str, min_interval_s: float = 2.0
) -> Callable[[int, int], None]:
    """A core-style ``progress(done, total)`` callback that updates a Prefect progress artifact,
    at most every ``min_interval_s`` seconds (and always at the end)."""
    artifact_id = create_progress_artifact(0.0, key=key, description=description)
    last = [0.0]

    def report(done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - last[0] < min_interval_s:
            return
        last[0] = now
        update_progress_artifact(artifact_id, 100.0 * done / total if total else 100.0)

    return report


def table(key: str, rows: list[dict[str, Any]], description: str) -> None:
    create_table_artifact(key=key, table=rows, description=description)


def markdown(key: str, text: str, description: str) -> None:
    create_markdown_artifact(key=key, markdown=text, description=description)


def per_class_rows(counts: dict[str, int], column: str = "images") -> list[dict[str, Any]]:
    return [{"class": name, column: n} for name, n in sorted(counts.items())]


def link(key: str, path: Path, description: str) -> None:
    """A link to a file on the storage volume (a report, a plot) as a ``file://`` URI."""
    path = Path(path).resolve()
    create_link_artifact(key=key, link=path.as_uri(), link_text=path.name, description=description)


def _count_by_class(records: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in records:
        counts[r["class"]] = counts.get(r["class"], 0) + 1
    return counts


def stage_counts(storage_dir: Path, augmented_dir: Path | None = None) -> list[dict[str, Any]]:
    """Images per class at each stage, read from the stages' manifests."""
    layout = Layout(Path(storage_dir))
    raw = _count_by_class(read_jsonl(layout.raw_manifest))
    clean = (
        {
            d.name: sum(1 for f in d.iterdir() if f.suffix == ".jpg")
            for d in sorted(layout.clean_dir.iterdir())
            if d.is_dir()
        }
        if layout.clean_dir.is_dir()
        else {}
    )
    quarantined = _count_by_class(read_jsonl(layout.quarantine_manifest))
    kept = _count_by_class(read_jsonl(layout.dedup_dir / "kept.jsonl"))
    split_rows = read_jsonl(layout.split_manifest)
    per_split = {
        s: _count_by_class([r for r in split_rows if r["split"] == s])
        for s in ("train", "val", "test")
    }
    augmented: dict[str, int] = {}
    if augmented_dir is not None and (Path(augmented_dir) / "manifest.json").is_file():
        m = read_json(Path(augmented_dir) / "manifest.json")
        before = m.get("per_class_before", {})
        augmented = {c: n - before.get(c, 0) for c, n in m.get("per_class_after", {}).items()}
    classes = sorted(set(raw) | set(clean) | set(kept) | set(quarantined))
    return [
        {
            "class": c,
            "raw": raw.get(c, 0),
            "quarantined": quarantined.get(c, 0),
            "clean": clean.get(c, 0),
            "kept": kept.get(c, 0),
            "duplicates_dropped": max(0, clean.get(c, 0) - kept.get(c, 0)),
            "train": per_split["train"].get(c, 0),
            "val": per_split["val"].get(c, 0),
            "test": per_split["test"].get(c, 0),
            "augmented": augmented.get(c, 0),
        }
        for c in classes
    ]


@task(name="stage-counts", retries=0)
def stage_counts_task(storage_dir: Path, augmented_dir: Path | None = None) -> list[dict]:
    rows = stage_counts(storage_dir, augmented_dir)
    table("images-per-stage", rows, "Images per class at each stage of this refresh")
    return rows


# Files of a training run worth a click from the UI, if the run wrote them.
RUN_FILES = {
    "report.md": ("training-report-file", "The run's markdown report"),
    "report.html": ("training-report-html", "The run's HTML report"),
    "confusion_matrix.png": ("confusion-matrix-plot", "Confusion matrix on the test split"),
    "training_curves.png": ("training-curves-plot", "Loss and accuracy per epoch"),
    "misclassified.png": ("misclassified-gallery", "Misclassified test photos"),
    "metrics.json": ("training-metrics-file", "Test metrics as JSON"),
}


@task(name="run-links", retries=0)
def run_links_task(run_dir: Path) -> list[str]:
    """Link artifacts to the reports and plots a training run left in its folder."""
    linked = []
    for name, (key, description) in RUN_FILES.items():
        path = Path(run_dir) / name
        if path.is_file():
            link(key, path, f"{description} (run {Path(run_dir).name})")
            linked.append(name)
    return linked
