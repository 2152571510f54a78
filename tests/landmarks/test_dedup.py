"""Dedup on real photos and copies made from them (resized, re-encoded, flipped, rotated)."""

import io
import json
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageOps
from typer.testing import CliRunner

from landmarks import images
from landmarks.clean import CleanOptions, clean_raw, current_records
from landmarks.dedup import (
    DedupOptions,
    dedup_clean,
    dedup_folder,
    dihedral_phashes,
    hamming,
    hashing,
    hex_to_words,
    near_pairs,
    verify,
)
from landmarks.ingest import import_folder
from landmarks.storage import Layout, read_json, read_jsonl

# Two different photos of the Chichen Itza pyramid from nearly the same spot: their pHashes
# are only 8 bits apart, yet they are not copies of each other.
LOOKALIKES = ("chichen_itza/at_2f7e08bd8edd.jpg", "chichen_itza/at_d2ac34f5ac6c.webp")


def _variants(src: Path) -> dict[str, bytes]:
    im = Image.open(src).convert("RGB")
    w, h = im.size
    crop = im.crop((w // 10, h // 10, w - w // 10, h - h // 10))
    marked = im.copy()
    ImageDraw.Draw(marked).text((w * 0.1, h * 0.45), "(c) stock", fill="white", font_size=w // 12)
    out = {}
    for name, variant, quality in [
        ("half", im.resize((im.width // 2, im.height // 2)), 90),
        ("q30", im, 30),
        ("flip", ImageOps.mirror(im), 90),
        ("rot90", im.rotate(90, expand=True), 90),
        ("crop80", crop, 90),
        ("bright", ImageEnhance.Brightness(im).enhance(1.2), 90),
        ("mark", marked, 90),
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
    # Each of the 3 originals forms one group with its 7 copies; nothing else is merged.
    assert result.num_groups >= 3
    assert result.num_kept == result.num_images - result.num_duplicates
    for p in originals[:3]:
        groups = [
            g
            for g in report["groups"]
            if p.stem in g["keeper"] or any(p.stem in d["raw_path"] for d in g["duplicates"])
        ]
        assert len(groups) == 1
        members = {Path(d["raw_path"]).stem for d in groups[0]["duplicates"]}
        assert sum(1 for m in members if m.startswith(p.stem)) >= 6
        matches = {d["match"] for d in groups[0]["duplicates"]}
        assert matches <= {"exact", "hash", "verified", "linked"}
    # The keeper is a full-resolution member (the original or its same-size rotation/flip),
    # never the half-size copy.
    kept_raw = {Path(r["raw_path"]).stem for r in kept}
    for p in originals[:3]:
        assert f"{p.stem}_half" not in kept_raw
        assert any(k.startswith(p.stem) for k in kept_raw)


def test_a_centre_square_at_a_training_size_matches_by_hash(tmp_path: Path, real_raw: Path):
    """The square training copy of a wide photo: its own hash is close to its original's
    centre-square hash (the last crop hash), so the hashes alone group them."""
    wide = [p for p in sorted((real_raw / "niagara_falls").glob("*.jpg")) if _aspect(p) > 1.6]
    tree = tmp_path / "src" / "niagara_falls"
    tree.mkdir(parents=True)
    for p in wide[:8]:
        (tree / p.name).write_bytes(p.read_bytes())
    im = Image.open(wide[0]).convert("RGB")
    w, h = im.size
    square = im.crop(((w - h) // 2, 0, (w - h) // 2 + h, h)).resize((224, 224), Image.BICUBIC)
    square.save(tree / "square_224.jpg", quality=90)
    original = hashing.hash_path(wide[0])
    copy = hashing.hash_path(tree / "square_224.jpg")
    assert len(original.crops) == len(hashing.DEFAULT_CROPS) + 1
    near = int(np.bitwise_count(original.crops[-1] ^ copy.dihedral[0]).sum())
    whole = int(np.bitwise_count(original.dihedral[0] ^ copy.dihedral[0]).sum())
    assert near <= 4 < 10 < whole
    found = dedup_folder(tmp_path / "src", DedupOptions(local_features=False), images.ImageLimits())
    grouped = [g for g in found.groups if f"niagara_falls/{wide[0].name}" in _members(g)]
    assert len(grouped) == 1
    assert "niagara_falls/square_224.jpg" in _members(grouped[0])


def _aspect(path: Path) -> float:
    with Image.open(path) as im:
        return im.width / im.height


def _members(group: dict) -> set[str]:
    return {group["keeper"], *(d["path"] for d in group["duplicates"])}


def test_same_photo_under_two_classes_is_a_label_conflict(tmp_path: Path, real_raw: Path):
    tree = tmp_path / "src"
    photo = sorted((real_raw / "taj_mahal").glob("*.jpg"))[0]
    others = sorted((real_raw / "colosseum").glob("*.jpg"))[10:13]
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


def test_phash_variants_equal_imagehash(real_raw: Path):
    for path in sorted((real_raw / "niagara_falls").glob("*.jpg"))[:5]:
        grey = Image.open(path).convert("L").resize((32, 32), Image.Resampling.LANCZOS)
        arr = np.asarray(grey)
        expected = [
            str(imagehash.phash(Image.fromarray(np.ascontiguousarray(np.rot90(b, k)))))
            for b in (arr, np.fliplr(arr))
            for k in range(4)
        ]
        assert dihedral_phashes(grey) == expected


def test_fast_hash_is_close_to_naive_phash(real_raw: Path):
    for path in sorted((real_raw / "petra").glob("*.jpg"))[:10]:
        fast = hashing.hash_path(path).dihedral[0, 0]
        naive = int(str(imagehash.phash(Image.open(path))), 16)
        assert bin(int(fast) ^ naive).count("1") <= 6


def _match_set(m: hamming.Matches) -> set[tuple[int, int, int]]:
    return set(zip(m.query.tolist(), m.db.tolist(), m.distance.tolist(), strict=True))


def test_radius_search_matches_brute_force():
    rng = np.random.default_rng(1)
    db = rng.integers(0, 2**63, size=30_000, dtype=np.uint64) << np.uint64(1)
    queries = rng.integers(0, 2**63, size=3_000, dtype=np.uint64) << np.uint64(1)
    # plant near duplicates at every distance up to the radius and just past it
    for k in range(12):
        flips = rng.choice(64, size=k, replace=False)
        queries[k] = db[100 + k] ^ np.uint64(sum(1 << int(b) for b in flips))
    for radius in (6, 10):
        fast = hamming.radius_search(queries, db, radius)
        slow = hamming.brute_force(queries, db, radius)
        found = _match_set(fast)
        assert found == _match_set(slow)
        assert {(k, 100 + k) for k in range(radius + 1)} <= {(q, d) for q, d, _ in found}


def test_verification_tells_a_copy_from_a_second_photo(tmp_path: Path, real_raw: Path):
    a, b = (real_raw / p for p in LOOKALIKES)
    assert not verify.verify_files(a, b, 0).ok
    im = Image.open(a).convert("RGB")
    w, h = im.size
    copy = tmp_path / "copy.jpg"
    im.crop((w // 8, 0, w, h - h // 8)).resize((w // 2, h // 2)).save(copy, quality=40)
    assert verify.verify_files(a, copy, 0).ok


def test_lookalikes_are_not_grouped_but_their_copies_are(tmp_path: Path, real_raw: Path):
    tree = tmp_path / "src" / "chichen_itza"
    tree.mkdir(parents=True)
    for rel in LOOKALIKES:
        (tree / Path(rel).name).write_bytes((real_raw / rel).read_bytes())
    (tree / "copy.jpg").write_bytes(_variants(real_raw / LOOKALIKES[0])["mark"])
    layout, result = _run(tmp_path, tmp_path / "src")
    report = read_json(layout.dedup_report)
    assert result.num_groups == 1 and result.num_duplicates == 1
    group = report["groups"][0]
    names = {Path(group["raw_path"]).name} | {Path(d["raw_path"]).name for d in group["duplicates"]}
    assert names == {Path(LOOKALIKES[0]).name, "copy.jpg"}
    # Without verification, the hash alone merges the two different photos.
    _, unverified = _run(tmp_path / "nv", tmp_path / "src", DedupOptions(verify=False))
    assert unverified.num_duplicates == 2
    html = result.html_path.read_text()
    assert html.count("<img") == 2 and "d=" in html


def test_folder_command_on_any_tree(tmp_path: Path, real_raw: Path):
    tree = tmp_path / "photos"
    (tree / "trip" / "day1").mkdir(parents=True)
    originals = sorted((real_raw / "eiffel_tower").glob("*.jpg"))[:6]
    for p in originals:
        (tree / "trip" / "day1" / p.name).write_bytes(p.read_bytes())
    variants = _variants(originals[0])
    (tree / "trip" / "crop.jpg").write_bytes(variants["crop80"])
    (tree / "rot.jpg").write_bytes(variants["rot90"])
    (tree / "broken.jpg").write_bytes(originals[1].read_bytes()[:2000])
    (tree / "notes.txt").write_text("not a picture")
    out = tmp_path / "out.json"
    from flows.cli import app

    run = CliRunner().invoke(app, ["dedup", str(tree), "--json", str(out)])
    assert run.exit_code == 0, run.output
    assert "1 groups" in run.output and "report: file://" in run.output
    data = json.loads(out.read_text())
    assert data["groups"] == [
        {"keeper": f"trip/day1/{originals[0].name}", "duplicates": ["rot.jpg", "trip/crop.jpg"]}
    ]
    assert sorted((q["path"], q["reason"]) for q in data["quarantined"]) == [
        ("broken.jpg", images.TRUNCATED),
        ("notes.txt", images.NOT_AN_IMAGE),
    ]
    assert out.with_suffix(".html").is_file()
    # The core call gives the same answer (two processes).
    again = dedup_folder(tree, DedupOptions(num_workers=2), images.ImageLimits())
    assert again.to_json()["groups"] == data["groups"]
