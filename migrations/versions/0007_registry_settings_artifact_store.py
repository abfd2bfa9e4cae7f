"""Settings of the registry as a whole, starting with the artifact store it uses.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01

``registry_settings`` holds one value per name. ``artifact_store`` is the fsspec URL of the
shared artifact store (``s3://bucket/prefix``), recorded the first time the registry is opened
with one, so that a teammate whose ``ADAPTER_REGISTRY_ARTIFACTS`` names another store (or none)
is told which store the registry uses instead of finding every artifact "missing". A registry
whose artifacts live in a local folder records nothing (its home may be copied or moved).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "registry_settings",
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_registry_settings"),
    )


def downgrade() -> None:
    op.drop_table("registry_settings")
