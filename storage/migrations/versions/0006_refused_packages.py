"""refused packages: a repeat of a refused offer is logged once

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 18:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "refused_packages",
        sa.Column("peer", sa.String(length=2), nullable=False),
        sa.Column("digest", sa.LargeBinary(length=32), nullable=False),
        sa.Column("reason", sa.String(length=255), nullable=False),
        sa.Column("log_index", sa.BigInteger(), nullable=False),
        sa.Column("refused_at_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("peer", "digest", "reason", name=op.f("pk_refused_packages")),
    )


def downgrade() -> None:
    op.drop_table("refused_packages")
