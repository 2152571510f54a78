"""The landmark catalog: class names, countries, local names and search queries."""

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
        landmarks.append(
            Landmark(
                name=name,
                country=str(entry.get("country", "")),
                english=english,
                local=str(entry.get("local", english)),
                queries=queries,
            )
        )
    return landmarks
