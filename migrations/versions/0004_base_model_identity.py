"""Base models are identified by their content: the sha256 of their weight files, plus the Hub
id and commit when known.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

``base_models.weights_sha256`` is the digest of a local folder's weight files (what its
``revision`` already held: a 64-hex digest); ``hub_id`` and ``hub_commit`` name the Hub model
(a base loaded by Hub id has its 40-hex commit as ``revision``). Two folders holding the same
weights are then one base model, wherever they lie.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ALTER TABLE (no batch copy): other tables' foreign keys point at base_models.
    op.add_column("base_models", sa.Column("weights_sha256", sa.String(64), nullable=True))
    op.add_column("base_models", sa.Column("hub_id", sa.String(200), nullable=True))
    op.add_column("base_models", sa.Column("hub_commit", sa.String(40), nullable=True))
    op.create_index("ix_base_models_weights_sha256", "base_models", ["weights_sha256"])
    conn = op.get_bind()
    for row_id, name, rev in conn.execute(
        sa.text("SELECT id, name, revision FROM base_models")
    ).all():
        if len(rev) == 64:  # a local folder: its revision is the weights' digest
            values = {"sha": rev, "hub": None, "commit": None}
        elif len(rev) == 40:  # loaded by Hub id: the revision is the commit
            values = {"sha": None, "hub": name, "commit": rev}
        else:
            continue
        conn.execute(
            sa.text(
                "UPDATE base_models SET weights_sha256 = :sha, hub_id = :hub, "
                "hub_commit = :commit WHERE id = :id"
            ),
            {**values, "id": row_id},
        )


def downgrade() -> None:
    op.drop_index("ix_base_models_weights_sha256", table_name="base_models")
    for column in ("hub_commit", "hub_id", "weights_sha256"):
        op.drop_column("base_models", column)
