"""record page salts: page log entries name the record by a salted digest

Each record gets a random 16-byte salt now (its page entries from here on are
of kinds 19-21); a new one is appended each time the record changes custodian.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 04:30:00
"""

from __future__ import annotations

import os

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.add_column(sa.Column("page_salts", sa.LargeBinary(), nullable=True))
    records = sa.table("records", sa.column("lookup_code", sa.String), sa.column("page_salts", sa.LargeBinary))
    bind = op.get_bind()
    codes = [row[0] for row in bind.execute(sa.select(records.c.lookup_code))]
    update = records.update().where(records.c.lookup_code == sa.bindparam("code"))
    for start in range(0, len(codes), 1000):
        bind.execute(
            update.values(page_salts=sa.bindparam("salts")),
            [{"code": code, "salts": os.urandom(16)} for code in codes[start : start + 1000]],
        )


def downgrade() -> None:
    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.drop_column("page_salts")
