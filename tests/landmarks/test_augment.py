import subprocess
import sys
from pathlib import Path

from landmarks.augment import AugmentOptions, augment_train, list_augmented, plan_copies
from landmarks.storage import read_json


def _train(small_subset: Path) -> list[dict]:
    return [
        {"path": f"{d.name}/{f.name}", "class": d.name}
        for d in sorted(small_subset.iterdir())
        for f in sorted(d.iterdir())
    ]


def test_plan_balances_classes():
    train = [{"path": f"a/{i}", "class": "a"} for i in range(10)] + [
        {"path": f"b/{i}", "class": "b"} for i in range(3)
    ]
    plan = plan_copies(train, multiplier=1.0, target_per_class=12)
    assert sum(e["class"] == "a" for e in plan) == 2 and sum(e["class"] == "b" for e in plan) == 9
    plan = plan_copies(train, multiplier=2.0, target_per_class=None)
    assert len(plan) == 26


def test_chunks_are_deterministic_and_complete(tmp_path: Path, small_subset: Path):
    train = _train(small_subset)
    opts = AugmentOptions(multiplier=0.5, chunk_size=7, output_size=64)
    a = augment_train(train, small_subset, tmp_path / "a", "v1", opts)
    b = augment_train(train, small_subset, tmp_path / "b", "v1",
                      AugmentOptions(multiplier=0.5, chunk_size=7, output_size=64, num_workers=2))
    files_a = list_augmented(a.output_dir)
    files_b = list_augmented(b.output_dir)
    assert a.num_images == 32 and len(files_a) == 32 and a.num_chunks == 5
    assert [p.read_bytes() for p, _ in files_a] == [p.read_bytes() for p, _ in files_b]
    assert a.per_class_after == {c: 24 for c in a.per_class_before}
    again = augment_train(train, small_subset, tmp_path / "a", "v1", opts)
    assert again.chunks_done_before == 5


def test_resume_after_sigkill_leaves_no_partial_chunk(tmp_path: Path, small_subset: Path):
    out = tmp_path / "aug"
    script = f"""
import os, signal
from pathlib import Path
import landmarks.augment as aug
train = {_train(small_subset)!r}
real = aug.augment_chunk
def dying(index, *args, **kwargs):
    if index == 2:
        # Half-write chunk 2, then die like a killed process.
        tmp = Path({str(out)!r}) / aug.AugmentOptions(multiplier=0.5, chunk_size=7,
            output_size=64).key("v1") / f".chunk-00002.tmp-{{os.getpid()}}"
        tmp.mkdir(parents=True, exist_ok=True)
        (tmp / "half.jpg").write_bytes(b"partial")
        os.kill(os.getpid(), signal.SIGKILL)
    return real(index, *args, **kwargs)
aug.augment_chunk = dying
aug.augment_train(train, Path({str(small_subset)!r}), Path({str(out)!r}), "v1",
                  aug.AugmentOptions(multiplier=0.5, chunk_size=7, output_size=64))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    key_dir = next(out.iterdir())
    assert sorted(p.name for p in key_dir.glob("chunk-*")) == ["chunk-00000", "chunk-00001"]
    done = {p: p.stat().st_mtime_ns for c in key_dir.glob("chunk-*") for p in c.iterdir()}

    result = augment_train(_train(small_subset), small_subset, out, "v1",
                           AugmentOptions(multiplier=0.5, chunk_size=7, output_size=64))
    assert result.chunks_done_before == 2 and result.num_chunks == 5
    assert not list(key_dir.glob(".chunk-*")), "the half-written chunk is gone"
    assert all(p.stat().st_mtime_ns == t for p, t in done.items()), "finished chunks not redone"
    files = list_augmented(key_dir)
    assert len(files) == 32 and len({p.name for p, _ in files}) == 32
    assert read_json(key_dir / "manifest.json")["num_images"] == 32
