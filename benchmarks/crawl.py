"""Crawl benchmarks against the local search engine (tests/crawl_server.py) serving real photos
from ../shared/datasets/landmarks-real.

1. Images/s of a whole crawl (Bing result pages -> icrawler parser -> downloader threads ->
   verify -> rename into raw/ -> manifest) with 1 and 4 downloader threads, on loopback and
   with 50 ms of latency per image (what a remote image host costs at least).
2. The verify-then-rename step against icrawler's plain write:
   a. per image, on the same bytes: icrawler's ``FileSystem.write`` vs staging write + fsync +
      sha256 + full decode + rename into raw/ + manifest line;
   b. the whole crawl, 4 threads, same harness and latencies: icrawler's own
      ``Downloader.download`` (header check, plain write) vs ours.

    .venv/bin/python benchmarks/crawl.py [--images 120] [--repeats 2]

Every number comes from this run, on this machine; each timing is the best of ``--repeats``.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
REAL_RAW = (
    Path(os.environ.get("LANDMARKS_TEST_REAL_DIR", ROOT.parent / "shared/datasets/landmarks-real"))
    / "raw"
)

from crawl_server import SearchServer  # noqa: E402
from icrawler import ImageDownloader  # noqa: E402
from icrawler.storage import FileSystem  # noqa: E402

from landmarks import crawl  # noqa: E402
from landmarks.catalog import Landmark  # noqa: E402
from landmarks.crawl.state import ClassRun  # noqa: E402
from landmarks.ingest import RawStore, now_iso  # noqa: E402
from landmarks.storage import Layout  # noqa: E402

QUERY = "bench"
LANDMARK = Landmark("bench", "", QUERY, QUERY, (QUERY,))


def real_photos(n: int) -> list[Path]:
    files = sorted(p for p in REAL_RAW.glob("*/*") if p.is_file())
    step = max(1, len(files) // n)
    return files[::step][:n]


def options(server: SearchServer, threads: int) -> crawl.CrawlOptions:
    return crawl.CrawlOptions(
        engines=("bing",),
        max_per_class=10_000,
        min_size=1,
        downloader_threads=threads,
        timeout_s=10.0,
        request_delay_s=0.0,
        max_retries=0,
        endpoints=tuple(server.endpoints().items()),
    )


class IcrawlerPlainDownloader(crawl.AtomicDownloader):
    """icrawler's own Downloader.download: status and header check, then a plain
    ``storage.write`` of the body; in the same harness as ours (threads, parser, queues)."""

    def download(self, task, default_ext="jpg", timeout=5, max_retry=3, overwrite=False, **kw):
        ImageDownloader.download(self, task, "jpg", timeout=timeout, max_retry=1, overwrite=True)
        if self.fetched_num >= self.max_num:
            self.signal.set(reach_max_num=True)
        return task.get("success")


def crawl_rate(server: SearchServer, n: int, threads: int, repeats: int, plain: bool = False):
    """Best images/s over ``repeats`` crawls of ``n`` results into a fresh storage."""
    best = float("inf")
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="bench-crawl-") as tmp:
            layout = Layout(Path(tmp))
            start = time.perf_counter()
            if plain:
                run = ClassRun(LANDMARK, layout, options(server, threads), "bench", None)
                crawl.run_attempt(run, "bing", QUERY, n, downloader_cls=IcrawlerPlainDownloader)
                got = len(list(run.staging_dir.glob("*.jpg")))
            else:
                got = crawl.crawl_class(LANDMARK, layout, options(server, threads), "bench").added
            elapsed = time.perf_counter() - start
        assert got == n, f"expected {n} images, got {got}"
        best = min(best, elapsed)
    return n / best


def write_step(photos: list[Path], repeats: int) -> tuple[float, dict[str, float]]:
    """ms per image: icrawler's FileSystem.write vs our steps (best of ``repeats`` each)."""
    blobs = [p.read_bytes() for p in photos]
    best_plain = float("inf")
    best: dict[str, float] = {}
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="bench-write-") as tmp:
            storage = FileSystem(os.path.join(tmp, "plain"))
            start = time.perf_counter()
            for i, data in enumerate(blobs):
                storage.write(f"{i:06d}.jpg", data)
            best_plain = min(best_plain, time.perf_counter() - start)

            layout = Layout(Path(tmp) / "ours")
            store = RawStore(layout)
            staging = layout.root / ".crawl-staging"
            staging.mkdir(parents=True)
            spent = dict.fromkeys(["write", "fsync", "sha256", "decode", "rename+manifest"], 0.0)
            for i, data in enumerate(blobs):
                t0 = time.perf_counter()
                fd, name = tempfile.mkstemp(dir=staging, prefix=".dl-", suffix=".part")
                digest = hashlib.sha256()
                with os.fdopen(fd, "wb") as fh:
                    for k in range(0, len(data), 1 << 16):  # the download streams chunks
                        fh.write(data[k : k + (1 << 16)])
                    fh.flush()
                    t1 = time.perf_counter()
                    os.fsync(fh.fileno())
                t2 = time.perf_counter()
                for k in range(0, len(data), 1 << 16):
                    digest.update(data[k : k + (1 << 16)])
                t3 = time.perf_counter()
                fmt, w, h = crawl.verify_image(Path(name), 1, 50_000_000)
                t4 = time.perf_counter()
                store.adopt_file(
                    Path(name),
                    "bench",
                    {
                        "url": f"http://x/{i}.jpg",
                        "fetched_at": now_iso(),
                        "width": w,
                        "height": h,
                        "format": fmt,
                    },
                    name=f"{i:06d}.jpg",
                    digest=digest.hexdigest(),
                )
                t5 = time.perf_counter()
                steps = (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)
                for key, dt in zip(spent, steps, strict=True):
                    spent[key] += dt
            total = sum(spent.values())
            if total < sum(best.values() or [float("inf")]):
                best = spent
    per_image = {k: 1000 * v / len(blobs) for k, v in best.items()}
    return 1000 * best_plain / len(blobs), per_image


def main() -> None:
    logging.getLogger("landmarks").setLevel(logging.ERROR)  # the end-of-results notes
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=120)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    photos = real_photos(args.images)
    n = len(photos)
    total_mb = sum(p.stat().st_size for p in photos) / 1e6
    print(f"{n} real photos ({total_mb:.1f} MB) from {REAL_RAW}, best of {args.repeats}\n")

    rows = []
    for latency in (0.0, 0.05):
        with SearchServer(image_latency_s=latency) as server:
            names = [server.photo(f"img{i:04d}", p) for i, p in enumerate(photos)]
            server.set_results("bing", QUERY, names)
            one = crawl_rate(server, n, 1, args.repeats)
            four = crawl_rate(server, n, 4, args.repeats)
            plain4 = crawl_rate(server, n, 4, args.repeats, plain=True)
            rows.append((latency, one, four, plain4))
    print("1. whole crawl, images/s (Bing pages -> parser -> downloader -> raw/)")
    print(f"   {'latency/image':>14} {'1 thread':>10} {'4 threads':>10} {'4 vs 1':>8}")
    for latency, one, four, _ in rows:
        print(f"   {latency * 1000:>11.0f} ms {one:>10.1f} {four:>10.1f} {four / one:>7.2f}x")

    plain_ms, parts = write_step(photos, args.repeats)
    ours_ms = sum(parts.values())
    print("\n2a. write step per image (same bytes)")
    print(f"   icrawler FileSystem.write   {plain_ms:7.2f} ms")
    print(f"   verify-then-rename, total   {ours_ms:7.2f} ms (+{ours_ms - plain_ms:.2f} ms)")
    for key, ms in parts.items():
        print(f"     {key:<25} {ms:7.2f} ms")
    print("\n2b. whole crawl, 4 threads: icrawler's plain download+write vs verify-then-rename")
    print(f"   {'latency/image':>14} {'plain':>10} {'ours':>10} {'ours/plain':>11}")
    for latency, _, four, plain4 in rows:
        print(
            f"   {latency * 1000:>11.0f} ms {plain4:>10.1f} {four:>10.1f} {four / plain4:>10.2f}x"
        )


if __name__ == "__main__":
    main()
