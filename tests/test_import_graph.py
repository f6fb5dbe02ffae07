"""The package's imports, read statically: no cycles, and the runtime layer stays light.

Every module of ``irde_onnx`` is parsed (``ast``) and every import counted, at module level
or inside a function (a lazy import is still a dependency). Importing ``a.b.c`` first imports
the packages ``a`` and ``a.b``, so such an import depends on their ``__init__`` too: when
``irde_onnx/serve/__init__.py`` imports ``app``, importing ``irde_onnx.serve.checks`` from
outside ``serve`` drags ``app`` in. A module's own ancestors are the exception: they are
already importing when it runs (that is how Python imports a package), so a package whose
``__init__`` re-exports its modules is not a cycle; an explicit ``from <ancestor> import name``
of a name its ``__init__`` defines is. Imports under ``if TYPE_CHECKING:`` never run and are
left out.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = "irde_onnx"
SOURCE = Path(__file__).resolve().parents[1] / PACKAGE

# The runtime layer (the base install): routing, the folder store, the maths and the graph
# builders. It never reaches the layers above it, at any depth, and imports no heavy library
# at module level.
RUNTIME_LAYER = (
    "irde_onnx.runtime",
    "irde_onnx.store",
    "irde_onnx.learning",
    "irde_onnx.decision",
    "irde_onnx.graph",
    "irde_onnx.views",
    "irde_onnx.encoders",
    "irde_onnx.errors",
)
UPPER_LAYERS = ("irde_onnx.export", "irde_onnx.serve", "irde_onnx.engines", "irde_onnx.cli")
HEAVY = ("torch", "transformers", "optimum", "starlette", "ray")


def module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(SOURCE.rglob("*.py"))}


def is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def ancestors(name: str) -> set[str]:
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def prefixes(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(tree: ast.AST) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement that can run, with whether it runs when the module is imported."""

    def walk(node: ast.AST, top: bool) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, top
            elif isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    yield from walk(ast.Module(body=[other], type_ignores=[]), top)
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                yield from walk(child, False)
            else:
                yield from walk(child, top)

    yield from walk(tree, True)


def imported_modules(name: str, node: ast.Import | ast.ImportFrom) -> list[tuple[str, bool]]:
    """The modules an import statement names, each with whether it is explicit.

    ``from pkg import x``: ``pkg.x`` when that is a module, else ``pkg`` itself (a name its
    ``__init__`` defines, explicit). Implicit: the packages Python imports on the way.
    """
    if isinstance(node, ast.Import):
        targets = [alias.name for alias in node.names]
        found = []
        for target in targets:
            found += [(p, p == target) for p in prefixes(target)]
        return found
    if node.level:
        base = name.split(".") if is_package(name) else name.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        module = ".".join(base + ([node.module] if node.module else []))
    else:
        module = node.module or ""
    found = [(p, False) for p in prefixes(module)[:-1]]
    submodules = [f"{module}.{alias.name}" for alias in node.names]
    subs = [s for s in submodules if s in MODULES]
    found += [(module, len(subs) < len(submodules))]
    found += [(s, True) for s in subs]
    return found


def build_graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(every edge between irde_onnx modules, every module-level import of any top package)."""
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    top_level: dict[str, set[str]] = {m: set() for m in MODULES}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        own = ancestors(name)
        for node, at_top in imports(tree):
            for target, explicit in imported_modules(name, node):
                if at_top:
                    top_level[name].add(target.split(".")[0])
                if target not in MODULES or target == name:
                    continue
                if target in own and not explicit:
                    continue  # an ancestor is already importing when this module runs
                edges[name].add(target)
    return edges, top_level


EDGES, TOP_LEVEL = build_graph()


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
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
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def path_between(edges: dict[str, set[str]], start: str, goals: set[str]) -> list[str] | None:
    """A shortest import chain from ``start`` to any of ``goals`` (breadth first)."""
    previous: dict[str, str | None] = {start: None}
    queue = [start]
    while queue:
        v = queue.pop(0)
        if v in goals and v != start:
            chain = [v]
            while previous[chain[-1]] is not None:
                chain.append(previous[chain[-1]])  # type: ignore[arg-type]
            return chain[::-1]
        for w in sorted(edges[v]):
            if w not in previous:
                previous[w] = v
                queue.append(w)
    return None


def in_layer(name: str, layer: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in layer)


def test_the_walk_sees_every_module_lazy_imports_and_parent_packages():
    assert {"irde_onnx", "irde_onnx.runtime.router", "irde_onnx.serve.app"} <= set(MODULES)
    assert "irde_onnx.runtime" in EDGES["irde_onnx"]  # the package re-exports Router
    tree = ast.parse("import a.b.c\ndef f():\n    from x import y\n")
    assert [top for _, top in imports(tree)] == [True, False]

    def targets(module: str, code: str) -> list[tuple[str, bool]]:
        return imported_modules(module, ast.parse(code).body[0])  # type: ignore[arg-type]

    # a dotted import goes through its packages' __init__ (implicit)
    assert targets("irde_onnx.cli", "from irde_onnx.serve.checks import x") == [
        ("irde_onnx", False),
        ("irde_onnx.serve", False),
        ("irde_onnx.serve.checks", True),
    ]
    # a name of the package's __init__ is an explicit dependency on it; a submodule is its own
    assert ("irde_onnx.serve", True) in targets("irde_onnx.cli", "from irde_onnx.serve import Y")
    assert targets("irde_onnx.serve.app", "from . import checks")[-1] == (
        "irde_onnx.serve.checks",
        True,
    )


def cycle_through(edges: dict[str, set[str]], component: list[str]) -> list[str]:
    """One import chain from the component's first module back to itself."""
    start = component[0]
    inside = {v: edges[v] & set(component) for v in component}
    for w in sorted(inside[start]):
        back = [w] if w == start else path_between(inside, w, {start})
        if back:
            return [start, *back]
    return component


def test_cycles_are_found_with_their_chain():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(edges) == [["a", "b", "c"]]
    assert cycle_through(edges, ["a", "b", "c"]) == ["a", "b", "c", "a"]


def test_no_import_cycles():
    found = cycles(EDGES)
    described = [" -> ".join(cycle_through(EDGES, c)) for c in found]
    assert not found, "import cycles:\n" + "\n".join(described)


@pytest.mark.parametrize("module", [m for m in MODULES if in_layer(m, RUNTIME_LAYER)])
def test_the_runtime_layer_never_reaches_export_serve_engines_or_cli(module):
    upper = {m for m in MODULES if in_layer(m, UPPER_LAYERS)}
    chain = path_between(EDGES, module, upper)
    assert chain is None, " -> ".join(chain)


@pytest.mark.parametrize("module", [m for m in MODULES if in_layer(m, RUNTIME_LAYER)])
def test_the_runtime_layer_imports_no_heavy_library_at_module_level(module):
    assert not TOP_LEVEL[module] & set(HEAVY), sorted(TOP_LEVEL[module] & set(HEAVY))
