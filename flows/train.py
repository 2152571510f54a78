"""The ``train`` flow: train a model in a new run folder, then evaluate it on the test split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow

from flows import options as opt
from landmarks.config import load_settings
from landmarks.crawl.attribution import write_run_credits
from landmarks.split import dataset_version as split_version
from landmarks.storage import Layout
from landmarks.train import registry
from tasks.evaluate import evaluate_task
from tasks.train import train_task


@flow(name="train", log_prints=True)
def train(
    config_path: str | None = None,
    overrides: dict[str, Any] | None = None,
    augmented_dir: str | None = None,
    run_id: str | None = None,
    promote: bool = True,
) -> dict[str, Any]:
    """Train on the current split (plus augmented chunks) and evaluate on its test part.

    Args:
        augmented_dir: the augmented chunks to add to training; the refresh flow passes it.
            None trains on the clean train split alone.
        run_id: reuse a run folder (a re-run resumes from its last epoch); new when None.
        promote: compare with the champion on the same test split and promote if better.
    """
    settings = load_settings(Path(config_path) if config_path else None, overrides)
    layout = Layout(settings.storage_dir.resolve())
    if not layout.split_manifest.exists():
        raise FileNotFoundError(
            f"no split manifest at {layout.split_manifest}: run `landmarks refresh` first"
        )
    version = split_version(layout.split_manifest)
    spec = opt.model_spec(settings)
    train_opts = opt.train_options(settings)
    if run_id is not None:
        opt.require_run(layout.runs_dir, run_id)
    run_id = run_id or registry.new_run_id(version)
    run_dir = registry.create_run(
        layout.runs_dir,
        run_id,
        opt.run_config(settings, version, layout.split_manifest, augmented_dir),
    )
    # The credits of the images this run learns from, kept with the run.
    write_run_credits(layout, run_dir)
    trained = train_task(
        layout.split_manifest,
        layout.clean_dir,
        Path(augmented_dir) if augmented_dir else None,
        run_dir,
        spec,
        train_opts,
    )
    evaluated = evaluate_task(
        run_dir,
        layout.split_manifest,
        layout.clean_dir,
        spec.image_size,
        settings.evaluate.batch_size,
        settings.evaluate.top_k,
        extra={
            "run": run_id,
            "model": spec.name,
            "dataset version": version,
            "epochs run": trained.epochs_run,
            "resumed after epoch": trained.resumed_from_epoch,
            "training time (s)": f"{trained.train_seconds:.0f}",
        },
        dataset_version=version,
        promote=promote,
    )
    m = evaluated.metrics
    champion = registry.read_champion(layout.runs_dir)
    return {
        "run_id": run_id,
        "run_dir": str(run_dir),
        "model_path": str(trained.model_path),
        "report_path": str(evaluated.report_path),
        "top1": m["top1"],
        "top3": m.get("top3"),
        "loss": m["loss"],
        "epochs_run": trained.epochs_run,
        "train_seconds": trained.train_seconds,
        "champion": champion["run_id"] if champion else None,
        "promoted": bool(champion and champion["run_id"] == run_id),
    }
