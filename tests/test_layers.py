"""The layering rules: a Prefect-free core, no TensorFlow in the fast stages, no import cycles."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("landmarks", "tasks", "flows")
# Stage packages of the core; each must exist and be covered by the rules below.
STAGE_PACKAGES = ("crawl", "dedup", "augment", "train", "review")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for layer in LAYERS for p in (ROOT / layer).rglob("*.py")}


def _imported(path: Path, module: str, known: dict[str, Path]) -> set[str]:
    """The project modules ``path`` imports, at the top or inside functions (an import inside a
    function still ties the two modules together), leaving out ``if TYPE_CHECKING:`` blocks."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                names.update(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parts = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join([*parts, base] if base else parts)
                for alias in child.names:
                    full = f"{base}.{alias.name}"
                    names.add(full if full in known else base)
            visit(child)

    visit(ast.parse(path.read_text()))
    return {n for n in names if n in known and n != module}


def test_stage_packages_are_packages():
    for name in STAGE_PACKAGES:
        init = ROOT / "landmarks" / name / "__init__.py"
        assert init.exists(), f"landmarks/{name}/ is not a package"
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc, f"landmarks/{name}/__init__.py has no docstring saying what the stage does"


def test_core_never_imports_prefect_tasks_or_flows():
    checked = set()
    for path in (ROOT / "landmarks").rglob("*.py"):
        checked.add(path.relative_to(ROOT / "landmarks").parts[0])
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for n in names:
                assert n.split(".")[0] not in ("prefect", "tasks", "flows"), f"{path} imports {n}"
    assert set(STAGE_PACKAGES) <= checked


def test_no_import_cycles():
    known = _modules()
    graph = {m: _imported(p, m, known) for m, p in known.items()}
    cycles: list[list[str]] = []
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()

    def strongly_connected(v: str) -> None:  # Tarjan
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                strongly_connected(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strongly_connected(v)
    assert not cycles, f"import cycles: {cycles}"
    # The graph really sees the stage packages and the layers' imports of them.
    assert "landmarks.train.registry" in graph["tasks.evaluate"]
    assert "landmarks.review.decisions" in graph["landmarks.review.page"]


def test_fast_stages_do_not_load_tensorflow():
    code = (
        "import sys\n"
        "import landmarks.crawl, landmarks.ingest, landmarks.clean, landmarks.dedup\n"
        "import landmarks.split, landmarks.augment\n"
        "import landmarks.train, landmarks.train.dataset, landmarks.train.registry\n"
        "import landmarks.review, landmarks.review.suspects, landmarks.review.decisions\n"
        "import landmarks.review.page\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'prefect')]\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
