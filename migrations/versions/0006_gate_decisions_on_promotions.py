"""The gate's decision on each promotion row: its metric, its reason, and refused candidates.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01

``promotions.gate_metric`` is the metric the gate compared (``accuracy`` or ``macro_f1``) and
``gate_reason`` what it said; rows written before this revision, and the step-0 row of the model
that was production before the first update (never gated), have neither. ``outcome`` is
``promoted`` for every existing row; ``update`` now also records a candidate the gate refused
(``refused``, at the step it would have taken), which ``report`` draws as an extra row.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("promotions", sa.Column("gate_metric", sa.String(20), nullable=True))
    op.add_column("promotions", sa.Column("gate_reason", sa.Text(), nullable=True))
    op.add_column(
        "promotions",
        sa.Column("outcome", sa.String(20), nullable=False, server_default="promoted"),
    )


def downgrade() -> None:
    # The refused rows were never promotions: they go, and the table is what 0005 knew.
    op.get_bind().execute(sa.text("DELETE FROM promotions WHERE outcome <> 'promoted'"))
    for column in ("outcome", "gate_reason", "gate_metric"):
        op.drop_column("promotions", column)
