"""Augmentation benchmarks on the real photos (../shared/datasets/landmarks-real).

    .venv/bin/python benchmarks/augment.py                 # everything (the 50,000 run last)
    .venv/bin/python benchmarks/augment.py --skip-large    # without the 50,000-image run

Every figure is measured in a fresh subprocess (peak RSS from /proc/self/status VmHWM of the
run's process and getrusage(RUSAGE_CHILDREN) of its workers), against baselines measured in
the same run. Outputs go under --work (default /tmp) and are deleted at the end.

1. Peak RSS producing 2,000 and 50,000 images (2 workers): ratio <= 1.2, both < 1 GiB.
2. Throughput of one worker against a bare in-memory albumentations loop over the same
   decoded images, plan and transforms (>= 0.7), at few and at many copies per photo.
3. Speed-up from 1 to 2 workers.
4. The original approach (decode everything, augment into one float32 array) at sizes that
   fit under an address-space cap, its memory per image, and where it breaks.
5. The output format: JPEG files per chunk folder against TFRecord shards (write, disk, read).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
REAL_RAW = REPO.parent / "shared/datasets/landmarks-real/raw"
GIB = 1024**3


# --------------------------------------------------------------------------- helpers


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _peaks() -> dict[str, float]:
    return {
        "parent_mb": _status_kb("VmHWM") / 1024,
        "worker_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


def _train(clean_dir: Path, per_class: int | None = None) -> list[dict[str, str]]:
    from landmarks.storage import read_jsonl

    records = read_jsonl(clean_dir / "manifest.jsonl")
    by_class: dict[str, list[dict[str, str]]] = {}
    for r in sorted(records, key=lambda r: r["path"]):
        by_class.setdefault(r["class"], []).append({"path": r["path"], "class": r["class"]})
    return [r for rs in by_class.values() for r in (rs[:per_class] if per_class else rs)]


def _run_child(kind: str, **kwargs: Any) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "_child", kind, json.dumps(kwargs)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def prepare(work: Path) -> Path:
    """Import and clean the real photos once (the clean stage's own code): the augment input."""
    storage = work / "storage"
    clean_dir = storage / "clean"
    if not (clean_dir / "manifest.jsonl").exists():
        from landmarks.clean import CleanOptions, clean_raw
        from landmarks.ingest import import_folder
        from landmarks.storage import Layout

        layout = Layout(storage)
        import_folder(REAL_RAW, layout)
        clean_raw(layout, CleanOptions())
    return clean_dir


# --------------------------------------------------------------------------- children


def child_produce(
    clean_dir: str, out: str, images: int, workers: int, size: int, per_class: int | None = None
) -> dict[str, Any]:
    """One real augment run of about ``images`` images; time, peak RSS, bytes on disk."""
    from landmarks.augment import AugmentOptions, augment_train

    train = _train(Path(clean_dir), per_class)
    options = AugmentOptions(
        multiplier=images / len(train), output_size=size, num_workers=workers, chunk_size=500
    )
    start = time.perf_counter()
    result = augment_train(train, Path(clean_dir), Path(out), "bench", options)
    seconds = time.perf_counter() - start
    disk = sum(p.stat().st_size for p in result.output_dir.glob("chunk-*/*.jpg"))
    return {
        "images": result.num_images,
        "sources": len(train),
        "seconds": seconds,
        "rate": result.num_images / seconds,
        "jpeg_mb": disk / 2**20,
        **_peaks(),
    }


def child_throughput(
    clean_dir: str, out: str, images: int, size: int, per_class: int | None, repeats: int
) -> dict[str, Any]:
    """Our one-worker path against the bare loop, alternated ``repeats`` times (medians).

    The bare loop gets the same sources decoded the same way (done before timing), the same
    plan entries and seeds, and the same transform; it neither decodes, encodes nor writes.
    """
    import cv2
    import numpy as np

    from landmarks.augment import (
        AugmentOptions,
        augment_train,
        build_transform,
        decode_size,
        encode_jpeg,
        image_seed,
        load_source,
        make_plan,
    )

    cv2.setNumThreads(1)
    clean = Path(clean_dir)
    train = _train(clean, per_class)
    options = AugmentOptions(multiplier=images / len(train), output_size=size, chunk_size=500)
    plan = make_plan(train, options.multiplier, None, options.chunk_size, options.seed)
    entries = list(plan.entries())
    transform = build_transform(options.preset, size)
    start = time.perf_counter()
    decoded = {
        r["path"]: load_source(clean / r["path"], decode_size(options.preset, size)) for r in train
    }
    load_seconds = time.perf_counter() - start
    bare, encoded, ours = [], [], []
    for i in range(repeats):
        start = time.perf_counter()
        for source, _class, copy in entries:
            transform.set_random_seed(image_seed(options.seed, source, copy))
            out_image = transform(image=decoded[source])["image"]
        bare.append(time.perf_counter() - start)
        assert out_image.dtype == np.uint8
        start = time.perf_counter()
        for source, _class, copy in entries:
            transform.set_random_seed(image_seed(options.seed, source, copy))
            encode_jpeg(transform(image=decoded[source])["image"], options.jpeg_quality)
        encoded.append(time.perf_counter() - start)
        # A fresh folder each time and no deletion in between: on this disk (ext4, online
        # discard) deleting thousands of files stalls the file creations that follow.
        start = time.perf_counter()
        augment_train(train, clean, Path(out) / f"r{i}", "bench", options)
        ours.append(time.perf_counter() - start)
    n = len(entries)
    return {
        "images": n,
        "sources": len(train),
        "copies_per_source": n / len(train),
        "bare_rate": n / statistics.median(bare),
        "bare_rate_with_loading": n / (statistics.median(bare) + load_seconds),
        "bare_encode_rate": n / statistics.median(encoded),
        "ours_rate": n / statistics.median(ours),
        "bare_runs_s": bare,
        "ours_runs_s": ours,
    }


def child_original(clean_dir: str, images: int, size: int, cap_gib: float) -> dict[str, Any]:
    """The original approach: every photo decoded and resized into one float32 array, then
    every augmented copy stored into one preallocated float32 array (what Keras'
    ImageDataGenerator yields), under an address-space cap so it cannot take the machine."""
    import cv2
    import numpy as np

    from landmarks.augment import build_transform, image_seed, load_source, make_plan

    cv2.setNumThreads(1)
    base_vm = _status_kb("VmSize") * 1024
    cap = int(base_vm + cap_gib * GIB)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    clean = Path(clean_dir)
    train = _train(clean)
    plan = make_plan(train, images / len(train), None, 500, 42)
    transform = build_transform("original", size)
    base_rss = _status_kb("VmRSS") / 1024
    start = time.perf_counter()
    try:
        index = {r["path"]: i for i, r in enumerate(train)}
        x = np.empty((len(train), size, size, 3), np.float32)
        for i, r in enumerate(train):
            x[i] = cv2.resize(load_source(clean / r["path"], size), (size, size))
        out = np.empty((plan.total, size, size, 3), np.float32)
        for k, (source, _class, copy) in enumerate(plan.entries()):
            transform.set_random_seed(image_seed(42, source, copy))
            # Keras augments float arrays; albumentations wants uint8 for these ops.
            out[k] = transform(image=x[index[source]].astype(np.uint8))["image"]
    except MemoryError as exc:
        return {"images": plan.total, "failed": f"MemoryError: {exc}", "cap_gib": cap_gib}
    seconds = time.perf_counter() - start
    peak = _status_kb("VmHWM") / 1024
    return {
        "images": plan.total,
        "seconds": seconds,
        "rate": plan.total / seconds,
        "parent_mb": peak,
        "array_mb": out.nbytes / 2**20,
        "grown_mb": peak - base_rss,
        "cap_gib": cap_gib,
    }


def child_formats(aug_dir: str, work: str) -> dict[str, Any]:
    """JPEG files per chunk folder vs the same JPEG bytes in TFRecord shards: write time,
    disk use, and a tf.data read+decode pass over each."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    from landmarks.augment import list_augmented

    items = list_augmented(Path(aug_dir))
    blobs = [(p.read_bytes(), c) for p, c in items]
    classes = sorted({c for _, c in blobs})
    files_dir, shard_dir = Path(work) / "files", Path(work) / "shards"
    files_dir.mkdir(parents=True)
    shard_dir.mkdir(parents=True)

    start = time.perf_counter()
    for i, (data, _c) in enumerate(blobs):
        chunk = files_dir / f"chunk-{i // 500:05d}"
        chunk.mkdir(exist_ok=True)
        (chunk / f"{i:06d}.jpg").write_bytes(data)
    files_write = time.perf_counter() - start

    def example(data: bytes, label: int) -> bytes:
        feature = {
            "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[data])),
            "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
        }
        return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()

    start = time.perf_counter()
    for s in range(0, len(blobs), 500):
        with tf.io.TFRecordWriter(str(shard_dir / f"shard-{s // 500:05d}.tfrecord")) as writer:
            for data, c in blobs[s : s + 500]:
                writer.write(example(data, classes.index(c)))
    shard_write = time.perf_counter() - start

    def du_kb(path: Path) -> int:
        return int(
            subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True).stdout.split()[
                0
            ]
        )

    paths = [str(p) for p in sorted(files_dir.glob("chunk-*/*.jpg"))]

    def decode_file(path: tf.Tensor) -> tf.Tensor:
        return tf.io.decode_jpeg(tf.io.read_file(path), channels=3)

    spec = {
        "image": tf.io.FixedLenFeature([], tf.string),
        "label": tf.io.FixedLenFeature([], tf.int64),
    }

    def decode_record(record: tf.Tensor) -> tf.Tensor:
        return tf.io.decode_jpeg(tf.io.parse_single_example(record, spec)["image"], channels=3)

    def read_pass(ds: tf.data.Dataset) -> float:
        start = time.perf_counter()
        for _ in ds.batch(64).prefetch(2):
            pass
        return time.perf_counter() - start

    files_ds = tf.data.Dataset.from_tensor_slices(paths).map(decode_file, tf.data.AUTOTUNE)
    shards = sorted(str(p) for p in shard_dir.glob("*.tfrecord"))
    shard_ds = tf.data.TFRecordDataset(shards, num_parallel_reads=2).map(
        decode_record, tf.data.AUTOTUNE
    )
    read_pass(files_ds)  # warm both (graph tracing, page cache)
    read_pass(shard_ds)
    files_read = statistics.median(read_pass(files_ds) for _ in range(3))
    shard_read = statistics.median(read_pass(shard_ds) for _ in range(3))
    return {
        "images": len(blobs),
        "files_write_s": files_write,
        "shards_write_s": shard_write,
        "files_disk_kb": du_kb(files_dir),
        "shards_disk_kb": du_kb(shard_dir),
        "payload_kb": sum(len(d) for d, _ in blobs) // 1024,
        "files_read_rate": len(blobs) / files_read,
        "shards_read_rate": len(blobs) / shard_read,
    }


CHILDREN = {
    "produce": child_produce,
    "throughput": child_throughput,
    "original": child_original,
    "formats": child_formats,
}


# --------------------------------------------------------------------------- report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--output-size", type=int, default=128)
    parser.add_argument("--small", type=int, default=2_000)
    parser.add_argument("--large", type=int, default=50_000)
    parser.add_argument("--skip-large", action="store_true")
    parser.add_argument("--keep", action="store_true", help="Keep the work folder.")
    args = parser.parse_args()
    work = args.work / "landmarks-augment-bench"
    size = args.output_size
    clean_dir = prepare(work)
    n_sources = len(_train(clean_dir))
    print(
        f"real photos: {n_sources} clean images from {REAL_RAW}; outputs {size}x{size} px; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start\n"
    )

    def out(name: str) -> str:
        path = work / name
        shutil.rmtree(path, ignore_errors=True)
        return str(path)

    print("== 3. Speed-up from 1 to 2 workers (wall clock incl. worker start-up)")
    speed = {}
    for rep, w in enumerate((1, 2, 1, 2)):
        r = _run_child(
            "produce",
            clean_dir=str(clean_dir),
            out=out(f"speed{rep}"),
            images=6_000,
            workers=w,
            size=size,
        )
        speed.setdefault(w, []).append(r["rate"])
    r1, r2 = statistics.median(speed[1]), statistics.median(speed[2])
    print(
        f"   {r['images']} images: 1 worker {r1:.0f} img/s, 2 workers {r2:.0f} img/s "
        f"-> speed-up {r2 / r1:.2f}x (runs: {speed})\n"
    )

    print("== 2. Throughput of one worker vs a bare in-memory albumentations loop")
    for label, per_class, images, px in (
        ("many copies per photo", 10, 4_000, size),
        ("many copies per photo", 10, 2_000, 256),
        ("multiplier 2, all photos", None, 2 * n_sources, size),
    ):
        r = _run_child(
            "throughput",
            clean_dir=str(clean_dir),
            out=out(f"tput-{px}-{images}"),
            images=images,
            size=px,
            per_class=per_class,
            repeats=3,
        )
        bare = r["bare_rate"]
        print(
            f"   {label}, {px} px: {r['images']} images from {r['sources']} photos "
            f"({r['copies_per_source']:.1f} copies each): bare loop {bare:.0f} img/s; "
            f"bare loop + JPEG encoding {r['bare_encode_rate']:.0f} img/s "
            f"({r['bare_encode_rate'] / bare:.2f}); ours {r['ours_rate']:.0f} img/s "
            f"-> ratio {r['ours_rate'] / bare:.2f} (vs bare loop incl. decoding its photos: "
            f"{r['ours_rate'] / r['bare_rate_with_loading']:.2f})"
        )
    print()

    print("== 5. Output format: JPEG files per chunk folder vs TFRecord shards")
    src = _run_child(
        "produce", clean_dir=str(clean_dir), out=out("fmt-src"), images=2_000, workers=1, size=size
    )
    aug_dir = next(p for p in (work / "fmt-src").iterdir() if p.is_dir())
    f = _run_child("formats", aug_dir=str(aug_dir), work=out("fmt"))
    print(f"   {f['images']} images, {f['payload_kb']} kB of JPEG bytes ({src['images']} made)")
    print(f"   write: files {f['files_write_s']:.2f} s, TFRecord {f['shards_write_s']:.2f} s")
    print(f"   disk (du): files {f['files_disk_kb']} kB, TFRecord {f['shards_disk_kb']} kB")
    print(
        f"   tf.data read+decode: files {f['files_read_rate']:.0f} img/s, "
        f"TFRecord {f['shards_read_rate']:.0f} img/s\n"
    )

    print("== 4. The original approach: everything decoded, copies in one float32 array")
    originals = []
    for images in (2_000, 5_000, 10_000, 20_000):
        r = _run_child("original", clean_dir=str(clean_dir), images=images, size=size, cap_gib=3.0)
        originals.append(r)
        if "failed" in r:
            print(
                f"   {r['images']:>6} images: breaks under a {r['cap_gib']} GiB cap ({r['failed']})"
            )
        else:
            print(
                f"   {r['images']:>6} images: peak RSS {r['parent_mb']:.0f} MB "
                f"(array {r['array_mb']:.0f} MB), {r['rate']:.0f} img/s"
            )
    fits = [r for r in originals if "failed" not in r]
    if len(fits) >= 2:
        a, b = fits[0], fits[-1]
        per_image = (b["parent_mb"] - a["parent_mb"]) / (b["images"] - a["images"])
        fixed = a["parent_mb"] - per_image * a["images"]
        print(
            f"   measured slope {per_image * 1024:.0f} kB per image "
            f"(= {size}x{size}x3 float32 = {size * size * 12 / 1024:.0f} kB), fixed "
            f"{fixed:.0f} MB; extrapolated peak RSS:"
        )
        for n, s in ((50_000, size), (100_000, size), (96_000, 256), (100_000, 256)):
            mb = fixed + per_image * n * (s / size) ** 2
            print(f"     {n:>7} images at {s} px: {mb / 1024:.1f} GiB")
        limit = (24 * 1024 - fixed) / per_image
        print(
            f"   on this 24 GiB machine it breaks past ~{limit:,.0f} images at {size} px "
            f"(~{limit / 4:,.0f} at 256 px)\n"
        )

    print("== 1. Peak RSS of our runs (2 workers)")
    sizes = [args.small] + ([] if args.skip_large else [args.large])
    runs = {}
    for images in sizes:
        r = _run_child(
            "produce",
            clean_dir=str(clean_dir),
            out=out(f"rss{images}"),
            images=images,
            workers=2,
            size=size,
        )
        runs[images] = r
        total = r["parent_mb"] + 2 * r["worker_mb"]
        print(
            f"   {r['images']:>6} images in {r['seconds']:.0f} s ({r['rate']:.0f} img/s, "
            f"{r['jpeg_mb']:.0f} MB of JPEG): parent {r['parent_mb']:.0f} MB, largest worker "
            f"{r['worker_mb']:.0f} MB, parent + 2 workers {total:.0f} MB"
        )
    if len(runs) == 2:
        small, large = runs[sizes[0]], runs[sizes[1]]
        tot = [x["parent_mb"] + 2 * x["worker_mb"] for x in (small, large)]
        ratio = max(
            large["worker_mb"] / small["worker_mb"],
            large["parent_mb"] / small["parent_mb"],
            tot[1] / tot[0],
        )
        print(
            f"   ratio {sizes[1]:,} / {sizes[0]:,} (worst of parent, worker, sum): "
            f"{ratio:.3f} (target <= 1.2); both under 1 GiB: "
            f"{max(tot) < 1024} ({max(tot):.0f} MB)"
        )
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "_child":
        sys.path.insert(0, str(REPO))
        print(json.dumps(CHILDREN[sys.argv[2]](**json.loads(sys.argv[3]))))
    else:
        sys.path.insert(0, str(REPO))
        main()
