"""Engines, sessions and schema management (Alembic) for the registry database.

SQLite gets WAL, ``foreign_keys=ON`` and a busy timeout on every connection, and write
transactions start with ``BEGIN IMMEDIATE`` so concurrent writers queue instead of failing
half-way. Migrations run programmatically; opening a database whose schema is not at
:data:`SCHEMA_HEAD` is refused.
"""

from __future__ import annotations

import contextlib
import os
import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from sqlalchemy import Engine, create_engine, event, exc, text
from sqlalchemy.orm import Session, sessionmaker

from .errors import AlreadyExists, DatabaseError, InvalidInput, NotFound, SchemaOutOfDate
from .settings import KNOWN_REVISIONS as KNOWN_REVISIONS
from .settings import SCHEMA_HEAD as SCHEMA_HEAD
from .settings import Settings
from .store.commits import sigint_deferred

SQLITE_BUSY_TIMEOUT_MS = 30_000
T = TypeVar("T")


def migrations_dir() -> Path:
    """Return the Alembic script folder: inside the wheel, else the source checkout."""
    packaged = Path(__file__).parent / "_migrations"
    if (packaged / "env.py").exists():
        return packaged
    checkout = Path(__file__).resolve().parent.parent / "migrations"
    if (checkout / "env.py").exists():
        return checkout
    raise NotFound(  # pragma: no cover - a broken install
        "The migration scripts are missing from this installation.",
        hint="Reinstall adapter-registry: pip install --force-reinstall adapter-registry",
    )


def _on_sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event decide how transactions start (see _on_sqlite_begin).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA foreign_keys=ON")
    # A read-only folder cannot hold the -wal file; reads still work without it.
    with contextlib.suppress(sqlite3.OperationalError):
        cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _on_sqlite_begin(conn: Any) -> None:
    # IMMEDIATE takes the write lock up front, so two writers never deadlock on upgrade
    # from a read lock; read-only sessions use a plain (deferred) BEGIN.
    mode = "BEGIN" if conn.get_execution_options().get("readonly") else "BEGIN IMMEDIATE"
    conn.exec_driver_sql(mode)


def _read_only_sqlite_url(path: Path | None) -> str | None:
    """Return a read-only URL for a registry whose folder cannot be written, else None.

    Even reading a WAL database needs its -shm file, which a read-only folder (a read-only
    mount, an immutable folder; root included) cannot hold, so SQLite would refuse to open it.
    Without a -wal file the main file is complete: ``immutable`` reads it without that file.
    Writes then fail as "read-only", which :func:`translate_db_error` explains.
    """
    if path is None or not path.is_file() or os.access(path.parent, os.W_OK):
        return None
    wal = path.with_name(path.name + "-wal")
    flags = "mode=ro" if wal.exists() else "mode=ro&immutable=1"
    return f"sqlite:///file:{quote(str(path))}?{flags}&uri=true"


def make_engine(settings: Settings) -> Engine:
    """Create an engine for the settings' database, with SQLite pragmas applied."""
    if settings.is_sqlite:
        path = settings.sqlite_path
        if path is not None and not path.parent.is_dir():
            raise InvalidInput(
                f"The folder for the database does not exist: {path.parent}",
                hint=f"Create it (mkdir -p {path.parent}) or set ADAPTER_REGISTRY_HOME.",
            )
        engine = create_engine(
            _read_only_sqlite_url(path) or settings.db_url,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
        )
        event.listen(engine, "connect", _on_sqlite_connect)
        event.listen(engine, "begin", _on_sqlite_begin)
        return engine
    try:
        return create_engine(settings.db_url, pool_pre_ping=True)
    except (exc.ArgumentError, exc.NoSuchModuleError, ImportError) as err:
        raise InvalidInput(
            f"Cannot use database URL {settings.redacted_url()}: {err}",
            hint="Give a SQLAlchemy URL, e.g. postgresql+psycopg2://user@host/db "
            "(pip install 'adapter-registry[postgres]').",
        ) from err


def translate_db_error(err: exc.SQLAlchemyError) -> Exception:
    """Map a SQLAlchemy error to the registry error a user can act on."""
    msg = str(getattr(err, "orig", err)).strip().splitlines()[0]
    if isinstance(err, exc.IntegrityError):
        return AlreadyExists(f"The registry refused the write: {msg}")
    if "file is not a database" in msg or "file is encrypted" in msg:
        return DatabaseError(
            f"The registry database is not a SQLite database: {msg}",
            hint="Point ADAPTER_REGISTRY_HOME/ADAPTER_REGISTRY_DB at a registry, or run "
            "adapter-registry init in an empty folder.",
        )
    if "readonly" in msg or "read-only" in msg:
        return DatabaseError(
            f"The registry database is read-only: {msg}",
            hint="Check the permissions of the registry home (ADAPTER_REGISTRY_HOME).",
        )
    if "unable to open database" in msg:
        return DatabaseError(
            f"Cannot open the registry database: {msg}",
            hint="Check that the registry home is writable, or run: adapter-registry init",
        )
    return _server_error(err, msg)


def _server_error(err: exc.SQLAlchemyError, msg: str) -> DatabaseError:
    """Errors that retrying cannot fix get their own hint; only the transient ones say retry."""
    low = msg.lower()
    if "malformed" in low or "disk image" in low or "corrupt" in low:
        return DatabaseError(
            f"The registry database is damaged: {msg}",
            hint="Restore registry.db from a backup (artifacts are untouched), then run: "
            "adapter-registry verify",
        )
    if "is not permitted to log in" in low:
        return DatabaseError(
            f"The database role may not log in: {msg}",
            hint="Give the role the LOGIN attribute (ALTER ROLE name LOGIN), or name a role "
            "that has it in ADAPTER_REGISTRY_DB.",
        )
    if (
        "password authentication failed" in low
        or ("role" in low and "does not exist" in low)
        or "no pg_hba.conf entry" in low
    ):
        return DatabaseError(
            f"The database server refused the login: {msg}",
            hint="Check the user and password in ADAPTER_REGISTRY_DB (or the server's "
            "pg_hba.conf); the same login will be refused again until they change.",
        )
    if "database" in low and "does not exist" in low:
        return DatabaseError(
            f"The database named in ADAPTER_REGISTRY_DB does not exist: {msg}",
            hint="Create it (createdb NAME), then run: adapter-registry init",
        )
    if "permission denied" in low:
        return DatabaseError(
            f"The database role lacks a privilege: {msg}",
            hint="Grant the role rights on the registry's tables (GRANT ... TO role), or use "
            "the role that ran adapter-registry init.",
        )
    if isinstance(err, exc.OperationalError) or is_retryable(err):
        return DatabaseError(
            f"Database error: {msg}",
            hint="Is the database server running and reachable? Retry when it is.",
        )
    return DatabaseError(
        f"Database error: {msg}",
        hint="Run again with ADAPTER_REGISTRY_DEBUG=1 for the details, and check "
        "adapter-registry db current.",
    )


def is_retryable(err: BaseException) -> bool:
    """Return True for transient contention: SQLite busy/locked, PostgreSQL serialization."""
    text_ = str(getattr(err, "orig", err)).lower()
    return (
        "database is locked" in text_
        or "database is busy" in text_
        or "could not serialize" in text_
        or "deadlock detected" in text_
    )


def with_retries(
    fn: Callable[[], T],
    *,
    attempts: int = 60,
    is_conflict: Callable[[BaseException], bool] | None = None,
) -> T:
    """Run ``fn`` again with jittered backoff while it fails on transient contention.

    Args:
        fn: the whole unit of work (it must open and commit its own transaction).
        attempts: how many tries before the error is raised.
        is_conflict: extra predicate for errors that mean "lost a race, try again" (for
            example a unique-violation on an auto-incremented version number).
    """
    delay = 0.01
    for attempt in range(attempts):
        try:
            return fn()
        except exc.SQLAlchemyError as err:
            retry = is_retryable(err) or (is_conflict is not None and is_conflict(err))
            if not retry or attempt == attempts - 1:
                raise
            time.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, 0.5)
    raise AssertionError("unreachable")  # pragma: no cover


class Database:
    """An engine plus a session factory, with schema checks."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = make_engine(settings)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._read_engine = self.engine.execution_options(readonly=True)
        self._read_sessions = sessionmaker(self._read_engine, expire_on_commit=False)

    @contextmanager
    def session_scope(self, readonly: bool = False) -> Iterator[Session]:
        """Yield a session that commits on success and rolls back on any error.

        Database errors come out as :class:`~registry.errors.RegistryError` subclasses.
        """
        try:
            with self.raw_session(readonly) as session:
                yield session
        except exc.SQLAlchemyError as err:
            raise translate_db_error(err) from err

    @contextmanager
    def raw_session(
        self, readonly: bool = False, on_commit: Callable[[], None] | None = None
    ) -> Iterator[Session]:
        """Yield a session like :meth:`session_scope` but let SQLAlchemy errors through.

        The store uses it inside :func:`with_retries`, which must see the original error.
        ``on_commit`` runs right after a write session commits, with Ctrl-C held back across
        the commit and it (so a count of commits it keeps is never behind the database).
        """
        maker = self._read_sessions if readonly else self._sessions
        session = maker()
        try:
            yield session
            if readonly:
                session.rollback()
            else:
                with sigint_deferred():
                    session.commit()
                    if on_commit is not None:
                        on_commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def current_revision(self) -> str | None:
        """Return the Alembic revision stored in the database, or None if it has none."""
        try:
            with self._read_engine.connect() as conn:
                has_table = self.engine.dialect.has_table(conn, "alembic_version")
                if not has_table:
                    return None
                row = conn.execute(text("SELECT version_num FROM alembic_version")).first()
                return None if row is None else str(row[0])
        except exc.SQLAlchemyError as err:
            raise translate_db_error(err) from err

    def verify_schema(self) -> None:
        """Refuse a database whose schema is missing, behind, or newer than this code."""
        current = self.current_revision()
        if current == SCHEMA_HEAD:
            return
        if current is None:
            raise SchemaOutOfDate(
                f"The registry at {self.settings.redacted_url()} is not initialised.",
                hint="Run: adapter-registry init",
            )
        if current not in KNOWN_REVISIONS:
            raise SchemaOutOfDate(
                f"The database schema is at revision {current}, which is newer than this "
                f"adapter-registry knows (head {SCHEMA_HEAD}); it was not changed.",
                hint="Upgrade adapter-registry: pip install -U adapter-registry",
            )
        raise SchemaOutOfDate(
            f"The database schema is out of date (found revision {current}, expected "
            f"{SCHEMA_HEAD}). Take a backup of the database first.",
            hint="Run: adapter-registry db upgrade",
        )

    def upgrade(self, target: str = "head") -> None:
        """Migrate the schema up to ``target`` with Alembic."""
        current = self.current_revision()
        if current is not None and current not in KNOWN_REVISIONS:
            self.verify_schema()  # raises: never touch a schema from newer code
        self._alembic("upgrade", target)

    def downgrade(self, target: str) -> None:
        """Migrate the schema down to ``target`` (``base`` removes every table)."""
        self._alembic("downgrade", target)

    def _alembic(self, direction: str, target: str) -> None:
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(migrations_dir()))
        cfg.set_main_option("sqlalchemy.url", self.settings.db_url.replace("%", "%%"))
        try:
            with self.engine.connect() as conn:
                cfg.attributes["connection"] = conn
                getattr(command, direction)(cfg, target)
                conn.commit()
        except exc.SQLAlchemyError as err:
            raise translate_db_error(err) from err

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()
