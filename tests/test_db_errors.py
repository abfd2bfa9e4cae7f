"""Database failures that retrying cannot fix say what to do instead of "Retry".

Real failures: a SQLite file with damaged pages, and a PostgreSQL server asked for a role or a
database that does not exist, or on a port where nothing listens.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy.engine import make_url

from registry.cli import cli
from registry.store import Registry
from tests._util import seed_task

PG_ENV = "ADAPTER_REGISTRY_TEST_PG"


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def test_a_damaged_sqlite_file_is_reported_as_damaged(tmp_path: Path) -> None:
    home = tmp_path / "home"
    reg = Registry.init(home)
    for i in range(80):  # enough rows that the tables span several pages
        seed_task(reg, f"task-{i:02d}-" + "x" * 100)
    db = reg.settings.sqlite_path
    assert db is not None
    reg.close()
    assert run("--home", str(home), "list")[0] == 0
    data = bytearray(db.read_bytes())
    page = 4096
    for offset in range(page, len(data) - page, page):  # every page but the header page
        data[offset : offset + 64] = b"\xa5" * 64
    db.write_bytes(bytes(data))
    code, out = run("--home", str(home), "list")
    assert code != 0
    assert "damaged" in out and "Restore registry.db" in out, out
    assert "Retry" not in out


def _pg(url_env: str | None, **changes: object) -> str:
    assert url_env is not None
    return make_url(url_env).set(**changes).render_as_string(hide_password=False)


@pytest.fixture
def pg_admin() -> str:
    url = os.environ.get(PG_ENV)
    if not url:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but {PG_ENV} is not: the PostgreSQL tests must run in CI.")
        pytest.skip(f"{PG_ENV} is not set (make test sets it when PostgreSQL is running)")
    return url


def test_an_unknown_role_is_not_told_to_retry(pg_admin: str) -> None:
    code, out = run("--db", _pg(pg_admin, username="no_such_role_ar", password=None), "list")
    assert code != 0
    assert "refused the login" in out and "ADAPTER_REGISTRY_DB" in out, out
    assert "Retry" not in out


def test_a_missing_database_says_how_to_create_it(pg_admin: str) -> None:
    code, out = run("--db", _pg(pg_admin, database="no_such_db_ar"), "list")
    assert code != 0
    assert "does not exist" in out and "createdb" in out, out


def test_an_unreachable_server_is_the_case_for_retrying(pg_admin: str) -> None:
    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, out = run("--db", _pg(pg_admin, host="127.0.0.1", port=port), "list")
    assert code != 0
    assert "Is the database server running" in out, out


def test_verify_runs_the_databases_own_integrity_check(tmp_path: Path) -> None:
    """A damaged page in a table verify never reads (tasks) is found, not "0 problems"."""
    home = tmp_path / "home"
    reg = Registry.init(home)
    for i in range(80):
        seed_task(reg, f"task-{i:02d}-" + "x" * 100)
    db = reg.settings.sqlite_path
    assert db is not None
    reg.close()
    code, out = run("--home", str(home), "verify")
    assert code == 0 and "0 problem(s)" in out, out
    data = bytearray(db.read_bytes())
    page = 4096
    hit = data.index(b"task-40-") // page * page
    assert hit > 0
    data[hit : hit + 16] = b"\xa5" * 16  # the page header of a tasks page (or its index)
    db.write_bytes(bytes(data))
    code, out = run("--home", str(home), "verify")
    assert code != 0, out
    assert "DATABASE: registry database" in out, out


def test_init_refuses_a_new_database_beside_existing_artifacts(tmp_path: Path) -> None:
    """After registry.db is lost, init must not start an empty registry that gc would use."""
    from tests._util import make_artifact

    home = tmp_path / "home"
    reg = Registry.init(home)
    reg.artifacts.put(make_artifact(tmp_path / "src", b"weights"))
    db = reg.settings.sqlite_path
    assert db is not None
    reg.close()
    db.unlink()
    code, out = run("--home", str(home), "init")
    assert code != 0 and "already holds 1 artifact" in out and "--force" in out, out
    assert not db.exists()  # nothing half-written
    assert run("--home", str(home), "init")[0] != 0  # still refused
    code, out = run("--home", str(home), "init", "--force")
    assert code == 0 and db.exists(), out
    assert run("--home", str(home), "init")[0] == 0  # re-running init on it is an upgrade
