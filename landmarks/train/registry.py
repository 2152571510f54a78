"""Training runs and the champion model.

One folder per run under ``runs/``: ``run.json`` (what it was asked: config, dataset version,
split manifest), ``model.keras``, ``classes.json``, ``metrics.json``, ``report.md``.
``runs/champion.json`` names the one champion; ``runs/promotions.jsonl`` keeps every decision.
A candidate is promoted only when it beats the champion *on the same test split*: when the
champion was measured on another dataset version, it is re-evaluated on the candidate's test
split first.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from landmarks.storage import append_jsonl, atomic_write_json, read_json

log = logging.getLogger(__name__)

RUN_CONFIG = "run.json"
CHAMPION_FILE = "champion.json"
PROMOTIONS_FILE = "promotions.jsonl"
PROMOTION_FILE = "promotion.json"


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
    champion = read_champion(runs_dir)
    runs = []
    for run_dir in sorted(p for p in Path(runs_dir).glob("*") if (p / RUN_CONFIG).exists()):
        entry = read_json(run_dir / RUN_CONFIG)
        metrics_path = run_dir / "metrics.json"
        if metrics_path.exists():
            metrics = read_json(metrics_path)
            entry["top1"] = metrics.get("top1")
            entry["top3"] = metrics.get("top3")
            entry["loss"] = metrics.get("loss")
        entry["champion"] = bool(champion and champion["run_id"] == run_dir.name)
        entry["path"] = str(run_dir)
        runs.append(entry)
    return runs


def read_champion(runs_dir: Path) -> dict[str, Any] | None:
    path = Path(runs_dir) / CHAMPION_FILE
    return read_json(path) if path.exists() else None


def champion_model_path(runs_dir: Path) -> Path:
    """The champion's model file, or a clear error when there is none yet."""
    champion = read_champion(runs_dir)
    if champion is None:
        raise FileNotFoundError(
            f"no champion model in {runs_dir}: train one (`landmarks train`) or pass --model"
        )
    path = Path(champion["model_path"])
    if not path.is_absolute():
        path = Path(runs_dir) / path
    if not path.is_file():
        raise FileNotFoundError(f"the champion's model {path} is missing")
    return path


@dataclass(frozen=True)
class PromotionDecision:
    promoted: bool
    reason: str
    candidate_run: str
    candidate_top1: float
    candidate_loss: float
    champion_run: str | None
    champion_top1: float | None  # on the candidate's test split
    champion_loss: float | None
    dataset_version: str
    decided_at: str

    def markdown(self) -> str:
        verdict = "promoted to champion" if self.promoted else "not promoted"
        lines = [
            "## Champion",
            "",
            f"**{verdict}**: {self.reason}",
            "",
            "| | run | top-1 | loss |",
            "|---|---|---|---|",
            f"| candidate | {self.candidate_run} | {self.candidate_top1:.4f} "
            f"| {self.candidate_loss:.4f} |",
        ]
        if self.champion_run is not None and self.champion_top1 is not None:
            lines.append(
                f"| champion before | {self.champion_run} | {self.champion_top1:.4f} "
                f"| {self.champion_loss:.4f} |"
            )
        lines += ["", f"Both measured on the test split of dataset version {self.dataset_version}."]
        return "\n".join(lines) + "\n"


def beats(candidate: dict[str, Any], champion: dict[str, Any]) -> bool:
    """Higher top-1 wins; an equal top-1 needs a lower loss (ties keep the champion)."""
    if candidate["top1"] != champion["top1"]:
        return candidate["top1"] > champion["top1"]
    return candidate["loss"] < champion["loss"]


def promote_if_better(
    runs_dir: Path,
    run_id: str,
    dataset_version: str,
    metrics: dict[str, Any],
    model_path: Path,
    evaluate_champion: Callable[[Path], dict[str, Any] | None] | None = None,
) -> PromotionDecision:
    """Compare run ``run_id`` with the champion on the same test split; promote if it wins.

    Args:
        metrics: the candidate's test metrics (``top1``, ``loss``...).
        evaluate_champion: metrics of a model file on the candidate's test split, or None
            when that model cannot classify this split's classes; called only when the
            champion was measured on another dataset version. Without it such a champion
            cannot be compared and the candidate is not promoted.
    """
    runs_dir = Path(runs_dir)
    champion = read_champion(runs_dir)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    base: dict[str, Any] = {
        "candidate_run": run_id,
        "candidate_top1": float(metrics["top1"]),
        "candidate_loss": float(metrics["loss"]),
        "dataset_version": dataset_version,
        "decided_at": now,
    }
    champion_metrics: dict[str, Any] | None = None
    if champion is None:
        promoted, reason = True, "there was no champion yet"
    elif champion["run_id"] == run_id:
        promoted, reason = False, "this run is already the champion"
        champion_metrics = champion
    else:
        incompatible = False
        if champion["dataset_version"] == dataset_version:
            champion_metrics = champion
        elif evaluate_champion is not None:
            champion_metrics = evaluate_champion(champion_model_path(runs_dir))
            incompatible = champion_metrics is None
        if incompatible:
            promoted = True
            reason = (
                f"the champion {champion['run_id']} cannot classify this dataset's classes "
                f"(dataset version {dataset_version}), so it is replaced"
            )
        elif champion_metrics is None:
            promoted = False
            reason = (
                f"the champion {champion['run_id']} was measured on dataset version "
                f"{champion['dataset_version']} and could not be re-evaluated on this split"
            )
        else:
            promoted = beats(metrics, champion_metrics)
            word = "beats" if promoted else "does not beat"
            reason = (
                f"top-1 {metrics['top1']:.4f} {word} the champion {champion['run_id']} "
                f"({champion_metrics['top1']:.4f}) on the same test split"
            )
    decision = PromotionDecision(
        promoted=promoted,
        reason=reason,
        champion_run=champion["run_id"] if champion else None,
        champion_top1=float(champion_metrics["top1"]) if champion_metrics else None,
        champion_loss=float(champion_metrics["loss"]) if champion_metrics else None,
        **base,
    )
    if promoted:
        atomic_write_json(
            runs_dir / CHAMPION_FILE,
            {
                "run_id": run_id,
                "model_path": str(Path(model_path).resolve()),
                "dataset_version": dataset_version,
                "top1": float(metrics["top1"]),
                "top3": metrics.get("top3"),
                "loss": float(metrics["loss"]),
                "promoted_at": now,
            },
        )
    atomic_write_json(runs_dir / run_id / PROMOTION_FILE, asdict(decision))
    append_jsonl(runs_dir / PROMOTIONS_FILE, [asdict(decision)])
    log.info("champion: %s %s", run_id, reason)
    return decision
