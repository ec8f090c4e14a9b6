"""outbox trace: the trace id of the call that wrote each message to a peer

A delivery, however many days and retries later, carries the trace id of the
call that caused it (a `traceparent` to the peer), so one transfer can be
followed through both nodes' logs. Messages written before have none ("").

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 05:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch_op:
        batch_op.add_column(sa.Column("trace_id", sa.String(length=32), server_default="", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch_op:
        batch_op.drop_column("trace_id")
