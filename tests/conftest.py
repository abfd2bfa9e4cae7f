"""Shared fixtures: an isolated registry home per test, on SQLite or a fresh PostgreSQL database.

Set ``ADAPTER_REGISTRY_TEST_PG`` to a SQLAlchemy URL of a PostgreSQL server (``.ci/run`` does) to
run every test that uses ``backend_url`` against PostgreSQL as well as SQLite.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._hubfixture import hub_server_fixture, hub_server_session_fixture  # noqa: F401
from tests._s3 import s3_server, s3_url  # noqa: F401

PG_ENV = "ADAPTER_REGISTRY_TEST_PG"


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Point the registry at a fresh home; never touch the user's ~/.adapter-registry."""
    monkeypatch.setenv("ADAPTER_REGISTRY_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ADAPTER_REGISTRY_DB", raising=False)
    monkeypatch.delenv("ADAPTER_REGISTRY_ARTIFACTS", raising=False)
    monkeypatch.delenv("ADAPTER_REGISTRY_DEBUG", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    yield


def _pg_admin_url() -> str | None:
    return os.environ.get(PG_ENV) or None


def fresh_pg_database(admin_url: str) -> Iterator[str]:
    """Create a database and a role that owns it (with a password); yield the role's URL.

    The admin URL (from the environment; it may carry a password) only creates and drops
    them; the test itself connects as the new role, so password authentication is used
    wherever the server asks for it.
    """
    import secrets

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = make_url(admin_url)
    suffix = uuid.uuid4().hex[:12]
    name, role, password = f"ar_test_{suffix}", f"ar_test_{suffix}", secrets.token_hex(16)
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{password}'"))
        conn.execute(text(f'CREATE DATABASE "{name}" OWNER "{role}"'))
    try:
        url = admin.set(database=name, username=role, password=password)
        yield url.render_as_string(hide_password=False)
    finally:
        with engine.connect() as conn:
            conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
                {"n": name},
            )
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            conn.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | None]:
    """Yield None (SQLite in the test's home) or the URL of a fresh PostgreSQL database.

    Under CI (``CI`` set) a missing PostgreSQL fails the test instead of skipping it.
    """
    if request.param == "sqlite":
        yield None
        return
    admin = _pg_admin_url()
    if admin is None:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but {PG_ENV} is not: the PostgreSQL tests must run in CI.")
        pytest.skip(f"{PG_ENV} is not set (make test sets it when PostgreSQL is running)")
    yield from fresh_pg_database(admin)


@pytest.fixture
def registry(backend_url: str | None, tmp_path: Path) -> Iterator[object]:
    """Yield an initialised Registry on the parametrised backend."""
    from registry.store import Registry

    reg = Registry.init(tmp_path / "home", backend_url)
    yield reg
    reg.close()


@pytest.fixture
def sqlite_registry(tmp_path: Path) -> Iterator[object]:
    """Yield an initialised Registry on SQLite only."""
    from registry.store import Registry

    reg = Registry.init(tmp_path / "home")
    yield reg
    reg.close()


@pytest.fixture(scope="session")
def tiny_base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build a tiny BERT model folder once per session."""
    from tests._tiny import build_tiny_bert

    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))
