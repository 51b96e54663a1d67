"""No import circles: the modules of voicegraph, nodes and transports import one another one way.

The walk reads each module's source (AST) and follows its module-level imports, including those
under ``if``/``try`` at module level, but not imports inside functions (deliberately lazy) nor
under ``if TYPE_CHECKING:`` (annotations only). A module importing its own parent package is not
an edge: the package is already being imported when its submodule runs.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# source directory -> the package name it installs as (pyproject's package-dir mapping)
PACKAGES = {
    "voicegraph": "voicegraph",
    "nodes": "voicegraph.nodes",
    "transports": "voicegraph.transports",
}


def _modules() -> dict[str, tuple[Path, bool]]:
    """Module name -> (source file, is a package)."""
    found: dict[str, tuple[Path, bool]] = {}
    for top, dotted in PACKAGES.items():
        base = ROOT / top
        for path in base.rglob("*.py"):
            parts = list(path.relative_to(base).with_suffix("").parts)
            if top == "voicegraph" and parts[0] in ("nodes", "transports"):
                continue  # a source checkout's link to the mapped directory: counted there
            is_package = parts[-1] == "__init__"
            if is_package:
                parts.pop()
            found[".".join([dotted, *parts])] = (path, is_package)
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base.pop()
    if node.level > 1:
        base = base[: -(node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _imported(module: str, path: Path, is_package: bool, annotations: bool = False) -> set[str]:
    """Every name a module-level import statement of ``module`` refers to (modules or not);
    with ``annotations``, also those under ``if TYPE_CHECKING:``."""
    names: set[str] = set()

    def walk(body: list[ast.stmt]) -> None:
        for stmt in body:
            if isinstance(stmt, ast.If):
                if annotations or not _is_type_checking(stmt.test):
                    walk(stmt.body)
                walk(stmt.orelse)
            elif isinstance(stmt, ast.Try):
                walk(stmt.body)
                for handler in stmt.handlers:
                    walk(handler.body)
                walk(stmt.orelse)
                walk(stmt.finalbody)
            elif isinstance(stmt, ast.Import):
                names.update(alias.name for alias in stmt.names)
            elif isinstance(stmt, ast.ImportFrom):
                target = _absolute(module, is_package, stmt)
                names.add(target)
                names.update(f"{target}.{alias.name}" for alias in stmt.names)

    walk(ast.parse(path.read_text(), str(path)).body)
    return names


def import_graph(annotations: bool = False) -> dict[str, set[str]]:
    """Module -> the package modules it imports at module level (parent packages included:
    importing ``a.b.c`` runs ``a`` and ``a.b`` first)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for module, (path, is_package) in modules.items():
        edges: set[str] = set()
        for name in _imported(module, path, is_package, annotations):
            parts = name.split(".")
            for i in range(1, len(parts) + 1):
                target = ".".join(parts[:i])
                if target in modules and target != module and not module.startswith(target + "."):
                    edges.add(target)
        graph[module] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_packages_have_no_import_cycles() -> None:
    assert cycles(import_graph()) == []


def test_the_walk_sees_the_engine_imports() -> None:
    graph = import_graph()
    assert "voicegraph.frames" in graph["voicegraph.graph"]
    assert "voicegraph.node" in graph["voicegraph.nodes.audio.g711"]
    assert "voicegraph.server.carriers" in graph["voicegraph.server.app"]


def test_a_cycle_is_reported() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_type_checking_and_function_level_imports_are_not_edges(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "from .x import y\n"
        "if TYPE_CHECKING:\n"
        "    from .annotations_only import T\n"
        "def f():\n"
        "    from .lazy import z\n"
    )
    names = _imported("pkg.m", source, is_package=False)
    assert "pkg.x" in names
    assert not any("annotations_only" in n or "lazy" in n for n in names)


ENGINE_ROOTS = tuple(
    f"voicegraph.{m}"
    for m in (
        "frames",
        "channel",
        "node",
        "edges",
        "validation",
        "mermaid",
        "graph",
        "outcome",
        "wiring",
        "supervision",
        "runtime",
    )
)


def _engine(graph: dict[str, set[str]]) -> set[str]:
    """The engine's modules: each root, and its submodules where the root is a package."""
    return {
        m for m in graph if m in ENGINE_ROOTS or m.startswith(tuple(f"{r}." for r in ENGINE_ROOTS))
    }


def test_the_engine_imports_nothing_above_it() -> None:
    """The engine modules (frames, channel, node, the graph's and the runtime's) use only each
    other at module level, and the two pieces of machinery under them: the shared pacer and
    the backend adapter."""
    graph = import_graph()
    engine = _engine(graph)
    below = engine | {"voicegraph.pacer", "voicegraph.backends"}
    upward = {m: graph[m] - below for m in engine if graph[m] - below}
    assert upward == {}


def test_the_engine_layers_do_not_circle_even_for_annotations() -> None:
    """A node sees its call through a protocol (node.CallContext), not the runtime's class, so
    node -> runtime -> graph -> node is no circle even counting TYPE_CHECKING imports."""
    graph = import_graph(annotations=True)
    engine = _engine(graph)
    assert cycles({m: graph[m] & engine for m in engine}) == []
