"""Training and what uses a model: train, evaluate, runs, predict, export, sweep, leakage."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

import flows  # noqa: F401  (environment defaults before prefect)
from flows import options as opt
from flows.cli.common import (
    BatchOpt,
    ConfigOpt,
    EpochsOpt,
    ImageSizeOpt,
    MultiplierOpt,
    StorageOpt,
    _bar,
    _fail,
    _overrides_json,
    _say,
    _settings,
    _write_json,
    app,
    json_help,
)
from landmarks.config import Settings, load_settings
from landmarks.errors import NotFound, UsageError


def _latest_augmented(layout: Any, settings: Settings) -> Path | None:
    """The augmentation to train with (see flows.options.find_augmentation); says which."""
    path, note = opt.find_augmentation(settings.model_copy(update={"storage_dir": layout.root}))
    typer.echo(note, err=True)
    return path


ModelNameOpt = Annotated[
    str | None,
    typer.Option(
        "--model-name",
        help="efficientnet_lite0 (default, ImageNet-pretrained), original_cnn, vgg, "
        "mobilenet_v2 or efficientnet_b0 (more model fields in the [train] section of --config).",
    ),
]


@app.command()
def train(
    config: ConfigOpt = None,
    storage: StorageOpt = None,
    epochs: EpochsOpt = None,
    image_size: ImageSizeOpt = None,
    batch_size: BatchOpt = None,
    model_name: ModelNameOpt = None,
    run_id: Annotated[
        str | None, typer.Option(help="Resume this run instead of a new one.")
    ] = None,
    promote: Annotated[
        bool, typer.Option(help="Promote to champion if it beats it on the same test split.")
    ] = True,
) -> None:
    """Train a model, evaluate it on the test split, promote it if it beats the champion.

    The model trains on the train split plus its augmented chunks, in
    storage/runs/<run-id>/; it becomes the champion only if it beats the champion on the same
    test split. --run-id of an interrupted run resumes it from its last finished epoch.
    """

    from landmarks import split as split_core
    from landmarks.storage import Layout
    from landmarks.train import registry
    from landmarks.train.evaluate import append_to_report, evaluate_run, evaluate_split
    from landmarks.train.loop import train_run

    settings, overrides = _settings(config, storage, None, None, epochs, image_size, batch_size)
    if model_name:
        try:
            settings = load_settings(
                config, {**overrides, "train": {**overrides["train"], "model": model_name}}
            )
        except ValueError as exc:
            _fail(str(exc))
    layout = Layout(settings.storage_dir)
    if not layout.split_manifest.exists():
        _fail(f"no split manifest at {layout.split_manifest}: run `landmarks refresh` first")
    version = split_core.dataset_version(layout.split_manifest)
    augmented_dir = _latest_augmented(layout, settings)
    spec, train_opts = opt.model_spec(settings), opt.train_options(settings)
    if run_id is not None:
        opt.require_run(layout.runs_dir, run_id)
    run_id = run_id or registry.new_run_id(version)
    run_dir = registry.create_run(
        layout.runs_dir,
        run_id,
        opt.run_config(settings, version, layout.split_manifest, augmented_dir),
    )
    with _bar("train", unit="epoch") as bar:
        trained = train_run(
            layout.split_manifest,
            layout.clean_dir,
            augmented_dir,
            run_dir,
            spec,
            train_opts,
            on_epoch=lambda e, n, logs: bar(e, n),
        )
    result = evaluate_run(
        run_dir,
        layout.split_manifest,
        layout.clean_dir,
        None,
        settings.evaluate.batch_size,
        settings.evaluate.top_k,
        {
            "run": run_id,
            "model": spec.name,
            "dataset version": version,
            "epochs run": trained.epochs_run,
            "training time (s)": f"{trained.train_seconds:.0f}",
        },
    )
    verdict = ""
    if promote:

        def champion_here(model_path: Path) -> dict[str, Any] | None:
            try:
                return evaluate_split(
                    model_path,
                    layout.split_manifest,
                    layout.clean_dir,
                    run_dir / "champion_eval",
                    settings.evaluate.batch_size,
                ).metrics
            except ValueError:
                return None

        decision = registry.promote_if_better(
            layout.runs_dir, run_id, version, result.metrics, trained.model_path, champion_here
        )
        append_to_report(result.report_path, decision.markdown())
        verdict = f"\n{'promoted' if decision.promoted else 'not promoted'}: {decision.reason}"
    typer.echo(
        f"run {run_id}: test top-1 {result.metrics['top1']:.4f}, "
        f"top-3 {result.metrics.get('top3', float('nan')):.4f} -> {result.report_path}{verdict}"
    )


@app.command()
def evaluate(
    model: Annotated[Path, typer.Option("--model", help="A saved .keras model.")],
    data: Annotated[
        Path, typer.Option("--data", help="A folder laid out as DIR/<class>/<images>.")
    ],
    json_out: Annotated[Path | None, typer.Option("--json", help=json_help("the metrics"))] = None,
    config: ConfigOpt = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Folder for the report and plots.")
    ] = None,
) -> None:
    """Evaluate any saved model on any class-per-folder directory of images.

    Any format the clean stage accepts; files it would quarantine are skipped and listed with
    their reason. Writes metrics.json, report.md, a confusion matrix and a gallery of
    misclassified photos into --out.
    """
    import tempfile

    from landmarks.train.evaluate import evaluate_folder

    settings, _ = _settings(config)
    with tempfile.TemporaryDirectory(prefix="landmarks-eval-") as tmp:
        try:
            result = evaluate_folder(
                model,
                data,
                out_dir or Path(tmp) / "report",
                opt.clean_options(settings),
                settings.evaluate.batch_size,
                settings.evaluate.top_k,
            )
        except (FileNotFoundError, ValueError) as exc:
            _fail(str(exc))
    metrics = result.metrics
    _write_json(json_out, metrics)
    _say(
        f"{metrics['num_images']} images: top-1 {metrics['top1']:.4f}, "
        f"top-3 {metrics.get('top3', float('nan')):.4f}, {len(metrics['skipped'])} skipped"
        + (f"\nreport: {result.report_path}" if out_dir else ""),
        json_out,
    )


@app.command()
def runs(storage: StorageOpt = None, config: ConfigOpt = None) -> None:
    """List training runs with their test metrics; * marks the champion."""
    from landmarks.storage import Layout
    from landmarks.train.registry import list_runs

    settings, _ = _settings(config, storage)
    found = list_runs(Layout(settings.storage_dir).runs_dir)
    if not found:
        typer.echo(f"no training runs in {Layout(settings.storage_dir).runs_dir} yet")
    for r in found:
        top1 = f"{r['top1']:.4f}" if r.get("top1") is not None else "-"
        top3 = f"{r['top3']:.4f}" if r.get("top3") is not None else "-"
        mark = "*" if r.get("champion") else " "
        model = r.get("model", {}).get("name", "?")
        typer.echo(
            f"{mark} {r['run_id']}  {model}  dataset {r['dataset_version']}  "
            f"top-1 {top1}  top-3 {top3}"
        )


@app.command()
def predict(
    images: Annotated[list[Path], typer.Argument(help="Image files (any format clean accepts).")],
    model: Annotated[
        Path | None, typer.Option("--model", help="A saved .keras model (default: champion).")
    ] = None,
    json_out: Annotated[
        Path | None,
        typer.Option(
            "--json", help=json_help("the predictions, [{path, top3: [{label, probability}]}],")
        ),
    ] = None,
    storage: StorageOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Print the top-3 landmarks of each image with their probabilities."""
    from landmarks.storage import Layout
    from landmarks.train.predict import predict_files
    from landmarks.train.registry import champion_model_path

    settings, _ = _settings(config, storage)
    try:
        model_path = model or champion_model_path(Layout(settings.storage_dir).runs_dir)
        missing = [str(p) for p in images if not p.is_file()]
        if missing:
            _fail(f"no such image file: {', '.join(missing)}")
        result = predict_files(model_path, images, opt.clean_options(settings))
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    for s in result.skipped:
        typer.secho(
            f"skipped {s['path']}: {s['reason']} ({s['detail']})", err=True, fg=typer.colors.YELLOW
        )
    for p in result.predictions:
        _say(f"{p.path}: " + ", ".join(f"{label} {prob:.3f}" for label, prob in p.top), json_out)
    _write_json(json_out, [p.as_dict() for p in result.predictions])
    if result.skipped:
        raise typer.Exit(code=1)


@app.command()
def export(
    out: Annotated[Path, typer.Option("--out", help="Folder for saved_model/ and model.tflite.")],
    model: Annotated[
        Path | None, typer.Option("--model", help="A saved .keras model (default: champion).")
    ] = None,
    fmt: Annotated[
        list[str] | None, typer.Option("--format", help="savedmodel and/or tflite (default both).")
    ] = None,
    storage: StorageOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Export a model (the champion by default) as a SavedModel and a TFLite file.

    A TensorFlow SavedModel and a TFLite file, with classes.json (the label order) beside
    them.
    """
    from landmarks.storage import Layout
    from landmarks.train.predict import export_model
    from landmarks.train.registry import champion_model_path

    settings, _ = _settings(config, storage)
    if model is not None and not model.is_file():
        raise NotFound(f"model {model} not found")
    try:
        model_path = model or champion_model_path(Layout(settings.storage_dir).runs_dir)
        result = export_model(model_path, out, tuple(fmt or ("savedmodel", "tflite")))
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    for path in (result.saved_model_dir, result.tflite_path, result.classes_path):
        if path:
            typer.echo(str(path))


@app.command()
def sweep(
    sweep_file: Annotated[
        Path, typer.Argument(help="Sweep TOML, e.g. configs/original_table.toml.")
    ],
    epoch_scale: Annotated[
        float | None,
        typer.Option("--epoch-scale", help="Multiply every trial's epochs (CPU: 0.1 or less)."),
    ] = None,
    only: Annotated[
        list[str] | None, typer.Option("--only", help="Run only this trial (repeatable).")
    ] = None,
    config: ConfigOpt = None,
    storage: StorageOpt = None,
) -> None:
    """Train a grid of configurations and write a results table.

    Each trial is a Prefect task; the results table (markdown, CSV and a table artifact) has
    the original project's columns. A rerun skips finished trials and resumes an interrupted
    one.
    """
    from landmarks.storage import Layout
    from landmarks.train.sweep import load_sweep

    settings, overrides = _settings(config, storage)
    layout_root = settings.storage_dir
    if not sweep_file.is_file():
        raise NotFound(f"sweep file {sweep_file} not found")
    try:
        load_sweep(sweep_file, epoch_scale, only)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not Layout(layout_root).split_manifest.exists():
        _fail("no split manifest: run `landmarks refresh` first")
    from flows.sweep import sweep as sweep_flow

    augmented = _latest_augmented(Layout(layout_root), settings)
    result = sweep_flow(
        sweep_path=str(sweep_file),
        config_path=str(config) if config else None,
        overrides=_overrides_json(overrides),
        augmented_dir=str(augmented) if augmented else None,
        epoch_scale=epoch_scale,
        only=only,
    )
    typer.echo(Path(result["results_md"]).read_text())
    typer.echo(f"{result['results_md']}\n{result['results_csv']}")


@app.command()
def leakage(
    config: ConfigOpt = None,
    storage: StorageOpt = None,
    epochs: EpochsOpt = None,
    image_size: ImageSizeOpt = None,
    batch_size: BatchOpt = None,
    multiplier: MultiplierOpt = None,
) -> None:
    """The leakage study: how much augmenting before the split inflates test accuracy.

    Trains the same model with the original protocol (augment every photo, then split) and
    with ours (split, then augment train only) on the same photos, and reports how much the
    first inflates test accuracy. --multiplier sets the augmented copies
    per photo for both (the original made about 14).
    """
    settings, overrides = _settings(
        config, storage, None, None, epochs, image_size, batch_size, multiplier
    )
    from flows.sweep import leakage as leakage_flow
    from landmarks.storage import Layout

    if not Layout(settings.storage_dir).split_manifest.exists():
        _fail("no split manifest: run `landmarks refresh` first")
    augmented = _latest_augmented(Layout(settings.storage_dir), settings)
    result = leakage_flow(
        config_path=str(config) if config else None,
        overrides=_overrides_json(overrides),
        augmented_dir=str(augmented) if augmented else None,
    )
    typer.echo(Path(result["report_path"]).read_text())
    typer.echo(f"report: {result['report_path']}")
