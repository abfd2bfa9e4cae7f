"""Count the modules of a package, the imports between them and the import cycles.

Usage: python tools/modgraph.py [PACKAGE_DIR] [--json]

Reads the source only (``ast``; nothing is imported). An edge A → B means module A imports
module B of the same package at run time: imports under ``if TYPE_CHECKING:`` are left out,
imports inside functions are counted (and reported apart, as "deferred"). ``from .pkg import
name`` counts as an import of ``pkg.name`` when that is a module, else of ``pkg``. Cycles are
the strongly connected components with more than one module, for the graph of every run-time
import and for the graph of module-level imports only (those fail at import time).
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from collections.abc import Iterator
from pathlib import Path


def module_names(root: Path) -> dict[str, Path]:
    """Return dotted module name → file for every ``.py`` file under the package ``root``."""
    out: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.Module) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Yield (import node, deferred?) for every run-time import in a module."""

    def walk(
        nodes: list[ast.stmt], deferred: bool
    ) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
        for node in nodes:
            if isinstance(node, ast.Import | ast.ImportFrom):
                yield node, deferred
            elif isinstance(node, ast.If) and _is_type_checking(node):
                yield from walk(node.orelse, deferred)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                yield from walk(list(node.body) if isinstance(node.body, list) else [], True)
            else:
                for field in ("body", "orelse", "finalbody", "handlers"):
                    children = getattr(node, field, None)
                    if isinstance(children, list):
                        stmts = [c for c in children if isinstance(c, ast.stmt | ast.excepthandler)]
                        flat: list[ast.stmt] = []
                        for c in stmts:
                            flat.extend(c.body if isinstance(c, ast.excepthandler) else [c])
                        yield from walk(flat, deferred)

    yield from walk(tree.body, False)


def _targets(
    node: ast.Import | ast.ImportFrom, here: str, is_pkg: bool, known: set[str]
) -> set[str]:
    if isinstance(node, ast.Import):
        bases = [a.name for a in node.names]
        return {b for b in (_longest_known(n, known) for n in bases) if b}
    if node.level:
        package = here if is_pkg else here.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{node.module}" if node.module else package
    else:
        base = node.module or ""
    out: set[str] = set()
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        if sub in known:
            out.add(sub)
        else:
            hit = _longest_known(base, known)
            if hit:
                out.add(hit)
    return out


def _longest_known(name: str, known: set[str]) -> str | None:
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def build(root: Path) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """Return (every run-time import edge, module-level edges only) as adjacency sets."""
    modules = module_names(root)
    known = set(modules)
    every: dict[str, set[str]] = {m: set() for m in modules}
    top: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        is_pkg = path.name == "__init__.py"
        for node, deferred in _imports(tree):
            for target in _targets(node, name, is_pkg, known) - {name}:
                every[name].add(target)
                if not deferred:
                    top[name].add(target)
    return every, top


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Return the strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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
                out.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def summary(root: Path) -> dict[str, object]:
    """Return the figures: modules, edges (all / deferred / module-level) and cycles."""
    every, top = build(root)
    n_every = sum(len(v) for v in every.values())
    n_top = sum(len(v) for v in top.values())
    return {
        "modules": len(every),
        "import_edges": n_every,
        "module_level_edges": n_top,
        "deferred_only_edges": n_every - n_top,
        "cycles": cycles(every),
        "module_level_cycles": cycles(top),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package", nargs="?", default="registry", type=Path)
    parser.add_argument("--json", action="store_true", help="Print JSON.")
    args = parser.parse_args(argv)
    figures = summary(args.package.resolve())
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    print(
        f"{figures['modules']} modules, {figures['import_edges']} import edges "
        f"({figures['module_level_edges']} module-level, {figures['deferred_only_edges']} only "
        "inside functions)"
    )
    for key in ("cycles", "module_level_cycles"):
        found = figures[key]
        assert isinstance(found, list)
        print(f"{key.replace('_', ' ')}: {len(found)}")
        for component in found:
            print("  " + " <-> ".join(component))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
