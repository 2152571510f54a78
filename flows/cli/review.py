"""Suspects (photos whose label a model doubts) and the local review page."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

import flows  # noqa: F401  (environment defaults before prefect)
from flows import options as opt
from flows.cli.common import (
    ConfigOpt,
    StorageOpt,
    _bar,
    _fail,
    _say,
    _settings,
    _write_json,
    app,
    json_help,
)


@app.command()
def suspects(
    folder: Annotated[
        Path | None,
        typer.Argument(help="A DIR/<class>/<images> tree; without it, the storage's dataset."),
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help=json_help("every photo, ranked"))
    ] = None,
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
    from landmarks.review import decisions
    from landmarks.review import suspects as suspects_core
    from landmarks.storage import Layout

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
        kept = decisions.reviewed_kept_path(layout)
        if not kept.exists():
            kept = layout.dedup_dir / "kept.jsonl"
        if not kept.exists():
            _fail(f"no dataset in {layout.root}: run `landmarks refresh` first, or give a DIR")
        with _bar("decode") as bar:
            found = suspects_core.suspects_for_storage(
                layout.clean_dir, kept, decisions.suspects_path(layout), options, top, bar
            )
        ranked = suspects_core.read_ranked(found.path)
        _say(f"{found.num_images} photos scored -> {found.path}", json_out)
    _write_json(json_out, ranked)
    for s in ranked[:top]:
        flags = f" [{' '.join(s['flags'])}]" if s["flags"] else ""
        _say(f"{s['score']:+.2f}  {s['path']}  {s['label']} -> {s['suggested']}{flags}", json_out)


@app.command()
def review(
    config: ConfigOpt = None,
    storage: StorageOpt = None,
    host: Annotated[str | None, typer.Option(help="Address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8765).")] = None,
) -> None:
    """Serve the review page: keep, remove or relabel the suspects.

    The suspects as thumbnails by class with score and suggested class; keep (a), remove (x),
    relabel (r) with the keyboard. Decisions are saved at once in storage/review/decisions.json;
    the next refresh and training honour them (a later crawl of the same photo too). Raw files
    are never deleted.
    """
    from landmarks.review import decisions
    from landmarks.review.page import ReviewSite, make_server
    from landmarks.storage import Layout

    settings, _ = _settings(config, storage)
    layout = Layout(settings.storage_dir)
    site = ReviewSite(
        clean_dir=layout.clean_dir,
        suspects_path=decisions.suspects_path(layout),
        decisions_path=decisions.decisions_path(layout),
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
