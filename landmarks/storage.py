"""The storage layout, manifests and atomic writes.

Every stage writes its output under one root::

    raw/<class>/<file>          append-only crawl/import output, raw/manifest.jsonl
    clean/<class>/<id>.jpg      normalised RGB JPEGs, clean/manifest.jsonl
    quarantine/<reason>/<file>  copies of refused raw files, quarantine/manifest.jsonl
    dedup/report.json           duplicate groups and label conflicts
    splits/split.jsonl          train/val/test assignment of every kept image
    augmented/<key>/chunk-*/    augmented JPEGs, one folder per committed chunk
    runs/<run-id>/              config, model, metrics and report of one training run
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def raw_dir(self) -> Path:
        return self.root / "raw"

    @property
    def raw_manifest(self) -> Path:
        return self.raw_dir / "manifest.jsonl"

    @property
    def clean_dir(self) -> Path:
        return self.root / "clean"

    @property
    def clean_manifest(self) -> Path:
        return self.clean_dir / "manifest.jsonl"

    @property
    def quarantine_dir(self) -> Path:
        return self.root / "quarantine"

    @property
    def quarantine_manifest(self) -> Path:
        return self.quarantine_dir / "manifest.jsonl"

    @property
    def dedup_dir(self) -> Path:
        return self.root / "dedup"

    @property
    def dedup_report(self) -> Path:
        return self.dedup_dir / "report.json"

    @property
    def splits_dir(self) -> Path:
        return self.root / "splits"

    @property
    def split_manifest(self) -> Path:
        return self.splits_dir / "split.jsonl"

    @property
    def augmented_dir(self) -> Path:
        return self.root / "augmented"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while block := fh.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temp path beside ``path``; it replaces ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    # mkstemp makes the file 0600; the result gets the mode a plain open() would (the umask's),
    # so a worker under another user, a web server or a colleague can read it.
    os.fchmod(fd, 0o666 & ~_current_umask())
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _current_umask() -> int:
    """The process umask, read without changing it where /proc allows."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp, tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Read a JSONL manifest; a torn last line (a crash mid-append) is ignored."""
    path = Path(path)
    if not path.exists():
        return []
    records: list[dict[str, Any]] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                continue
            raise
    return records


def append_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> int:
    """Append records, one JSON object per line, flushed to disk. Returns how many."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records]
    if not lines:
        return 0
    # A crash can leave a torn last line; start on a fresh line so the next record stays whole.
    needs_newline = path.exists() and path.stat().st_size > 0 and not _ends_with_newline(path)
    with path.open("a", encoding="utf-8") as fh:
        if needs_newline:
            fh.write("\n")
        fh.writelines(lines)
        fh.flush()
        os.fsync(fh.fileno())
    return len(lines)


def write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> None:
    text = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records)
    atomic_write_text(path, text)


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) == b"\n"


def digest_records(records: Iterable[dict[str, Any]]) -> str:
    """A stable content hash of a list of records (order-independent)."""
    lines = sorted(json.dumps(r, sort_keys=True, ensure_ascii=False) for r in records)
    return sha256_bytes("\n".join(lines).encode("utf-8"))


class StorageBusy(RuntimeError):
    """Another process holds the storage lock."""


@contextlib.contextmanager
def exclusive_lock(root: Path, name: str = "refresh") -> Iterator[None]:
    """Hold ``<root>/.<name>.lock`` for the block, or fail at once with a clear message."""
    import fcntl

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    lock_path = root / f".{name}.lock"
    with lock_path.open("a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise StorageBusy(
                f"{root} is busy: a {name} is already running ({holder}); wait for it to finish"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}")
        fh.flush()
        try:
            yield
        finally:
            fh.seek(0)
            fh.truncate()
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
