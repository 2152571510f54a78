"""A storage damaged on purpose (orphan photo, torn manifest line, missing augmented file,
clean image deleted by hand): ``verify`` finds each, ``verify --repair`` then a refresh leave
it consistent with every photo still there, and the refresh says what it found missing."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from landmarks.integrity import verify_storage
from landmarks.storage import Layout, read_jsonl
from tests.conftest import real_files
from tests.faults._stages import (
    AUG,
    CLASSES,
    make_read_only,
    make_writable,
    ok,
    source_fixture,  # noqa: F401  (the `source` fixture)
    stages,
)

pytestmark = pytest.mark.slow


def damage(storage: Path) -> dict[str, str]:
    """Break the storage the four ways the acceptance names; returns what was broken."""
    layout = Layout(storage)
    orphan = layout.raw_dir / "petra" / "dropped-in-by-hand.jpg"
    shutil.copyfile(real_files("petra")[-1], orphan)  # a photo no manifest knows
    with layout.clean_manifest.open("ab") as fh:  # power cut mid-append
        fh.write(b'{"path": "petra/0123", "class": "pe')
    chunk_file = sorted(layout.augmented_dir.glob("*/chunk-00000/*.jpg"))[0]
    chunk_file.unlink()
    clean_image = layout.clean_dir / read_jsonl(layout.split_manifest)[0]["path"]
    clean_image.unlink()
    return {
        "orphan": orphan.relative_to(storage).as_posix(),
        "chunk": chunk_file.relative_to(storage).as_posix(),
        "clean": clean_image.relative_to(storage).as_posix(),
    }


def test_verify_finds_damage_repair_and_refresh_make_it_whole(
    prefect_harness, tmp_path: Path, source: Path
):
    storage = tmp_path / "storage"
    stages(storage, source, "augment")
    ok("augment", "--storage", str(storage), *AUG)
    assert verify_storage(storage).consistent
    raw_before = {p.name for p in (storage / "raw").rglob("*.*") if p.parent.name in CLASSES}

    broken = damage(storage)
    report = verify_storage(storage)
    found = {(f.kind, f.path.split(":")[0]) for f in report.findings if f.severity == "problem"}
    assert ("orphan", broken["orphan"]) in found
    assert ("torn", "clean/manifest.jsonl") in found
    assert ("missing", broken["chunk"]) in found
    assert ("missing", broken["clean"]) in found
    assert not report.consistent

    repaired = verify_storage(storage, repair=True)
    assert {f.kind for f in repaired.findings if f.repaired} >= {"orphan", "torn"}
    assert (storage / "clean" / "manifest.jsonl.torn").read_bytes().startswith(b'{"path"')

    from flows.refresh import refresh

    said: list[logging.LogRecord] = []
    listener = logging.Handler(logging.WARNING)
    listener.emit = said.append  # type: ignore[method-assign]
    logging.getLogger("landmarks").addHandler(listener)
    try:
        refresh(
            overrides={
                "storage_dir": str(storage),
                "source": str(source),
                "augment": {"multiplier": 1, "chunk_size": 2, "output_size": 32},
            }
        )
    finally:
        logging.getLogger("landmarks").removeHandler(listener)
    # The refresh says so: a warning in its log (shown in the Prefect UI as well).
    assert any("1 clean images are gone" in r.getMessage() for r in said)

    final = verify_storage(storage)
    assert final.consistent, [f for f in final.findings if f.severity == "problem"]
    raw_after = {p.name for p in (storage / "raw").rglob("*.*") if p.parent.name in CLASSES}
    assert raw_after == raw_before | {"dropped-in-by-hand.jpg"}  # every photo still there
    assert (storage / broken["clean"]).is_file()
    records = read_jsonl(Layout(storage).raw_manifest)
    assert len(records) == len(raw_after)
    adopted = [r for r in records if r.get("recovered")]
    assert [r["path"] for r in adopted] == ["petra/dropped-in-by-hand.jpg"]
    assert adopted[0]["width"] > 0 and adopted[0]["class"] == "petra"


def test_a_refresh_on_a_read_only_storage_fails_before_any_work(
    prefect_harness, tmp_path: Path, source: Path
):
    from flows.refresh import refresh

    storage = tmp_path / "storage"
    storage.mkdir()
    make_read_only(storage)
    try:
        state = refresh(
            overrides={"storage_dir": str(storage), "source": str(source)}, return_state=True
        )
    finally:
        make_writable(storage)
    assert state.is_failed()
    assert f"storage folder {storage} is not writable" in state.message
    assert list(storage.iterdir()) == []  # nothing imported, nothing written
