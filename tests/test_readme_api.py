"""The README's Python API blocks run as written (#18), and its MLflow/PEFT table names tests
that exist."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests._hubfixture import HubServer
from tests._util import sentiment_rows, write_splits

README = Path(__file__).resolve().parents[1] / "README.md"


def _section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(title)
    end = text.find("\n## ", start + len(title))
    return text[start : end if end != -1 else len(text)]


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", _section("## Python API"), flags=re.S)


def test_readme_python_api_blocks_run(
    hub_server: HubServer, tiny_base_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocks = _python_blocks()
    assert len(blocks) == 4
    for name in (
        "predict(",
        "evaluate_entity(",
        "check_drift(",
        "update(",
        "hub.push(",
        "hub.pull(",
    ):
        assert any(name in b for b in blocks), name
    work = tmp_path / "work"
    shutil.copytree(tiny_base_dir, work / "minilm")
    for i, folder in enumerate(("books", "dvd", "kitchen")):
        write_splits(
            work / "data" / folder,
            {
                "train": sentiment_rows(32, 10 * i),
                "validation": sentiment_rows(16, 10 * i + 1),
                "test": sentiment_rows(8, 10 * i + 2),
            },
        )
    monkeypatch.chdir(work)
    monkeypatch.setenv("ADAPTER_REGISTRY_HOME", str(work / "home"))
    code = "\n".join(blocks).replace("my-org/", "test-user/")
    namespace: dict[str, object] = {}
    exec(compile(code, str(README), "exec"), namespace)  # noqa: S102 - our own README
    pulled, pushed = namespace["pulled"], namespace["pushed"]
    assert pulled.entity.ref == "books@1" and pulled.commit_sha == pushed.commit_sha  # type: ignore[attr-defined]
    assert len(namespace["rows"]) == 8  # type: ignore[arg-type]  # the test split
    assert namespace["step"].gate  # type: ignore[attr-defined]


def test_mlflow_peft_table_names_tests_that_exist() -> None:
    table = _section("### Coming from MLflow / PEFT")
    rows = [line for line in table.splitlines() if line.startswith("| ")][2:]  # no header
    assert len(rows) >= 10
    root = README.parent
    for row in rows:
        cited = re.findall(r"`(tests/[\w/]+\.py)(?:::(\w+))?`", row.rsplit("|", 2)[-2])
        assert cited, row
        for path, name in cited:
            source = (root / path).read_text(encoding="utf-8")
            assert not name or f"def {name}(" in source, f"{path}::{name}"
