from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task
from prefect.logging import get_run_logger

from landmarks.train import evaluate, registry
from landmarks.train import sweep as sweep_core
from tasks import _ui


@task(name="evaluate", retries=0)
def evaluate_task(
    run_dir: Path,
    split_manifest: Path,
    clean_dir: Path,
    image_size: int | None = None,
    batch_size: int = 64,
    top_k: int = 3,
    extra: dict[str, Any] | None = None,
    dataset_version: str | None = None,
    promote: bool = True,
) -> evaluate.EvaluationResult:
    """Evaluate a run on the untouched test split, then (``promote``) compare it with the
    champion on that same split; the report and its artifact say what was decided."""
    result = evaluate.evaluate_run(
        run_dir, split_manifest, clean_dir, image_size, batch_size, top_k, extra
    )
    m = result.metrics
    logger = get_run_logger()
    logger.info(
        "test top-1 %.4f, top-3 %.4f, loss %.4f", m["top1"], m.get("top3", float("nan")), m["loss"]
    )
    if promote and dataset_version:

        def champion_on_this_split(model_path: Path) -> dict[str, Any] | None:
            try:
                return evaluate.evaluate_split(
                    model_path,
                    split_manifest,
                    clean_dir,
                    run_dir / "champion_eval",
                    batch_size,
                    top_k,
                    title="The champion on this run's test split",
                ).metrics
            except ValueError as exc:  # the champion knows other classes
                logger.warning("champion not comparable: %s", exc)
                return None

        decision = registry.promote_if_better(
            run_dir.parent,
            run_dir.name,
            dataset_version,
            m,
            run_dir / "model.keras",
            champion_on_this_split,
        )
        evaluate.append_to_report(result.report_path, decision.markdown())
        logger.info("champion: %s", decision.reason)
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


@task(name="evaluate-folder", retries=0)
def evaluate_folder_task(
    model_path: Path, data_dir: Path, out_dir: Path, batch_size: int = 64, top_k: int = 3
) -> evaluate.EvaluationResult:
    result = evaluate.evaluate_folder(model_path, data_dir, out_dir, None, batch_size, top_k)
    _ui.markdown(
        "evaluation-report",
        result.report_path.read_text(encoding="utf-8"),
        f"Evaluation of {model_path} on {data_dir}",
    )
    return result


@task(name="sweep-results", retries=0)
def sweep_results_task(rows: list[dict[str, Any]], out_dir: Path, title: str) -> tuple[Path, Path]:
    md_path, csv_path = sweep_core.write_results(rows, out_dir, title)
    _ui.table("sweep-results", rows, title)
    _ui.markdown("sweep-report", md_path.read_text(encoding="utf-8"), title)
    get_run_logger().info("sweep results: %s, %s", md_path, csv_path)
    return md_path, csv_path


@task(name="leakage-report", retries=0)
def leakage_report_task(rows: list[dict[str, Any]], out_path: Path) -> Path:
    from landmarks.storage import atomic_write_text

    text = sweep_core.render_leakage(rows)
    atomic_write_text(out_path, text)
    _ui.markdown("leakage-study", text, "Leakage study: original protocol vs ours")
    return out_path
