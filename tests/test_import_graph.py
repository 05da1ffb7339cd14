"""The import graph of `src/thresher` flows one way (DESIGN.md "Data flows one way").

Every `import thresher...` / `from thresher... import ...` is an edge: top-level
and function-level (lazy) imports alike, and the re-exports of `__init__.py`
files. Only imports under `if TYPE_CHECKING:` are left out (they never run).
Two checks: no cycle among the modules, and no module imports a layer above
its own.
"""
from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# lowest first; a module may import its own layer or any layer below it
LAYERS: list[tuple[str, ...]] = [
    ("core", "errors", "_version", "models"),
    ("data",),
    ("features", "sampling"),
    ("pipeline",),
    ("selection",),
    ("balance",),
    ("train", "active", "report"),
    ("api", ""),  # "" is the package root, `thresher/__init__.py` (it re-exports the API)
    ("cli",),
]
LAYER_OF = {name: i for i, names in enumerate(LAYERS) for name in names}


def _modules() -> dict[str, tuple[Path, bool]]:
    found = {}
    for path in (SRC / "thresher").rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        found[".".join(parts)] = (path, is_package)
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """Import nodes anywhere in the tree (functions included), skipping `if TYPE_CHECKING:` bodies."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def import_graph() -> dict[str, dict[str, int]]:
    """module -> {imported module: line of the first such import}."""
    modules = _modules()

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, dict[str, int]] = {}
    for name, (path, is_package) in modules.items():
        edges: dict[str, int] = {}
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [resolve(a.name) for a in node.names if a.name.split(".")[0] == "thresher"]
            else:
                if node.level:
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[: len(base) - node.level + 1]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                if source.split(".")[0] != "thresher":
                    continue
                # `from thresher.pkg import mod` imports the submodule `mod`
                targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in modules else resolve(source)
                           for a in node.names]
            for target in targets:
                if target and target != name:
                    edges.setdefault(target, node.lineno)
        graph[name] = edges
    return graph


def layer(module: str) -> int:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else ""
    assert top in LAYER_OF, f"{module}: no layer for 'thresher.{top}'; add it to LAYERS in {__file__}"
    return LAYER_OF[top]


def _cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One cycle (as a path a -> ... -> a) per strongly connected component with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
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
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    cycles = []
    for component in components:
        members = set(component)
        start = min(component)
        # shortest path back to `start` inside the component (breadth first)
        paths = {start: [start]}
        queue = [start]
        cycle = None
        while queue and cycle is None:
            v = queue.pop(0)
            for w in sorted(graph[v]):
                if w == start:
                    cycle = paths[v] + [start]
                    break
                if w in members and w not in paths:
                    paths[w] = paths[v] + [w]
                    queue.append(w)
        cycles.append(cycle)
    return cycles


def _edge(graph, a: str, b: str) -> str:
    return f"{a} -> {b} (line {graph[a][b]})"


def test_every_module_has_a_layer():
    for module in import_graph():
        layer(module)


def test_no_import_cycle():
    graph = import_graph()
    cycles = _cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(
        "  " + "; ".join(_edge(graph, a, b) for a, b in zip(cycle, cycle[1:])) for cycle in cycles)


def test_no_module_imports_a_layer_above_it():
    graph = import_graph()
    upward = [_edge(graph, a, b) for a, edges in sorted(graph.items()) for b in sorted(edges) if layer(b) > layer(a)]
    order = " -> ".join(", ".join(f"thresher.{n}" if n else "thresher" for n in names) for names in LAYERS)
    assert not upward, f"imports of a higher layer (order: {order}):\n  " + "\n  ".join(upward)


def test_the_graph_sees_lazy_and_package_imports():
    graph = import_graph()
    assert "thresher.api" in graph["thresher"]  # the root's lazy re-export, inside __getattr__
    assert "thresher.core.selection" in graph["thresher.core"]  # an __init__ re-export
    assert graph["thresher.cli.app"]  # a CLI module imports its commands
