"""teachers duties pages handoffs

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 02:56:19.208375
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "teachers",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("school", sa.String(length=20), nullable=False),
        sa.Column("code", sa.String(length=20), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("status", sa.SmallInteger(), nullable=False),
        sa.Column("created_at_us", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_us", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["school"], ["schools.code"], name=op.f("fk_teachers_school_schools")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_teachers")),
        sa.UniqueConstraint("school", "code", name="uq_teachers_school_code"),
    )
    op.create_table(
        "duties",
        sa.Column("school", sa.String(length=20), nullable=False),
        sa.Column("duty_key", sa.String(length=80), nullable=False),
        sa.Column("role", sa.SmallInteger(), nullable=False),
        sa.Column("school_year", sa.String(length=9), nullable=False),
        sa.Column("class_name", sa.String(length=12), nullable=False),
        sa.Column("subject", sa.String(length=30), nullable=False),
        sa.Column("holder", sa.String(length=32), nullable=True),
        sa.Column("updated_at_us", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["holder"], ["teachers.id"], name=op.f("fk_duties_holder_teachers")),
        sa.ForeignKeyConstraint(["school"], ["schools.code"], name=op.f("fk_duties_school_schools")),
        sa.PrimaryKeyConstraint("school", "duty_key", name=op.f("pk_duties")),
    )
    with op.batch_alter_table("duties", schema=None) as batch_op:
        batch_op.create_index("ix_duties_holder", ["holder"], unique=False)

    op.create_table(
        "handoffs",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("school", sa.String(length=20), nullable=False),
        sa.Column("teacher_id", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.SmallInteger(), nullable=False),
        sa.Column("effective_day", sa.Integer(), nullable=False),
        sa.Column("end_day", sa.Integer(), nullable=True),
        sa.Column("replacement", sa.String(length=32), nullable=True),
        sa.Column("duties_json", sa.Text(), nullable=False),
        sa.Column("state", sa.SmallInteger(), nullable=False),
        sa.Column("created_by", sa.String(length=120), nullable=False),
        sa.Column("created_at_us", sa.BigInteger(), nullable=False),
        sa.Column("applied_at_us", sa.BigInteger(), nullable=True),
        sa.Column("ended_at_us", sa.BigInteger(), nullable=True),
        sa.Column("moved_tasks", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["teacher_id"], ["teachers.id"], name=op.f("fk_handoffs_teacher_id_teachers")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_handoffs")),
    )
    with op.batch_alter_table("handoffs", schema=None) as batch_op:
        batch_op.create_index("ix_handoffs_school", ["school", "created_at_us", "id"], unique=False)
        batch_op.create_index("ix_handoffs_state_effective", ["state", "effective_day"], unique=False)
        batch_op.create_index("ix_handoffs_state_end", ["state", "end_day"], unique=False)
        batch_op.create_index("ix_handoffs_teacher", ["teacher_id", "state"], unique=False)

    op.create_table(
        "pages",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("lookup_code", sa.String(length=32), nullable=False),
        sa.Column("issuing_school", sa.String(length=20), nullable=False),
        sa.Column("school_year", sa.String(length=9), nullable=False),
        sa.Column("segment", sa.String(length=20), nullable=False),
        sa.Column("grade", sa.SmallInteger(), nullable=False),
        sa.Column("class_name", sa.String(length=12), nullable=False),
        sa.Column("media_type", sa.String(length=100), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("payload_sha256", sa.LargeBinary(length=32), nullable=False),
        sa.Column("payload_size", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("digest", sa.LargeBinary(length=32), nullable=False),
        sa.Column("state", sa.SmallInteger(), nullable=False),
        sa.Column("lock_track", sa.SmallInteger(), nullable=False),
        sa.Column("lock_due_us", sa.BigInteger(), nullable=False),
        sa.Column("created_at_us", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_us", sa.BigInteger(), nullable=False),
        sa.Column("locked_at_us", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["lookup_code"], ["records.lookup_code"], name=op.f("fk_pages_lookup_code_records")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pages")),
        sa.UniqueConstraint("lookup_code", "school_year", "segment", name="uq_pages_record_year_segment"),
    )
    with op.batch_alter_table("pages", schema=None) as batch_op:
        batch_op.create_index("ix_pages_record", ["lookup_code", "id"], unique=False)
        batch_op.create_index(
            "ix_pages_signed_lock_due",
            ["lock_due_us"],
            unique=False,
            sqlite_where=sa.text("state = 3"),
            postgresql_where=sa.text("state = 3"),
        )

    op.create_table(
        "teacher_certificates",
        sa.Column("teacher_id", sa.String(length=32), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("der", sa.LargeBinary(), nullable=False),
        sa.Column("chain", sa.LargeBinary(), nullable=False),
        sa.Column("key_type", sa.String(length=20), nullable=False),
        sa.Column("not_before_us", sa.BigInteger(), nullable=False),
        sa.Column("not_after_us", sa.BigInteger(), nullable=False),
        sa.Column("added_at_us", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["teacher_id"], ["teachers.id"], name=op.f("fk_teacher_certificates_teacher_id_teachers")
        ),
        sa.PrimaryKeyConstraint("teacher_id", "sha256", name=op.f("pk_teacher_certificates")),
    )
    op.create_table(
        "signing_tasks",
        sa.Column("page_id", sa.String(length=32), nullable=False),
        sa.Column("requirement", sa.String(length=40), nullable=False),
        sa.Column("role", sa.SmallInteger(), nullable=False),
        sa.Column("subject", sa.String(length=30), nullable=False),
        sa.Column("school", sa.String(length=20), nullable=False),
        sa.Column("duty_key", sa.String(length=80), nullable=False),
        sa.Column("assignee", sa.String(length=32), nullable=True),
        sa.Column("signed_by", sa.String(length=32), nullable=True),
        sa.Column("signature", sa.LargeBinary(), nullable=True),
        sa.Column("certificate_sha256", sa.String(length=64), nullable=True),
        sa.Column("signed_at_us", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["page_id"], ["pages.id"], name=op.f("fk_signing_tasks_page_id_pages")),
        sa.PrimaryKeyConstraint("page_id", "requirement", name=op.f("pk_signing_tasks")),
    )
    with op.batch_alter_table("signing_tasks", schema=None) as batch_op:
        batch_op.create_index(
            "ix_signing_tasks_pending_assignee",
            ["assignee", "page_id", "requirement"],
            unique=False,
            sqlite_where=sa.text("signed_by IS NULL"),
            postgresql_where=sa.text("signed_by IS NULL"),
        )
        batch_op.create_index(
            "ix_signing_tasks_pending_duty",
            ["school", "duty_key"],
            unique=False,
            sqlite_where=sa.text("signed_by IS NULL"),
            postgresql_where=sa.text("signed_by IS NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("signing_tasks", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_signing_tasks_pending_duty",
            sqlite_where=sa.text("signed_by IS NULL"),
            postgresql_where=sa.text("signed_by IS NULL"),
        )
        batch_op.drop_index(
            "ix_signing_tasks_pending_assignee",
            sqlite_where=sa.text("signed_by IS NULL"),
            postgresql_where=sa.text("signed_by IS NULL"),
        )

    op.drop_table("signing_tasks")
    op.drop_table("teacher_certificates")
    with op.batch_alter_table("pages", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_pages_signed_lock_due", sqlite_where=sa.text("state = 3"), postgresql_where=sa.text("state = 3")
        )
        batch_op.drop_index("ix_pages_record")

    op.drop_table("pages")
    with op.batch_alter_table("handoffs", schema=None) as batch_op:
        batch_op.drop_index("ix_handoffs_teacher")
        batch_op.drop_index("ix_handoffs_state_end")
        batch_op.drop_index("ix_handoffs_state_effective")
        batch_op.drop_index("ix_handoffs_school")

    op.drop_table("handoffs")
    with op.batch_alter_table("duties", schema=None) as batch_op:
        batch_op.drop_index("ix_duties_holder")

    op.drop_table("duties")
    op.drop_table("teachers")
