"""Real (tiny) TensorFlow training on real photos."""

import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from landmarks.train.evaluate import evaluate_model
from landmarks.train.loop import TrainOptions, class_weights, history_figure, train_model
from landmarks.train.models import ModelSpec, make_model

pytestmark = pytest.mark.slow


def _items(small_subset: Path, per_class: int) -> tuple[list[str], list[int], list[str]]:
    classes = sorted(d.name for d in small_subset.iterdir())
    paths, labels = [], []
    for i, c in enumerate(classes):
        for f in sorted((small_subset / c).iterdir())[:per_class]:
            # decode_jpeg only reads JPEG (the clean stage writes JPEG); skip other formats here
            if f.suffix.lower() in {".jpg", ".jpeg"}:
                paths.append(str(f))
                labels.append(i)
    return paths, labels, classes


def test_original_cnn_shape():
    model = make_model(ModelSpec(image_size=64, conv_blocks=2), 11)
    assert model.output_shape == (None, 11)
    names = [layer.__class__.__name__ for layer in model.layers]
    assert names[:5] == ["Rescaling", "Conv2D", "LeakyReLU", "MaxPooling2D", "Dropout"]


def test_class_weights_balance():
    w = class_weights([0, 0, 0, 1], 3)
    assert w[0] == pytest.approx(4 / 9) and w[1] == pytest.approx(4 / 3) and w[2] == 1.0


def test_train_then_evaluate_and_rerun_resumes(tmp_path: Path, small_subset: Path):
    paths, labels, classes = _items(small_subset, 10)
    spec = ModelSpec(image_size=32, conv_blocks=2, first_filters=8, dense_units=16)
    opts = TrainOptions(image_size=32, batch_size=8, epochs=2, early_stopping_patience=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = train_model(
            lambda n: make_model(spec, n),
            (paths, labels),
            (paths[:8], labels[:8]),
            len(classes),
            tmp_path / "run",
            opts,
        )
    # The input pipeline shuffles itself: no Keras warning about an ignored shuffle flag.
    assert not [w for w in caught if "shuffle" in str(w.message)]
    assert result.model_path.is_file() and result.epochs_run == 2
    assert result.curves_path.is_file()
    # The curves' x axis counts whole epochs (no 0.25 steps for a 2-epoch run).
    fig = history_figure(tmp_path / "run" / "history.csv")
    for ax in fig.axes:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
    assert list((tmp_path / "run" / "tensorboard").rglob("events.out.tfevents*"))
    ev = evaluate_model(result.model_path, paths, labels, classes, tmp_path / "run", 32)
    assert 0 <= ev.metrics["top1"] <= ev.metrics["top3"] <= 1
    assert ev.confusion_path.is_file() and ev.report_path.is_file()
    # Asking for more epochs in the same run folder continues from epoch 2.
    more = train_model(
        lambda n: make_model(spec, n),
        (paths, labels),
        (paths[:8], labels[:8]),
        len(classes),
        tmp_path / "run",
        TrainOptions(image_size=32, batch_size=8, epochs=3, early_stopping_patience=0),
    )
    assert more.resumed_from_epoch == 2 and more.epochs_run == 3


def test_killed_training_resumes_from_its_checkpoint(tmp_path: Path, small_subset: Path):
    """A training process killed after its first epoch's checkpoint resumes, not restarts."""
    run_dir = tmp_path / "run"
    script = f"""
import os, signal, sys
sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
from pathlib import Path
from landmarks.train.models import ModelSpec, make_model
from landmarks.train.loop import TrainOptions, train_model
import keras
paths, labels = {_items(small_subset, 6)[:2]!r}
spec = ModelSpec(image_size=32, conv_blocks=1, first_filters=4, dense_units=8)
opts = TrainOptions(image_size=32, batch_size=8, epochs=3, early_stopping_patience=0)
real_backup = keras.callbacks.BackupAndRestore
class DyingBackup(real_backup):
    # Dies right after the first epoch's checkpoint is on disk, like a killed machine.
    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        if epoch == 0 and os.environ.get("DIE"):
            os.kill(os.getpid(), signal.SIGKILL)
keras.callbacks.BackupAndRestore = DyingBackup
r = train_model(lambda n: make_model(spec, n), (paths, labels), (paths, labels), 4,
                Path({str(run_dir)!r}), opts)
print("RESUMED", r.resumed_from_epoch, "EPOCHS", r.epochs_run)
"""
    import os

    env = {**os.environ, "DIE": "1"}
    killed = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert (run_dir / "backup").exists() and not (run_dir / "model.keras").exists()
    env.pop("DIE")
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "RESUMED 1 EPOCHS 3" in done.stdout
    assert (run_dir / "model.keras").is_file()


def test_input_pipeline_decodes_png_and_augments_on_the_fly(tmp_path: Path, real_raw: Path):
    import numpy as np
    from PIL import Image

    from landmarks.train.data import make_dataset

    src = next(p for p in sorted((real_raw / "petra").iterdir()) if p.suffix == ".jpg")
    png = tmp_path / "a.png"
    Image.open(src).convert("RGB").save(png)
    for mode in ("none", "flip", "light"):
        ds = make_dataset([str(src), str(png)], [0, 1], 2, 32, 2, shuffle=True, augment_mode=mode)
        x, y = next(iter(ds))
        assert x.shape == (2, 32, 32, 3) and y.shape == (2, 2)
        assert float(np.min(x)) >= 0.0 and float(np.max(x)) <= 255.0
    with pytest.raises(ValueError, match="on-the-fly"):
        make_dataset([str(src)], [0], 1, 32, 1, augment_mode="mixup")


def test_time_limit_mixed_precision_and_no_class_weights(tmp_path: Path, small_subset: Path):
    paths, labels, classes = _items(small_subset, 4)
    spec = ModelSpec(image_size=32, conv_blocks=1, first_filters=4, dense_units=8)
    # A 1 ms budget lets one epoch finish, then stops: 1 of 5 epochs run.
    opts = TrainOptions(
        image_size=32,
        batch_size=8,
        epochs=5,
        early_stopping_patience=0,
        time_limit_s=0.001,
        mixed_precision="on",
        class_weighting=False,
    )
    result = train_model(
        lambda n: make_model(spec, n),
        (paths, labels),
        ([], []),
        len(classes),
        tmp_path / "run",
        opts,
        class_names=classes,
    )
    assert result.epochs_run == 1 and result.train_seconds > 0
    import keras

    model = keras.models.load_model(result.model_path)
    assert model.layers[1].compute_dtype == "float16"  # mixed precision compute
    assert model.layers[-1].compute_dtype == "float32"  # exact softmax
    assert keras.mixed_precision.global_policy().name == "float32"  # policy restored
    assert (tmp_path / "run" / "classes.json").is_file()
