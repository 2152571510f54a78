"""Augment stage: albumentations on the train split only, written to disk in atomic chunks.

Takes the train part of the split (``splits/split.jsonl``) and the clean photos; leaves
``augmented/<key>/`` (one folder per dataset version and settings): ``plan.json`` and
``chunk-NNNNN/`` folders, each with its images and ``chunk.json``. Modules:
:mod:`~landmarks.augment.options`, :mod:`~landmarks.augment.transforms` (the presets),
:mod:`~landmarks.augment.plan`, :mod:`~landmarks.augment.chunks` (writing and committing one
chunk) and :mod:`~landmarks.augment.stage` (the run).

Memory does not grow with the number of images produced:

* The plan is compact: per class, the train sources in a seeded order and how many copies the
  class wants. Entry ``g`` of the plan (which source, which copy) is computed on demand, so the
  plan costs memory per *train image*, never per *output image*, and a chunk is just a range.
* A worker holds one decoded source at a time and writes each output as soon as it is made.
  Copies of the same source sit next to each other in the plan, so a source is decoded once per
  chunk, not once per copy.
* The parent keeps at most two chunks per worker in flight.

Every chunk is written into a temp folder and committed by one atomic rename together with its
``chunk.json`` (file names, classes, sources, sizes, sha256). A rerun takes a lock, removes
half-written temp folders, verifies committed chunks by file size and skips them, so a run
killed with SIGKILL resumes without redoing or duplicating work. Each output image has its own
seed (base seed, source, copy), so the bytes are identical whatever the chunking, the order or
the number of workers.
"""

from landmarks.augment.chunks import chunk_is_committed, chunk_name, limit_threads, write_chunk
from landmarks.augment.options import PLAN_FILE, PRESETS, AugmentOptions, AugmentResult
from landmarks.augment.plan import ClassPlan, Plan, make_plan
from landmarks.augment.stage import augment_train, list_augmented
from landmarks.augment.transforms import build_transform, decode_size, encode_jpeg

__all__ = [
    "PLAN_FILE",
    "PRESETS",
    "AugmentOptions",
    "AugmentResult",
    "ClassPlan",
    "Plan",
    "augment_train",
    "build_transform",
    "chunk_is_committed",
    "chunk_name",
    "decode_size",
    "encode_jpeg",
    "limit_threads",
    "list_augmented",
    "make_plan",
    "write_chunk",
]
