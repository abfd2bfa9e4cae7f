"""Where the registry lives: its home folder, database URL and artifact root.

``ADAPTER_REGISTRY_HOME`` (default ``~/.adapter-registry``) holds ``registry.db`` and
``artifacts/``.
``ADAPTER_REGISTRY_DB`` overrides the database with any SQLAlchemy URL (e.g. PostgreSQL).
``ADAPTER_REGISTRY_ARTIFACTS`` overrides where artifacts are stored: another folder, or any fsspec
URL such as ``s3://bucket/prefix`` (see :mod:`registry.artifact_store`); a team sharing one
database shares one store this way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

HOME_ENV = "ADAPTER_REGISTRY_HOME"
DB_ENV = "ADAPTER_REGISTRY_DB"
DEBUG_ENV = "ADAPTER_REGISTRY_DEBUG"
ARTIFACTS_ENV = "ADAPTER_REGISTRY_ARTIFACTS"

#: The ``registry_settings`` name under which the remote artifact store's URL is recorded.
STORE_SETTING = "artifact_store"

#: The newest Alembic revision this code knows. ``tests/test_migrations.py`` checks it against
#: the scripts; it lives here so that neither the store nor the fast reader imports Alembic.
SCHEMA_HEAD = "0007"
KNOWN_REVISIONS = ("0001", "0002", "0003", "0004", "0005", "0006", "0007")


@dataclass(frozen=True)
class Settings:
    """Resolved locations for one registry."""

    home: Path
    db_url: str
    #: Where artifacts are stored when not in ``home/artifacts``: a folder or an fsspec URL.
    artifacts_url: str | None = None

    @property
    def artifact_root(self) -> Path:
        """Return the folder that holds content-addressed artifacts (local stores).

        With a remote store (an fsspec URL) this folder is unused; the store's local cache is
        ``home/cache/artifacts``.
        """
        url = self.artifacts_url
        if url is not None and ("://" not in url or url.startswith("file://")):
            return Path(url.removeprefix("file://")).expanduser().absolute()
        return self.home / "artifacts"

    @property
    def artifacts_location(self) -> str:
        """Return where artifacts are stored, for display: a folder or a URL."""
        url = self.artifacts_url
        return str(self.artifact_root) if url is None or "://" not in url else url

    @property
    def remote_store_url(self) -> str | None:
        """Return the remote artifact store's URL (no trailing slash); None for a local folder.

        The registry records it in its database (``registry_settings``, see
        :mod:`registry.store.store_record`).
        """
        url = self.artifacts_url
        if url is None or "://" not in url or url.startswith("file://"):
            return None
        return url.rstrip("/")

    @property
    def is_sqlite(self) -> bool:
        """Return True when the database is a SQLite file (the embedded default)."""
        return self.db_url.startswith("sqlite")

    @property
    def sqlite_path(self) -> Path | None:
        """Return the SQLite file path, or None for other databases and in-memory SQLite."""
        if not self.is_sqlite:
            return None
        _, _, rest = self.db_url.partition(":///")
        if not rest or rest == ":memory:":
            return None
        return Path(rest)

    def redacted_url(self) -> str:
        """Return the database URL with any password hidden, for display."""
        if "@" not in self.db_url or "://" not in self.db_url:
            return self.db_url
        scheme, _, rest = self.db_url.partition("://")
        creds, _, host = rest.rpartition("@")
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in creds else f"{scheme}://{user}@{host}"


def load_settings(
    home: str | Path | None = None, db_url: str | None = None, artifacts: str | None = None
) -> Settings:
    """Resolve settings from arguments, then the environment, then defaults."""
    home_path = Path(home or os.environ.get(HOME_ENV) or Path.home() / ".adapter-registry")
    home_path = home_path.expanduser()
    url = db_url or os.environ.get(DB_ENV) or f"sqlite:///{(home_path / 'registry.db').absolute()}"
    store = artifacts or os.environ.get(ARTIFACTS_ENV) or None
    return Settings(home=home_path.absolute(), db_url=url, artifacts_url=store)


def debug_enabled() -> bool:
    """Return True when tracebacks should be shown (``ADAPTER_REGISTRY_DEBUG=1``)."""
    return os.environ.get(DEBUG_ENV, "") not in ("", "0", "false", "no")
