"""Every ``RegistryError`` raised towards a user carries a hint: the next command to run.

Read from the source (``ast``): a ``raise X(...)`` where ``X`` is ``RegistryError`` or one of its
subclasses must pass a hint (second argument or ``hint=``). The allowlist names the few raises
that never reach a user as they are, each with the reason.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable
from pathlib import Path

import pytest

from registry import errors

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "registry"

#: ``path:function`` → why that raise needs no hint of its own. Keep it short.
ALLOWED: dict[str, str] = {}


def _error_names() -> set[str]:
    return {
        name
        for name, value in vars(errors).items()
        if inspect.isclass(value) and issubclass(value, errors.RegistryError)
    }


def hintless_raises(root: Path = PACKAGE, names: set[str] | None = None) -> list[str]:
    """Return ``path:function:line`` of every raise of a registry error without a hint."""
    names = names if names is not None else _error_names()
    found: list[str] = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        rel = path.relative_to(root.parent)
        for func, node in _raises(tree):
            call = node.exc
            if not isinstance(call, ast.Call):
                continue
            target = call.func
            name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
            if name not in names:
                continue
            has_hint = len(call.args) >= 2 or any(
                k.arg == "hint" or k.arg is None for k in call.keywords
            )
            if not has_hint:
                found.append(f"{rel}:{func}:{node.lineno}")
    return found


def _raises(tree: ast.AST) -> list[tuple[str, ast.Raise]]:
    out: list[tuple[str, ast.Raise]] = []

    def visit(node: ast.AST, func: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                visit(child, child.name)
            elif isinstance(child, ast.Raise) and child.exc is not None:
                out.append((func, child))
                visit(child, func)
            else:
                visit(child, func)

    visit(tree, "<module>")
    return out


def _allowed(where: str) -> bool:
    path, func, _line = where.rsplit(":", 2)
    return f"{path}:{func}" in ALLOWED


def test_every_registry_error_carries_a_hint() -> None:
    missing = [w for w in hintless_raises() if not _allowed(w)]
    assert missing == [], "raised without a hint:\n" + "\n".join(missing)


def test_the_allowlist_is_still_needed() -> None:
    used = {w.rsplit(":", 1)[0] for w in hintless_raises()}
    assert sorted(set(ALLOWED) - used) == []


def test_the_hint_check_can_fail(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "m.py").write_text(
        "from . import errors as E\n"
        "def f(x):\n"
        "    if x:\n"
        "        raise NotFound('gone')\n"
        "    if x > 1:\n"
        "        raise E.InvalidInput(f'bad {x}', hint='run: adapter-registry list')\n"
        "    if x > 2:\n"
        "        raise InvalidInput('bad', 'use another')\n"
        "    raise E.HubError('down')\n"
        "raise ValueError('not ours')\n"
    )
    found = hintless_raises(pkg, {"NotFound", "InvalidInput", "HubError"})
    assert found == ["pkg/m.py:f:4", "pkg/m.py:f:9"]


def _refusals() -> list[tuple[str, Callable[[], object]]]:
    """Library calls that refuse their arguments (drift's are mutation-tested: make mutants)."""
    import numpy as np

    from registry import drift, evaluate

    rows = np.zeros((4, 3))
    profile = drift.ReferenceProfile(embeddings=rows)
    return [
        ("alpha", lambda: drift.detect_drift(profile, profile, alpha=1.5)),
        ("permutations", lambda: drift.mmd_permutation_test(rows, rows, n_permutations=-1)),
        ("max_samples", lambda: drift.mmd_permutation_test(rows, rows, max_samples=1)),
        ("rows", lambda: drift.mmd_permutation_test(rows[:1], rows)),
        ("nan", lambda: drift.mmd_permutation_test(rows * np.nan, rows)),
        ("labels", lambda: drift.label_shift_test({"a": 0}, {"a": 3})),
        ("counts", lambda: drift.label_shift_test({"a": -1}, {"a": 3})),
        ("pairs", lambda: evaluate.classification_metrics(["a"], ["a", "b"], ["a", "b"])),
    ]


@pytest.mark.parametrize("case", range(8))
def test_library_refusals_carry_their_hint(case: int) -> None:
    name, call = _refusals()[case]
    with pytest.raises(errors.RegistryError) as caught:
        call()
    assert caught.value.hint, f"{name}: no hint on {caught.value.message!r}"
