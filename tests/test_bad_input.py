"""Bad input at the store and command-line level: a clear message, a non-zero exit, no change.

Each case snapshots every table's row count, the schema revision and the artifact folders before
and after, and asserts that they are equal: a refused command writes nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, inspect, text

from registry.cli import cli
from registry.errors import InvalidInput, NotFound, RegistryError, SchemaOutOfDate
from registry.store import EdgeIn, Registry
from tests._util import add_version, make_artifact, seed_task

Snapshot = dict[str, Any]


def run(*args: str, db: str | None = None) -> tuple[int, str]:
    argv = (["--db", db] if db else []) + list(args)
    result = CliRunner().invoke(cli, argv, catch_exceptions=False)
    return result.exit_code, result.output


def snapshot(reg: Registry) -> Snapshot:
    """Return row counts of every table, the schema revision and the artifact folders."""
    engine = create_engine(reg.settings.db_url)
    try:
        with engine.connect() as conn:
            tables = sorted(inspect(conn).get_table_names())
            counts = {t: conn.execute(text(f'SELECT count(*) FROM "{t}"')).scalar() for t in tables}
            revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    finally:
        engine.dispose()
    root = reg.settings.artifact_root
    return {
        "counts": counts,
        "revision": revision,
        "artifacts": reg.artifacts.all_ids(),
        "files": sorted(str(p.relative_to(root)) for p in root.rglob("*")),
    }


@pytest.fixture
def populated(registry: Registry, tmp_path: Path) -> Registry:
    """books@1, books@2 (warm-started from @1), dvd@1 and the fusion mix@1 (id 1, like a1)."""
    return _populate(registry, tmp_path)


def _populate(registry: Registry, tmp_path: Path) -> Registry:
    base_id, _ = seed_task(registry)
    v1 = add_version(registry, tmp_path, "books", b"one")
    add_version(
        registry, tmp_path, "books", b"two", lineage=[EdgeIn("adapter", v1.id, "warm_started_from")]
    )
    dvd = add_version(registry, tmp_path, "dvd", b"three")
    registry.register_fusion(
        name="mix",
        task="sentiment",
        base_model_id=base_id,
        member_ids=[v1.id, dvd.id],
        config={"kind": "dynamic"},
        head={"labels": ["negative", "positive"]},
        artifact_dir=make_artifact(tmp_path / "fusion", b"fusion"),
        trainable_params=10,
    )
    registry.set_alias("sentiment", "production", "books@1")
    return registry


@pytest.fixture
def unchanged(populated: Registry, backend_url: str | None) -> Iterator[Callable[[], None]]:
    """Yield a check that the registry equals its snapshot from before the test's commands."""
    before = snapshot(populated)

    def check() -> None:
        assert snapshot(populated) == before

    yield check
    check()


# ---------------------------------------------------------------------- references
def test_ref_that_does_not_exist(
    populated: Registry, backend_url: str | None, unchanged: Callable[[], None]
) -> None:
    with pytest.raises(NotFound, match="No adapter or fusion matches 'nope'"):
        populated.resolve("nope")
    with pytest.raises(NotFound, match="No adapter or fusion matches 'nope'"):
        populated.set_alias("sentiment", "staging", "nope")
    hint = "Hint: Run: adapter-registry list\n"
    for args in (
        ("show", "nope"),
        ("alias", "sentiment", "staging", "nope"),
        ("deprecate", "nope"),
    ):
        assert run(*args, db=backend_url) == (
            1,
            "Error: No adapter or fusion matches 'nope'.\n" + hint,
        )
    code, out = run("lineage", "books@9", db=backend_url)
    assert (code, out) == (
        1,
        "Error: 'books' has no version matching 'books@9'.\n"
        "Hint: Run: adapter-registry show books@1\n",
    )
    code, out = run("show", "a99", db=backend_url)
    assert (code, out) == (1, "Error: No adapter matches 'a99'.\n" + hint)


def test_ambiguous_bare_id(
    populated: Registry, backend_url: str | None, unchanged: Callable[[], None]
) -> None:
    message = "The id 1 is ambiguous: both adapter version a1 and fusion f1 exist."
    with pytest.raises(InvalidInput, match=message) as info:
        populated.set_status("1", "deprecated")
    assert info.value.hint == "Use a1 or f1."
    for args in (("show", "1"), ("alias", "sentiment", "staging", "1"), ("deprecate", "1")):
        assert run(*args, db=backend_url) == (1, f"Error: {message}\nHint: Use a1 or f1.\n")


def test_alias_on_deprecated_adapter(
    populated: Registry, backend_url: str | None, tmp_path: Path
) -> None:
    populated.set_status("books@2", "deprecated")
    before = snapshot(populated)
    with pytest.raises(InvalidInput, match="books@2 is deprecated; an alias cannot point at it"):
        populated.set_alias("sentiment", "production", "books@2")
    code, out = run("alias", "sentiment", "production", "books@2", db=backend_url)
    assert (code, out) == (
        1,
        "Error: books@2 is deprecated; an alias cannot point at it.\n"
        "Hint: Pick an active version: adapter-registry list --task sentiment\n",
    )
    assert snapshot(populated) == before
    assert [a.target_ref for a in populated.aliases("sentiment")] == ["books@1"]


# ---------------------------------------------------------------------- names
@pytest.mark.parametrize("bad", ["", "..", "a/b", "../x", "/abs"])
def test_bad_names_in_alias_command(
    populated: Registry, backend_url: str | None, unchanged: Callable[[], None], bad: str
) -> None:
    code, out = run("alias", "sentiment", bad, "books@1", db=backend_url)
    assert code == 1
    assert out.startswith(f"Error: Invalid alias {bad!r}: use letters, digits, '_' or '-'")
    assert out.endswith("Hint: e.g. production, staging\n")
    code, out = run("alias", bad, "production", "books@1", db=backend_url)
    assert code == 1
    if bad:
        assert out.startswith(f"Error: Invalid task name {bad!r}: use 1-128 letters")
    else:
        assert out.startswith("Error: The task name is empty.\n")
    assert "Hint: " in out
    code, out = run("alias", "sentiment", "production", bad, db=backend_url)
    assert code == 1
    if bad:
        assert out == (
            f"Error: No adapter or fusion matches {bad!r}.\nHint: Run: adapter-registry list\n"
        )
    else:
        assert out == "Error: The reference is empty.\nHint: Run: adapter-registry list\n"


def test_home_option_with_dots_and_slashes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "work" / "sub"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    before = sorted(tmp_path.rglob("*"))
    code, out = run("--home", "..", "list")
    assert (code, out) == (
        1,
        f"Error: No registry at {work / '..'}.\n"
        "Hint: Run: adapter-registry init (or set ADAPTER_REGISTRY_HOME)\n",
    )
    code, out = run("--home", "no/such/home", "init")
    assert code == 1
    assert out.startswith(
        f"Error: The folder that should hold the registry home does not exist: {work / 'no/such'}"
    )
    (work / "a-file").write_text("x")
    before.append(work / "a-file")
    code, out = run("--home", "a-file", "init")
    assert code == 2 and "is a file" in out
    assert sorted(tmp_path.rglob("*")) == before


def test_empty_home_option_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, out = run("--home", "", "init")
    assert not (tmp_path / "registry.db").exists()
    assert code != 0 and "empty" in out


# ---------------------------------------------------------------------- the database itself
def test_database_file_that_is_not_sqlite(tmp_path: Path) -> None:
    home = tmp_path / "home"
    Registry.init(home).close()
    garbage = bytes(range(256)) * 64
    (home / "registry.db").write_bytes(garbage)
    for args in (("list",), ("show", "books@1"), ("init",), ("db", "upgrade"), ("verify",)):
        code, out = run(*args)
        assert code == 1, args
        assert out.startswith("Error: The registry database is not a SQLite database: "), out
        assert "Hint: Point ADAPTER_REGISTRY_HOME/ADAPTER_REGISTRY_DB at a registry" in out
    with pytest.raises(RegistryError, match="not a SQLite database"):
        Registry.open(home)
    assert (home / "registry.db").read_bytes() == garbage
    assert sorted(p.name for p in home.iterdir()) == ["artifacts", "registry.db"]


def test_database_from_a_newer_schema_is_refused_not_downgraded(
    populated: Registry, backend_url: str | None
) -> None:
    with populated.db.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    before = snapshot(populated)
    for args in (
        ("list",),
        ("init",),
        ("db", "upgrade"),
        ("alias", "sentiment", "staging", "books@1"),
    ):
        code, out = run(*args, db=backend_url)
        assert code == 1, args
        assert out.startswith(
            "Error: The database schema is at revision 0099, which is newer than this "
            "adapter-registry knows (head 0007); it was not changed.\n"
        ), out
        assert out.endswith("Hint: Upgrade adapter-registry: pip install -U adapter-registry\n")
    with pytest.raises(SchemaOutOfDate, match="newer"):
        Registry.open(populated.settings.home, backend_url)
    assert snapshot(populated) == before
    assert before["revision"] == "0099"


def test_database_path_in_a_folder_that_does_not_exist(tmp_path: Path) -> None:
    folder = tmp_path / "no" / "such"
    url = f"sqlite:///{folder / 'registry.db'}"
    code, out = run("list", db=url)
    assert (code, out) == (
        1,
        f"Error: No registry database at {folder / 'registry.db'} (its folder does not exist).\n"
        "Hint: Check --db / ADAPTER_REGISTRY_DB, or create it: adapter-registry init\n",
    )
    code, out = run("init", db=url)
    assert (code, out) == (
        1,
        f"Error: The folder for the database does not exist: {folder}\n"
        f"Hint: Create it (mkdir -p {folder}) or set ADAPTER_REGISTRY_HOME.\n",
    )
    assert not (tmp_path / "no").exists()
    with pytest.raises(NotFound, match="No registry database at"):
        Registry.open(tmp_path / "home", url)


# ---------------------------------------------------------------------- read-only home
READ_ONLY_SCRIPT = r"""
import json, sys
from pathlib import Path
from registry.errors import RegistryError
from registry.store import Registry

home, src = sys.argv[1], Path(sys.argv[2])
out = {}
with Registry.open(home) as reg:
    out["refs"] = [e.ref for e in reg.list_entities()]
    out["ok"] = reg.verify().ok
    try:
        base = reg.get_task("sentiment").base_model_id
        reg.register_adapter_version(
            name="books", task="sentiment", base_model_id=base, method="seq_bn", config={},
            artifact_dir=src, trainable_params=1,
        )
        out["register"] = "registered"
    except RegistryError as err:
        out["register"] = f"{type(err).__name__}: {err} | {err.hint}"
print(json.dumps(out))
"""


def _read_only_wrapper(home: Path) -> tuple[list[str], Callable[[], None]]:
    """Return (command prefix, undo) that runs a command with ``home`` read-only, even for root.

    A read-only bind mount in a private mount namespace (``unshare -m``) is what a read-only
    share looks like; ``chattr +i`` (immutable) is the fallback. Permission bits are not: root
    ignores them.
    """
    script = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'
    if shutil.which("unshare") and shutil.which("mount"):
        probe = subprocess.run(
            ["unshare", "-m", "sh", "-c", script, str(home), "true"], capture_output=True
        )
        if probe.returncode == 0:
            return ["unshare", "-m", "sh", "-c", script, str(home)], lambda: None
    if shutil.which("chattr"):
        probe = subprocess.run(["chattr", "-R", "+i", str(home)], capture_output=True)
        if probe.returncode == 0:

            def undo() -> None:
                subprocess.run(["chattr", "-R", "-i", str(home)], check=True)

            return [], undo
    if os.geteuid() != 0:
        for path in [home, *home.rglob("*")]:
            path.chmod(path.stat().st_mode & ~0o222)

        def restore() -> None:
            for path in [home, *home.rglob("*")]:
                path.chmod(path.stat().st_mode | 0o200)

        return [], restore
    pytest.skip("running as root without mount namespaces or chattr: cannot make a home read-only")


def test_read_only_home_reads_but_refuses_writes(sqlite_registry: Registry, tmp_path: Path) -> None:
    populated = _populate(sqlite_registry, tmp_path)
    home = populated.settings.home
    populated.close()
    before = snapshot(populated)
    src = make_artifact(tmp_path / "new-src", b"new weights")
    prefix, undo = _read_only_wrapper(home)
    env = {**os.environ, "ADAPTER_REGISTRY_HOME": str(home)}

    def cli_(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [*prefix, sys.executable, "-m", "registry", *args]
        return subprocess.run(cmd, capture_output=True, text=True, env=env)

    try:
        listed = cli_("list", "--json")
        assert listed.returncode == 0, listed.stderr
        refs = [e["ref"] for e in json.loads(listed.stdout)]
        assert refs == ["books@1", "books@2", "dvd@1", "mix@1"]
        shown = cli_("show", "sentiment:production", "--json")
        assert shown.returncode == 0 and json.loads(shown.stdout)["ref"] == "books@1"
        verified = cli_("verify")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        aliased = cli_("alias", "sentiment", "staging", "books@2")
        assert aliased.returncode == 1
        assert aliased.stderr == (
            "Error: The registry database is read-only: attempt to write a readonly database\n"
            "Hint: Check the permissions of the registry home (ADAPTER_REGISTRY_HOME).\n"
        )
        deprecated = cli_("deprecate", "books@2")
        assert deprecated.returncode == 1 and "read-only" in deprecated.stderr
        store = subprocess.run(
            [*prefix, sys.executable, "-c", READ_ONLY_SCRIPT, str(home), str(src)],
            capture_output=True,
            text=True,
            env=env,
        )
        assert store.returncode == 0, store.stderr
        result = json.loads(store.stdout)
        assert result["refs"] == refs and result["ok"] is True
        # "Read-only file system" under a read-only mount, "Operation not permitted" (chattr).
        message, _, hint = result["register"].partition(" | ")
        assert message.startswith(
            f"InvalidInput: Cannot write to the artifact folder {home / 'artifacts'}: "
        ), message
        assert hint == "Check the permissions and free space of the registry home " + (
            "(ADAPTER_REGISTRY_HOME)."
        )
    finally:
        undo()
    assert snapshot(populated) == before
    assert sorted(p.name for p in home.iterdir()) == ["artifacts", "registry.db"]


# ---------------------------------------------------------------------- verify --json
def test_verify_json_summarises_damage_and_dangling_edges(
    populated: Registry, backend_url: str | None, tmp_path: Path
) -> None:
    code, out = run("verify", "--json", db=backend_url)
    clean = json.loads(out)
    assert code == 0
    assert clean == {
        "artifacts_checked": 4,
        "rows_checked": 4 + 3,  # 4 artifacts + 3 lineage edges (1 warm start, 2 fused_from)
        "problems": [],
        "orphans": [],
        "ok": True,
    }
    damaged = populated.resolve("dvd@1")
    target = populated.artifacts.path_for(damaged.artifact_sha256) / "weights.bin"
    target.chmod(0o644)
    target.write_bytes(b"bit rot")
    with populated.db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO lineage (parent_kind, parent_id, child_kind, child_id, relation, "
                "created_at) VALUES ('adapter', 999, 'adapter', 1, 'warm_started_from', "
                "'2026-01-01 00:00:00')"
            )
        )
    orphan = populated.artifacts.put(make_artifact(tmp_path / "lost", b"lost"))
    before = snapshot(populated)

    code, out = run("verify", "--json", db=backend_url)
    data = json.loads(out)
    assert code == 1
    assert set(data) == {"artifacts_checked", "rows_checked", "problems", "orphans", "ok"}
    assert data["ok"] is False
    assert data["artifacts_checked"] == 3
    assert data["rows_checked"] == 4 + 4
    assert data["orphans"] == [orphan.sha256]
    problems = sorted(data["problems"], key=lambda p: p["kind"])
    assert [(p["kind"], p["what"]) for p in problems] == [
        ("damaged", "adapter dvd@1"),
        ("dangling-edge", "lineage edge 4 (warm_started_from)"),
    ]
    assert problems[0]["sha256"] == damaged.artifact_sha256
    assert (
        "does not match its sha256" in problems[0]["error"]
        and "weights.bin" in problems[0]["error"]
    )
    assert problems[1]["error"] == "points at missing adapter:999"
    assert snapshot(populated) == before  # verify only reads
