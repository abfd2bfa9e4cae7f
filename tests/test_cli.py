"""The command line: exact output, exit codes, JSON, and no heavy imports for read commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from registry.cli import cli
from registry.store import EdgeIn, Registry
from tests._util import add_version, seed_task


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture
def populated(tmp_path: Path) -> Registry:
    reg = Registry.init(Path(os.environ["ADAPTER_REGISTRY_HOME"]))
    seed_task(reg)
    v1 = add_version(reg, tmp_path, "books", b"one")
    add_version(
        reg, tmp_path, "books", b"two", lineage=[EdgeIn("adapter", v1.id, "warm_started_from")]
    )
    return reg


def test_init_then_list_empty() -> None:
    code, out = run("init")
    assert code == 0 and out.startswith("Registry ready at ") and "schema 0007" in out
    code, out = run("list")
    assert code == 0
    assert out.startswith("No adapters or fusions yet.")
    code, out = run("list", "--json")
    assert (code, json.loads(out)) == (0, [])


def test_missing_registry_is_a_clear_error() -> None:
    code, out = run("list")
    home = os.environ["ADAPTER_REGISTRY_HOME"]
    assert code == 1
    assert (
        out == f"Error: No registry at {home}.\n"
        "Hint: Run: adapter-registry init (or set ADAPTER_REGISTRY_HOME)\n"
    )


def test_home_in_missing_folder_is_refused(tmp_path: Path) -> None:
    code, out = run("--home", str(tmp_path / "no" / "such" / "home"), "init")
    assert code == 1
    assert out.startswith(
        "Error: The folder that should hold the registry home does not exist: "
        f"{tmp_path / 'no' / 'such'}"
    )
    assert not (tmp_path / "no").exists()


def test_list_show_json(populated: Registry) -> None:
    code, out = run("list", "--json")
    assert code == 0
    rows = json.loads(out)
    assert [r["ref"] for r in rows] == ["books@1", "books@2"]
    assert rows[0]["id"] == "a1" and rows[0]["method"] == "seq_bn" and rows[0]["aliases"] == []
    code, out = run("show", "books", "--json")
    data = json.loads(out)
    assert code == 0
    assert data["ref"] == "books@2"
    assert data["parents"] == [{"relation": "warm_started_from", "ref": "books@1"}]
    assert data["base_model"]["name"] == "tiny-bert"
    assert data["training_run"]["hyperparams"] == {"lr": 0.001}
    code, out = run("list")
    assert code == 0 and "books@1" in out and "books@2" in out and "sentiment" in out


def test_unknown_ref_exit_1_and_usage_exit_2(populated: Registry) -> None:
    code, out = run("show", "nope")
    assert (code, out) == (
        1,
        "Error: No adapter or fusion matches 'nope'.\nHint: Run: adapter-registry list\n",
    )
    result = CliRunner().invoke(cli, ["show"])
    assert result.exit_code == 2 and "Missing argument 'REF'" in result.output
    result = CliRunner().invoke(cli, ["lineage", "books", "--format", "dot"])
    assert result.exit_code == 2


def test_alias_and_lineage_formats(populated: Registry) -> None:
    code, out = run("alias", "sentiment", "production", "books@1")
    assert (code, out) == (0, "sentiment:production → books@1\n")
    code, out = run("show", "sentiment:production", "--json")
    assert json.loads(out)["aliases"] == ["sentiment:production"]
    code, out = run("lineage", "books@1")
    assert code == 0
    assert out.splitlines() == [
        "books@1 [adapter]",
        "descendants:",
        "└── ⟶ warm_started_from: books@2 [adapter]",
    ]
    code, out = run("lineage", "books@2", "--format", "mermaid")
    assert out.splitlines()[0] == "graph TD"
    assert "-->|warm_started_from|" in out
    code, out = run("lineage", "books@2", "--format", "json")
    assert json.loads(out)["edges"] == [
        {"parent": "adapter:1", "child": "adapter:2", "relation": "warm_started_from"}
    ]


def test_alias_of_other_task_writes_nothing(populated: Registry, tmp_path: Path) -> None:
    populated.ensure_task(
        "topic", "single", ["a", "b"], ["text"], populated.get_task("sentiment").base_model_id
    )
    add_version(populated, tmp_path, "news", b"n", task="topic")
    code, out = run("alias", "sentiment", "production", "news@1")
    assert code == 1
    assert out.startswith("Error: news@1 belongs to task 'topic', not 'sentiment'")
    assert populated.aliases() == []


def test_verify_and_gc_commands(populated: Registry, tmp_path: Path) -> None:
    code, out = run("verify", "--json")
    data = json.loads(out)
    assert code == 0 and data["ok"] is True and data["artifacts_checked"] == 2
    v = populated.resolve("books@1")
    f = populated.artifacts.path_for(v.artifact_sha256) / "weights.bin"
    f.chmod(0o644)
    f.write_bytes(b"tampered")
    code, out = run("verify")
    assert code == 1
    assert "DAMAGED: adapter books@1" in out and "weights.bin" in out
    code, out = run("gc", "--grace", "0")
    assert (code, out) == (0, "Removed 0 unreferenced item(s).\n")


def test_debug_env_shows_traceback(populated: Registry) -> None:
    result = CliRunner().invoke(cli, ["show", "nope"], env={"ADAPTER_REGISTRY_DEBUG": "1"})
    assert result.exit_code == 1
    assert "Traceback" in result.output and "NotFound" in result.output


def test_list_does_not_import_torch(populated: Registry) -> None:
    code = (
        "import sys; from registry.cli import main\n"
        "try:\n    main(['list', '--json'])\n"
        "except SystemExit as e:\n    assert e.code == 0, e.code\n"
        "heavy = [m for m in ('torch', 'transformers', 'adapters', 'huggingface_hub', 'datasets')"
        " if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy()
    )
    assert proc.returncode == 0, proc.stderr


def test_python_dash_m_and_every_command_has_an_example() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "registry", "--help"], capture_output=True, text=True
    )
    assert proc.returncode == 0 and "Usage:" in proc.stdout

    def walk(group: object, path: list[str]) -> list[list[str]]:
        import click

        out = []
        for name, cmd in getattr(group, "commands", {}).items():
            out.append(path + [name])
            if isinstance(cmd, click.Group):
                out.extend(walk(cmd, path + [name]))
        return out

    for path in walk(cli, []):
        code, out = run(*path, "--help")
        assert code == 0
        assert "Example:" in out, f"{' '.join(path)} --help has no example"


def test_list_limit_keeps_the_newest(populated: Registry, tmp_path: Path) -> None:
    add_version(populated, tmp_path, "books", b"three")
    code, out = run("list", "--limit", "2", "--json")
    assert code == 0
    assert [r["ref"] for r in json.loads(out)] == ["books@2", "books@3"]
    code, out = run("list", "--limit", "0", "--json")
    assert [r["ref"] for r in json.loads(out)] == ["books@1", "books@2", "books@3"]
