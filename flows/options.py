"""Turn validated settings into the core's option records (pydantic stays at the edge)."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

from landmarks.augment import AugmentOptions
from landmarks.clean import CleanOptions
from landmarks.config import Settings
from landmarks.crawl import CrawlOptions
from landmarks.dedup import DedupOptions
from landmarks.split import SplitOptions
from landmarks.train import TrainOptions


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
    return _pick(AugmentOptions, s.augment.model_dump())


def train_options(s: Settings) -> TrainOptions:
    return _pick(TrainOptions, s.train.model_dump())


def model_spec(s: Settings) -> Any:
    from landmarks.models import ModelSpec

    values = s.train.model_dump()
    values["name"] = values.pop("model")
    return _pick(ModelSpec, values)


def suspects_options(s: Settings) -> Any:
    from landmarks.suspects import SuspectsOptions

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
