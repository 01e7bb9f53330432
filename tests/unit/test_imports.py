"""The import graph of the product, read from the source (ast; nothing is imported or run).

- No import cycle among stagecoach/, workflows/, activities/ and gcpsim/ (an import inside a
  function counts: it is how the cycles that hid calls from mypy were built).
- gcpsim imports nothing of the product: it simulates Google Cloud, and reads its seed on its
  own.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("stagecoach", "workflows", "activities", "gcpsim")
PRODUCT = ("stagecoach", "workflows", "activities")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            found[module_name(path)] = path
    return found


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported_names(path: Path, name: str) -> Iterator[str]:
    """Every module name `path` imports, anywhere in it (but not under `if TYPE_CHECKING`)."""
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _type_checking_only(node):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the importing module's package
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            yield prefix
            yield from (f"{prefix}.{alias.name}" for alias in node.names)


def graph() -> dict[str, set[str]]:
    """module -> the modules of the tree it imports (a name resolves to the longest known
    module it starts with: `from a.b import c` is a.b.c when that is a module, else a.b)."""
    known = modules()
    edges: dict[str, set[str]] = {m: set() for m in known}
    for mod, path in known.items():
        for imported in imported_names(path, mod):
            parts = imported.split(".")
            while parts and ".".join(parts) not in known:
                parts.pop()
            target = ".".join(parts)
            if target and target != mod:
                edges[mod].add(target)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
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


def test_the_walker_sees_a_cycle_and_a_function_level_import(tmp_path: Path) -> None:
    """The detector itself: a cycle closed by an import inside a function is found."""
    a = tmp_path / "a.py"
    a.write_text("import b\n")
    b = tmp_path / "b.py"
    b.write_text("def f():\n    from a import x\n    return x\n")
    edges = {"a": set(imported_names(a, "a")) & {"b"}, "b": set(imported_names(b, "b")) & {"a"}}
    assert cycles(edges) == [["a", "b"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def _cycles(in_gcpsim: bool) -> list[str]:
    edges = graph()
    assert "stagecoach.cli.app" in edges and "gcpsim.app" in edges
    return [
        " <-> ".join(c)
        for c in cycles(edges)
        if any(m.split(".")[0] == "gcpsim" for m in c) == in_gcpsim
    ]


def test_no_import_cycles_in_the_product() -> None:
    found = _cycles(in_gcpsim=False)
    assert not found, "import cycles: " + "; ".join(found)


def test_no_import_cycles_in_gcpsim() -> None:
    found = _cycles(in_gcpsim=True)
    assert not found, "import cycles: " + "; ".join(found)


def test_gcpsim_imports_nothing_of_the_product() -> None:
    offending = sorted(
        f"{mod} -> {target}"
        for mod, targets in graph().items()
        if mod.split(".")[0] == "gcpsim"
        for target in targets
        if target.split(".")[0] in PRODUCT
    )
    assert not offending, offending
