"""The one JSONL manifest reader: a torn final line is reported and set aside, corruption
anywhere else fails with file:line; appends stay whole after a tear."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from landmarks.manifest import ManifestError, scan_jsonl, set_aside_torn
from landmarks.storage import (
    StorageNotWritable,
    append_jsonl,
    check_writable,
    exclusive_lock,
    read_jsonl,
)


def test_a_torn_final_line_is_reported_and_the_records_before_it_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    path = tmp_path / "manifest.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}\n{"a": 3, "pa')
    with caplog.at_level(logging.WARNING):
        assert read_jsonl(path) == [{"a": 1}, {"a": 2}]
    assert f"{path}:3: torn final line" in caplog.text


def test_power_loss_padding_counts_as_the_torn_tail(tmp_path: Path):
    path = tmp_path / "manifest.jsonl"
    path.write_bytes(b'{"a": 1}\n{"a": 2, "b\x00\x00\x00\n\x00\x00')
    scan = scan_jsonl(path)
    assert scan.records == [{"a": 1}] and scan.torn is not None and scan.torn.line_no == 2


@pytest.mark.parametrize(
    ("bad", "detail"), [("{oops", "Expecting"), ("[1, 2]", "a JSON list, not an object")]
)
def test_corruption_before_the_last_line_names_file_and_line(tmp_path: Path, bad: str, detail: str):
    path = tmp_path / "manifest.jsonl"
    path.write_text(f'{{"a": 1}}\n{bad}\n{{"a": 3}}\n')
    with pytest.raises(ManifestError, match=r"manifest.jsonl:2: corrupt manifest line") as err:
        read_jsonl(path)
    assert err.value.line_no == 2 and detail in err.value.detail
    assert isinstance(err.value, ValueError)  # callers catching ValueError still do


def test_an_append_after_a_tear_keeps_the_torn_bytes_aside_and_every_record_whole(
    tmp_path: Path,
):
    path = tmp_path / "manifest.jsonl"
    path.write_text('{"a": 1}\n{"a": 2, "pa')
    append_jsonl(path, [{"a": 3}])
    assert read_jsonl(path) == [{"a": 1}, {"a": 3}]
    assert (tmp_path / "manifest.jsonl.torn").read_text() == '{"a": 2, "pa\n'
    # A whole last record that only lost its newline is kept, not set aside.
    path.write_text('{"a": 1}')
    append_jsonl(path, [{"a": 2}])
    assert read_jsonl(path) == [{"a": 1}, {"a": 2}]


def test_set_aside_torn_moves_only_a_torn_tail(tmp_path: Path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"a": 1}\n')
    assert set_aside_torn(path) is None and path.read_text() == '{"a": 1}\n'
    path.write_text('{"a": 1}\n{"b"')
    torn = set_aside_torn(path)
    assert torn is not None and torn.data == b'{"b"'
    assert path.read_text() == '{"a": 1}\n'
    assert scan_jsonl(path).torn is None


def test_storage_root_cannot_write_fails_before_the_lock(tmp_path: Path):
    # Paths even root cannot create files in: /proc (no such entry) and /sys (EPERM).
    for root in (Path("/proc/self/landmarks-storage"), Path("/sys/landmarks-storage")):
        with pytest.raises(StorageNotWritable, match="is not writable"):
            check_writable(root)
        with pytest.raises(StorageNotWritable), exclusive_lock(root):
            pytest.fail("the lock must not be taken on an unwritable storage")
    check_writable(tmp_path / "fine")  # creates it, leaves no probe behind
    assert list((tmp_path / "fine").iterdir()) == []
