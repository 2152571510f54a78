"""`landmarks crawl` (web engines, URL lists, folders, dry runs) and `landmarks attribution`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

import flows  # noqa: F401  (environment defaults before prefect)
from flows import options as opt
from flows.cli.common import (
    CatalogOpt,
    ConfigOpt,
    MaxPerClassOpt,
    SourceOpt,
    StorageOpt,
    _bar,
    _fail,
    _say,
    _settings,
    _stop,
    _write_json,
    app,
    json_help,
)
from landmarks.config import CrawlConfig, describe_validation_error
from landmarks.errors import SettingsError


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
        typer.Option("--json", help=json_help("the --dry-run's engines and candidates")),
    ] = None,
) -> None:
    """Get images into storage/raw/ from web engines, a URL list or a folder.

    storage/raw/ is append-only, with one provenance record per image in
    raw/manifest.jsonl (engine, query, URL, result rank, time, sha256, bytes, pixel size,
    and the refresh that brought it).

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
        except StorageBusy as exc:
            _stop(str(exc))
        except StorageNotWritable as exc:
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
    except StorageBusy as exc:
        _stop(str(exc))
    except (crawl_core.NetworkUnavailable, StorageNotWritable, ValueError) as exc:
        _fail(str(exc))
    except OSError as exc:  # a full disk mid-crawl: what is in raw/ stays, a rerun resumes
        _stop(str(exc))
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

    answer = crawl_core.dry_run(landmarks_, options)
    for name, state in answer["engines"].items():
        _say(f"{name:<11} {state['status']:<10} {state['detail']}", json_out)
    per_engine: dict[str, int] = {}
    for c in answer["candidates"]:
        per_engine[c["engine"]] = per_engine.get(c["engine"], 0) + 1
    _say(
        f"{len(answer['candidates'])} candidates "
        f"({', '.join(f'{k} {v}' for k, v in per_engine.items()) or 'none'}); nothing downloaded",
        json_out,
    )
    _write_json(json_out, answer)


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
    """Write the credits (licence, author, page) of the dataset or a run as CSV and HTML.

    credits.csv and credits.html of the current dataset version (or of a run's training
    images): per image its class, split, title, author, licence,
    licence URL, source page, image URL and source engine. Images whose source gave no
    licence (the search engines, folder imports) show an empty licence. Default folder:
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
