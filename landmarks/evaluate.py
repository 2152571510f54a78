"""Evaluate stage: metrics on the untouched test split, a confusion matrix and a report."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from landmarks.storage import atomic_path, atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluationResult:
    metrics: dict[str, Any]
    metrics_path: Path
    report_path: Path
    confusion_path: Path


def compute_metrics(
    probs: np.ndarray, labels: np.ndarray, class_names: list[str], top_k: int = 3
) -> dict[str, Any]:
    """Loss, top-1, top-k, per-class precision/recall/F1 and the confusion matrix."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    n, num_classes = probs.shape
    if n == 0:
        raise ValueError("no test images to evaluate")
    eps = 1e-7
    loss = float(-np.mean(np.log(np.clip(probs[np.arange(n), labels], eps, 1.0))))
    predicted = probs.argmax(axis=1)
    k = min(top_k, num_classes)
    topk = np.argsort(-probs, axis=1)[:, :k]
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    per_class = {}
    for c, name in enumerate(class_names):
        tp = int(confusion[c, c])
        support = int(confusion[c].sum())
        predicted_c = int(confusion[:, c].sum())
        precision = tp / predicted_c if predicted_c else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "support": support,
        }
    supported = [v for v in per_class.values() if v["support"]]
    pairs = [
        {"true": class_names[i], "predicted": class_names[j], "count": int(confusion[i, j])}
        for i in range(num_classes)
        for j in range(num_classes)
        if i != j and confusion[i, j]
    ]
    pairs.sort(key=lambda p: -p["count"])
    return {
        "num_images": int(n),
        "loss": loss,
        "top1": float((predicted == labels).mean()),
        f"top{k}": float((topk == labels[:, None]).any(axis=1).mean()),
        "macro_f1": float(np.mean([v["f1"] for v in supported])) if supported else 0.0,
        "per_class": per_class,
        "confusion_matrix": confusion.tolist(),
        "class_names": list(class_names),
        "most_confused": pairs[:10],
    }


def plot_confusion(confusion: np.ndarray, class_names: list[str], out_path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    confusion = np.asarray(confusion)
    size = max(5.0, 0.55 * len(class_names) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    row_sums = confusion.sum(axis=1, keepdims=True)
    normalised = np.divide(
        confusion, row_sums, out=np.zeros_like(confusion, float), where=row_sums > 0
    )
    im = ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(class_names)), class_names, rotation=60, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    for i in range(confusion.shape[0]):
        for j in range(confusion.shape[1]):
            if confusion[i, j]:
                colour = "white" if normalised[i, j] > 0.5 else "black"
                ax.text(
                    j, i, str(confusion[i, j]), ha="center", va="center", color=colour, fontsize=8
                )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix (test split; colour = row share)")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    with atomic_path(out_path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return out_path


def render_report(metrics: dict[str, Any], title: str, extra: dict[str, Any] | None = None) -> str:
    topk_key = next(k for k in metrics if k.startswith("top") and k != "top1")
    lines = [
        f"# {title}",
        "",
        "| metric | value |",
        "|---|---|",
        f"| test images | {metrics['num_images']} |",
        f"| loss | {metrics['loss']:.4f} |",
        f"| top-1 accuracy | {metrics['top1']:.4f} |",
        f"| {topk_key[:3]}-{topk_key[3:]} accuracy | {metrics[topk_key]:.4f} |",
        f"| macro F1 | {metrics['macro_f1']:.4f} |",
    ]
    for key, value in (extra or {}).items():
        lines.append(f"| {key} | {value} |")
    lines += [
        "",
        "## Per class",
        "",
        "| class | precision | recall | F1 | support |",
        "|---|---|---|---|---|",
    ]
    for name, v in metrics["per_class"].items():
        lines.append(
            f"| {name} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.3f} "
            f"| {v['support']} |"
        )
    if metrics["most_confused"]:
        lines += ["", "## Most confused", "", "| true | predicted | count |", "|---|---|---|"]
        for p in metrics["most_confused"]:
            lines.append(f"| {p['true']} | {p['predicted']} | {p['count']} |")
    lines += ["", "![confusion matrix](confusion_matrix.png)", ""]
    return "\n".join(lines)


def evaluate_model(
    model_path: Path,
    paths: list[str],
    labels: list[int],
    class_names: list[str],
    out_dir: Path,
    image_size: int,
    batch_size: int = 64,
    top_k: int = 3,
    title: str = "Evaluation",
    extra: dict[str, Any] | None = None,
) -> EvaluationResult:
    """Predict the test images with the saved model; write metrics.json, report.md and plots."""
    import keras

    from landmarks.data import make_dataset

    model = keras.models.load_model(model_path)
    ds = make_dataset(paths, labels, len(class_names), image_size, batch_size)
    probs = model.predict(ds.map(lambda x, y: x), verbose=0)
    metrics = compute_metrics(probs, np.asarray(labels), class_names, top_k)
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics_path = out_dir / "metrics.json"
    atomic_write_json(metrics_path, metrics)
    confusion_path = plot_confusion(
        np.asarray(metrics["confusion_matrix"]), class_names, out_dir / "confusion_matrix.png"
    )
    report_path = out_dir / "report.md"
    atomic_write_text(report_path, render_report(metrics, title, extra))
    log.info(
        "evaluate: top-1 %.4f, top-%d %.4f", metrics["top1"], top_k, metrics.get(f"top{top_k}", 0)
    )
    return EvaluationResult(metrics, metrics_path, report_path, confusion_path)


def evaluate_run(
    run_dir: Path,
    split_manifest: Path,
    clean_dir: Path,
    image_size: int,
    batch_size: int = 64,
    top_k: int = 3,
    extra: dict[str, Any] | None = None,
) -> EvaluationResult:
    """Evaluate ``run_dir/model.keras`` on the split manifest's untouched test part."""
    from landmarks.dataset import load_dataset

    view = load_dataset(split_manifest, clean_dir)
    if not len(view.test):
        raise ValueError(f"{split_manifest} has no test images")
    return evaluate_model(
        run_dir / "model.keras",
        view.test.paths,
        view.test.labels,
        view.class_names,
        run_dir,
        image_size=image_size,
        batch_size=batch_size,
        top_k=top_k,
        title=f"Evaluation of run {run_dir.name}",
        extra=extra,
    )
