"""signatures by signer: a departure cannot be dated before the teacher's signatures

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 19:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_signing_tasks_signed_by",
        "signing_tasks",
        ["signed_by", "signed_at_us"],
        unique=False,
        sqlite_where=sa.text("signed_by IS NOT NULL"),
        postgresql_where=sa.text("signed_by IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_signing_tasks_signed_by", table_name="signing_tasks")
