"""The layering rules: a Prefect-free core, and no TensorFlow in the fast stages."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_core_never_imports_prefect():
    for path in (ROOT / "landmarks").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not any(n.split(".")[0] == "prefect" for n in names), f"{path} imports prefect"


def test_fast_stages_do_not_load_tensorflow():
    code = (
        "import sys\n"
        "import landmarks.crawl, landmarks.ingest, landmarks.clean, landmarks.dedup\n"
        "import landmarks.split, landmarks.augment, landmarks.dataset\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'prefect')]\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
