"""The landmark catalog: class names, countries, local names, search queries, and where the
licence-clean sources keep the class (a Wikimedia Commons category, a Wikidata item)."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

_CLASS_NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")


@dataclass(frozen=True)
class Landmark:
    name: str
    country: str
    english: str
    local: str
    queries: tuple[str, ...]
    commons_category: str = ""  # e.g. "Eiffel Tower" (Category: prefix optional)
    wikidata: str = ""  # the item the class depicts, e.g. "Q243"


class CatalogError(ValueError):
    """A catalog file that cannot be used, with the reason."""


def load_catalog(path: Path | None = None) -> list[Landmark]:
    """Read a catalog TOML (``[[landmark]]`` tables); the built-in one when ``path`` is None."""
    if path is None:
        text = resources.files("landmarks").joinpath("catalog.toml").read_text(encoding="utf-8")
        source = "built-in catalog"
    else:
        text = Path(path).read_text(encoding="utf-8")
        source = str(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"{source}: not valid TOML: {exc}") from exc
    entries = data.get("landmark")
    if not entries:
        raise CatalogError(f"{source}: no [[landmark]] entries")
    landmarks: list[Landmark] = []
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        name = str(entry.get("name", ""))
        if not _CLASS_NAME.match(name):
            raise CatalogError(
                f"{source}: landmark #{i + 1} has name {name!r}; "
                "use lowercase letters, digits, _ or -"
            )
        if name in seen:
            raise CatalogError(f"{source}: landmark {name!r} appears twice")
        seen.add(name)
        english = str(entry.get("english", name.replace("_", " ").title()))
        queries = tuple(str(q) for q in entry.get("queries", [])) or (english,)
        wikidata = str(entry.get("wikidata", "")).strip()
        if wikidata and not re.fullmatch(r"Q[1-9][0-9]*", wikidata):
            raise CatalogError(
                f"{source}: landmark {name!r} has wikidata {wikidata!r}; use Q<digits>"
            )
        landmarks.append(
            Landmark(
                name=name,
                country=str(entry.get("country", "")),
                english=english,
                local=str(entry.get("local", english)),
                queries=queries,
                commons_category=str(entry.get("commons_category", "")).strip(),
                wikidata=wikidata,
            )
        )
    return landmarks
