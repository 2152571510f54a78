from pathlib import Path

import numpy as np
import pytest

from landmarks.train.evaluate import compute_metrics, render_report


def test_metrics_by_hand():
    probs = np.array(
        [
            [0.7, 0.2, 0.1, 0.0],  # true 0, predicted 0
            [0.1, 0.6, 0.3, 0.0],  # true 1, predicted 1
            [0.5, 0.1, 0.4, 0.0],  # true 2, predicted 0, in top-3
            [0.1, 0.2, 0.3, 0.4],  # true 0, predicted 3, not in top-3
        ]
    )
    labels = np.array([0, 1, 2, 0])
    m = compute_metrics(probs, labels, ["a", "b", "c", "d"])
    assert m["top1"] == pytest.approx(0.5)
    assert m["top3"] == pytest.approx(0.75)
    expected_loss = -np.mean(np.log([0.7, 0.6, 0.4, 0.1]))
    assert m["loss"] == pytest.approx(expected_loss)
    assert m["per_class"]["a"] == pytest.approx(
        {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    )
    assert m["per_class"]["d"]["precision"] == 0 and m["per_class"]["d"]["support"] == 0
    assert m["confusion_matrix"][2][0] == 1 and m["confusion_matrix"][0][3] == 1
    assert {"true": "a", "predicted": "d", "count": 1} in m["most_confused"]
    report = render_report(m, "t")
    assert "top-3 accuracy | 0.7500" in report and "| c | 0.000 |" in report


@pytest.mark.slow
def test_evaluate_any_folder_any_format(tmp_path, small_subset, real_raw):
    """The core behind `landmarks evaluate --model --data`: a class-per-folder tree with
    non-JPEG files and a broken one; the broken one is skipped with its reason, and the
    report has the confusion matrix, the most-confused pairs and the misclassified gallery."""
    import json

    from typer.testing import CliRunner

    from flows.cli import app
    from landmarks.train.evaluate import evaluate_folder
    from landmarks.train.loop import TrainOptions, train_model
    from landmarks.train.models import ModelSpec, make_model

    classes = sorted(d.name for d in small_subset.iterdir())
    paths, labels = [], []
    for i, c in enumerate(classes):
        for f in sorted((small_subset / c).iterdir())[:5]:
            if f.suffix.lower() == ".jpg":
                paths.append(str(f))
                labels.append(i)
    spec = ModelSpec(image_size=32, conv_blocks=1, first_filters=4, dense_units=8)
    model_path = train_model(
        lambda n: make_model(spec, n),
        (paths, labels),
        ([], []),
        len(classes),
        tmp_path / "run",
        TrainOptions(image_size=32, batch_size=8, epochs=1),
        class_names=classes,
    ).model_path
    data = tmp_path / "data"
    for c in ("petra", "colosseum"):
        (data / c).mkdir(parents=True)
        # Every format the real photos come in, newest files first (not seen in training).
        picked = {}
        for f in sorted((real_raw / c).iterdir(), reverse=True):
            picked.setdefault(f.suffix.lower(), f)
        for f in picked.values():
            (data / c / f.name).symlink_to(f)
    (data / "petra" / "empty.jpg").write_bytes(b"")
    formats = {f.suffix.lower() for f in data.rglob("*") if f.is_file()}
    assert formats - {".jpg"}, "the folder should hold a non-JPEG format"

    result = evaluate_folder(model_path, data, tmp_path / "out")
    m = result.metrics
    assert m["num_images"] == sum(1 for f in data.rglob("*") if f.is_file()) - 1
    assert m["skipped"] == [
        {"path": "petra/empty.jpg", "reason": "empty", "detail": "zero-byte file"}
    ]
    assert m["class_names"] == classes  # the model's label order, not the folder's
    assert 0 <= m["top1"] <= m["top3"] <= 1
    assert all(Path(w["path"]).parent.parent == data for w in m["misclassified"])
    assert len(m["misclassified"]) == round((1 - m["top1"]) * m["num_images"])
    assert (tmp_path / "out" / "misclassified.png").is_file()
    assert (tmp_path / "out" / "confusion_matrix.png").is_file()
    report = result.report_path.read_text()
    assert "## Skipped (1)" in report and "empty.jpg | empty" in report
    assert "Most confused" in report or m["top1"] == 1.0

    out = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--model",
            str(model_path),
            "--data",
            str(data),
            "--json",
            str(tmp_path / "m.json"),
        ],
    )
    assert out.exit_code == 0, out.output
    assert json.loads((tmp_path / "m.json").read_text())["top1"] == pytest.approx(m["top1"])
    (data / "big_ben").mkdir()
    (data / "big_ben" / "x.jpg").symlink_to(Path(paths[0]))
    with pytest.raises(ValueError, match="does not know: big_ben"):
        evaluate_folder(model_path, data, tmp_path / "out2")
