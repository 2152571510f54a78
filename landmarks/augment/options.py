"""Augmentation settings, the result of a run, and the names of what it writes."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from landmarks.storage import sha256_bytes

Progress = Callable[[int, int], None]
PRESETS = ("original", "landmark", "none")
CHUNK_MANIFEST = "chunk.json"
PLAN_FILE = "plan.json"
LOCK_FILE = ".lock"
PLAN_VERSION = 2


@dataclass(frozen=True)
class AugmentOptions:
    preset: str = "original"
    multiplier: float = 2.0
    target_per_class: int | None = None
    chunk_size: int = 500
    output_size: int = 256
    num_workers: int = 1
    jpeg_quality: int = 92
    seed: int = 42

    def key(self, dataset_version: str) -> str:
        """Output folder name: everything that changes the bytes or the chunking, not workers."""
        fields = {k: v for k, v in asdict(self).items() if k != "num_workers"}
        blob = json.dumps(
            {"dataset": dataset_version, "plan": PLAN_VERSION, **fields}, sort_keys=True
        ).encode()
        return sha256_bytes(blob)[:12]

    def validate(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(
                f"unknown augmentation preset {self.preset!r}; choose one of {PRESETS}"
            )
        if self.chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {self.chunk_size}")
        if self.output_size < 16:
            raise ValueError(f"output_size must be >= 16 px, got {self.output_size}")
        if self.multiplier < 0:
            raise ValueError(f"multiplier must be >= 0, got {self.multiplier}")
        if self.target_per_class is not None and self.target_per_class < 1:
            raise ValueError(f"target_per_class must be >= 1, got {self.target_per_class}")
        if self.num_workers < 1:
            raise ValueError(f"num_workers must be >= 1, got {self.num_workers}")


@dataclass(frozen=True)
class AugmentResult:
    output_dir: Path
    num_images: int
    num_chunks: int
    chunks_done_before: int
    per_class_before: dict[str, int]
    per_class_after: dict[str, int]
