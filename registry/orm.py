"""SQLAlchemy 2.x tables (``Mapped[]`` style). Change them only together with an Alembic revision.

``tests/test_migrations.py`` fails when these classes and the migrated schema disagree.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Explicit constraint names: SQLite batch migrations and PostgreSQL both need them stable.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """Return the current time in UTC (naive, as stored)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    """Declarative base with the naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class SqlBaseModel(Base):
    """A frozen encoder at one revision; ``name`` is where it loads from (a folder or Hub id)."""

    __tablename__ = "base_models"
    __table_args__ = (UniqueConstraint("name", "revision"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(500))
    revision: Mapped[str] = mapped_column(String(64))
    architecture: Mapped[str] = mapped_column(String(100))
    hidden_size: Mapped[int] = mapped_column(Integer)
    num_layers: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    #: sha256 of the weight files (what identifies the base: any folder with them is this base)
    weights_sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    #: the Hub model this base is (or is a local copy of), and its commit, when known
    hub_id: Mapped[str | None] = mapped_column(String(200))
    hub_commit: Mapped[str | None] = mapped_column(String(40))


class SqlTask(Base):
    """A classification task: its label set and text fields are fixed once registered."""

    __tablename__ = "tasks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    label_names: Mapped[list[str]] = mapped_column(JSON)
    text_fields: Mapped[list[str]] = mapped_column(JSON)
    base_model_id: Mapped[int | None] = mapped_column(ForeignKey("base_models.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class SqlDataset(Base):
    """A snapshot of one data split, identified by its fingerprint."""

    __tablename__ = "datasets"
    __table_args__ = (UniqueConstraint("task_id", "split", "fingerprint"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id"), index=True)
    source: Mapped[str] = mapped_column(Text)
    split: Mapped[str] = mapped_column(String(50))
    row_count: Mapped[int] = mapped_column(Integer)
    fingerprint: Mapped[str] = mapped_column(String(64))
    label_distribution: Mapped[dict[str, int]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    #: The artifact holding the rows when the registry made them (a replay mix), so verify and
    #: gc see it; None for data that lives elsewhere.
    artifact_sha256: Mapped[str | None] = mapped_column(String(64))


class SqlTrainingRun(Base):
    """How an adapter or fusion was trained: hyper-parameters, seed, versions, speed."""

    __tablename__ = "training_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    hyperparams: Mapped[dict[str, Any]] = mapped_column(JSON)
    seed: Mapped[int | None] = mapped_column(Integer)
    library_versions: Mapped[dict[str, str]] = mapped_column(JSON)
    wall_time_s: Mapped[float | None] = mapped_column(Float)
    tokens_per_s: Mapped[float | None] = mapped_column(Float)
    device: Mapped[str | None] = mapped_column(String(50))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class SqlAdapter(Base):
    """A named line of adapter versions, all for one task."""

    __tablename__ = "adapters"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id"), index=True)
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class SqlAdapterVersion(Base):
    """One immutable trained adapter (+ head): its config, weights and provenance."""

    __tablename__ = "adapter_versions"
    __table_args__ = (UniqueConstraint("adapter_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    adapter_id: Mapped[int] = mapped_column(ForeignKey("adapters.id"))
    version: Mapped[int] = mapped_column(Integer)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id"), index=True)
    base_model_id: Mapped[int] = mapped_column(ForeignKey("base_models.id"))
    method: Mapped[str] = mapped_column(String(50))
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    config_hash: Mapped[str] = mapped_column(String(64))
    artifact_sha256: Mapped[str] = mapped_column(String(64), index=True)
    artifact_size: Mapped[int] = mapped_column(BigInteger)
    trainable_params: Mapped[int] = mapped_column(BigInteger)
    training_run_id: Mapped[int | None] = mapped_column(ForeignKey("training_runs.id"))
    profile_sha256: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20), default="active")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class SqlFusion(Base):
    """One immutable AdapterFusion layer (+ head) over ordered, frozen adapter versions."""

    __tablename__ = "fusions"
    __table_args__ = (UniqueConstraint("name", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    version: Mapped[int] = mapped_column(Integer)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id"), index=True)
    base_model_id: Mapped[int] = mapped_column(ForeignKey("base_models.id"))
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    head: Mapped[dict[str, Any]] = mapped_column(JSON)
    artifact_sha256: Mapped[str] = mapped_column(String(64), index=True)
    artifact_size: Mapped[int] = mapped_column(BigInteger)
    trainable_params: Mapped[int] = mapped_column(BigInteger)
    training_run_id: Mapped[int | None] = mapped_column(ForeignKey("training_runs.id"))
    status: Mapped[str] = mapped_column(String(20), default="active")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    #: What this fusion version is for (``describe``); an adapter's lives on its name's row.
    description: Mapped[str | None] = mapped_column(Text)


class SqlFusionMember(Base):
    """The ordered member list of a fusion."""

    __tablename__ = "fusion_members"

    fusion_id: Mapped[int] = mapped_column(ForeignKey("fusions.id"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    adapter_version_id: Mapped[int] = mapped_column(ForeignKey("adapter_versions.id"), index=True)


class SqlLineage(Base):
    """An edge parent → child (kinds: adapter, fusion, drift, hub, dataset)."""

    __tablename__ = "lineage"
    __table_args__ = (
        UniqueConstraint("parent_kind", "parent_id", "child_kind", "child_id", "relation"),
        Index("ix_lineage_child", "child_kind", "child_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    parent_kind: Mapped[str] = mapped_column(String(20))
    parent_id: Mapped[int] = mapped_column(Integer)
    child_kind: Mapped[str] = mapped_column(String(20))
    child_id: Mapped[int] = mapped_column(Integer)
    relation: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class SqlMetric(Base):
    """One measured value of an adapter version or fusion on a dataset split."""

    __tablename__ = "metrics"
    __table_args__ = (Index("ix_metrics_entity", "entity_kind", "entity_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    entity_kind: Mapped[str] = mapped_column(String(20))
    entity_id: Mapped[int] = mapped_column(Integer)
    dataset_id: Mapped[int | None] = mapped_column(ForeignKey("datasets.id"))
    split: Mapped[str | None] = mapped_column(String(50))
    name: Mapped[str] = mapped_column(String(100))
    value: Mapped[float] = mapped_column(Float)
    step: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class SqlDriftReport(Base):
    """The outcome of comparing new data with a task's reference profile."""

    __tablename__ = "drift_reports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id"), index=True)
    reference_adapter_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("adapter_versions.id")
    )
    new_dataset_id: Mapped[int | None] = mapped_column(ForeignKey("datasets.id"))
    alpha: Mapped[float] = mapped_column(Float)
    tests: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    drift: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class SqlPromotion(Base):
    """One step of a task's production history: which model ``update`` promoted, and when, on
    which gate metric; also a candidate the gate refused (``outcome``)."""

    __tablename__ = "promotions"
    __table_args__ = (UniqueConstraint("entity_kind", "entity_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id"), index=True)
    entity_kind: Mapped[str] = mapped_column(String(20))
    entity_id: Mapped[int] = mapped_column(Integer)
    step: Mapped[int] = mapped_column(Integer)
    #: The validation snapshot of the data learned at this step.
    dataset_id: Mapped[int | None] = mapped_column(ForeignKey("datasets.id"))
    alias: Mapped[str] = mapped_column(String(100))
    #: What the gate compared (``accuracy``/``macro_f1``) and said; None where nothing gated
    #: (the step-0 model, rows from before revision 0006).
    gate_metric: Mapped[str | None] = mapped_column(String(20))
    gate_reason: Mapped[str | None] = mapped_column(Text)
    #: ``promoted``, or ``refused``: a candidate the gate kept out (at the step it would take).
    outcome: Mapped[str] = mapped_column(String(20), default="promoted", server_default="promoted")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class SqlAlias(Base):
    """A movable name (``production``) that points a task at an adapter version or fusion."""

    __tablename__ = "aliases"
    __table_args__ = (UniqueConstraint("task_id", "alias"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id"))
    alias: Mapped[str] = mapped_column(String(100))
    target_kind: Mapped[str] = mapped_column(String(20))
    target_id: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class SqlHubLink(Base):
    """A push to or pull from the Hugging Face Hub, pinned by commit."""

    __tablename__ = "hub_links"
    __table_args__ = (Index("ix_hub_links_entity", "entity_kind", "entity_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    entity_kind: Mapped[str] = mapped_column(String(20))
    entity_id: Mapped[int] = mapped_column(Integer)
    repo_id: Mapped[str] = mapped_column(String(300))
    commit_sha: Mapped[str] = mapped_column(String(64))
    revision: Mapped[str | None] = mapped_column(String(300))
    direction: Mapped[str] = mapped_column(String(10))
    artifact_sha256: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class SqlTag(Base):
    """A free-form label on an adapter version or fusion (``tag``/``untag``, ``list --tag``)."""

    __tablename__ = "tags"
    __table_args__ = (
        UniqueConstraint("entity_kind", "entity_id", "tag"),
        Index("ix_tags_tag", "tag"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    entity_kind: Mapped[str] = mapped_column(String(20))
    entity_id: Mapped[int] = mapped_column(Integer)
    tag: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class SqlAliasEvent(Base):
    """One change of an alias: who moved (or deleted) it, when, from what, to what."""

    __tablename__ = "alias_events"
    __table_args__ = (Index("ix_alias_events_task_alias", "task_id", "alias"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id"))
    alias: Mapped[str] = mapped_column(String(100))
    #: The target before the change (None: the alias was new) and after it (None: deleted).
    old_kind: Mapped[str | None] = mapped_column(String(20))
    old_id: Mapped[int | None] = mapped_column(Integer)
    new_kind: Mapped[str | None] = mapped_column(String(20))
    new_id: Mapped[int | None] = mapped_column(Integer)
    actor: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class SqlRegistrySetting(Base):
    """One setting of the registry as a whole (``artifact_store``: the shared store's URL)."""

    __tablename__ = "registry_settings"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
