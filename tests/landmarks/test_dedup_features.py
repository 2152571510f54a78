"""The local-feature route of the dedup, on real photos: copies a global hash cannot see
(off-centre crops, small rotations, text bands, mirrored crops) are found; different photos of
one landmark from the same spot are proposed but not grouped."""

import io
import shutil
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageOps

from landmarks import images
from landmarks.clean import CleanOptions, clean_raw, current_records
from landmarks.dedup import (
    DedupOptions,
    dedup_clean,
    dedup_folder,
    feature_index,
    features,
    pairs,
    verify,
)
from landmarks.dedup import candidates as dedup_features
from landmarks.ingest import import_folder
from landmarks.storage import Layout, read_json

ORIGINAL = "petra/ho_train_Petra_24.jpg"
# Different photos of one landmark from (nearly) the same spot, reviewed by eye: people at the
# statue's feet in one and not the other; another sky and light. The last two align under one
# similarity and correlate tile by tile; only their fine detail tells them apart.
SAME_SPOT = [
    (
        "christ_the_redeemer/ho_train_Christ_The_Redeemer_Statue_1.jpg",
        "christ_the_redeemer/ho_train_Christ_The_Redeemer_Statue_27.jpg",
    ),
    ("colosseum/ht_000018.jpg", "colosseum/at_3554db3c69f3.jpg"),
    ("eiffel_tower/ht_000186.jpg", "eiffel_tower/ht_000411.jpg"),
    ("eiffel_tower/ht_000139.jpg", "eiffel_tower/ht_000201.jpg"),
    ("machu_picchu/ho_train_Machu_Picchu_6.jpg", "machu_picchu/ho_train_Machu_Picchu_7.jpg"),
]


def _jpeg(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=88)
    return buf.getvalue()


def _copies(src: Path) -> dict[str, bytes]:
    im = ImageOps.exif_transpose(Image.open(src)).convert("RGB")
    w, h = im.size
    banded = im.copy()
    draw = ImageDraw.Draw(banded)
    draw.rectangle((0, round(h * 0.82), w, h), fill=(20, 20, 30))
    draw.text((w * 0.05, h * 0.86), "(c) www.photos.example", fill="white", font_size=h // 14)
    crop = im.crop((round(w * 0.45), round(h * 0.4), w, h))  # 55% x 60%, bottom right
    return {
        "offcentre": _jpeg(crop),
        "rot12": _jpeg(im.rotate(12, Image.Resampling.BICUBIC, expand=True)),
        "band": _jpeg(banded),
        "mirror_crop": _jpeg(ImageOps.mirror(im.crop((0, 0, round(w * 0.6), round(h * 0.7))))),
    }


def _tree(tmp_path: Path, real_raw: Path) -> Path:
    tree = tmp_path / "src" / "petra"
    tree.mkdir(parents=True)
    for p in sorted((real_raw / "petra").glob("*.jpg"))[:10]:  # same landmark: distractors
        shutil.copy(p, tree / p.name)
    shutil.copy(real_raw / ORIGINAL, tree / "original.jpg")
    for name, data in _copies(real_raw / ORIGINAL).items():
        (tree / f"copy_{name}.jpg").write_bytes(data)
    return tree.parent


def test_crops_rotations_and_overlays_are_found(tmp_path: Path, real_raw: Path):
    root = _tree(tmp_path, real_raw)
    found = dedup_folder(root, DedupOptions(), images.ImageLimits())
    group = [g for g in found.groups if "petra/original.jpg" in _members(g)]
    assert len(group) == 1
    members = _members(group[0])
    for name in ("offcentre", "rot12", "band", "mirror_crop"):
        assert f"petra/copy_{name}.jpg" in members
    assert "features" in {d["match"] for d in group[0]["duplicates"]}
    # nothing else from the same landmark joins the group (Petra_25 is a known copy of 24)
    assert {m for m in members if "copy_" not in m} <= {"petra/original.jpg"} | {
        f"petra/{p.name}" for p in (real_raw / "petra").glob("ho_train_Petra_2[45].jpg")
    }
    # the global hashes alone miss the off-centre crop: this is the features' doing
    before = dedup_folder(root, DedupOptions(local_features=False), images.ImageLimits())
    assert not any(
        "petra/copy_offcentre.jpg" in _members(g) and "petra/original.jpg" in _members(g)
        for g in before.groups
    )


def test_a_copy_under_a_band_and_a_logo_is_found(tmp_path: Path, real_raw: Path):
    """A dark text band and a logo over a fifth of the frame spoil over 30% of the tiles, so
    fewer than ``MIN_TILE_SHARE`` correlate at 0.7; the rest are the same pixels (>= 0.95)."""
    im = ImageOps.exif_transpose(Image.open(real_raw / ORIGINAL)).convert("RGB")
    w, h = im.size
    stamped = im.copy()
    draw = ImageDraw.Draw(stamped)
    draw.rectangle((0, round(h * 0.86), w, h), fill=(20, 20, 30))
    draw.text((w * 0.05, h * 0.88), "(c) STOCK PHOTO", fill="white", font_size=h // 16)
    draw.rectangle((round(w * 0.62), round(h * 0.05), round(w * 0.95), round(h * 0.3)), fill="red")
    tree = tmp_path / "src" / "petra"
    tree.mkdir(parents=True)
    for p in sorted((real_raw / "petra").glob("*.jpg"))[:10]:
        shutil.copy(p, tree / p.name)
    shutil.copy(real_raw / ORIGINAL, tree / "original.jpg")
    (tree / "copy_stamped.jpg").write_bytes(_jpeg(stamped))

    a = features.open_normalised_grey(tree / "original.jpg")
    b = features.open_normalised_grey(tree / "copy_stamped.jpg")
    scores = verify.tile_scores(a, b, np.array([[1.0, 0, 0], [0, 1.0, 0]]))
    assert (scores >= 0.7).mean() < verify.MIN_TILE_SHARE  # the share rule alone says no
    assert (scores >= 0.95).mean() >= verify.MIN_EXACT_TILE_SHARE

    found = dedup_folder(tree.parent, DedupOptions(), images.ImageLimits())
    group = [g for g in found.groups if "petra/original.jpg" in _members(g)]
    assert len(group) == 1
    assert "petra/copy_stamped.jpg" in _members(group[0])


def _members(group: dict) -> set[str]:
    return {group["keeper"], *(d["path"] for d in group["duplicates"])}


def test_same_spot_photos_are_proposed_but_not_grouped(tmp_path: Path, real_raw: Path):
    tree = tmp_path / "src"
    paths = []
    for a, b in SAME_SPOT:
        for rel in (a, b):
            dest = tree / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(real_raw / rel, dest)
            paths.append(dest)
    feats = [features.extract_path(p) for p in paths]
    candidates = {
        (min(c.a, c.b), max(c.a, c.b))
        for c in dedup_features.candidates(feats, feature_index.IndexOptions())
    }
    proposed = [(2 * k, 2 * k + 1) in candidates for k in range(len(SAME_SPOT))]
    assert sum(proposed) >= 2  # the index does propose them: verification must say no
    found = dedup_folder(tree, DedupOptions(), images.ImageLimits())
    assert found.groups == []


# Harder ones: frames of one drone video, and a photo taken a moment after another; their fine
# detail, aligned as finely as ECC can, correlates at 0.91-0.93 (copies: 0.97 and more).
SAME_SPOT_HARD = [
    ("niagara_falls/ht_000194.jpg", "niagara_falls/ht_000411.jpg"),
    (
        "christ_the_redeemer/ho_train_Christ_The_Redeemer_Statue_1.jpg",
        "christ_the_redeemer/ho_train_Christ_The_Redeemer_Statue_32.jpg",
    ),
]


def test_a_copy_fit_a_pixel_off_shows_its_fine_detail_once_aligned_finely(real_raw: Path):
    a = features.open_normalised_grey(real_raw / ORIGINAL)
    h, w = a.shape
    off = cv2.getRotationMatrix2D((w / 2, h / 2), 0.3, 1.0)  # 0.3 degrees and 1.5 px off
    off[:, 2] += (1.5, 0.75)
    b = cv2.warpAffine(a, off, (w, h))
    inside = cv2.warpAffine(np.full_like(a, 255), off, (w, h), flags=cv2.INTER_NEAREST)
    mask = cv2.erode(inside, np.ones((5, 5), np.uint8)) > 0
    assert np.median(verify._detail_scores(a, b, mask)) < verify.MIN_DETAIL_CORRELATION
    assert verify.aligned_detail(a, b, mask) >= verify.MIN_ALIGNED_DETAIL


def test_same_spot_photos_do_not_pass_when_aligned_finely(real_raw: Path):
    """Verified both ways, none passes; the fine alignment is what several are refused on."""
    aligned = 0
    for a, b in SAME_SPOT + SAME_SPOT_HARD:
        paths = [real_raw / a, real_raw / b]
        feats = [features.extract_path(p) for p in paths]
        pixels = dedup_features.pixel_loader(paths)
        for x, y in ((0, 1), (1, 0)):
            found = dedup_features.verify_candidate(
                dedup_features.FeatureCandidate(x, y, 0, False), feats, pixels
            )
            assert not found.ok, (a, b, found)
            aligned += "aligned finely" in found.why
    assert aligned >= 6


def test_features_are_cached_and_only_new_images_are_described(tmp_path: Path, real_raw: Path):
    root = _tree(tmp_path, real_raw)
    extra = root / "petra" / "copy_band.jpg"
    held = tmp_path / "held.jpg"
    shutil.move(extra, held)
    layout = Layout(tmp_path / "storage")
    import_folder(root, layout)
    clean_raw(layout, CleanOptions())
    steps: dict[str, list[tuple[int, int]]] = {}
    first = dedup_clean(
        layout,
        current_records(layout.clean_manifest, CleanOptions().digest()),
        DedupOptions(),
        steps=lambda step, done, total: steps.setdefault(step, []).append((done, total)),
    )
    # the search (in images) and the verification (in candidate pairs) report their progress,
    # step by step, to the end
    assert set(steps) == {"search", "verify"}
    assert steps["search"][-1] == (first.num_images, first.num_images)
    for reports in steps.values():
        assert reports[-1][0] == reports[-1][1] >= 1
        assert [d for d, _ in reports] == sorted(d for d, _ in reports)
        assert len({t for _, t in reports}) == 1
    cache_files = sorted((layout.dedup_dir / "features").rglob("*.npz"))
    assert len(cache_files) == first.num_images
    stamps = {p: p.stat().st_mtime_ns for p in cache_files}
    shutil.move(held, extra)
    import_folder(root, layout)
    clean_raw(layout, CleanOptions())
    second = dedup_clean(
        layout, current_records(layout.clean_manifest, CleanOptions().digest()), DedupOptions()
    )
    after = sorted((layout.dedup_dir / "features").rglob("*.npz"))
    assert len(after) == len(cache_files) + 1 and second.num_images == first.num_images + 1
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())
    report = read_json(layout.dedup_report)
    assert report["num_feature_pairs"] >= 1
    group = next(
        g
        for g in report["groups"]
        if any("copy_band" in d["raw_path"] for d in g["duplicates"])
        or "copy_band" in g["raw_path"]
    )
    assert len(group["duplicates"]) >= 4
    assert second.html_path is not None
    assert "features d=" in second.html_path.read_text()  # the page says how each matched


def test_cached_features_round_trip(real_raw: Path):
    f = features.extract_path(real_raw / ORIGINAL)
    g = features.LocalFeatures.from_bytes(f.to_bytes())
    assert g.size == f.size and len(f.descriptors) > 100
    assert np.array_equal(g.descriptors, f.descriptors)
    assert np.array_equal(g.mirror_points, f.mirror_points)


def test_a_damaged_cache_file_is_described_again(tmp_path: Path, real_raw: Path):
    cache = dedup_features.FeatureCache(tmp_path, features.NUM_FEATURES)
    f = features.extract_path(real_raw / ORIGINAL)
    cache.put("ab" * 32, f)
    assert np.array_equal(cache.get("ab" * 32).descriptors, f.descriptors)
    path = next(tmp_path.rglob("*.npz"))
    path.write_bytes(path.read_bytes()[:100])  # a crash mid-write elsewhere, a bad disk
    assert cache.get("ab" * 32) is None


def test_two_groups_join_only_when_their_most_detailed_pictures_agree(
    tmp_path: Path, real_raw: Path
):
    """A link between small, degraded copies of two photos of a statue from the same spot
    does not join their groups (their originals disagree); one between copies of one photo
    does."""
    one, other = (real_raw / p for p in SAME_SPOT[0])
    files = {}
    for name, src in (("one", one), ("other", other)):
        im = ImageOps.exif_transpose(Image.open(src)).convert("RGB")
        w, h = im.size
        crop = im.crop((round(w * 0.1), round(h * 0.05), round(w * 0.85), round(h * 0.9)))
        files[name] = im
        files[f"{name}_small"] = im.resize((w // 3, h // 3), Image.Resampling.BILINEAR)
        files[f"{name}_crop"] = crop
        files[f"{name}_crop_small"] = crop.resize((w // 4, h // 4), Image.Resampling.BILINEAR)
    paths = []
    for name, im in files.items():
        paths.append(tmp_path / f"{name}.jpg")
        paths[-1].write_bytes(_jpeg(im))
    index = {p.stem: k for k, p in enumerate(paths)}
    feats = [features.extract_path(p) for p in paths]
    pixels = dedup_features.pixel_loader(paths)

    def grouped(first: list[str], second: list[str]) -> pairs.UnionFind:
        groups = pairs.UnionFind(len(paths), rank=[f.source_side for f in feats])
        for members in (first, second):
            for name in members[1:]:
                groups.union(index[members[0]], index[name])
        return groups

    groups = grouped(["one", "one_small"], ["other", "other_small"])
    assert groups.best(groups.find(index["one_small"])) == index["one"]
    link = dedup_features.FeatureCandidate(
        index["one_small"], index["other_small"], 20, False, coarse=True
    )
    assert not pairs.groups_agree(groups, link, feats, pixels)
    groups = grouped(["one", "one_small"], ["one_crop", "one_crop_small"])
    link = dedup_features.FeatureCandidate(
        index["one_small"], index["one_crop_small"], 20, False, coarse=True
    )
    assert pairs.groups_agree(groups, link, feats, pixels)
    # a single image joins any group on its own verification
    groups = grouped(["one", "one_small"], ["other"])
    link = dedup_features.FeatureCandidate(index["one_small"], index["other"], 20, False)
    assert pairs.groups_agree(groups, link, feats, pixels)
