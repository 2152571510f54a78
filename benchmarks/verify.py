"""How long `landmarks verify` takes next to the run that made the storage.

    nice .venv/bin/python benchmarks/verify.py                 # 822 real photos, 2 epochs
    nice .venv/bin/python benchmarks/verify.py --epochs 20     # the default run's training

Baseline: one `landmarks run --source ../shared/datasets/landmarks-real/raw` (import, clean,
dedup, split, augment, train, evaluate; Prefect's temporary server included), timed as a
subprocess. Then `landmarks verify` on that storage, three times in fresh processes (sha256 of
every raw, clean, quarantined and augmented file: the page cache is warm, as it is right after
a run). Printed: the run's seconds, verify's median seconds, the bytes it hashed, and the ratio
verify / run. Fewer epochs than the default run make the run shorter, so the ratio printed
is an upper bound for a default run. The storage goes under --work and is deleted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REAL_RAW = REPO.parent / "shared/datasets/landmarks-real/raw"


def landmarks(*args: str) -> tuple[float, subprocess.CompletedProcess]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LANDMARKS_")}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    return time.perf_counter() - started, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="verify-bench-", dir=args.work))
    storage = work / "storage"
    try:
        run_s, run = landmarks(
            "run",
            *("--source", str(REAL_RAW), "--storage", str(storage)),
            *("--epochs", str(args.epochs), "--image-size", str(args.image_size)),
        )
        if run.returncode != 0:
            sys.exit(f"the run failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}")
        times, report = [], {}
        for _ in range(3):
            out = work / "verify.json"
            seconds, done = landmarks("verify", "--storage", str(storage), "--json", str(out))
            if done.returncode != 0:
                sys.exit(f"verify says the run's storage is not consistent:\n{done.stdout}")
            times.append(seconds)
            report = json.loads(out.read_text())
        verify_s = statistics.median(times)
        records = {s["stage"]: s["records"] for s in report["stages"]}
        print(
            f"storage of one run on {records['raw']} real photos ({args.epochs} epochs, "
            f"{args.image_size} px): {records}"
        )
        print(f"run (baseline)          {run_s:8.1f} s")
        print(
            f"verify (median of 3)    {verify_s:8.2f} s  process wall time; checks alone "
            f"{report['seconds']:.2f} s, {report['bytes_hashed'] / 1e6:.0f} MB hashed"
        )
        print(
            f"ratio verify / run      {verify_s / run_s:8.4f}  (consistent: {report['consistent']})"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
