"""List the files over 500 lines and the functions over 80 lines of a package that carry no reason.

Usage: python tools/sizes.py [PACKAGE_DIR ...] [--all]

A long file or function is allowed when it says why: a ``# long: <reason>`` comment in the
file's header (before its first import or other statement after the docstring), or, for a
function, in the comment lines right above its ``def`` (or its decorators) or before the first
statement of its body (after the docstring). ``--all`` lists every long one, with its reason.
Exits 1 when any has no reason. Reads the source only (``ast``; nothing is imported).
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from dataclasses import dataclass
from pathlib import Path

MAX_FILE_LINES = 500
MAX_FUNCTION_LINES = 80
_REASON = re.compile(r"^\s*#\s*long:\s*(\S.*)$")


@dataclass(frozen=True)
class Long:
    """One file or function over its limit."""

    where: str  # path, or path:line for a function
    what: str  # "file" or the function's dotted name
    lines: int
    reason: str | None

    def __str__(self) -> str:
        why = f"  # long: {self.reason}" if self.reason else "  (no reason given)"
        return f"{self.where} {self.what} {self.lines} lines{why}"


def _reason_in(lines: list[str], start: int, stop: int) -> str | None:
    """Return the reason of the first ``# long:`` comment in ``lines[start:stop]`` (0-based)."""
    for text in lines[max(start, 0) : max(stop, 0)]:
        found = _REASON.match(text)
        if found:
            return found.group(1).strip()
    return None


def _comment_block_above(lines: list[str], first: int) -> str | None:
    """Return the reason in the block of comment lines directly above line ``first`` (1-based)."""
    i = first - 2
    while i >= 0 and lines[i].lstrip().startswith("#"):
        found = _REASON.match(lines[i])
        if found:
            return found.group(1).strip()
        i -= 1
    return None


def _body_start(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Module) -> int:
    """Return the 1-based line of the first statement after the docstring (or past the end)."""
    body = node.body
    if (
        body
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)
    ):
        body = body[1:]
    if body:
        return min([body[0].lineno] + [d.lineno for d in getattr(body[0], "decorator_list", [])])
    return (node.end_lineno or 0) + 1 if not isinstance(node, ast.Module) else 10**9


def check_file(path: Path, root: Path) -> list[Long]:
    """Return every file or function of ``path`` over its limit."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    tree = ast.parse(text)
    rel = str(path.relative_to(root))
    found: list[Long] = []
    if len(lines) > MAX_FILE_LINES:
        reason = _reason_in(lines, 0, min(_body_start(tree), len(lines) + 1) - 1)
        found.append(Long(rel, "file", len(lines), reason))

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = f"{prefix}{child.name}"
                size = (child.end_lineno or child.lineno) - child.lineno + 1
                if size > MAX_FUNCTION_LINES:
                    first = min([child.lineno] + [d.lineno for d in child.decorator_list])
                    reason = _comment_block_above(lines, first) or _reason_in(
                        lines, child.lineno, _body_start(child) - 1
                    )
                    found.append(Long(f"{rel}:{child.lineno}", name, size, reason))
                visit(child, f"{name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(tree, "")
    return found


def check(package: Path) -> list[Long]:
    """Return every long file or function under ``package``, sorted by place."""
    out: list[Long] = []
    for path in sorted(package.rglob("*.py")):
        out += check_file(path, package.parent)
    return out


def main(argv: list[str] | None = None) -> int:
    """Print the long files and functions without a reason (with ``--all``, every one)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("packages", nargs="*", default=["registry"])
    parser.add_argument("--all", action="store_true", help="list the ones with a reason too")
    args = parser.parse_args(argv)
    found = [f for p in args.packages for f in check(Path(p).resolve())]
    missing = [f for f in found if f.reason is None]
    for f in found if args.all else missing:
        print(f)
    print(f"{len(found)} long, {len(missing)} without a reason", file=sys.stderr)
    return 1 if missing else 0


if __name__ == "__main__":
    raise SystemExit(main())
