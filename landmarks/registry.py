"""Training runs: one folder per run under ``runs/`` with its config, model and metrics."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from landmarks.storage import atomic_write_json, read_json

RUN_CONFIG = "run.json"


def new_run_id(dataset_version: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{dataset_version[:8]}-{secrets.token_hex(2)}"


def create_run(runs_dir: Path, run_id: str, config: dict[str, Any]) -> Path:
    """Make ``runs/<run_id>/`` and record what the run was asked to do (idempotent)."""
    run_dir = runs_dir / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    if not (run_dir / RUN_CONFIG).exists():
        atomic_write_json(
            run_dir / RUN_CONFIG,
            {"run_id": run_id, "created_at": datetime.now(UTC).isoformat(), **config},
        )
    return run_dir


def list_runs(runs_dir: Path) -> list[dict[str, Any]]:
    """Every run with its config and, when evaluated, its metrics; oldest first."""
    runs = []
    for run_dir in sorted(p for p in Path(runs_dir).glob("*") if (p / RUN_CONFIG).exists()):
        entry = read_json(run_dir / RUN_CONFIG)
        metrics_path = run_dir / "metrics.json"
        if metrics_path.exists():
            metrics = read_json(metrics_path)
            entry["top1"] = metrics.get("top1")
            entry["top3"] = metrics.get("top3")
        entry["path"] = str(run_dir)
        runs.append(entry)
    return runs
