"""Sessions of the store: one transaction per call, retried under contention, or joined."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import exc
from sqlalchemy.orm import Session

from ..artifact_store import open_artifact_store
from ..db import Database, translate_db_error, with_retries
from ..settings import Settings
from .commits import _committed

T = TypeVar("T")


class Plumbing:
    """The database session handling every part of :class:`registry.store.Registry` uses."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self.artifacts = open_artifact_store(settings)
        self._joined = threading.local()  # the session of a transaction() in progress

    # ------------------------------------------------------------------ plumbing
    def transaction(
        self,
        fn: Callable[[Session], T],
        *,
        is_conflict: Callable[[BaseException], bool] | None = None,
    ) -> T:
        """Run ``fn(session)`` so that every read and write this registry makes inside it (on
        this thread) is one database transaction: all of it commits, or none of it.

        The whole of ``fn`` is retried on transient contention, so it must not have effects
        outside the database that a retry would repeat (idempotent ones, like publishing an
        artifact, are fine).
        """

        def attempt() -> T:
            with self.db.raw_session(on_commit=_committed) as session:
                self._joined.session = session
                try:
                    out = fn(session)
                finally:
                    self._joined.session = None
            return out

        if getattr(self._joined, "session", None) is not None:
            return fn(self._joined.session)
        try:
            return with_retries(attempt, is_conflict=is_conflict)
        except exc.SQLAlchemyError as err:
            raise translate_db_error(err) from err

    def _write(
        self,
        fn: Callable[[Session], T],
        *,
        is_conflict: Callable[[BaseException], bool] | None = None,
    ) -> T:
        joined = getattr(self._joined, "session", None)
        if joined is not None:  # inside transaction(): its retry covers this write
            return fn(joined)

        def attempt() -> T:
            with self.db.raw_session(on_commit=_committed) as session:
                out = fn(session)
            return out

        try:
            return with_retries(attempt, is_conflict=is_conflict)
        except exc.SQLAlchemyError as err:
            raise translate_db_error(err) from err

    def _read(self, fn: Callable[[Session], T]) -> T:
        joined = getattr(self._joined, "session", None)
        if joined is not None:  # inside transaction(): see its own uncommitted rows
            return fn(joined)
        try:
            with self.db.raw_session(readonly=True) as session:
                return fn(session)
        except exc.SQLAlchemyError as err:
            raise translate_db_error(err) from err
