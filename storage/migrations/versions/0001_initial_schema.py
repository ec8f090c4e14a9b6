"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-23 01:42:13.628064
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("principal", sa.String(length=120), nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("fingerprint", sa.LargeBinary(length=32), nullable=False),
        sa.Column("response", sa.LargeBinary(), nullable=False),
        sa.Column("created_at_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("principal", "request_id", name=op.f("pk_idempotency_keys")),
    )
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.create_index("ix_idempotency_keys_created", ["created_at_us"], unique=False)

    op.create_table(
        "schools",
        sa.Column("code", sa.String(length=20), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("province", sa.String(length=2), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at_us", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_schools")),
    )
    op.create_table(
        "records",
        sa.Column("lookup_code", sa.String(length=32), nullable=False),
        sa.Column("national_id", sa.String(length=12), nullable=False),
        sa.Column("level", sa.SmallInteger(), nullable=False),
        sa.Column("custodian_school", sa.String(length=20), nullable=False),
        sa.Column("open_transfer_id", sa.String(length=32), nullable=True),
        sa.Column("created_at_us", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_us", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["custodian_school"], ["schools.code"], name=op.f("fk_records_custodian_school_schools")
        ),
        sa.PrimaryKeyConstraint("lookup_code", name=op.f("pk_records")),
        sa.UniqueConstraint("national_id", "level", name="uq_records_student_level"),
    )
    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.create_index("ix_records_custodian", ["custodian_school", "lookup_code"], unique=False)

    op.create_table(
        "transfers",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("lookup_code", sa.String(length=32), nullable=False),
        sa.Column("from_school", sa.String(length=20), nullable=False),
        sa.Column("from_province", sa.String(length=2), nullable=False),
        sa.Column("to_school", sa.String(length=20), nullable=False),
        sa.Column("to_province", sa.String(length=2), nullable=False),
        sa.Column("scope", sa.SmallInteger(), nullable=False),
        sa.Column("state", sa.SmallInteger(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at_us", sa.BigInteger(), nullable=False),
        sa.Column("deadline_us", sa.BigInteger(), nullable=False),
        sa.Column("decided_at_us", sa.BigInteger(), nullable=True),
        sa.Column("initiated_by", sa.String(length=120), nullable=False),
        sa.Column("decided_by", sa.String(length=120), nullable=True),
        sa.ForeignKeyConstraint(
            ["lookup_code"], ["records.lookup_code"], name=op.f("fk_transfers_lookup_code_records")
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_transfers")),
        sa.UniqueConstraint("id", name=op.f("uq_transfers_id")),
    )
    with op.batch_alter_table("transfers", schema=None) as batch_op:
        batch_op.create_index("ix_transfers_from", ["from_school", "seq"], unique=False)
        batch_op.create_index("ix_transfers_from_state", ["from_school", "state", "seq"], unique=False)
        batch_op.create_index(
            "ix_transfers_open_deadline",
            ["deadline_us"],
            unique=False,
            sqlite_where=sa.text("state = 1"),
            postgresql_where=sa.text("state = 1"),
        )
        batch_op.create_index("ix_transfers_to", ["to_school", "seq"], unique=False)
        batch_op.create_index("ix_transfers_to_state", ["to_school", "state", "seq"], unique=False)
        batch_op.create_index(
            "ux_transfers_one_open",
            ["lookup_code"],
            unique=True,
            sqlite_where=sa.text("state = 1"),
            postgresql_where=sa.text("state = 1"),
        )

    op.create_table(
        "transfer_events",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("transfer_id", sa.String(length=32), nullable=False),
        sa.Column("from_school", sa.String(length=20), nullable=False),
        sa.Column("to_school", sa.String(length=20), nullable=False),
        sa.Column("state", sa.SmallInteger(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("decided_by", sa.String(length=120), nullable=True),
        sa.Column("occurred_at_us", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["transfer_id"], ["transfers.id"], name=op.f("fk_transfer_events_transfer_id_transfers")
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_transfer_events")),
    )
    with op.batch_alter_table("transfer_events", schema=None) as batch_op:
        batch_op.create_index("ix_transfer_events_from", ["from_school", "seq"], unique=False)
        batch_op.create_index("ix_transfer_events_to", ["to_school", "seq"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("transfer_events", schema=None) as batch_op:
        batch_op.drop_index("ix_transfer_events_to")
        batch_op.drop_index("ix_transfer_events_from")

    op.drop_table("transfer_events")
    with op.batch_alter_table("transfers", schema=None) as batch_op:
        batch_op.drop_index(
            "ux_transfers_one_open", sqlite_where=sa.text("state = 1"), postgresql_where=sa.text("state = 1")
        )
        batch_op.drop_index("ix_transfers_to_state")
        batch_op.drop_index("ix_transfers_to")
        batch_op.drop_index(
            "ix_transfers_open_deadline", sqlite_where=sa.text("state = 1"), postgresql_where=sa.text("state = 1")
        )
        batch_op.drop_index("ix_transfers_from_state")
        batch_op.drop_index("ix_transfers_from")

    op.drop_table("transfers")
    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.drop_index("ix_records_custodian")

    op.drop_table("records")
    op.drop_table("schools")
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.drop_index("ix_idempotency_keys_created")

    op.drop_table("idempotency_keys")
