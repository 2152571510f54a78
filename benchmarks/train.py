"""Training benchmarks on the real photos (../shared/datasets/landmarks-real).

1. Input pipeline vs training step, same model (the original CNN) and batch: images/s that
   the tf.data pipeline delivers from disk (decode, resize, prefetch) against images/s that a
   training step consumes from a batch already in memory. Target: input >= 3x.
2. Peak RSS of one training epoch on 2,000 and on 20,000 augmented images (each in its own
   process): the pipeline streams from disk, so RSS must not grow with the dataset.
   Target: ratio <= 1.3.

    .venv/bin/python benchmarks/train.py [--work DIR] [--image-size 128] [--batch-size 32]

Prints a table of ratios; every number comes from this run, on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
REAL_RAW = (
    Path(os.environ.get("LANDMARKS_TEST_REAL_DIR", ROOT.parent / "shared/datasets/landmarks-real"))
    / "raw"
)


def prepare(work: Path, num_augmented: int) -> tuple[list[str], list[int], list[str]]:
    """Clean the real photos (as the clean stage does) and augment them up to
    ``num_augmented`` images on disk; reused when already there."""
    from landmarks.augment import AugmentOptions, augment_train, list_augmented
    from landmarks.ingest import list_class_folders
    from landmarks.storage import atomic_write_json, read_json
    from landmarks.train.evaluate import prepare_images

    clean_dir = work / "clean"
    index_path = work / "clean.json"
    if index_path.exists():
        records = read_json(index_path)
    else:
        tree = list_class_folders(REAL_RAW)
        records = []
        for name, files in sorted(tree.items()):
            prepared, kept, _ = prepare_images(files, clean_dir / name, _clean_options())
            records += [
                {"path": str(Path(p).relative_to(clean_dir)), "class": name} for p in prepared
            ]
        atomic_write_json(index_path, records)
    opts = AugmentOptions(
        preset="landmark",
        multiplier=num_augmented / len(records) + 0.01,
        output_size=256,
        chunk_size=1000,
        num_workers=2,
    )
    result = augment_train(records, clean_dir, work / "augmented", "bench", opts)
    items = list_augmented(result.output_dir)[:num_augmented]
    classes = sorted({c for _, c in items})
    return [str(p) for p, _ in items], [classes.index(c) for _, c in items], classes


def _clean_options():
    from landmarks.clean import CleanOptions

    return CleanOptions()


def throughput(
    paths: list[str],
    labels: list[int],
    num_classes: int,
    image_size: int,
    batch_size: int,
    steps: int,
) -> dict[str, float]:
    import keras

    from landmarks.train.data import make_dataset
    from landmarks.train.models import ModelSpec, make_model

    ds = make_dataset(paths, labels, num_classes, image_size, batch_size, shuffle=True)
    it = iter(ds)
    next(it)  # warm up the pipeline threads
    start = time.perf_counter()
    n = 0
    for _ in range(steps):
        x, _ = next(it)
        n += int(x.shape[0])
    input_ips = n / (time.perf_counter() - start)

    model = make_model(ModelSpec(image_size=image_size), num_classes)
    model.compile(optimizer=keras.optimizers.Adam(), loss="categorical_crossentropy")
    x, y = next(iter(ds))
    model.train_on_batch(x, y)  # compile the step
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    train_ips = steps * batch_size / (time.perf_counter() - start)
    return {"input_ips": input_ips, "train_ips": train_ips}


def rss_child(paths_file: str, image_size: int, batch_size: int) -> None:
    """Train one epoch on the listed images and print peak RSS (run in a fresh process)."""
    from landmarks.train.loop import TrainOptions, train_model
    from landmarks.train.models import ModelSpec, make_model

    data = json.loads(Path(paths_file).read_text())
    spec = ModelSpec(image_size=image_size)
    with tempfile.TemporaryDirectory() as run_dir:
        start = time.perf_counter()
        train_model(
            lambda n: make_model(spec, n),
            (data["paths"], data["labels"]),
            ([], []),
            data["num_classes"],
            Path(run_dir),
            TrainOptions(
                image_size=image_size, batch_size=batch_size, epochs=1, early_stopping_patience=0
            ),
        )
        seconds = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peak_rss_mib": peak_kib / 1024, "seconds": seconds}))


def peak_rss(
    work: Path,
    paths: list[str],
    labels: list[int],
    num_classes: int,
    image_size: int,
    batch_size: int,
) -> dict[str, float]:
    listing = work / f"paths-{len(paths)}.json"
    listing.write_text(json.dumps({"paths": paths, "labels": labels, "num_classes": num_classes}))
    proc = subprocess.run(
        [
            sys.executable,
            __file__,
            "--rss-child",
            str(listing),
            "--image-size",
            str(image_size),
            "--batch-size",
            str(batch_size),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "bench-train")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rss-image-size", type=int, default=64)
    parser.add_argument("--large", type=int, default=20_000)
    parser.add_argument("--small", type=int, default=2_000)
    parser.add_argument("--rss-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(args.rss_child, args.image_size, args.batch_size)
        return

    import tensorflow as tf

    args.work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    paths, labels, classes = prepare(args.work, args.large)
    print(
        f"prepared {len(paths)} augmented images from {REAL_RAW} in "
        f"{time.perf_counter() - t0:.0f} s; {os.cpu_count()} CPUs, TF {tf.__version__}"
    )

    tp = throughput(paths, labels, len(classes), args.image_size, args.batch_size, args.steps)
    ratio = tp["input_ips"] / tp["train_ips"]
    print(
        f"\n1. input vs training step (original CNN, {args.image_size} px, batch "
        f"{args.batch_size}, {args.steps} batches)"
    )
    print(f"   input pipeline  {tp['input_ips']:8.1f} images/s")
    print(f"   training step   {tp['train_ips']:8.1f} images/s")
    print(f"   ratio           {ratio:8.2f}x   (target >= 3)  {'OK' if ratio >= 3 else 'MISSED'}")

    small = peak_rss(
        args.work,
        paths[: args.small],
        labels[: args.small],
        len(classes),
        args.rss_image_size,
        args.batch_size,
    )
    large = peak_rss(args.work, paths, labels, len(classes), args.rss_image_size, args.batch_size)
    r = large["peak_rss_mib"] / small["peak_rss_mib"]
    print(f"\n2. peak RSS of one training epoch (original CNN, {args.rss_image_size} px)")
    for n, m in ((args.small, small), (len(paths), large)):
        print(f"   {n:6d} images  {m['peak_rss_mib']:8.0f} MiB  ({m['seconds']:.0f} s)")
    print(f"   ratio          {r:8.2f}     (target <= 1.3)  {'OK' if r <= 1.3 else 'MISSED'}")


if __name__ == "__main__":
    main()
