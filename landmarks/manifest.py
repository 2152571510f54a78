"""JSONL manifests: one reader that survives a crash mid-append, and a fault hook for tests.

A manifest is appended one whole line per record (``storage.append_jsonl``). Power loss or a
SIGKILL during that append can leave a *torn final line*: the start of a record with no end.
That line never held a committed record (its writer had not returned), so readers use the
records before it and say so; ``landmarks verify --repair`` (or the next append) moves the
torn bytes aside into ``<manifest>.torn`` so nothing is lost. An unparsable line anywhere
else is real corruption: readers stop with ``file:line`` and what to do.
"""

from __future__ import annotations

import json
import logging
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FAULT_ENV = "LANDMARKS_TEST_FAULT"
TORN_SUFFIX = ".torn"


class ManifestError(ValueError):
    """A manifest line that is not a JSON object, and not a torn final line."""

    def __init__(self, path: Path, line_no: int, detail: str) -> None:
        self.path, self.line_no, self.detail = Path(path), line_no, detail
        super().__init__(
            f"{path}:{line_no}: corrupt manifest line ({detail}); the records after it cannot be "
            "trusted. Run `landmarks verify` to see every problem; restore the file from a "
            "backup, or move the bad line out by hand and run the stage again"
        )


@dataclass(frozen=True)
class TornLine:
    line_no: int
    offset: int  # byte offset where the torn bytes start
    data: bytes


@dataclass(frozen=True)
class ManifestScan:
    """Everything a manifest holds: parsed records (with line numbers), a torn tail, and the
    corrupt lines before it."""

    path: Path
    records: list[dict[str, Any]] = field(default_factory=list)
    line_numbers: list[int] = field(default_factory=list)
    torn: TornLine | None = None
    corrupt: list[tuple[int, str]] = field(default_factory=list)


def _parse(line: bytes) -> dict[str, Any]:
    value = json.loads(line.decode("utf-8"))
    if not isinstance(value, dict):
        raise ValueError(f"a JSON {type(value).__name__}, not an object")
    return value


def scan_jsonl(path: Path) -> ManifestScan:
    """Read every line of ``path`` without raising on bad content (a missing file is empty)."""
    path = Path(path)
    scan = ManifestScan(path)
    if not path.exists():
        return scan
    data = path.read_bytes()
    lines = data.split(b"\n")
    # The last line whose bytes are not blank (NUL padding after power loss counts as blank).
    last = max((i for i, raw in enumerate(lines) if raw.strip(b" \t\r\x00")), default=-1)
    offset = 0
    for i, raw in enumerate(lines):
        start, offset = offset, offset + len(raw) + 1
        if not raw.strip(b" \t\r\x00"):
            continue
        try:
            record = _parse(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            if i == last:
                object.__setattr__(scan, "torn", TornLine(i + 1, start, data[start:]))
            else:
                scan.corrupt.append((i + 1, str(exc)[:120]))
            continue
        scan.records.append(record)
        scan.line_numbers.append(i + 1)
    return scan


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a JSONL manifest.

    A torn final line is logged and left out; a bad line anywhere else raises
    :class:`ManifestError` naming ``file:line``.
    """
    scan = scan_jsonl(path)
    if scan.corrupt:
        line_no, detail = scan.corrupt[0]
        raise ManifestError(scan.path, line_no, detail)
    if scan.torn is not None:
        log.warning(
            "%s:%d: torn final line (a crash mid-append) left out; the %d records before it "
            "are used (`landmarks verify --repair` keeps it aside in %s)",
            scan.path,
            scan.torn.line_no,
            len(scan.records),
            scan.path.name + TORN_SUFFIX,
        )
    return scan.records


def set_aside_torn(path: Path) -> TornLine | None:
    """Move a torn final line into ``<path>.torn`` (appended) and cut it from ``path``.

    The torn bytes are fsynced into the side file before the manifest is truncated, so a crash
    in between leaves them in both places, never in neither. Returns what was moved.
    """
    path = Path(path)
    scan = scan_jsonl(path)
    if scan.torn is None:
        return None
    side = path.with_name(path.name + TORN_SUFFIX)
    with side.open("ab") as fh:
        fh.write(scan.torn.data.rstrip(b"\n") + b"\n")
        fh.flush()
        os.fsync(fh.fileno())
    with path.open("r+b") as fh:
        fh.truncate(scan.torn.offset)
        fh.flush()
        os.fsync(fh.fileno())
    log.warning("%s:%d: torn final line moved to %s", path, scan.torn.line_no, side)
    return scan.torn


_FAULT_HITS: dict[str, int] = {}


def fault_point(stage: str, point: str) -> None:
    """Test hook: SIGKILL this process here when ``LANDMARKS_TEST_FAULT`` is ``stage:point`` (the
    first time it is reached) or ``stage:point:N`` (the N-th time).

    Only the fault tests set the variable; without it this is one dict lookup. A kill (not an
    exception) is what a power cut or the OOM killer does: no ``finally`` runs.
    """
    wanted = os.environ.get(FAULT_ENV)
    if not wanted:
        return
    name, _, nth = wanted.partition(f"{stage}:{point}")
    if name or (nth and not (nth.startswith(":") and nth[1:].isdigit())):
        return
    key = f"{stage}:{point}"
    _FAULT_HITS[key] = _FAULT_HITS.get(key, 0) + 1
    if _FAULT_HITS[key] >= int(nth[1:] or 1):
        os.kill(os.getpid(), signal.SIGKILL)
