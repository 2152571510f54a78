"""Fixtures of the fault tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import make_subset
from tests.faults._stages import CLASSES


@pytest.fixture()
def source(tmp_path: Path, real_raw: Path) -> Path:
    """A DIR/<class>/<file> tree of a few real photos per class."""
    return make_subset(tmp_path / "source", CLASSES)
