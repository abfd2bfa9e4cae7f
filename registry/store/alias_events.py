"""The alias history: one row per change of an alias, written in the changing transaction."""

from __future__ import annotations

import getpass
import os

from sqlalchemy.orm import Session

from ..orm import SqlAliasEvent

#: Who an alias change is recorded as: this variable when set, else the login name.
ACTOR_ENV = "ADAPTER_REGISTRY_USER"


def current_actor() -> str:
    """Return who is making a change: ``$ADAPTER_REGISTRY_USER``, else the login name."""
    named = os.environ.get(ACTOR_ENV, "").strip()
    if named:
        return named[:200]
    try:
        return getpass.getuser()[:200] or "unknown"
    except (OSError, KeyError):  # no login name (containers without a passwd entry)
        return "unknown"


def record_alias_event(
    s: Session,
    task_id: int,
    alias: str,
    old: tuple[str, int] | None,
    new: tuple[str, int] | None,
) -> None:
    """Add one alias-history row in the caller's transaction (no row when nothing changes)."""
    if old == new:
        return
    s.add(
        SqlAliasEvent(
            task_id=task_id,
            alias=alias,
            old_kind=old[0] if old else None,
            old_id=old[1] if old else None,
            new_kind=new[0] if new else None,
            new_id=new[1] if new else None,
            actor=current_actor(),
        )
    )
