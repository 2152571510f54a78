"""Predict landmarks in image files with a saved model, and export models for serving."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from landmarks.clean import CleanOptions
from landmarks.storage import atomic_write_json
from landmarks.train.evaluate import load_class_names, model_image_size, prepare_images

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    path: str
    top: list[tuple[str, float]]  # (label, probability), most probable first

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "top3": [{"label": label, "probability": p} for label, p in self.top],
        }


@dataclass(frozen=True)
class PredictResult:
    predictions: list[Prediction]
    skipped: list[dict[str, str]] = field(default_factory=list)


def top_k(probs: np.ndarray, class_names: list[str], k: int = 3) -> list[tuple[str, float]]:
    order = np.argsort(-probs)[: min(k, len(class_names))]
    return [(class_names[i], float(probs[i])) for i in order]


def predict_files(
    model_path: Path,
    files: list[Path],
    clean_options: CleanOptions | None = None,
    k: int = 3,
    batch_size: int = 32,
) -> PredictResult:
    """Top-``k`` labels of each image file (any format the clean stage accepts).

    Files the clean stage would quarantine are skipped with their reason, never dropped
    silently.
    """
    import keras

    from landmarks.train.data import make_image_dataset

    model_path = Path(model_path)
    if not model_path.exists():
        raise FileNotFoundError(f"model {model_path} not found")
    class_names = load_class_names(model_path)
    if class_names is None:
        raise FileNotFoundError(
            f"no classes.json (or metrics.json) beside {model_path}: the label order is unknown"
        )
    model = keras.models.load_model(model_path)
    if model.output_shape[-1] != len(class_names):
        raise ValueError(
            f"{model_path} has {model.output_shape[-1]} outputs, not {len(class_names)}"
        )
    with tempfile.TemporaryDirectory(prefix="landmarks-predict-") as tmp:
        prepared, kept, skipped = prepare_images(
            [Path(f) for f in files], Path(tmp), clean_options or CleanOptions()
        )
        probs = (
            model.predict(
                make_image_dataset(prepared, model_image_size(model), batch_size), verbose=0
            )
            if prepared
            else np.zeros((0, len(class_names)))
        )
    predictions = [
        Prediction(str(files[i]), top_k(probs[j], class_names, k)) for j, i in enumerate(kept)
    ]
    return PredictResult(predictions, skipped)


@dataclass(frozen=True)
class ExportResult:
    saved_model_dir: Path | None
    tflite_path: Path | None
    classes_path: Path


def export_model(
    model_path: Path, out_dir: Path, formats: tuple[str, ...] = ("savedmodel", "tflite")
) -> ExportResult:
    """Export a saved Keras model as a TensorFlow SavedModel and/or a TFLite flatbuffer, with
    ``classes.json`` beside them (the label order)."""
    import keras
    import tensorflow as tf

    unknown = set(formats) - {"savedmodel", "tflite"}
    if unknown:
        raise ValueError(f"unknown export formats {sorted(unknown)}; choose savedmodel, tflite")
    class_names = load_class_names(model_path)
    if class_names is None:
        raise FileNotFoundError(f"no classes.json beside {model_path}: the label order is unknown")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = keras.models.load_model(model_path)
    saved_dir = out_dir / "saved_model"
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".export-") as tmp:
        # Export into a temp folder first so a half-written SavedModel never looks complete.
        staging = Path(tmp) / "saved_model"
        model.export(str(staging), format="tf_saved_model", verbose=False)
        tflite_path = None
        if "tflite" in formats:
            converter = tf.lite.TFLiteConverter.from_saved_model(str(staging))
            tflite_path = out_dir / "model.tflite"
            tmp_tflite = Path(tmp) / "model.tflite"
            tmp_tflite.write_bytes(converter.convert())
            tmp_tflite.replace(tflite_path)
        if "savedmodel" in formats:
            if saved_dir.exists():
                import shutil

                shutil.rmtree(saved_dir)
            staging.replace(saved_dir)
    classes_path = out_dir / "classes.json"
    atomic_write_json(
        classes_path, {"class_names": class_names, "image_size": model_image_size(model)}
    )
    log.info("exported %s to %s (%s)", model_path, out_dir, ", ".join(formats))
    return ExportResult(
        saved_model_dir=saved_dir if "savedmodel" in formats else None,
        tflite_path=tflite_path,
        classes_path=classes_path,
    )


def tflite_predict(tflite_path: Path, images: np.ndarray) -> np.ndarray:
    """Run a TFLite model on a batch of float32 [0, 255] images, one at a time."""
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_path=str(tflite_path))
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    interpreter.resize_tensor_input(inp["index"], [1, *images.shape[1:]])
    interpreter.allocate_tensors()
    results = []
    for image in images:
        interpreter.set_tensor(inp["index"], image[None].astype(np.float32))
        interpreter.invoke()
        results.append(interpreter.get_tensor(out["index"])[0])
    return np.stack(results)
