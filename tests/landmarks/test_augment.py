import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import make_subset

from landmarks.augment import (
    AugmentOptions,
    augment_train,
    build_transform,
    list_augmented,
    make_plan,
)
from landmarks.storage import read_json, sha256_bytes

REPO_ROOT = Path(__file__).resolve().parents[2]


def _train(subset: Path) -> list[dict]:
    return [
        {"path": f"{d.name}/{f.name}", "class": d.name}
        for d in sorted(subset.iterdir())
        for f in sorted(d.iterdir())
    ]


def _files_match_manifests(out_dir: Path) -> int:
    """Every listed file exists with the size and sha256 its chunk.json recorded."""
    count = 0
    for manifest in out_dir.glob("chunk-*/chunk.json"):
        for f in read_json(manifest)["files"]:
            data = (manifest.parent / f["path"]).read_bytes()
            assert len(data) == f["bytes"] and sha256_bytes(data) == f["sha256"], f["path"]
            count += 1
    return count


def test_plan_balances_classes_and_spreads_copies_evenly():
    train = [{"path": f"a/{i}", "class": "a"} for i in range(10)] + [
        {"path": f"b/{i}", "class": "b"} for i in range(3)
    ]
    plan = make_plan(train, multiplier=1.0, target_per_class=12, chunk_size=4)
    entries = list(plan.entries())
    per_class = Counter(c for _, c, _ in entries)
    assert per_class == {"a": 2, "b": 9}  # topped up to 12 each
    assert len(set(entries)) == len(entries) == plan.total == 11
    # Chunks tile the plan exactly, in order.
    assert [e for i in range(plan.num_chunks) for e in plan.chunk_entries(i)] == entries
    assert make_plan(train, 1.0, target_per_class=5).total == 2  # 'a' is never cut down
    plan = make_plan(train, multiplier=2.3, target_per_class=None)
    assert plan.total == 23 + 7
    per_source = Counter(s for s, _, _ in plan.entries())
    a_copies = [n for s, n in per_source.items() if s.startswith("a/")]
    assert max(a_copies) - min(a_copies) <= 1 and len(a_copies) == 10
    # Copies of one source are consecutive, so a chunk decodes each source once.
    sources = [s for s, _, _ in plan.entries()]
    assert len([i for i in range(1, len(sources)) if sources[i] != sources[i - 1]]) == 12


def test_presets_are_reproducible_and_distinct(small_subset: Path):
    import numpy as np
    from PIL import Image

    image = np.asarray(Image.open(next((small_subset / "petra").iterdir())).convert("RGB"))
    outputs = {}
    for preset in ("original", "landmark"):
        runs = []
        for _ in range(2):
            transform = build_transform(preset, 48)
            transform.set_random_seed(7)
            runs.append(transform(image=image)["image"])
        assert runs[0].shape == (48, 48, 3) and np.array_equal(runs[0], runs[1])
        outputs[preset] = runs[0]
    assert not np.array_equal(outputs["original"], outputs["landmark"])
    with pytest.raises(ValueError, match="unknown augmentation preset"):
        build_transform("strong", 48)


def test_chunks_are_deterministic_whatever_the_workers_and_chunking(
    tmp_path: Path, small_subset: Path
):
    train = _train(small_subset)
    opts = AugmentOptions(multiplier=0.5, chunk_size=7, output_size=48)
    a = augment_train(train, small_subset, tmp_path / "a", "v1", opts)
    b = augment_train(
        train,
        small_subset,
        tmp_path / "b",
        "v1",
        AugmentOptions(multiplier=0.5, chunk_size=5, output_size=48, num_workers=2),
    )
    files_a = list_augmented(a.output_dir)
    files_b = list_augmented(b.output_dir)
    assert a.num_images == 32 and len(files_a) == 32 and a.num_chunks == 5
    assert b.num_chunks == 7
    # Same names, same bytes: chunk size and worker count change nothing in the output.
    assert [p.name for p, _ in files_a] == [p.name for p, _ in files_b]
    assert [p.read_bytes() for p, _ in files_a] == [p.read_bytes() for p, _ in files_b]
    assert a.per_class_after == {c: 24 for c in a.per_class_before}
    # Train split only: every source is a train record.
    sources = {
        f["source"] for m in a.output_dir.glob("chunk-*/chunk.json") for f in read_json(m)["files"]
    }
    assert sources <= {r["path"] for r in train}
    again = augment_train(train, small_subset, tmp_path / "a", "v1", opts)
    assert again.chunks_done_before == 5
    other_seed = augment_train(
        train,
        small_subset,
        tmp_path / "c",
        "v1",
        AugmentOptions(multiplier=0.5, chunk_size=7, output_size=48, seed=1),
    )
    assert [p.read_bytes() for p, _ in list_augmented(other_seed.output_dir)] != [
        p.read_bytes() for p, _ in files_a
    ]


def test_target_per_class_balances_unequal_classes(tmp_path: Path, real_raw: Path):
    subset = make_subset(tmp_path / "src", {"petra": 12, "taj_mahal": 5, "colosseum": 2})
    train = _train(subset)
    result = augment_train(
        train,
        subset,
        tmp_path / "aug",
        "v1",
        AugmentOptions(target_per_class=20, chunk_size=8, output_size=32, preset="landmark"),
    )
    assert result.per_class_before == {"petra": 12, "taj_mahal": 5, "colosseum": 2}
    assert result.per_class_after == {"petra": 20, "taj_mahal": 20, "colosseum": 20}
    written = Counter(c for _, c in list_augmented(result.output_dir))
    assert written == {"petra": 8, "taj_mahal": 15, "colosseum": 18}
    assert _files_match_manifests(result.output_dir) == 41


def test_resume_after_sigkill_mid_chunk_leaves_no_partial_chunk(tmp_path: Path, small_subset: Path):
    out = tmp_path / "aug"
    opts = "aug.AugmentOptions(multiplier=0.5, chunk_size=7, output_size=48)"
    script = f"""
import os, signal
from pathlib import Path
import landmarks.augment as aug
import landmarks.augment.chunks as chunks
real_encode = chunks.encode_jpeg
written = [0]
def dying(*args, **kwargs):
    # Die like a killed process in the middle of chunk 2 (14 images committed, 3 half-written).
    if written[0] == 17:
        os.kill(os.getpid(), signal.SIGKILL)
    written[0] += 1
    return real_encode(*args, **kwargs)
chunks.encode_jpeg = dying
aug.augment_train({_train(small_subset)!r}, Path({str(small_subset)!r}), Path({str(out)!r}),
                  "v1", {opts})
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, cwd=REPO_ROOT)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    key_dir = next(out.iterdir())
    assert sorted(p.name for p in key_dir.glob("chunk-*")) == ["chunk-00000", "chunk-00001"]
    partial = list(key_dir.glob(".chunk-00002.tmp-*"))
    # The half-written chunk holds fewer files than a whole chunk (how many reached the disk
    # depends on the writer thread when the process died).
    assert len(partial) == 1 and len(list(partial[0].iterdir())) < 7
    done = {p: p.stat().st_mtime_ns for c in key_dir.glob("chunk-*") for p in c.iterdir()}

    result = augment_train(
        _train(small_subset),
        small_subset,
        out,
        "v1",
        AugmentOptions(multiplier=0.5, chunk_size=7, output_size=48),
    )
    assert result.chunks_done_before == 2 and result.num_chunks == 5
    assert not list(key_dir.glob(".chunk-*")), "the half-written chunk is gone"
    assert all(p.stat().st_mtime_ns == t for p, t in done.items()), "finished chunks not redone"
    files = list_augmented(key_dir)
    assert len(files) == 32 and len({p.name for p, _ in files}) == 32
    assert _files_match_manifests(key_dir) == 32
    assert read_json(key_dir / "manifest.json")["num_images"] == 32


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def test_sigkill_of_a_parallel_run_kills_its_workers_and_resumes(
    tmp_path: Path, small_subset: Path
):
    out = tmp_path / "aug"
    script = f"""
from pathlib import Path
import landmarks.augment as aug
if __name__ == "__main__":
    aug.augment_train({_train(small_subset)!r}, Path({str(small_subset)!r}), Path({str(out)!r}),
                      "v1", aug.AugmentOptions(multiplier=12.5, chunk_size=20, output_size=40,
                                               num_workers=2))
"""
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO_ROOT)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and len(list(out.glob("*/chunk-*"))) < 2:
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.05)
    children = [
        int(pid)
        for task in Path(f"/proc/{proc.pid}/task").iterdir()
        for pid in (task / "children").read_text().split()
    ]
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -9
    assert children, "the run had worker processes"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(_alive(pid) for pid in children):
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in children), "workers outlived their killed parent"
    key_dir = next(out.iterdir())
    committed = {c.name for c in key_dir.glob("chunk-*")}
    assert 2 <= len(committed) < 40

    result = augment_train(
        _train(small_subset),
        small_subset,
        out,
        "v1",
        AugmentOptions(multiplier=12.5, chunk_size=20, output_size=40),
    )
    assert result.chunks_done_before == len(committed) and result.num_chunks == 40
    assert not list(key_dir.glob(".chunk-*"))
    files = list_augmented(key_dir)
    assert len(files) == 800 and len({p.name for p in (f for f, _ in files)}) == 800
    assert _files_match_manifests(key_dir) == 800


def test_a_second_run_on_the_same_output_is_refused_while_the_first_holds_it(
    tmp_path: Path, small_subset: Path
):
    import fcntl

    opts = AugmentOptions(multiplier=0.25, output_size=32)
    key_dir = tmp_path / opts.key("v1")
    key_dir.mkdir(parents=True)
    with (key_dir / ".lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        with pytest.raises(RuntimeError, match="another augment run"):
            augment_train(_train(small_subset), small_subset, tmp_path, "v1", opts)
    assert augment_train(_train(small_subset), small_subset, tmp_path, "v1", opts).num_images == 16


_RSS_SCRIPT = """
import json, resource, sys
from pathlib import Path
import landmarks.augment as aug
if __name__ == "__main__":
    subset, out = sys.argv[1], sys.argv[2]
    multiplier, workers = float(sys.argv[3]), int(sys.argv[4])
    train = [{"path": f"{d.name}/{f.name}", "class": d.name}
             for d in sorted(Path(subset).iterdir()) for f in sorted(d.iterdir())]
    result = aug.augment_train(train, Path(subset), Path(out), "v1", aug.AugmentOptions(
        multiplier=multiplier, chunk_size=250, output_size=32, num_workers=workers))
    status = Path("/proc/self/status").read_text().split("\\n")
    hwm_kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM"))
    workers_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"images": result.num_images, "parent_mb": hwm_kb / 1024,
                      "worker_mb": workers_kb / 1024}))
"""


def _peak_rss(subset: Path, out: Path, multiplier: float, workers: int) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", _RSS_SCRIPT, str(subset), str(out), str(multiplier), str(workers)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_peak_memory_does_not_grow_with_the_number_of_images(tmp_path: Path, small_subset: Path):
    # 64 real photos -> 320 and 5,120 augmented images (16x more), measured in fresh processes.
    small = _peak_rss(small_subset, tmp_path / "small", 5, 1)
    large = _peak_rss(small_subset, tmp_path / "large", 80, 1)
    assert (small["images"], large["images"]) == (320, 5120)
    # The bound is a constant: it would be broken by anything that keeps per-image state.
    assert large["parent_mb"] - small["parent_mb"] < 16, (small, large)
    assert large["parent_mb"] < 400, large
    pooled = _peak_rss(small_subset, tmp_path / "pooled", 80, 2)
    assert pooled["images"] == 5120
    assert pooled["worker_mb"] < 400 and pooled["parent_mb"] < 400, pooled
