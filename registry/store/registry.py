"""The registry's store: every query lives here. It takes and returns plain entities.

Writes that allocate a version number run inside :func:`registry.db.with_retries`, so concurrent
writers (processes sharing one SQLite file, or PostgreSQL clients) queue or retry instead of
failing. Artifacts are published before the rows that point at them, so a crash can leave an
unreferenced artifact (``gc`` removes it) but never a row without its files.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from sqlalchemy.orm import Session

from .. import entities as E
from ..artifact_store import hold_artifact_lock
from ..db import Database
from ..errors import (
    InvalidInput,
    NotFound,
    WrongArtifactStore,
)
from ..settings import load_settings
from . import integrity
from .inputs import (
    GC_GRACE_SECONDS,
)
from .metadata import Metadata
from .store_record import check_artifact_store
from .writes import Registering

T = TypeVar("T")


class Registry(Metadata, Registering):
    """The Python API over one registry (database + artifact folder).

    Open one with :meth:`Registry.open`; all methods return frozen entities. The methods live
    in :class:`~.catalog.Catalog` (look-ups), :class:`~.writes.Registering` (new versions),
    :class:`~.history.History` (aliases, promotions, metrics, lineage, drift, Hub),
    :class:`~.metadata.Metadata` (tags, descriptions, alias history, delete) and
    :class:`~.session.Plumbing` (transactions); opening, ``verify`` and ``gc`` are here.
    """

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(
        cls,
        home: str | Path | None = None,
        db_url: str | None = None,
        *,
        create: bool = False,
        artifacts: str | None = None,
    ) -> Registry:
        """Open a registry; with ``create=True`` a missing one is initialised.

        Raises:
            SchemaOutOfDate: the database exists but is not at this code's schema revision.
        """
        settings = load_settings(home, db_url, artifacts)
        if create:
            _make_home(settings.home)
        elif settings.is_sqlite and settings.sqlite_path and not settings.sqlite_path.exists():
            db_path = settings.sqlite_path
            if db_path.parent != settings.home:  # --db / ADAPTER_REGISTRY_DB names the file
                missing = "" if db_path.parent.is_dir() else " (its folder does not exist)"
                raise NotFound(
                    f"No registry database at {db_path}{missing}.",
                    hint="Check --db / ADAPTER_REGISTRY_DB, or create it: adapter-registry init",
                )
            raise NotFound(
                f"No registry at {settings.home}.",
                hint="Run: adapter-registry init (or set ADAPTER_REGISTRY_HOME)",
            )
        registry = cls(settings, Database(settings))
        if create and registry.db.current_revision() is None:
            registry.db.upgrade()
        registry.db.verify_schema()
        try:
            check_artifact_store(registry, settings)
        except WrongArtifactStore:
            registry.close()
            raise
        return registry

    @classmethod
    def init(
        cls,
        home: str | Path | None = None,
        db_url: str | None = None,
        *,
        artifacts: str | None = None,
        force: bool = False,
        store_moved: bool = False,
    ) -> Registry:
        """Create (or upgrade) a registry's database and folders, and return it.

        A new database beside artifacts that are already there is refused unless ``force``:
        the database was lost, and an empty registry would let ``gc`` delete them all. A remote
        artifact store is recorded in the database (a registry opened with another store is
        refused); ``store_moved`` records this one instead of the recorded one.
        """
        settings = load_settings(home, db_url, artifacts)
        _make_home(settings.home)
        database = Database(settings)
        if settings.is_sqlite and settings.sqlite_path is not None:
            new = not settings.sqlite_path.exists()
        else:
            new = database.current_revision() is None
        registry = cls(settings, database)
        if new and not force:
            found = registry.artifacts.all_ids()
            if found:
                registry.close()
                raise InvalidInput(
                    f"{settings.artifacts_location} already holds {len(found)} artifact(s), "
                    "but the registry database is new: was it lost or moved?",
                    hint="Restore the database (or point --db / ADAPTER_REGISTRY_DB at it); to "
                    "start an empty registry beside them anyway: adapter-registry init --force "
                    "(gc would then remove them).",
                )
        registry.db.upgrade()
        try:
            check_artifact_store(registry, settings, moved=store_moved)
        except WrongArtifactStore:
            registry.close()
            raise
        registry.settings.artifact_root.mkdir(parents=True, exist_ok=True)
        return registry

    def close(self) -> None:
        """Release database connections."""
        self.db.dispose()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ integrity
    def verify(self) -> E.VerifyReport:
        """Check every artifact against its sha256 and every row against its files."""
        return integrity.verify(self)

    def referenced_artifacts(self) -> dict[str, str]:
        """Return every artifact id a row points at, with a description of the row."""
        return self._read(integrity.referenced_artifacts)

    def gc(self, *, dry_run: bool = False, grace_seconds: float = GC_GRACE_SECONDS) -> list[str]:
        """Remove artifacts no row points at, and leftovers of interrupted writes.

        Artifacts published or reused less than ``grace_seconds`` ago are kept, and so is every
        staging folder whose process is alive. Each removal happens under the lock that writers
        hold while committing (re-checking the rows there), so a write that reused an old orphan
        either commits first and keeps it, or finds it gone and publishes it again.
        """
        return integrity.gc(self, dry_run=dry_run, grace_seconds=grace_seconds)

    def _remove_unused(self, sha: str, grace_seconds: float, s: Session) -> bool:
        hold_artifact_lock(s, exclusive=True)
        if sha in self.referenced_artifacts():  # read in this transaction, under the lock
            return False
        if not self.artifacts.exists(sha) or self.artifacts.age(sha) < grace_seconds:
            return False
        self.artifacts.remove(sha)
        return True


# ---------------------------------------------------------------------- helpers (module level)
def _make_home(home: Path) -> None:
    try:
        _check_home_parent(home)
        home.mkdir(exist_ok=True)
        (home / "artifacts").mkdir(exist_ok=True)
    except PermissionError as err:
        raise InvalidInput(
            f"Cannot write to the registry home {home}: permission denied.",
            hint="Check its permissions, or set ADAPTER_REGISTRY_HOME to a writable folder.",
        ) from err
    except OSError as err:  # read-only file system, disk full, a name too long, ...
        raise InvalidInput(
            f"Cannot create the registry home {home}: {err.strerror or err}.",
            hint="Set ADAPTER_REGISTRY_HOME (or --home) to a writable folder.",
        ) from err


def _check_home_parent(home: Path) -> None:
    if home.exists() and not home.is_dir():
        raise InvalidInput(
            f"The registry home is not a folder: {home}",
            hint="Point ADAPTER_REGISTRY_HOME (or --home) at a folder.",
        )
    if home.parent.exists() and not home.parent.is_dir():
        raise InvalidInput(
            f"The registry home cannot be created: {home.parent} is a file, not a folder.",
            hint="Point ADAPTER_REGISTRY_HOME (or --home) at a folder.",
        )
    if not home.parent.exists():
        raise InvalidInput(
            f"The folder that should hold the registry home does not exist: {home.parent}",
            hint=f"Create it first: mkdir -p {home.parent}",
        )
