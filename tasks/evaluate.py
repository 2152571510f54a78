from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task
from prefect.logging import get_run_logger

from landmarks import evaluate
from tasks import _ui


@task(name="evaluate", retries=0)
def evaluate_task(
    run_dir: Path,
    split_manifest: Path,
    clean_dir: Path,
    image_size: int,
    batch_size: int = 64,
    top_k: int = 3,
    extra: dict[str, Any] | None = None,
) -> evaluate.EvaluationResult:
    result = evaluate.evaluate_run(
        run_dir, split_manifest, clean_dir, image_size, batch_size, top_k, extra
    )
    m = result.metrics
    get_run_logger().info(
        "test top-1 %.4f, top-3 %.4f, loss %.4f", m["top1"], m.get("top3", float("nan")), m["loss"]
    )
    _ui.markdown(
        "training-report",
        result.report_path.read_text(encoding="utf-8"),
        f"Evaluation of run {run_dir.name}",
    )
    _ui.table(
        "per-class-metrics",
        [
            {"class": c, **{k: round(v, 4) if isinstance(v, float) else v for k, v in pc.items()}}
            for c, pc in m["per_class"].items()
        ],
        "Per-class precision, recall and F1 on the test split",
    )
    return result
