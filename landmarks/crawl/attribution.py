"""Credits: who made each image of a dataset version, under which licence, and where it came
from, as CSV and HTML.

The chain: split record (clean path) -> clean record (``raw_path``) -> raw provenance record
(``license``, ``license_url``, ``author``, ``page_url``, ``url``, ``engine``). Images whose
source gave no licence (the search engines, folder imports, older crawls) are listed with an
empty licence, so a person sees what still needs clearing.
"""

from __future__ import annotations

import csv
import html
import io
from collections import Counter
from pathlib import Path
from typing import Any

from landmarks.storage import Layout, atomic_write_text, read_jsonl

COLUMNS = (
    "class",
    "split",
    "file",
    "title",
    "author",
    "license",
    "license_url",
    "page_url",
    "image_url",
    "source",
)
SPLITS = ("train", "val", "test")


def credits(layout: Layout, splits: tuple[str, ...] = SPLITS) -> list[dict[str, Any]]:
    """One row per image of the split manifest (only ``splits``), in manifest order."""
    raw = {r["path"]: r for r in read_jsonl(layout.raw_manifest) if r.get("path")}
    clean = {r["path"]: r for r in read_jsonl(layout.clean_manifest) if r.get("path")}
    rows = []
    for record in read_jsonl(layout.split_manifest):
        if record.get("split") not in splits:
            continue
        source = raw.get((clean.get(record["path"]) or {}).get("raw_path", ""), {})
        rows.append(
            {
                "class": record["class"],
                "split": record["split"],
                "file": record["path"],
                "title": source.get("title"),
                "author": source.get("author"),
                "license": source.get("license"),
                "license_url": source.get("license_url"),
                "page_url": source.get("page_url"),
                "image_url": source.get("url"),
                "source": source.get("engine") or source.get("source"),
            }
        )
    return rows


def to_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in COLUMNS})
    return out.getvalue()


def _link(url: Any, text: Any) -> str:
    if not url:
        return html.escape(str(text or ""))
    return f'<a href="{html.escape(str(url))}">{html.escape(str(text or url))}</a>'


def to_html(rows: list[dict[str, Any]], title: str) -> str:
    licences = Counter(r.get("license") or "unknown" for r in rows)
    summary = ", ".join(f"{html.escape(k)}: {v}" for k, v in licences.most_common())
    body = "\n".join(
        "<tr>"
        f"<td>{html.escape(r['class'])}</td><td>{html.escape(r['split'])}</td>"
        f"<td>{_link(r.get('image_url'), r['file'])}</td>"
        f"<td>{_link(r.get('page_url'), r.get('title') or 'source page')}</td>"
        f"<td>{html.escape(str(r.get('author') or ''))}</td>"
        f"<td>{_link(r.get('license_url'), r.get('license') or 'unknown')}</td>"
        f"<td>{html.escape(str(r.get('source') or ''))}</td>"
        "</tr>"
        for r in rows
    )
    return (
        "<!doctype html>\n<html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title></head><body>\n"
        f"<h1>{html.escape(title)}</h1>\n<p>{len(rows)} images. Licences: {summary}.</p>\n"
        "<table border='1' cellpadding='3'>\n<tr><th>class</th><th>split</th><th>image</th>"
        "<th>source page</th><th>author</th><th>licence</th><th>via</th></tr>\n"
        f"{body}\n</table></body></html>\n"
    )


def write_credits(rows: list[dict[str, Any]], out_dir: Path, title: str) -> tuple[Path, Path]:
    """Write ``credits.csv`` and ``credits.html`` into ``out_dir`` (atomically)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, html_path = out_dir / "credits.csv", out_dir / "credits.html"
    atomic_write_text(csv_path, to_csv(rows))
    atomic_write_text(html_path, to_html(rows, title))
    return csv_path, html_path


def write_run_credits(layout: Layout, run_dir: Path) -> tuple[Path, Path]:
    """The credits of a training run's images (the train split it learns from, whose images
    the augmented copies derive from) in the run folder."""
    rows = credits(layout, ("train",))
    return write_credits(rows, run_dir, f"Training images of run {run_dir.name}")
