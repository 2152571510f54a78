import numpy as np
import pytest

from landmarks.evaluate import compute_metrics, render_report


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
