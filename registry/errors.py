"""Errors the registry raises. Each carries a ``hint``: the next command a user should run.

Only :func:`registry.cli.main` formats them; library callers catch :class:`RegistryError`.
"""

from __future__ import annotations


class RegistryError(Exception):
    """Base class: a failure the user can act on.

    Args:
        message: what happened, in one sentence.
        hint: the next command to run, or what to change (optional).
    """

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class NotFound(RegistryError, LookupError):
    """A named thing (adapter, task, alias, file, repo) does not exist."""


class AlreadyExists(RegistryError):
    """A name or key is already taken."""


class InvalidInput(RegistryError, ValueError):
    """An argument, a data file or a model folder is not acceptable."""


class IntegrityError(RegistryError):
    """Stored bytes do not match their recorded sha256, or a row points at nothing."""


class SchemaOutOfDate(RegistryError):
    """The database schema is not at this code's revision."""


class HubError(RegistryError):
    """Talking to the Hugging Face Hub failed."""


class DatabaseError(RegistryError):
    """The database refused or failed an operation (locked, unreachable, not a database)."""


class Interrupted(RegistryError):
    """Work was interrupted (Ctrl-C) and nothing was registered."""

    exit_code = 130


class WrongArtifactStore(RegistryError):
    """This command's artifact store is not the one the registry's database records."""
