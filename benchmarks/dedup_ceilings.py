"""How far the local-feature route can go on the edit set: its candidates and its verification,
each measured on its own, next to the default.

    nice .venv/bin/python benchmarks/dedup_ceilings.py [--per-photo 2]

The edit set is the one of ``benchmarks/dedup_edits.py`` (the same edits, drawn with the same
seeds). Every file's features are computed as the dedup computes them; nothing is
quarantined. Rows, recall per edit family (the share of edits whose pair with their original
is found):

- "candidates, default index": the pair is among the candidates the default index proposes
  (the baseline);
- "candidates, 30 per view, 1 vote": the index keeps up to 30 candidates per image and view,
  from a single shared key on (12x the candidates on the real photos' edits): what more
  candidates could give;
- "verified, default candidates": a default candidate that verifies (as the dedup verifies
  it, retries included);
- "verified, every true pair": every edit is verified against its original in every view and
  both ways, whether the index proposes them or not: what perfect candidates could give.

A family whose last row stays under 0.95 cannot reach 0.95 with these features and this
verification, however good the index; the hashes and the grouping (``dedup_edits.py``) add a
few pairs beyond it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import dedup_edits  # noqa: E402

from landmarks.dedup import candidates as feature_route  # noqa: E402
from landmarks.dedup import feature_index, features  # noqa: E402

WIDE = feature_index.IndexOptions(top_k=30, top_k_mirror=30, top_k_coarse=30, min_votes=1)


def _extract(path: Path) -> features.LocalFeatures | None:
    try:
        return features.extract_path(path)
    except OSError:
        return None


def _verified(
    a: int,
    b: int,
    feats: Sequence[features.LocalFeatures],
    pixels: Callable[[int], np.ndarray],
) -> bool:
    """Does ``b`` verify against ``a`` in any view (as is, mirrored, coarse), either way?"""
    if feature_route.verify_either_way(a, b, feats, pixels):
        return True
    coarse = (feature_route.FeatureCandidate(x, y, 0, False, True) for x, y in ((a, b), (b, a)))
    return any(feature_route.verify_view(c, feats, pixels).ok for c in coarse)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    dedup_edits.add_edit_set_arguments(parser)
    args = parser.parse_args()
    files = sorted(p for p in args.real.rglob("*") if p.is_file())
    with tempfile.TemporaryDirectory(prefix="dedup-ceilings-") as tmp:
        folder = Path(tmp)
        source = dedup_edits.make_edits(files, args.real, folder, args.per_photo)
        names = sorted(source)
        start = time.perf_counter()
        with ProcessPoolExecutor(args.workers) as pool:
            extracted = list(pool.map(_extract, [folder / n for n in names], chunksize=16))
        kept = [k for k, f in enumerate(extracted) if f is not None]
        names = [names[k] for k in kept]
        feats = [extracted[k] for k in kept]
        assert all(f is not None for f in feats)
        print(
            f"== {len(names)} files of the edit set ({args.per_photo} edits per photo), "
            f"features in {time.perf_counter() - start:.0f} s =="
        )
        index = {n: k for k, n in enumerate(names)}
        original = {i: n for n, i in source.items() if n.startswith("orig/")}
        truth = {
            n: index[original[i]]
            for n, i in source.items()
            if n.startswith("edit/") and n in index and original[i] in index
        }
        families = sorted({n.split("/")[1] for n in truth})
        pixels = feature_route.pixel_loader([folder / n for n in names])
        rows: dict[str, tuple[dict[str, float], str]] = {}

        def recall(hit: set[tuple[int, int]]) -> dict[str, float]:
            per: dict[str, list[bool]] = {}
            for n, o in truth.items():
                k = index[n]
                per.setdefault(n.split("/")[1], []).append((min(k, o), max(k, o)) in hit)
            return {f: float(np.mean(v)) for f, v in per.items()}

        found: dict[str, list[feature_route.FeatureCandidate]] = {}
        for label, options in (
            ("default index", feature_index.IndexOptions()),
            ("30 per view, 1 vote", WIDE),
        ):
            start = time.perf_counter()
            found[label] = feature_route.candidates(feats, options, threads=args.workers)
            seconds = time.perf_counter() - start
            pairs = {(min(c.a, c.b), max(c.a, c.b)) for c in found[label]}
            per_image = len(pairs) / len(names)
            note = f"{len(pairs)} candidates ({per_image:.1f} per image), {seconds:.1f} s"
            rows[f"candidates, {label}"] = (recall(pairs), note)
        start = time.perf_counter()
        # only the true pairs' outcomes are needed: the candidates between an edit and its
        # original are verified, as the dedup would verify them
        wanted = {(min(index[n], o), max(index[n], o)) for n, o in truth.items()}
        verified = {
            (min(c.a, c.b), max(c.a, c.b))
            for c in found["default index"]
            if (min(c.a, c.b), max(c.a, c.b)) in wanted
            and feature_route.verify_candidate(c, feats, pixels).ok
        }
        rows["verified, default candidates"] = (
            recall(verified),
            f"{len(verified)} true pairs verified, {time.perf_counter() - start:.1f} s",
        )
        start = time.perf_counter()
        every = {
            (min(index[n], o), max(index[n], o))
            for n, o in truth.items()
            if _verified(o, index[n], feats, pixels)
        }
        rows["verified, every true pair"] = (
            recall(every),
            f"{len(truth)} pairs, {time.perf_counter() - start:.1f} s",
        )
    print(f"{'':36s}" + "".join(f"{f:>9s}" for f in families))
    base = rows["candidates, default index"][0]
    for label, (per, note) in rows.items():
        print(f"{label:36s}" + "".join(f"{per.get(f, 0):9.3f}" for f in families) + f"   {note}")
    wide = rows["candidates, 30 per view, 1 vote"][0]
    print(
        "the wide index against the default, candidate recall: "
        + ", ".join(f"{f} {wide[f] / base[f]:.3f}x" for f in families if base.get(f))
    )


if __name__ == "__main__":
    main()
