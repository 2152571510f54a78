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

# read_jsonl and ManifestError live with the manifest reader; re-exported for every stage.
from landmarks.manifest import (  # noqa: F401
    ManifestError,
    fault_point,
    read_jsonl,
    scan_jsonl,
    set_aside_torn,
)


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
    with _naming_errors(path), atomic_path(path) as tmp, tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def append_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> int:
    """Append records, one JSON object per line, flushed to disk. Returns how many.

    A torn last line left by a crash is first moved aside (``<path>.torn``), so it never ends
    up between whole records. A failed write (a full disk) is cut back off the file: the
    manifest holds either every new line or none of them, never a half line.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records]
    if not lines:
        return 0
    torn_tail = path.exists() and path.stat().st_size > 0 and not _ends_with_newline(path)
    if torn_tail and set_aside_torn(path) is None:  # a whole last record, no newline
        with path.open("a", encoding="utf-8") as fh:
            fh.write("\n")
    data = memoryview("".join(lines).encode("utf-8"))
    with _naming_errors(path):
        # Unbuffered: a failed write must not be retried by a buffer flush after the cut.
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            start = os.lseek(fd, 0, os.SEEK_END)
            try:
                while data:
                    data = data[os.write(fd, data) :]
                os.fsync(fd)
            except OSError:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, start)
                raise
        finally:
            os.close(fd)
    return len(lines)


def write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> None:
    """Replace a whole JSONL file atomically (a reader sees the old or the new, never a mix)."""
    text = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records)
    path = Path(path)
    with _naming_errors(path), atomic_path(path) as tmp, tmp.open("wb") as fh:
        fh.write(text.encode("utf-8"))
        fh.flush()
        os.fsync(fh.fileno())
        fault_point("jsonl", path.name)  # written in full beside the target, not renamed yet


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


class StorageNotWritable(OSError):
    """The storage folder cannot be written (read-only mount, permissions, immutable)."""


@contextlib.contextmanager
def _naming_errors(path: Path) -> Iterator[None]:
    """Give an OSError raised by a write (ENOSPC, EFBIG: no file name) the path it was for."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None:
            exc.filename = str(path)
        raise


def check_writable(root: Path) -> None:
    """Fail at once, before any work, when ``root`` cannot take a new file.

    ``os.access`` alone is not enough: root passes it on a read-only mount or an immutable
    (``chattr +i``) folder, so a real probe file is created, written, synced and removed.
    """
    root = Path(root)
    probe = root / f".write-probe-{os.getpid()}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        if not os.access(root, os.W_OK | os.X_OK):
            raise PermissionError(13, "no write permission", str(root))
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, b"ok")
            os.fsync(fd)
        finally:
            os.close(fd)
            with contextlib.suppress(OSError):
                probe.unlink()
    except OSError as exc:
        raise StorageNotWritable(
            exc.errno,
            f"storage folder {root} is not writable ({exc.strerror or exc}); nothing was "
            "changed. Point --storage at a writable folder, or remount it read-write",
            str(root),
        ) from exc


@contextlib.contextmanager
def exclusive_lock(root: Path, name: str = "refresh", purpose: str | None = None) -> Iterator[None]:
    """Hold ``<root>/.<name>.lock`` for the block, or fail at once with a clear message.

    ``purpose`` (default ``name``) is what a second process is told is running, e.g. a
    ``landmarks clean`` holding the refresh lock. The storage is probed for writability
    first, so a read-only storage fails here, before any stage starts.
    """
    import fcntl

    root = Path(root)
    check_writable(root)
    lock_path = root / f".{name}.lock"
    with lock_path.open("a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            what, _, pid = fh.read().strip().rpartition("pid ")
            holder = f"pid {pid}" if pid else "another process"
            raise StorageBusy(
                f"{root} is busy: a {what.strip() or name} is already running ({holder}); "
                "wait for it to finish"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{purpose or name} pid {os.getpid()}")
        fh.flush()
        try:
            yield
        finally:
            fh.seek(0)
            fh.truncate()
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
