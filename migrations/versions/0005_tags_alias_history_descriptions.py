"""Tags on versions, the history of every alias, and descriptions of fusions.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01

``tags`` holds free-form labels of adapter versions and fusions. ``alias_events`` records each
change of an alias (who, when, old target, new target; a deletion has no new target); every
alias that already exists gets one event, by ``migration``, at the time it was last set, so its
history starts where the database's knowledge does. ``fusions.description`` is what
``describe`` sets on a fusion version (an adapter's description lives on ``adapters``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

#: The actor of the events this migration writes for aliases that already exist.
MIGRATION_ACTOR = "migration"


def upgrade() -> None:
    op.add_column("fusions", sa.Column("description", sa.Text(), nullable=True))
    op.create_table(
        "tags",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("entity_kind", sa.String(20), nullable=False),
        sa.Column("entity_id", sa.Integer(), nullable=False),
        sa.Column("tag", sa.String(100), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_tags"),
        sa.UniqueConstraint("entity_kind", "entity_id", "tag", name="uq_tags_entity_kind"),
    )
    op.create_index("ix_tags_tag", "tags", ["tag"])
    op.create_table(
        "alias_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("alias", sa.String(100), nullable=False),
        sa.Column("old_kind", sa.String(20), nullable=True),
        sa.Column("old_id", sa.Integer(), nullable=True),
        sa.Column("new_kind", sa.String(20), nullable=True),
        sa.Column("new_id", sa.Integer(), nullable=True),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_alias_events"),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], name="fk_alias_events_task_id_tasks"),
    )
    op.create_index("ix_alias_events_task_alias", "alias_events", ["task_id", "alias"])
    op.get_bind().execute(
        sa.text(
            "INSERT INTO alias_events (task_id, alias, old_kind, old_id, new_kind, new_id, "
            "actor, created_at) SELECT task_id, alias, NULL, NULL, target_kind, target_id, "
            ":actor, updated_at FROM aliases ORDER BY id"
        ),
        {"actor": MIGRATION_ACTOR},
    )


def downgrade() -> None:
    op.drop_index("ix_alias_events_task_alias", table_name="alias_events")
    op.drop_table("alias_events")
    op.drop_index("ix_tags_tag", table_name="tags")
    op.drop_table("tags")
    # A plain DROP COLUMN (SQLite >= 3.35, PostgreSQL), as 0003 does for datasets.
    op.drop_column("fusions", "description")
