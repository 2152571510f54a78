"""Matplotlib helpers for the PNG plots the stages write (headless, atomic)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from landmarks.storage import atomic_path


def pyplot() -> Any:
    """matplotlib.pyplot on the headless Agg backend (imported only when a plot is drawn)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, out_path: Path, dpi: int = 100) -> Path:
    """Lay out, write ``fig`` as a PNG atomically, and free it."""
    fig.tight_layout()
    with atomic_path(out_path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    pyplot().close(fig)
    return out_path
