"""``verify`` and ``gc``: every artifact a row points at is checked, and only those are kept."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from .. import entities as E
from ..errors import NotFound, RegistryError
from ..orm import (
    SqlAdapter,
    SqlAdapterVersion,
    SqlDataset,
    SqlDriftReport,
    SqlFusion,
    SqlHubLink,
    SqlLineage,
)
from . import mappers
from .inputs import DELETED

if TYPE_CHECKING:
    from .registry import Registry


#: The table of each lineage node kind.
NODE_TABLES: dict[str, Any] = {
    "adapter": SqlAdapterVersion,
    "fusion": SqlFusion,
    "drift": SqlDriftReport,
    "hub": SqlHubLink,
    "dataset": SqlDataset,
}


def node_exists(s: Session, kind: str, node_id: int) -> bool:
    """Return True if the lineage node ``kind:node_id`` exists."""
    table = NODE_TABLES.get(kind)
    return table is not None and s.get(table, node_id) is not None


def referenced_artifacts(s: Session) -> dict[str, str]:
    """Return every artifact id a row points at, with a description of the row."""
    out: dict[str, str] = {}
    q = select(
        SqlAdapter.name,
        SqlAdapterVersion.version,
        SqlAdapterVersion.artifact_sha256,
        SqlAdapterVersion.profile_sha256,
    ).join(SqlAdapter, SqlAdapter.id == SqlAdapterVersion.adapter_id)
    # A deleted version's row stays for lineage, but its files are no longer kept.
    q = q.where(SqlAdapterVersion.status != DELETED)
    for name, version, sha, profile in s.execute(q):
        out[sha] = f"adapter {name}@{version}"
        if profile:
            out[profile] = f"profile of {name}@{version}"
    for name, version, sha in s.execute(
        select(SqlFusion.name, SqlFusion.version, SqlFusion.artifact_sha256).where(
            SqlFusion.status != DELETED
        )
    ):
        out[sha] = f"fusion {name}@{version}"
    for ds_id, rows_sha in s.execute(
        select(SqlDataset.id, SqlDataset.artifact_sha256).where(
            SqlDataset.artifact_sha256.is_not(None)
        )
    ):
        if rows_sha:
            out.setdefault(rows_sha, f"rows of dataset {ds_id}")
    return out


def verify(registry: Registry) -> E.VerifyReport:
    """Check every referenced artifact against its sha256 and every lineage edge's ends."""
    report = E.VerifyReport()
    for error in database_check(registry):
        report.problems.append(
            {"kind": "database", "what": "registry database", "sha256": "", "error": error}
        )
    referenced = registry.referenced_artifacts()
    for sha, what in sorted(referenced.items()):
        report.rows_checked += 1
        try:
            registry.artifacts.verify(sha, what)
            report.artifacts_checked += 1
        except RegistryError as err:
            kind = "missing" if isinstance(err, NotFound) else "damaged"
            report.problems.append({"kind": kind, "what": what, "sha256": sha, "error": str(err)})

    def dangling(s: Session) -> list[tuple[E.LineageEdge, str, int]]:
        out: list[tuple[E.LineageEdge, str, int]] = []
        for row in s.scalars(select(SqlLineage)):
            edge = mappers.edge(mappers.columns(row))
            ends = ((edge.parent_kind, edge.parent_id), (edge.child_kind, edge.child_id))
            out.extend((edge, k, i) for k, i in ends if not node_exists(s, k, i))
        return out

    report.rows_checked += registry._read(
        lambda s: s.scalar(select(func.count(SqlLineage.id))) or 0
    )
    for edge, kind, nid in registry._read(dangling):
        report.problems.append(
            {
                "kind": "dangling-edge",
                "what": f"lineage edge {edge.id} ({edge.relation})",
                "sha256": "",
                "error": f"points at missing {kind}:{nid}",
            }
        )
    on_disk = set(registry.artifacts.all_ids())
    report.orphans = sorted(on_disk - set(referenced))
    report.orphans += [left.location for left in registry.artifacts.leftovers()]
    return report


def database_check(registry: Registry) -> list[str]:
    """Return what SQLite's own ``PRAGMA integrity_check`` finds wrong (every page is read).

    Rows that ``verify`` never reads would otherwise hide a damaged page. PostgreSQL has no
    built-in equivalent (its ``amcheck`` extension needs a superuser), so it is skipped there.
    """
    if not registry.settings.is_sqlite:
        return []
    try:
        rows = registry._read(lambda s: list(s.execute(text("PRAGMA integrity_check")).scalars()))
    except RegistryError as err:
        return [err.message]
    return [] if rows == ["ok"] else [str(r) for r in rows[:20]]


def gc(registry: Registry, *, dry_run: bool, grace_seconds: float) -> list[str]:
    """Remove unreferenced artifacts and leftovers older than ``grace_seconds``.

    Each removal happens under the lock writers hold while committing, re-checking the rows
    there (:meth:`registry.store.Registry._remove_unused`), so a write that reused an old orphan
    either commits first and keeps it, or finds it gone and publishes it again.
    """
    referenced = set(registry.referenced_artifacts())
    removed: list[str] = []
    artifacts = registry.artifacts
    for sha in artifacts.all_ids():
        if sha in referenced or artifacts.age(sha) < grace_seconds:
            continue
        if dry_run or registry.transaction(
            functools.partial(registry._remove_unused, sha, grace_seconds)
        ):
            removed.append(artifacts.location(sha))
    for leftover in artifacts.leftovers():
        if leftover.age < grace_seconds:
            continue
        removed.append(leftover.location)
        if not dry_run:
            artifacts.remove_leftover(leftover.location)
    return removed
