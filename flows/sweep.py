"""The ``sweep`` flow (a grid of trainings) and the ``leakage`` flow (original protocol vs ours)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from prefect import flow

from flows import options as opt
from landmarks.config import deep_merge, load_settings
from landmarks.split import dataset_version as split_version
from landmarks.storage import Layout, atomic_write_json, digest_records, read_json
from landmarks.train import registry
from landmarks.train import sweep as sweep_core
from tasks.evaluate import evaluate_task, leakage_report_task, sweep_results_task
from tasks.train import train_task


def _layout(settings: Any) -> Layout:
    layout = Layout(settings.storage_dir.resolve())
    if not layout.split_manifest.exists():
        raise FileNotFoundError(
            f"no split manifest at {layout.split_manifest}: run `landmarks refresh` first"
        )
    return layout


@flow(name="sweep", log_prints=True)
def sweep(
    sweep_path: str,
    config_path: str | None = None,
    overrides: dict[str, Any] | None = None,
    augmented_dir: str | None = None,
    epoch_scale: float | None = None,
    only: list[str] | None = None,
) -> dict[str, Any]:
    """Train and evaluate every trial of a sweep file, one Prefect task pair per trial, then
    write ``runs/sweeps/<name>-<version>/results.{md,csv}`` and a table artifact.

    Trials run one after another (a CPU has no room for two trainings). A rerun skips trials
    already evaluated and resumes a half-trained one from its last epoch.
    """
    base = load_settings(Path(config_path) if config_path else None, overrides)
    layout = _layout(base)
    version = split_version(layout.split_manifest)
    plan = sweep_core.load_sweep(Path(sweep_path), epoch_scale, only)
    rows = []
    for trial in plan.trials:
        settings = load_settings(
            Path(config_path) if config_path else None,
            _original_cnn_unless_named(
                config_path, deep_merge(overrides or {}, {"train": trial.train})
            ),
        )
        spec, train_opts = opt.model_spec(settings), opt.train_options(settings)
        run_id = sweep_core.trial_run_id(plan.name, version, trial.label)
        run_dir = registry.create_run(
            layout.runs_dir,
            run_id,
            opt.run_config(
                settings,
                version,
                layout.split_manifest,
                augmented_dir,
                sweep=plan.name,
                trial=trial.label,
            ),
        )
        # trial.json is written last: its presence means trained *and* evaluated.
        if (run_dir / "trial.json").exists() and (run_dir / "metrics.json").exists():
            metrics = read_json(run_dir / "metrics.json")
            done = read_json(run_dir / "trial.json")
            epochs_run, seconds = done["epochs_run"], done["train_seconds"]
        else:
            trained = train_task.with_options(name=f"train {trial.label}")(
                layout.split_manifest,
                layout.clean_dir,
                Path(augmented_dir) if augmented_dir else None,
                run_dir,
                spec,
                train_opts,
            )
            evaluated = evaluate_task.with_options(name=f"evaluate {trial.label}")(
                run_dir,
                layout.split_manifest,
                layout.clean_dir,
                None,
                settings.evaluate.batch_size,
                settings.evaluate.top_k,
                {"run": run_id, "sweep": plan.name, "trial": trial.label},
                dataset_version=version,
            )
            metrics = evaluated.metrics
            epochs_run, seconds = trained.epochs_run, trained.train_seconds
            atomic_write_json(
                run_dir / "trial.json", {"epochs_run": epochs_run, "train_seconds": seconds}
            )
        rows.append(
            sweep_core.table_row(
                trial.label, asdict(spec), asdict(train_opts), metrics, epochs_run, seconds, run_id
            )
        )
    out_dir = layout.runs_dir / "sweeps" / f"{plan.name}-{version[:8]}"
    title = f"Sweep {plan.name} on dataset {version} (epoch scale {plan.epoch_scale:g})"
    md_path, csv_path = sweep_results_task(rows, out_dir, title)
    return {"results_md": str(md_path), "results_csv": str(csv_path), "rows": rows}


def _original_cnn_unless_named(
    config_path: str | None, overrides: dict[str, Any] | None
) -> dict[str, Any]:
    """Sweeps and the leakage study train the original project's CNN unless the config file,
    the environment, the sweep or an override names a model (the pipeline's default is
    pretrained)."""
    import os

    from landmarks.config import read_toml

    named = (
        "model" in (overrides or {}).get("train", {})
        or "LANDMARKS_TRAIN__MODEL" in os.environ
        or (config_path is not None and "model" in read_toml(Path(config_path)).get("train", {}))
    )
    return (
        dict(overrides or {})
        if named
        else deep_merge(overrides or {}, {"train": {"model": "original_cnn"}})
    )


@flow(name="leakage", log_prints=True)
def leakage(
    config_path: str | None = None,
    overrides: dict[str, Any] | None = None,
    augmented_dir: str | None = None,
) -> dict[str, Any]:
    """Train the same model twice on the same photos: the original protocol (augment every
    image, then split at random) and ours (dedup, split, augment train only). Writes
    ``runs/leakage-<version>-<settings>/report.md`` with both test numbers."""
    from landmarks import augment as augment_core
    from landmarks.storage import read_jsonl
    from landmarks.train.dataset import load_dataset

    overrides = _original_cnn_unless_named(config_path, overrides)
    settings = load_settings(Path(config_path) if config_path else None, overrides)
    layout = _layout(settings)
    version = split_version(layout.split_manifest)
    spec, train_opts = opt.model_spec(settings), opt.train_options(settings)
    aug_opts = opt.augment_options(settings)
    # One study folder per (dataset, augmentation, model, training) so studies never mix.
    key = digest_records([asdict(spec), asdict(train_opts), asdict(aug_opts)])[:8]
    study_dir = layout.runs_dir / f"leakage-{version[:8]}-{key}"
    kept = read_jsonl(layout.split_manifest)
    # Same augmentation settings, applied to every photo instead of the train split only.
    leaky_aug = augment_core.augment_train(
        kept, layout.clean_dir, study_dir / "augmented", f"all-{version}", aug_opts
    )
    leaky_manifest = sweep_core.leaky_split(
        kept,
        layout.clean_dir,
        augment_core.list_augmented(leaky_aug.output_dir),
        study_dir / "leaky_split.jsonl",
        settings.split.val_fraction,
        settings.split.test_fraction,
        settings.split.seed,
    )
    if augmented_dir is None:
        # Ours gets the same augmentation, on its train split only (reused when it exists).
        from landmarks.split import read_split

        augmented_dir = str(
            augment_core.augment_train(
                read_split(layout.split_manifest, "train"),
                layout.clean_dir,
                layout.augmented_dir,
                version,
                aug_opts,
            ).output_dir
        )
    protocols = {
        "original": (leaky_manifest, Path("/"), None),
        "ours": (layout.split_manifest, layout.clean_dir, augmented_dir),
    }
    rows = []
    for protocol, (manifest, clean_dir, aug_dir) in protocols.items():
        run_dir = registry.create_run(
            study_dir,
            protocol,
            {
                "dataset_version": version,
                "protocol": protocol,
                "split_manifest": str(manifest),
                "model": asdict(spec),
                "train": asdict(train_opts),
            },
        )
        trained = train_task.with_options(name=f"train {protocol}")(
            manifest, clean_dir, Path(aug_dir) if aug_dir else None, run_dir, spec, train_opts
        )
        evaluated = evaluate_task.with_options(name=f"evaluate {protocol}")(
            run_dir,
            manifest,
            clean_dir,
            None,
            settings.evaluate.batch_size,
            settings.evaluate.top_k,
            {"protocol": protocol},
            promote=False,
        )
        view = load_dataset(manifest, clean_dir, Path(aug_dir) if aug_dir else None)
        m = evaluated.metrics
        rows.append(
            {
                "protocol": protocol,
                "train_images": len(view.train),
                "test_images": len(view.test),
                "loss": m["loss"],
                "top1": m["top1"],
                "top3": m.get("top3", float("nan")),
                "epochs_run": trained.epochs_run,
            }
        )
    report = leakage_report_task(rows, study_dir / "report.md")
    return {"report_path": str(report), "rows": rows}
