"""Registering new adapter versions and fusions: one transaction each, artifacts first."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import exc, func, select
from sqlalchemy.orm import Session

from .. import entities as E
from ..artifact_store import ensure_published, hold_artifact_lock
from ..errors import (
    AlreadyExists,
    InvalidInput,
    NotFound,
)
from ..orm import (
    SqlAdapter,
    SqlAdapterVersion,
    SqlBaseModel,
    SqlFusion,
    SqlFusionMember,
    SqlLineage,
    SqlMetric,
    SqlTask,
    SqlTrainingRun,
)
from .catalog import Catalog, _base_label, _task_row
from .inputs import (
    NODE_KINDS,
    RELATIONS,
    EdgeIn,
    MetricIn,
    TrainingRunIn,
    config_hash,
    validate_name,
)
from .integrity import node_exists as _node_exists

T = TypeVar("T")


def _is_version_race(err: BaseException) -> bool:
    # Lost a race for the next version number, or (PostgreSQL, read committed) for creating the
    # name's ``adapters`` row: the retry re-reads both. SQLite serialises writers instead.
    text_ = str(err.orig).lower() if isinstance(err, exc.IntegrityError) else ""
    return "version" in text_ or "uq_adapters_name" in text_ or "adapters.name" in text_


class Registering(Catalog):
    """Publishing a version's files and registering them as the next version of a name."""

    # ------------------------------------------------------------------ registering
    # long: one transaction: every row of a new version is written here, so its atomicity is visible
    # in one place
    def register_adapter_version(
        self,
        *,
        name: str,
        task: str,
        base_model_id: int,
        method: str,
        config: dict[str, Any],
        artifact_dir: Path,
        trainable_params: int,
        training_run: TrainingRunIn | dict[str, Any] | None = None,
        metrics: Iterable[MetricIn] = (),
        lineage: Iterable[EdgeIn] = (),
        profile_dir: Path | None = None,
        description: str | None = None,
    ) -> E.AdapterVersion:
        """Publish an adapter's files and register them as the next version of ``name``.

        Everything (version, training run, metrics, lineage) is one transaction; the
        artifact is published first, so a failure leaves at most an unreferenced artifact.
        """
        validate_name(name, "adapter name")
        metrics = list(metrics)
        lineage = list(lineage)
        for edge in lineage:
            _check_edge(edge.parent_kind, edge.relation)
        stored = self.artifacts.put(artifact_dir)
        profile = self.artifacts.put(profile_dir) if profile_dir is not None else None

        def fn(s: Session) -> int:
            # Under the lock gc takes: re-publish what a gc removed since put() reused it.
            hold_artifact_lock(s, exclusive=False)
            ensure_published(self.artifacts, stored.sha256, artifact_dir)
            if profile is not None:
                ensure_published(self.artifacts, profile.sha256, profile_dir)
            task_row = _task_row(s, task)
            if task_row.base_model_id is not None and task_row.base_model_id != base_model_id:
                raise InvalidInput(
                    f"Task {task!r} is registered on another base model "
                    f"({_base_label(s.get(SqlBaseModel, task_row.base_model_id))}).",
                    hint="Train on the task's base model, or use another task name.",
                )
            if s.scalar(select(SqlFusion.id).where(SqlFusion.name == name).limit(1)):
                raise AlreadyExists(
                    f"{name!r} is already the name of a fusion.", hint="Pick another name."
                )
            adapter = s.scalar(select(SqlAdapter).where(SqlAdapter.name == name))
            if adapter is None:
                adapter = SqlAdapter(name=name, task_id=task_row.id, description=description)
                s.add(adapter)
                s.flush()
            elif adapter.task_id != task_row.id:
                other = s.get(SqlTask, adapter.task_id)
                raise InvalidInput(
                    f"Adapter {name!r} belongs to task {other.name if other else '?'!r}, "
                    f"not {task!r}.",
                    hint="Use another adapter name for this task.",
                )
            for edge in lineage:
                _require_node(s, edge.parent_kind, edge.parent_id)
            run_id = _add_run(s, "adapter", training_run)
            latest = s.scalar(
                select(func.max(SqlAdapterVersion.version)).where(
                    SqlAdapterVersion.adapter_id == adapter.id
                )
            )
            row = SqlAdapterVersion(
                adapter_id=adapter.id,
                version=(latest or 0) + 1,
                task_id=task_row.id,
                base_model_id=base_model_id,
                method=method,
                config=config,
                config_hash=config_hash(config),
                artifact_sha256=stored.sha256,
                artifact_size=stored.size,
                trainable_params=trainable_params,
                training_run_id=run_id,
                profile_sha256=profile.sha256 if profile else None,
                status="active",
            )
            s.add(row)
            s.flush()
            _add_measured_and_lineage(s, "adapter", row.id, metrics, lineage)
            return row.id

        new_id = self._write(fn, is_conflict=_is_version_race)
        return self.get_adapter_version(new_id)

    # long: one transaction: every row of a new fusion is written here, so its atomicity is visible
    # in one place
    def register_fusion(
        self,
        *,
        name: str,
        task: str,
        base_model_id: int,
        member_ids: Sequence[int],
        config: dict[str, Any],
        head: dict[str, Any],
        artifact_dir: Path,
        trainable_params: int,
        training_run: TrainingRunIn | dict[str, Any] | None = None,
        metrics: Iterable[MetricIn] = (),
        lineage: Iterable[EdgeIn] = (),
    ) -> E.Fusion:
        """Publish a fusion's files and register them as the next version of ``name``.

        A ``fused_from`` edge to every member is added automatically.
        """
        validate_name(name, "fusion name")
        metrics = list(metrics)
        lineage = list(lineage)
        if len(set(member_ids)) != len(member_ids):
            raise InvalidInput(
                "A fusion's members must be distinct adapter versions.",
                hint="Name each member once.",
            )
        stored = self.artifacts.put(artifact_dir)

        def fn(s: Session) -> int:
            hold_artifact_lock(s, exclusive=False)  # see register_adapter_version
            ensure_published(self.artifacts, stored.sha256, artifact_dir)
            task_row = _task_row(s, task)
            if s.scalar(select(SqlAdapter.id).where(SqlAdapter.name == name)):
                raise AlreadyExists(
                    f"{name!r} is already the name of an adapter.", hint="Pick another name."
                )
            for mid in member_ids:
                member = s.get(SqlAdapterVersion, mid)
                if member is None:
                    raise NotFound(
                        f"No adapter version with id {mid}.",
                        hint="Run: adapter-registry list --kind adapter",
                    )
                if member.base_model_id != base_model_id:
                    raise InvalidInput(
                        f"Member a{mid} is on another base model than the fusion.",
                        hint="Fuse adapters trained on the same base model.",
                    )
            existing_task = s.scalar(
                select(SqlFusion.task_id).where(SqlFusion.name == name).limit(1)
            )
            if existing_task is not None and existing_task != task_row.id:
                raise InvalidInput(
                    f"Fusion {name!r} belongs to another task.",
                    hint="Use another fusion name for this task.",
                )
            for edge in lineage:
                _require_node(s, edge.parent_kind, edge.parent_id)
            run_id = _add_run(s, "fusion", training_run)
            latest = s.scalar(select(func.max(SqlFusion.version)).where(SqlFusion.name == name))
            row = SqlFusion(
                name=name,
                version=(latest or 0) + 1,
                task_id=task_row.id,
                base_model_id=base_model_id,
                config=config,
                head=head,
                artifact_sha256=stored.sha256,
                artifact_size=stored.size,
                trainable_params=trainable_params,
                training_run_id=run_id,
                status="active",
            )
            s.add(row)
            s.flush()
            for pos, mid in enumerate(member_ids):
                s.add(SqlFusionMember(fusion_id=row.id, position=pos, adapter_version_id=mid))
                _add_edge(s, "adapter", mid, "fusion", row.id, "fused_from")
            _add_measured_and_lineage(s, "fusion", row.id, metrics, lineage)
            return row.id

        new_id = self._write(fn, is_conflict=_is_version_race)
        return self.get_fusion(new_id)


def _check_edge(parent_kind: str, relation: str) -> None:
    if parent_kind not in NODE_KINDS:
        raise InvalidInput(
            f"Unknown lineage node kind {parent_kind!r}.",
            hint="Use adapter, fusion, drift, hub or dataset.",
        )
    if relation not in RELATIONS:
        raise InvalidInput(
            f"Unknown lineage relation {relation!r}; valid: {', '.join(RELATIONS)}.",
            hint="Use one of the relations listed.",
        )


def _require_node(s: Session, kind: str, node_id: int) -> None:
    if not _node_exists(s, kind, node_id):
        raise NotFound(
            f"No {kind} with id {node_id} to link to.", hint="Run: adapter-registry list"
        )


def _add_edge(
    s: Session, parent_kind: str, parent_id: int, child_kind: str, child_id: int, relation: str
) -> None:
    exists = s.scalar(
        select(SqlLineage.id).where(
            SqlLineage.parent_kind == parent_kind,
            SqlLineage.parent_id == parent_id,
            SqlLineage.child_kind == child_kind,
            SqlLineage.child_id == child_id,
            SqlLineage.relation == relation,
        )
    )
    if exists is None:
        s.add(
            SqlLineage(
                parent_kind=parent_kind,
                parent_id=parent_id,
                child_kind=child_kind,
                child_id=child_id,
                relation=relation,
            )
        )


def _add_run(s: Session, kind: str, run: TrainingRunIn | dict[str, Any] | None) -> int | None:
    if run is None:
        return None
    given = TrainingRunIn.coerce(run)
    row = SqlTrainingRun(
        kind=kind,
        hyperparams=dict(given.hyperparams),
        seed=given.seed,
        library_versions=dict(given.library_versions),
        wall_time_s=given.wall_time_s,
        tokens_per_s=given.tokens_per_s,
        device=given.device,
    )
    s.add(row)
    s.flush()
    return row.id


def _add_measured_and_lineage(
    s: Session, kind: str, entity_id: int, metrics: Iterable[MetricIn], lineage: Iterable[EdgeIn]
) -> None:
    """Add a new version's metric rows and its lineage edges from existing parents."""
    _add_metrics(s, kind, entity_id, metrics)
    for edge in lineage:
        _add_edge(s, edge.parent_kind, edge.parent_id, kind, entity_id, edge.relation)


def _add_metrics(s: Session, kind: str, entity_id: int, metrics: Iterable[MetricIn]) -> None:
    for m in metrics:
        s.add(
            SqlMetric(
                entity_kind=kind,
                entity_id=entity_id,
                dataset_id=m.dataset_id,
                split=m.split,
                name=m.name,
                value=float(m.value),
                step=m.step,
            )
        )
