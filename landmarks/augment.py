"""Augment stage: albumentations on the train split only, written to disk in atomic chunks.

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

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import io
import json
import logging
import multiprocessing
import os
import shutil
import signal
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import (
    FIRST_COMPLETED,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from landmarks.manifest import fault_point
from landmarks.storage import atomic_write_json, read_json, sha256_bytes

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

log = logging.getLogger(__name__)

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


# --------------------------------------------------------------------------- transforms


def build_transform(preset: str, output_size: int) -> Any:
    """The albumentations pipeline of a named preset, producing output_size x output_size."""
    import albumentations as A
    import cv2

    size = (output_size, output_size)
    if preset == "original":
        # The original project's Keras ImageDataGenerator(rotation_range=15, shear_range=0.1,
        # zoom_range=0.2, width/height_shift_range=0.1, horizontal_flip=True,
        # fill_mode="nearest"), applied after resizing, as it did. Keras reads shear_range in
        # degrees (apply_affine_transform: np.deg2rad(shear)), so 0.1 means 0.1 degree, not
        # 0.1 rad; we keep its meaning. Keras draws the x and y zoom independently and its
        # zoom z shrinks the content by 1/z; scale 1/1.2 .. 1/0.8 per axis reproduces that.
        steps = [
            A.Resize(*size),
            A.Affine(
                rotate=(-15, 15),
                shear=(-0.1, 0.1),
                scale=(1 / 1.2, 1 / 0.8),
                keep_ratio=False,
                translate_percent=(-0.1, 0.1),
                border_mode=cv2.BORDER_REPLICATE,  # Keras fill_mode="nearest"
                p=1.0,
            ),
            A.HorizontalFlip(p=0.5),
        ]
    elif preset == "landmark":
        # Stronger and closer to how landmark photos differ: framing (crop, zoom, aspect),
        # viewpoint (perspective, tilt), light and camera (colour, blur, JPEG), occlusion by
        # people and cars (dropout). Mirror images of a landmark are still that landmark.
        steps = [
            A.RandomResizedCrop(size=size, scale=(0.45, 1.0), ratio=(0.75, 1.333), p=1.0),
            A.HorizontalFlip(p=0.5),
            A.Perspective(scale=(0.02, 0.06), p=0.3),
            A.Affine(rotate=(-10, 10), border_mode=cv2.BORDER_REFLECT_101, p=0.4),
            A.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.03, p=0.8),
            A.OneOf([A.GaussianBlur(blur_limit=(3, 5)), A.MotionBlur(blur_limit=5)], p=0.2),
            A.CoarseDropout(
                num_holes_range=(1, 3),
                hole_height_range=(0.05, 0.15),
                hole_width_range=(0.05, 0.15),
                fill="random_uniform",
                p=0.2,
            ),
            A.ImageCompression(quality_range=(50, 95), p=0.3),
            A.ToGray(p=0.05),
        ]
    elif preset == "none":
        steps = [A.Resize(*size)]
    else:
        raise ValueError(f"unknown augmentation preset {preset!r}; choose one of {PRESETS}")
    return A.Compose(steps)


def decode_size(preset: str, output_size: int) -> int:
    """Smallest side worth decoding: the JPEG decoder may downscale (draft) to this.

    ``landmark`` crops down to 45 % of the area (67 % of the side) before resizing, so it
    needs 1.5x the output side to avoid upscaling; the other presets resize the whole image.
    """
    return int(output_size * 1.5) if preset == "landmark" else output_size


def load_source(path: Path, min_side: int) -> np.ndarray:
    """Decode one clean image as RGB uint8, letting libjpeg downscale it to >= ``min_side``."""
    try:
        with Image.open(path) as im:
            im.draft("RGB", (min_side, min_side))
            return np.asarray(im.convert("RGB"))
    except (OSError, UnidentifiedImageError) as exc:
        raise RuntimeError(
            f"cannot read clean image {path}: {exc}; rerun `landmarks clean` to rebuild it"
        ) from exc


def image_seed(seed: int, source: str, copy: int) -> int:
    """The seed of one output image: independent of chunking, order and workers."""
    digest = hashlib.sha256(f"{seed}|{source}|{copy}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def encode_jpeg(pixels: np.ndarray, quality: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


# --------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class ClassPlan:
    """``wanted`` copies of one class, spread over its sources as evenly as possible.

    Source ``j`` (in the seeded order of ``sources``) gets ``wanted // n`` copies, one more if
    ``j < wanted % n``; copies of one source are consecutive in the plan.
    """

    class_name: str
    sources: tuple[str, ...]
    wanted: int

    def copies_of(self, j: int) -> int:
        q, r = divmod(self.wanted, len(self.sources))
        return q + (1 if j < r else 0)

    def entry(self, position: int) -> tuple[str, int]:
        """(source, copy index) of the ``position``-th copy of this class."""
        q, r = divmod(self.wanted, len(self.sources))
        head = r * (q + 1)
        if position < head:
            j, copy = divmod(position, q + 1)
        else:
            j, copy = divmod(position - head, q)
            j += r
        return self.sources[j], copy


@dataclass(frozen=True)
class Plan:
    classes: tuple[ClassPlan, ...]
    chunk_size: int

    @property
    def total(self) -> int:
        return sum(c.wanted for c in self.classes)

    @property
    def num_chunks(self) -> int:
        return -(-self.total // self.chunk_size)

    def chunk_len(self, index: int) -> int:
        return min(self.chunk_size, self.total - index * self.chunk_size)

    def entries(self, start: int = 0, stop: int | None = None) -> Iterator[tuple[str, str, int]]:
        """(source, class, copy) of plan positions ``start`` .. ``stop`` (exclusive)."""
        stop = self.total if stop is None else min(stop, self.total)
        offset = 0
        for cls in self.classes:
            lo, hi = max(start, offset), min(stop, offset + cls.wanted)
            for position in range(lo - offset, hi - offset):
                source, copy = cls.entry(position)
                yield source, cls.class_name, copy
            offset += cls.wanted

    def chunk_entries(self, index: int) -> Iterator[tuple[str, str, int]]:
        return self.entries(index * self.chunk_size, (index + 1) * self.chunk_size)

    def to_json(self) -> dict[str, Any]:
        return {
            "chunk_size": self.chunk_size,
            "classes": [
                {"class": c.class_name, "wanted": c.wanted, "sources": list(c.sources)}
                for c in self.classes
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Plan:
        return cls(
            classes=tuple(
                ClassPlan(c["class"], tuple(c["sources"]), int(c["wanted"]))
                for c in data["classes"]
            ),
            chunk_size=int(data["chunk_size"]),
        )


def _order_key(seed: int, path: str) -> str:
    return hashlib.sha256(f"{seed}|order|{path}".encode()).hexdigest()


def make_plan(
    train: list[dict[str, Any]],
    multiplier: float,
    target_per_class: int | None,
    chunk_size: int = 500,
    seed: int = 42,
) -> Plan:
    """How many copies each class gets and from which sources, deterministically.

    ``target_per_class`` N tops every class up to N train images (a class already at or above N
    gets no copies: it is never cut down); otherwise each class gets round(multiplier * n).
    Sources are taken in a seeded order, so when the copies do not divide evenly the extra ones
    fall on a random-looking subset rather than on the alphabetically first files.
    """
    by_class: dict[str, list[str]] = {}
    for record in train:
        by_class.setdefault(record["class"], []).append(record["path"])
    classes = []
    for class_name in sorted(by_class):
        sources = sorted(set(by_class[class_name]), key=lambda p: (_order_key(seed, p), p))
        n = len(sources)
        if target_per_class is not None:
            wanted = max(0, target_per_class - n)
        else:
            wanted = round(multiplier * n)
        classes.append(ClassPlan(class_name, tuple(sources), wanted))
    return Plan(tuple(classes), chunk_size)


# --------------------------------------------------------------------------- chunks


def chunk_name(index: int) -> str:
    return f"chunk-{index:05d}"


def output_name(class_name: str, source: str, copy: int) -> str:
    return f"{class_name}__{Path(source).stem}__{copy:04d}.jpg"


def chunk_is_committed(chunk_dir: Path) -> bool:
    """A committed chunk has its manifest and every file it lists, at the recorded size."""
    manifest = chunk_dir / CHUNK_MANIFEST
    if not manifest.is_file():
        return False
    try:
        files = read_json(manifest)["files"]
        return all((chunk_dir / f["path"]).stat().st_size == f["bytes"] for f in files)
    except (OSError, ValueError, KeyError, TypeError):
        return False


_TRANSFORMS: dict[tuple[str, int], Any] = {}
_MAX_PENDING_WRITES = 32


def write_chunk(
    index: int, plan: Plan, clean_dir: Path, out_dir: Path, options: AugmentOptions
) -> int:
    """Write chunk ``index`` into a temp folder, then commit it with one rename.

    Returns the number of images written (0 when the chunk was already committed).
    """
    final = out_dir / chunk_name(index)
    if chunk_is_committed(final):
        return 0
    key = (options.preset, options.output_size)
    if key not in _TRANSFORMS:
        _TRANSFORMS[key] = build_transform(options.preset, options.output_size)
    transform = _TRANSFORMS[key]
    min_side = decode_size(options.preset, options.output_size)
    tmp = out_dir / f".{chunk_name(index)}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    files = []
    current: tuple[str, np.ndarray] | None = None
    # File creation waits on the filesystem journal (0.06 ms per file on an idle disk, 0.45 ms
    # under load, measured): one writer thread overlaps that wait with the next image's
    # pixels. At most _MAX_PENDING_WRITES encoded images wait in memory.
    pending: deque[Future[int]] = deque()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="augment-write") as writer:
        for source, class_name, copy in plan.chunk_entries(index):
            if current is None or current[0] != source:
                current = (source, load_source(clean_dir / source, min_side))
            transform.set_random_seed(image_seed(options.seed, source, copy))
            data = encode_jpeg(transform(image=current[1])["image"], options.jpeg_quality)
            name = output_name(class_name, source, copy)
            if len(pending) >= _MAX_PENDING_WRITES:
                pending.popleft().result()
            pending.append(writer.submit((tmp / name).write_bytes, data))
            files.append(
                {
                    "path": name,
                    "class": class_name,
                    "source": source,
                    "copy": copy,
                    "bytes": len(data),
                    "sha256": sha256_bytes(data),
                }
            )
        for future in pending:  # surface a failed write before committing
            future.result()
    atomic_write_json(tmp / CHUNK_MANIFEST, {"index": index, "files": files})
    if final.exists():  # a damaged chunk that failed verification: replace it whole
        shutil.rmtree(final)
    os.replace(tmp, final)
    fault_point("augment", "committed")
    return len(files)


# Per-process state of a pool worker, set once by the initializer so that a task is just an
# index (nothing per image crosses the process boundary).
_WORKER: dict[str, Any] = {}


def _die_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGKILL this worker when its parent dies, so a killed run leaves no
    orphan still writing a chunk while the resumed run cleans up."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: an orphan may linger until killed
        return
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def limit_threads() -> int:
    """One OpenCV thread per process: the parallelism is across processes, and OpenCV's own
    pool on top would oversubscribe the cores. Returns the previous setting."""
    import cv2

    previous = cv2.getNumThreads()
    cv2.setNumThreads(1)
    return previous


def _worker_init(
    parent_pid: int, plan_json: dict[str, Any], clean_dir: Path, out_dir: Path, options: Any
) -> None:
    _die_with_parent(parent_pid)
    limit_threads()
    _WORKER.update(
        plan=Plan.from_json(plan_json), clean_dir=clean_dir, out_dir=out_dir, options=options
    )


def _worker_chunk(index: int) -> tuple[int, int]:
    w = _WORKER
    return index, write_chunk(index, w["plan"], w["clean_dir"], w["out_dir"], w["options"])


# --------------------------------------------------------------------------- the stage


def _lock(out_dir: Path) -> int:
    fd = os.open(out_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RuntimeError(
            f"another augment run is writing {out_dir}; wait for it or stop it, then rerun "
            "(a killed run releases the lock and this run resumes it)"
        ) from None
    return fd


def _load_or_save_plan(
    out_dir: Path, train: list[dict[str, Any]], dataset_version: str, options: AugmentOptions
) -> Plan:
    """The plan saved by the first attempt wins, so chunk boundaries never move on resume."""
    plan_path = out_dir / PLAN_FILE
    if plan_path.exists():
        return Plan.from_json(read_json(plan_path)["plan"])
    plan = make_plan(
        train, options.multiplier, options.target_per_class, options.chunk_size, options.seed
    )
    atomic_write_json(
        plan_path,
        {"dataset_version": dataset_version, "options": asdict(options), "plan": plan.to_json()},
    )
    return plan


def augment_train(
    train: list[dict[str, Any]],
    clean_dir: Path,
    augmented_root: Path,
    dataset_version: str,
    options: AugmentOptions,
    progress: Progress | None = None,
) -> AugmentResult:
    """Augment the train records (``path`` relative to ``clean_dir``, ``class``) in chunks.

    Output goes to ``augmented_root/<options.key(dataset_version)>/``. Rerunning with the same
    arguments resumes: committed chunks are kept, the rest is written.
    """
    options.validate()
    out_dir = augmented_root / options.key(dataset_version)
    out_dir.mkdir(parents=True, exist_ok=True)
    lock_fd = _lock(out_dir)
    try:
        plan = _load_or_save_plan(out_dir, train, dataset_version, options)
        # Under the lock every temp folder is left over from a killed run.
        for stale in out_dir.glob(".chunk-*.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        todo = [
            i for i in range(plan.num_chunks) if not chunk_is_committed(out_dir / chunk_name(i))
        ]
        done_before = plan.num_chunks - len(todo)
        images_done = plan.total - sum(plan.chunk_len(i) for i in todo)
        if progress:
            progress(images_done, plan.total)
        if options.num_workers <= 1 or len(todo) <= 1:
            previous = limit_threads()
            try:
                for i in todo:
                    write_chunk(i, plan, clean_dir, out_dir, options)
                    images_done += plan.chunk_len(i)
                    if progress:
                        progress(images_done, plan.total)
            finally:
                import cv2

                cv2.setNumThreads(previous)
        else:
            images_done = _run_pool(todo, plan, clean_dir, out_dir, options, images_done, progress)
    finally:
        os.close(lock_fd)

    before: dict[str, int] = {}
    for record in train:
        before[record["class"]] = before.get(record["class"], 0) + 1
    after = {c.class_name: before.get(c.class_name, 0) + c.wanted for c in plan.classes}
    atomic_write_json(
        out_dir / "manifest.json",
        {
            "dataset_version": dataset_version,
            "options": asdict(options),
            "num_images": plan.total,
            "num_chunks": plan.num_chunks,
            "per_class_before": before,
            "per_class_after": after,
        },
    )
    log.info(
        "augment: %d images in %d chunks (%d already done) -> %s",
        plan.total,
        plan.num_chunks,
        done_before,
        out_dir,
    )
    return AugmentResult(
        output_dir=out_dir,
        num_images=plan.total,
        num_chunks=plan.num_chunks,
        chunks_done_before=done_before,
        per_class_before=before,
        per_class_after=after,
    )


def _run_pool(
    todo: list[int],
    plan: Plan,
    clean_dir: Path,
    out_dir: Path,
    options: AugmentOptions,
    images_done: int,
    progress: Progress | None,
) -> int:
    # spawn, not fork: the caller may be a Prefect worker with threads and an event loop,
    # which a forked child would inherit half-locked; a spawned worker starts clean.
    context = multiprocessing.get_context("spawn")
    pending = iter(todo)
    in_flight: set[Future[tuple[int, int]]] = set()
    with ProcessPoolExecutor(
        max_workers=options.num_workers,
        mp_context=context,
        initializer=_worker_init,
        initargs=(os.getpid(), plan.to_json(), clean_dir, out_dir, options),
    ) as pool:
        try:
            while True:
                # Two chunks per worker in flight: workers never wait, and the parent holds
                # a bounded number of futures however many chunks there are.
                while len(in_flight) < 2 * options.num_workers:
                    index = next(pending, None)
                    if index is None:
                        break
                    in_flight.add(pool.submit(_worker_chunk, index))
                if not in_flight:
                    break
                finished, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in finished:
                    index, _ = future.result()
                    images_done += plan.chunk_len(index)
                    if progress:
                        progress(images_done, plan.total)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return images_done


def list_augmented(out_dir: Path) -> list[tuple[Path, str]]:
    """(image path, class) of every committed augmented image under ``out_dir``.

    The order is a fixed pseudo-random interleaving (by a hash of the file name), not the
    chunk order: the plan groups copies by class and source, and a reader with a small
    shuffle buffer would otherwise see long runs of one class.
    """
    items: list[tuple[str, Path, str]] = []
    for chunk in sorted(Path(out_dir).glob("chunk-*")):
        manifest = chunk / CHUNK_MANIFEST
        if not manifest.exists():
            continue
        for f in read_json(manifest)["files"]:
            order = hashlib.blake2b(f["path"].encode(), digest_size=8).hexdigest()
            items.append((order, chunk / f["path"], f["class"]))
    items.sort(key=lambda item: (item[0], item[1].name))
    return [(path, class_name) for _, path, class_name in items]
