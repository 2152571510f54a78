"""Prediction throughput on the CPU: EfficientNet-Lite0 (224 px) against the original CNN
(128 px, the baseline), on real photos, Keras in batches and the exported TFLite model one
image at a time (how a phone or a small server would run it).

    .venv/bin/python benchmarks/predict.py [--images 128] [--batch-size 32]

Photos are decoded once beforehand, so the numbers are the model's, not JPEG decoding's.
Prints images/s and the ratio to the baseline; every number comes from this run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
REAL_RAW = ROOT.parent / "shared/datasets/landmarks-real/raw"

MODELS = {"original_cnn": 128, "efficientnet_lite0": 224}


def _photos(n: int) -> list[Path]:
    from landmarks.ingest import list_class_folders

    tree = list_class_folders(REAL_RAW)
    per_class = max(1, n // len(tree))
    files = [p for c in sorted(tree) for p in tree[c][:per_class]]
    return [p for p in files if p.suffix.lower() in {".jpg", ".jpeg"}][:n]


def measure(name: str, size: int, photos: list[Path], batch_size: int, work: Path) -> dict:
    import keras

    from landmarks.train.data import make_image_dataset
    from landmarks.train.loop import write_classes
    from landmarks.train.models import ModelSpec, make_model
    from landmarks.train.predict import export_model, tflite_predict

    images = np.concatenate(list(make_image_dataset(photos, size, batch_size).as_numpy_iterator()))
    model = make_model(ModelSpec(name=name, image_size=size, weights="imagenet"), 11)
    model.predict(images[:batch_size], batch_size=batch_size, verbose=0)  # trace once
    start = time.perf_counter()
    model.predict(images, batch_size=batch_size, verbose=0)
    keras_ips = len(images) / (time.perf_counter() - start)

    run_dir = work / name
    run_dir.mkdir(parents=True, exist_ok=True)
    model.save(run_dir / "model.keras")
    write_classes(run_dir, [f"c{i}" for i in range(11)])
    exported = export_model(run_dir / "model.keras", run_dir / "export", formats=("tflite",))
    subset = images[: min(len(images), 32)]
    tflite_predict(exported.tflite_path, subset[:2])  # allocate once
    start = time.perf_counter()
    tflite_predict(exported.tflite_path, subset)
    tflite_ips = len(subset) / (time.perf_counter() - start)
    size_mb = exported.tflite_path.stat().st_size / 1e6
    keras.backend.clear_session()
    return {"keras_ips": keras_ips, "tflite_ips": tflite_ips, "tflite_mb": size_mb}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    photos = _photos(args.images)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, size in MODELS.items():
            results[name] = measure(name, size, photos, args.batch_size, Path(tmp))
    base = results["original_cnn"]
    print(f"\n{len(photos)} real photos, {os.cpu_count()} CPUs, batch {args.batch_size}")
    print(f"{'model':20s} {'px':>4s} {'keras img/s':>12s} {'tflite img/s':>13s} {'tflite MB':>10s}")
    for name, r in results.items():
        print(
            f"{name:20s} {MODELS[name]:4d} {r['keras_ips']:12.1f} {r['tflite_ips']:13.1f} "
            f"{r['tflite_mb']:10.1f}   ({r['keras_ips'] / base['keras_ips']:.2f}x keras, "
            f"{r['tflite_ips'] / base['tflite_ips']:.2f}x tflite vs original_cnn)"
        )
    lite = results["efficientnet_lite0"]
    print(
        f"efficientnet_lite0: {1000 / lite['keras_ips']:.1f} ms/image in batches of "
        f"{args.batch_size}, {1000 / lite['tflite_ips']:.1f} ms/image with TFLite"
    )


if __name__ == "__main__":
    main()
