"""The layers hold: the core never imports the UI or Streamlit, pages import no torch, nothing parses the project's
own source at run time, and the package's module-level imports form no cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted(p for folder in ("explorer", "views") for p in (ROOT / folder).rglob("*.py"))


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, *, top_level_only: bool) -> set[str]:
    """The modules ``path`` imports (``from a.b import c`` names ``a.b`` and, when it is one, ``a.b.c``);
    ``top_level_only`` leaves out imports inside functions and under ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    if top_level_only:  # try/except and plain ifs at module level run at import too
        nodes = [n for top in tree.body if not _type_checking(top) for n in ast.walk(top)
                 if not isinstance(top, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)]
        nodes += [n for top in tree.body if isinstance(top, ast.ClassDef) for n in top.body]
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _type_checking(node: ast.stmt) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


MODULES = {_module(p): p for p in SOURCES if p.is_relative_to(ROOT / "explorer")}
CORE = {name: path for name, path in MODULES.items() if not name.startswith("explorer.ui")}


@pytest.mark.parametrize("name", sorted(CORE))
def test_the_core_never_imports_the_ui_or_streamlit(name: str) -> None:
    imported = _imports(CORE[name], top_level_only=False)
    assert not [m for m in imported if m == "explorer.ui" or m.startswith("explorer.ui.")], name
    assert not [m for m in imported if m.split(".")[0] == "streamlit"], name


@pytest.mark.parametrize("path", sorted((ROOT / "views").glob("*.py")), ids=lambda p: p.name)
def test_pages_import_no_torch_or_captum(path: Path) -> None:
    imported = {m.split(".")[0] for m in _imports(path, top_level_only=False)}
    assert not imported & {"torch", "torchvision", "captum"}, path.name


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_nothing_parses_the_projects_own_source(path: Path) -> None:
    assert "ast" not in {m.split(".")[0] for m in _imports(path, top_level_only=False)}, path


def _graph() -> dict[str, set[str]]:
    """Module-level imports between the package's modules. Importing ``a.b.c`` runs the packages ``a`` and
    ``a.b`` first, unless the importer is inside them already (their ``__init__`` is then already running)."""
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        own = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 2)}
        edges = set()
        for target in _imports(path, top_level_only=True):
            if target not in MODULES:
                continue
            parts = target.split(".")
            edges.update(p for p in (".".join(parts[:i]) for i in range(1, len(parts) + 1))
                         if p in MODULES and (p == target or p not in own))
        graph[name] = edges - {name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_package_has_no_import_cycle() -> None:
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    graph = _graph()
    assert "explorer.config" in graph["explorer.loading"] and "explorer.backend" in graph["explorer.ui.work"]
