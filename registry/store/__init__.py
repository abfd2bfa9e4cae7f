"""The registry's store: every query lives here. It takes and returns plain entities.

- :mod:`.registry`: :class:`Registry`, the Python API over one registry (SQLAlchemy; writes
  retry under contention, artifacts are published before the rows that point at them). It
  composes :mod:`.catalog` (look-ups), :mod:`.writes` (registering versions and fusions),
  :mod:`.history` (aliases, promotions, metrics, lineage, drift, Hub) and :mod:`.session`
  (transactions).
- :mod:`.fastread`: :class:`~.fastread.SqliteReader`, the read path of ``list``/``show``/
  ``lineage`` over the standard library's sqlite3 (no SQLAlchemy import).
- Shared by both, pure: :mod:`.refs` (the REF grammar), :mod:`.mappers` (rows → entities),
  :mod:`.lineage` (the walk and :class:`~.lineage.LineageGraph`), :mod:`.inputs`; and
  :mod:`.reader`, the :class:`~.reader.RegistryReader` protocol both implement.
- :mod:`.integrity`: ``verify`` and ``gc``.

Importing this package does not import SQLAlchemy: :class:`Registry` loads on first use, so
the fast reader stays fast.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .inputs import (
        ALIAS_RE,
        ENTITY_KINDS,
        GC_GRACE_SECONDS,
        NAME_RE,
        NODE_KINDS,
        RELATIONS,
        STATUSES,
        EdgeIn,
        MetricIn,
        TrainingRunIn,
        config_hash,
        validate_name,
    )
    from .lineage import LineageGraph
    from .reader import RegistryReader
    from .registry import Registry

__all__ = [
    "ALIAS_RE",
    "ENTITY_KINDS",
    "GC_GRACE_SECONDS",
    "NAME_RE",
    "NODE_KINDS",
    "RELATIONS",
    "STATUSES",
    "EdgeIn",
    "LineageGraph",
    "MetricIn",
    "Registry",
    "RegistryReader",
    "TrainingRunIn",
    "config_hash",
    "validate_name",
]


# Nothing is imported with the package itself: the CLI's start-up imports :mod:`.commits` (a
# counter), and ``--help`` or a command that never opens the store should not pay for the
# entities, the mappers or SQLAlchemy. Each name loads its module on first use (imports inside
# a function, so tools/modgraph.py still counts these edges).
_INPUTS = frozenset(__all__) - {"LineageGraph", "Registry", "RegistryReader"}


def __getattr__(name: str) -> Any:
    home: ModuleType
    if name in _INPUTS:
        from . import inputs as home
    elif name == "LineageGraph":
        from . import lineage as home
    elif name == "RegistryReader":
        from . import reader as home
    elif name == "Registry":
        from . import registry as home
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(home, name)
    globals()[name] = value  # the next look-up is a plain global
    return value
