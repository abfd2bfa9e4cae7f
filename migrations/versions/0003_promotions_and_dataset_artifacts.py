"""Promotions get their own table; datasets the registry made (replay mixes) point at an artifact.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

``promotions`` holds a task's production history (one row per model ``update`` promoted: step,
the validation snapshot learned at that step, the alias). It used to be kept as
``promoted_step`` metric rows; those rows move into the table here (and back on downgrade).
``datasets.artifact_sha256`` names the artifact that holds a dataset's rows when the registry
wrote them itself, so ``verify`` checks and ``gc`` keeps them.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

STEP_METRIC = "promoted_step"
ALIAS = "production"


def upgrade() -> None:
    with op.batch_alter_table("datasets") as batch:
        batch.add_column(sa.Column("artifact_sha256", sa.String(64), nullable=True))
    op.create_table(
        "promotions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("entity_kind", sa.String(20), nullable=False),
        sa.Column("entity_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=True),
        sa.Column("alias", sa.String(100), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_promotions"),
        sa.UniqueConstraint("entity_kind", "entity_id", name="uq_promotions_entity_kind"),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], name="fk_promotions_task_id_tasks"),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name="fk_promotions_dataset_id_datasets"
        ),
    )
    op.create_index("ix_promotions_task_id", "promotions", ["task_id"])
    conn = op.get_bind()
    rows = conn.execute(
        sa.text(
            "SELECT m.entity_kind, m.entity_id, m.value, m.dataset_id, m.created_at, "
            "COALESCE(v.task_id, f.task_id) AS task_id FROM metrics m "
            "LEFT JOIN adapter_versions v ON m.entity_kind = 'adapter' AND v.id = m.entity_id "
            "LEFT JOIN fusions f ON m.entity_kind = 'fusion' AND f.id = m.entity_id "
            "WHERE m.name = :name ORDER BY m.id"
        ),
        {"name": STEP_METRIC},
    ).all()
    seen: set[tuple[str, int]] = set()
    for kind, entity_id, value, dataset_id, created_at, task_id in rows:
        if task_id is None or (kind, entity_id) in seen:
            continue  # a row of a vanished entity, or a second mark (the first one counts)
        seen.add((kind, entity_id))
        conn.execute(
            sa.text(
                "INSERT INTO promotions (task_id, entity_kind, entity_id, step, dataset_id, "
                "alias, created_at) VALUES (:task, :kind, :id, :step, :ds, :alias, :at)"
            ),
            {
                "task": task_id,
                "kind": kind,
                "id": entity_id,
                "step": int(value),
                "ds": dataset_id,
                "alias": ALIAS,
                "at": created_at or datetime(1970, 1, 1),
            },
        )
    conn.execute(sa.text("DELETE FROM metrics WHERE name = :name"), {"name": STEP_METRIC})


def downgrade() -> None:
    conn = op.get_bind()
    conn.execute(
        sa.text(
            "INSERT INTO metrics (entity_kind, entity_id, dataset_id, split, name, value, step, "
            "created_at) SELECT entity_kind, entity_id, dataset_id, NULL, :name, step, step, "
            "created_at FROM promotions ORDER BY id"
        ),
        {"name": STEP_METRIC},
    )
    op.drop_index("ix_promotions_task_id", table_name="promotions")
    op.drop_table("promotions")
    # A plain DROP COLUMN (SQLite >= 3.35, PostgreSQL): a batch copy of ``datasets`` would trip
    # the foreign keys of the metrics and drift reports that point at its rows.
    op.drop_column("datasets", "artifact_sha256")
