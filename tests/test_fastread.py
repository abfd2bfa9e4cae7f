"""The sqlite3 read path of list, show and lineage: same output as the store, no SQLAlchemy."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from registry.cli import cli
from registry.settings import load_settings
from registry.store import EdgeIn, MetricIn, Registry, fastread
from tests._util import add_version, make_artifact, seed_task


def run(*args: str, fast: bool) -> tuple[int, str]:
    env = {fastread.FAST_READ_ENV: "1" if fast else "0"}
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture
def rich_registry(tmp_path: Path) -> Registry:
    """A registry with every kind of row the read commands show."""
    reg = Registry.init(Path(os.environ["ADAPTER_REGISTRY_HOME"]))
    seed_task(reg)
    seed_task(reg, task="topic")
    v1 = add_version(
        reg,
        tmp_path,
        "books",
        b"one",
        metrics=[MetricIn("accuracy", 0.71, split="validation"), MetricIn("loss", 0.6, step=3)],
    )
    data = reg.record_dataset(
        task_id=reg.get_task("sentiment").id,
        source="/data/dvd",
        split="train",
        row_count=10,
        fingerprint="f" * 64,
        label_distribution={"negative": 5, "positive": 5},
    )
    report = reg.record_drift_report(
        task="sentiment",
        reference_adapter_version_id=v1.id,
        new_dataset_id=data.id,
        alpha=0.05,
        tests=[{"name": "mmd", "p_value": 0.01}],
        drift=True,
    )
    v2 = add_version(
        reg,
        tmp_path,
        "dvd",
        b"two",
        lineage=[
            EdgeIn("adapter", v1.id, "warm_started_from"),
            EdgeIn("drift", report.id, "trained_after_drift"),
        ],
    )
    add_version(reg, tmp_path, "news", b"three", task="topic")
    fusion = reg.register_fusion(
        name="sentiment-fusion",
        task="sentiment",
        base_model_id=v1.base_model_id,
        member_ids=[v2.id, v1.id],
        config={"fusion": "dynamic"},
        head={"labels": ["negative", "positive"]},
        artifact_dir=make_artifact(tmp_path / "fusion-src", b"fusion"),
        trainable_params=999,
        training_run={"seed": 1, "hyperparams": {"lr": 5e-4}},
        metrics=[MetricIn("accuracy", 0.8, split="validation")],
        lineage=[EdgeIn("adapter", v1.id, "fused_from"), EdgeIn("adapter", v2.id, "fused_from")],
    )
    reg.set_alias("sentiment", "production", f"f{fusion.id}")
    reg.record_promotion(fusion, 1, None, "production", gate_metric="macro_f1", gate_reason="won")
    reg.tag(f"f{fusion.id}", ["team", "reviewed"])
    reg.describe("dvd@1", "DVD reviews\nsecond line")
    reg.record_promotion(v2, 1, None, "production", gate_metric="accuracy", outcome="refused")
    reg.set_alias("sentiment", "books", "books@1")
    reg.record_hub_link(
        fusion, repo_id="team/fusion", commit_sha="c" * 40, revision="main", direction="push"
    )
    reg.set_status("books@1", "deprecated", force=True)
    return reg


COMMANDS = [
    ["list"],
    ["list", "--json"],
    ["list", "--active", "--json"],
    ["list", "--task", "sentiment", "--kind", "fusion"],
    ["list", "--limit", "1", "--json"],
    ["show", "books@1"],
    ["show", "books@1", "--json"],
    ["show", "books", "--json"],  # every version deprecated: the store's error
    ["show", "dvd", "--json"],
    ["show", "dvd@1"],
    ["show", "sentiment:production"],
    ["show", "sentiment:production", "--json"],
    ["show", "f1", "--json"],
    ["show", "1", "--json"],  # a1 and f1 both exist: the store's ambiguity error
    ["show", "3"],
    ["show", "sentiment:nope"],
    ["show", "dvd@x"],
    ["show", "nothing"],
    ["lineage", "dvd@1"],
    ["lineage", "sentiment:production", "--format", "mermaid"],
    ["lineage", "books@1", "--format", "json"],
    ["list", "--task", "nope"],
]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a))
def test_fast_and_full_paths_print_the_same(rich_registry: Registry, args: list[str]) -> None:
    assert run(*args, fast=True) == run(*args, fast=False)


def test_reader_answers_plain_reads_and_defers_the_rest(rich_registry: Registry) -> None:
    with fastread.SqliteReader(load_settings()) as reader:
        fusion = reader.resolve("sentiment:production")
        assert fusion.kind == "fusion" and fusion.members == ("dvd@1", "books@1")
        assert reader.resolve("books@1").status == "deprecated"
        promoted, refused = reader.promotion_of(fusion), reader.promotion_of(reader.resolve("dvd"))
        assert promoted is not None and refused is not None
        assert (promoted.outcome, promoted.gate_metric) == ("promoted", "macro_f1")
        assert (refused.outcome, refused.gate_metric) == ("refused", "accuracy")
        assert reader.promotion_of(reader.resolve("books@1")) is None
        assert reader.tags(fusion) == ["reviewed", "team"]
        assert reader.description(reader.resolve("dvd")) == "DVD reviews\nsecond line"
        assert (reader.tags(reader.resolve("dvd")), reader.description(fusion)) == ([], None)
        assert [a.target_ref for a in reader.aliases()] == ["books@1", "sentiment-fusion@1"]
        for ref in ("books", "1", "sentiment:nope", "nothing", "dvd@x", "a99"):
            with pytest.raises(fastread.Fallback):
                reader.resolve(ref)
        with pytest.raises(fastread.Fallback):
            reader.list_entities(task="nope")


def test_non_sqlite_missing_or_outdated_databases_fall_back(tmp_path: Path) -> None:
    with pytest.raises(fastread.Fallback):
        fastread.SqliteReader(load_settings(db_url="postgresql://u@127.0.0.1/x"))
    with pytest.raises(fastread.Fallback):
        fastread.SqliteReader(load_settings(home=tmp_path / "missing"))
    reg = Registry.init(tmp_path / "old")
    with reg.db.engine.begin() as conn:  # pretend the schema is one revision behind
        conn.execute(text("UPDATE alembic_version SET version_num = '0001'"))
    with pytest.raises(fastread.Fallback):
        fastread.SqliteReader(load_settings(home=tmp_path / "old"))
    code, out = run("--home", str(tmp_path / "old"), "list", fast=True)
    assert code == 1 and "out of date" in out and "db upgrade" in out


def test_read_commands_do_not_import_sqlalchemy(rich_registry: Registry) -> None:
    code = (
        "import sys; from registry.cli import main\n"
        "for argv in (['list', '--json'], ['show', 'dvd@1'], ['lineage', 'dvd@1']):\n"
        "    try:\n        main(argv)\n"
        "    except SystemExit as e:\n        assert e.code == 0, (argv, e.code)\n"
        "assert 'sqlalchemy' not in sys.modules\n"
        "assert 'torch' not in sys.modules\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy()
    )
    assert proc.returncode == 0, proc.stderr


def test_start_up_and_list_import_only_what_they_use(rich_registry: Registry) -> None:
    """The CLI's start-up loads no entities or store modules (registry.store is lazy), and
    ``list``/``lineage`` do not open the artifact store (only ``show`` needs it)."""
    code = (
        "import sys; import registry.cli\n"
        "early = [m for m in ('registry.entities', 'registry.store.inputs') if m in sys.modules]\n"
        "assert not early, early\n"
        "from registry.cli import main\n"
        "for argv in (['list', '--json'], ['lineage', 'dvd@1']):\n"
        "    try:\n        main(argv)\n"
        "    except SystemExit as e:\n        assert e.code == 0, (argv, e.code)\n"
        "assert 'registry.artifact_store' not in sys.modules\n"
        "import registry.store as s\n"
        "assert all(getattr(s, name) is not None for name in s.__all__)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy()
    )
    assert proc.returncode == 0, proc.stderr


def test_fast_reader_restates_no_mapping() -> None:
    """The fast reader is SQL only: entities come from registry.store.mappers, as in the store."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(fastread))
    built = sorted(
        {
            node.func.attr
            for node in ast.walk(tree)
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "E"
        }
    )
    assert built == []
