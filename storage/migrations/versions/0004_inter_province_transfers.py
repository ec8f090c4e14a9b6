"""inter-province transfers

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 03:10:03.335382
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "imported_certificates",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("der", sa.LargeBinary(), nullable=False),
        sa.Column("chain", sa.LargeBinary(), nullable=False),
        sa.Column("not_before_us", sa.BigInteger(), nullable=False),
        sa.Column("not_after_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_imported_certificates")),
    )
    op.create_table(
        "inbound_messages",
        sa.Column("peer", sa.String(length=2), nullable=False),
        sa.Column("transfer_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("digest", sa.LargeBinary(length=32), nullable=False),
        sa.Column("log_index", sa.BigInteger(), nullable=False),
        sa.Column("received_at_us", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.SmallInteger(), nullable=False),
        sa.PrimaryKeyConstraint("peer", "transfer_id", "kind", name=op.f("pk_inbound_messages")),
    )
    op.create_table(
        "inbound_packages",
        sa.Column("transfer_id", sa.String(length=32), nullable=False),
        sa.Column("peer", sa.String(length=2), nullable=False),
        sa.Column("package", sa.LargeBinary(), nullable=False),
        sa.Column("seal", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("transfer_id", name=op.f("pk_inbound_packages")),
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("transfer_id", sa.String(length=32), nullable=False),
        sa.Column("peer", sa.String(length=2), nullable=False),
        sa.Column("kind", sa.SmallInteger(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("state", sa.SmallInteger(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_us", sa.BigInteger(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("created_at_us", sa.BigInteger(), nullable=False),
        sa.Column("delivered_at_us", sa.BigInteger(), nullable=True),
        sa.Column("receipt", sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_peer_state", ["peer", "state"], unique=False)
        batch_op.create_index("ix_outbox_state_due", ["state", "next_attempt_us"], unique=False)
        batch_op.create_index("ix_outbox_transfer", ["transfer_id", "id"], unique=False)

    with op.batch_alter_table("pages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("issuing_province", sa.String(length=2), server_default="", nullable=False))
    # Pages made before this revision were all issued by this node's schools.
    op.execute(
        "UPDATE pages SET issuing_province = "
        "(SELECT schools.province FROM schools WHERE schools.code = pages.issuing_school)"
    )

    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.add_column(sa.Column("transferred_out", sa.Boolean(), server_default=sa.false(), nullable=False))

    with op.batch_alter_table("transfers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cancel_requested", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column("delivery_state", sa.SmallInteger(), nullable=True))
        batch_op.add_column(sa.Column("delivery_error", sa.Text(), server_default="", nullable=False))
        batch_op.add_column(sa.Column("salt", sa.LargeBinary(length=16), nullable=True))
        # A transfer arriving from another province exists before its record does
        # (the record is created on acceptance), so transfers no longer reference records.
        batch_op.drop_constraint("fk_transfers_lookup_code_records", type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("transfers", schema=None) as batch_op:
        batch_op.create_foreign_key("fk_transfers_lookup_code_records", "records", ["lookup_code"], ["lookup_code"])
        batch_op.drop_column("salt")
        batch_op.drop_column("delivery_error")
        batch_op.drop_column("delivery_state")
        batch_op.drop_column("cancel_requested")

    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.drop_column("transferred_out")

    with op.batch_alter_table("pages", schema=None) as batch_op:
        batch_op.drop_column("issuing_province")

    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_transfer")
        batch_op.drop_index("ix_outbox_state_due")
        batch_op.drop_index("ix_outbox_peer_state")

    op.drop_table("outbox")
    op.drop_table("inbound_packages")
    op.drop_table("inbound_messages")
    op.drop_table("imported_certificates")
