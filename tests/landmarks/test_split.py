from landmarks.split import SPLITS, SplitOptions, assign_splits


def _items(n_per_class: dict[str, int], prefix: str = "") -> list[dict]:
    return [
        {"path": f"{c}/{prefix}{i}.jpg", "class": c, "pixel_hash": f"{prefix}{c}-{i}"}
        for c, n in n_per_class.items()
        for i in range(n)
    ]


def test_stratified_and_deterministic():
    items = _items({"a": 100, "b": 40, "c": 7})
    first = assign_splits(items, {}, SplitOptions())
    again = assign_splits(list(reversed(items)), {}, SplitOptions())
    assert sorted((r["path"], r["split"]) for r in first) == sorted(
        (r["path"], r["split"]) for r in again
    )
    for c, n in {"a": 100, "b": 40}.items():
        counts = {s: sum(1 for r in first if r["class"] == c and r["split"] == s) for s in SPLITS}
        assert abs(counts["test"] - 0.15 * n) <= 1 and abs(counts["val"] - 0.15 * n) <= 1
    assert any(r["class"] == "c" and r["split"] == "test" for r in first), "tiny class gets a test"


def test_growth_never_moves_an_existing_image():
    items = _items({"a": 50, "b": 30})
    first = assign_splits(items, {}, SplitOptions())
    previous = {r["pixel_hash"]: r["split"] for r in first}
    more = _items({"a": 20, "b": 10}, prefix="new")
    grown = assign_splits(items + more, previous, SplitOptions())
    for r in grown:
        if r["pixel_hash"] in previous:
            assert r["split"] == previous[r["pixel_hash"]]
    a = [r for r in grown if r["class"] == "a"]
    assert abs(sum(r["split"] == "test" for r in a) - 0.15 * len(a)) <= 1.5


def test_seed_changes_the_assignment():
    items = _items({"a": 60})
    one = {r["path"]: r["split"] for r in assign_splits(items, {}, SplitOptions(seed=1))}
    two = {r["path"]: r["split"] for r in assign_splits(items, {}, SplitOptions(seed=2))}
    assert one != two


def test_a_duplicate_group_never_crosses_splits(tmp_path, real_raw):
    from PIL import Image, ImageOps

    from landmarks.clean import CleanOptions, clean_raw, current_records
    from landmarks.dedup import DedupOptions, dedup_clean
    from landmarks.ingest import import_folder
    from landmarks.split import split_dataset
    from landmarks.storage import Layout, read_json, read_jsonl

    tree = tmp_path / "src" / "petra"
    tree.mkdir(parents=True)
    originals = sorted((real_raw / "petra").glob("*.jpg"))[:20]
    for p in originals:
        (tree / p.name).write_bytes(p.read_bytes())
        im = Image.open(p).convert("RGB")
        ImageOps.mirror(im).resize((im.width // 2, im.height // 2)).save(tree / f"copy_{p.name}")
    layout = Layout(tmp_path / "storage")
    import_folder(tmp_path / "src", layout)
    clean_raw(layout, CleanOptions())
    records = current_records(layout.clean_manifest, CleanOptions().digest())
    result = dedup_clean(layout, records, DedupOptions())
    split_dataset(layout, result.kept_path, SplitOptions())
    in_split = {r["path"] for r in read_jsonl(layout.split_manifest)}
    for group in read_json(layout.dedup_report)["groups"]:
        members = {group["keeper"]} | {d["path"] for d in group["duplicates"]}
        assert len(members & in_split) == 1, "exactly one member of a group is split"
    assert len(in_split) <= len(originals)
