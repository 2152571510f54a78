"""Review decisions: stored atomically, survive restarts, honoured by the next refresh (a later
near-duplicate crawl of the same photo too), and made from a real page in headless Chromium.

The browser test needs Debian's ``chromium`` and ``chromium-driver`` packages
(``apt-get install -y chromium chromium-driver``); nothing here downloads a browser.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from pathlib import Path

import pytest
from conftest import make_subset
from PIL import Image

from landmarks import clean, dedup, ingest, split
from landmarks.review import decisions, suspects
from landmarks.review.page import ReviewSite, make_server
from landmarks.storage import Layout, read_json, read_jsonl

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CLASSES = {"colosseum": 10, "eiffel_tower": 10, "petra": 10}


def _dataset(layout: Layout, source: Path) -> dedup.DedupResult:
    ingest.import_folder(source, layout)
    clean_opts = clean.CleanOptions()
    clean.clean_raw(layout, clean_opts)
    records = clean.current_records(layout.clean_manifest, clean_opts.digest())
    return dedup.dedup_clean(layout, records, dedup.DedupOptions())


def _split_paths(layout: Layout, kept_path: Path) -> dict[str, str]:
    applied = decisions.apply_to_kept(layout, kept_path, max_distance=10)
    split.split_dataset(layout, applied.kept_path, split.SplitOptions())
    return {r["path"]: r["class"] for r in read_jsonl(layout.split_manifest)}


def test_decisions_persist_and_apply_to_later_crawls(tmp_path: Path):
    layout = Layout(tmp_path / "storage")
    first = make_subset(tmp_path / "first", CLASSES)
    deduped = _dataset(layout, first)
    kept = read_jsonl(deduped.kept_path)
    petra = [r for r in kept if r["class"] == "petra"]
    gone, moved = petra[0], petra[1]

    store = decisions.DecisionStore(decisions.decisions_path(layout))
    for r, action, new in ((gone, decisions.REMOVE, None), (moved, decisions.RELABEL, "colosseum")):
        variants = decisions.photo_variants(layout.clean_dir / r["path"], r["phash"])
        store.decide({**r, "phash_variants": variants}, action, new_label=new)
    with pytest.raises(decisions.DecisionError):
        store.decide(gone, "burn")
    with pytest.raises(decisions.DecisionError):
        store.decide(gone, decisions.RELABEL, new_label="petra")

    # A fresh store (a restart) reads the same decisions back.
    again = decisions.DecisionStore(decisions.decisions_path(layout)).load()
    assert again[gone["pixel_hash"]]["action"] == decisions.REMOVE
    assert again[moved["pixel_hash"]]["new_label"] == "colosseum"
    assert not list(decisions.decisions_path(layout).parent.glob(".*.tmp"))

    paths = _split_paths(layout, deduped.kept_path)
    assert gone["path"] not in paths
    assert paths[moved["path"]] == "colosseum"
    assert len(paths) == len(kept) - 1
    assert (layout.raw_dir / gone["raw_path"]).is_file(), "raw files are never deleted"

    # A later crawl brings the removed photo again, larger and re-encoded by another site: the
    # copy becomes the dedup keeper (more pixels) and is still removed, by perceptual hash.
    raw = layout.raw_dir / gone["raw_path"]
    later = tmp_path / "later" / "petra"
    later.mkdir(parents=True)
    with Image.open(raw) as im:
        im = im.convert("RGB")
        im.resize((im.width * 3 // 2, im.height * 3 // 2)).save(later / "bigger.jpg", quality=80)
    deduped = _dataset(layout, tmp_path / "later")
    paths = _split_paths(layout, deduped.kept_path)
    report = read_json(decisions.applied_report_path(layout))
    removed = [t for t in report["touched"] if t["action"] == decisions.REMOVE]
    assert len(removed) == 1 and removed[0]["matched_by"] == "phash", report["touched"]
    assert removed[0]["path"] not in paths and removed[0]["path"] != gone["path"]
    assert len(paths) == len(kept) - 1

    # Undo: clearing the decision brings the photo back at the next split.
    store.clear(gone["pixel_hash"])
    paths = _split_paths(layout, deduped.kept_path)
    assert len(paths) == len(kept)


def _chrome():
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail(
            "headless Chromium is needed: apt-get install -y chromium chromium-driver "
            f"({CHROMIUM}, {CHROMEDRIVER})"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--window-size=1400,1000",
    ):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


@pytest.fixture
def review_site(tmp_path: Path):
    """A storage with a dataset and its suspects, and the review page serving it."""
    layout = Layout(tmp_path / "storage")
    deduped = _dataset(layout, make_subset(tmp_path / "src", CLASSES))
    applied = decisions.apply_to_kept(layout, deduped.kept_path, 10)
    suspects.suspects_for_storage(
        layout.clean_dir,
        applied.kept_path,
        decisions.suspects_path(layout),
        suspects.SuspectsOptions(num_centroids=64, num_folds=3),
    )
    site = ReviewSite(
        layout.clean_dir, decisions.suspects_path(layout), decisions.decisions_path(layout)
    )
    server = make_server(site, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield layout, deduped, site, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_review_page_in_headless_chromium(review_site, prefect_harness):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    layout, deduped, site, url = review_site
    decisions_file = decisions.decisions_path(layout)
    before = _split_paths(layout, deduped.kept_path)
    driver = _chrome()
    try:
        driver.get(url)
        wait = WebDriverWait(driver, 120)
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))
        cards = driver.find_elements(By.CSS_SELECTOR, ".card")
        assert len(cards) == len(before)
        headings = [h.text for h in driver.find_elements(By.CSS_SELECTOR, "section h2")]
        assert [h.split(" (")[0] for h in headings] == sorted(CLASSES)
        # Thumbnails really load.
        wait.until(
            lambda d: all(
                d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", i)
                for i in d.find_elements(By.CSS_SELECTOR, ".card img")[:6]
            )
        )
        first = cards[0]
        key = first.get_attribute("data-key")
        assert not decisions_file.exists()
        first.find_element(By.CSS_SELECTOR, "button[data-act=remove]").click()
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-saved"))
        card = driver.find_element(By.CSS_SELECTOR, f".card[data-key='{key}']")
        assert "remove" in card.get_attribute("class")
        # The keyboard: the focus moved to the next photo; "a" keeps it.
        second_key = driver.find_element(By.CSS_SELECTOR, ".card.focus").get_attribute("data-key")
        assert second_key != key
        driver.find_element(By.TAG_NAME, "body").send_keys("a")
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-saved") == "2")
    finally:
        driver.quit()

    saved = json.loads(decisions_file.read_text())["decisions"]
    assert saved[key]["action"] == decisions.REMOVE and saved[key]["by"] == decisions.BY_PERSON
    assert len(saved[key]["phash"]) == 8
    assert saved[second_key]["action"] == decisions.KEEP

    # The decisions survive a restart: a second server on the same storage shows them.
    restarted = make_server(site, "127.0.0.1", 0)
    threading.Thread(target=restarted.serve_forever, daemon=True).start()
    try:
        port = restarted.server_address[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/state", timeout=10) as resp:
            state = json.load(resp)
    finally:
        restarted.shutdown()
        restarted.server_close()
    decided = {p["key"]: p["decision"]["action"] for p in state["photos"] if p["decision"]}
    assert decided == {key: "remove", second_key: "keep"}

    # A rerun of the dataset step (the refresh flow) leaves the removed photo out.
    from flows.refresh import refresh

    source = layout.root.parent / "src"
    out = refresh(
        overrides={
            "storage_dir": str(layout.root),
            "source": str(source),
            "augment": {"multiplier": 0},
        }
    )
    after = {r["path"]: r["class"] for r in read_jsonl(Path(out["split_manifest"]))}
    removed_path = next(p["path"] for p in state["photos"] if p["key"] == key)
    assert removed_path in before and removed_path not in after
    assert len(after) == len(before) - 1
    raw_path = next(p["raw_path"] for p in state["photos"] if p["key"] == key)
    assert (layout.raw_dir / raw_path).is_file(), "raw files are never deleted"


def test_storage_commands(tmp_path: Path):
    from typer.testing import CliRunner

    from flows.cli import app

    runner = CliRunner()
    empty = runner.invoke(app, ["review", "--storage", str(tmp_path / "nothing")])
    assert empty.exit_code == 2 and "landmarks suspects" in empty.output
    layout = Layout(tmp_path / "storage")
    kept = read_jsonl(_dataset(layout, make_subset(tmp_path / "src", CLASSES)).kept_path)
    result = runner.invoke(app, ["suspects", "--storage", str(layout.root), "--top", "3"])
    assert result.exit_code == 0, result.output
    data = read_json(decisions.suspects_path(layout))
    assert len(data["suspects"]) == len(kept) and data["class_names"] == sorted(CLASSES)
    assert all(s["pixel_hash"] and s["raw_path"] for s in data["suspects"])
    ranked_lines = [line for line in result.output.splitlines() if line.startswith(("+", "-"))]
    assert len(ranked_lines) == 3 and "photos scored" in result.output

    # Auto-removal: only suspects confident enough in another class, never over a person.
    ranked = data["suspects"]
    doubted = [s for s in ranked if s["suggested"] != s["label"]]
    assert doubted
    store = decisions.DecisionStore(decisions.decisions_path(layout))
    store.decide(doubted[0], decisions.KEEP)
    threshold = min(s["suggested_confidence"] for s in doubted)
    made = decisions.auto_remove(store, ranked, threshold, layout.clean_dir)
    assert len(made) == len(doubted) - 1
    saved = store.load()
    assert saved[doubted[0]["pixel_hash"]]["by"] == decisions.BY_PERSON
    assert all(saved[d["pixel_hash"]]["by"] == decisions.BY_AUTO for d in doubted[1:])
    assert all(len(saved[d["pixel_hash"]]["phash"]) == 8 for d in doubted[1:])
