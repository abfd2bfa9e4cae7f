"""The catalog: base models, tasks, dataset snapshots, and reading versions and fusions."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import exc, select
from sqlalchemy.orm import Session

from .. import entities as E
from ..artifact_store import ensure_published, hold_artifact_lock
from ..errors import (
    InvalidInput,
    NotFound,
)
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
    SqlTrainingRun,
)
from . import mappers
from .inputs import (
    ENTITY_KINDS,
    STATUSES,
    validate_name,
)
from .integrity import NODE_TABLES as _NODE_TABLES
from .integrity import node_exists as _node_exists
from .refs import missing_version, parse_ref
from .session import Plumbing

T = TypeVar("T")


class Catalog(Plumbing):
    """Looking things up (and the few rows every registration ensures)."""

    # ------------------------------------------------------------------ base models & tasks
    def ensure_base_model(
        self, name: str, revision: str, architecture: str, hidden_size: int, num_layers: int
    ) -> E.BaseModel:
        """Return the base model row for (name, revision), creating it if needed."""

        def fn(s: Session) -> E.BaseModel:
            row = s.scalar(
                select(SqlBaseModel).where(
                    SqlBaseModel.name == name, SqlBaseModel.revision == revision
                )
            )
            if row is None:
                row = SqlBaseModel(
                    name=name,
                    revision=revision,
                    architecture=architecture,
                    hidden_size=hidden_size,
                    num_layers=num_layers,
                )
                s.add(row)
                s.flush()
            return _base(row)

        return self._write(fn, is_conflict=lambda e: isinstance(e, exc.IntegrityError))

    def get_base_model(self, base_model_id: int) -> E.BaseModel:
        """Return a base model by id."""

        def fn(s: Session) -> E.BaseModel:
            row = s.get(SqlBaseModel, base_model_id)
            if row is None:
                raise NotFound(
                    f"No base model with id {base_model_id}.", hint="Run: adapter-registry verify"
                )
            return _base(row)

        return self._read(fn)

    def ensure_task(
        self,
        name: str,
        kind: str,
        label_names: Sequence[str],
        text_fields: Sequence[str],
        base_model_id: int | None = None,
    ) -> E.Task:
        """Return the task, creating it on first use; refuse a different label set or base."""
        validate_name(name, "task name")
        if kind not in ("single", "pair"):
            raise InvalidInput(
                f"Task kind must be 'single' or 'pair', not {kind!r}.",
                hint="Use single (one text) or pair (two texts).",
            )
        labels = list(label_names)
        if len(labels) < 2 or len(set(labels)) != len(labels):
            raise InvalidInput(
                f"Task {name!r} needs at least two distinct labels, got {labels}.",
                hint="Check the label field of the data.",
            )

        def fn(s: Session) -> E.Task:
            row = s.scalar(select(SqlTask).where(SqlTask.name == name))
            if row is None:
                row = SqlTask(
                    name=name,
                    kind=kind,
                    label_names=labels,
                    text_fields=list(text_fields),
                    base_model_id=base_model_id,
                )
                s.add(row)
                s.flush()
                return _task(row)
            if list(row.label_names) != labels:
                raise InvalidInput(
                    f"Task {name!r} is registered with labels {list(row.label_names)}, but the "
                    f"data has {labels}.",
                    hint="Fix the data's labels, or register a new task under another name.",
                )
            if row.kind != kind:
                raise InvalidInput(
                    f"Task {name!r} is a {row.kind}-text task, but the data is {kind}-text.",
                    hint="Check --text-fields, or use another task name.",
                )
            if base_model_id is not None and row.base_model_id is None:
                row.base_model_id = base_model_id
            elif base_model_id is not None and row.base_model_id != base_model_id:
                base = s.get(SqlBaseModel, row.base_model_id)
                new = s.get(SqlBaseModel, base_model_id)
                raise InvalidInput(
                    f"Task {name!r} is registered on base model {_base_label(base)}, not "
                    f"{_base_label(new)}: adapters of one task must share a base model.",
                    hint=f"Train with --base {base.name if base else '...'}, "
                    "or use another task name.",
                )
            return _task(row)

        return self._write(fn, is_conflict=lambda e: isinstance(e, exc.IntegrityError))

    def get_task(self, name: str) -> E.Task:
        """Return a task by name."""

        def fn(s: Session) -> E.Task:
            row = s.scalar(select(SqlTask).where(SqlTask.name == name))
            if row is None:
                known = s.scalars(select(SqlTask.name).order_by(SqlTask.name)).all()
                raise NotFound(
                    f"No task named {name!r}."
                    + (f" Known tasks: {', '.join(known)}." if known else ""),
                    hint="Run: adapter-registry list",
                )
            return _task(row)

        return self._read(fn)

    def get_task_by_id(self, task_id: int) -> E.Task:
        """Return a task by id."""

        def fn(s: Session) -> E.Task:
            row = s.get(SqlTask, task_id)
            if row is None:
                raise NotFound(f"No task with id {task_id}.", hint="Run: adapter-registry list")
            return _task(row)

        return self._read(fn)

    def list_tasks(self) -> list[E.Task]:
        """Return every task, by name."""
        return self._read(
            lambda s: [_task(r) for r in s.scalars(select(SqlTask).order_by(SqlTask.name))]
        )

    # ------------------------------------------------------------------ datasets
    def record_dataset(
        self,
        task_id: int,
        source: str,
        split: str,
        row_count: int,
        fingerprint: str,
        label_distribution: dict[str, int],
        artifact_sha256: str | None = None,
    ) -> E.Dataset:
        """Record a data snapshot (deduplicated by task, split and fingerprint).

        ``artifact_sha256``: the artifact holding the rows, when the registry wrote them (a
        replay mix); ``verify`` then checks it and ``gc`` keeps it.
        """

        def fn(s: Session) -> E.Dataset:
            if artifact_sha256 is not None:  # see register_adapter_version
                hold_artifact_lock(s, exclusive=False)
                ensure_published(self.artifacts, artifact_sha256, None)
            row = s.scalar(
                select(SqlDataset).where(
                    SqlDataset.task_id == task_id,
                    SqlDataset.split == split,
                    SqlDataset.fingerprint == fingerprint,
                )
            )
            if row is None:
                row = SqlDataset(
                    task_id=task_id,
                    source=source,
                    split=split,
                    row_count=row_count,
                    fingerprint=fingerprint,
                    label_distribution=dict(label_distribution),
                    artifact_sha256=artifact_sha256,
                )
                s.add(row)
                s.flush()
            elif artifact_sha256 is not None and row.artifact_sha256 is None:
                row.artifact_sha256 = artifact_sha256
            return _dataset(row)

        return self._write(fn, is_conflict=lambda e: isinstance(e, exc.IntegrityError))

    def get_dataset(self, dataset_id: int) -> E.Dataset:
        """Return a dataset snapshot by id."""

        def fn(s: Session) -> E.Dataset:
            row = s.get(SqlDataset, dataset_id)
            if row is None:
                raise NotFound(
                    f"No dataset snapshot with id {dataset_id}.",
                    hint="Run: adapter-registry report",
                )
            return _dataset(row)

        return self._read(fn)

    def list_datasets(self, task_id: int | None = None) -> list[E.Dataset]:
        """Return dataset snapshots, oldest first."""

        def fn(s: Session) -> list[E.Dataset]:
            q = select(SqlDataset).order_by(SqlDataset.id)
            if task_id is not None:
                q = q.where(SqlDataset.task_id == task_id)
            return [_dataset(r) for r in s.scalars(q)]

        return self._read(fn)

    # ------------------------------------------------------------------ reading
    def get_adapter_version(self, version_id: int) -> E.AdapterVersion:
        """Return an adapter version by id."""

        def fn(s: Session) -> E.AdapterVersion:
            row = s.get(SqlAdapterVersion, version_id)
            if row is None:
                raise NotFound(
                    f"No adapter version with id a{version_id}.",
                    hint="Run: adapter-registry list --kind adapter",
                )
            return _adapter_versions(s, [row])[0]

        return self._read(fn)

    def get_fusion(self, fusion_id: int) -> E.Fusion:
        """Return a fusion by id."""

        def fn(s: Session) -> E.Fusion:
            row = s.get(SqlFusion, fusion_id)
            if row is None:
                raise NotFound(
                    f"No fusion with id f{fusion_id}.",
                    hint="Run: adapter-registry list --kind fusion",
                )
            return _fusions(s, [row])[0]

        return self._read(fn)

    def get_entity(self, kind: str, entity_id: int) -> E.Entity:
        """Return an adapter version or fusion by kind and id."""
        if kind == "adapter":
            return self.get_adapter_version(entity_id)
        if kind == "fusion":
            return self.get_fusion(entity_id)
        raise InvalidInput(f"Unknown entity kind {kind!r}.", hint="Use adapter or fusion.")

    def resolve(self, ref: str) -> E.Entity:
        """Resolve a REF: ``name@version``, ``name`` (latest active), ``task:alias``, or an id.

        Ids are ``a12`` (adapter version), ``f3`` (fusion), or a bare number when only one
        table has it.
        """
        ref = ref.strip()
        if not ref:
            raise InvalidInput("The reference is empty.", hint="Run: adapter-registry list")
        return self._read(lambda s: _resolve(s, ref))

    def list_entities(
        self,
        task: str | None = None,
        kind: str | None = None,
        include_deprecated: bool = True,
        limit: int | None = None,
    ) -> list[E.Entity]:
        """Return adapter versions, then fusions, each oldest first, optionally filtered.

        ``limit`` keeps only the newest ``limit`` adapter versions and the newest ``limit``
        fusions (the query itself is limited, so large registries stay fast).
        """

        def fn(s: Session) -> list[E.Entity]:
            task_id = _task_row(s, task).id if task else None
            out: list[E.Entity] = []
            if kind in (None, "adapter"):
                q = select(SqlAdapterVersion).order_by(SqlAdapterVersion.id.desc())
                if task_id is not None:
                    q = q.where(SqlAdapterVersion.task_id == task_id)
                if not include_deprecated:
                    q = q.where(SqlAdapterVersion.status == "active")
                if limit is not None:
                    q = q.limit(limit)
                out.extend(_adapter_versions(s, list(reversed(s.scalars(q).all()))))
            if kind in (None, "fusion"):
                fq = select(SqlFusion).order_by(SqlFusion.id.desc())
                if task_id is not None:
                    fq = fq.where(SqlFusion.task_id == task_id)
                if not include_deprecated:
                    fq = fq.where(SqlFusion.status == "active")
                if limit is not None:
                    fq = fq.limit(limit)
                out.extend(_fusions(s, list(reversed(s.scalars(fq).all()))))
            return out

        return self._read(fn)

    def set_status(self, ref: str, status: str, *, force: bool = False) -> E.Entity:
        """Mark an adapter version or fusion ``active`` or ``deprecated`` (nothing else changes).

        Deprecating the target of an alias (``task:production``) is refused unless ``force``:
        it would leave an alias that ``alias`` itself refuses to set.
        """
        if status not in STATUSES:
            raise InvalidInput(
                f"Status must be one of {', '.join(STATUSES)}, not {status!r}.",
                hint="Use active or deprecated (adapter-registry deprecate REF [--undo]).",
            )
        entity = self.resolve(ref)

        def fn(s: Session) -> None:
            row: SqlAdapterVersion | SqlFusion | None = (
                s.get(SqlAdapterVersion, entity.id)
                if entity.kind == "adapter"
                else s.get(SqlFusion, entity.id)
            )
            assert row is not None
            if status == "deprecated" and not force:
                aliases = s.scalars(
                    select(SqlAlias).where(
                        SqlAlias.target_kind == entity.kind, SqlAlias.target_id == entity.id
                    )
                ).all()
                if aliases:
                    task = s.get(SqlTask, entity.task_id)
                    task_name = task.name if task else "TASK"
                    names = ", ".join(f"{task_name}:{a.alias}" for a in aliases)
                    raise InvalidInput(
                        f"{entity.ref} is the target of {names}; deprecating it would leave an "
                        "alias on a deprecated model.",
                        hint=f"Point the alias at another model first (adapter-registry alias "
                        f"{task_name} {aliases[0].alias} REF), or pass --force.",
                    )
            row.status = status

        self._write(fn)
        return self.get_entity(entity.kind, entity.id)

    def artifact_path(self, entity: E.Entity) -> Path:
        """Return the verified artifact folder of an adapter version or fusion."""
        return self.artifacts.open(entity.artifact_sha256, what=f"{entity.kind} {entity.ref}")

    def profile_path(self, version: E.AdapterVersion) -> Path | None:
        """Return the verified reference-profile folder of an adapter version, if it has one."""
        if version.profile_sha256 is None:
            return None
        return self.artifacts.open(version.profile_sha256, what=f"profile of {version.ref}")

    def training_run(self, run_id: int) -> E.TrainingRun:
        """Return a training run by id."""

        def fn(s: Session) -> E.TrainingRun:
            row = s.get(SqlTrainingRun, run_id)
            if row is None:
                raise NotFound(
                    f"No training run with id {run_id}.", hint="Run: adapter-registry verify"
                )
            return mappers.training_run(mappers.columns(row))

        return self._read(fn)


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
            select(SqlAdapter.name, SqlAdapterVersion.version)
            .join(SqlAdapter, SqlAdapter.id == SqlAdapterVersion.adapter_id)
            .where(SqlAdapterVersion.id == node_id)
        ).first()
        found = {"name": row[0], "version": row[1]} if row else None
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
