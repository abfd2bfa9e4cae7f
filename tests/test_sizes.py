"""No file over 500 lines and no function over 80 lines without a stated reason (tools/sizes.py).

A reason is a ``# long: <why>`` comment in the file's header, or above the function's ``def``
(or its decorators), or before the first statement of its body.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


@functools.cache
def _sizes() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sizes", ROOT / "tools" / "sizes.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("sizes", module)
    spec.loader.exec_module(module)
    return module


def test_long_files_and_functions_state_why() -> None:
    missing = [str(f) for f in _sizes().check(ROOT / "registry") if f.reason is None]
    assert missing == [], "over the limit without a '# long: <reason>' comment:\n" + "\n".join(
        missing
    )


def _body(n: int, indent: str = "    ") -> str:
    return "".join(f"{indent}x{i} = {i}\n" for i in range(n))


def test_the_size_check_can_fail(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "short.py").write_text("def f():\n" + _body(78))  # 79 lines: under the limit
    (pkg / "bare.py").write_text("def f():\n" + _body(80))  # 81 lines
    (pkg / "above.py").write_text("import x\n\n# long: a reason\n@x.y\ndef f():\n" + _body(80))
    (pkg / "inside.py").write_text(
        'class C:\n    def m(self):\n        """Doc."""\n        # long: why\n'
        + _body(80, "        ")
    )
    (pkg / "stray.py").write_text("# long: not next to the def\n\nx = 1\n\ndef f():\n" + _body(80))
    (pkg / "big.py").write_text('"""Doc."""\n\n' + "x = 1\n" * 499)
    (pkg / "big_ok.py").write_text(
        '"""Doc."""\n\n# long: generated table\nimport os\n' + "x = 1\n" * 499
    )
    found = {(Path(f.where.split(":")[0]).name, f.what): f.reason for f in _sizes().check(pkg)}
    assert found == {
        ("bare.py", "f"): None,
        ("above.py", "f"): "a reason",
        ("inside.py", "C.m"): "why",
        ("stray.py", "f"): None,
        ("big.py", "file"): None,
        ("big_ok.py", "file"): "generated table",
    }
