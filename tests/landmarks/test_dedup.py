"""Dedup on real photos and copies made from them (resized, re-encoded, flipped, rotated)."""

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from landmarks.clean import CleanOptions, clean_raw, current_records
from landmarks.dedup import DedupOptions, dedup_clean, hex_to_words, near_pairs
from landmarks.ingest import import_folder
from landmarks.storage import Layout, read_json, read_jsonl


def _variants(src: Path) -> dict[str, bytes]:
    im = Image.open(src).convert("RGB")
    out = {}
    for name, variant, quality in [
        ("half", im.resize((im.width // 2, im.height // 2)), 90),
        ("q30", im, 30),
        ("flip", ImageOps.mirror(im), 90),
        ("rot90", im.rotate(90, expand=True), 90),
    ]:
        buf = io.BytesIO()
        variant.save(buf, format="JPEG", quality=quality)
        out[name] = buf.getvalue()
    return out


def _run(tmp_path: Path, tree: Path, options: DedupOptions | None = None):
    layout = Layout(tmp_path / "storage")
    import_folder(tree, layout)
    clean_raw(layout, CleanOptions())
    records = current_records(layout.clean_manifest, CleanOptions().digest())
    return layout, dedup_clean(layout, records, options or DedupOptions())


def test_copies_are_grouped_with_their_original(tmp_path: Path, real_raw: Path):
    tree = tmp_path / "src"
    originals = sorted((real_raw / "petra").glob("*.jpg"))[:12]
    (tree / "petra").mkdir(parents=True)
    for p in originals:
        (tree / "petra" / p.name).write_bytes(p.read_bytes())
    for p in originals[:3]:
        for name, data in _variants(p).items():
            (tree / "petra" / f"{p.stem}_{name}.jpg").write_bytes(data)
    layout, result = _run(tmp_path, tree)
    report = read_json(layout.dedup_report)
    kept = read_jsonl(result.kept_path)
    # Each of the 3 originals forms one group with its 4 copies; nothing else is merged.
    assert result.num_groups >= 3
    assert result.num_kept == result.num_images - result.num_duplicates
    for p in originals[:3]:
        groups = [g for g in report["groups"]
                  if p.stem in g["keeper"] or any(p.stem in d["raw_path"] for d in g["duplicates"])]
        assert len(groups) == 1
        members = {Path(d["raw_path"]).stem for d in groups[0]["duplicates"]}
        assert sum(1 for m in members if m.startswith(p.stem)) >= 4
    # The keeper is a full-resolution member (the original or its same-size rotation/flip),
    # never the half-size copy.
    kept_raw = {Path(r["raw_path"]).stem for r in kept}
    for p in originals[:3]:
        assert f"{p.stem}_half" not in kept_raw
        assert any(k.startswith(p.stem) for k in kept_raw)


def test_same_photo_under_two_classes_is_a_label_conflict(tmp_path: Path, real_raw: Path):
    tree = tmp_path / "src"
    photo = sorted((real_raw / "taj_mahal").glob("*.jpg"))[0]
    others = sorted((real_raw / "colosseum").glob("*.jpg"))[:3]
    for cls, files in {"taj_mahal": [photo], "colosseum": [*others, photo]}.items():
        (tree / cls).mkdir(parents=True)
        for f in files:
            (tree / cls / f.name).write_bytes(f.read_bytes())
    layout, result = _run(tmp_path, tree)
    assert result.num_conflicts == 1
    kept = {Path(r["raw_path"]).name for r in read_jsonl(result.kept_path)}
    assert photo.name not in kept and len(kept) == 3
    conflict = read_json(layout.dedup_report)["label_conflicts"][0]
    assert conflict["classes"] == ["colosseum", "taj_mahal"]


def test_unchanged_input_reuses_the_report(tmp_path: Path, small_subset: Path):
    layout, first = _run(tmp_path, small_subset)
    records = current_records(layout.clean_manifest, CleanOptions().digest())
    second = dedup_clean(layout, records, DedupOptions())
    assert not first.reused and second.reused
    assert second.num_kept == first.num_kept


def test_near_pairs_is_vectorised_and_matches_brute_force():
    rng = np.random.default_rng(0)
    words = rng.integers(0, 2**63, size=(300, 8, 1), dtype=np.uint64)
    words[7, 0, 0] = words[3, 2, 0] ^ np.uint64(0b101)  # 7 is a rotated copy of 3
    base, variants = words[:, 0, :], words
    pairs = {(i, j): d for i, j, d in near_pairs(base, variants, threshold=4, chunk=64)}
    assert pairs.get((3, 7)) == 2
    brute = {}
    for i in range(300):
        for j in range(300):
            if i != j:
                d = min(bin(int(base[i, 0] ^ variants[j, v, 0])).count("1") for v in range(8))
                if d <= 4:
                    key = (min(i, j), max(i, j))
                    brute[key] = min(brute.get(key, 99), d)
    assert pairs == brute


def test_hex_to_words_handles_long_hashes():
    assert hex_to_words(["f" * 64]).shape == (1, 4)
