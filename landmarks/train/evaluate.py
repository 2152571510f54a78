"""Evaluate stage: metrics on the untouched test split, a confusion matrix and a report."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from landmarks.clean import CleanOptions
from landmarks.plots import pyplot, save_figure
from landmarks.storage import atomic_write_json, atomic_write_text, read_json

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
    pairs: list[dict[str, Any]] = [
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
    plt = pyplot()

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
    return save_figure(fig, out_path, dpi=100)


def plot_gallery(
    misclassified: list[dict[str, Any]], out_path: Path, max_images: int = 24, columns: int = 6
) -> Path:
    """A grid of misclassified test photos, each titled true -> predicted (probability)."""
    plt = pyplot()
    from PIL import Image

    shown = misclassified[:max_images]
    rows = max(1, -(-len(shown) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(2.2 * columns, 2.5 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, item in zip(axes.flat, shown, strict=False):
        with Image.open(item["path"]) as im:
            im.draft("RGB", (160, 160))
            ax.imshow(im.convert("RGB"))
        ax.set_title(
            f"{item['true']}\n-> {item['predicted']} ({item['probability']:.2f})", fontsize=7
        )
    if not shown:
        axes.flat[0].text(0.5, 0.5, "no misclassified images", ha="center", va="center")
    fig.suptitle(f"Misclassified test photos ({len(shown)} of {len(misclassified)})")
    return save_figure(fig, out_path, dpi=90)


def misclassified_items(
    probs: np.ndarray, labels: list[int], paths: list[str], class_names: list[str]
) -> list[dict[str, Any]]:
    """Every wrong prediction, most confident first (the most surprising mistakes lead)."""
    predicted = np.asarray(probs).argmax(axis=1)
    wrong: list[dict[str, Any]] = [
        {
            "path": str(paths[i]),
            "true": class_names[labels[i]],
            "predicted": class_names[int(predicted[i])],
            "probability": float(probs[i, predicted[i]]),
        }
        for i in range(len(paths))
        if int(predicted[i]) != labels[i]
    ]
    wrong.sort(key=lambda w: -w["probability"])
    return wrong


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
    wrong = metrics.get("misclassified")
    if wrong is not None:
        lines += [f"## Misclassified ({len(wrong)})", ""]
        if wrong:
            lines += ["![misclassified test photos](misclassified.png)", ""]
            lines += ["| photo | true | predicted | probability |", "|---|---|---|---|"]
            for w in wrong[:24]:
                lines.append(
                    f"| {Path(w['path']).name} | {w['true']} | {w['predicted']} "
                    f"| {w['probability']:.3f} |"
                )
            lines.append("")
    skipped = metrics.get("skipped")
    if skipped:
        lines += [f"## Skipped ({len(skipped)})", "", "| file | reason |", "|---|---|"]
        lines += [f"| {s['path']} | {s['reason']} |" for s in skipped]
        lines.append("")
    return "\n".join(lines)


def load_class_names(model_path: Path) -> list[str] | None:
    """The label order saved beside a model (``classes.json``, else ``metrics.json``)."""
    folder = Path(model_path).parent
    for name in ("classes.json", "metrics.json"):
        path = folder / name
        if path.exists():
            names = read_json(path).get("class_names")
            if names:
                return list(names)
    return None


def model_image_size(model: Any) -> int:
    shape = model.input_shape
    if isinstance(shape, list):
        shape = shape[0]
    return int(shape[1])


def evaluate_model(
    model_path: Path,
    paths: list[str],
    labels: list[int],
    class_names: list[str],
    out_dir: Path,
    image_size: int | None = None,
    batch_size: int = 64,
    top_k: int = 3,
    title: str = "Evaluation",
    extra: dict[str, Any] | None = None,
    skipped: list[dict[str, str]] | None = None,
    gallery_size: int = 24,
) -> EvaluationResult:
    """Predict the images with the saved model; write metrics.json, report.md, the confusion
    matrix and a gallery of misclassified photos into ``out_dir``.

    ``image_size`` defaults to the model's own input size.
    """
    import keras

    from landmarks.train.data import make_image_dataset

    model = keras.models.load_model(model_path)
    image_size = image_size or model_image_size(model)
    if model.output_shape[-1] != len(class_names):
        raise ValueError(
            f"{model_path} predicts {model.output_shape[-1]} classes, the data has "
            f"{len(class_names)}"
        )
    if not paths:
        raise ValueError("no images to evaluate")
    probs = model.predict(make_image_dataset(paths, image_size, batch_size), verbose=0)
    metrics = compute_metrics(probs, np.asarray(labels), class_names, top_k)
    metrics["misclassified"] = misclassified_items(probs, labels, paths, class_names)
    metrics["skipped"] = list(skipped or [])
    metrics["model_path"] = str(model_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    confusion_path = plot_confusion(
        np.asarray(metrics["confusion_matrix"]), class_names, out_dir / "confusion_matrix.png"
    )
    plot_gallery(metrics["misclassified"], out_dir / "misclassified.png", gallery_size)
    metrics_path = out_dir / "metrics.json"
    atomic_write_json(metrics_path, metrics)
    report_path = out_dir / "report.md"
    atomic_write_text(report_path, render_report(metrics, title, extra))
    log.info(
        "evaluate: top-1 %.4f, top-%d %.4f", metrics["top1"], top_k, metrics.get(f"top{top_k}", 0)
    )
    return EvaluationResult(metrics, metrics_path, report_path, confusion_path)


def append_to_report(report_path: Path, section: str) -> None:
    """Add a markdown section (e.g. the champion decision) to a written report."""
    text = Path(report_path).read_text(encoding="utf-8").rstrip("\n")
    atomic_write_text(report_path, f"{text}\n\n{section.rstrip()}\n")


def prepare_images(
    files: list[Path], work_dir: Path, options: CleanOptions
) -> tuple[list[str], list[int], list[dict[str, str]]]:
    """Normalise arbitrary image files exactly as the clean stage does (any format it reads,
    EXIF orientation, transparency, size limits) into JPEGs under ``work_dir``.

    Returns:
        (prepared paths, indices into ``files`` of the prepared ones, skipped files with the
        reason the clean stage would have quarantined them for).
    """
    from landmarks import images

    work_dir.mkdir(parents=True, exist_ok=True)
    prepared: list[str] = []
    kept: list[int] = []
    skipped: list[dict[str, str]] = []
    for i, f in enumerate(files):
        try:
            norm = images.load_normalized(Path(f), options.limits())
        except images.ImageRejected as exc:
            skipped.append({"path": str(f), "reason": exc.reason, "detail": exc.detail})
            log.info("skipped %s: %s", f, exc)  # returned in `skipped`; callers report it
            continue
        out = images.fit_within(norm.image, options.max_side)
        dest = work_dir / f"{i:06d}.jpg"
        dest.write_bytes(images.encode_jpeg(out, options.jpeg_quality))
        prepared.append(str(dest))
        kept.append(i)
    return prepared, kept, skipped


def evaluate_folder(
    model_path: Path,
    data_dir: Path,
    out_dir: Path,
    clean_options: CleanOptions | None = None,
    batch_size: int = 64,
    top_k: int = 3,
    class_names: list[str] | None = None,
) -> EvaluationResult:
    """Evaluate any saved model on any ``DIR/<class>/<images>`` folder.

    Images are normalised like the clean stage does; files it would quarantine are skipped
    and listed (with their reason) in the metrics and the report. The label order comes from
    the model's ``classes.json`` when there is one, else from the sorted folder names.
    """
    import tempfile

    from landmarks.ingest import list_class_folders

    model_path, data_dir = Path(model_path), Path(data_dir)
    if not model_path.exists():
        raise FileNotFoundError(f"model {model_path} not found")
    tree = list_class_folders(data_dir)
    if not tree:
        raise ValueError(f"{data_dir} has no class folders with images")
    class_names = class_names or load_class_names(model_path) or sorted(tree)
    unknown = sorted(set(tree) - set(class_names))
    if unknown:
        raise ValueError(f"classes the model does not know: {', '.join(unknown)}")
    files = [f for name in sorted(tree) for f in tree[name]]
    file_labels = [class_names.index(name) for name in sorted(tree) for _ in tree[name]]
    with tempfile.TemporaryDirectory(prefix="landmarks-eval-") as tmp:
        prepared, kept, skipped = prepare_images(files, Path(tmp), clean_options or CleanOptions())
        for s in skipped:
            s["path"] = str(Path(s["path"]).relative_to(data_dir))
        # The gallery must show the original files, not the temp copies.
        result = evaluate_model(
            model_path,
            prepared,
            [file_labels[i] for i in kept],
            class_names,
            out_dir,
            batch_size=batch_size,
            top_k=top_k,
            title=f"Evaluation of {model_path.name} on {data_dir}",
            skipped=skipped,
        )
    originals = dict(zip(prepared, (str(files[i]) for i in kept), strict=True))
    for w in result.metrics["misclassified"]:
        w["path"] = originals[w["path"]]
    atomic_write_json(result.metrics_path, result.metrics)
    atomic_write_text(
        result.report_path,
        render_report(result.metrics, f"Evaluation of {model_path.name} on {data_dir}"),
    )
    return result


def evaluate_split(
    model_path: Path,
    split_manifest: Path,
    clean_dir: Path,
    out_dir: Path,
    batch_size: int = 64,
    top_k: int = 3,
    title: str = "Evaluation",
    extra: dict[str, Any] | None = None,
) -> EvaluationResult:
    """Evaluate a model on a split manifest's untouched test part (clean images only)."""
    from landmarks.train.dataset import load_dataset

    view = load_dataset(split_manifest, clean_dir)
    if not len(view.test):
        raise ValueError(f"{split_manifest} has no test images")
    return evaluate_model(
        model_path,
        view.test.paths,
        view.test.labels,
        view.class_names,
        out_dir,
        batch_size=batch_size,
        top_k=top_k,
        title=title,
        extra=extra,
    )


def evaluate_run(
    run_dir: Path,
    split_manifest: Path,
    clean_dir: Path,
    image_size: int | None = None,
    batch_size: int = 64,
    top_k: int = 3,
    extra: dict[str, Any] | None = None,
) -> EvaluationResult:
    """Evaluate ``run_dir/model.keras`` on the split manifest's test part, into ``run_dir``.

    ``image_size`` is accepted for compatibility; the model's own input size is used.
    """
    return evaluate_split(
        run_dir / "model.keras",
        split_manifest,
        clean_dir,
        run_dir,
        batch_size=batch_size,
        top_k=top_k,
        title=f"Evaluation of run {run_dir.name}",
        extra=extra,
    )
