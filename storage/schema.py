"""The tables, as SQLAlchemy Core metadata (Alembic migrations create them).

Instants are stored as integer microseconds since the Unix epoch (UTC): the
same on SQLite and PostgreSQL, exact, and cheap to compare and index.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    or_,
    text,
)
from sqlalchemy.sql.elements import ColumnElement

# Stable constraint names, so migrations can refer to them on both engines.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite only makes INTEGER PRIMARY KEY an alias of the rowid (auto-assigned).
Seq = BigInteger().with_variant(Integer(), "sqlite")

OPEN = 1  # TransferState.REQUESTED

schools = Table(
    "schools",
    metadata,
    Column("code", String(20), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("province", String(2), nullable=False),
    Column("active", Boolean, nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
    Column("updated_at_us", BigInteger, nullable=False),
)

records = Table(
    "records",
    metadata,
    Column("lookup_code", String(32), primary_key=True),
    Column("national_id", String(12), nullable=False),
    Column("level", SmallInteger, nullable=False),
    Column("custodian_school", String(20), ForeignKey("schools.code"), nullable=False),
    Column("open_transfer_id", String(32), nullable=True),
    Column("created_at_us", BigInteger, nullable=False),
    Column("updated_at_us", BigInteger, nullable=False),
    UniqueConstraint("national_id", "level", name="uq_records_student_level"),
    Index("ix_records_custodian", "custodian_school", "lookup_code"),
)

transfers = Table(
    "transfers",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("id", String(32), nullable=False, unique=True),
    Column("lookup_code", String(32), ForeignKey("records.lookup_code"), nullable=False),
    Column("from_school", String(20), nullable=False),
    Column("from_province", String(2), nullable=False),
    Column("to_school", String(20), nullable=False),
    Column("to_province", String(2), nullable=False),
    Column("scope", SmallInteger, nullable=False),
    Column("state", SmallInteger, nullable=False),
    Column("reason", Text, nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
    Column("deadline_us", BigInteger, nullable=False),
    Column("decided_at_us", BigInteger, nullable=True),
    Column("initiated_by", String(120), nullable=False),
    Column("decided_by", String(120), nullable=True),
    Index("ix_transfers_to", "to_school", "seq"),
    Index("ix_transfers_to_state", "to_school", "state", "seq"),
    Index("ix_transfers_from", "from_school", "seq"),
    Index("ix_transfers_from_state", "from_school", "state", "seq"),
    # At most one open transfer per record, whatever the code above does.
    Index(
        "ux_transfers_one_open",
        "lookup_code",
        unique=True,
        sqlite_where=text(f"state = {OPEN}"),
        postgresql_where=text(f"state = {OPEN}"),
    ),
    Index(
        "ix_transfers_open_deadline",
        "deadline_us",
        sqlite_where=text(f"state = {OPEN}"),
        postgresql_where=text(f"state = {OPEN}"),
    ),
)

transfer_events = Table(
    "transfer_events",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("transfer_id", String(32), ForeignKey("transfers.id"), nullable=False),
    Column("from_school", String(20), nullable=False),
    Column("to_school", String(20), nullable=False),
    Column("state", SmallInteger, nullable=False),
    Column("reason", Text, nullable=False),
    Column("decided_by", String(120), nullable=True),
    Column("occurred_at_us", BigInteger, nullable=False),
    Index("ix_transfer_events_from", "from_school", "seq"),
    Index("ix_transfer_events_to", "to_school", "seq"),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("principal", String(120), primary_key=True),
    Column("request_id", String(36), primary_key=True),
    Column("fingerprint", LargeBinary(32), nullable=False),
    Column("response", LargeBinary, nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
    Index("ix_idempotency_keys_created", "created_at_us"),
)

# -- the append-only log (DESIGN §8) -------------------------------------------
# Triggers created by the migrations refuse UPDATE and DELETE on these tables.

log_leaves = Table(
    "log_leaves",
    metadata,
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("data", LargeBinary, nullable=False),
)

# Every complete subtree's hash: (level, idx) covers leaves
# [idx * 2**level, (idx + 1) * 2**level); level 0 holds the leaf hashes. About
# two rows per leaf, so any proof reads O(log n) rows.
log_nodes = Table(
    "log_nodes",
    metadata,
    Column("level", SmallInteger, primary_key=True, autoincrement=False),
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary(32), nullable=False),
)

log_checkpoints = Table(
    "log_checkpoints",
    metadata,
    Column("size", BigInteger, primary_key=True, autoincrement=False),
    Column("root", LargeBinary(32), nullable=False),
    Column("note", Text, nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
)

LOG_TABLES = ("log_leaves", "log_nodes", "log_checkpoints")


def nodes_filter(ids: Iterable[tuple[int, int]]) -> ColumnElement[bool]:
    """WHERE clause for a set of (level, idx) nodes.

    Written as an OR of equalities: SQLite answers a row-value IN list with a
    full scan, but each OR term with the primary key (measured: 83 ms against
    0.06 ms at 200,000 nodes).
    """
    return or_(*(and_(log_nodes.c.level == level, log_nodes.c.idx == idx) for level, idx in sorted(ids)))
