"""`landmarks run` and `landmarks refresh`: the pipeline as Prefect flows."""

from __future__ import annotations

import json

import typer

import flows  # noqa: F401  (environment defaults before prefect)
from flows.cli.common import (
    BatchOpt,
    CatalogOpt,
    ConfigOpt,
    EpochsOpt,
    ImageSizeOpt,
    MaxPerClassOpt,
    MultiplierOpt,
    PresetOpt,
    SourceOpt,
    StorageOpt,
    TargetOpt,
    WorkersOpt,
    _check_before_flows,
    _overrides_json,
    _settings,
    app,
)


@app.command()
def run(
    config: ConfigOpt = None,
    source: SourceOpt = None,
    storage: StorageOpt = None,
    catalog: CatalogOpt = None,
    epochs: EpochsOpt = None,
    image_size: ImageSizeOpt = None,
    batch_size: BatchOpt = None,
    multiplier: MultiplierOpt = None,
    target_per_class: TargetOpt = None,
    preset: PresetOpt = None,
    workers: WorkersOpt = None,
    max_per_class: MaxPerClassOpt = None,
) -> None:
    """Run the whole pipeline as Prefect flows: refresh, then train and evaluate.

    Refresh gets images, cleans, dedups, splits and augments; train trains and evaluates.
    Leaves the model and report in
    storage/runs/<id>/.

    Offline: `landmarks run --source DIR` imports DIR/<class>/<images> instead of crawling.
    """
    settings, overrides = _settings(
        config,
        storage,
        source,
        catalog,
        epochs,
        image_size,
        batch_size,
        multiplier,
        target_per_class,
        preset,
        workers,
        max_per_class,
    )
    _check_before_flows(settings)
    from flows.pipeline import pipeline

    result = pipeline(
        config_path=str(config) if config else None, overrides=_overrides_json(overrides)
    )
    typer.echo(
        f"run {result['run_id']}: test top-1 {result['top1']:.4f}, top-3 {result['top3']:.4f}\n"
        f"model:  {result['model_path']}\nreport: {result['report_path']}"
    )


@app.command()
def refresh(
    config: ConfigOpt = None,
    source: SourceOpt = None,
    storage: StorageOpt = None,
    catalog: CatalogOpt = None,
    multiplier: MultiplierOpt = None,
    target_per_class: TargetOpt = None,
    preset: PresetOpt = None,
    workers: WorkersOpt = None,
    max_per_class: MaxPerClassOpt = None,
) -> None:
    """Run the refresh flow under Prefect: get images, clean, dedup, split, augment."""
    settings, overrides = _settings(
        config,
        storage,
        source,
        catalog,
        None,
        None,
        None,
        multiplier,
        target_per_class,
        preset,
        workers,
        max_per_class,
    )
    _check_before_flows(settings)
    from flows.refresh import refresh as refresh_flow

    result = refresh_flow(
        config_path=str(config) if config else None, overrides=_overrides_json(overrides)
    )
    typer.echo(json.dumps(result, indent=2))
