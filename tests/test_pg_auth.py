"""The PostgreSQL fixture under password authentication, on a private server started here.

The shared server trusts local connections, so it cannot show that the tests work where a
password is required. This test starts its own cluster (``initdb --auth=scram-sha-256``) on a
free port, gives the fixture an admin URL with a password (as CI would, from the environment),
and checks that the database and role the fixture creates work, and that a wrong password does
not.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import fresh_pg_database

pytestmark = pytest.mark.slow


def _bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or [shutil.which(name) or ""]
    return found[-1] or None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def password_server() -> Iterator[str]:
    """Start a PostgreSQL cluster that requires scram passwords; yield its admin URL."""
    initdb, pg_ctl = _bin("initdb"), _bin("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("initdb/pg_ctl not installed: cannot start a private PostgreSQL")
    as_user: list[str] = []
    # Not under tmp_path: pytest's folders are private to the user running the tests.
    folder = Path(tempfile.mkdtemp(prefix="adapter-registry-pg-"))
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        if not shutil.which("runuser"):
            pytest.skip("running as root without runuser: cannot start PostgreSQL")
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(folder, "postgres")
        folder.chmod(0o700)
    password = "s3cret-admin-pw"
    (folder / "pw").write_text(password + "\n")
    if as_user:
        shutil.chown(folder / "pw", "postgres")
    data, port = folder / "data", _free_port()

    def run(*args: str) -> None:
        done = subprocess.run([*as_user, *args], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{args[0]} failed: {done.stdout}{done.stderr}"

    run(initdb, "-D", str(data), "-U", "admin", "--auth=scram-sha-256", f"--pwfile={folder / 'pw'}")
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1"
    run(pg_ctl, "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "start")
    try:
        yield f"postgresql+psycopg2://admin:{password}@127.0.0.1:{port}/postgres"
    finally:
        run(pg_ctl, "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(folder, ignore_errors=True)


def test_fixture_database_and_role_work_with_password_authentication(
    password_server: str, tmp_path: Path
) -> None:
    from sqlalchemy import create_engine, exc, text
    from sqlalchemy.engine import make_url

    from registry.store import Registry

    admin = make_url(password_server)
    for wrong in (admin.set(password="wrong"), admin._replace(password=None)):
        engine = create_engine(wrong)
        with pytest.raises(exc.OperationalError, match="password"):
            engine.connect().close()
        engine.dispose()

    urls = fresh_pg_database(password_server)
    url = next(urls)
    role = make_url(url)
    assert role.username != "admin" and role.password and role.database == role.username
    with Registry.init(tmp_path / "home", url) as reg:
        reg.ensure_task("t", "single", ["a", "b"], ["text"])
    with Registry.open(tmp_path / "home", url) as reg:
        assert [t.name for t in reg.list_tasks()] == ["t"]
    urls.close()  # drops the database and the role
    engine = create_engine(admin)
    with engine.connect() as conn:
        names = {r[0] for r in conn.execute(text("SELECT rolname FROM pg_roles"))}
        dbs = {r[0] for r in conn.execute(text("SELECT datname FROM pg_database"))}
    engine.dispose()
    assert role.username not in names and role.database not in dbs
