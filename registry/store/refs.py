"""The REF grammar, pure: how a user names an adapter version or fusion.

``a12`` / ``f3`` (an id with its kind), ``12`` (a bare id: adapter or fusion), ``task:alias``,
``name`` (its newest active version) and ``name@3``. Parsing needs no database; the readers
(:class:`registry.store.Registry` and the fast SQLite reader) look the parsed form up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from ..errors import InvalidInput, NotFound

_KIND_ID = re.compile(r"[af]\d+")
_NUMBERS = re.compile(r"[af]?(\d+)|.*@(\d+)")
#: Ids and version numbers are 32-bit integer columns (PostgreSQL); a larger number names nothing.
MAX_REF_NUMBER = 2**31 - 1


@dataclass(frozen=True)
class Ref:
    """A parsed REF. ``form`` says which fields are set."""

    text: str
    form: Literal["id", "bare_id", "alias", "name"]
    kind: Literal["adapter", "fusion"] | None = None
    id: int | None = None
    task: str | None = None
    alias: str | None = None
    name: str | None = None
    version: int | None = None


def parse_ref(ref: str) -> Ref:
    """Parse a REF (see the module docstring).

    Raises:
        InvalidInput: ``name@x`` where ``x`` is not a number.
        NotFound: an id or version past what the database's integer columns hold.
    """
    numbers = _NUMBERS.fullmatch(ref)
    if numbers and int(next(n for n in numbers.groups() if n is not None)) > MAX_REF_NUMBER:
        raise NotFound(
            f"Nothing matches {ref!r}: the number is too large.", hint="Run: adapter-registry list"
        )
    if _KIND_ID.fullmatch(ref):
        return Ref(ref, "id", kind="adapter" if ref[0] == "a" else "fusion", id=int(ref[1:]))
    if ref.isdigit():
        return Ref(ref, "bare_id", id=int(ref))
    if ":" in ref:
        task, _, alias = ref.partition(":")
        return Ref(ref, "alias", task=task, alias=alias)
    name, sep, version_text = ref.partition("@")
    if sep and not version_text.isdigit():
        raise InvalidInput(
            f"Invalid reference {ref!r}: the version after '@' must be a number.",
            hint="e.g. sentiment@3",
        )
    return Ref(ref, "name", name=name, version=int(version_text) if sep else None)


def missing_version(ref: Ref) -> str:
    """Return the message for a name that exists without the version ``ref`` asks for."""
    if ref.version is not None:
        return f"{ref.name!r} has no version matching {ref.text!r}."
    return f"{ref.name!r} has no active version (all are deprecated); name one as {ref.name}@N."


def entity_ref(name: str, version: int) -> str:
    """Return the REF of one version: ``name@version``."""
    return f"{name}@{version}"
