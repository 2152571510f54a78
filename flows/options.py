"""Turn validated settings into the core's option records (pydantic stays at the edge)."""

from __future__ import annotations

import os
from dataclasses import fields
from pathlib import Path
from typing import Any

from landmarks.augment import AugmentOptions
from landmarks.clean import CleanOptions
from landmarks.config import Settings
from landmarks.crawl import CrawlOptions
from landmarks.dedup import DedupOptions
from landmarks.split import SplitOptions
from landmarks.train.loop import TrainOptions


def _pick(cls: type, values: dict[str, Any]) -> Any:
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in names})


def crawl_options(s: Settings) -> CrawlOptions:
    values = s.crawl.model_dump()
    values["engines"] = tuple(values["engines"])
    values["endpoints"] = tuple(sorted(values["endpoints"].items()))
    values["commons_exclude"] = tuple(values["commons_exclude"])
    return _pick(CrawlOptions, values)


def clean_options(s: Settings) -> CleanOptions:
    return _pick(CleanOptions, s.clean.model_dump())


def dedup_options(s: Settings) -> DedupOptions:
    values = s.dedup.model_dump()
    values["crop_fractions"] = tuple(values["crop_fractions"])
    return _pick(DedupOptions, values)


def split_options(s: Settings) -> SplitOptions:
    return _pick(SplitOptions, s.split.model_dump())


def augment_options(s: Settings) -> AugmentOptions:
    values = s.augment.model_dump()
    # 0 workers: one per CPU, as for dedup (the output does not depend on it).
    values["num_workers"] = values["num_workers"] or os.cpu_count() or 1
    return _pick(AugmentOptions, values)


def train_options(s: Settings) -> TrainOptions:
    return _pick(TrainOptions, s.train.model_dump())


def model_spec(s: Settings) -> Any:
    from landmarks.train.models import ModelSpec

    values = s.train.model_dump()
    values["name"] = values.pop("model")
    return _pick(ModelSpec, values)


def suspects_options(s: Settings) -> Any:
    from landmarks.review.suspects import SuspectsOptions

    return _pick(SuspectsOptions, s.suspects.model_dump())


def run_config(
    settings: Settings,
    dataset_version: str,
    split_manifest: Path,
    augmented_dir: str | Path | None,
    **extra: Any,
) -> dict[str, Any]:
    """What a training run records in its run.json: data, model, options and all settings."""
    from dataclasses import asdict

    return {
        "dataset_version": dataset_version,
        "split_manifest": str(split_manifest),
        "augmented_dir": str(augmented_dir) if augmented_dir else None,
        **extra,
        "model": asdict(model_spec(settings)),
        "train": asdict(train_options(settings)),
        "settings": settings.model_dump(mode="json"),
    }


def require_run(runs_dir: Path, run_id: str) -> None:
    """A run to resume must exist: a mistyped id must not start (and crown) a new run."""
    from landmarks.errors import NotFound
    from landmarks.train.registry import RUN_CONFIG

    if not (Path(runs_dir) / run_id / RUN_CONFIG).is_file():
        raise NotFound(
            f"no run {run_id!r} in {runs_dir} to resume (`landmarks runs` lists them); "
            "leave out --run-id to start a new run"
        )


def find_augmentation(settings: Settings) -> tuple[Path | None, str]:
    """The committed augmentation to train with on the current split, and a line saying which
    and why: the one the current augment settings make; else the newest one made for this
    split with other options (``landmarks augment --output-size 64`` and the like), naming the
    options that differ; else none, saying why."""
    from landmarks.split import dataset_version
    from landmarks.storage import Layout, read_json

    layout = Layout(settings.storage_dir.resolve())
    if not layout.split_manifest.exists():
        return None, "no split yet: nothing to augment"
    version = dataset_version(layout.split_manifest)
    wanted = augment_options(settings)
    exact = layout.augmented_dir / wanted.key(version)
    if (exact / "manifest.json").exists():
        return exact, f"augmentation: {exact} (the current augment settings)"
    found = []
    for manifest in layout.augmented_dir.glob("*/manifest.json"):
        record = read_json(manifest)
        if record.get("dataset_version") == version:
            found.append((manifest.stat().st_mtime, manifest.parent, record.get("options", {})))
    if not found:
        return None, (
            f"augmentation: none for split {version}, training on the clean train split alone "
            "(`landmarks augment` makes some)"
        )
    _, path, options = max(found, key=lambda f: (f[0], f[1].name))
    current = {k: v for k, v in vars(wanted).items() if k != "num_workers"}
    differ = ", ".join(
        f"{k} {options.get(k)!r} (settings: {v!r})"
        for k, v in current.items()
        if k in options and options[k] != v
    )
    return path, (
        f"augmentation: {path}, the newest made for split {version}; it differs from the "
        f"current augment settings in {differ or 'nothing recorded'}"
        + (f"; {len(found) - 1} other(s) for this split skipped" if len(found) > 1 else "")
    )
