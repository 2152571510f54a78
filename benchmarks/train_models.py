"""Three models on the same leakage-free split of the real photos, in one run.

Baseline: the original project's CNN (configs/original.toml). Then today's best model trained
from scratch (configs/best_scratch_cpu.toml) and the ImageNet-pretrained EfficientNet-Lite0
(configs/best_cpu.toml). Each trains through the real CLI (`landmarks train --config ...`,
without promotion) on one refreshed storage, so all three see the same train/val/test photos;
test top-1 / top-3 come from each run's metrics.json and the wall time from the run.

    .venv/bin/python benchmarks/train_models.py [--storage DIR] [--only best_cpu]

The storage is refreshed from ../shared/datasets/landmarks-real/raw first when it has no split.
Prints a table with ratios against the original CNN; every number comes from this run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REAL_RAW = ROOT.parent / "shared/datasets/landmarks-real/raw"
CONFIGS = {
    "original CNN (baseline)": "original",
    "best from scratch": "best_scratch_cpu",
    "EfficientNet-Lite0 ImageNet": "best_cpu",
}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    env.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    return env


def _cli(*args: str) -> None:
    cmd = [sys.executable, "-m", "flows.cli", *args]
    subprocess.run(cmd, cwd=ROOT, env=_env(), check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--storage", type=Path, default=Path(tempfile.gettempdir()) / "bench-models"
    )
    parser.add_argument("--real", type=Path, default=REAL_RAW)
    parser.add_argument("--only", action="append", help="Config stems to run (default: all).")
    args = parser.parse_args()

    if not (args.storage / "splits" / "split.jsonl").is_file():
        _cli("refresh", "--source", str(args.real), "--storage", str(args.storage))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    rows = []
    for label, stem in CONFIGS.items():
        if args.only and stem not in args.only:
            continue
        run_id = f"bench-{stem}-{stamp}"
        started = time.perf_counter()
        _cli(
            "train",
            "--config",
            str(ROOT / "configs" / f"{stem}.toml"),
            "--storage",
            str(args.storage),
            "--run-id",
            run_id,
            "--no-promote",
        )
        wall = time.perf_counter() - started
        run_dir = args.storage / "runs" / run_id
        metrics = json.loads((run_dir / "metrics.json").read_text())
        rows.append((label, stem, metrics, wall))

    print(f"\nsame split: {args.storage / 'splits' / 'split.jsonl'}; {os.cpu_count()} CPUs")
    print(f"{'model':32s} {'config':18s} {'top-1':>6s} {'top-3':>6s} {'train+eval':>11s}")
    base = rows[0][2]["top1"] if rows else None
    for label, stem, m, wall in rows:
        ratio = f"  {m['top1'] / base:.2f}x top-1 vs first" if base else ""
        print(
            f"{label:32s} {stem:18s} {m['top1']:6.3f} {m['top3']:6.3f} {wall / 60:9.1f} min{ratio}"
        )
    counts = ", ".join(str(r[2].get("num_images", "?")) for r in rows)
    print(f"(test images per run: {counts})")


if __name__ == "__main__":
    main()
