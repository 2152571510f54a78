"""Shared fixtures. Tests read the real photos in ../shared/datasets/landmarks-real and write
only under their own temp dirs."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Before anything imports prefect: a private PREFECT_HOME, no telemetry, a patient server.
_PREFECT_HOME = tempfile.mkdtemp(prefix="landmarks-test-prefect-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ.pop("PREFECT_API_URL", None)
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
for key in [k for k in os.environ if k.startswith("LANDMARKS_")]:
    del os.environ[key]

import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
REAL_DIR = Path(
    os.environ.get("LANDMARKS_TEST_REAL_DIR", REPO_ROOT.parent / "shared/datasets/landmarks-real")
)
REAL_RAW = REAL_DIR / "raw"


def real_files(class_name: str, limit: int | None = None) -> list[Path]:
    files = sorted(p for p in (REAL_RAW / class_name).iterdir() if p.is_file())
    return files[:limit] if limit else files


def make_subset(dest: Path, classes: dict[str, int]) -> Path:
    """A DIR/<class>/<file> tree of symlinks to the first N real photos of each class."""
    for class_name, n in classes.items():
        folder = dest / class_name
        folder.mkdir(parents=True, exist_ok=True)
        for src in real_files(class_name, n):
            (folder / src.name).symlink_to(src)
    return dest


@pytest.fixture(scope="session")
def real_raw() -> Path:
    if not REAL_RAW.is_dir():
        pytest.fail(
            f"real photos not found at {REAL_RAW}; the tests need ../shared beside the repo"
        )
    return REAL_RAW


@pytest.fixture(scope="session")
def small_subset(tmp_path_factory: pytest.TempPathFactory, real_raw: Path) -> Path:
    """4 classes x 16 real photos."""
    return make_subset(
        tmp_path_factory.mktemp("subset"),
        {"colosseum": 16, "eiffel_tower": 16, "petra": 16, "taj_mahal": 16},
    )


@pytest.fixture(scope="session")
def prefect_harness():
    """One ephemeral Prefect server (with its own database) for every flow test."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield
