"""Session-level look-ups shared by the store's classes: REF resolution, node labels, and ORM
rows mapped to entities (the mappings themselves live in :mod:`.mappers`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import entities as E
from ..errors import InvalidInput, NotFound
from ..orm import (
    SqlAdapter,
    SqlAdapterVersion,
    SqlAlias,
    SqlBaseModel,
    SqlDataset,
    SqlDriftReport,
    SqlFusion,
    SqlFusionMember,
    SqlHubLink,
    SqlLineage,
    SqlMetric,
    SqlPromotion,
    SqlTask,
)
from . import mappers
from .inputs import ENTITY_KINDS
from .integrity import NODE_TABLES as _NODE_TABLES
from .integrity import node_exists as _node_exists
from .refs import missing_version, parse_ref


def _base_label(row: SqlBaseModel | None) -> str:
    return "?" if row is None else f"{row.name} (revision {row.revision[:12]})"


def _task_row(s: Session, name: str) -> SqlTask:
    row = s.scalar(select(SqlTask).where(SqlTask.name == name))
    if row is None:
        raise NotFound(f"No task named {name!r}.", hint="Run: adapter-registry list")
    return row


def _resolve(s: Session, text: str) -> E.Entity:
    ref = parse_ref(text)
    if ref.form == "id":
        assert ref.kind is not None and ref.id is not None
        return _by_id(s, ref.kind, ref.id, text)
    if ref.form == "bare_id":
        n = ref.id
        assert n is not None
        hits = [k for k in ENTITY_KINDS if _node_exists(s, k, n)]
        if len(hits) > 1:
            raise InvalidInput(
                f"The id {text} is ambiguous: both adapter version a{n} and fusion f{n} exist.",
                hint=f"Use a{n} or f{n}.",
            )
        if not hits:
            raise NotFound(f"Nothing has the id {text}.", hint="Run: adapter-registry list")
        return _by_id(s, hits[0], n, text)
    if ref.form == "alias":
        task = s.scalar(select(SqlTask).where(SqlTask.name == ref.task))
        if task is None:
            raise NotFound(
                f"No task named {ref.task!r} (in {text!r}).", hint="Run: adapter-registry list"
            )
        row = s.scalar(
            select(SqlAlias).where(SqlAlias.task_id == task.id, SqlAlias.alias == ref.alias)
        )
        if row is None:
            raise NotFound(
                f"Task {ref.task!r} has no alias {ref.alias!r}.",
                hint=f"Set one: adapter-registry alias {ref.task} {ref.alias} REF",
            )
        return _by_id(s, row.target_kind, row.target_id, text)
    adapter = s.scalar(select(SqlAdapter).where(SqlAdapter.name == ref.name))
    if adapter is not None:
        q = select(SqlAdapterVersion).where(SqlAdapterVersion.adapter_id == adapter.id)
        if ref.version is not None:
            q = q.where(SqlAdapterVersion.version == ref.version)
        else:
            q = q.where(SqlAdapterVersion.status == "active")
        av = s.scalar(q.order_by(SqlAdapterVersion.version.desc()).limit(1))
        if av is None:
            raise NotFound(missing_version(ref), hint=f"Run: adapter-registry show {ref.name}@1")
        return _adapter_versions(s, [av])[0]
    fq = select(SqlFusion).where(SqlFusion.name == ref.name)
    if ref.version is not None:
        fq = fq.where(SqlFusion.version == ref.version)
    else:
        fq = fq.where(SqlFusion.status == "active")
    fusion = s.scalar(fq.order_by(SqlFusion.version.desc()).limit(1))
    if fusion is not None:
        return _fusions(s, [fusion])[0]
    if s.scalar(select(SqlFusion.id).where(SqlFusion.name == ref.name).limit(1)):
        raise NotFound(missing_version(ref), hint="Run: adapter-registry list")
    raise NotFound(f"No adapter or fusion matches {text!r}.", hint="Run: adapter-registry list")


def _by_id(s: Session, kind: str, entity_id: int, ref: str) -> E.Entity:
    if kind == "adapter":
        row = s.get(SqlAdapterVersion, entity_id)
        if row is not None:
            return _adapter_versions(s, [row])[0]
    else:
        frow = s.get(SqlFusion, entity_id)
        if frow is not None:
            return _fusions(s, [frow])[0]
    raise NotFound(f"No {kind} matches {ref!r}.", hint="Run: adapter-registry list")


def _node_label(s: Session, kind: str, node_id: int) -> str:
    found: dict[str, Any] | None = None
    if kind == "adapter":
        row = s.execute(
            select(SqlAdapter.name, SqlAdapterVersion.version, SqlAdapterVersion.status)
            .join(SqlAdapter, SqlAdapter.id == SqlAdapterVersion.adapter_id)
            .where(SqlAdapterVersion.id == node_id)
        ).first()
        found = {"name": row[0], "version": row[1], "status": row[2]} if row else None
    elif kind in _NODE_TABLES:
        obj = s.get(_NODE_TABLES[kind], node_id)
        found = mappers.columns(obj) if obj is not None else None
    return mappers.node_label(kind, node_id, found)


def _base(row: SqlBaseModel) -> E.BaseModel:
    return mappers.base_model(mappers.columns(row))


def _task(row: SqlTask) -> E.Task:
    return mappers.task(mappers.columns(row))


def _dataset(row: SqlDataset) -> E.Dataset:
    return mappers.dataset(mappers.columns(row))


def _promotion(row: SqlPromotion) -> E.Promotion:
    return mappers.promotion(mappers.columns(row))


def _metric(row: SqlMetric) -> E.Metric:
    return mappers.metric(mappers.columns(row))


def _edge(row: SqlLineage) -> E.LineageEdge:
    return mappers.edge(mappers.columns(row))


def _drift(row: SqlDriftReport) -> E.DriftReport:
    return mappers.drift_report(mappers.columns(row))


def _hub(row: SqlHubLink) -> E.HubLink:
    return mappers.hub_link(mappers.columns(row))


def _adapter_versions(s: Session, rows: list[SqlAdapterVersion]) -> list[E.AdapterVersion]:
    if not rows:
        return []
    names = (
        {r[0]: r[1] for r in s.execute(select(SqlAdapter.id, SqlAdapter.name))}
        if len(rows) > 50
        else {
            a.id: a.name
            for a in s.scalars(
                select(SqlAdapter).where(SqlAdapter.id.in_({r.adapter_id for r in rows}))
            )
        }
    )
    tasks = {r[0]: r[1] for r in s.execute(select(SqlTask.id, SqlTask.name))}
    return [
        mappers.adapter_version(mappers.columns(r), names[r.adapter_id], tasks[r.task_id])
        for r in rows
    ]


def _fusions(s: Session, rows: list[SqlFusion]) -> list[E.Fusion]:
    if not rows:
        return []
    tasks = {r[0]: r[1] for r in s.execute(select(SqlTask.id, SqlTask.name))}
    ids = [r.id for r in rows]
    members: dict[int, list[tuple[int, int, str, int]]] = {i: [] for i in ids}
    q = (
        select(
            SqlFusionMember.fusion_id,
            SqlFusionMember.position,
            SqlAdapterVersion.id,
            SqlAdapter.name,
            SqlAdapterVersion.version,
        )
        .join(SqlAdapterVersion, SqlAdapterVersion.id == SqlFusionMember.adapter_version_id)
        .join(SqlAdapter, SqlAdapter.id == SqlAdapterVersion.adapter_id)
        .where(SqlFusionMember.fusion_id.in_(ids))
    )
    for fid, pos, avid, name, version in s.execute(q):
        members[fid].append((pos, avid, name, version))
    return [mappers.fusion(mappers.columns(r), tasks[r.task_id], members[r.id]) for r in rows]
