"""Dedup benchmark on the real photos: hashing throughput, duplicate-finding quality per
transform, and search over 100,000 images' hashes, each next to its baseline measured in the
same run.

    .venv/bin/python benchmarks/dedup.py [--real ../shared/datasets/landmarks-real/raw]

Baselines: naive ``imagehash.phash(Image.open(p))`` with an all-pairs search at distance 10,
and imagededup's ``PHash().find_duplicates`` (its default threshold, 10) - installed by the
``bench`` extra. imagededup's package ``__init__`` pulls in torch for its CNN method; only its
hashing module is loaded here, so torch is not needed.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
import types
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from landmarks import dedup  # noqa: E402
from landmarks.dedup import hamming, hashing  # noqa: E402
from landmarks.dedup import stage as dedup_stage  # noqa: E402

TRANSFORMS = ("resize50", "jpeg_q30", "crop80", "rot90", "hflip", "bright20", "watermark")

# Pairs of *originals* in the real set that are copies of each other, found by hashing and
# reviewed by eye (two with a stock-photo bar added, one with birds painted in, two colour
# versions of one drawing). A match between their variants is a true match.
KNOWN_DUPLICATES = [
    ("chichen_itza/at_749153a4d6e1.jpg", "chichen_itza/ho_train_Chichen_Itza_10.jpg"),
    ("eiffel_tower/hi_testing_image622.jpg", "eiffel_tower/ht_000235.jpg"),
    ("eiffel_tower/hi_testing_image696.jpg", "eiffel_tower/ht_000208.jpg"),
    ("eiffel_tower/hi_training_image368.jpg", "eiffel_tower/ht_000432.jpg"),
    (
        "great_wall_of_china/ho_train_The_Great_Wall_Of_China_2.jpg",
        "great_wall_of_china/ho_train_The_Great_Wall_Of_China_28.jpg",
    ),
    ("machu_picchu/at_43301ec050cf.jpg", "machu_picchu/at_b3fb3e823b5c.jpg"),
    ("petra/ho_train_Petra_24.jpg", "petra/ho_train_Petra_25.jpg"),
    ("pyramids_of_giza/at_291631bf655b.jpg", "pyramids_of_giza/at_7a8b791497a5.jpg"),
    ("statue_of_liberty/ht_000007.jpg", "statue_of_liberty/ht_000011.jpg"),
    ("taj_mahal/at_12f0acb368b4.jpg", "taj_mahal/at_d44ae2960527.jpg"),
    ("taj_mahal/at_31bd7e87a0b1.jpg", "taj_mahal/at_816ffb2dedde.jpg"),
    ("taj_mahal/ho_train_Taj_Mahal_1.png", "taj_mahal/ho_train_Taj_Mahal_3.png"),
    ("chichen_itza/at_7e2c33bedfcf.webp", "chichen_itza/at_ba297682bd6f.jpg"),
    ("chichen_itza/at_86f85196c8f8.webp", "chichen_itza/at_9f54cee719b7.jpg"),
    (
        "christ_the_redeemer/ho_train_Christ_The_Redeemer_Statue_36.jpg",
        "christ_the_redeemer/ho_train_Christ_The_Redeemer_Statue_37.jpg",
    ),
    ("colosseum/at_95c9bb68ab9a.jpg", "colosseum/at_a586b5644cc0.webp"),
    ("machu_picchu/at_6a260975c7ca.jpg", "machu_picchu/at_95a846733770.webp"),
    # found by the local-feature route (crops, mirrors, colour grading), reviewed by eye
    ("taj_mahal/hi_training_image129.jpg", "taj_mahal/hi_training_image310.jpg"),
    ("taj_mahal/hi_training_image310.jpg", "taj_mahal/hi_testing_image690.jpg"),
    ("chichen_itza/at_0d4b9ea6bea7.jpg", "chichen_itza/ho_test_Chichen_Itza1_6.jpg"),
    ("statue_of_liberty/ht_000062.jpg", "statue_of_liberty/ht_000148.jpg"),
    ("statue_of_liberty/ht_000006.jpg", "statue_of_liberty/ht_000279.jpg"),
    ("taj_mahal/ho_train_Taj_Mahal_18.jpg", "taj_mahal/ho_train_Taj_Mahal_19.jpg"),
    (
        "great_wall_of_china/ho_train_The_Great_Wall_Of_China_19.jpg",
        "great_wall_of_china/ho_train_The_Great_Wall_Of_China_20.jpg",
    ),
    ("machu_picchu/at_75c092935855.webp", "machu_picchu/at_f13ce6ac5c97.jpg"),
    ("machu_picchu/at_704a12b728a4.webp", "machu_picchu/at_8968b84eb0a1.webp"),
    ("machu_picchu/ho_train_Machu_Picchu_9.jpg", "machu_picchu/ho_train_Machu_Picchu_10.jpg"),
    (
        "christ_the_redeemer/ho_train_Christ_The_Redeemer_Statue_40.jpg",
        "christ_the_redeemer/ho_train_Christ_The_Redeemer_Statue_41.jpg",
    ),
    (
        "christ_the_redeemer/ho_train_Christ_The_Redeemer_Statue_24.jpg",
        "christ_the_redeemer/ho_train_Christ_The_Redeemer_Statue_48.jpg",
    ),
    ("eiffel_tower/hi_training_image49.jpg", "eiffel_tower/ht_000159.jpg"),
    ("petra/ho_train_Petra_5.jpg", "petra/ho_train_Petra_7.jpg"),
    # a watercolour filter over the same photo
    ("taj_mahal/ho_train_Taj_Mahal_42.jpg", "taj_mahal/ho_train_Taj_Mahal_44.jpg"),
    # two crops of one photo each (same clouds, people and trees), found by the wider
    # local-feature candidates
    ("statue_of_liberty/ht_000019.jpg", "statue_of_liberty/ht_000065.jpg"),
    ("taj_mahal/hi_testing_image690.jpg", "taj_mahal/hi_training_image129.jpg"),
]


def load_imagededup_phash() -> type | None:
    try:
        import imagededup
    except ImportError:
        return None
    for sub in ("methods", "utils"):  # skip the package __init__s that import torch
        pkg = types.ModuleType(f"imagededup.{sub}")
        pkg.__path__ = [os.path.join(imagededup.__path__[0], sub)]
        sys.modules.setdefault(f"imagededup.{sub}", pkg)
    from imagededup.methods.hashing import PHash

    return PHash


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def _naive(path: Path) -> str:
    return str(imagehash.phash(Image.open(path)))


def _ours(path: Path) -> hashing.ImageHashes:
    return hashing.hash_path(path)


def bench_throughput(files: list[Path]) -> None:
    from concurrent.futures import ProcessPoolExecutor

    print(f"\n== hashing throughput, {len(files)} real photos (all formats), best of 2 ==")
    # Interleaved and best-of-two: the machine is shared, and a busy neighbour should not
    # decide which method wins.
    t_naive = t_one = t_two = float("inf")
    with ProcessPoolExecutor(2) as pool:
        list(pool.map(_ours, files[:16]))  # start the workers outside the clock
        for _ in range(2):
            t_naive = min(t_naive, timed(lambda: [_naive(p) for p in files])[0])
            t_one = min(t_one, timed(lambda: [_ours(p) for p in files])[0])
            t_two = min(t_two, timed(lambda: list(pool.map(_ours, files, chunksize=32)))[0])
    n = len(files)
    print(f"{'method':58s} {'img/s':>8s} {'vs naive':>9s}")
    print(f"{'naive imagehash.phash(Image.open(p)), 1 process':58s} {n / t_naive:8.0f} {1:9.2f}x")
    for label, t in [
        ("ours: draft/reduce + 8 dihedral + 2 crop pHashes, 1 process", t_one),
        ("ours: same, 2 processes", t_two),
    ]:
        print(f"{label:58s} {n / t:8.0f} {t_naive / t:9.2f}x")


def make_variants(files: list[Path], out_dir: Path) -> list[tuple[Path, int, str]]:
    """Write the 7 variants of every original; returns (path, original index, transform)."""
    out = []
    for i, path in enumerate(files):
        with Image.open(path) as src:
            im = ImageOps.exif_transpose(src).convert("RGB")
        w, h = im.size
        cw, ch = round(w * 0.8), round(h * 0.8)
        left, top = (w - cw) // 2, (h - ch) // 2
        marked = im.copy()
        ImageDraw.Draw(marked).text(
            (w * 0.1, h * 0.45), "(c) stockphotos.example", fill="white", font_size=max(12, w // 16)
        )
        variants = {
            "resize50": (im.resize((max(1, w // 2), max(1, h // 2)), Image.Resampling.BICUBIC), 90),
            "jpeg_q30": (im, 30),
            "crop80": (im.crop((left, top, left + cw, top + ch)), 90),
            "rot90": (im.rotate(90, expand=True), 90),
            "hflip": (ImageOps.mirror(im), 90),
            "bright20": (ImageEnhance.Brightness(im).enhance(1.2), 90),
            "watermark": (marked, 90),
        }
        for name, (variant, quality) in variants.items():
            dest = out_dir / f"{i:04d}_{name}.jpg"
            buf = io.BytesIO()
            variant.save(buf, format="JPEG", quality=quality)
            dest.write_bytes(buf.getvalue())
            out.append((dest, i, name))
    return out


def _group_pairs(n: int, pairs: set[tuple[int, int]]) -> set[tuple[int, int]]:
    """All pairs inside the connected components: what a dedup that keeps one per group acts on."""
    g = dedup.UnionFind(n)
    for a, b in pairs:
        g.union(a, b)
    members: dict[int, list[int]] = {}
    for i in range(n):
        members.setdefault(g.find(i), []).append(i)
    out = set()
    for m in members.values():
        for x in range(len(m)):
            for y in range(x + 1, len(m)):
                out.add((m[x], m[y]))
    return out


def score(
    pairs: set[tuple[int, int]], source: list[int], kind: list[str], same_original: Callable
) -> dict[str, tuple[float, float, int]]:
    """Per transform: (recall of variant-original pairs, precision of pairs with a variant)."""
    originals = {s: i for i, (s, k) in enumerate(zip(source, kind, strict=True)) if k == "orig"}
    found = {(min(a, b), max(a, b)) for a, b in pairs}
    out = {}
    for t in TRANSFORMS:
        idx = [i for i, k in enumerate(kind) if k == t]
        hits = sum(
            1 for i in idx if (min(i, originals[source[i]]), max(i, originals[source[i]])) in found
        )
        involved = [(a, b) for a, b in found if kind[a] == t or kind[b] == t]
        good = sum(1 for a, b in involved if same_original(source[a], source[b]))
        precision = good / len(involved) if involved else 1.0
        out[t] = (hits / len(idx), precision, len(involved) - good)
    return out


def bench_quality(files: list[Path], real_root: Path) -> None:
    print(f"\n== quality: {len(files)} originals + 7 variants each ==")
    rel = [p.relative_to(real_root).as_posix() for p in files]
    index = {r: i for i, r in enumerate(rel)}
    dup_of = dedup.UnionFind(len(files))
    for a, b in KNOWN_DUPLICATES:
        if a in index and b in index:
            dup_of.union(index[a], index[b])

    def same_original(a: int, b: int) -> bool:
        return dup_of.find(a) == dup_of.find(b)

    with tempfile.TemporaryDirectory(prefix="dedup-bench-") as tmp:
        t_make, variants = timed(lambda: make_variants(files, Path(tmp)))
        print(f"(variants written in {t_make:.0f} s)")
        paths = list(files) + [v[0] for v in variants]
        source = list(range(len(files))) + [v[1] for v in variants]
        kind = ["orig"] * len(files) + [v[2] for v in variants]
        n = len(paths)
        results: dict[str, dict[str, tuple[float, float, int]]] = {}
        times: dict[str, float] = {}

        # naive: imagehash.phash of the file, all pairs within 10 (no flips, no rotations)
        def naive() -> set[tuple[int, int]]:
            words = dedup.hex_to_words(_naive(p) for p in paths)[:, 0]
            found = hamming.brute_force(words, words, 10)
            return {(int(a), int(b)) for a, b in zip(found.query, found.db, strict=True) if a < b}

        times["naive phash, distance 10"], pairs = timed(naive)
        results["naive phash, distance 10"] = score(pairs, source, kind, same_original)

        phash_cls = load_imagededup_phash()
        if phash_cls is None:
            print("imagededup is not installed (pip install -e '.[bench]'): its row is missing")
        else:

            def theirs() -> set[tuple[int, int]]:
                method = phash_cls(verbose=False)
                names = {str(i): i for i in range(n)}
                encodings = {str(i): method.encode_image(image_file=p) for i, p in enumerate(paths)}
                # it cannot read AVIF: those files get no hash and take no part
                encodings = {k: v for k, v in encodings.items() if v}
                found = method.find_duplicates(encoding_map=encodings)
                return {
                    (min(names[a], names[b]), max(names[a], names[b]))
                    for a, dups in found.items()
                    for b in dups
                }

            times["imagededup PHash().find_duplicates"], pairs = timed(theirs)
            results["imagededup PHash().find_duplicates"] = score(
                pairs, source, kind, same_original
            )

        def ours(options: dedup.DedupOptions) -> set[tuple[int, int]]:
            hashes = dedup_stage.hash_files(paths, options)
            candidates = dedup_stage._candidates(hashes, options)
            confirmed, _ = dedup.confirm_pairs(candidates, paths, options)
            if options.local_features:
                feats = dedup_stage.feature_files(paths, options)
                more, _ = dedup.feature_pairs(feats, hashes, paths, confirmed, options)
                confirmed += more
            return _group_pairs(n, {(p.i, p.j) for p in confirmed})

        hashes_only = dedup.DedupOptions(local_features=False)
        for label, options in [
            ("ours, hashes only (distance 8)", replace(hashes_only, verify=False)),
            (
                "ours, hashes only, no crop hash",
                replace(hashes_only, verify=False, crop_fractions=(), square_crop=False),
            ),
            ("ours before (distance 8, ORB verify > 4)", hashes_only),
            ("ours, distance 10, ORB verify > 4", replace(hashes_only, threshold=10)),
            ("ours (default: + local features)", dedup.DedupOptions()),
        ]:
            times[label], pairs = timed(lambda o=options: ours(o))
            results[label] = score(pairs, source, kind, same_original)

    header = f"{'method (recall / precision / false pairs)':46s}" + "".join(
        f"{t:>17s}" for t in TRANSFORMS
    )
    print(header + f"{'time s':>8s}")
    for label, per in results.items():
        cells = "".join(f"{r:6.3f}/{p:5.3f}/{f:<4d}" for r, p, f in per.values())
        print(f"{label:46s}{cells}{times[label]:8.1f}")


def bench_search(num_images: int = 100_000, planted: int = 2_000) -> None:
    print(f"\n== search: {num_images} images, 8 dihedral + 2 crop hashes each ==")
    rng = np.random.default_rng(0)
    dihedral = rng.integers(0, 2**64 - 1, size=(num_images, 8, 1), dtype=np.uint64)
    # the 80% centre crop and the centre square
    crops = rng.integers(0, 2**64 - 1, size=(num_images, 2, 1), dtype=np.uint64)
    # image k is a near copy (rotated, a few bits off) of image planted + k, or its crop
    for k in range(planted):
        flips = rng.choice(64, size=int(rng.integers(0, 9)), replace=False)
        noise = np.uint64(sum(1 << int(b) for b in flips))
        target = dihedral[planted + k, int(rng.integers(0, 8)), 0] ^ noise
        if k % 4 == 0:
            crops[k, k % 8 // 4, 0] = target
        else:
            dihedral[k, 0, 0] = target
    for radius, workers in [(8, 1), (8, 2), (10, 2)]:
        t, pairs = timed(lambda r=radius, w=workers: dedup.hash_candidates(dihedral, crops, r, w))
        found = {(p.i, p.j) for p in pairs}
        recall = sum((k, planted + k) in found for k in range(planted)) / planted
        print(
            f"ours, multi-index hashing, radius {radius}, {workers} process(es): {t:6.1f} s, "
            f"{len(pairs)} pairs, planted recall {recall:.3f}"
        )
    phash_cls = load_imagededup_phash()
    if phash_cls is None:
        return
    from imagededup.handlers.search.bktree import BKTree

    hex_db = {str(i): f"{int(dihedral[i, 0, 0]):016x}" for i in range(num_images)}
    method = phash_cls(verbose=False)
    t_build, tree = timed(lambda: BKTree(hex_db, method.hamming_distance))
    queries = list(hex_db.values())[:50]
    t_q, _ = timed(lambda: [tree.search(q, 10) for q in queries])
    per_query = t_q / len(queries)
    print(
        f"imagededup BK-tree (own hash only, 1 per image): build {t_build:.1f} s, "
        f"{per_query:.2f} s per query -> {per_query * num_images / 3600:.1f} h for all "
        f"{num_images} (x10 for our 10 hashes per image)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--real", type=Path, default=ROOT.parent / "shared/datasets/landmarks-real/raw"
    )
    parser.add_argument(
        "--skip", nargs="*", default=[], choices=["throughput", "quality", "search"]
    )
    args = parser.parse_args()
    files = sorted(p for p in args.real.rglob("*") if p.is_file())
    if "throughput" not in args.skip:
        bench_throughput(files)
    if "quality" not in args.skip:
        bench_quality(files, args.real)
    if "search" not in args.skip:
        bench_search()


if __name__ == "__main__":
    main()
