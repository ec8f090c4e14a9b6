"""peer bundles: the witnessed proof bundles of the receipts peers gave, and their refresh schedule

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 05:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "peer_bundles",
        sa.Column("outbox_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("peer", sa.String(length=2), nullable=False),
        sa.Column("state", sa.SmallInteger(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_us", sa.BigInteger(), nullable=False),
        sa.Column("delivered_at_us", sa.BigInteger(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("bundle", sa.Text(), nullable=False),
        sa.Column("conflicting_checkpoint", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("outbox_id", name=op.f("pk_peer_bundles")),
    )
    op.create_index("ix_peer_bundles_state_due", "peer_bundles", ["state", "next_attempt_us"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_peer_bundles_state_due", table_name="peer_bundles")
    op.drop_table("peer_bundles")
