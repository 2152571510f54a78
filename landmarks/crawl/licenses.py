"""Licence names: normalised, and sorted into what ``--license`` keeps.

* ``open``: Creative Commons licences (any) and public domain (PD, CC0, the Public Domain Mark).
* ``commercial``: the open ones that allow commercial use (no NC), plus GFDL and the Free Art
  Licence. "No known copyright restrictions" (Flickr Commons) is neither: it is not a licence.
* ``any``: everything, including images whose licence is unknown (the search engines).
"""

from __future__ import annotations

import re

_OPENVERSE_NAMES = {"cc0": "CC0", "pdm": "Public Domain Mark"}


def openverse_name(code: str | None, version: str | None) -> str | None:
    """Openverse's ``by-sa`` + ``4.0`` -> ``CC BY-SA 4.0``; ``cc0`` -> ``CC0 1.0``."""
    if not code:
        return None
    name = _OPENVERSE_NAMES.get(code.lower(), "CC " + code.upper())
    return f"{name} {version}".strip() if version else name


def is_open(name: str | None, url: str | None = None) -> bool:
    text = f"{name or ''} {url or ''}".lower()
    if re.search(r"\bcc[ -]?0\b|\bcc\b|creative ?commons|creativecommons\.org", text):
        return True
    return bool(re.search(r"public ?domain|\bpd\b|\bpdm\b|^pd-", text))


def allows_commercial(name: str | None, url: str | None = None) -> bool:
    text = f"{name or ''} {url or ''}".lower()
    if re.search(r"\bnc\b|-nc\b|noncommercial|non-commercial|/by-nc", text):
        return False
    return is_open(name, url) or bool(re.search(r"gfdl|free art|\bfal\b", text))


def keep(license_filter: str, name: str | None, url: str | None = None) -> bool:
    """Whether ``--license license_filter`` keeps an image with this licence."""
    if license_filter == "open":
        return is_open(name, url)
    if license_filter == "commercial":
        return allows_commercial(name, url)
    return True
