from pathlib import Path

from landmarks.ingest import import_folder
from landmarks.storage import Layout, read_jsonl, sha256_file


def test_import_records_provenance_and_is_append_only(tmp_path: Path, small_subset: Path):
    layout = Layout(tmp_path / "storage")
    first = import_folder(small_subset, layout)
    assert first.added == 64 and set(first.per_class) == {
        "colosseum",
        "eiffel_tower",
        "petra",
        "taj_mahal",
    }
    records = read_jsonl(layout.raw_manifest)
    assert len(records) == 64
    r = records[0]
    assert r["source"] == "folder" and Path(r["original"]).exists() and r["fetched_at"]
    assert sha256_file(layout.raw_dir / r["path"]) == r["sha256"]
    before = {p: p.stat().st_mtime_ns for p in layout.raw_dir.rglob("*") if p.is_file()}

    again = import_folder(small_subset, layout)
    assert again.added == 0 and again.skipped_known == 64
    after = {p: p.stat().st_mtime_ns for p in layout.raw_dir.rglob("*") if p.is_file()}
    assert {p: t for p, t in after.items() if p.name != "manifest.jsonl"} == {
        p: t for p, t in before.items() if p.name != "manifest.jsonl"
    }


def test_same_name_different_content_gets_a_new_name(tmp_path: Path, real_raw: Path):
    layout = Layout(tmp_path / "storage")
    a, b = sorted((real_raw / "petra").iterdir())[:2]
    for src in (a, b):
        tree = tmp_path / f"src-{src.stem}" / "petra"
        tree.mkdir(parents=True)
        (tree / "photo.jpg").write_bytes(src.read_bytes())
        import_folder(tree.parent, layout)
    names = sorted(p.name for p in (layout.raw_dir / "petra").iterdir())
    assert names == ["photo-1.jpg", "photo.jpg"]
