"""Helpers of the fault tests: run ``landmarks`` commands in fresh processes, arm the
test-only kill hook or a file-size limit, and ask ``landmarks verify``."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from landmarks.storage import Layout, read_json, read_jsonl
from tests.conftest import REPO_ROOT, make_subset

CLASSES = {"colosseum": 5, "petra": 5}
AUG = ["--multiplier", "1", "--chunk-size", "2", "--output-size", "32", "--workers", "1"]


def land(*args: str, fault: str | None = None, fsize: int | None = None):
    """Run ``landmarks ARGS`` in a fresh process; ``fault`` arms the kill hook."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LANDMARKS_")}
    if fault:
        env["LANDMARKS_TEST_FAULT"] = fault

    def limit() -> None:  # a disk that fills up at `fsize` bytes per file
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=limit if fsize is not None else None,
    )


def ok(*args: str) -> subprocess.CompletedProcess:
    done = land(*args)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def killed(*args: str, fault: str) -> None:
    done = land(*args, fault=fault)
    assert done.returncode == -signal.SIGKILL, (done.returncode, done.stderr[-2000:])


def verify(storage: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    out = storage.parent / "verify.json"
    done = land("verify", "--storage", str(storage), "--json", str(out), *extra)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, read_json(out)


def kinds(report: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (f["stage"], f["kind"])
        for s in report["stages"]
        for f in s["findings"]
        if f["severity"] == "problem" and not f["repaired"]
    }


def assert_consistent(storage: Path) -> None:
    rc, report = verify(storage)
    assert rc == 0 and report["consistent"], kinds(report)
    layout = Layout(storage)
    raw = read_jsonl(layout.raw_manifest)
    assert len({r["path"] for r in raw}) == len(raw)
    assert len({(r["class"], r["sha256"]) for r in raw}) == len(raw), "a photo counted twice"


@pytest.fixture(name="source")
def source_fixture(tmp_path: Path, real_raw: Path) -> Path:
    """A DIR/<class>/<file> tree of a few real photos per class (import it to use it)."""
    return make_subset(tmp_path / "source", CLASSES)


def stages(storage: Path, source: Path, upto: str) -> None:
    s = ["--storage", str(storage)]
    order = ["crawl", "clean", "dedup", "split", "augment"]
    for stage in order[: order.index(upto)]:
        extra = ["--source", str(source)] if stage == "crawl" else AUG if stage == "augment" else []
        ok(stage, *s, *extra)


def make_read_only(folder: Path) -> None:
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return
    # root writes through permission bits; an immutable folder stops it (ext4, xfs, btrfs).
    done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"running as root and chattr +i is unavailable here: {done.stderr.strip()}")


def make_writable(folder: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(folder)], check=False)
    folder.chmod(0o755)
