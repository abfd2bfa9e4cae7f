"""Initial schema: base models, tasks, datasets, adapters, fusions, lineage, metrics, aliases.

Revision ID: 0001
Revises:
Create Date: 2026-11-25

Declares its own tables (never imports registry.orm) so that later ORM changes cannot alter history.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _created() -> sa.Column:
    return sa.Column("created_at", sa.DateTime(), nullable=False)


def upgrade() -> None:
    op.create_table(
        "base_models",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(500), nullable=False),
        sa.Column("revision", sa.String(64), nullable=False),
        sa.Column("architecture", sa.String(100), nullable=False),
        sa.Column("hidden_size", sa.Integer(), nullable=False),
        sa.Column("num_layers", sa.Integer(), nullable=False),
        _created(),
        sa.PrimaryKeyConstraint("id", name="pk_base_models"),
        sa.UniqueConstraint("name", "revision", name="uq_base_models_name"),
    )
    op.create_table(
        "tasks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("label_names", sa.JSON(), nullable=False),
        sa.Column("text_fields", sa.JSON(), nullable=False),
        sa.Column("base_model_id", sa.Integer(), nullable=True),
        _created(),
        sa.PrimaryKeyConstraint("id", name="pk_tasks"),
        sa.UniqueConstraint("name", name="uq_tasks_name"),
        sa.ForeignKeyConstraint(
            ["base_model_id"], ["base_models.id"], name="fk_tasks_base_model_id_base_models"
        ),
    )
    op.create_table(
        "datasets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("split", sa.String(50), nullable=False),
        sa.Column("row_count", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("label_distribution", sa.JSON(), nullable=False),
        _created(),
        sa.PrimaryKeyConstraint("id", name="pk_datasets"),
        sa.UniqueConstraint("task_id", "split", "fingerprint", name="uq_datasets_task_id"),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], name="fk_datasets_task_id_tasks"),
    )
    op.create_index("ix_datasets_task_id", "datasets", ["task_id"])
    op.create_table(
        "training_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("hyperparams", sa.JSON(), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=True),
        sa.Column("library_versions", sa.JSON(), nullable=False),
        sa.Column("wall_time_s", sa.Float(), nullable=True),
        sa.Column("tokens_per_s", sa.Float(), nullable=True),
        sa.Column("device", sa.String(50), nullable=True),
        _created(),
        sa.PrimaryKeyConstraint("id", name="pk_training_runs"),
    )
    op.create_table(
        "adapters",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        _created(),
        sa.PrimaryKeyConstraint("id", name="pk_adapters"),
        sa.UniqueConstraint("name", name="uq_adapters_name"),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], name="fk_adapters_task_id_tasks"),
    )
    op.create_index("ix_adapters_task_id", "adapters", ["task_id"])
    op.create_table(
        "adapter_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("adapter_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("base_model_id", sa.Integer(), nullable=False),
        sa.Column("method", sa.String(50), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("config_hash", sa.String(64), nullable=False),
        sa.Column("artifact_sha256", sa.String(64), nullable=False),
        sa.Column("artifact_size", sa.BigInteger(), nullable=False),
        sa.Column("trainable_params", sa.BigInteger(), nullable=False),
        sa.Column("training_run_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        _created(),
        sa.PrimaryKeyConstraint("id", name="pk_adapter_versions"),
        sa.UniqueConstraint("adapter_id", "version", name="uq_adapter_versions_adapter_id"),
        sa.ForeignKeyConstraint(
            ["adapter_id"], ["adapters.id"], name="fk_adapter_versions_adapter_id_adapters"
        ),
        sa.ForeignKeyConstraint(
            ["task_id"], ["tasks.id"], name="fk_adapter_versions_task_id_tasks"
        ),
        sa.ForeignKeyConstraint(
            ["base_model_id"],
            ["base_models.id"],
            name="fk_adapter_versions_base_model_id_base_models",
        ),
        sa.ForeignKeyConstraint(
            ["training_run_id"],
            ["training_runs.id"],
            name="fk_adapter_versions_training_run_id_training_runs",
        ),
    )
    op.create_index("ix_adapter_versions_task_id", "adapter_versions", ["task_id"])
    op.create_index("ix_adapter_versions_artifact_sha256", "adapter_versions", ["artifact_sha256"])
    op.create_table(
        "fusions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("base_model_id", sa.Integer(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("head", sa.JSON(), nullable=False),
        sa.Column("artifact_sha256", sa.String(64), nullable=False),
        sa.Column("artifact_size", sa.BigInteger(), nullable=False),
        sa.Column("trainable_params", sa.BigInteger(), nullable=False),
        sa.Column("training_run_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        _created(),
        sa.PrimaryKeyConstraint("id", name="pk_fusions"),
        sa.UniqueConstraint("name", "version", name="uq_fusions_name"),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], name="fk_fusions_task_id_tasks"),
        sa.ForeignKeyConstraint(
            ["base_model_id"], ["base_models.id"], name="fk_fusions_base_model_id_base_models"
        ),
        sa.ForeignKeyConstraint(
            ["training_run_id"],
            ["training_runs.id"],
            name="fk_fusions_training_run_id_training_runs",
        ),
    )
    op.create_index("ix_fusions_name", "fusions", ["name"])
    op.create_index("ix_fusions_task_id", "fusions", ["task_id"])
    op.create_index("ix_fusions_artifact_sha256", "fusions", ["artifact_sha256"])
    op.create_table(
        "fusion_members",
        sa.Column("fusion_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("adapter_version_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("fusion_id", "position", name="pk_fusion_members"),
        sa.ForeignKeyConstraint(
            ["fusion_id"], ["fusions.id"], name="fk_fusion_members_fusion_id_fusions"
        ),
        sa.ForeignKeyConstraint(
            ["adapter_version_id"],
            ["adapter_versions.id"],
            name="fk_fusion_members_adapter_version_id_adapter_versions",
        ),
    )
    op.create_index(
        "ix_fusion_members_adapter_version_id", "fusion_members", ["adapter_version_id"]
    )
    op.create_table(
        "lineage",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("parent_kind", sa.String(20), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=False),
        sa.Column("child_kind", sa.String(20), nullable=False),
        sa.Column("child_id", sa.Integer(), nullable=False),
        sa.Column("relation", sa.String(40), nullable=False),
        _created(),
        sa.PrimaryKeyConstraint("id", name="pk_lineage"),
        sa.UniqueConstraint(
            "parent_kind",
            "parent_id",
            "child_kind",
            "child_id",
            "relation",
            name="uq_lineage_parent_kind",
        ),
    )
    op.create_index("ix_lineage_child", "lineage", ["child_kind", "child_id"])
    op.create_table(
        "metrics",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("entity_kind", sa.String(20), nullable=False),
        sa.Column("entity_id", sa.Integer(), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=True),
        sa.Column("split", sa.String(50), nullable=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=True),
        _created(),
        sa.PrimaryKeyConstraint("id", name="pk_metrics"),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name="fk_metrics_dataset_id_datasets"
        ),
    )
    op.create_index("ix_metrics_entity", "metrics", ["entity_kind", "entity_id"])
    op.create_table(
        "drift_reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("reference_adapter_version_id", sa.Integer(), nullable=True),
        sa.Column("new_dataset_id", sa.Integer(), nullable=True),
        sa.Column("alpha", sa.Float(), nullable=False),
        sa.Column("tests", sa.JSON(), nullable=False),
        sa.Column("drift", sa.Boolean(), nullable=False),
        _created(),
        sa.PrimaryKeyConstraint("id", name="pk_drift_reports"),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], name="fk_drift_reports_task_id_tasks"),
        sa.ForeignKeyConstraint(
            ["reference_adapter_version_id"],
            ["adapter_versions.id"],
            name="fk_drift_reports_reference_adapter_version_id_adapter_versions",
        ),
        sa.ForeignKeyConstraint(
            ["new_dataset_id"], ["datasets.id"], name="fk_drift_reports_new_dataset_id_datasets"
        ),
    )
    op.create_index("ix_drift_reports_task_id", "drift_reports", ["task_id"])
    op.create_table(
        "aliases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("alias", sa.String(100), nullable=False),
        sa.Column("target_kind", sa.String(20), nullable=False),
        sa.Column("target_id", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_aliases"),
        sa.UniqueConstraint("task_id", "alias", name="uq_aliases_task_id"),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], name="fk_aliases_task_id_tasks"),
    )
    op.create_table(
        "hub_links",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("entity_kind", sa.String(20), nullable=False),
        sa.Column("entity_id", sa.Integer(), nullable=False),
        sa.Column("repo_id", sa.String(300), nullable=False),
        sa.Column("commit_sha", sa.String(64), nullable=False),
        sa.Column("revision", sa.String(300), nullable=True),
        sa.Column("direction", sa.String(10), nullable=False),
        _created(),
        sa.PrimaryKeyConstraint("id", name="pk_hub_links"),
    )
    op.create_index("ix_hub_links_entity", "hub_links", ["entity_kind", "entity_id"])


def downgrade() -> None:
    for table in (
        "hub_links",
        "aliases",
        "drift_reports",
        "metrics",
        "lineage",
        "fusion_members",
        "fusions",
        "adapter_versions",
        "adapters",
        "training_runs",
        "datasets",
        "tasks",
        "base_models",
    ):
        op.drop_table(table)
