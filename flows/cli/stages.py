"""One command per dataset stage (clean, dedup, split, augment) and `landmarks verify`,
which checks what they left on disk."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

import flows  # noqa: F401  (environment defaults before prefect)
from flows import options as opt
from flows.cli.common import (
    ConfigOpt,
    MultiplierOpt,
    PresetOpt,
    StorageOpt,
    TargetOpt,
    WorkersOpt,
    _bar,
    _fail,
    _json_to_stdout,
    _say,
    _settings,
    _step_bars,
    _stop,
    _storage_guard,
    _write_json,
    app,
    json_help,
)
from landmarks.config import describe_validation_error
from landmarks.errors import SettingsError

# the local features' steps of a dedup, with the unit of their bars
DEDUP_STEPS = {"search": "img", "verify": "pair"}


@app.command()
@_storage_guard("clean")
def clean(config: ConfigOpt = None, storage: StorageOpt = None) -> None:
    """Decode new raw images into upright RGB JPEGs; quarantine what cannot be used.

    Every new raw image becomes an upright RGB JPEG in storage/clean/, or is copied to
    storage/quarantine/<reason>/ with its reason. Raw files are never deleted.
    """
    from landmarks import clean as clean_core
    from landmarks.storage import Layout

    settings, _ = _settings(config, storage)
    with _bar("clean") as bar:
        result = clean_core.clean_raw(
            Layout(settings.storage_dir), opt.clean_options(settings), bar
        )
    typer.echo(
        f"{result.cleaned} cleaned, {result.quarantined} quarantined {result.reasons}, "
        f"{result.skipped} already done; {result.total_clean} clean images in all"
    )


@app.command()
@_storage_guard("dedup", when=lambda kw: kw.get("folder") is None)
def dedup(
    folder: Annotated[
        Path | None,
        typer.Argument(
            help="Any folder tree to dedup on its own (no pipeline run, nothing moved). "
            "Without it: the clean images in storage."
        ),
    ] = None,
    json_out: Annotated[
        Path | None,
        typer.Option("--json", help=json_help("FOLDER's groups and quarantined files")),
    ] = None,
    html_out: Annotated[
        Path | None,
        typer.Option(
            "--html",
            help="With FOLDER: the HTML report (default: beside the --json file, else "
            "dedup-report.html).",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option("--workers", help="Decoding and hashing processes (0: one per CPU)."),
    ] = None,
    config: ConfigOpt = None,
    storage: StorageOpt = None,
) -> None:
    """Find exact and near-duplicate images and keep one photo per group.

    Perceptual hashes of every flip, 90-degree rotation and centre crop, a multi-index
    Hamming search, and ORB keypoint verification of the less certain pairs. The keeper of a
    group has the highest resolution, then the largest file.

    `landmarks dedup DIR --json OUT.json` checks any folder tree: files the clean stage would
    refuse are listed with their reason, and OUT.json holds {"groups": [{"keeper", "duplicates"}],
    "quarantined": [{"path", "reason"}]} with paths relative to DIR.

    Without DIR: the pipeline's clean images; photos filed under two classes are dropped.
    Writes storage/dedup/report.json, kept.jsonl and report.html.
    """
    from dataclasses import replace

    from landmarks import dedup as dedup_core

    settings, _ = _settings(config, storage)
    options = opt.dedup_options(settings)
    if workers is not None:
        options = replace(options, num_workers=workers)
    if folder is not None:
        from landmarks.dedup import report as dedup_report

        if not folder.is_dir():
            _fail(f"{folder} is not a folder")
        with _bar("dedup") as bar, _step_bars(DEDUP_STEPS) as steps:
            found = dedup_core.dedup_folder(
                folder, options, opt.clean_options(settings).limits(), bar, steps
            )
        _write_json(json_out, found.to_json())
        html_path = html_out or (
            json_out.with_suffix(".html")
            if json_out and not _json_to_stdout(json_out)
            else Path("dedup-report.html")
        )
        dedup_report.write_html(
            html_path,
            f"Duplicates in {folder}",
            [dedup_report.group_view(g, folder, g["label_conflict"]) for g in found.groups],
            [
                dedup_report.QuarantineView(folder / q["path"], q["path"], q["reason"], q["detail"])
                for q in found.quarantined
            ],
            "label conflict: the same photo is in more than one folder (nothing was moved)",
        )
        reasons: dict[str, int] = {}
        for q in found.quarantined:
            reasons[q["reason"]] = reasons.get(q["reason"], 0) + 1
        conflicts = sum(1 for g in found.groups if g["label_conflict"])
        _say(
            f"{found.num_files} files: {found.num_images} images, {found.num_duplicates} "
            f"duplicates in {len(found.groups)} groups ({conflicts} across folders), "
            f"{len(found.quarantined)} quarantined {reasons}",
            json_out,
        )
        _say(f"report: {html_path.resolve().as_uri()}", json_out)
        return

    from landmarks import clean as clean_core
    from landmarks.storage import Layout

    layout = Layout(settings.storage_dir)
    records = clean_core.current_records(
        layout.clean_manifest, opt.clean_options(settings).digest()
    )
    with _bar("hash") as bar, _step_bars(DEDUP_STEPS) as steps:
        result = dedup_core.dedup_clean(layout, records, options, bar, steps)
    typer.echo(
        f"{result.num_images} images: {result.num_kept} kept, {result.num_duplicates} duplicates "
        f"in {result.num_groups} groups, {result.num_conflicts} label conflicts -> "
        f"{result.report_path}"
    )
    if result.html_path is not None:
        typer.echo(f"report: {result.html_path.resolve().as_uri()}")


@app.command()
@_storage_guard("split")
def split(config: ConfigOpt = None, storage: StorageOpt = None) -> None:
    """Assign dedup keepers to train/val/test, after applying the review decisions.

    Assign dedup keepers to train/val/test (stratified, stable as the dataset grows), after
    applying the review decisions (removed photos out, relabelled photos moved).
    """
    from landmarks import split as split_core
    from landmarks.review import decisions
    from landmarks.storage import Layout

    settings, _ = _settings(config, storage)
    layout = Layout(settings.storage_dir)
    reviewed = decisions.apply_to_kept(
        layout, layout.dedup_dir / "kept.jsonl", settings.suspects.match_distance
    )
    result = split_core.split_dataset(layout, reviewed.kept_path, opt.split_options(settings))
    typer.echo(f"dataset version {result.dataset_version} -> {result.manifest_path}")
    for name, counts in sorted(result.counts.items()):
        typer.echo(f"  {name}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


AUGMENT_HELP = (
    "Augment the train split (never val or test) on disk, in chunks committed atomically."
    "\n\n"
    "Presets (--preset): `original` = the original project's Keras settings: rotation up to "
    "15 degrees, shear 0.1 (degrees, as Keras reads it), zoom 0.2, width/height shifts 0.1, "
    "horizontal flip, nearest fill. `landmark` = stronger: random resized crop, flip, "
    "perspective, small rotation, colour jitter, blur, occlusion patches, JPEG artefacts, "
    "grey. `none` = resize only."
    "\n\n"
    "Targets: --multiplier M adds round(M x n) copies to a class of n train images; "
    "--target-per-class N instead tops every class up to N images (balancing; a class "
    "already at N or more gets none). Copies are spread evenly over each class's photos."
    "\n\n"
    "Resume: the output folder is named by a hash of the dataset version and these "
    "settings. Every chunk is written to a temp folder and renamed into place with its "
    "chunk.json, so rerunning the same command after a crash, Ctrl-C or SIGKILL keeps the "
    "finished chunks, drops the half-written one and writes the rest; the result is "
    "byte-identical to an uninterrupted run. Memory per worker stays constant whatever "
    "the number of images; --workers N runs N processes."
)


@app.command(help=AUGMENT_HELP)
@_storage_guard("augment")
def augment(
    config: ConfigOpt = None,
    storage: StorageOpt = None,
    multiplier: MultiplierOpt = None,
    target_per_class: TargetOpt = None,
    preset: PresetOpt = None,
    workers: WorkersOpt = None,
    chunk_size: Annotated[
        int | None, typer.Option("--chunk-size", help="Images per atomic chunk (default 500).")
    ] = None,
    output_size: Annotated[
        int | None, typer.Option("--output-size", help="Side of the square outputs in px.")
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Base seed of every image.")] = None,
) -> None:
    """Augment the train split on disk, in atomic chunks (full help: AUGMENT_HELP)."""
    from landmarks import augment as augment_core
    from landmarks import split as split_core
    from landmarks.config import AugmentConfig
    from landmarks.storage import Layout

    settings, _ = _settings(
        config, storage, None, None, None, None, None, multiplier, target_per_class, preset, workers
    )
    extra = {"chunk_size": chunk_size, "output_size": output_size, "seed": seed}
    try:
        augment_config = AugmentConfig.model_validate(
            {**settings.augment.model_dump(), **{k: v for k, v in extra.items() if v is not None}}
        )
    except ValueError as exc:
        raise SettingsError(describe_validation_error(exc, "augment")) from None
    settings = settings.model_copy(update={"augment": augment_config})
    layout = Layout(settings.storage_dir)
    if not layout.split_manifest.exists():
        _fail(f"no split manifest at {layout.split_manifest}: run `landmarks split` first")
    try:
        with _bar("augment") as bar:
            result = augment_core.augment_train(
                split_core.read_split(layout.split_manifest, "train"),
                layout.clean_dir,
                layout.augmented_dir,
                split_core.dataset_version(layout.split_manifest),
                opt.augment_options(settings),
                bar,
            )
    except RuntimeError as exc:  # another run holds the output, or a clean image is unreadable
        _fail(str(exc))
    typer.echo(
        f"{result.num_images} augmented images in {result.num_chunks} chunks -> "
        f"{result.output_dir} ({result.chunks_done_before} chunks were already done)"
    )


# --- verify -------------------------------------------------------------------------------
@app.command()
def verify(
    storage: StorageOpt = None,
    config: ConfigOpt = None,
    repair: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="Fix what loses nothing: adopt orphans, set torn lines aside, remove temp "
            "files of dead processes. Never deletes a photo.",
        ),
    ] = False,
    json_out: Annotated[
        Path | None, typer.Option("--json", help=json_help("every finding"))
    ] = None,
) -> None:
    """Check every manifest against its files; --repair fixes what loses nothing.

    Check every stage's manifest against its files (exists, size, sha256), orphans, torn or
    corrupt manifest lines (file:line), augmented chunks, split records whose image is gone,
    unfinished runs, stale temp files and locks; exits 1 when the storage is not consistent.
    """
    from landmarks import integrity
    from landmarks.storage import StorageBusy

    settings, _ = _settings(config, storage)
    try:
        report = integrity.verify_storage(settings.storage_dir, repair=repair)
    except FileNotFoundError as exc:
        _fail(str(exc))
    except StorageBusy as exc:
        _stop(str(exc))
    _say(integrity.format_table(report), json_out)
    _write_json(json_out, report.to_json())
    raise typer.Exit(code=0 if report.consistent else 1)


# --- end verify ---------------------------------------------------------------------------
