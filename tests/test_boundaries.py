"""Import hygiene of the package, read from the source (nothing is imported to check it).

- Only ``registry/backbone.py`` and its mixin ``registry/backbone_run.py`` import the ``adapters``
  library or reach into a backbone's raw model (``backbone.model``); everything else goes through
  :class:`registry.backbone.Backbone`.
- The package has no import cycle (counting imports inside functions, which run later but still
  tie two modules together).
- No module below the command line imports it.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "registry"
ENGINE_OWNER = PACKAGE / "backbone.py"
#: The backbone's own modules: the class (loading, adding, saving, training set-up) and its
#: running mixin (forward passes, encoder layers, inspection). Nothing else may use the engine.
ENGINE_OWNERS = (ENGINE_OWNER, PACKAGE / "backbone_run.py")
#: Cycles still to break, named by their modules. Empty when the package is clean.
KNOWN_CYCLES: list[list[str]] = []


@functools.cache
def _modgraph() -> ModuleType:
    spec = importlib.util.spec_from_file_location("modgraph", ROOT / "tools" / "modgraph.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("modgraph", module)
    spec.loader.exec_module(module)
    return module


@functools.cache
def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = _modgraph().build(PACKAGE)[0]
    return graph


def _sources(root: Path = PACKAGE) -> list[Path]:
    return sorted(root.rglob("*.py"))


def engine_users(root: Path = PACKAGE, owners: tuple[Path, ...] = ENGINE_OWNERS) -> list[str]:
    """Return ``file:line what`` for every import of ``adapters`` or ``<backbone>.model`` outside
    the owners."""
    found: list[str] = []
    for path in _sources(root):
        if path in owners:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            where = f"{path.relative_to(root.parent)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Import):
                found += [f"{where} import {a.name}" for a in node.names if _is_adapters(a.name)]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if _is_adapters(node.module):
                    found.append(f"{where} from {node.module} import ...")
            elif (
                isinstance(node, ast.Attribute)
                and node.attr == "model"
                and _names_backbone(node.value)
            ):
                found.append(f"{where} {ast.unparse(node)}")
    return found


def _is_adapters(module: str) -> bool:
    return module == "adapters" or module.startswith("adapters.")


def _names_backbone(node: ast.expr) -> bool:
    if isinstance(node, ast.Name):
        return node.id == "backbone"
    return isinstance(node, ast.Attribute) and node.attr == "backbone"


def test_only_backbone_reaches_the_engine() -> None:
    assert engine_users() == []


def test_the_engine_check_can_fail(tmp_path: Path) -> None:
    pkg = tmp_path / "registry"
    pkg.mkdir()
    (pkg / "backbone.py").write_text("import adapters\nx = backbone.model\n")
    (pkg / "other.py").write_text(
        "from adapters.context import ForwardContext\n"
        "def f(loaded):\n    import adapters\n    return loaded.backbone.model.base_model\n"
    )
    found = engine_users(pkg, (pkg / "backbone.py",))
    assert [f.split(" ", 1)[1] for f in found] == [
        "from adapters.context import ...",
        "import adapters",
        "loaded.backbone.model",
    ]


def test_no_import_cycles() -> None:
    figures = _modgraph().summary(PACKAGE)
    assert figures["module_level_cycles"] == []
    assert figures["cycles"] == KNOWN_CYCLES


def test_the_cycle_check_can_fail(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from .a import x\n")
    (pkg / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import a\n"
    )
    figures = _modgraph().summary(pkg)
    assert figures["cycles"] == [["pkg.a", "pkg.b"]]
    assert figures["module_level_cycles"] == []


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_lower_modules_do_not_import_the_cli(path: Path) -> None:
    name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    if name.startswith(("registry.cli", "registry.__main__")):
        return
    graph = _graph()
    module = name.removesuffix(".__init__")
    upward = sorted(t for t in graph[module] if t.startswith("registry.cli"))
    assert upward == [], f"{module} imports the command line: {upward}"
