"""Near-duplicate benchmark with edits drawn at random per photo, on the real photos.

    nice .venv/bin/python benchmarks/dedup_edits.py [--per-photo 2] [--skip throughput]
        [--immaculate /path/to/py312-venv/bin/immaculate]

Every real photo gets ``--per-photo`` edits, each of a family drawn at random
(benchmarks/dedup_edit_families.py: crops anywhere, centre squares at training sizes, small
rotations, mirror/90-degree turns, text bands and logos, grey and hue shifts, heavy JPEG with
downscaling, chains of 2-3), with its own random parameters. All other real photos are the
distractors, including different photos of one landmark from the same spot. Side by side, in
one run: naive pHash (all pairs within 10 bits), imagededup's PHash, immaculate's PDQ (when
``--immaculate`` names its command), ours before (global hashes + ORB verification:
``local_features=False``) and ours (with the local-feature route). The others have no content
checks, so ours runs with its checks relaxed (``EVERY_FILE``) to see every file as they do, and
once more with the default checks ("ours, default checks"), where a file they quarantine (an
edit under 64 pixels a side, a flat picture) counts as missed.

Recall of a family: share of its edits grouped with their original. Pair precision: share of
true pairs among all pairs inside the groups found (what a dedup that keeps one per group acts
on); originals that are known copies of each other (benchmarks/dedup.py) count as true.

Throughput: the whole ``dedup_folder`` (what ``landmarks dedup DIR`` runs: full decode and
checks, hashes, features, search, verification) of the real photos, 2 processes, old and new
interleaved, best of 2.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import dedup as bench_dedup  # noqa: E402
import dedup_edit_families as families  # noqa: E402

from landmarks import dedup, images  # noqa: E402
from landmarks.dedup import hamming  # noqa: E402

METHODS = ("naive pHash, distance 10", "imagededup PHash", "ours before", "ours")
# The other methods have no content checks and see every file; ours is run with its checks
# relaxed so that it sees them too (the dedup's matching is measured, not the clean stage's
# rules), and once more with the default checks, where what they quarantine (edits under 64
# pixels a side, flat or low-information pictures) counts as missed.
EVERY_FILE = images.ImageLimits(min_side=16, max_aspect_ratio=50.0, min_std=0.0, min_entropy=0.0)
DEFAULT_CHECKS = "ours, default checks"


def make_edits(files: list[Path], root: Path, out: Path, per_photo: int) -> dict[str, int]:
    """Write the set (originals linked, edits as JPEG q90) under ``out``; returns each
    file's original index, by path relative to ``out``."""
    source: dict[str, int] = {}
    for i, path in enumerate(files):
        rel = path.relative_to(root)
        link = out / "orig" / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(path)
        source[f"orig/{rel.as_posix()}"] = i
        rng = random.Random(i)
        try:
            with Image.open(path) as src:
                im = ImageOps.exif_transpose(src).convert("RGB")
        except OSError:
            continue
        for family in rng.sample(families.FAMILIES, per_photo):
            edited, _ = families.apply(family, im, rng)
            name = f"edit/{family}/{i:04d}.jpg"
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            edited.save(out / name, "JPEG", quality=90)
            source[name] = i
    return source


def expand(groups: list[list[str]]) -> set[tuple[str, str]]:
    return {(min(a, b), max(a, b)) for g in groups for a in g for b in g if a < b}


def score(
    pairs: set[tuple[str, str]], source: dict[str, int], same: Callable[[int, int], bool]
) -> tuple[dict[str, float], float, list[tuple[str, str]]]:
    recall: dict[str, list[bool]] = {}
    originals = {i: name for name, i in source.items() if name.startswith("orig/")}
    for name, i in source.items():
        if name.startswith("edit/"):
            family = name.split("/")[1]
            key = (min(name, originals[i]), max(name, originals[i]))
            recall.setdefault(family, []).append(key in pairs)
    false = sorted((a, b) for a, b in pairs if not same(source[a], source[b]))
    precision = 1 - len(false) / len(pairs) if pairs else 1.0
    per = {f: sum(r) / len(r) for f, r in sorted(recall.items())}
    return per, precision, false


def run_methods(
    folder: Path, names: list[str], workers: int, immaculate: str | None = None
) -> tuple[dict[str, tuple[float, set]], list[str]]:
    """(seconds, pairs grouped) per method, and the files the default checks quarantine."""
    paths = [folder / n for n in names]
    out: dict[str, tuple[float, set]] = {}

    def naive() -> set[tuple[str, str]]:
        hashes, keep = [], []
        for k, p in enumerate(paths):
            try:
                hashes.append(bench_dedup._naive(p))
                keep.append(k)
            except OSError:
                pass
        words = dedup.hex_to_words(hashes)[:, 0]
        found = hamming.brute_force(words, words, 10)
        uf = dedup.UnionFind(len(names))
        for a, b in zip(found.query, found.db, strict=True):
            uf.union(keep[int(a)], keep[int(b)])
        return expand(_components(uf, names))

    start = time.perf_counter()
    out[METHODS[0]] = (time.perf_counter() - start, naive())
    out[METHODS[0]] = (time.perf_counter() - start, out[METHODS[0]][1])
    phash_cls = bench_dedup.load_imagededup_phash()
    if phash_cls is None:
        print("imagededup is not installed (pip install -e '.[bench]'): its row is missing")
    else:
        start = time.perf_counter()
        method = phash_cls(verbose=False)
        enc = {n: method.encode_image(image_file=folder / n) for n in names}
        found = method.find_duplicates(encoding_map={k: v for k, v in enc.items() if v})
        uf = dedup.UnionFind(len(names))
        index = {n: k for k, n in enumerate(names)}
        for a, dups in found.items():
            for b in dups:
                uf.union(index[a], index[b])
        out[METHODS[1]] = (time.perf_counter() - start, expand(_components(uf, names)))
    if immaculate:
        # its command line (Python >= 3.12), default method: PDQ within 31 bits, with
        # rotations and flips; its SSCD model downloads weights, which this machine cannot
        # it skips symbolic links, which the originals here are: it gets a copy of the set
        with tempfile.TemporaryDirectory(prefix="dedup-edits-copy-") as tmp:
            copy = Path(tmp) / "set"
            shutil.copytree(folder, copy, symlinks=False)
            start = time.perf_counter()
            proc = subprocess.run(
                [immaculate, "--json", str(copy)], capture_output=True, text=True, check=True
            )
            seconds = time.perf_counter() - start
        found = json.loads(proc.stdout)
        groups = [
            [Path(p).relative_to(copy).as_posix() for p in g]
            for g in found["exact"] + found["near"]
        ]
        out["immaculate 0.3 (PDQ)"] = (seconds, expand(groups))
    quarantined: list[str] = []
    for label, local, limits in (
        (METHODS[2], False, EVERY_FILE),
        (METHODS[3], True, EVERY_FILE),
        (DEFAULT_CHECKS, True, images.ImageLimits()),
    ):
        options = dedup.DedupOptions(num_workers=workers, local_features=local)
        start = time.perf_counter()
        result = dedup.dedup_folder(folder, options, limits)
        groups = [[g["keeper"]] + [d["path"] for d in g["duplicates"]] for g in result.groups]
        out[label] = (time.perf_counter() - start, expand(groups))
        if label == DEFAULT_CHECKS:
            quarantined = [q["path"] for q in result.quarantined]
    return out, quarantined


def _components(uf: dedup.UnionFind, names: list[str]) -> list[list[str]]:
    members: dict[int, list[str]] = {}
    for k, n in enumerate(names):
        members.setdefault(uf.find(k), []).append(n)
    return [m for m in members.values() if len(m) > 1]


def bench_quality(
    files: list[Path], root: Path, per_photo: int, workers: int, immaculate: str | None = None
) -> None:
    rel = [p.relative_to(root).as_posix() for p in files]
    index = {r: i for i, r in enumerate(rel)}
    dup_of = dedup.UnionFind(len(files))
    for a, b in bench_dedup.KNOWN_DUPLICATES:
        if a in index and b in index:
            dup_of.union(index[a], index[b])

    def same(a: int, b: int) -> bool:
        return dup_of.find(a) == dup_of.find(b)

    with tempfile.TemporaryDirectory(prefix="dedup-edits-") as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        source = make_edits(files, root, folder, per_photo)
        names = sorted(source)
        num_edits = sum(n.startswith("edit/") for n in names)
        print(
            f"\n== quality: {len(files)} real photos + {num_edits} edits "
            f"({per_photo} per photo, families drawn at random; written in "
            f"{time.perf_counter() - start:.0f} s) =="
        )
        counts: dict[str, int] = {}
        for n in names:
            if n.startswith("edit/"):
                counts[n.split("/")[1]] = counts.get(n.split("/")[1], 0) + 1
        print("edits per family: " + ", ".join(f"{f} {c}" for f, c in sorted(counts.items())))
        results, quarantined = run_methods(folder, names, workers, immaculate)
    fams = sorted(counts)
    print(f"{'method':28s}" + "".join(f"{f:>9s}" for f in fams) + "  precision  false   time s")
    for label, (seconds, pairs) in results.items():
        per, precision, false = score(pairs, source, same)
        cells = "".join(f"{per.get(f, 0):9.3f}" for f in fams)
        print(f"{label:28s}{cells}  {precision:9.4f} {len(false):6d} {seconds:8.1f}")
        if label == METHODS[3]:
            for a, b in false[:60]:
                print(f"    false pair: {a}  ~  {b}")
    held: dict[str, int] = {}
    for name in quarantined:
        if name.startswith("edit/"):
            held[name.split("/")[1]] = held.get(name.split("/")[1], 0) + 1
    originals = sum(name.startswith("orig/") for name in quarantined)
    print(
        f"the default checks quarantine {originals} originals and, of the edits: "
        + ", ".join(f"{f} {held.get(f, 0)}" for f in fams)
    )


def bench_throughput(root: Path, workers: int) -> None:
    print(f"\n== whole dedup_folder of {root} ({workers} processes), best of 2 ==")
    times = {False: float("inf"), True: float("inf")}
    num = 0
    for _ in range(2):
        for local in (False, True):
            options = dedup.DedupOptions(num_workers=workers, local_features=local)
            start = time.perf_counter()
            result = dedup.dedup_folder(root, options, images.ImageLimits())
            times[local] = min(times[local], time.perf_counter() - start)
            num = result.num_files
    for label, local in (("ours before (hashes + ORB verify)", False), ("ours", True)):
        t = times[local]
        print(
            f"{label:36s} {num / t:7.0f} img/s  ({t:.1f} s; {times[False] / t:.2f}x before's speed)"
        )


def _private_mib(pid: str) -> float:
    """The memory a process holds alone (Linux; 0 elsewhere): the pages it allocated or
    copied on writing, not those it shares with the process it was forked from."""
    total = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith(("Private_Clean:", "Private_Dirty:")):
                    total += int(line.split()[1])
    except OSError:
        pass  # a process that has just ended
    return total / 1024


class ChildMemory:
    """The most memory any child of this process held alone, sampled every 0.5 s (reading a
    process's page summary walks its page tables: more often, it slows the search down)."""

    def __init__(self) -> None:
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        me = os.getpid()
        while not self._stop.wait(0.5):
            children = []
            try:
                for task in os.listdir(f"/proc/{me}/task"):  # the thread that forked it
                    with open(f"/proc/{me}/task/{task}/children") as f:
                        children += f.read().split()
            except OSError:
                return
            for pid in children:
                self.peak = max(self.peak, _private_mib(pid))

    def __enter__(self) -> ChildMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def bench_scale(root: Path, num_images: int, planted: int = 2000, workers: int = 2) -> None:
    """Index build + search of ``num_images`` images' synthetic ORB descriptors, the search in
    ``workers`` processes as the dedup runs it (:func:`landmarks.dedup.search.search_pool`:
    forked with the index, each chunk of query images split between them).

    Made like this: every bit of every descriptor is drawn on its own with the share of ones
    that bit has in the real photos' ORB descriptors (as the dedup computes them), so the skew
    of real descriptors, which crowds buckets, is kept (the correlations between bits are
    not). Image ``k < planted`` is a crop-like copy of image ``planted + k``: 40 of its 256
    descriptors are the other's with 10% of the bits flipped. The other query sets, as the
    dedup has them (the mirror view: 256 per image; the coarse view: 128),
    are drawn the same way, chunk by chunk, outside the clock, and sent to the searching
    processes with their jobs (the full view's they read from the inherited descriptors).
    Peak memory: this process's maximum resident set (the descriptors included), and the
    most memory a searching process held alone (allocated, or copied on writing; the index it
    reads stays shared), sampled every 0.5 s. The sum (this process, plus that for every
    searching process) is an upper bound: their peaks need not coincide. CPU seconds of the
    build tell how much its threads overlapped. The baseline: the same search in as many
    threads, after it.
    """
    import resource

    from landmarks.dedup import feature_index, features, search

    files = sorted(p for p in root.rglob("*") if p.is_file())[::8]
    real = np.concatenate([features.extract_path(p).descriptors for p in files])
    share = np.unpackbits(real, axis=1).mean(axis=0)
    thresholds = np.round(share * 256).astype(np.uint16)
    k = features.NUM_FEATURES

    def synthetic(count: int, seed: int) -> np.ndarray:
        r = np.random.default_rng(seed)
        bits = r.integers(0, 256, size=(count * k, 256), dtype=np.uint8) < thresholds
        return np.packbits(bits, axis=1)

    rng = np.random.default_rng(0)
    base = np.empty((num_images * k, 32), np.uint8)
    step = 200
    for s in range(0, num_images, step):
        base[s * k : min(num_images, s + step) * k] = synthetic(min(step, num_images - s), s)
    for j in range(planted):
        src = base[(planted + j) * k : (planted + j) * k + 40]
        noise = np.packbits(rng.random((40, 256)) < 0.1, axis=1)
        base[j * k : j * k + 40] = src ^ noise
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"\n== scale: {num_images} images x {k} synthetic ORB descriptors "
        f"({base.nbytes / 2**20:.0f} MiB of descriptors; {rss_before:.0f} MiB resident) =="
    )
    options = feature_index.IndexOptions()
    start, cpu = time.perf_counter(), time.process_time()
    index = feature_index.FeatureIndex.from_stacked(base, np.full(num_images, k), options)
    t_build, cpu_build = time.perf_counter() - start, time.process_time() - cpu

    def full_view(job: search.SearchJob) -> list[np.ndarray]:
        return list(base[job.start * k : job.stop * k].reshape(-1, k, 32))

    coarse = features.COARSE_FEATURES

    def searched(processes: bool) -> tuple[float, set[tuple[int, int]]]:
        """Seconds of search, and the candidate pairs found."""
        seconds = 0.0
        found = set()
        chunk = 2048
        with search.search_pool(index, full_view, workers, processes) as run:
            for view, per_image in enumerate((k, k, coarse)):
                top_k = (options.top_k, options.top_k_mirror, options.top_k_coarse)[view]
                for s in range(0, num_images, chunk):
                    e = min(num_images, s + chunk)
                    jobs = []
                    for a, b in search.split(e - s, workers):
                        queries = None
                        if view:
                            drawn = synthetic(b - a, 10_000_000 * view + s + a)
                            flat = drawn.reshape(b - a, k, 32)[:, :per_image]
                            queries = list(np.ascontiguousarray(flat))
                        jobs.append(
                            search.SearchJob((view == 1, view == 2), s + a, s + b, top_k, queries)
                        )
                    start = time.perf_counter()
                    votes = run(jobs)
                    seconds += time.perf_counter() - start
                    for v in votes:
                        found.update(zip(v.query.tolist(), v.db.tolist(), strict=True))
        return seconds, found

    with ChildMemory() as child:
        t_search, found = searched(processes=True)
    # the baseline, the same search in as many threads (how the dedup searched before)
    t_threads, found_threads = searched(processes=False)
    assert found_threads == found, "threads and processes find the same candidates"
    recall = sum(((j, planted + j) in found or (planted + j, j) in found) for j in range(planted))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    added = child.peak
    print(
        f"build {t_build:.1f} s (CPU {cpu_build:.1f} s), search (full, mirror and coarse "
        f"queries; {workers} processes) {t_search:.1f} s, total {t_build + t_search:.1f} s; "
        f"{len(found)} candidate pairs; planted recall {recall / planted:.3f}; peak memory "
        f"{peak:.0f} MiB in this process, each searching process held at most {added:.1f} "
        f"MiB alone (sampled): {peak + workers * added:.0f} MiB in all at most"
    )
    print(
        f"the same search in {workers} threads (the baseline): {t_threads:.1f} s; processes "
        f"at {t_threads / t_search:.2f}x its speed"
    )


def add_edit_set_arguments(parser: argparse.ArgumentParser) -> None:
    """The real photos, the edits per photo and the processes (this and dedup_ceilings.py)."""
    parser.add_argument(
        "--real", type=Path, default=ROOT.parent / "shared/datasets/landmarks-real/raw"
    )
    parser.add_argument("--per-photo", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_edit_set_arguments(parser)
    parser.add_argument(
        "--immaculate",
        help="the `immaculate` command of an install of it (it needs Python >= 3.12), for its row",
    )
    parser.add_argument("--scale", type=int, default=100_000, help="images in the scale part")
    parser.add_argument("--skip", nargs="*", default=[], choices=["throughput", "quality", "scale"])
    args = parser.parse_args()
    files = sorted(p for p in args.real.rglob("*") if p.is_file())
    if "throughput" not in args.skip:
        bench_throughput(args.real, args.workers)
    if "quality" not in args.skip:
        bench_quality(files, args.real, args.per_photo, args.workers, args.immaculate)
    if "scale" not in args.skip:
        bench_scale(args.real, args.scale, workers=args.workers)


if __name__ == "__main__":
    main()
