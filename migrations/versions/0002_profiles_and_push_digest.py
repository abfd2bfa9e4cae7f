"""Add drift reference profiles to adapter versions and the pushed artifact digest to hub links.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25

``adapter_versions.profile_sha256`` points at the artifact holding the reference profile that drift
checks compare new data with. ``hub_links.artifact_sha256`` lets a push of unchanged bytes be a
no-op.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("adapter_versions") as batch:
        batch.add_column(sa.Column("profile_sha256", sa.String(64), nullable=True))
    with op.batch_alter_table("hub_links") as batch:
        batch.add_column(sa.Column("artifact_sha256", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("hub_links") as batch:
        batch.drop_column("artifact_sha256")
    with op.batch_alter_table("adapter_versions") as batch:
        batch.drop_column("profile_sha256")
