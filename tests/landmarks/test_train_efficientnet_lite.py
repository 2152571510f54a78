"""EfficientNet-Lite0: the ImageNet port on real photos; training, predict and export with it."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from landmarks.train.efficientnet_lite import NUM_BLOCKS, imagenet_classifier
from landmarks.train.loop import TrainOptions, train_model
from landmarks.train.models import ModelSpec, make_model

pytestmark = pytest.mark.slow

# ImageNet-1k class indices the ported head should give real landmark photos.
MOSQUE, PEDESTAL, ALP, DAM, PALACE = 668, 708, 970, 525, 698


def _first_photos(folder: Path, n: int) -> list[Path]:
    return sorted(folder.iterdir())[:n]


def test_imagenet_head_names_landmarks_sensibly(real_raw: Path) -> None:
    """The port is right when the checkpoint's own ImageNet head, run in Keras, calls a Taj
    Mahal photo a mosque, Christ the Redeemer a pedestal, Machu Picchu an alp. The counts are
    what the port gives on the first 16 photos of each class (a wrong kernel layout or padding
    scatters them over unrelated classes)."""
    from landmarks.train.data import make_image_dataset

    model = imagenet_classifier()
    expected = {
        "taj_mahal": (MOSQUE, 10),
        "christ_the_redeemer": (PEDESTAL, 12),
        "machu_picchu": (ALP, 11),
        "niagara_falls": (DAM, 8),
        "colosseum": (PALACE, 8),
    }
    for cls, (index, count) in expected.items():
        photos = _first_photos(real_raw / cls, 16)
        probs = model.predict(make_image_dataset(photos, 224, 16), verbose=0)
        top1 = Counter(probs.argmax(1).tolist())
        assert top1.most_common(1)[0][0] == index, (cls, top1.most_common(3))
        assert top1[index] >= count - 2, (cls, top1.most_common(3))
        np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-4)


@pytest.fixture(scope="module")
def lite_run(tmp_path_factory: pytest.TempPathFactory, small_subset: Path) -> Path:
    """EfficientNet-Lite0 at 96 px (small, to stay fast) on 4 classes x 10 real photos."""
    classes = sorted(d.name for d in small_subset.iterdir())
    paths, labels, val_paths, val_labels = [], [], [], []
    for i, c in enumerate(classes):
        photos = _first_photos(small_subset / c, 14)
        paths += [str(p) for p in photos[:10]]
        labels += [i] * 10
        val_paths += [str(p) for p in photos[10:]]
        val_labels += [i] * len(photos[10:])
    spec = ModelSpec(name="efficientnet_lite0", image_size=96, weights="imagenet", dropout=0.1)
    run_dir = tmp_path_factory.mktemp("lite") / "run"
    options = TrainOptions(
        batch_size=8,
        epochs=1,
        head_epochs=15,
        fine_tune_blocks=1,
        early_stopping_patience=0,
        augment_on_the_fly="flip",
    )
    result = train_model(
        lambda n: make_model(spec, n),
        (paths, labels),
        (val_paths, val_labels),
        len(classes),
        run_dir,
        options,
        class_names=classes,
    )
    assert result.epochs_run == 1
    return result.model_path


def test_head_then_top_blocks(lite_run: Path) -> None:
    import keras

    run_dir = lite_run.parent
    head = json.loads((run_dir / "head_phase.json").read_text())
    # The head alone, on cached ImageNet features, already separates 4 landmarks.
    assert head["accuracy"] >= 0.9 and head["val_accuracy"] >= 0.6
    with np.load(run_dir / "features.npz") as features:
        # What enters the one fine-tuned block (96 px -> 3x3x192), for each photo and mirror.
        assert features["train"].shape == features["train_flip"].shape == (40, 3, 3, 192)
        assert features["val"].shape == (16, 3, 3, 192)
    model = keras.models.load_model(lite_run)
    base = model.get_layer("efficientnet_lite0_backbone")
    trainable = {w.path.split("/")[0] for w in base.trainable_weights}
    assert trainable == {
        f"blocks.{NUM_BLOCKS - 1}.{n}" for n in ("expand_conv", "depthwise_conv", "project_conv")
    } | {"conv_head"}  # noqa: E501
    rows = (run_dir / "history.csv").read_text().splitlines()
    assert len(rows) == 2 and float(rows[1].split(",")[1]) >= 0.6  # fine-tuned epoch accuracy


def test_predict_and_export_agree(lite_run: Path, real_raw: Path, tmp_path: Path) -> None:
    import keras
    import tensorflow as tf

    from landmarks.train.data import make_image_dataset
    from landmarks.train.predict import export_model, predict_files, tflite_predict

    photos = [p for p in _first_photos(real_raw / "eiffel_tower", 40) if p.suffix == ".jpg"][-3:]
    result = predict_files(lite_run, photos)
    assert [p.top[0][0] for p in result.predictions].count("eiffel_tower") >= 2
    exported = export_model(lite_run, tmp_path / "export")
    images = np.concatenate(list(make_image_dataset(photos, 96, 8).as_numpy_iterator()))
    expected = keras.models.load_model(lite_run).predict(images, verbose=0)
    np.testing.assert_allclose(tflite_predict(exported.tflite_path, images), expected, atol=1e-4)
    served = tf.saved_model.load(str(exported.saved_model_dir))
    np.testing.assert_allclose(served.serve(tf.constant(images)).numpy(), expected, atol=1e-4)
    assert json.loads(exported.classes_path.read_text())["image_size"] == 96


def test_pretrained_is_the_default_and_the_original_cnn_one_setting_away(tmp_path: Path) -> None:
    from flows.options import model_spec, train_options
    from flows.sweep import _original_cnn_unless_named
    from landmarks.config import load_settings

    root = Path(__file__).resolve().parents[2]
    default = load_settings()
    assert model_spec(default).name == "efficientnet_lite0" and default.train.weights == "imagenet"
    best = load_settings(root / "configs" / "best_cpu.toml")
    assert (model_spec(best).name, train_options(best).image_size) == ("efficientnet_lite0", 224)
    assert best.train.time_limit_s <= 600
    original = load_settings(root / "configs" / "original.toml")
    assert model_spec(original).name == "original_cnn" and original.train.image_size == 128
    flag = load_settings(None, {"train": {"model": "original_cnn"}})
    assert flag.train.image_size is None  # resolved by the model: 128 for the CNN
    assert make_model(model_spec(flag), 3).input_shape == (None, 128, 128, 3)
    # The leakage study stays on the original CNN unless a model is named.
    assert _original_cnn_unless_named(None, {})["train"]["model"] == "original_cnn"
    named = {"train": {"model": "vgg"}}
    assert _original_cnn_unless_named(None, named) == named
    cfg = tmp_path / "c.toml"
    cfg.write_text('[train]\nmodel = "efficientnet_lite0"\n')
    assert "model" not in _original_cnn_unless_named(str(cfg), {}).get("train", {})
