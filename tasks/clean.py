from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.logging import get_run_logger

from landmarks import clean
from landmarks.storage import Layout
from tasks import _policy, _ui


@task(
    name="clean",
    retries=1,
    retry_condition_fn=_policy.retry_on_transient,
    cache_policy=_policy.CLEAN_CACHE,
)  # noqa: E501
def clean_task(storage_dir: Path, options: clean.CleanOptions) -> clean.CleanResult:
    progress = _ui.progress_reporter("clean-progress", "Decoding and normalising raw images")
    result = clean.clean_raw(Layout(storage_dir), options, progress=progress)
    get_run_logger().info(
        "clean: %d new clean, %d quarantined %s, %d already done",
        result.cleaned,
        result.quarantined,
        result.reasons,
        result.skipped,
    )
    rows = [{"reason": k, "files": v} for k, v in sorted(result.reasons.items())]
    _ui.table(
        "quarantine-reasons",
        rows or [{"reason": "none", "files": 0}],
        "Files quarantined in this run, by reason",
    )
    return result
