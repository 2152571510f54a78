from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.logging import get_run_logger

from landmarks.review import decisions, suspects
from landmarks.storage import Layout
from tasks import _ui


@task(name="apply-review", retries=0)
def apply_review_task(
    storage_dir: Path, kept_path: Path, max_distance: int
) -> decisions.ApplyResult:
    """Honour review decisions: the split reads the keepers this returns."""
    result = decisions.apply_to_kept(Layout(storage_dir), kept_path, max_distance)
    get_run_logger().info(
        "review decisions: %d of %d kept, %d removed, %d relabelled (%d by near duplicate)",
        result.num_out,
        result.num_in,
        result.removed,
        result.relabelled,
        result.matched_near,
    )
    if result.removed or result.relabelled:
        _ui.table(
            "review-applied",
            [
                {
                    "kept in": result.num_in,
                    "kept out": result.num_out,
                    "removed": result.removed,
                    "relabelled": result.relabelled,
                    "matched by near duplicate": result.matched_near,
                }
            ],
            "Review decisions applied before the split",
        )
    return result


@task(name="suspects", retries=0)
def suspects_task(
    storage_dir: Path,
    options: suspects.SuspectsOptions,
    top: int = 40,
    review_url: str = "http://127.0.0.1:8765/",
    auto_remove_confidence: float | None = None,
) -> suspects.StorageSuspects:
    """Score the current dataset out of fold, publish the top suspects and the review link,
    and, if configured, remove the most confident ones automatically (reported as such)."""
    layout = Layout(storage_dir)
    logger = get_run_logger()
    kept = decisions.reviewed_kept_path(layout)
    if not kept.exists():
        kept = layout.dedup_dir / "kept.jsonl"
    progress = _ui.progress_reporter("suspects-progress", "Decoding photos for suspects")
    result = suspects.suspects_for_storage(
        layout.clean_dir, kept, decisions.suspects_path(layout), options, top, progress
    )
    logger.info(
        "suspects: %d photos scored (out-of-fold top-1 %.3f), %d likely swaps, %d outliers -> %s",
        result.num_images,
        result.accuracy,
        result.num_swaps,
        result.num_outliers,
        result.path,
    )
    _ui.table(
        "top-suspects",
        [
            {
                "rank": i + 1,
                "photo": s["path"],
                "label": s["label"],
                "suggested": s["suggested"],
                "score": s["score"],
                "confidence in suggested": s["suggested_confidence"],
                "flags": " ".join(s["flags"]),
            }
            for i, s in enumerate(result.top)
        ],
        f"Top {len(result.top)} suspects: photos whose label the model doubts most",
    )
    auto: list[dict] = []
    if auto_remove_confidence is not None:
        auto = decisions.auto_remove(
            decisions.DecisionStore(decisions.decisions_path(layout)),
            suspects.read_ranked(result.path),
            auto_remove_confidence,
            layout.clean_dir,
        )
        logger.info(
            "auto-removed %d suspects at >= %.2f confidence in another class",
            len(auto),
            auto_remove_confidence,
        )
        _ui.table(
            "auto-removed",
            [
                {"photo": d["path"], "label": d["label"], "by": d["by"], "why": d.get("note")}
                for d in auto
            ],
            f"Removed automatically (confidence >= {auto_remove_confidence}); "
            "the next refresh drops them; undo any on the review page",
        )
    _ui.markdown(
        "review-link",
        f"## Review the suspects\n\n{result.num_swaps} likely label swaps and "
        f"{result.num_outliers} outliers among {result.num_images} photos"
        + (f"; {len(auto)} removed automatically" if auto_remove_confidence is not None else "")
        + f".\n\nStart the page with `landmarks review` and open [{review_url}]({review_url}); "
        "decisions apply at the next refresh.",
        "Link to the review page",
    )
    return result
