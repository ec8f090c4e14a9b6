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
    false,
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
    Column("transferred_out", Boolean, nullable=False, server_default=false()),
    # Record.page_salts: 16 bytes each, oldest first (filled for older rows by migration 0010)
    Column("page_salts", LargeBinary, nullable=True),
    UniqueConstraint("national_id", "level", name="uq_records_student_level"),
    Index("ix_records_custodian", "custodian_school", "lookup_code"),
)

transfers = Table(
    "transfers",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("id", String(32), nullable=False, unique=True),
    # No foreign key to records: a transfer arriving from another province
    # exists before its record (created on acceptance).
    Column("lookup_code", String(32), nullable=False),
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
    Column("cancel_requested", Boolean, nullable=False, server_default=false()),
    Column("delivery_state", SmallInteger, nullable=True),
    Column("delivery_error", Text, nullable=False, server_default=""),
    Column("salt", LargeBinary(16), nullable=True),  # None for transfers made before migration 0004
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

# Witnesses' cosignatures of the checkpoints above: one line per (checkpoint, witness key), the
# first one received kept (a witness asked again cosigns again, with a later timestamp). Appended
# to the checkpoint's note when it is served (docs/log.md, Witnesses).
log_cosignatures = Table(
    "log_cosignatures",
    metadata,
    Column("size", BigInteger, primary_key=True, autoincrement=False),
    Column("witness", String(255), primary_key=True),
    Column("key_id", LargeBinary(4), primary_key=True),
    Column("line", Text, nullable=False),
    Column("received_at_us", BigInteger, nullable=False),
)


def nodes_filter(ids: Iterable[tuple[int, int]]) -> ColumnElement[bool]:
    """WHERE clause for a set of (level, idx) nodes.

    Written as an OR of equalities: SQLite answers a row-value IN list with a
    full scan, but each OR term with the primary key (measured: 83 ms against
    0.06 ms at 200,000 nodes).
    """
    return or_(*(and_(log_nodes.c.level == level, log_nodes.c.idx == idx) for level, idx in sorted(ids)))


# -- teachers, duties, pages, signing tasks, handoffs (DESIGN §5, §7) ----------

SIGNED = 3  # PageState.SIGNED

teachers = Table(
    "teachers",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("school", String(20), ForeignKey("schools.code"), nullable=False),
    Column("code", String(20), nullable=False),
    Column("name", String(200), nullable=False),
    Column("status", SmallInteger, nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
    Column("updated_at_us", BigInteger, nullable=False),
    UniqueConstraint("school", "code", name="uq_teachers_school_code"),
)

teacher_certificates = Table(
    "teacher_certificates",
    metadata,
    Column("teacher_id", String(32), ForeignKey("teachers.id"), primary_key=True),
    Column("sha256", String(64), primary_key=True),
    Column("der", LargeBinary, nullable=False),
    Column("chain", LargeBinary, nullable=False),  # intermediates: DER, each prefixed by a 4-byte length
    Column("key_type", String(20), nullable=False),
    Column("not_before_us", BigInteger, nullable=False),
    Column("not_after_us", BigInteger, nullable=False),
    Column("added_at_us", BigInteger, nullable=False),
)

duties = Table(
    "duties",
    metadata,
    Column("school", String(20), ForeignKey("schools.code"), primary_key=True),
    Column("duty_key", String(80), primary_key=True),
    Column("role", SmallInteger, nullable=False),
    Column("school_year", String(9), nullable=False),
    Column("class_name", String(12), nullable=False),
    Column("subject", String(30), nullable=False),
    Column("holder", String(32), ForeignKey("teachers.id"), nullable=True),
    Column("updated_at_us", BigInteger, nullable=False),
    Index("ix_duties_holder", "holder"),
)

pages = Table(
    "pages",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("lookup_code", String(32), ForeignKey("records.lookup_code"), nullable=False),
    Column("issuing_school", String(20), nullable=False),
    Column("school_year", String(9), nullable=False),
    Column("segment", String(20), nullable=False),
    Column("grade", SmallInteger, nullable=False),
    Column("class_name", String(12), nullable=False),
    Column("media_type", String(100), nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("payload_sha256", LargeBinary(32), nullable=False),
    Column("payload_size", Integer, nullable=False),
    Column("version", Integer, nullable=False),
    Column("digest", LargeBinary(32), nullable=False),
    Column("state", SmallInteger, nullable=False),
    Column("lock_track", SmallInteger, nullable=False),
    Column("lock_due_us", BigInteger, nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
    Column("updated_at_us", BigInteger, nullable=False),
    Column("locked_at_us", BigInteger, nullable=True),
    Column("issuing_province", String(2), nullable=False, server_default=""),
    UniqueConstraint("lookup_code", "school_year", "segment", name="uq_pages_record_year_segment"),
    Index("ix_pages_record", "lookup_code", "id"),
    Index(
        "ix_pages_signed_lock_due",
        "lock_due_us",
        sqlite_where=text(f"state = {SIGNED}"),
        postgresql_where=text(f"state = {SIGNED}"),
    ),
)

signing_tasks = Table(
    "signing_tasks",
    metadata,
    Column("page_id", String(32), ForeignKey("pages.id"), primary_key=True),
    Column("requirement", String(40), primary_key=True),
    Column("role", SmallInteger, nullable=False),
    Column("subject", String(30), nullable=False),
    Column("school", String(20), nullable=False),
    Column("duty_key", String(80), nullable=False),
    Column("assignee", String(32), nullable=True),
    Column("signed_by", String(32), nullable=True),
    Column("signature", LargeBinary, nullable=True),
    Column("certificate_sha256", String(64), nullable=True),
    Column("signed_at_us", BigInteger, nullable=True),
    Index(
        "ix_signing_tasks_pending_assignee",
        "assignee",
        "page_id",
        "requirement",
        sqlite_where=text("signed_by IS NULL"),
        postgresql_where=text("signed_by IS NULL"),
    ),
    Index(
        "ix_signing_tasks_pending_duty",
        "school",
        "duty_key",
        sqlite_where=text("signed_by IS NULL"),
        postgresql_where=text("signed_by IS NULL"),
    ),
    # A teacher's signatures by time: a departure cannot be dated before one of them.
    Index(
        "ix_signing_tasks_signed_by",
        "signed_by",
        "signed_at_us",
        sqlite_where=text("signed_by IS NOT NULL"),
        postgresql_where=text("signed_by IS NOT NULL"),
    ),
)

handoffs = Table(
    "handoffs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("school", String(20), nullable=False),
    Column("teacher_id", String(32), ForeignKey("teachers.id"), nullable=False),
    Column("reason", SmallInteger, nullable=False),
    Column("effective_day", Integer, nullable=False),  # days since 1970-01-01
    Column("end_day", Integer, nullable=True),
    Column("replacement", String(32), nullable=True),
    Column("duties_json", Text, nullable=False),
    Column("state", SmallInteger, nullable=False),
    Column("created_by", String(120), nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
    Column("applied_at_us", BigInteger, nullable=True),
    Column("ended_at_us", BigInteger, nullable=True),
    Column("moved_tasks", Integer, nullable=False),
    # The salt of the departure's log entry (its reason as a digest); None for
    # handoffs recorded before migration 0005, whose entry holds the reason code.
    Column("salt", LargeBinary(16), nullable=True),
    Index("ix_handoffs_teacher", "teacher_id", "state"),
    Index("ix_handoffs_school", "school", "created_at_us", "id"),
    Index("ix_handoffs_state_effective", "state", "effective_day"),
    Index("ix_handoffs_state_end", "state", "end_day"),
)


# -- between provinces (DESIGN §6) -----------------------------------------------

outbox = Table(
    "outbox",
    metadata,
    Column("id", Seq, primary_key=True, autoincrement=True),
    Column("transfer_id", String(32), nullable=False),
    Column("peer", String(2), nullable=False),
    Column("kind", SmallInteger, nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("state", SmallInteger, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_us", BigInteger, nullable=False),
    Column("last_error", Text, nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
    Column("delivered_at_us", BigInteger, nullable=True),
    Column("receipt", LargeBinary, nullable=True),
    # The trace id of the call that wrote the message ("" before 0010): every delivery attempt sends it.
    Column("trace_id", String(32), nullable=False, server_default=""),
    Index("ix_outbox_state_due", "state", "next_attempt_us"),
    Index("ix_outbox_transfer", "transfer_id", "id"),
    Index("ix_outbox_peer_state", "peer", "state"),
)

# The witnessed proof bundle of each delivered message's receipt that names an entry of the peer's
# log, fetched later from the peer (docs/federation.md, Receipts): one row per outbox message, made
# when it is delivered to a peer with a witness policy, and its refresh schedule.
peer_bundles = Table(
    "peer_bundles",
    metadata,
    Column("outbox_id", BigInteger, primary_key=True, autoincrement=False),
    Column("peer", String(2), nullable=False),
    Column("state", SmallInteger, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_us", BigInteger, nullable=False),
    Column("delivered_at_us", BigInteger, nullable=False),
    Column("last_error", Text, nullable=False),
    Column("bundle", Text, nullable=False),
    Column("conflicting_checkpoint", Text, nullable=False),
    Index("ix_peer_bundles_state_due", "state", "next_attempt_us"),
)

inbound_messages = Table(
    "inbound_messages",
    metadata,
    Column("peer", String(2), primary_key=True),
    Column("transfer_id", String(32), primary_key=True),
    Column("kind", SmallInteger, primary_key=True, autoincrement=False),
    Column("digest", LargeBinary(32), nullable=False),
    Column("log_index", BigInteger, nullable=False),
    Column("received_at_us", BigInteger, nullable=False),
    # The transfer's state after the message: with the rest, all a receipt says,
    # so a repeat gets the same receipt, rebuilt byte for byte.
    Column("state", SmallInteger, nullable=False),
)

inbound_packages = Table(
    "inbound_packages",
    metadata,
    Column("transfer_id", String(32), primary_key=True),
    Column("peer", String(2), nullable=False),
    Column("package", LargeBinary, nullable=False),
    Column("seal", LargeBinary, nullable=False),
)

# Packages this node refused, once per (peer, package digest, reason): a repeat
# of the same refused offer (overlapping attempts, a lost answer) is refused
# again but logged once.
refused_packages = Table(
    "refused_packages",
    metadata,
    Column("peer", String(2), primary_key=True),
    Column("digest", LargeBinary(32), primary_key=True),
    Column("reason", String(255), primary_key=True),
    Column("log_index", BigInteger, nullable=False),
    Column("refused_at_us", BigInteger, nullable=False),
)

# Secrets this node generates for itself, once, shared by every process on the
# database and kept across restarts: `page_tokens` keys its page tokens and
# watch cursors (transfer.domain.paging).
node_secrets = Table(
    "node_secrets",
    metadata,
    Column("name", String(40), primary_key=True),
    Column("value", LargeBinary, nullable=False),
)

imported_certificates = Table(
    "imported_certificates",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("der", LargeBinary, nullable=False),
    Column("chain", LargeBinary, nullable=False),
    Column("not_before_us", BigInteger, nullable=False),
    Column("not_after_us", BigInteger, nullable=False),
)
