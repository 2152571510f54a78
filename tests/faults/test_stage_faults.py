"""Faults at the worst moment of every stage, on real photos, in real processes.

Each stage command runs as its own process (``python -m flows.cli``). A kill is a real SIGKILL
raised at a named point by the test-only ``LANDMARKS_TEST_FAULT=stage:point[:N]`` hook; a full
disk is ``RLIMIT_FSIZE`` in the child; a read-only storage is an immutable (root) or
permission-less (non-root) folder. After each fault the rerun must finish, and ``landmarks
verify`` must find the storage consistent with nothing lost or counted twice.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from landmarks.storage import Layout, exclusive_lock, read_json, read_jsonl, scan_jsonl
from tests.conftest import REPO_ROOT
from tests.faults._stages import (
    AUG,
    CLASSES,
    assert_consistent,
    killed,
    kinds,
    land,
    make_read_only,
    make_writable,
    ok,
    source_fixture,  # noqa: F401  (the `source` fixture)
    stages,
    verify,
)

# ----------------------------------------------------------------------------- SIGKILL


def test_kill_between_raw_rename_and_record(tmp_path: Path, source: Path):
    storage = tmp_path / "storage"
    killed("crawl", "--storage", str(storage), "--source", str(source), fault="crawl:renamed:3")
    rc, report = verify(storage)
    assert rc == 1 and ("raw", "orphan") in kinds(report)
    ok("crawl", "--storage", str(storage), "--source", str(source))
    raw = read_jsonl(Layout(storage).raw_manifest)
    assert len(raw) == sum(CLASSES.values())  # nothing lost, nothing imported twice
    files = [p for p in (storage / "raw").rglob("*") if p.is_file() and p.parent.name in CLASSES]
    assert len(files) == len(raw)
    recovered = [r for r in raw if r.get("recovered")]
    assert len(recovered) == 1 and recovered[0]["recovered_from"] == "recorded intent"
    assert recovered[0]["source"] == "folder" and recovered[0]["original"]  # its provenance
    assert not list((storage / "raw" / ".pending").glob("*.json"))
    assert_consistent(storage)


def test_kill_after_crawl_rename_keeps_the_url(tmp_path: Path, real_raw: Path):
    """The crawl's own commit (RawStore.adopt_file of a staged download): killed after the
    rename, the next crawl's store adopts the file with its URL, so the URL is known."""
    storage = tmp_path / "storage"
    staged = tmp_path / "staging" / ".dl-1.part"
    staged.parent.mkdir(parents=True)
    photo = sorted((real_raw / "petra").iterdir())[0]
    shutil.copyfile(photo, staged)
    url = "https://images.example.org/petra/treasury.jpg"
    script = (
        "import sys; from pathlib import Path; from landmarks.ingest import RawStore; "
        "from landmarks.storage import Layout; "
        "RawStore(Layout(Path(sys.argv[1]))).adopt_file(Path(sys.argv[2]), 'petra', "
        "{'source': 'bing', 'engine': 'bing', 'query': 'petra', 'url': sys.argv[3]}, "
        "name='treasury.jpg')"
    )
    env = {**os.environ, "LANDMARKS_TEST_FAULT": "crawl:renamed"}
    done = subprocess.run(
        [sys.executable, "-c", script, str(storage), str(staged), url],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    layout = Layout(storage)
    assert read_jsonl(layout.raw_manifest) == [] and (layout.raw_dir / "petra").is_dir()

    from landmarks.crawl import known_urls
    from landmarks.ingest import RawStore

    store = RawStore(layout)  # what every crawl opens first
    assert url in store.known_urls and url in known_urls(layout)
    (record,) = store.records
    assert record["path"] == "petra/treasury.jpg" and record["engine"] == "bing"
    assert record["recovered"] is True and record["bytes"] == photo.stat().st_size
    assert_consistent(storage)


@pytest.mark.parametrize(
    ("stage", "fault", "args"),
    [
        ("clean", "clean:written:4", []),
        ("dedup", "dedup:kept-written", []),
        ("split", "jsonl:split.jsonl", []),
        ("augment", "augment:committed:2", AUG),
    ],
)
def test_kill_mid_stage_then_rerun(
    tmp_path: Path, source: Path, stage: str, fault: str, args: list[str]
):
    storage = tmp_path / "storage"
    stages(storage, source, stage)
    killed(stage, "--storage", str(storage), *args, fault=fault)
    rc, report = verify(storage)
    if stage in ("clean", "augment"):  # a file without its record / a run half done
        assert rc == 1 and kinds(report) & {("clean", "orphan"), ("augmented", "incomplete")}
    ok(stage, "--storage", str(storage), *args)
    order = ["clean", "dedup", "split", "augment"]
    for later in order[order.index(stage) + 1 :]:
        ok(later, "--storage", str(storage), *(AUG if later == "augment" else []))
    assert_consistent(storage)
    layout = Layout(storage)
    clean = read_jsonl(layout.clean_manifest)
    assert len({r["raw_path"] for r in clean}) == len(clean), "a photo cleaned twice"
    split = read_jsonl(layout.split_manifest)
    assert len({r["pixel_hash"] for r in split}) == len(split) == len(clean)
    (out_dir,) = [p for p in layout.augmented_dir.iterdir() if p.is_dir()]
    images = list(out_dir.glob("chunk-*/*.jpg"))
    assert len(images) == read_json(out_dir / "manifest.json")["num_images"]
    # A write killed before its rename leaves a temp file no reader takes: verify lists it,
    # --repair removes it.
    rc, report = verify(storage, "--repair")
    assert rc == 0
    assert not [p for p in storage.rglob("*") if p.name.endswith((".tmp", ".part"))]


@pytest.mark.slow
def test_kill_after_model_saved_then_resume(tmp_path: Path, source: Path):
    storage = tmp_path / "storage"
    stages(storage, source, "augment")
    ok("augment", "--storage", str(storage), *AUG)
    config = tmp_path / "tiny.toml"
    config.write_text(
        "[augment]\nmultiplier = 1\nchunk_size = 2\noutput_size = 32\n"
        '[train]\nmodel = "original_cnn"\n'
        "image_size = 32\nbatch_size = 8\nepochs = 1\nconv_blocks = 1\n"
        "first_filters = 4\ndense_units = 8\n"
    )
    args = ["train", "--storage", str(storage), "--config", str(config)]
    killed(*args, fault="train:model-saved")
    rc, report = verify(storage)
    assert rc == 1 and ("runs", "incomplete") in kinds(report)
    [run_id] = [p.name for p in (storage / "runs").iterdir() if p.is_dir()]
    ok(*args, "--run-id", run_id)  # resumes the killed run, no second run
    assert [p.name for p in (storage / "runs").iterdir() if p.is_dir()] == [run_id]
    assert_consistent(storage)


# ----------------------------------------------------------------------------- full disk


def test_disk_full_mid_clean_then_rerun(tmp_path: Path, source: Path):
    storage = tmp_path / "storage"
    stages(storage, source, "clean")
    # Every clean JPEG of these photos is larger than 20 kB: the first image write fails.
    done = land("clean", "--storage", str(storage), fsize=20_000)
    assert done.returncode == 1, done.stdout + done.stderr  # started work failed
    assert "clean stopped: File too large while writing" in done.stderr
    assert str(storage) in done.stderr and "Traceback" not in done.stderr
    # No half-written JPEG where a reader looks, no half manifest line: every record whole.
    assert not [p for p in (storage / "clean").rglob("*") if p.name.startswith(".")]
    assert scan_jsonl(Layout(storage).clean_manifest).torn is None
    rc, report = verify(storage)
    assert not kinds(report) - {("clean", "orphan")}
    ok("clean", "--storage", str(storage))
    raw = read_jsonl(Layout(storage).raw_manifest)
    cleaned = read_jsonl(Layout(storage).clean_manifest)
    quarantined = read_jsonl(Layout(storage).quarantine_manifest)
    assert {r["raw_path"] for r in cleaned + quarantined} == {r["path"] for r in raw}
    assert_consistent(storage)


def test_disk_full_mid_append_leaves_no_half_line(tmp_path: Path):
    """A manifest append cut short by the disk is cut back: whole lines or none."""
    path = tmp_path / "m.jsonl"
    path.write_text('{"a": 1}\n')
    script = (
        "import resource, sys; from landmarks.storage import append_jsonl; "
        "resource.setrlimit(resource.RLIMIT_FSIZE, (40, 40)); "
        "append_jsonl(sys.argv[1], [{'b': 'x' * 100}])"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(path)], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert done.returncode == 1 and "File too large" in done.stderr
    assert str(path) in done.stderr  # the error names the file
    assert path.read_text() == '{"a": 1}\n'


# ----------------------------------------------------------------------------- read-only


def test_read_only_storage_fails_before_any_work(tmp_path: Path, source: Path):
    storage = tmp_path / "storage"
    stages(storage, source, "clean")
    before = sorted(p.relative_to(storage) for p in storage.rglob("*"))
    make_read_only(storage)
    try:
        done = land("clean", "--storage", str(storage))
    finally:
        make_writable(storage)
    assert done.returncode == 2
    assert f"storage folder {storage} is not writable" in done.stderr
    assert "clean:" in done.stderr and "Traceback" not in done.stderr
    assert sorted(p.relative_to(storage) for p in storage.rglob("*")) == before
    ok("clean", "--storage", str(storage))
    assert_consistent(storage)


# ----------------------------------------------------------------------------- the lock


def test_stage_commands_are_busy_while_a_refresh_holds_the_storage(tmp_path: Path):
    storage = tmp_path / "storage"
    with exclusive_lock(storage, "refresh"):
        for stage in ("clean", "dedup", "split", "augment"):
            done = land(stage, "--storage", str(storage))
            assert done.returncode == 1, (stage, done.stderr)  # as for run and refresh
            assert "is busy: a refresh is already running (pid" in done.stderr
    # ... and a refresh started while a stage command runs is told which one holds it.
    from landmarks.storage import StorageBusy

    script = (
        "import sys, time; from landmarks.storage import exclusive_lock; "
        "cm = exclusive_lock(sys.argv[1], 'refresh', 'landmarks clean'); cm.__enter__(); "
        "print('held', flush=True); time.sleep(60)"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", script, str(storage)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        busy = pytest.raises(StorageBusy, match="busy: a landmarks clean is already running")
        with busy, exclusive_lock(storage, "refresh"):
            pass
    finally:
        holder.kill()
        holder.wait()


def test_report_json_is_written(tmp_path: Path, source: Path):
    storage = tmp_path / "storage"
    stages(storage, source, "clean")
    rc, report = verify(storage)
    assert rc == 0 and report["stages"][0]["stage"] == "raw"
    assert report["stages"][0]["records"] == sum(CLASSES.values())
    done = land("verify", "--storage", str(tmp_path / "nowhere"))
    assert done.returncode == 2 and "no storage folder" in done.stderr
    assert json.loads(json.dumps(report))["consistent"] is True


# ----------------------------------------------------------------------------- by hand


def test_a_raw_photo_deleted_by_hand_is_named_and_the_rest_cleaned(tmp_path: Path, source: Path):
    storage = tmp_path / "storage"
    stages(storage, source, "clean")
    layout = Layout(storage)
    gone = read_jsonl(layout.raw_manifest)[0]["path"]
    (layout.raw_dir / gone).unlink()
    done = ok("clean", "--storage", str(storage))
    assert "1 raw photos in raw/manifest.jsonl are gone" in done.stderr and gone in done.stderr
    cleaned = read_jsonl(layout.clean_manifest) + read_jsonl(layout.quarantine_manifest)
    assert len(cleaned) == sum(CLASSES.values()) - 1
    rc, report = verify(storage)
    assert rc == 1 and kinds(report) == {("raw", "missing")}


def test_an_import_is_busy_while_a_refresh_holds_the_storage(tmp_path: Path, source: Path):
    storage = tmp_path / "storage"
    with exclusive_lock(storage, "refresh"):
        done = land("crawl", "--storage", str(storage), "--source", str(source))
    assert done.returncode == 1 and "is busy: a refresh is already running" in done.stderr
    assert not (storage / "raw").exists()


def test_a_lock_left_by_a_killed_refresh_is_a_leftover_and_repair_clears_it(tmp_path: Path):
    storage = tmp_path / "storage"
    script = (
        "import os, signal, sys; from landmarks.storage import exclusive_lock; "
        "cm = exclusive_lock(sys.argv[1], 'refresh'); cm.__enter__(); "
        "os.kill(os.getpid(), signal.SIGKILL)"
    )
    done = subprocess.run([sys.executable, "-c", script, str(storage)], cwd=REPO_ROOT)
    assert done.returncode == -signal.SIGKILL
    assert (storage / ".refresh.lock").read_text().startswith("refresh pid ")
    rc, report = verify(storage)
    leftovers = [f for s in report["stages"] for f in s["findings"] if f["kind"] == "lock"]
    assert rc == 0 and len(leftovers) == 1 and "stale lock note" in leftovers[0]["detail"]
    rc, report = verify(storage, "--repair")
    assert (storage / ".refresh.lock").read_text() == ""
    with exclusive_lock(storage, "refresh"):  # the kernel released the lock with the process
        pass
    assert land("verify", "--storage", str(storage), "--bogus").returncode == 2
