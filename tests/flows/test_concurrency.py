"""Concurrency and reruns of the refresh flow, on real photos, under an ephemeral Prefect server:
two overlapping refreshes, a rerun after a crash mid-augmentation, and the Dask fan-out."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest

from flows.refresh import refresh
from landmarks.storage import StorageBusy, read_json, read_jsonl
from tests.conftest import make_subset
from tests.prefect_api import settled_task_runs, settled_task_states

pytestmark = pytest.mark.slow


def _overrides(storage: Path, source: Path, chunk_size: int = 6) -> dict:
    return {
        "storage_dir": str(storage),
        "source": str(source),
        "augment": {"multiplier": 0.5, "chunk_size": chunk_size, "output_size": 48},
    }


STAGES = {"clean", "dedup", "split", "augment"}


def _task_states(flow_run_id) -> dict[str, str]:
    """Task name -> final state name of one flow run's stage tasks."""
    return settled_task_states(flow_run_id, expect=STAGES)


def _assert_consistent(storage: Path) -> None:
    """Every manifest parses and points at files that exist; no temp file is left."""
    assert not [p for p in storage.rglob("*") if ".tmp" in p.name], "temp files left behind"
    clean = read_jsonl(storage / "clean" / "manifest.jsonl")
    assert clean and all((storage / "clean" / r["path"]).is_file() for r in clean if r.get("path"))
    split = read_jsonl(storage / "splits" / "split.jsonl")
    assert split and all((storage / "clean" / r["path"]).is_file() for r in split)
    assert len({r["path"] for r in split}) == len(split)
    for manifest in (storage / "augmented").glob("*/manifest.json"):
        m = read_json(manifest)
        files = list(manifest.parent.glob("chunk-*/*.jpg"))
        assert len(files) == m["num_images"]


def test_overlapping_refreshes_and_rerun_after_crash(
    prefect_harness, tmp_path: Path, small_subset: Path, monkeypatch: pytest.MonkeyPatch
):
    import landmarks.clean

    storage = tmp_path / "storage"
    outcome: dict = {}
    # Hold the first refresh inside its clean stage (storage locked, work half done) until the
    # second refresh has been answered, so the overlap is certain whatever the machine's speed.
    in_clean, release = threading.Event(), threading.Event()
    real_clean_raw = landmarks.clean.clean_raw

    def gated_clean_raw(*args, **kwargs):
        in_clean.set()
        assert release.wait(timeout=300), "the test never released the first refresh"
        return real_clean_raw(*args, **kwargs)

    monkeypatch.setattr(landmarks.clean, "clean_raw", gated_clean_raw)

    def first() -> None:
        try:
            outcome["state"] = refresh(
                overrides=_overrides(storage, small_subset), return_state=True
            )
        finally:
            release.set()

    runner = threading.Thread(target=first)
    runner.start()
    assert in_clean.wait(timeout=180), "the first refresh never reached its clean stage"

    # The second refresh, while the first holds the storage: refused at once, clearly.
    started = time.monotonic()
    try:
        with pytest.raises(StorageBusy, match="busy: a refresh is already running"):
            refresh(overrides=_overrides(storage, small_subset))
    finally:
        release.set()
    assert time.monotonic() - started < 60
    monkeypatch.setattr(landmarks.clean, "clean_raw", real_clean_raw)
    runner.join(timeout=300)
    first_state = outcome["state"]
    assert first_state.is_completed(), first_state.message
    first_result = first_state.result()
    _assert_consistent(storage)

    # A crash mid-augmentation: the manifest and the last chunk never got written.
    out_dir = Path(first_result["augmented_dir"])
    chunks = sorted(out_dir.glob("chunk-*"))
    assert len(chunks) >= 2
    (out_dir / "manifest.json").unlink()
    shutil.rmtree(chunks[-1])
    clean_manifest = (storage / "clean" / "manifest.jsonl").read_text()

    rerun = refresh(overrides=_overrides(storage, small_subset), return_state=True)
    assert rerun.is_completed()
    states = _task_states(rerun.state_details.flow_run_id)
    # Finished stages come from the cache (keyed on their manifests' content)...
    assert states["clean"] == states["dedup"] == "Cached", states
    # (split's previous assignment is one of its inputs: recomputed once, to the same result)
    assert states["split"] == "Completed"
    assert (storage / "clean" / "manifest.jsonl").read_text() == clean_manifest
    # ...and augmentation redoes the missing chunk only.
    assert states["augment"] == "Completed"
    result = rerun.result()
    assert result["dataset_version"] == first_result["dataset_version"]
    assert result["num_augmented"] == first_result["num_augmented"]
    assert result["num_new"] == 0 and result["growth"] == 0.0
    _assert_consistent(storage)

    # Content, not paths: new photos change raw/manifest.jsonl under the same path, and the
    # stages after it run again; the growth is reported for retrain-on-growth.
    more = make_subset(tmp_path / "more", {"petra": 24})
    grown = refresh(overrides=_overrides(storage, more), return_state=True)
    assert grown.is_completed()
    states = _task_states(grown.state_details.flow_run_id)
    assert states["clean"] == states["dedup"] == states["split"] == "Completed", states
    grown_result = grown.result()
    assert grown_result["num_new"] > 0
    assert grown_result["growth"] == grown_result["num_new"] / result["num_kept"]
    _assert_consistent(storage)


def test_dask_task_runner_fans_out_augmentation(
    prefect_harness, tmp_path: Path, small_subset: Path
):
    from prefect_dask import DaskTaskRunner

    storage = tmp_path / "storage"
    runner = DaskTaskRunner(
        cluster_kwargs={"n_workers": 2, "threads_per_worker": 1, "dashboard_address": None}
    )
    state = refresh.with_options(task_runner=runner)(
        overrides=_overrides(storage, small_subset, chunk_size=4),
        fan_out_augment=True,
        return_state=True,
    )
    assert state.is_completed(), state.message
    result = state.result()
    out_dir = Path(result["augmented_dir"])
    plan_total = result["num_augmented"]
    chunks = sorted(out_dir.glob("chunk-*"))
    assert len(chunks) == -(-plan_total // 4) >= 3
    runs = settled_task_runs(state.state_details.flow_run_id, expect={"augment-chunk"})
    chunk_runs = [r for r in runs if r.name.startswith("augment-chunk")]
    assert len(chunk_runs) == len(chunks)
    assert all(r.state.is_completed() for r in chunk_runs)
    # The stage task after the fan-out found every chunk already committed.
    assert read_json(out_dir / "manifest.json")["num_chunks"] == len(chunks)
    _assert_consistent(storage)
