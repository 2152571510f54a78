"""The ``landmarks`` command line."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

import flows  # noqa: F401  (environment defaults before prefect)
from flows import options as opt
from flows.cli_errors import ErrorHandlingGroup
from landmarks.config import CrawlConfig, Settings, describe_validation_error, load_settings
from landmarks.errors import NotFound, SettingsError, UsageError, UserError

app = typer.Typer(
    help="Build and refresh a landmark image classifier: crawl, clean, dedup, split, augment, "
    "train, evaluate. `landmarks run` does it all as Prefect flows; each stage also has its "
    "own command.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    cls=ErrorHandlingGroup,
)

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="TOML config file (sections: crawl, clean, dedup, split, "
        "augment, train, evaluate). Env vars LANDMARKS_* and flags override it.",
    ),
]
StorageOpt = Annotated[
    Path | None, typer.Option("--storage", help="Storage root (default ./storage).")
]
SourceOpt = Annotated[
    str | None,
    typer.Option(
        "--source",
        "-s",
        help="'web' to crawl image search engines, or a folder laid "
        "out as DIR/<class>/<images> to import offline.",
    ),
]
CatalogOpt = Annotated[
    Path | None, typer.Option("--catalog", help="Landmark catalog TOML (default: built-in 17).")
]
EpochsOpt = Annotated[int | None, typer.Option("--epochs", help="Training epochs.")]
ImageSizeOpt = Annotated[int | None, typer.Option("--image-size", help="Model input side in px.")]
BatchOpt = Annotated[int | None, typer.Option("--batch-size", help="Training batch size.")]
MultiplierOpt = Annotated[
    float | None, typer.Option("--multiplier", help="Augmented copies per train image.")
]
TargetOpt = Annotated[
    int | None,
    typer.Option("--target-per-class", help="Augment every class up to this many train images."),
]
PresetOpt = Annotated[
    str | None, typer.Option("--preset", help="Augmentation preset: original, landmark, none.")
]
WorkersOpt = Annotated[
    int | None, typer.Option("--workers", help="Augmentation processes (0: one per CPU).")
]
MaxPerClassOpt = Annotated[
    int | None, typer.Option("--max-per-class", help="Images to crawl per class.")
]


def _settings(
    config: Path | None,
    storage: Path | None = None,
    source: str | None = None,
    catalog: Path | None = None,
    epochs: int | None = None,
    image_size: int | None = None,
    batch_size: int | None = None,
    multiplier: float | None = None,
    target_per_class: int | None = None,
    preset: str | None = None,
    workers: int | None = None,
    max_per_class: int | None = None,
) -> tuple[Settings, dict[str, Any]]:
    overrides: dict[str, Any] = {
        "storage_dir": str(storage) if storage else None,
        "source": source,
        "catalog_path": str(catalog) if catalog else None,
        "crawl": {"max_per_class": max_per_class},
        "augment": {
            "multiplier": multiplier,
            "target_per_class": target_per_class,
            "preset": preset,
            "num_workers": workers,
        },
        "train": {"epochs": epochs, "image_size": image_size, "batch_size": batch_size},
    }
    settings = load_settings(config, overrides)
    if source is not None:
        _check_source(settings)
    return settings, overrides


def _check_source(settings: Settings) -> None:
    if settings.source != "web" and not Path(settings.source).is_dir():
        raise NotFound(
            f"source folder not found: {settings.source} (--source takes 'web' or a folder "
            "laid out as DIR/<class>/<images>)"
        )


def _check_before_flows(settings: Settings) -> None:
    """What a flow would find wrong only after a Prefect server started: the source folder,
    the network, a refresh already running on this storage."""
    from landmarks.storage import exclusive_lock

    _check_source(settings)
    _check_web(settings)
    with exclusive_lock(settings.storage_dir, "refresh"):  # StorageBusy: exit 1
        pass


def _fail(message: str) -> None:
    """A usage mistake: `error: message` on stderr, exit code 2 (see flows.cli_errors)."""
    raise UsageError(message)


@contextmanager
def _bar(description: str, unit: str = "img") -> Iterator[Callable[[int, int], None]]:
    from tqdm import tqdm

    bar = tqdm(desc=description, unit=unit, dynamic_ncols=True, file=sys.stderr)

    def update(done: int, total: int) -> None:
        if bar.total != total:
            bar.total = total
            bar.refresh()
        bar.update(done - bar.n)

    try:
        yield update
    finally:
        bar.close()


# --- storage guard: stage commands hold the refresh's storage lock -----------------------
def _storage_guard(stage: str, when: Callable[[dict[str, Any]], bool] = lambda kw: True) -> Any:
    """Run a stage command under the storage lock a refresh holds, so the two never overlap
    (the second one gets the same clear "busy" message), and turn a full disk, a read-only
    storage or a corrupt manifest into one clear line naming the stage and the path."""
    import errno
    import functools

    storage_errors = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EACCES}

    def wrap(command: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(command)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            from landmarks.manifest import ManifestError
            from landmarks.storage import StorageBusy, StorageNotWritable, exclusive_lock

            if not when(kwargs):
                return command(*args, **kwargs)
            settings, _ = _settings(kwargs.get("config"), kwargs.get("storage"))
            try:
                with exclusive_lock(settings.storage_dir, "refresh", f"landmarks {stage}"):
                    return command(*args, **kwargs)
            except (StorageBusy, ManifestError) as exc:
                _fail(str(exc))
            except StorageNotWritable as exc:
                _fail(f"{stage}: {exc.strerror}")
            except OSError as exc:
                if exc.errno not in storage_errors:
                    raise
                _fail(
                    f"{stage} stopped: {exc.strerror} while writing "
                    f"{exc.filename or settings.storage_dir}. Nothing half-written is left "
                    "where a reader would take it; free space (or fix the permission) and "
                    "run it again: it resumes"
                )

        return guarded

    return wrap


# --- end storage guard ------------------------------------------------------------------


def _check_web(settings: Settings) -> None:
    from landmarks.crawl import NetworkUnavailable, check_network

    if settings.source != "web":
        return
    try:
        check_network(
            tuple(settings.crawl.engines),
            settings.crawl.connectivity_timeout_s,
            dict(settings.crawl.endpoints),
        )
    except NetworkUnavailable as exc:
        _fail(str(exc))


def _overrides_json(overrides: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(overrides, default=str))


def _setup_logging(verbose: bool) -> None:
    from flows.cli_errors import LogFormatter

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(
            LogFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", verbose)
        )


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log more.")] = False):
    _setup_logging(verbose)


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
    """Run the whole pipeline as Prefect flows: refresh (get images, clean, dedup, split,
    augment) then train (train, evaluate). Leaves the model and report in storage/runs/<id>/.

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


@app.command()
def crawl(
    config: ConfigOpt = None,
    source: SourceOpt = None,
    storage: StorageOpt = None,
    catalog: CatalogOpt = None,
    max_per_class: MaxPerClassOpt = None,
    engine: Annotated[
        list[str] | None,
        typer.Option(
            "--engine",
            "-e",
            help="Source to ask: commons, openverse, bing, google, baidu or duckduckgo. Repeat "
            f"to set the order (default: {', '.join(CrawlConfig().engines)}).",
        ),
    ] = None,
    min_size: Annotated[
        int | None, typer.Option("--min-size", help="Smallest width and height kept, px (100).")
    ] = None,
    threads: Annotated[
        int | None, typer.Option("--threads", help="Parallel downloads per query (4).")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option("--timeout", help="Per-request timeout, seconds (10).")
    ] = None,
    delay: Annotated[
        float | None,
        typer.Option("--delay", help="Pause before each request, per thread, seconds (0.25)."),
    ] = None,
    image_type: Annotated[
        str | None,
        typer.Option("--type", help="Engine type filter: photo (default), clipart...; 'any'."),
    ] = None,
    size_filter: Annotated[
        str | None, typer.Option("--size", help="Engine size filter, e.g. large.")
    ] = None,
    license_filter: Annotated[
        str | None,
        typer.Option(
            "--license",
            help="any (default); open: only CC and public-domain images; commercial: only "
            "those that allow commercial use. open/commercial skip engines without licences.",
        ),
    ] = None,
    url_list: Annotated[
        Path | None,
        typer.Option("--url-list", help="File of '<class> <url>' lines, fetched first."),
    ] = None,
    only: Annotated[
        list[str] | None, typer.Option("--class", help="Crawl only this class (repeatable).")
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Ask the engines as a crawl would, download nothing; print what each engine "
            "answered (ok, empty, blocked, throttled, error) and the candidates.",
        ),
    ] = False,
    json_out: Annotated[
        Path | None,
        typer.Option("--json", help="With --dry-run: write engines and candidates to this file."),
    ] = None,
) -> None:
    """Get images into storage/raw/: append-only, one provenance record per image in
    raw/manifest.jsonl (engine, query, URL, result rank, time, sha256, bytes, pixel size, and
    the refresh that brought it).

    Engines: --source web (the default) asks Wikimedia Commons and Openverse (both give a
    licence, author and page for every image), then Bing and Google; Baidu and DuckDuckGo on
    request. None needs an API key. The engines are asked in order (--engine, repeatable); the
    next engine takes over whatever one leaves short: no results, an error page, only URLs
    already held, or a block. A block (captcha, consent page, JavaScript shell, antiFlag,
    HTTP 403/429) is named in the table and the log, and that engine is not asked again during
    the crawl. --url-list FILE fetches its '<class> <url>' lines first, the same way.
    --dry-run [--json OUT] asks the engines without downloading: which ones work from this
    network today, and what a crawl would fetch.

    Queries: every query of the class in the catalog (English and local-language names; see
    --catalog), plus its English and local names.

    Limits: at most --max-per-class new images per class in one crawl (default 400), shared
    among the queries; --threads downloads at once, --delay between requests, --timeout per
    request; network errors, timeouts and 5xx answers are retried with exponential backoff.
    Filters (--type, --size, --license) go to the engines that have them. A download must
    decode fully as an image at least --min-size px on each side before it is renamed into
    raw/: empty bodies, HTML pages named .jpg and truncated files never land there.

    Incremental: a re-crawl fetches only URLs never seen before and adds only images whose
    bytes are new to the class; known URLs are never downloaded again, files in raw/ are never
    renamed, moved or overwritten. raw/crawl-urls.jsonl lists each URL that did not become a
    file, and why (failed downloads are retried by the next crawl).

    A class that ends with no image at all (and had none) fails the command with exit code 1,
    after the other classes are done. Offline: --source DIR imports DIR/<class>/<images>.
    Credits: every raw record keeps license, license_url, author and page_url; see
    `landmarks attribution`.
    """
    from landmarks import crawl as crawl_core
    from landmarks import ingest
    from landmarks.catalog import load_catalog
    from landmarks.config import CrawlConfig
    from landmarks.storage import Layout, StorageBusy, StorageNotWritable, exclusive_lock

    settings, _ = _settings(config, storage, source, catalog, max_per_class=max_per_class)
    flags = {
        "engines": engine or None,
        "min_size": min_size,
        "downloader_threads": threads,
        "timeout_s": timeout,
        "request_delay_s": delay,
        "size_filter": size_filter,
        "license_filter": license_filter,
        "url_list": url_list,
    }
    values = {**settings.crawl.model_dump(), **{k: v for k, v in flags.items() if v is not None}}
    if image_type is not None:
        values["type_filter"] = None if image_type == "any" else image_type
    try:
        settings = settings.model_copy(update={"crawl": CrawlConfig.model_validate(values)})
    except ValueError as exc:
        raise SettingsError(describe_validation_error(exc, "crawl")) from None
    layout = Layout(settings.storage_dir)
    if dry_run and settings.source != "web":
        _fail("--dry-run asks the web engines; it does not go with --source DIR")
    if settings.source != "web":
        lock = exclusive_lock(settings.storage_dir, "refresh", "landmarks crawl --source")
        try:
            with lock, _bar("import") as bar:
                imported = ingest.import_folder(Path(settings.source), layout, progress=bar)
        except (StorageBusy, StorageNotWritable) as exc:
            _fail(str(exc))
        typer.echo(
            f"{imported.added} new images in {layout.raw_dir} ({imported.skipped_known} known)"
        )
        for name, n in sorted(imported.per_class.items()):
            typer.echo(f"  {name}: {n}")
        return
    landmarks_ = load_catalog(settings.catalog_path)
    if only:
        unknown = sorted(set(only) - {lm.name for lm in landmarks_})
        if unknown:
            _fail(f"classes not in the catalog: {', '.join(unknown)}")
        landmarks_ = [lm for lm in landmarks_ if lm.name in set(only)]
    options = opt.crawl_options(settings)
    if dry_run:
        _crawl_dry_run(landmarks_, options, json_out)
        return
    try:
        crawl_core.check_network(
            options.engines, options.connectivity_timeout_s, options.endpoint_map()
        )
        with (
            exclusive_lock(settings.storage_dir, "refresh", "landmarks crawl"),
            _bar("crawl") as bar,
        ):
            result = crawl_core.crawl_catalog(
                landmarks_, layout, options, progress=bar, check_network_first=False
            )
    except (crawl_core.NetworkUnavailable, StorageBusy, ValueError, OSError) as exc:
        _fail(str(exc))
    rows = crawl_core.engine_table(result.results, result.failed)
    if rows:
        columns = list(rows[0])
        widths = [max(len(str(c)), *(len(str(r[c])) for r in rows)) for c in columns]
        typer.echo("  ".join(str(c).ljust(w) for c, w in zip(columns, widths, strict=True)))
        for r in rows:
            typer.echo("  ".join(str(r[c]).ljust(w) for c, w in zip(columns, widths, strict=True)))
    typer.echo(f"{result.added} new images in {layout.raw_dir} (refresh {result.refresh_id})")
    for engine, why in result.blocked:
        typer.secho(
            f"{engine} was {why}. It was not asked again in this crawl; the next engine took "
            "over. See the README's crawl section for what to do.",
            fg=typer.colors.YELLOW,
            err=True,
        )
    if result.failed:
        typer.secho(
            f"error: no image at all for {', '.join(result.failed)}; the log says what each "
            "engine answered (-v for more). Try another --engine order, other queries in the "
            "catalog, a lower --min-size, or --source DIR.",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(code=1)


def _crawl_dry_run(landmarks_: list, options: Any, json_out: Path | None) -> None:
    from landmarks import crawl as crawl_core
    from landmarks.storage import atomic_write_json

    answer = crawl_core.dry_run(landmarks_, options)
    for name, state in answer["engines"].items():
        typer.echo(f"{name:<11} {state['status']:<10} {state['detail']}")
    per_engine: dict[str, int] = {}
    for c in answer["candidates"]:
        per_engine[c["engine"]] = per_engine.get(c["engine"], 0) + 1
    typer.echo(
        f"{len(answer['candidates'])} candidates "
        f"({', '.join(f'{k} {v}' for k, v in per_engine.items()) or 'none'}); nothing downloaded"
    )
    if json_out is not None:
        try:
            atomic_write_json(json_out, answer)
        except OSError as exc:
            _fail(f"cannot write {json_out}: {exc}")
        typer.echo(f"wrote {json_out}")


@app.command()
def attribution(
    config: ConfigOpt = None,
    storage: StorageOpt = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Folder for credits.csv and credits.html."),
    ] = None,
    run_id: Annotated[
        str | None,
        typer.Option("--run", help="Credit the training images of this run, in its folder."),
    ] = None,
) -> None:
    """Write the credits of the current dataset version (or of a run's training images) as
    credits.csv and credits.html: per image its class, split, title, author, licence, licence
    URL, source page, image URL and source engine. Images whose source gave no licence (the
    search engines, folder imports) show an empty licence. Default folder:
    storage/attribution/<dataset version>/; with --run, the run's own folder (each training
    run also writes its own credits when it starts).
    """
    from landmarks.crawl.attribution import credits, write_credits, write_run_credits
    from landmarks.split import dataset_version
    from landmarks.storage import Layout

    settings, _ = _settings(config, storage)
    layout = Layout(settings.storage_dir)
    if not layout.split_manifest.exists():
        _fail(f"no split manifest at {layout.split_manifest}: run `landmarks refresh` first")
    try:
        if run_id:
            run_dir = layout.runs_dir / run_id
            if not run_dir.is_dir():
                _fail(f"no run {run_id!r} in {layout.runs_dir} (see `landmarks runs`)")
            paths = (
                write_credits(credits(layout, ("train",)), out, f"Training images of {run_id}")
                if out
                else write_run_credits(layout, run_dir)
            )
        else:
            version = dataset_version(layout.split_manifest)
            rows = credits(layout)
            folder = out or layout.root / "attribution" / version
            paths = write_credits(rows, folder, f"Credits of dataset version {version}")
    except OSError as exc:
        _fail(str(exc))
    for path in paths:
        typer.echo(f"wrote {path}")


@app.command()
@_storage_guard("clean")
def clean(config: ConfigOpt = None, storage: StorageOpt = None) -> None:
    """Decode every new raw image, normalise it to an upright RGB JPEG in storage/clean/, or
    copy it to storage/quarantine/<reason>/ with its reason. Raw files are never deleted."""
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
        typer.Option("--json", help="With FOLDER: write groups and quarantined files here."),
    ] = None,
    html_out: Annotated[
        Path | None,
        typer.Option("--html", help="With FOLDER: the HTML report (default: beside --json)."),
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", help="Processes decoding and hashing (0: all CPUs).")
    ] = None,
    config: ConfigOpt = None,
    storage: StorageOpt = None,
) -> None:
    """Find exact and near-duplicate images: perceptual hashes of every flip, 90-degree
    rotation and centre crop, a multi-index Hamming search, and ORB keypoint verification of
    the less certain pairs. One keeper per group (highest resolution, then largest file).

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
        from landmarks import dedup_report
        from landmarks.storage import atomic_write_json

        if not folder.is_dir():
            _fail(f"{folder} is not a folder")
        with _bar("dedup") as bar:
            found = dedup_core.dedup_folder(
                folder, options, opt.clean_options(settings).limits(), bar
            )
        if json_out:
            atomic_write_json(json_out, found.to_json())
        html_path = html_out or (
            json_out.with_suffix(".html") if json_out else Path("dedup-report.html")
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
        typer.echo(
            f"{found.num_files} files: {found.num_images} images, {found.num_duplicates} "
            f"duplicates in {len(found.groups)} groups ({conflicts} across folders), "
            f"{len(found.quarantined)} quarantined {reasons}"
        )
        if json_out:
            typer.echo(f"json:   {json_out}")
        typer.echo(f"report: {html_path.resolve().as_uri()}")
        return

    from landmarks import clean as clean_core
    from landmarks.storage import Layout

    layout = Layout(settings.storage_dir)
    records = clean_core.current_records(
        layout.clean_manifest, opt.clean_options(settings).digest()
    )
    with _bar("hash") as bar:
        result = dedup_core.dedup_clean(layout, records, options, bar)
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
    """Assign dedup keepers to train/val/test (stratified, stable as the dataset grows),
    after applying the review decisions (removed photos out, relabelled photos moved)."""
    from landmarks import review
    from landmarks import split as split_core
    from landmarks.storage import Layout

    settings, _ = _settings(config, storage)
    layout = Layout(settings.storage_dir)
    reviewed = review.apply_to_kept(
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
    """Train a model on the train split plus its augmented chunks, in storage/runs/<run-id>/,
    evaluate it on the test split and promote it to champion if it beats the champion on that
    same split. --run-id of an interrupted run resumes it from its last finished epoch."""

    from landmarks import registry
    from landmarks import split as split_core
    from landmarks.evaluate import append_to_report, evaluate_run, evaluate_split
    from landmarks.storage import Layout
    from landmarks.train import train_run

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
    json_out: Annotated[Path | None, typer.Option("--json", help="Write metrics here.")] = None,
    config: ConfigOpt = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Folder for the report and plots.")
    ] = None,
) -> None:
    """Evaluate any saved model on any class-per-folder directory of images (any format the
    clean stage accepts; files it would quarantine are skipped and listed with their reason).
    Writes metrics.json, report.md, a confusion matrix and a gallery of misclassified photos
    into --out."""
    import tempfile

    from landmarks.evaluate import evaluate_folder
    from landmarks.storage import atomic_write_json

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
    if json_out:
        atomic_write_json(json_out, metrics)
    typer.echo(
        f"{metrics['num_images']} images: top-1 {metrics['top1']:.4f}, "
        f"top-3 {metrics.get('top3', float('nan')):.4f}, {len(metrics['skipped'])} skipped"
        + (f"\nreport: {result.report_path}" if out_dir else "")
    )


@app.command()
def runs(storage: StorageOpt = None, config: ConfigOpt = None) -> None:
    """List training runs with their test metrics; * marks the champion."""
    from landmarks.registry import list_runs
    from landmarks.storage import Layout

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
        bool, typer.Option("--json", help="Print JSON: [{path, top3: [{label, probability}]}].")
    ] = False,
    storage: StorageOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Print the top-3 landmarks of each image with their probabilities."""
    from landmarks.predict import predict_files
    from landmarks.registry import champion_model_path
    from landmarks.storage import Layout

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
    if json_out:
        typer.echo(json.dumps([p.as_dict() for p in result.predictions], indent=2))
    else:
        for p in result.predictions:
            typer.echo(f"{p.path}: " + ", ".join(f"{label} {prob:.3f}" for label, prob in p.top))
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
    """Export a model (the champion by default) as a TensorFlow SavedModel and a TFLite file,
    with classes.json (the label order) beside them."""
    from landmarks.predict import export_model
    from landmarks.registry import champion_model_path
    from landmarks.storage import Layout

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
    """Run a grid of training configurations as Prefect tasks and write a results table
    (markdown, CSV and a table artifact) with the original project's columns. A rerun skips
    finished trials and resumes an interrupted one."""
    from landmarks.storage import Layout
    from landmarks.sweep import load_sweep

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
    """The leakage study: train the same model with the original protocol (augment every
    photo, then split) and with ours (split, then augment train only) on the same photos, and
    report how much the first inflates test accuracy. --multiplier sets the augmented copies
    per photo for both (the original made about 14)."""
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


@app.command()
def serve(
    refresh_cron: Annotated[
        str, typer.Option(help="Cron of the scheduled refresh (default Mondays 03:00).")
    ] = "0 3 * * 1",
    timezone: Annotated[str, typer.Option(help="Time zone of the cron.")] = "UTC",
    limit: Annotated[int, typer.Option(help="Flow runs at once in this process.")] = 2,
) -> None:
    """Register the deployments (landmarks-refresh/weekly, landmarks-retrain/on-demand,
    landmarks-pipeline/full) and run them in this process, no work pool or worker needed.
    Set PREFECT_API_URL to a running `prefect server` first. Ctrl-C stops it."""
    load_settings()  # a bad LANDMARKS_* variable or $LANDMARKS_CONFIG fails here, not in a run
    from flows.deploy import serve_all

    serve_all(refresh_cron=refresh_cron, timezone=timezone, limit=limit)


@app.command()
def deploy(
    pool: Annotated[str, typer.Option(help="Process work pool to create and deploy to.")] = (
        "landmarks"
    ),
    name: Annotated[
        list[str] | None, typer.Option(help="Only these deployments of prefect.yaml.")
    ] = None,
) -> None:
    """Register the deployments of prefect.yaml on a Prefect server (PREFECT_API_URL), after
    creating the process work pool and the concurrency limits (one training at a time). Then
    run `prefect worker start --pool landmarks`."""
    load_settings()  # a bad LANDMARKS_* variable or $LANDMARKS_CONFIG fails here, not in a run
    from flows.deploy import deploy_all

    deploy_all(pool=pool, names=name)


@app.command()
def retrain(
    config: ConfigOpt = None,
    storage: StorageOpt = None,
    epochs: EpochsOpt = None,
    image_size: ImageSizeOpt = None,
    batch_size: BatchOpt = None,
    wait: Annotated[bool, typer.Option(help="Wait for the run and print its metrics.")] = False,
    deployment: Annotated[
        str, typer.Option(help="Retrain deployment to start.")
    ] = "landmarks-retrain/on-demand",
) -> None:
    """Ask the Prefect server to retrain now: starts a run of the retrain deployment, which a
    worker (or `landmarks serve`) picks up. Prints the flow run id and where to follow it."""
    _settings(config, storage, None, None, epochs, image_size, batch_size)
    from prefect.deployments import run_deployment

    from flows.deploy import RetrainParameters, TrainingParameters, describe_retrain

    params = RetrainParameters(
        config_path=str(config.resolve()) if config else None,
        storage_dir=str(storage.resolve()) if storage else None,
        training=TrainingParameters(epochs=epochs, image_size=image_size, batch_size=batch_size),
    )
    from prefect.exceptions import ObjectNotFound

    try:
        run = run_deployment(
            deployment,
            parameters={"params": params.model_dump(mode="json")},
            timeout=None if wait else 0,
            as_subflow=False,
        )
    except ObjectNotFound:
        raise NotFound(
            f"no deployment {deployment} on the Prefect server: start `landmarks serve`, or "
            "register it with `landmarks deploy` (and set PREFECT_API_URL to that server)"
        ) from None
    typer.echo(describe_retrain(run, wait))
    if wait and run.state and not run.state.is_completed():
        reason = re.sub(r"^Flow run encountered an exception: ", "", run.state.message or "")
        raise UserError(f"retrain ended {run.state.name}: {reason}")


@app.command()
def suspects(
    folder: Annotated[
        Path | None,
        typer.Argument(help="A DIR/<class>/<images> tree; without it, the storage's dataset."),
    ] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the ranking here.")] = None,
    config: ConfigOpt = None,
    storage: StorageOpt = None,
    top: Annotated[int, typer.Option(help="Suspects to print.")] = 20,
) -> None:
    """Rank photos by how little a model that never saw them believes their label.

    Out-of-fold predictions (k-fold over near-duplicate groups) of a fast model: k-means patch
    words, a Lab colour grid and GIST features, kernel ridge. `landmarks suspects DIR --json
    OUT` writes [{"path" (relative to DIR), "label", "score", "suggested", ...}], most suspect
    first; score > 0 means the model prefers the suggested class. Without DIR it scores the
    storage's current dataset and writes storage/suspects/suspects.json for `landmarks review`.
    """
    from landmarks import review as review_core
    from landmarks import suspects as suspects_core
    from landmarks.storage import Layout, atomic_write_json

    settings, _ = _settings(config, storage)
    options = opt.suspects_options(settings)
    if folder is not None:
        if not folder.is_dir():
            _fail(f"no such folder: {folder}")
        with _bar("decode") as bar:
            try:
                result = suspects_core.suspects_in_folder(folder, options, bar)
            except ValueError as exc:
                _fail(str(exc))
        ranked = suspects_core.folder_json(result)
        for bad in result.unreadable:
            typer.echo(f"unreadable, not scored: {bad.path} ({bad.reason})", err=True)
    else:
        layout = Layout(settings.storage_dir)
        kept = review_core.reviewed_kept_path(layout)
        if not kept.exists():
            kept = layout.dedup_dir / "kept.jsonl"
        if not kept.exists():
            _fail(f"no dataset in {layout.root}: run `landmarks refresh` first, or give a DIR")
        with _bar("decode") as bar:
            found = suspects_core.suspects_for_storage(
                layout.clean_dir, kept, review_core.suspects_path(layout), options, top, bar
            )
        ranked = suspects_core.read_ranked(found.path)
        typer.echo(f"{found.num_images} photos scored -> {found.path}")
    if json_out is not None:
        atomic_write_json(json_out, ranked)
        typer.echo(f"json: {json_out}")
    for s in ranked[:top]:
        flags = f" [{' '.join(s['flags'])}]" if s["flags"] else ""
        typer.echo(f"{s['score']:+.2f}  {s['path']}  {s['label']} -> {s['suggested']}{flags}")


@app.command()
def review(
    config: ConfigOpt = None,
    storage: StorageOpt = None,
    host: Annotated[str | None, typer.Option(help="Address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8765).")] = None,
) -> None:
    """Serve the review page: suspects as thumbnails by class with score and suggested class;
    keep (a), remove (x), relabel (r) with the keyboard. Decisions are saved at once in
    storage/review/decisions.json; the next refresh and training honour them (a later crawl
    of the same photo too). Raw files are never deleted."""
    from landmarks import review as review_core
    from landmarks.review_server import ReviewSite, make_server
    from landmarks.storage import Layout

    settings, _ = _settings(config, storage)
    layout = Layout(settings.storage_dir)
    site = ReviewSite(
        clean_dir=layout.clean_dir,
        suspects_path=review_core.suspects_path(layout),
        decisions_path=review_core.decisions_path(layout),
        max_items=settings.suspects.review_max,
    )
    try:
        server = make_server(
            site,
            host or settings.suspects.review_host,
            settings.suspects.review_port if port is None else port,
        )
    except FileNotFoundError as exc:
        _fail(str(exc))
    address, bound = server.server_address[:2]
    typer.echo(f"review page on http://{address}:{bound}/ (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


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
        Path | None, typer.Option("--json", help="Write every finding here as JSON.")
    ] = None,
) -> None:
    """Check every stage's manifest against its files (exists, size, sha256), orphans, torn or
    corrupt manifest lines (file:line), augmented chunks, split records whose image is gone,
    unfinished runs, stale temp files and locks. Exit 0: consistent; 1: not; 2: usage."""
    from landmarks import integrity
    from landmarks.storage import StorageBusy, atomic_write_json

    settings, _ = _settings(config, storage)
    try:
        report = integrity.verify_storage(settings.storage_dir, repair=repair)
    except (FileNotFoundError, StorageBusy) as exc:
        _fail(str(exc))
    typer.echo(integrity.format_table(report))
    if json_out:
        atomic_write_json(json_out, report.to_json())
    raise typer.Exit(code=0 if report.consistent else 1)


# --- end verify ---------------------------------------------------------------------------


if __name__ == "__main__":
    app()
