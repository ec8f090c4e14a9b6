"""Precompiled statements executed on the raw DBAPI cursor.

SQLAlchemy Core builds every statement from the tables in `schema.py` and
compiles it once per dialect (so names, types and dialect differences come
from one place); the statements then run directly on the driver's cursor.
On the machines this project is measured on, a Core `execute()` costs about
70 µs with a prebuilt statement and 220 µs when built per call, against
11 µs for the same statement on the sqlite3 cursor: with about ten statements
per mutation that difference is the node's throughput (DESIGN §9 asked for
Core on the write path; this keeps Core for building, not for executing).

Dynamic queries (lists with optional filters) still go through Core.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sqlalchemy import Connection, and_, bindparam, delete, func, insert, literal_column, or_, select, update
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.expression import ClauseElement as Executable

from storage.schema import (
    OPEN,
    duties,
    handoffs,
    idempotency_keys,
    imported_certificates,
    inbound_messages,
    inbound_packages,
    log_checkpoints,
    log_cosignatures,
    log_leaves,
    log_nodes,
    node_secrets,
    outbox,
    pages,
    peer_bundles,
    records,
    refused_packages,
    schools,
    signing_tasks,
    teacher_certificates,
    teachers,
    transfer_events,
    transfers,
)

P = bindparam

SCHOOL_COLS = (
    schools.c.code,
    schools.c.name,
    schools.c.province,
    schools.c.active,
    schools.c.created_at_us,
    schools.c.updated_at_us,
)
RECORD_COLS = (
    records.c.lookup_code,
    records.c.national_id,
    records.c.level,
    records.c.custodian_school,
    records.c.open_transfer_id,
    records.c.created_at_us,
    records.c.updated_at_us,
    records.c.transferred_out,
    records.c.page_salts,
)
TRANSFER_COLS = (
    transfers.c.id,
    transfers.c.lookup_code,
    transfers.c.from_school,
    transfers.c.from_province,
    transfers.c.to_school,
    transfers.c.to_province,
    transfers.c.scope,
    transfers.c.state,
    transfers.c.reason,
    transfers.c.created_at_us,
    transfers.c.deadline_us,
    transfers.c.decided_at_us,
    transfers.c.initiated_by,
    transfers.c.decided_by,
    transfers.c.cancel_requested,
    transfers.c.delivery_state,
    transfers.c.delivery_error,
    transfers.c.salt,
)

CHECKPOINT_COLS = (
    log_checkpoints.c.size,
    log_checkpoints.c.root,
    log_checkpoints.c.note,
    log_checkpoints.c.created_at_us,
)

TEACHER_COLS = tuple(teachers.c)
CERT_COLS = (
    teacher_certificates.c.sha256,
    teacher_certificates.c.der,
    teacher_certificates.c.chain,
    teacher_certificates.c.key_type,
    teacher_certificates.c.not_before_us,
    teacher_certificates.c.not_after_us,
)
DUTY_COLS = (
    duties.c.school,
    duties.c.role,
    duties.c.school_year,
    duties.c.class_name,
    duties.c.subject,
    duties.c.holder,
    duties.c.updated_at_us,
)
PAGE_COLS = tuple(c for c in pages.c if c.name not in ("payload", "lock_due_us"))
TASK_COLS = tuple(signing_tasks.c)
HANDOFF_COLS = tuple(handoffs.c)


def _insert(table: Any, columns: Iterable[str]) -> Executable:
    return insert(table).values({c: P(c) for c in columns})


# name -> statement; every bind parameter is named after its column.
STATEMENTS: dict[str, Callable[[], Executable]] = {
    "school_get": lambda: select(*SCHOOL_COLS).where(schools.c.code == P("code")),
    "school_insert": lambda: _insert(schools, [c.name for c in SCHOOL_COLS]),
    "school_update": lambda: (
        update(schools)
        .where(schools.c.code == P("code"))
        .values(name=P("name"), active=P("active"), updated_at_us=P("updated_at_us"))
    ),
    "record_get": lambda: select(*RECORD_COLS).where(records.c.lookup_code == P("lookup_code")),
    "record_by_student": lambda: select(records.c.lookup_code).where(
        records.c.national_id == P("national_id"), records.c.level == P("level")
    ),
    "record_insert": lambda: _insert(records, [c.name for c in RECORD_COLS]),
    "record_update": lambda: (
        update(records)
        .where(records.c.lookup_code == P("lookup_code"))
        .values(
            custodian_school=P("custodian_school"),
            open_transfer_id=P("open_transfer_id"),
            updated_at_us=P("updated_at_us"),
            transferred_out=P("transferred_out"),
            page_salts=P("page_salts"),
        )
    ),
    "transfer_get": lambda: select(*TRANSFER_COLS).where(transfers.c.id == P("id")),
    # The state as a literal, so that the partial unique index of open transfers answers it.
    "transfer_open_of_record": lambda: select(*TRANSFER_COLS).where(
        transfers.c.lookup_code == P("lookup_code"), transfers.c.state == literal_column(str(OPEN))
    ),
    "transfer_insert": lambda: _insert(transfers, [c.name for c in TRANSFER_COLS]),
    "transfer_update": lambda: (
        update(transfers)
        .where(transfers.c.id == P("id"))
        .values(
            state=P("state"),
            reason=P("reason"),
            decided_at_us=P("decided_at_us"),
            decided_by=P("decided_by"),
            cancel_requested=P("cancel_requested"),
            delivery_state=P("delivery_state"),
            delivery_error=P("delivery_error"),
        )
    ),
    "event_insert": lambda: _insert(
        transfer_events,
        ["seq", "transfer_id", "from_school", "to_school", "state", "reason", "decided_by", "occurred_at_us"],
    ),
    "event_at": lambda: select(
        transfer_events.c.transfer_id, transfer_events.c.state, transfer_events.c.occurred_at_us
    ).where(transfer_events.c.seq == P("seq")),
    "secret_get": lambda: select(node_secrets.c.value).where(node_secrets.c.name == P("name")),
    "secret_insert": lambda: _insert(node_secrets, ["name", "value"]),
    "event_head": lambda: select(func.coalesce(func.max(transfer_events.c.seq), literal_column("0"))),
    "idempotency_get": lambda: select(idempotency_keys.c.fingerprint, idempotency_keys.c.response).where(
        idempotency_keys.c.principal == P("principal"), idempotency_keys.c.request_id == P("request_id")
    ),
    "idempotency_insert": lambda: _insert(
        idempotency_keys, ["principal", "request_id", "fingerprint", "response", "created_at_us"]
    ),
    "idempotency_delete": lambda: delete(idempotency_keys).where(
        idempotency_keys.c.principal == P("principal"), idempotency_keys.c.request_id == P("request_id")
    ),
    "teacher_get": lambda: select(*TEACHER_COLS).where(teachers.c.id == P("id")),
    "teacher_by_code": lambda: select(*TEACHER_COLS).where(
        teachers.c.school == P("school"), teachers.c.code == P("code")
    ),
    "teacher_insert": lambda: _insert(teachers, [c.name for c in TEACHER_COLS]),
    "teacher_update": lambda: (
        update(teachers)
        .where(teachers.c.id == P("id"))
        .values(name=P("name"), status=P("status"), updated_at_us=P("updated_at_us"))
    ),
    "certs_of_teacher": lambda: (
        select(*CERT_COLS)
        .where(teacher_certificates.c.teacher_id == P("teacher_id"))
        .order_by(teacher_certificates.c.added_at_us)
    ),
    "cert_insert": lambda: _insert(teacher_certificates, [c.name for c in teacher_certificates.c]),
    "duty_get": lambda: select(*DUTY_COLS).where(duties.c.school == P("school"), duties.c.duty_key == P("duty_key")),
    "duty_insert": lambda: _insert(duties, [c.name for c in duties.c]),
    "duty_update": lambda: (
        update(duties)
        .where(duties.c.school == P("school"), duties.c.duty_key == P("duty_key"))
        .values(holder=P("holder"), updated_at_us=P("updated_at_us"))
    ),
    "duties_held_by": lambda: select(*DUTY_COLS).where(duties.c.holder == P("holder")).order_by(duties.c.duty_key),
    "duties_of_school": lambda: select(*DUTY_COLS).where(duties.c.school == P("school")).order_by(duties.c.duty_key),
    "page_get": lambda: select(*PAGE_COLS).where(pages.c.id == P("id")),
    "page_find": lambda: select(*PAGE_COLS).where(
        pages.c.lookup_code == P("lookup_code"),
        pages.c.school_year == P("school_year"),
        pages.c.segment == P("segment"),
    ),
    "page_insert": lambda: _insert(pages, [c.name for c in pages.c]),
    "page_update": lambda: (
        update(pages)
        .where(pages.c.id == P("id"))
        .values(
            media_type=P("media_type"),
            payload_sha256=P("payload_sha256"),
            payload_size=P("payload_size"),
            version=P("version"),
            digest=P("digest"),
            state=P("state"),
            updated_at_us=P("updated_at_us"),
            locked_at_us=P("locked_at_us"),
        )
    ),
    "page_set_payload": lambda: update(pages).where(pages.c.id == P("id")).values(payload=P("payload")),
    "page_payload": lambda: select(pages.c.payload).where(pages.c.id == P("id")),
    "page_lock_due": lambda: select(pages.c.lock_due_us).where(pages.c.id == P("id")),
    "tasks_of_page": lambda: (
        select(*TASK_COLS).where(signing_tasks.c.page_id == P("page_id")).order_by(signing_tasks.c.requirement)
    ),
    "task_insert": lambda: _insert(signing_tasks, [c.name for c in signing_tasks.c]),
    "task_update": lambda: (
        update(signing_tasks)
        .where(signing_tasks.c.page_id == P("page_id"), signing_tasks.c.requirement == P("requirement"))
        .values(
            assignee=P("assignee"),
            signed_by=P("signed_by"),
            signature=P("signature"),
            certificate_sha256=P("certificate_sha256"),
            signed_at_us=P("signed_at_us"),
        )
    ),
    "task_last_signed_by": lambda: select(func.max(signing_tasks.c.signed_at_us)).where(
        signing_tasks.c.signed_by == P("teacher_id"),
        signing_tasks.c.signed_at_us >= P("since_us"),
        signing_tasks.c.signed_at_us < P("until_us"),
    ),
    "task_reassign": lambda: (
        update(signing_tasks)
        .where(signing_tasks.c.page_id == P("page_id"), signing_tasks.c.requirement == P("requirement"))
        .values(assignee=P("assignee"))
    ),
    "handoff_get": lambda: select(*HANDOFF_COLS).where(handoffs.c.id == P("id")),
    "handoff_insert": lambda: _insert(handoffs, [c.name for c in handoffs.c]),
    "handoff_update": lambda: (
        update(handoffs)
        .where(handoffs.c.id == P("id"))
        .values(
            duties_json=P("duties_json"),
            state=P("state"),
            applied_at_us=P("applied_at_us"),
            ended_at_us=P("ended_at_us"),
            moved_tasks=P("moved_tasks"),
        )
    ),
    "handoffs_open_for": lambda: (
        select(*HANDOFF_COLS)
        .where(
            handoffs.c.teacher_id == P("teacher_id"), handoffs.c.state.in_([literal_column("1"), literal_column("2")])
        )
        .order_by(handoffs.c.created_at_us)
    ),
    "outbox_insert": lambda: _insert(outbox, [c.name for c in outbox.c if c.name != "id"]),
    "outbox_get": lambda: select(*outbox.c).where(outbox.c.id == P("id")),
    "outbox_update": lambda: (
        update(outbox)
        .where(outbox.c.id == P("id"))
        .values(
            state=P("state"),
            attempts=P("attempts"),
            next_attempt_us=P("next_attempt_us"),
            last_error=P("last_error"),
            delivered_at_us=P("delivered_at_us"),
            receipt=P("receipt"),
        )
    ),
    # A peer answered again: its PENDING messages (state 1) waiting past `now` are due now.
    "outbox_bring_forward": lambda: (
        update(outbox)
        .where(outbox.c.peer == P("peer"), outbox.c.state == literal_column("1"), outbox.c.next_attempt_us > P("now"))
        .values(next_attempt_us=P("now"))
    ),
    "peer_bundle_insert": lambda: _insert(peer_bundles, [c.name for c in peer_bundles.c]),
    "peer_bundle_update": lambda: (
        update(peer_bundles)
        .where(peer_bundles.c.outbox_id == P("outbox_id"))
        .values(
            state=P("state"),
            attempts=P("attempts"),
            next_attempt_us=P("next_attempt_us"),
            last_error=P("last_error"),
            bundle=P("bundle"),
            conflicting_checkpoint=P("conflicting_checkpoint"),
        )
    ),
    "inbound_get": lambda: select(*inbound_messages.c).where(
        inbound_messages.c.peer == P("peer"),
        inbound_messages.c.transfer_id == P("transfer_id"),
        inbound_messages.c.kind == P("kind"),
    ),
    "inbound_insert": lambda: _insert(inbound_messages, [c.name for c in inbound_messages.c]),
    "package_insert": lambda: _insert(inbound_packages, [c.name for c in inbound_packages.c]),
    "package_get": lambda: select(inbound_packages.c.package).where(inbound_packages.c.transfer_id == P("transfer_id")),
    "refusal_get": lambda: select(refused_packages.c.log_index).where(
        refused_packages.c.peer == P("peer"),
        refused_packages.c.digest == P("digest"),
        refused_packages.c.reason == P("reason"),
    ),
    "refusal_insert": lambda: _insert(refused_packages, [c.name for c in refused_packages.c]),
    "imported_cert_get": lambda: select(*imported_certificates.c).where(imported_certificates.c.sha256 == P("sha256")),
    "imported_cert_insert": lambda: _insert(imported_certificates, [c.name for c in imported_certificates.c]),
    "page_delete_tasks": lambda: delete(signing_tasks).where(signing_tasks.c.page_id == P("page_id")),
    # max(idx) walks the primary key; count(*) would scan the table.
    "log_head": lambda: select(func.coalesce(func.max(log_leaves.c.idx) + literal_column("1"), literal_column("0"))),
    "log_leaf_insert": lambda: _insert(log_leaves, ["idx", "data"]),
    "log_node_insert": lambda: _insert(log_nodes, ["level", "idx", "hash"]),
    "checkpoint_insert": lambda: _insert(log_checkpoints, ["size", "root", "note", "created_at_us"]),
    "checkpoint_latest": lambda: select(*CHECKPOINT_COLS).where(
        log_checkpoints.c.size == select(func.max(log_checkpoints.c.size)).scalar_subquery()
    ),
    "checkpoint_at": lambda: select(*CHECKPOINT_COLS).where(log_checkpoints.c.size == P("size")),
    "cosignature_get": lambda: select(log_cosignatures.c.line).where(
        log_cosignatures.c.size == P("size"),
        log_cosignatures.c.witness == P("witness"),
        log_cosignatures.c.key_id == P("key_id"),
    ),
    "cosignature_insert": lambda: _insert(log_cosignatures, ["size", "witness", "key_id", "line", "received_at_us"]),
    "checkpoint_covering": lambda: select(*CHECKPOINT_COLS).where(
        log_checkpoints.c.size
        == select(func.min(log_checkpoints.c.size)).where(log_checkpoints.c.size > P("index")).scalar_subquery()
    ),
}


class Statements:
    """Every statement of `STATEMENTS`, compiled for one dialect.

    The node's engines use named parameters (a dict goes straight to the
    driver); for a positional paramstyle the names are kept in order.
    """

    def __init__(self, dialect: Dialect) -> None:
        self.sql: dict[str, str] = {}
        self.order: dict[str, tuple[str, ...]] = {}
        for name, build in STATEMENTS.items():
            compiled = build().compile(dialect=dialect)
            # A literal in a statement compiles to an anonymous parameter the
            # caller would not know to pass: write literals with literal_column.
            anonymous = [key for key, bind in getattr(compiled, "binds", {}).items() if not bind.required]
            if anonymous:
                raise ValueError(f"statement {name} has anonymous parameters {anonymous}")
            self.sql[name] = str(compiled)
            if dialect.positional:
                self.order[name] = tuple(getattr(compiled, "positiontup", None) or ())


_cache: dict[str, Statements] = {}


def statements_for(dialect: Dialect) -> Statements:
    key = f"{dialect.name}:{dialect.paramstyle}"
    if key not in _cache:
        _cache[key] = Statements(dialect)
    return _cache[key]


def _nodes_statement(n: int) -> Executable:
    """SELECT of n (level, idx) nodes, parameters l0, i0, l1, i1, ... (see schema.nodes_filter)."""
    return select(log_nodes.c.level, log_nodes.c.idx, log_nodes.c.hash).where(
        or_(*(and_(log_nodes.c.level == P(f"l{k}"), log_nodes.c.idx == P(f"i{k}")) for k in range(n)))
    )


class Runner:
    """Runs named statements on one connection's DBAPI cursor, counting writes.

    The SQLAlchemy `Connection` owns the transaction (BEGIN, COMMIT); these
    statements run inside it on the same driver connection.

    On PostgreSQL the writer's transaction runs in psycopg's pipeline mode
    (`storage.database` puts the pipeline in `conn.info["pipeline"]`): a
    write is sent without waiting for its answer, and the next read (a fetch)
    brings back every pending answer in one round trip. So writes cost no
    round trip of their own, an error of a write surfaces at the next fetch or
    `sync()`, and `rowcount` needs `count()`, which syncs first. Only these
    cursor-level calls run inside the pipeline, never SQLAlchemy `execute()`
    (its result handling needs the answer at once).
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.pipeline = conn.info.get("pipeline")
        statements = statements_for(conn.dialect)
        self.sql = statements.sql
        self.order = statements.order
        self.cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        self.writes = 0

    def _params(self, name: str, params: Mapping[str, Any]) -> Any:
        order = self.order.get(name)
        return params if order is None else tuple(params[k] for k in order)

    def one(self, name: str, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
        self.cursor.execute(self.sql[name], self._params(name, params))
        row = self.cursor.fetchone()
        return None if row is None else tuple(row)

    def run(self, name: str, params: Mapping[str, Any]) -> None:
        self.writes += 1
        self.cursor.execute(self.sql[name], self._params(name, params))

    def count(self, name: str, params: Mapping[str, Any]) -> int:
        """Run a write and return how many rows it touched (waits for the answer)."""
        self.run(name, params)
        self.sync()
        return int(self.cursor.rowcount)

    def sync(self) -> None:
        """Wait for every pending answer; raise the first error among them."""
        if self.pipeline is not None:
            self.pipeline.sync()

    def nodes(self, ids: Iterable[tuple[int, int]]) -> list[tuple[int, int, bytes]]:
        """Rows of the given log nodes, with one statement compiled once per count."""
        wanted = sorted(ids)
        if not wanted:
            return []
        name = f"nodes_{len(wanted)}"
        sql = self._compiled(name, functools.partial(_nodes_statement, len(wanted)))
        params: dict[str, int] = {}
        for k, (level, idx) in enumerate(wanted):
            params[f"l{k}"] = level
            params[f"i{k}"] = idx
        self.cursor.execute(sql, self._params(name, params))
        return [(int(level), int(idx), bytes(h)) for level, idx, h in self.cursor.fetchall()]

    def all(self, key: str, build: Callable[[], Executable], params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Rows of a query built (and compiled) once per `key`, then run on the cursor.

        For queries whose shape varies (optional filters): the key names the
        shape, every value is a named parameter (limits too), so each call
        costs what a precompiled statement costs, not a SQLAlchemy compile."""
        sql = self._compiled(key, build)
        self.cursor.execute(sql, self._params(key, params))
        return [tuple(r) for r in self.cursor.fetchall()]

    def _compiled(self, key: str, build: Callable[[], Executable]) -> str:
        """The SQL of a statement shape, compiled on first use."""
        sql = self.sql.get(key)
        if sql is None:
            compiled = build().compile(dialect=self.conn.dialect)
            anonymous = [k for k, bind in getattr(compiled, "binds", {}).items() if not bind.required]
            if anonymous:
                raise ValueError(f"query {key} has anonymous parameters {anonymous}")
            sql = self.sql[key] = str(compiled)
            if self.conn.dialect.positional:
                self.order[key] = tuple(getattr(compiled, "positiontup", None) or ())
        return sql

    def many(self, name: str, rows: list[Mapping[str, Any]]) -> None:
        if rows:
            self.writes += 1
            self.cursor.executemany(self.sql[name], [self._params(name, r) for r in rows])
