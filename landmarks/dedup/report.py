"""A self-contained HTML page of duplicate groups and quarantined files, as thumbnails.

Thumbnails are embedded as small JPEG data URIs, so the page can be opened, mailed or attached
to a Prefect run without the storage folder beside it.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from landmarks.storage import atomic_write_text

THUMB_SIDE = 160
MAX_GROUPS = 500  # a page that still opens; the JSON report holds everything


@dataclass(frozen=True)
class Tile:
    path: Path
    label: str
    note: str


@dataclass(frozen=True)
class GroupView:
    keeper: Tile
    duplicates: list[Tile]
    conflict: bool


@dataclass(frozen=True)
class QuarantineView:
    path: Path
    label: str
    reason: str
    detail: str


def group_view(entry: dict[str, Any], base_dir: Path, conflict: bool) -> GroupView:
    """A view of one group of the pipeline's ``dedup/report.json`` (or the folder command)."""
    keeper = Tile(base_dir / entry["keeper"], entry.get("raw_path", entry["keeper"]), "keeper")
    dups = [
        Tile(
            base_dir / d["path"],
            d.get("raw_path", d["path"]),
            f"{d.get('match', '')} d={d.get('distance')}"
            + (f" [{d['class']}]" if conflict and "class" in d else ""),
        )
        for d in entry["duplicates"]
    ]
    return GroupView(keeper, dups, conflict)


def thumbnail_uri(path: Path, side: int = THUMB_SIDE) -> str | None:
    """A data URI of a small JPEG of ``path``; None for a file that is not a picture."""
    try:
        with Image.open(path) as im:
            if im.size[0] * im.size[1] > 100_000_000:
                return None  # a decompression bomb stays unopened here too
            if im.format == "JPEG":
                im.draft("RGB", (side, side))
            im.thumbnail((side, side))
            rgb = im.convert("RGB")
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError):
        return None
    buf = io.BytesIO()
    rgb.save(buf, format="JPEG", quality=75)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _tile(path: Path, label: str, note: str, css: str = "") -> str:
    uri = thumbnail_uri(path)
    img = f'<img src="{uri}" alt="">' if uri else '<div class="none">no preview</div>'
    return (
        f'<figure class="{css}">{img}<figcaption><b>{html.escape(note)}</b><br>'
        f"{html.escape(label)}</figcaption></figure>"
    )


def write_html(
    path: Path,
    title: str,
    groups: list[GroupView],
    quarantined: list[QuarantineView],
    conflict_note: str = "label conflict: removed from every class",
) -> Path:
    """Write the page atomically and return its path. ``conflict_note`` heads a group whose
    copies carry different labels (the pipeline drops them; a folder check moves nothing)."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>",
        "body{font-family:sans-serif;margin:1em}figure{display:inline-block;margin:4px;"
        "width:170px;vertical-align:top;font-size:11px;word-break:break-all}"
        "img{max-width:160px;max-height:160px}.keeper img{outline:3px solid #2a2}"
        ".group{border-bottom:1px solid #ccc;padding:6px 0}.conflict{background:#fee}"
        ".none{width:160px;height:60px;background:#eee;text-align:center;line-height:60px}",
        "</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{len(groups)} duplicate groups, {sum(len(g.duplicates) for g in groups)} duplicates,"
        f" {len(quarantined)} quarantined files. The keeper of each group has a green frame; "
        "d is the Hamming distance of the perceptual hashes. How each copy matched: exact "
        "(same pixels), hash (hashes within the sure distance), verified (close hashes "
        "confirmed by keypoint matching), features (found by shared local features - a crop, "
        "a small rotation, an overlay - and confirmed by keypoints and aligned pixels), linked "
        "(through another member).</p>",
        "<h2>Duplicate groups</h2>",
    ]
    for g in groups[:MAX_GROUPS]:
        css = "group conflict" if g.conflict else "group"
        head = f"<p><b>{html.escape(conflict_note)}</b></p>" if g.conflict else ""
        tiles = [_tile(g.keeper.path, g.keeper.label, g.keeper.note, "keeper")]
        tiles += [_tile(d.path, d.label, d.note) for d in g.duplicates]
        parts.append(f'<div class="{css}">{head}{"".join(tiles)}</div>')
    if len(groups) > MAX_GROUPS:
        parts.append(f"<p>... and {len(groups) - MAX_GROUPS} more groups (see the JSON).</p>")
    parts.append("<h2>Quarantined</h2><div>")
    for q in quarantined[:MAX_GROUPS]:
        parts.append(_tile(q.path, q.label, f"{q.reason}: {q.detail}"))
    parts.append("</div></body></html>\n")
    atomic_write_text(path, "\n".join(parts))
    return path
