"""The clean stage on real photos, plus generated files for cases no real file shows."""

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from landmarks import images
from landmarks.clean import CleanOptions, clean_raw, current_records
from landmarks.ingest import import_folder
from landmarks.storage import Layout, read_jsonl


def _photo(real_raw: Path) -> Image.Image:
    return Image.open(sorted((real_raw / "colosseum").glob("*.jpg"))[0]).convert("RGB")


def _bad_files(folder: Path, real_raw: Path) -> dict[str, str]:
    """name -> expected outcome ('ok' or a reason code)."""
    folder.mkdir(parents=True)
    photo = _photo(real_raw)
    src = sorted((real_raw / "colosseum").glob("*.jpg"))[0].read_bytes()
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "page.jpg").write_bytes(b"<!doctype html><html><body>Not found</body></html>")
    (folder / "truncated.jpg").write_bytes(src[: len(src) // 3])
    photo.resize((40, 30)).save(folder / "tiny.png")
    Image.new("RGB", (600, 80), (10, 20, 30)).save(folder / "strip.png")
    Image.new("RGB", (300, 300), (128, 128, 128)).save(folder / "blank.jpg")
    # A decompression bomb: 20000 x 20000 of one colour compresses to a small PNG.
    Image.new("1", (20000, 20000)).save(folder / "bomb.png")
    arr16 = (np.asarray(photo.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    Image.fromarray(arr16).save(folder / "sixteen.png")
    photo.convert("CMYK").save(folder / "cmyk.jpg")
    frames = [photo.resize((200, 150)), photo.resize((200, 150)).rotate(90)]
    frames[0].save(folder / "anim.gif", save_all=True, append_images=frames[1:])
    rgba = photo.convert("RGBA")
    rgba.putalpha(128)
    rgba.save(folder / "alpha.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    photo.save(folder / "rotated.jpg", exif=exif)
    photo.save(folder / "photo.tiff")
    photo.save(folder / "photo.bmp")
    palette = photo.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    palette.info["transparency"] = 0
    palette.save(folder / "palette.png")
    # A flat illustration from the real crawl: a silhouette icon filed as a Taj Mahal photo.
    icon = real_raw / "taj_mahal" / "ho_train_Taj_Mahal_2.png"
    (folder / "icon.png").write_bytes(icon.read_bytes())
    return {
        "empty.jpg": images.EMPTY,
        "page.jpg": images.NOT_AN_IMAGE,
        "truncated.jpg": images.TRUNCATED,
        "tiny.png": images.TOO_SMALL,
        "strip.png": images.EXTREME_ASPECT,
        "blank.jpg": images.BLANK,
        "bomb.png": images.TOO_LARGE,
        "sixteen.png": "ok",
        "cmyk.jpg": "ok",
        "anim.gif": "ok",
        "alpha.png": "ok",
        "rotated.jpg": "ok",
        "photo.tiff": "ok",
        "photo.bmp": "ok",
        "palette.png": "ok",
        "icon.png": images.LOW_INFORMATION,
    }


def test_every_bad_file_is_quarantined_with_its_reason(tmp_path: Path, real_raw: Path):
    expected = _bad_files(tmp_path / "src" / "colosseum", real_raw)
    layout = Layout(tmp_path / "storage")
    import_folder(tmp_path / "src", layout)
    options = CleanOptions(max_pixels=50_000_000)
    result = clean_raw(layout, options)
    raw = {r["path"]: r for r in read_jsonl(layout.raw_manifest)}
    outcome = {}
    for r in current_records(layout.clean_manifest, options.digest()):
        outcome[Path(r["raw_path"]).name] = "ok"
    for r in current_records(layout.quarantine_manifest, options.digest()):
        outcome[Path(r["raw_path"]).name] = r["reason"]
        assert (layout.quarantine_dir / r["path"]).is_file(), "the quarantined copy exists"
        assert r["detail"]
    assert outcome == expected
    # Nothing vanished: every raw file is still there, and is cleaned or quarantined.
    assert all((layout.raw_dir / p).exists() for p in raw)
    assert result.cleaned + result.quarantined == len(raw)


def test_normalisation(tmp_path: Path, real_raw: Path):
    expected = _bad_files(tmp_path / "src" / "colosseum", real_raw)
    folder = tmp_path / "src" / "colosseum"
    limits = images.ImageLimits()
    for name in [n for n, v in expected.items() if v == "ok"]:
        out = images.load_normalized(folder / name, limits)
        assert out.image.mode == "RGB"
    photo = _photo(real_raw)
    rotated = images.load_normalized(folder / "rotated.jpg", limits).image
    assert rotated.size == (photo.size[1], photo.size[0]), "EXIF orientation applied"
    assert images.load_normalized(folder / "anim.gif", limits).animated
    assert not images.load_normalized(folder / "cmyk.jpg", limits).animated
    cmyk = np.asarray(images.load_normalized(folder / "cmyk.jpg", limits).image, dtype=float)
    assert np.abs(cmyk.mean() - np.asarray(photo, dtype=float).mean()) < 10, "CMYK not inverted"
    sixteen = images.load_normalized(folder / "sixteen.png", limits)
    assert sixteen.source_mode.startswith("I") and np.asarray(sixteen.image).std() > 20
    alpha = images.load_normalized(folder / "alpha.png", limits).image
    assert np.asarray(alpha).mean() > np.asarray(photo).mean(), "alpha flattened onto white"


def test_clean_real_photos_all_formats_and_is_incremental(tmp_path: Path, real_raw: Path):
    # Every format in the real set: the AVIF, WEBP and PNG files plus a few JPEGs.
    src = tmp_path / "src"
    picked = [p for p in real_raw.rglob("*") if p.suffix.lower() in {".avif", ".webp", ".png"}]
    picked += sorted(real_raw.glob("petra/*.jpg"))[:5]
    for p in picked:
        dest = src / p.parent.name / p.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, dest)
    layout = Layout(tmp_path / "storage")
    import_folder(src, layout)
    options = CleanOptions()
    first = clean_raw(layout, options)
    # The three Taj Mahal PNGs of the real set are flat vector illustrations, not photos.
    quarantine = read_jsonl(layout.quarantine_manifest)
    refused = {Path(r["raw_path"]).name: r["reason"] for r in quarantine}
    assert refused == {f"ho_train_Taj_Mahal_{i}.png": images.LOW_INFORMATION for i in (1, 2, 3)}
    assert first.cleaned == len(picked) - 3
    formats = {r["source_format"] for r in read_jsonl(layout.clean_manifest)}
    assert {"AVIF", "WEBP", "PNG", "JPEG"} <= formats
    for r in read_jsonl(layout.clean_manifest):
        with Image.open(layout.clean_dir / r["path"]) as im:
            assert im.format == "JPEG" and im.mode == "RGB"
            assert max(im.size) <= options.max_side
    second = clean_raw(layout, options)
    assert second.cleaned == 0 and second.skipped == len(picked)


def test_bomb_is_refused_before_decoding(tmp_path: Path):
    path = tmp_path / "bomb.png"
    Image.new("1", (20000, 20000)).save(path)
    with pytest.raises(images.ImageRejected) as info:
        images.load_normalized(path, images.ImageLimits(max_pixels=1_000_000))
    assert info.value.reason == images.TOO_LARGE


def test_pixel_hash_sees_through_lossless_resaves(tmp_path: Path, real_raw: Path):
    photo = _photo(real_raw)
    a, b = io.BytesIO(), io.BytesIO()
    photo.save(a, format="PNG")
    photo.save(b, format="PNG", compress_level=1)
    assert a.getvalue() != b.getvalue()
    ha = images.pixel_hash(Image.open(io.BytesIO(a.getvalue())))
    assert ha == images.pixel_hash(Image.open(io.BytesIO(b.getvalue())))
