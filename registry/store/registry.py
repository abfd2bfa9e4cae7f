"""The registry's store: every query lives here. It takes and returns plain entities.

Writes that allocate a version number run inside :func:`registry.db.with_retries`, so concurrent
writers (processes sharing one SQLite file, or PostgreSQL clients) queue or retry instead of
failing. Artifacts are published before the rows that point at them, so a crash can leave an
unreferenced artifact (``gc`` removes it) but never a row without its files.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import exc, func, select
from sqlalchemy.orm import Session

from .. import entities as E
from ..artifact_store import ensure_published, hold_artifact_lock, open_artifact_store
from ..db import Database, translate_db_error, with_retries
from ..errors import (
    AlreadyExists,
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
    utcnow,
)
from ..settings import Settings, load_settings
from . import integrity, mappers
from .inputs import (
    ALIAS_RE,
    ENTITY_KINDS,
    GC_GRACE_SECONDS,
    NODE_KINDS,
    RELATIONS,
    STATUSES,
    EdgeIn,
    MetricIn,
    TrainingRunIn,
    config_hash,
    validate_name,
)
from .integrity import NODE_TABLES as _NODE_TABLES
from .integrity import node_exists as _node_exists
from .lineage import LineageGraph, walk
from .refs import missing_version, parse_ref

T = TypeVar("T")


def _is_version_race(err: BaseException) -> bool:
    # Lost a race for the next version number, or (PostgreSQL, read committed) for creating the
    # name's ``adapters`` row: the retry re-reads both. SQLite serialises writers instead.
    text_ = str(err.orig).lower() if isinstance(err, exc.IntegrityError) else ""
    return "version" in text_ or "uq_adapters_name" in text_ or "adapters.name" in text_


class Registry:
    """The Python API over one registry (database + artifact folder).

    Open one with :meth:`Registry.open`; all methods return frozen entities.
    """

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self.artifacts = open_artifact_store(settings)
        self._joined = threading.local()  # the session of a transaction() in progress

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(
        cls,
        home: str | Path | None = None,
        db_url: str | None = None,
        *,
        create: bool = False,
        artifacts: str | None = None,
    ) -> Registry:
        """Open a registry; with ``create=True`` a missing one is initialised.

        Raises:
            SchemaOutOfDate: the database exists but is not at this code's schema revision.
        """
        settings = load_settings(home, db_url, artifacts)
        if create:
            _make_home(settings.home)
        elif settings.is_sqlite and settings.sqlite_path and not settings.sqlite_path.exists():
            db_path = settings.sqlite_path
            if db_path.parent != settings.home:  # --db / ADAPTER_REGISTRY_DB names the file
                missing = "" if db_path.parent.is_dir() else " (its folder does not exist)"
                raise NotFound(
                    f"No registry database at {db_path}{missing}.",
                    hint="Check --db / ADAPTER_REGISTRY_DB, or create it: adapter-registry init",
                )
            raise NotFound(
                f"No registry at {settings.home}.",
                hint="Run: adapter-registry init (or set ADAPTER_REGISTRY_HOME)",
            )
        registry = cls(settings, Database(settings))
        if create and registry.db.current_revision() is None:
            registry.db.upgrade()
        registry.db.verify_schema()
        return registry

    @classmethod
    def init(
        cls,
        home: str | Path | None = None,
        db_url: str | None = None,
        *,
        artifacts: str | None = None,
    ) -> Registry:
        """Create (or upgrade) a registry's database and folders, and return it."""
        settings = load_settings(home, db_url, artifacts)
        _make_home(settings.home)
        registry = cls(settings, Database(settings))
        registry.db.upgrade()
        registry.settings.artifact_root.mkdir(parents=True, exist_ok=True)
        return registry

    def close(self) -> None:
        """Release database connections."""
        self.db.dispose()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

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
            with self.db.raw_session() as session:
                self._joined.session = session
                try:
                    return fn(session)
                finally:
                    self._joined.session = None

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
            with self.db.raw_session() as session:
                return fn(session)

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

    # ------------------------------------------------------------------ registering
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
            _add_metrics(s, "adapter", row.id, metrics)
            for edge in lineage:
                _add_edge(s, edge.parent_kind, edge.parent_id, "adapter", row.id, edge.relation)
            return row.id

        new_id = self._write(fn, is_conflict=_is_version_race)
        return self.get_adapter_version(new_id)

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
            _add_metrics(s, "fusion", row.id, metrics)
            for edge in lineage:
                _add_edge(s, edge.parent_kind, edge.parent_id, "fusion", row.id, edge.relation)
            return row.id

        new_id = self._write(fn, is_conflict=_is_version_race)
        return self.get_fusion(new_id)

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

    def set_status(self, ref: str, status: str) -> E.Entity:
        """Mark an adapter version or fusion ``active`` or ``deprecated`` (nothing else changes)."""
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

    # ------------------------------------------------------------------ aliases
    def set_alias(self, task: str, alias: str, ref: str) -> E.Alias:
        """Point ``task:alias`` at an adapter version or fusion of that task."""
        validate_name(task, "task name")
        if not ALIAS_RE.match(alias):
            raise InvalidInput(
                f"Invalid alias {alias!r}: use letters, digits, '_' or '-', "
                "starting with a letter.",
                hint="e.g. production, staging",
            )
        target = self.resolve(ref)

        def fn(s: Session) -> int:
            task_row = _task_row(s, task)
            if target.task_id != task_row.id:
                raise InvalidInput(
                    f"{target.ref} belongs to task {target.task!r}, not {task!r}: an alias "
                    "points only at its own task's adapters and fusions.",
                    hint=f"Run: adapter-registry list --task {task}",
                )
            if target.status != "active":
                raise InvalidInput(
                    f"{target.ref} is {target.status}; an alias cannot point at it.",
                    hint=f"Pick an active version: adapter-registry list --task {task}",
                )
            row = s.scalar(
                select(SqlAlias).where(SqlAlias.task_id == task_row.id, SqlAlias.alias == alias)
            )
            if row is None:
                row = SqlAlias(task_id=task_row.id, alias=alias, target_kind="", target_id=0)
                s.add(row)
            row.target_kind = target.kind
            row.target_id = target.id
            row.updated_at = utcnow()
            s.flush()
            return row.id

        alias_id = self._write(fn, is_conflict=lambda e: isinstance(e, exc.IntegrityError))
        return next(a for a in self.aliases(task) if a.id == alias_id)

    def aliases(self, task: str | None = None) -> list[E.Alias]:
        """Return aliases, optionally of one task."""

        def fn(s: Session) -> list[E.Alias]:
            q = select(SqlAlias, SqlTask.name).join(SqlTask, SqlTask.id == SqlAlias.task_id)
            if task is not None:
                q = q.where(SqlTask.name == task)
            out = []
            for row, task_name in s.execute(q.order_by(SqlTask.name, SqlAlias.alias)):
                target = _node_label(s, row.target_kind, row.target_id)
                out.append(mappers.alias(mappers.columns(row), task_name, target))
            return out

        return self._read(fn)

    # ------------------------------------------------------------------ promotions
    def record_promotion(
        self, entity: E.Entity, step: int, dataset_id: int | None, alias: str
    ) -> E.Promotion:
        """Record that ``update`` promoted ``entity`` at ``step`` (once per entity)."""

        def fn(s: Session) -> int:
            row = s.scalar(
                select(SqlPromotion).where(
                    SqlPromotion.entity_kind == entity.kind, SqlPromotion.entity_id == entity.id
                )
            )
            if row is None:
                row = SqlPromotion(
                    task_id=entity.task_id,
                    entity_kind=entity.kind,
                    entity_id=entity.id,
                    step=step,
                    dataset_id=dataset_id,
                    alias=alias,
                )
                s.add(row)
                s.flush()
            return row.id

        promo_id = self._write(fn, is_conflict=lambda e: isinstance(e, exc.IntegrityError))
        return next(p for p in self.promotions(entity.task_id) if p.id == promo_id)

    def promotions(self, task_id: int) -> list[E.Promotion]:
        """Return a task's promotions in step order."""

        def fn(s: Session) -> list[E.Promotion]:
            q = (
                select(SqlPromotion)
                .where(SqlPromotion.task_id == task_id)
                .order_by(SqlPromotion.step, SqlPromotion.created_at, SqlPromotion.id)
            )
            return [_promotion(r) for r in s.scalars(q)]

        return self._read(fn)

    # ------------------------------------------------------------------ metrics
    def log_metrics(self, entity: E.Entity, metrics: Iterable[MetricIn]) -> None:
        """Record metrics of an adapter version or fusion."""
        items = list(metrics)
        self._write(lambda s: _add_metrics(s, entity.kind, entity.id, items))

    def metrics(self, entity: E.Entity) -> list[E.Metric]:
        """Return an entity's metrics, oldest first."""

        def fn(s: Session) -> list[E.Metric]:
            q = (
                select(SqlMetric)
                .where(SqlMetric.entity_kind == entity.kind, SqlMetric.entity_id == entity.id)
                .order_by(SqlMetric.id)
            )
            return [_metric(r) for r in s.scalars(q)]

        return self._read(fn)

    # ------------------------------------------------------------------ lineage
    def add_edge(
        self, parent_kind: str, parent_id: int, child_kind: str, child_id: int, relation: str
    ) -> None:
        """Add a lineage edge (idempotent)."""
        _check_edge(parent_kind, relation)

        def fn(s: Session) -> None:
            _require_node(s, parent_kind, parent_id)
            _require_node(s, child_kind, child_id)
            _add_edge(s, parent_kind, parent_id, child_kind, child_id, relation)

        self._write(fn)

    def lineage(self, entity: E.Entity, max_depth: int = 1000) -> dict[str, Any]:
        """Return the ancestors and descendants of an entity as ``{root, nodes, edges}``.

        Node keys are ``kind:id``; each node has a human label (``name@version`` etc.).
        """

        return self.lineage_graph(entity, max_depth).to_dict()

    def lineage_graph(self, entity: E.Entity, max_depth: int = 1000) -> LineageGraph:
        """Return the ancestors and descendants of an entity as a :class:`LineageGraph`."""

        def fn(s: Session) -> LineageGraph:
            def edges_at(direction: str, node: tuple[str, int]) -> list[dict[str, Any]]:
                near_kind, near_id = (
                    (SqlLineage.child_kind, SqlLineage.child_id)
                    if direction == "up"
                    else (SqlLineage.parent_kind, SqlLineage.parent_id)
                )
                q = select(SqlLineage).where(near_kind == node[0], near_id == node[1])
                return [mappers.columns(e) for e in s.scalars(q)]

            return walk(
                (entity.kind, entity.id),
                edges_at,
                lambda kind, nid: _node_label(s, kind, nid),
                max_depth,
            )

        return self._read(fn)

    def edges_of(self, kind: str, entity_id: int) -> list[E.LineageEdge]:
        """Return the edges whose child is this node."""

        def fn(s: Session) -> list[E.LineageEdge]:
            q = select(SqlLineage).where(
                SqlLineage.child_kind == kind, SqlLineage.child_id == entity_id
            )
            return [_edge(e) for e in s.scalars(q.order_by(SqlLineage.id))]

        return self._read(fn)

    # ------------------------------------------------------------------ drift & hub
    def record_drift_report(
        self,
        *,
        task: str,
        reference_adapter_version_id: int | None,
        new_dataset_id: int | None,
        alpha: float,
        tests: list[dict[str, Any]],
        drift: bool,
    ) -> E.DriftReport:
        """Record the outcome of a drift check."""

        def fn(s: Session) -> E.DriftReport:
            row = SqlDriftReport(
                task_id=_task_row(s, task).id,
                reference_adapter_version_id=reference_adapter_version_id,
                new_dataset_id=new_dataset_id,
                alpha=alpha,
                tests=tests,
                drift=drift,
            )
            s.add(row)
            s.flush()
            return _drift(row)

        return self._write(fn)

    def get_drift_report(self, report_id: int) -> E.DriftReport:
        """Return a drift report by id."""

        def fn(s: Session) -> E.DriftReport:
            row = s.get(SqlDriftReport, report_id)
            if row is None:
                raise NotFound(
                    f"No drift report with id {report_id}.",
                    hint="Run: adapter-registry drift TASK --data SPEC",
                )
            return _drift(row)

        return self._read(fn)

    def drift_reports(self, task: str | None = None) -> list[E.DriftReport]:
        """Return drift reports, oldest first."""

        def fn(s: Session) -> list[E.DriftReport]:
            q = select(SqlDriftReport).order_by(SqlDriftReport.id)
            if task is not None:
                q = q.where(SqlDriftReport.task_id == _task_row(s, task).id)
            return [_drift(r) for r in s.scalars(q)]

        return self._read(fn)

    def record_hub_link(
        self,
        entity: E.Entity,
        *,
        repo_id: str,
        commit_sha: str,
        revision: str | None,
        direction: str,
    ) -> E.HubLink:
        """Record a push or pull of an entity at a Hub commit."""
        if direction not in ("push", "pull"):
            raise InvalidInput(
                f"direction must be push or pull, not {direction!r}", hint="Use push or pull."
            )

        def fn(s: Session) -> E.HubLink:
            row = SqlHubLink(
                entity_kind=entity.kind,
                entity_id=entity.id,
                repo_id=repo_id,
                commit_sha=commit_sha,
                revision=revision,
                direction=direction,
                artifact_sha256=entity.artifact_sha256,
            )
            s.add(row)
            s.flush()
            return _hub(row)

        return self._write(fn)

    def hub_links(
        self, entity: E.Entity | None = None, *, repo_id: str | None = None
    ) -> list[E.HubLink]:
        """Return hub links of an entity or of a repo, oldest first."""

        def fn(s: Session) -> list[E.HubLink]:
            q = select(SqlHubLink).order_by(SqlHubLink.id)
            if entity is not None:
                q = q.where(
                    SqlHubLink.entity_kind == entity.kind, SqlHubLink.entity_id == entity.id
                )
            if repo_id is not None:
                q = q.where(SqlHubLink.repo_id == repo_id)
            return [_hub(r) for r in s.scalars(q)]

        return self._read(fn)

    # ------------------------------------------------------------------ integrity
    def verify(self) -> E.VerifyReport:
        """Check every artifact against its sha256 and every row against its files."""
        return integrity.verify(self)

    def referenced_artifacts(self) -> dict[str, str]:
        """Return every artifact id a row points at, with a description of the row."""
        return self._read(integrity.referenced_artifacts)

    def gc(self, *, dry_run: bool = False, grace_seconds: float = GC_GRACE_SECONDS) -> list[str]:
        """Remove artifacts no row points at, and leftovers of interrupted writes.

        Artifacts published or reused less than ``grace_seconds`` ago are kept, and so is every
        staging folder whose process is alive. Each removal happens under the lock that writers
        hold while committing (re-checking the rows there), so a write that reused an old orphan
        either commits first and keeps it, or finds it gone and publishes it again.
        """
        return integrity.gc(self, dry_run=dry_run, grace_seconds=grace_seconds)

    def _remove_unused(self, sha: str, grace_seconds: float, s: Session) -> bool:
        hold_artifact_lock(s, exclusive=True)
        if sha in self.referenced_artifacts():  # read in this transaction, under the lock
            return False
        if not self.artifacts.exists(sha) or self.artifacts.age(sha) < grace_seconds:
            return False
        self.artifacts.remove(sha)
        return True


# ---------------------------------------------------------------------- helpers (module level)
def _make_home(home: Path) -> None:
    if home.exists() and not home.is_dir():
        raise InvalidInput(
            f"The registry home is not a folder: {home}",
            hint="Point ADAPTER_REGISTRY_HOME (or --home) at a folder.",
        )
    if not home.parent.exists():
        raise InvalidInput(
            f"The folder that should hold the registry home does not exist: {home.parent}",
            hint=f"Create it first: mkdir -p {home.parent}",
        )
    try:
        home.mkdir(exist_ok=True)
        (home / "artifacts").mkdir(exist_ok=True)
    except PermissionError as err:
        raise InvalidInput(
            f"Cannot write to the registry home {home}: permission denied.",
            hint="Check its permissions, or set ADAPTER_REGISTRY_HOME to a writable folder.",
        ) from err


def _base_label(row: SqlBaseModel | None) -> str:
    return "?" if row is None else f"{row.name} (revision {row.revision[:12]})"


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
