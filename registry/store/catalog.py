"""The catalog: base models, tasks, dataset snapshots, and reading versions and fusions."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

from sqlalchemy import exc, select
from sqlalchemy.orm import Session

from .. import entities as E
from ..artifact_store import ensure_published, hold_artifact_lock
from ..errors import (
    IntegrityError,
    InvalidInput,
    NotFound,
)
from ..orm import (
    SqlAdapterVersion,
    SqlAlias,
    SqlBaseModel,
    SqlDataset,
    SqlFusion,
    SqlTask,
    SqlTrainingRun,
)
from . import mappers
from .inputs import (
    DELETED,
    STATUSES,
    check_task_kind,
    validate_name,
)
from .lookups import _adapter_versions, _base, _dataset, _fusions, _resolve, _task

# Re-exported: the store's other classes import these from here.
from .lookups import _base_label as _base_label
from .lookups import _drift as _drift
from .lookups import _edge as _edge
from .lookups import _hub as _hub
from .lookups import _metric as _metric
from .lookups import _node_label as _node_label
from .lookups import _promotion as _promotion
from .lookups import _task_row as _task_row
from .session import Plumbing

T = TypeVar("T")


class Catalog(Plumbing):
    """Looking things up (and the few rows every registration ensures)."""

    # ------------------------------------------------------------------ base models & tasks
    def ensure_base_model(
        self,
        name: str,
        revision: str,
        architecture: str,
        hidden_size: int,
        num_layers: int,
        *,
        weights_sha256: str | None = None,
        hub_id: str | None = None,
        hub_commit: str | None = None,
    ) -> E.BaseModel:
        """Return the base model row for these weights, creating it if needed.

        A base is its content: with ``weights_sha256`` given, a row holding the same weights
        is this base wherever its folder lies (a folder that no longer exists is re-pointed to
        ``name``). Without it, (``name``, ``revision``) identifies the row. A Hub id and commit
        learnt later are filled in.
        """

        def fn(s: Session) -> E.BaseModel:
            row = None
            if weights_sha256 is not None:
                row = s.scalar(
                    select(SqlBaseModel)
                    .where(SqlBaseModel.weights_sha256 == weights_sha256)
                    .order_by(SqlBaseModel.id)
                    .limit(1)
                )
            if row is None:
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
                    weights_sha256=weights_sha256,
                    hub_id=hub_id,
                    hub_commit=hub_commit,
                )
                s.add(row)
                s.flush()
                return _base(row)
            if row.name != name and _moved_folder(row) and Path(name).is_absolute():
                row.name = name
            if row.weights_sha256 is None and weights_sha256 is not None:
                row.weights_sha256 = weights_sha256
            if row.hub_id is None and hub_id is not None:
                row.hub_id, row.hub_commit = hub_id, hub_commit
            return _base(row)

        return self._write(fn, is_conflict=lambda e: isinstance(e, exc.IntegrityError))

    def relink_base_model(
        self, base_model_id: int, folder: str, weights_sha256: str
    ) -> E.BaseModel:
        """Point a base model at the folder its weights now lie in (digest checked by the caller).

        Raises:
            IntegrityError: the folder holds other weights than the base model's.
        """

        def fn(s: Session) -> E.BaseModel:
            row = s.get(SqlBaseModel, base_model_id)
            if row is None:
                raise NotFound(
                    f"No base model with id {base_model_id}.",
                    hint="List base models with: adapter-registry base list",
                )
            recorded = row.weights_sha256 or (row.revision if len(row.revision) == 64 else None)
            if recorded != weights_sha256:
                raise IntegrityError(
                    f"{folder} holds other weights (sha256 {weights_sha256[:12]}) than base "
                    f"model {base_model_id} ({row.name}, sha256 {(recorded or '?')[:12]}).",
                    hint="Give the folder holding the weights the base was registered with.",
                )
            row.name = folder
            row.weights_sha256 = weights_sha256
            return _base(row)

        return self._write(fn)

    def list_base_models(self) -> list[E.BaseModel]:
        """Return every base model, oldest first."""
        return self._read(
            lambda s: [_base(r) for r in s.scalars(select(SqlBaseModel).order_by(SqlBaseModel.id))]
        )

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
            check_task_kind(name, row.kind, kind)
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
        entity = self._read(lambda s: _resolve(s, ref))
        if entity.status == DELETED:
            raise NotFound(
                f"{entity.ref} ({entity.uid}) was deleted; only its lineage row remains.",
                hint=f"Run: adapter-registry lineage {entity.task}:production, or list --task "
                f"{entity.task}",
            )
        return entity

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
                q = q.where(SqlAdapterVersion.status != DELETED)
                if not include_deprecated:
                    q = q.where(SqlAdapterVersion.status == "active")
                if limit is not None:
                    q = q.limit(limit)
                out.extend(_adapter_versions(s, list(reversed(s.scalars(q).all()))))
            if kind in (None, "fusion"):
                fq = select(SqlFusion).order_by(SqlFusion.id.desc())
                if task_id is not None:
                    fq = fq.where(SqlFusion.task_id == task_id)
                fq = fq.where(SqlFusion.status != DELETED)
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


def _moved_folder(row: SqlBaseModel) -> bool:
    """True when a base model row names a local folder that is no longer there."""
    if row.hub_id is not None and row.hub_id == row.name:
        return False  # loaded by Hub id
    return (len(row.revision) == 64 or row.weights_sha256 is not None) and not (
        Path(row.name).expanduser().is_dir()
    )
