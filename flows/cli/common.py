"""The `landmarks` app, the options every command shares, and the helpers behind the
one-line errors, progress bars and the storage lock."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

import flows  # noqa: F401  (environment defaults before prefect)
from flows.cli.errors import ErrorHandlingGroup
from landmarks.config import Settings, load_settings
from landmarks.errors import NotFound, UsageError, UserError

# Said once, here and in the README's "Mistakes, messages and exit codes"; no command repeats it.
EPILOG = (
    "Exit codes: 0 done; 1 started work failed (a busy storage, a crawl that left a class "
    "empty; `verify`: the storage is not consistent); 2 the command as typed cannot work (a "
    "path that does not exist, an unknown setting or name, a value out of range). "
    "--json PATH writes JSON to PATH, --json - to standard output (the other output then goes "
    "to stderr). --config FILE, --storage DIR and --workers N (processes; 0: one per CPU) "
    "mean the same in every command that has them."
)

app = typer.Typer(
    help="Build and refresh a landmark image classifier: crawl, clean, dedup, split, augment, "
    "train, evaluate. `landmarks run` does it all as Prefect flows; each stage also has its "
    "own command.",
    epilog=EPILOG,
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
STDOUT = "-"  # --json - : the JSON goes to standard output


def json_help(what: str) -> str:
    """The help of every --json option: one meaning across commands."""
    return f"Write {what} as JSON to PATH ('-': standard output)."


def _json_to_stdout(json_out: Path | None) -> bool:
    return json_out is not None and str(json_out) == STDOUT


def _say(text: str, json_out: Path | None = None, **style: Any) -> None:
    """A line for people: on stdout, or on stderr when --json - has stdout for the JSON."""
    typer.secho(text, err=_json_to_stdout(json_out), **style)


def _write_json(json_out: Path | None, data: Any) -> None:
    """--json PATH: write ``data`` atomically to PATH, or print it for '-'; nothing when None."""
    if json_out is None:
        return
    if _json_to_stdout(json_out):
        typer.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    from landmarks.storage import atomic_write_json

    try:
        atomic_write_json(json_out, data)
    except OSError as exc:
        _fail(f"cannot write {json_out}: {exc.strerror or exc}")
    typer.echo(f"json: {json_out}")


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
    """A usage mistake: `error: message` on stderr, exit code 2 (see flows.cli.errors)."""
    raise UsageError(message)


def _stop(message: str) -> None:
    """Started work cannot go on (a busy storage, a full disk): `error: message`, exit code 1."""
    raise UserError(message)


@contextmanager
def _bar(description: str, unit: str = "img") -> Iterator[Callable[[int, int], None]]:
    from tqdm import tqdm

    # made on the first update (a step that never runs shows no bar) and closed at its total,
    # so that its time and rate are the step's; a caller that starts over (a second phase)
    # gets a new bar
    bars: list[tqdm] = []

    def update(done: int, total: int) -> None:
        if not bars or (bars[-1].disable and done < total):
            bars.append(tqdm(desc=description, unit=unit, dynamic_ncols=True, file=sys.stderr))
        bar = bars[-1]
        if bar.disable:
            return
        if bar.total != total:
            bar.total = total
            bar.refresh()
        bar.update(done - bar.n)
        if total and done >= total:
            bar.close()

    try:
        yield update
    finally:
        for bar in bars:
            bar.close()


@contextmanager
def _step_bars(units: dict[str, str]) -> Iterator[Callable[[str, int, int], None]]:
    """``steps(step, done, total)`` for a core function with several steps: a bar per step
    (``units``: step -> unit), each shown on its first update."""
    with ExitStack() as stack:
        bars = {step: stack.enter_context(_bar(step, unit)) for step, unit in units.items()}
        yield lambda step, done, total: bars[step](done, total)


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
            except StorageBusy as exc:
                _stop(str(exc))
            except ManifestError as exc:
                _fail(str(exc))
            except StorageNotWritable as exc:
                _fail(f"{stage}: {exc.strerror}")
            except OSError as exc:
                if exc.errno not in storage_errors:
                    raise
                _stop(
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
    from flows.cli.errors import LogFormatter

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(
            LogFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", verbose)
        )


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log more.")] = False):
    _setup_logging(verbose)
