"""Predict and export with a tiny model trained on real photos."""

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from flows.cli import app
from landmarks.train.loop import TrainOptions, train_model
from landmarks.train.models import ModelSpec, make_model
from landmarks.train.predict import export_model, predict_files, tflite_predict

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, small_subset: Path) -> Path:
    classes = sorted(d.name for d in small_subset.iterdir())
    paths, labels = [], []
    for i, c in enumerate(classes):
        for f in sorted((small_subset / c).iterdir())[:6]:
            if f.suffix.lower() in {".jpg", ".jpeg"}:
                paths.append(str(f))
                labels.append(i)
    spec = ModelSpec(image_size=32, conv_blocks=1, first_filters=4, dense_units=8)
    run_dir = tmp_path_factory.mktemp("predict") / "run"
    result = train_model(
        lambda n: make_model(spec, n),
        (paths, labels),
        ([], []),
        len(classes),
        run_dir,
        TrainOptions(image_size=32, batch_size=8, epochs=1),
        class_names=classes,
    )
    return result.model_path


def test_predict_top3_any_format_and_a_broken_file(
    tiny_model: Path, real_raw: Path, tmp_path: Path
):
    webp = next(p for p in sorted((real_raw / "petra").iterdir()) if p.suffix == ".webp")
    jpeg = next(p for p in sorted((real_raw / "colosseum").iterdir()) if p.suffix == ".jpg")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(jpeg.read_bytes()[:300])  # a download cut short
    result = predict_files(tiny_model, [jpeg, broken, webp])
    assert [p.path for p in result.predictions] == [str(jpeg), str(webp)]
    assert [s["path"] for s in result.skipped] == [str(broken)]
    assert result.skipped[0]["reason"] in {"truncated", "unreadable"}
    classes = json.loads((tiny_model.parent / "classes.json").read_text())["class_names"]
    for p in result.predictions:
        probs = [prob for _, prob in p.top]
        assert len(p.top) == 3 and probs == sorted(probs, reverse=True)
        assert all(label in classes for label, _ in p.top) and 0 < sum(probs) <= 1.0 + 1e-6


def test_cli_predict_json(tiny_model: Path, real_raw: Path, tmp_path: Path):
    photo = sorted((real_raw / "taj_mahal").iterdir())[0]
    predict = ["predict", str(photo), "--model", str(tiny_model)]
    # --json -: the JSON alone on stdout, the lines for people on stderr.
    out = CliRunner().invoke(app, [*predict, "--json", "-"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data[0]["path"] == str(photo)
    assert [set(t) for t in data[0]["top3"]] == [{"label", "probability"}] * 3
    assert out.stderr.startswith(f"{photo}: ")
    # --json PATH: the file, and the usual lines on stdout.
    path = tmp_path / "predictions.json"
    out = CliRunner().invoke(app, [*predict, "--json", str(path)])
    assert out.exit_code == 0, out.output
    assert json.loads(path.read_text()) == data
    assert out.stdout.startswith(f"{photo}: ") and f"json: {path}" in out.stdout
    # --json takes a PATH, as in every command: alone it is a usage mistake.
    assert CliRunner().invoke(app, [*predict, "--json"]).exit_code == 2


def test_cli_predict_without_champion_says_what_to_do(tmp_path: Path, real_raw: Path):
    photo = sorted((real_raw / "taj_mahal").iterdir())[0]
    out = CliRunner().invoke(app, ["predict", str(photo), "--storage", str(tmp_path)])
    assert out.exit_code == 2 and "no champion" in out.output


def test_export_savedmodel_and_tflite_agree_with_keras(
    tiny_model: Path, real_raw: Path, tmp_path: Path
):
    import keras
    import tensorflow as tf

    from landmarks.train.data import make_image_dataset

    result = export_model(tiny_model, tmp_path / "export")
    assert (result.saved_model_dir / "saved_model.pb").is_file()
    assert result.tflite_path.stat().st_size > 0
    photos = [p for p in sorted((real_raw / "eiffel_tower").iterdir()) if p.suffix == ".jpg"][:3]
    images = np.concatenate(list(make_image_dataset(photos, 32, 8).as_numpy_iterator()))
    expected = keras.models.load_model(tiny_model).predict(images, verbose=0)
    np.testing.assert_allclose(tflite_predict(result.tflite_path, images), expected, atol=1e-4)
    served = tf.saved_model.load(str(result.saved_model_dir))
    np.testing.assert_allclose(served.serve(tf.constant(images)).numpy(), expected, atol=1e-4)
    meta = json.loads(result.classes_path.read_text())
    assert meta["image_size"] == 32 and len(meta["class_names"]) == 4
