"""``landmarks verify``: is the storage consistent, and what would make it so without loss?

Every stage's manifest is checked against its files: each record's file exists, has its
recorded size and sha256; files no manifest knows (orphans); torn or unparsable manifest
lines (``file:line``); augmented chunks against their ``chunk.json``; split and dedup records
whose clean image is gone; run folders without their model or metrics; temp files and folders
and locks left by dead processes.

A *problem* makes the storage inconsistent (exit 1). A *leftover* (a temp file of a dead
process, a stale lock note) holds no data any reader would take, so it is listed but does
not. ``repair=True`` does only what loses nothing: adopts orphans into their manifest
(``"recovered": true``, with what provenance the file gives), moves a torn final line into
``<manifest>.torn``, removes temp files and folders of dead processes. It never deletes a
photo; what it cannot fix (a missing file, a corrupt line in the middle) is left for a person
or for the next refresh, and the finding says which.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from landmarks import recovery
from landmarks.manifest import TORN_SUFFIX, ManifestScan, scan_jsonl, set_aside_torn
from landmarks.storage import Layout, append_jsonl, read_json

PROBLEM, LEFTOVER = "problem", "leftover"
STAGES = ("raw", "clean", "quarantine", "dedup", "review", "splits", "augmented", "runs")
# atomic_path temps (and Keras' renamed copy of one), downloads and copies in flight, probes
_TEMP_FILE = re.compile(r"^\..+\.(tmp|part)$|^\..+\.keras\.\w+\.keras$|^\.write-probe-\d+$")
_AUG_TEMP = re.compile(r"^\.chunk-\d+\.tmp-(\d+)$")


@dataclass
class Finding:
    stage: str
    kind: str  # missing, size, sha256, orphan, torn, corrupt, double, incomplete, temp, lock...
    path: str
    detail: str
    severity: str = PROBLEM
    repaired: bool = False


@dataclass
class StageReport:
    stage: str
    records: int = 0
    files: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == PROBLEM and not f.repaired]


@dataclass
class VerifyReport:
    root: Path
    stages: list[StageReport]
    seconds: float
    bytes_hashed: int

    @property
    def consistent(self) -> bool:
        return not any(s.problems for s in self.stages)

    @property
    def findings(self) -> list[Finding]:
        return [f for s in self.stages for f in s.findings]

    def to_json(self) -> dict[str, Any]:
        return {
            "storage": str(self.root),
            "consistent": self.consistent,
            "seconds": round(self.seconds, 3),
            "bytes_hashed": self.bytes_hashed,
            "stages": [
                {
                    "stage": s.stage,
                    "records": s.records,
                    "files": s.files,
                    "problems": len(s.problems),
                    "findings": [asdict(f) for f in s.findings],
                }
                for s in self.stages
            ],
        }


class _Checker:
    def __init__(self, layout: Layout, repair: bool) -> None:
        self.layout, self.repair = layout, repair
        self.bytes_hashed = 0
        # Repair holds the lock itself; a plain verify only looks whether someone else does.
        self.storage_busy = not repair and _lock_holder(layout.root / ".refresh.lock") is not None

    def rel(self, path: Path) -> str:
        return path.relative_to(self.layout.root).as_posix()

    def sha256(self, path: Path) -> str:
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
                self.bytes_hashed += len(block)
        return digest.hexdigest()

    def manifest(self, report: StageReport, path: Path, count: bool = True) -> ManifestScan:
        """Scan a JSONL manifest; torn tails and corrupt lines become findings."""
        scan = scan_jsonl(path)
        for line_no, detail in scan.corrupt:
            report.findings.append(
                Finding(
                    report.stage,
                    "corrupt",
                    f"{self.rel(path)}:{line_no}",
                    f"unparsable line ({detail}); restore it or move it out by hand",
                )
            )
        if scan.torn is not None:
            finding = Finding(
                report.stage,
                "torn",
                f"{self.rel(path)}:{scan.torn.line_no}",
                f"torn final line ({len(scan.torn.data)} bytes, a crash mid-append); readers "
                f"skip it, --repair keeps it in {path.name}{TORN_SUFFIX}",
            )
            if self.repair:
                set_aside_torn(path)
                finding.repaired = True
            report.findings.append(finding)
        report.records += len(scan.records) if count else 0
        return scan

    def check_file(
        self, report: StageReport, path: Path, size: int | None, sha256: str | None, what: str
    ) -> bool:
        """A recorded file: exists, has its size and sha256. True when it is whole."""
        if not path.is_file():
            report.findings.append(Finding(report.stage, "missing", self.rel(path), what))
            return False
        report.files += 1
        actual = path.stat().st_size
        if size is not None and actual != size:
            report.findings.append(
                Finding(report.stage, "size", self.rel(path), f"{actual} bytes, recorded {size}")
            )
            return False
        if sha256 and self.sha256(path) != sha256:
            report.findings.append(
                Finding(report.stage, "sha256", self.rel(path), "content differs from its record")
            )
            return False
        return True

    def doubles(self, report: StageReport, path: Path, keys: list[str], what: str) -> None:
        seen: set[str] = set()
        for key in keys:
            if key in seen:
                report.findings.append(
                    Finding(report.stage, "double", self.rel(path), f"{what} {key} listed twice")
                )
            seen.add(key)

    # ------------------------------------------------------------------------- stages

    def raw(self) -> StageReport:
        report = StageReport("raw")
        layout = self.layout
        scan = self.manifest(report, layout.raw_manifest)
        self.manifest(report, layout.raw_dir / "crawl-urls.jsonl", count=False)
        for r in scan.records:
            self.check_file(
                report,
                layout.raw_dir / r["path"],
                r.get("bytes"),
                r.get("sha256"),
                "raw photo recorded in raw/manifest.jsonl is gone (deleted by hand?); it "
                "cannot be rebuilt: restore it from a backup",
            )
        self.doubles(report, layout.raw_manifest, [r["path"] for r in scan.records], "path")
        known = {r["path"] for r in scan.records}
        orphans = [
            p
            for p in recovery.raw_files(layout)
            if p.relative_to(layout.raw_dir).as_posix() not in known
        ]
        intents = sorted(recovery.pending_dir(layout).glob("*.json"))
        adopted = set()
        if (orphans or intents) and self.repair and not scan.corrupt:
            adopted = {r["path"] for r in recovery.adopt_raw_orphans(layout)}
        for intent in intents:
            report.findings.append(
                Finding(
                    "raw",
                    "intent",
                    self.rel(intent),
                    "commit intent of a stopped download or import; the next crawl settles it",
                    severity=LEFTOVER,
                    repaired=self.repair and not intent.exists(),
                )
            )
        for p in orphans:
            rel = p.relative_to(layout.raw_dir).as_posix()
            report.findings.append(
                Finding(
                    "raw",
                    "orphan",
                    self.rel(p),
                    "in raw/ with no manifest record (a crash between rename and record); "
                    "--repair adopts it",
                    repaired=rel in adopted,
                )
            )
        return report

    def derived(self, stage: str, folder: Path, manifest: Path) -> StageReport:
        """clean/ and quarantine/: the latest record per path must match its file, and every
        file must have a record."""
        report = StageReport(stage)
        scan = self.manifest(report, manifest)
        latest = {r["path"]: r for r in scan.records if r.get("path")}
        for rel, r in latest.items():
            # A quarantined file is a byte copy of its raw file; a clean one has its own hash.
            self.check_file(
                report,
                folder / rel,
                r.get("bytes", r.get("raw_bytes")) if stage == "quarantine" else None,
                r.get("sha256") or r.get("raw_sha256"),
                f"recorded in {manifest.name} but gone (deleted by hand?); the next clean "
                "makes it again from its raw photo",
            )
        orphans = [
            p
            for p in (sorted(folder.rglob("*")) if folder.is_dir() else [])
            if p.is_file()
            and p != manifest
            and not p.name.startswith(".")
            and not p.name.startswith(manifest.name)
            and p.relative_to(folder).as_posix() not in latest
        ]
        for p in orphans:
            finding = Finding(
                stage,
                "orphan",
                self.rel(p),
                f"no record in {manifest.name} (a crash between write and record); "
                "--repair adopts it, the next clean rewrites it",
            )
            if self.repair and not scan.corrupt:
                rel = p.relative_to(folder)
                record: dict[str, Any] = {
                    "path": rel.as_posix(),
                    "class": rel.parts[-2] if len(rel.parts) > 1 else "",
                    **recovery.describe_file(p),
                    "recovered": True,
                }
                if stage == "quarantine":
                    record["reason"] = rel.parts[0]
                append_jsonl(manifest, [record])
                finding.repaired = True
            report.findings.append(finding)
        return report

    def kept_list(self, stage: str, path: Path) -> StageReport:
        """dedup/kept.jsonl, review/kept.jsonl, splits/split.jsonl: every photo still there."""
        report = StageReport(stage)
        scan = self.manifest(report, path)
        for r in scan.records:
            target = self.layout.clean_dir / r["path"]
            if target.is_file():
                report.files += 1
            else:
                report.findings.append(
                    Finding(
                        stage,
                        "missing",
                        self.rel(target),
                        f"listed in {self.rel(path)} but its clean image is gone; the next "
                        "refresh cleans it again from raw/",
                    )
                )
        keys = [r.get("pixel_hash") or r["path"] for r in scan.records]
        self.doubles(report, path, keys, "photo")
        return report

    def dedup(self) -> StageReport:
        report = self.kept_list("dedup", self.layout.dedup_dir / "kept.jsonl")
        for cache in ("hashes.jsonl", "verified.jsonl"):
            self.manifest(report, self.layout.dedup_dir / cache, count=False)
        return report

    def augmented(self) -> StageReport:
        """Every augmented folder; damage in one made for an older dataset version (no
        training reads it any more) is a leftover, not a problem."""
        from landmarks.split import dataset_version

        report = StageReport("augmented")
        root = self.layout.augmented_dir
        current = None
        if self.layout.split_manifest.exists():
            with contextlib.suppress(ValueError):
                current = dataset_version(self.layout.split_manifest)
        for out_dir in sorted(p for p in root.glob("*") if p.is_dir()) if root.is_dir() else []:
            self.temp_dirs(report, out_dir)
            first = len(report.findings)
            self.augmented_dir(report, out_dir)
            version = None
            with contextlib.suppress(OSError, ValueError, AttributeError):
                version = read_json(out_dir / "plan.json").get("dataset_version")
            if current and version and version != current:
                for f in report.findings[first:]:
                    f.severity = LEFTOVER
                    f.detail += f" (superseded dataset version {version}: no training reads it)"
        return report

    def augmented_dir(self, report: StageReport, out_dir: Path) -> None:
        committed = 0
        for chunk in sorted(out_dir.glob("chunk-*")):
            try:
                files = read_json(chunk / "chunk.json")["files"]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                report.findings.append(
                    Finding("augmented", "corrupt", self.rel(chunk / "chunk.json"), str(exc))
                )
                continue
            report.records += len(files)
            listed = {"chunk.json"}
            for f in files:
                listed.add(f["path"])
                ok = self.check_file(
                    report,
                    chunk / f["path"],
                    f.get("bytes"),
                    f.get("sha256"),
                    "listed in chunk.json but gone; the next augment rewrites the chunk",
                )
                committed += ok
            for extra in sorted(p for p in chunk.iterdir() if p.name not in listed):
                report.findings.append(
                    Finding("augmented", "orphan", self.rel(extra), "not in chunk.json")
                )
        manifest = out_dir / "manifest.json"
        if (out_dir / "plan.json").exists() and not manifest.exists():
            report.findings.append(
                Finding(
                    "augmented",
                    "incomplete",
                    self.rel(out_dir),
                    "augmentation started but not finished; the next augment resumes it",
                )
            )
        elif manifest.exists():
            expected = read_json(manifest).get("num_images")
            if expected is not None and expected != committed:
                report.findings.append(
                    Finding(
                        "augmented",
                        "count",
                        self.rel(out_dir),
                        f"{committed} whole images in chunks, manifest.json says {expected}",
                    )
                )

    def runs(self) -> StageReport:
        report = StageReport("runs")
        runs_dir = self.layout.runs_dir
        self.manifest(report, runs_dir / "promotions.jsonl", count=False)
        for run_dir in sorted(p for p in runs_dir.glob("*") if (p / "run.json").exists()):
            report.records += 1
            missing = [n for n in ("model.keras", "metrics.json") if not (run_dir / n).is_file()]
            if missing:
                report.findings.append(
                    Finding(
                        "runs",
                        "incomplete",
                        self.rel(run_dir),
                        f"no {' or '.join(missing)} (training or evaluation stopped); resume "
                        f"with `landmarks train --run-id {run_dir.name}`",
                    )
                )
            else:
                report.files += 2
        champion = runs_dir / "champion.json"
        if champion.exists():
            model = Path(read_json(champion).get("model_path", ""))
            model = model if model.is_absolute() else runs_dir / model
            if not model.is_file():
                report.findings.append(
                    Finding("runs", "missing", self.rel(champion), f"champion model {model} gone")
                )
        return report

    # ------------------------------------------------------------------------- leftovers

    def temp_dirs(self, report: StageReport, out_dir: Path) -> None:
        for tmp in sorted(out_dir.glob(".chunk-*.tmp-*")):
            match = _AUG_TEMP.match(tmp.name)
            pid = int(match.group(1)) if match else None
            if pid is not None and _alive(pid) and _lock_holder(out_dir / ".lock"):
                continue  # a running augmentation's chunk in progress
            finding = Finding(
                "augmented",
                "temp",
                self.rel(tmp),
                f"half-written chunk of a dead process (pid {pid}); readers never see it",
                severity=LEFTOVER,
            )
            if self.repair:
                shutil.rmtree(tmp, ignore_errors=True)
                finding.repaired = True
            report.findings.append(finding)

    def leftovers(self) -> StageReport:
        report = StageReport("leftovers")
        if self.storage_busy:
            report.findings.append(
                Finding(
                    "leftovers",
                    "busy",
                    ".refresh.lock",
                    "a refresh or stage holds the storage now: temp files may be in use, "
                    "so none is removed",
                    severity=LEFTOVER,
                )
            )
            return report
        root = self.layout.root
        for path in sorted(root.rglob(".*")):
            if path.is_file() and _TEMP_FILE.match(path.name):
                finding = Finding(
                    "leftovers",
                    "temp",
                    self.rel(path),
                    "temp file of a stopped write; no reader takes it",
                    severity=LEFTOVER,
                )
                if self.repair:
                    path.unlink(missing_ok=True)
                    finding.repaired = True
                report.findings.append(finding)
        for lock in sorted(root.rglob("*.lock")):
            note = lock.read_text(errors="replace").strip() if lock.is_file() else ""
            if note and _lock_holder(lock) is None:
                finding = Finding(
                    "leftovers",
                    "lock",
                    self.rel(lock),
                    f"stale lock note '{note}' (its process is gone; the lock itself is free)",
                    severity=LEFTOVER,
                )
                if self.repair:
                    lock.write_text("")
                    finding.repaired = True
                report.findings.append(finding)
        return report


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _lock_holder(lock_path: Path) -> str | None:
    """The note of a lock some process holds now (flock), or None when it is free."""
    if not lock_path.is_file():
        return None
    try:
        fd = os.open(lock_path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return lock_path.read_text(errors="replace").strip() or "held"
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def verify_storage(root: Path, repair: bool = False) -> VerifyReport:
    """Check (and with ``repair``, losslessly fix) the storage under ``root``.

    Repair needs the storage to itself: it raises :class:`landmarks.storage.StorageBusy`
    when a refresh or stage command holds it.
    """
    from contextlib import nullcontext

    from landmarks.storage import exclusive_lock

    started = time.perf_counter()
    layout = Layout(Path(root))
    if not layout.root.is_dir():
        raise FileNotFoundError(f"no storage folder at {layout.root}")
    guard = exclusive_lock(layout.root, "refresh", "verify --repair") if repair else nullcontext()
    with guard:
        checker = _Checker(layout, repair)
        stages = [
            checker.raw(),
            checker.derived("clean", layout.clean_dir, layout.clean_manifest),
            checker.derived("quarantine", layout.quarantine_dir, layout.quarantine_manifest),
            checker.dedup(),
            checker.kept_list("review", layout.root / "review" / "kept.jsonl"),
            checker.kept_list("splits", layout.split_manifest),
            checker.augmented(),
            checker.runs(),
            checker.leftovers(),
        ]
    return VerifyReport(layout.root, stages, time.perf_counter() - started, checker.bytes_hashed)


def format_table(report: VerifyReport) -> str:
    """One row per stage, then every finding (path, what, what to do)."""
    rows = [("stage", "records", "files", "problems", "leftovers", "repaired")]
    for s in report.stages:
        rows.append(
            (
                s.stage,
                str(s.records),
                str(s.files),
                str(len(s.problems)),
                str(sum(1 for f in s.findings if f.severity == LEFTOVER and not f.repaired)),
                str(sum(1 for f in s.findings if f.repaired)),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    for f in report.findings:
        mark = "repaired" if f.repaired else f.severity
        lines.append(f"[{mark}] {f.stage} {f.kind}: {f.path}: {f.detail}")
    verdict = "consistent" if report.consistent else "NOT consistent"
    lines.append(
        f"{report.root}: {verdict} ({report.seconds:.2f} s, "
        f"{report.bytes_hashed / 1e6:.1f} MB hashed)"
    )
    return "\n".join(lines)
