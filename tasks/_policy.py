"""Retry and cache policies shared by the tasks.

Caching: Prefect's default input hash sees a ``Path`` argument as its string, so a manifest
that changed under the same path would hit a stale cache. :class:`ManifestCache` keys a stage on
the *content* of the manifests it reads (plus its options, its own source and the storage root,
so two storage roots never share an entry) and ignores an entry whose outputs are gone, so
deleting an output folder always reruns the stage. A flow rerun after a crash finds
the entries of the stages that finished and skips them.

Retries: network tasks retry with exponential backoff and jitter (see ``tasks.crawl``);
CPU-bound tasks retry only on failures of the environment (an I/O error, a killed worker
process, memory), never on a bug or bad data, which would fail the same way again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect.cache_policies import CachePolicy
from prefect.context import TaskRunContext

# Bump when the meaning of a cached result changes without its inputs changing.
CACHE_VERSION = "1"

# Failures a second attempt can cure; everything else (ValueError, KeyError, a corrupt
# manifest...) is deterministic and fails the task at once.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    BrokenProcessPool,
    MemoryError,
    TimeoutError,
    ConnectionError,
    InterruptedError,
    BlockingIOError,
)
_PERMANENT_OS_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


def is_transient(exc: BaseException | None) -> bool:
    if exc is None:
        return False
    if isinstance(exc, TRANSIENT_ERRORS):
        return True
    # Disk full, a stale NFS handle, an interrupted write: worth one more try.
    return isinstance(exc, OSError) and not isinstance(exc, _PERMANENT_OS_ERRORS)


def retry_on_transient(task: Any, task_run: Any, state: Any) -> bool:
    """``retry_condition_fn`` for CPU-bound tasks: retry only environment failures."""
    try:
        state.result()
    except Exception as exc:  # the task's own exception, re-raised by Prefect
        return is_transient(exc)
    return False


def _file_digest(path: Path) -> str:
    if not path.is_file():
        return "absent"
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in sorted(value.items())}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


PathsOf = Callable[[dict[str, Any]], list[Path]]


@dataclass
class ManifestCache(CachePolicy):
    """Cache key = content of the input manifests + options + storage root + task source.

    Args:
        reads: the manifests the stage reads, from the task's inputs.
        writes: the outputs that must exist for a cached result to be trusted.
        options: names of the task arguments that change the result (option records).
    """

    reads: PathsOf = field(default=lambda inputs: [])
    writes: PathsOf = field(default=lambda inputs: [])
    options: tuple[str, ...] = ()

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        try:
            source = task_ctx.task.fn.__code__.co_code.hex()
        except AttributeError:
            source = ""
        blob = {
            "version": CACHE_VERSION,
            "task": task_ctx.task.name,
            "storage": str(Path(inputs.get("storage_dir", "")).resolve()),
            "reads": [_file_digest(Path(p)) for p in self.reads(inputs)],
            "options": {name: _jsonable(inputs.get(name)) for name in self.options},
            "source": hashlib.sha256(source.encode()).hexdigest(),
        }
        key = hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()
        if not all(Path(p).exists() for p in self.writes(inputs)):
            # Outputs missing: on a first run there is no entry and the run fills it; but an
            # entry with its outputs gone (deleted by hand) is stale, so run without the cache.
            # The rerun writes the same outputs, so the entry is right again afterwards.
            store = getattr(task_ctx, "result_store", None)
            if store is not None and store.exists(key):
                return None
        return key


def _layout(inputs: dict[str, Any]) -> Any:
    from landmarks.storage import Layout

    return Layout(Path(inputs["storage_dir"]))


def _augment_manifest(inputs: dict[str, Any]) -> Path:
    out_dir = _layout(inputs).augmented_dir / inputs["options"].key(inputs["dataset_version"])
    return out_dir / "manifest.json"


# One policy per stage: what it reads, what it must have left on disk, which arguments matter.
CLEAN_CACHE = ManifestCache(
    reads=lambda i: [_layout(i).raw_manifest],
    writes=lambda i: [_layout(i).clean_manifest],
    options=("options",),
)
DEDUP_CACHE = ManifestCache(
    reads=lambda i: [_layout(i).clean_manifest],
    writes=lambda i: [_layout(i).dedup_report, _layout(i).dedup_dir / "kept.jsonl"],
    options=("clean_options", "options"),
)
# Split reads its previous assignment (an image keeps its split as the dataset grows), so that
# is an input too: a rerun after a first split recomputes once (milliseconds), and a cached
# result can never describe another split than the one on disk.
SPLIT_CACHE = ManifestCache(
    reads=lambda i: [Path(i["kept_path"]), _layout(i).split_manifest],
    writes=lambda i: [_layout(i).split_manifest],
    options=("options",),
)
AUGMENT_CACHE = ManifestCache(
    reads=lambda i: [Path(i["split_manifest"])],
    writes=lambda i: [_augment_manifest(i)],
    options=("dataset_version", "options"),
)
