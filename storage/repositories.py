"""Repositories: rows in, domain objects out.

Fixed statements run precompiled on the DBAPI cursor (`storage.sql`); lists
with optional filters are built with SQLAlchemy Core. Repositories never
commit: the writer (or a read) owns the transaction.

Append-only rows (transfer events, idempotency records) are staged in the
unit of work and written with one `executemany` per table when the batch is
flushed, so a group commit of N commands costs two statements for them, not
2N. Event sequence numbers are assigned here, from the head read inside the
write transaction (which holds the database's write lock), so they are
contiguous and in commit order.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, and_, case, func, literal_column, or_, select

from storage.schema import (
    handoffs,
    idempotency_keys,
    log_cosignatures,
    log_leaves,
    outbox,
    pages,
    peer_bundles,
    records,
    schools,
    signing_tasks,
    teachers,
    transfer_events,
    transfers,
)
from storage.sql import PAGE_COLS, RECORD_COLS, SCHOOL_COLS, TRANSFER_COLS, P, Runner
from transfer.domain.logbook import LogInconsistent
from transfer.domain.model import (
    DeliveryState,
    DeliveryStats,
    DepartureReason,
    Duty,
    DutyKey,
    Handoff,
    HandoffState,
    InboundMessage,
    LockTrack,
    MessageKind,
    OutboxBacklog,
    OutboxMessage,
    OutboxState,
    Page,
    PageState,
    PeerBundle,
    PeerBundleState,
    Record,
    RecordLevel,
    Requirement,
    School,
    SignerRole,
    SigningTask,
    StoredCheckpoint,
    StoredResponse,
    Teacher,
    TeacherStatus,
    Transfer,
    TransferDirection,
    TransferEvent,
    TransferScope,
    TransferState,
)
from transfer.domain.ports import ReadAhead
from transfer.domain.signatures import CertificateInfo
from transfer.ledger.merkle import Frontier, NodeId, leaf_hash, root_from_nodes, root_nodes

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


# A LIMIT given as a parameter makes SQLite's compiler add "OFFSET ?" with an
# anonymous parameter; a literal offset keeps every parameter named.
_NO_OFFSET: ColumnElement[Any] = literal_column("0")


def to_us(instant: datetime) -> int:
    return (instant - EPOCH) // _US


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def _opt_us(instant: datetime | None) -> int | None:
    return None if instant is None else to_us(instant)


def _opt_from_us(us: int | None) -> datetime | None:
    return None if us is None else from_us(us)


def _school(row: Sequence[Any]) -> School:
    code, name, province, active, created, updated = row
    return School(code, name, province, bool(active), from_us(created), from_us(updated))


def _record(row: Sequence[Any]) -> Record:
    code, nid, level, custodian, open_id, created, updated, out, salts = row
    return Record(
        code, nid, RecordLevel(level), custodian, open_id, from_us(created), from_us(updated), bool(out),
        _salts(salts),
    )  # fmt: skip


def _salts(blob: bytes | None) -> tuple[bytes, ...]:
    data = bytes(blob or b"")
    return tuple(data[i : i + 16] for i in range(0, len(data), 16))


def _salts_blob(salts: tuple[bytes, ...]) -> bytes | None:
    """The `page_salts` column of a record's salts (`_salts` reads it back): 16 bytes each, None for none."""
    return b"".join(salts) or None


def _transfer(row: Sequence[Any]) -> Transfer:
    (tid, code, from_school, from_prov, to_school, to_prov, scope, state, reason, created, deadline, decided,
     initiated_by, decided_by, cancel_requested, delivery, delivery_error, salt) = row  # fmt: skip
    return Transfer(
        id=tid,
        lookup_code=code,
        from_school=from_school,
        from_province=from_prov,
        to_school=to_school,
        to_province=to_prov,
        scope=TransferScope(scope),
        state=TransferState(state),
        reason=reason,
        created_at=from_us(created),
        deadline=from_us(deadline),
        decided_at=_opt_from_us(decided),
        initiated_by=initiated_by,
        decided_by=decided_by,
        cancel_requested=bool(cancel_requested),
        delivery=None if delivery is None else DeliveryState(delivery),
        delivery_error=delivery_error,
        salt=b"" if salt is None else bytes(salt),
    )


def _transfer_changes(t: Transfer) -> dict[str, Any]:
    return {
        "id": t.id,
        "state": int(t.state),
        "reason": t.reason,
        "decided_at_us": _opt_us(t.decided_at),
        "decided_by": t.decided_by,
        "cancel_requested": t.cancel_requested,
        "delivery_state": None if t.delivery is None else int(t.delivery),
        "delivery_error": t.delivery_error,
    }


_IN_CHUNK = 64  # keys per statement when reading rows by a list of keys


def _in_statement(cols: Sequence[Any], key: Any, n: int) -> Select[Any]:
    return select(*cols).where(key.in_([P(f"k{i}") for i in range(n)]))


def _remember(
    known: dict[str, Any], db: Runner, name: str, cols: Sequence[Any], keys: Collection[str], make: Callable[..., Any]
) -> None:
    """Read into `known` the rows of `keys` it does not hold yet (None for
    those that do not exist), keyed by the first of `cols`: up to 64 keys a
    statement, each statement shape compiled once."""
    wanted = sorted(k for k in keys if k not in known)
    for start in range(0, len(wanted), _IN_CHUNK):
        chunk = wanted[start : start + _IN_CHUNK]
        build = functools.partial(_in_statement, cols, cols[0], len(chunk))
        rows = db.all(f"{name}_in_{len(chunk)}", build, {f"k{i}": k for i, k in enumerate(chunk)})
        found = {row[0]: make(row) for row in rows}
        for k in chunk:
            known[k] = found.get(k)


# The repositories of the three rows every transfer reads (schools, records,
# transfers) remember what they read in their unit of work, and the writer
# reads those a batch will need in one statement each (`SqlUnitOfWork.read_ahead`).
# Every change of these rows goes through the repository, which forgets the
# row it changes: the next `get` reads it again, inside the same transaction.


class SqlSchools:
    def __init__(self, runner: Runner) -> None:
        self.db = runner
        self.known: dict[str, School | None] = {}

    def get(self, code: str) -> School | None:
        if code in self.known:
            return self.known[code]
        row = self.db.one("school_get", {"code": code})
        school = self.known[code] = None if row is None else _school(row)
        return school

    def prefetch(self, codes: Collection[str]) -> None:
        _remember(self.known, self.db, "schools", SCHOOL_COLS, codes, _school)

    def add(self, s: School) -> None:
        self.known.pop(s.code, None)
        self.db.run(
            "school_insert",
            {
                "code": s.code,
                "name": s.name,
                "province": s.province,
                "active": s.active,
                "created_at_us": to_us(s.created_at),
                "updated_at_us": to_us(s.updated_at),
            },
        )

    def update(self, s: School) -> None:
        self.known.pop(s.code, None)
        self.db.run(
            "school_update", {"code": s.code, "name": s.name, "active": s.active, "updated_at_us": to_us(s.updated_at)}
        )

    def page(self, after_code: str | None, limit: int) -> list[School]:
        def build() -> Select[Any]:
            q = select(*SCHOOL_COLS).order_by(schools.c.code).limit(P("limit")).offset(_NO_OFFSET)
            return q if after_code is None else q.where(schools.c.code > P("after"))

        rows = self.db.all(f"schools_page_{after_code is None}", build, {"after": after_code, "limit": limit})
        return [_school(r) for r in rows]


class SqlRecords:
    def __init__(self, runner: Runner) -> None:
        self.db = runner
        self.known: dict[str, Record | None] = {}

    def get(self, lookup_code: str) -> Record | None:
        if lookup_code in self.known:
            return self.known[lookup_code]
        row = self.db.one("record_get", {"lookup_code": lookup_code})
        record = self.known[lookup_code] = None if row is None else _record(row)
        return record

    def prefetch(self, lookup_codes: Collection[str]) -> None:
        _remember(self.known, self.db, "records", RECORD_COLS, lookup_codes, _record)

    def student_has_record(self, national_id: str, level: int) -> bool:
        return self.student_record(national_id, level) is not None

    def student_record(self, national_id: str, level: int) -> str | None:
        row = self.db.one("record_by_student", {"national_id": national_id, "level": int(level)})
        return None if row is None else str(row[0])

    def add_many(self, rs: list[Record]) -> None:
        for r in rs:
            self.known.pop(r.lookup_code, None)
        self.db.many(
            "record_insert",
            [
                {
                    "lookup_code": r.lookup_code, "national_id": r.national_id, "level": int(r.level),
                    "custodian_school": r.custodian_school, "open_transfer_id": r.open_transfer_id,
                    "created_at_us": to_us(r.created_at), "updated_at_us": to_us(r.updated_at),
                    "transferred_out": r.transferred_out, "page_salts": _salts_blob(r.page_salts),
                }
                for r in rs
            ],
        )  # fmt: skip

    def add(self, r: Record) -> None:
        self.known.pop(r.lookup_code, None)
        self.db.run(
            "record_insert",
            {
                "lookup_code": r.lookup_code,
                "national_id": r.national_id,
                "level": int(r.level),
                "custodian_school": r.custodian_school,
                "open_transfer_id": r.open_transfer_id,
                "created_at_us": to_us(r.created_at),
                "updated_at_us": to_us(r.updated_at),
                "transferred_out": r.transferred_out,
                "page_salts": _salts_blob(r.page_salts),
            },
        )

    def update(self, r: Record) -> None:
        self.known.pop(r.lookup_code, None)
        self.db.run(
            "record_update",
            {
                "lookup_code": r.lookup_code,
                "custodian_school": r.custodian_school,
                "open_transfer_id": r.open_transfer_id,
                "updated_at_us": to_us(r.updated_at),
                "transferred_out": r.transferred_out,
                "page_salts": _salts_blob(r.page_salts),
            },
        )

    def list_by_custodian(self, school: str, after_lookup_code: str | None, limit: int) -> list[Record]:
        def build() -> Select[Any]:
            q = (
                select(*RECORD_COLS)
                .where(records.c.custodian_school == P("school"))
                .order_by(records.c.lookup_code)
                .limit(P("limit"))
                .offset(_NO_OFFSET)
            )
            return q if after_lookup_code is None else q.where(records.c.lookup_code > P("after"))

        params = {"school": school, "after": after_lookup_code, "limit": limit}
        return [_record(r) for r in self.db.all(f"records_page_{after_lookup_code is None}", build, params)]


class SqlTransfers:
    def __init__(self, runner: Runner) -> None:
        self.db = runner
        self.known: dict[str, Transfer | None] = {}

    def get(self, transfer_id: str) -> Transfer | None:
        if transfer_id in self.known:
            return self.known[transfer_id]
        row = self.db.one("transfer_get", {"id": transfer_id})
        transfer = self.known[transfer_id] = None if row is None else _transfer(row)
        return transfer

    def open_of_record(self, lookup_code: str) -> Transfer | None:
        row = self.db.one("transfer_open_of_record", {"lookup_code": lookup_code})
        return None if row is None else _transfer(row)

    def prefetch(self, ids: Collection[str]) -> list[Transfer]:
        """Read these transfers (those not read yet); the ones that exist."""
        _remember(self.known, self.db, "transfers", TRANSFER_COLS, ids, _transfer)
        return [t for t in (self.known[i] for i in ids) if t is not None]

    def add(self, t: Transfer) -> None:
        self.known.pop(t.id, None)
        self.db.run(
            "transfer_insert",
            _transfer_changes(t)
            | {
                "lookup_code": t.lookup_code,
                "from_school": t.from_school,
                "from_province": t.from_province,
                "to_school": t.to_school,
                "to_province": t.to_province,
                "scope": int(t.scope),
                "created_at_us": to_us(t.created_at),
                "deadline_us": to_us(t.deadline),
                "initiated_by": t.initiated_by,
                "salt": t.salt or None,
            },
        )

    def update(self, t: Transfer) -> None:
        self.known.pop(t.id, None)
        self.db.run("transfer_update", _transfer_changes(t))

    def page(
        self,
        school: str,
        province: str,
        direction: TransferDirection,
        states: Sequence[TransferState],
        after_key: int | None,
        limit: int,
    ) -> list[tuple[int, Transfer]]:
        t = transfers.c
        incoming = direction is TransferDirection.INCOMING
        n_states = len(states)

        def build() -> Select[Any]:
            if incoming:
                where = and_(t.to_school == P("school"), t.to_province == P("province"))
            else:
                where = and_(t.from_school == P("school"), t.from_province == P("province"))
            q = select(t.seq, *TRANSFER_COLS).where(where).order_by(t.seq).limit(P("limit")).offset(_NO_OFFSET)
            if n_states:
                q = q.where(t.state.in_([P(f"s{i}") for i in range(n_states)]))
            return q if after_key is None else q.where(t.seq > P("after"))

        params: dict[str, Any] = {"school": school, "province": province, "after": after_key, "limit": limit}
        params |= {f"s{i}": int(s) for i, s in enumerate(states)}
        key = f"transfers_page_{incoming}_{n_states}_{after_key is None}"
        return [(r[0], _transfer(r[1:])) for r in self.db.all(key, build, params)]

    def overdue(self, now: datetime, limit: int, province: str) -> list[Transfer]:
        def build() -> Select[Any]:
            return (
                select(*TRANSFER_COLS)
                .where(
                    transfers.c.state == literal_column(str(int(TransferState.REQUESTED))),
                    transfers.c.deadline_us <= P("now"),
                    # only the decisions this node owns: the receiving node decides inter-province transfers
                    transfers.c.to_province == P("province"),
                )
                .order_by(transfers.c.deadline_us)
                .limit(P("limit"))
                .offset(_NO_OFFSET)
            )

        params = {"now": to_us(now), "province": province, "limit": limit}
        return [_transfer(r) for r in self.db.all("transfers_overdue", build, params)]


class SqlEvents:
    def __init__(self, runner: Runner) -> None:
        self.db = runner
        self._next_seq: int | None = None
        self.staged: list[Mapping[str, Any]] = []

    def append(self, event: TransferEvent) -> int:
        if self._next_seq is None:
            head = self.db.one("event_head", {})
            self._next_seq = int(head[0]) + 1 if head else 1
        seq = self._next_seq
        self._next_seq += 1
        t = event.transfer
        self.staged.append(
            {
                "seq": seq,
                "transfer_id": t.id,
                "from_school": t.from_school,
                "to_school": t.to_school,
                "state": int(t.state),
                "reason": t.reason,
                "decided_by": t.decided_by,
                "occurred_at_us": to_us(event.occurred_at),
            }
        )
        return seq

    def after(self, school: str, province: str, after_seq: int, limit: int) -> list[TransferEvent]:
        e = transfer_events

        def build() -> Select[Any]:
            return (
                select(e.c.seq, e.c.state, e.c.reason, e.c.decided_by, e.c.occurred_at_us, *TRANSFER_COLS)
                .join(transfers, transfers.c.id == e.c.transfer_id)
                .where(
                    or_(
                        and_(e.c.from_school == P("school"), transfers.c.from_province == P("province")),
                        and_(e.c.to_school == P("school"), transfers.c.to_province == P("province")),
                    ),
                    e.c.seq > P("after"),
                )
                .order_by(e.c.seq)
                .limit(P("limit"))
                .offset(_NO_OFFSET)
            )

        params = {"school": school, "province": province, "after": after_seq, "limit": limit}
        out = []
        for r in self.db.all("events_after", build, params):
            seq, state_value, reason, decided_by, occurred_us = r[:5]
            state = TransferState(state_value)
            occurred = from_us(occurred_us)
            # The transfer as it was right after this event.
            snapshot = replace(
                _transfer(r[5:]),
                state=state,
                reason=reason,
                decided_at=None if state is TransferState.REQUESTED else occurred,
                decided_by=decided_by,
            )
            out.append(TransferEvent(seq, snapshot, occurred))
        return out

    def at(self, seq: int) -> tuple[str, TransferState, datetime] | None:
        row = self.db.one("event_at", {"seq": seq})
        return None if row is None else (row[0], TransferState(row[1]), from_us(row[2]))

    def flush(self) -> None:
        self.db.many("event_insert", self.staged)
        self.staged = []


def _idempotency_batch(n: int) -> Select[Any]:
    """The stored answers of n requests, parameters p0, r0, p1, r1, ... (principal, request_id)."""
    k = idempotency_keys
    return select(k.c.principal, k.c.request_id, k.c.fingerprint, k.c.response).where(
        or_(*(and_(k.c.principal == P(f"p{i}"), k.c.request_id == P(f"r{i}")) for i in range(n)))
    )


class SqlIdempotency:
    def __init__(self, runner: Runner) -> None:
        self.db = runner
        self.staged: dict[tuple[str, str], Mapping[str, Any]] = {}
        # (principal, request_id) -> stored answer or None, read for a whole batch at once
        self.known: dict[tuple[str, str], StoredResponse | None] = {}

    def prefetch(self, keys: list[tuple[str, str]]) -> None:
        """Read the stored answers of many requests in one statement (the writer's batch).

        `get` then answers these keys from memory: one query per batch instead
        of one per command (on PostgreSQL, one round trip instead of many)."""
        wanted = sorted(set(keys) - self.known.keys())
        for start in range(0, len(wanted), 64):
            chunk = wanted[start : start + 64]
            n = len(chunk)
            params: dict[str, str] = {}
            for i, (principal, request_id) in enumerate(chunk):
                params[f"p{i}"] = principal
                params[f"r{i}"] = request_id
            rows = self.db.all(f"idempotency_batch_{n}", functools.partial(_idempotency_batch, n), params)
            found = {(r[0], r[1]): StoredResponse(bytes(r[2]), bytes(r[3])) for r in rows}
            for key in chunk:
                self.known[key] = found.get(key)

    def get(self, principal: str, request_id: str) -> StoredResponse | None:
        staged = self.staged.get((principal, request_id))
        if staged is not None:
            return StoredResponse(staged["fingerprint"], staged["response"])
        key = (principal, request_id)
        if key in self.known:
            return self.known[key]
        row = self.db.one("idempotency_get", {"principal": principal, "request_id": request_id})
        return None if row is None else StoredResponse(bytes(row[0]), bytes(row[1]))

    def put(self, principal: str, request_id: str, stored: StoredResponse, created_at: datetime) -> None:
        self.staged[(principal, request_id)] = {
            "principal": principal,
            "request_id": request_id,
            "fingerprint": stored.fingerprint,
            "response": stored.response,
            "created_at_us": to_us(created_at),
        }

    def prune(self, older_than: datetime, limit: int) -> int:
        k = idempotency_keys

        def build() -> Select[Any]:
            return (
                select(k.c.principal, k.c.request_id)
                .where(k.c.created_at_us < P("older_than_us"))
                .limit(P("limit"))
                .offset(_NO_OFFSET)
            )

        rows = self.db.all("idempotency_expired", build, {"older_than_us": to_us(older_than), "limit": limit})
        for principal, request_id in rows:
            self.db.run("idempotency_delete", {"principal": principal, "request_id": request_id})
            self.known.pop((principal, request_id), None)  # a later command of the batch must not see it
        return len(rows)

    def flush(self) -> None:
        self.db.many("idempotency_insert", list(self.staged.values()))
        self.staged = {}


class LogState:
    """The writer's memory of the committed log: its frontier (compact range).

    It is only a cache: every write transaction compares it with the head it
    reads under the write lock and reloads it (O(log n) rows) when another
    process appended meanwhile. It also remembers the largest checkpoint this
    node is known to have signed (at start-up, and each one it stores): a head
    below that, or below the frontier it committed, means entries it signed or
    acknowledged are gone, and nothing may be appended at their positions.
    """

    def __init__(self) -> None:
        self.frontier: Frontier | None = None
        self.signed: StoredCheckpoint | None = None
        self.last: tuple[int, bytes] | None = None  # (size, the entry at size - 1) as last committed

    def signed_at_least(self, checkpoint: StoredCheckpoint) -> None:
        if self.signed is None or checkpoint.size > self.signed.size:
            self.signed = checkpoint


class SqlLog:
    def __init__(self, runner: Runner, state: LogState | None) -> None:
        self.db = runner
        self.state = state
        self.staged: list[bytes] = []
        self._head: int | None = None
        self._frontier: Frontier | None = None  # working copy for this transaction

    def _committed_size(self) -> int:
        if self._head is None:
            row = self.db.one("log_head", {})
            self._head = int(row[0]) if row else 0
        return self._head

    def _working_frontier(self) -> Frontier:
        if self._frontier is None:
            size = self._committed_size()
            cached = self.state.frontier if self.state is not None else None
            if self.state is not None:
                self._refuse_lost_entries(size, cached)
            if cached is None or cached.size != size:
                cached = Frontier.from_nodes(size, self.nodes(root_nodes(size)))
            self._frontier = cached.copy()
        return self._frontier

    def _refuse_lost_entries(self, size: int, cached: Frontier | None) -> None:
        """Appending at `size` would give new entries positions that a signed checkpoint, or a receipt
        this writer handed out, already gave others (the database lost its tail: a restore, a failover
        to a replica that was behind, rows deleted behind the node's back)."""
        assert self.state is not None
        signed = self.state.signed
        if signed is not None and size < signed.size:
            before = f"checkpoint {signed.size} was signed"
        elif cached is not None and size < cached.size:
            before = f"this node committed {cached.size}"
        else:
            return
        raise LogInconsistent.shrank(
            size,
            self._root_or_none(size),
            before,
            signed_size=signed.size if signed is not None else 0,
            signed_root=signed.root if signed is not None else None,
        )

    def _root_or_none(self, size: int) -> bytes | None:
        try:
            return root_from_nodes(size, self.nodes(root_nodes(size)))
        except ValueError:  # rows missing too (MerkleError is one)
            return None

    def append(self, leaf: bytes) -> int:
        index = self._working_frontier().size + len(self.staged)
        self.staged.append(leaf)
        return index

    def last_leaf(self) -> bytes | None:
        if self.staged:
            return self.staged[-1]
        size = self._committed_size()
        if size == 0:
            return None
        cached = self.state.last if self.state is not None else None
        if cached is not None and cached[0] == size:
            return cached[1]
        found = self.leaves(size - 1, size)
        return found[0] if found else None

    def size(self) -> int:
        return self._committed_size() + len(self.staged)

    def committed_size(self) -> int:
        return self._committed_size()

    def leaves(self, start: int, end: int) -> list[bytes]:
        def build() -> Select[Any]:
            return (
                select(log_leaves.c.data)
                .where(log_leaves.c.idx >= P("start"), log_leaves.c.idx < P("end"))
                .order_by(log_leaves.c.idx)
            )

        return [bytes(r[0]) for r in self.db.all("log_leaves_range", build, {"start": start, "end": end})]

    def nodes(self, ids: Collection[NodeId]) -> dict[NodeId, bytes]:
        if not ids:
            return {}
        return {(level, idx): h for level, idx, h in self.db.nodes(ids)}

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        row = self.db.one("checkpoint_latest", {})
        found = None if row is None else _checkpoint(row)
        if found is not None and self.state is not None:  # committed, read under the write lock
            self.state.signed_at_least(found)
        return found

    def checkpoint_covering(self, index: int) -> StoredCheckpoint | None:
        row = self.db.one("checkpoint_covering", {"index": index})
        return None if row is None else _checkpoint(row)

    def checkpoint(self, size: int) -> StoredCheckpoint | None:
        row = self.db.one("checkpoint_at", {"size": size})
        return None if row is None else _checkpoint(row)

    def add_checkpoint(self, checkpoint: StoredCheckpoint) -> None:
        if self.state is not None:  # signed already: remembered even should this transaction fail
            self.state.signed_at_least(checkpoint)
        self.db.run(
            "checkpoint_insert",
            {
                "size": checkpoint.size,
                "root": checkpoint.root,
                "note": checkpoint.note,
                "created_at_us": to_us(checkpoint.created_at),
            },
        )

    def cosignatures(self, size: int) -> list[str]:
        def build() -> Select[Any]:
            return (
                select(log_cosignatures.c.line)
                .where(log_cosignatures.c.size == P("size"))
                .order_by(log_cosignatures.c.witness, log_cosignatures.c.key_id)
            )

        return [str(r[0]) for r in self.db.all("cosignatures_at", build, {"size": size})]

    def cosigned_sizes(self, limit: int) -> list[int]:
        def build() -> Select[Any]:
            return (
                select(log_cosignatures.c.size)
                .distinct()
                .order_by(log_cosignatures.c.size.desc())
                .limit(P("limit"))
                .offset(_NO_OFFSET)
            )

        return [int(r[0]) for r in self.db.all("cosigned_sizes", build, {"limit": limit})]

    def add_cosignature(self, size: int, witness: str, key_id: bytes, line: str, received_at: datetime) -> bool:
        key = {"size": size, "witness": witness, "key_id": key_id}
        if self.db.one("cosignature_get", key) is not None:
            return False
        self.db.run("cosignature_insert", {**key, "line": line, "received_at_us": to_us(received_at)})
        return True

    def flush(self) -> Callable[[], None] | None:
        """Hash and write the staged leaves and the subtrees they complete.

        Returns what to do once the transaction committed (install the new
        frontier in the writer's cache), or None when nothing was staged.
        """
        if not self.staged:
            return None
        frontier = self._working_frontier()
        leaf_rows: list[Mapping[str, Any]] = []
        node_rows: list[Mapping[str, Any]] = []
        for data in self.staged:
            leaf_rows.append({"idx": frontier.size, "data": data})
            for (level, idx), h in frontier.append(leaf_hash(data)):
                node_rows.append({"level": level, "idx": idx, "hash": h})
        self.db.many("log_leaf_insert", leaf_rows)
        self.db.many("log_node_insert", node_rows)
        last = (frontier.size, self.staged[-1])
        self.staged = []
        state = self.state

        def install() -> None:
            if state is not None:
                state.frontier = frontier
                state.last = last

        return install


def _checkpoint(row: Sequence[Any]) -> StoredCheckpoint:
    size, root, note, created = row
    return StoredCheckpoint(int(size), bytes(root), note, from_us(created))


# -- teachers, duties, pages, tasks, handoffs ------------------------------------

_EPOCH_DATE = date(1970, 1, 1)


def _chain_bytes(chain: Sequence[bytes]) -> bytes:
    return b"".join(len(c).to_bytes(4, "big") + c for c in chain)


def _chain_parts(blob: bytes) -> tuple[bytes, ...]:
    out, pos = [], 0
    while pos < len(blob):
        n = int.from_bytes(blob[pos : pos + 4], "big")
        out.append(bytes(blob[pos + 4 : pos + 4 + n]))
        pos += 4 + n
    return tuple(out)


def _teacher(row: Sequence[Any]) -> Teacher:
    tid, school, code, name, status, created, updated = row
    return Teacher(tid, school, code, name, TeacherStatus(status), from_us(created), from_us(updated))


def _duty(row: Sequence[Any]) -> Duty:
    school, role, year, klass, subject, holder, updated = row
    return Duty(school, DutyKey(SignerRole(role), year, klass, subject), holder, from_us(updated))


def _page(row: Sequence[Any]) -> Page:
    (pid, code, school, year, segment, grade, klass, media, sha, size, version, digest, state, track, created,
     updated, locked, province) = row  # fmt: skip
    return Page(
        pid, code, school, year, segment, int(grade), klass, media, bytes(sha), int(size), int(version), bytes(digest),
        PageState(state), LockTrack(track), from_us(created), from_us(updated), _opt_from_us(locked), province,
    )  # fmt: skip


def _task(row: Sequence[Any]) -> SigningTask:
    page_id, _, role, subject, _school, duty_key, assignee, signed_by, signature, cert, signed_at = row
    return SigningTask(
        page_id, Requirement(SignerRole(role), subject), DutyKey.parse(duty_key), assignee, signed_by,
        None if signature is None else bytes(signature), cert, _opt_from_us(signed_at),
    )  # fmt: skip


def _handoff(row: Sequence[Any]) -> Handoff:
    (hid, school, teacher, reason, effective, end, replacement, duties_json, state, created_by, created, applied,
     ended, moved, salt) = row  # fmt: skip
    pairs = tuple((DutyKey.parse(k), t) for k, t in json.loads(duties_json))
    return Handoff(
        hid, school, teacher, DepartureReason(reason), _EPOCH_DATE + timedelta(days=effective),
        None if end is None else _EPOCH_DATE + timedelta(days=end), replacement, pairs, HandoffState(state),
        created_by, from_us(created), _opt_from_us(applied), _opt_from_us(ended), int(moved),
        b"" if salt is None else bytes(salt),
    )  # fmt: skip


def _day(d: date) -> int:
    return (d - _EPOCH_DATE).days


class SqlTeachers:
    def __init__(self, runner: Runner) -> None:
        self.db = runner

    def get(self, teacher_id: str) -> Teacher | None:
        row = self.db.one("teacher_get", {"id": teacher_id})
        return None if row is None else _teacher(row)

    def by_code(self, school: str, code: str) -> Teacher | None:
        row = self.db.one("teacher_by_code", {"school": school, "code": code})
        return None if row is None else _teacher(row)

    def add(self, t: Teacher) -> None:
        self.db.run(
            "teacher_insert",
            {
                "id": t.id, "school": t.school, "code": t.code, "name": t.name, "status": int(t.status),
                "created_at_us": to_us(t.created_at), "updated_at_us": to_us(t.updated_at),
            },
        )  # fmt: skip

    def update(self, t: Teacher) -> None:
        self.db.run(
            "teacher_update",
            {"id": t.id, "name": t.name, "status": int(t.status), "updated_at_us": to_us(t.updated_at)},
        )

    def page(self, school: str, after_code: str | None, limit: int) -> list[Teacher]:
        def build() -> Select[Any]:
            q = (
                select(*teachers.c)
                .where(teachers.c.school == P("school"))
                .order_by(teachers.c.code)
                .limit(P("limit"))
                .offset(_NO_OFFSET)
            )
            return q if after_code is None else q.where(teachers.c.code > P("after"))

        params = {"school": school, "after": after_code, "limit": limit}
        return [_teacher(r) for r in self.db.all(f"teachers_page_{after_code is None}", build, params)]

    def certificates(self, teacher_id: str) -> list[CertificateInfo]:
        self.db.cursor.execute(
            self.db.sql["certs_of_teacher"], self.db._params("certs_of_teacher", {"teacher_id": teacher_id})
        )
        return [
            CertificateInfo(sha, bytes(der), kind, from_us(nb), from_us(na), _chain_parts(bytes(chain)))
            for sha, der, chain, kind, nb, na in self.db.cursor.fetchall()
        ]

    def add_certificate(self, teacher_id: str, c: CertificateInfo, added_at: datetime) -> None:
        self.db.run(
            "cert_insert",
            {
                "teacher_id": teacher_id, "sha256": c.sha256, "der": c.der, "chain": _chain_bytes(c.chain),
                "key_type": c.key_type, "not_before_us": to_us(c.not_before), "not_after_us": to_us(c.not_after),
                "added_at_us": to_us(added_at),
            },
        )  # fmt: skip


class SqlDuties:
    def __init__(self, runner: Runner) -> None:
        self.db = runner

    def get(self, school: str, key: DutyKey) -> Duty | None:
        row = self.db.one("duty_get", {"school": school, "duty_key": str(key)})
        return None if row is None else _duty(row)

    def put(self, d: Duty) -> None:
        params = {"school": d.school, "duty_key": str(d.key), "holder": d.holder, "updated_at_us": to_us(d.updated_at)}
        if self.db.count("duty_update", params) == 0:
            self.db.run(
                "duty_insert",
                params
                | {"role": int(d.key.role), "school_year": d.key.school_year, "class_name": d.key.class_name,
                   "subject": d.key.subject},
            )  # fmt: skip

    def _all(self, name: str, params: Mapping[str, Any]) -> list[Duty]:
        self.db.cursor.execute(self.db.sql[name], self.db._params(name, params))
        return [_duty(r) for r in self.db.cursor.fetchall()]

    def held_by(self, teacher_id: str) -> list[Duty]:
        return self._all("duties_held_by", {"holder": teacher_id})

    def of_school(self, school: str) -> list[Duty]:
        return self._all("duties_of_school", {"school": school})


class SqlPages:
    def __init__(self, runner: Runner) -> None:
        self.db = runner

    def get(self, page_id: str) -> Page | None:
        row = self.db.one("page_get", {"id": page_id})
        return None if row is None else _page(row)

    def find(self, lookup_code: str, school_year: str, segment: str) -> Page | None:
        row = self.db.one("page_find", {"lookup_code": lookup_code, "school_year": school_year, "segment": segment})
        return None if row is None else _page(row)

    @staticmethod
    def _values(p: Page) -> dict[str, Any]:
        return {
            "id": p.id, "media_type": p.media_type, "payload_sha256": p.payload_sha256, "payload_size": p.payload_size,
            "version": p.version, "digest": p.digest, "state": int(p.state), "updated_at_us": to_us(p.updated_at),
            "locked_at_us": _opt_us(p.locked_at),
        }  # fmt: skip

    @staticmethod
    def _all_values(p: Page, payload: bytes, lock_due: datetime) -> dict[str, Any]:
        return SqlPages._values(p) | {
            "lookup_code": p.lookup_code, "issuing_school": p.issuing_school, "school_year": p.school_year,
            "segment": p.segment, "grade": p.grade, "class_name": p.class_name, "payload": payload,
            "lock_track": int(p.lock_track), "lock_due_us": to_us(lock_due), "created_at_us": to_us(p.created_at),
            "issuing_province": p.issuing_province,
        }  # fmt: skip

    def add(self, p: Page, payload: bytes, lock_due: datetime) -> None:
        self.db.run("page_insert", self._all_values(p, payload, lock_due))

    def upsert(self, p: Page, payload: bytes, lock_due: datetime) -> None:
        if self.get(p.id) is None:
            self.add(p, payload, lock_due)
        else:
            self.update(p, payload)

    def update(self, p: Page, payload: bytes | None = None) -> None:
        self.db.run("page_update", self._values(p))
        if payload is not None:
            self.db.run("page_set_payload", {"id": p.id, "payload": payload})

    def payload(self, page_id: str) -> bytes:
        row = self.db.one("page_payload", {"id": page_id})
        return b"" if row is None else bytes(row[0])

    def lock_due(self, page_id: str) -> datetime:
        row = self.db.one("page_lock_due", {"id": page_id})
        assert row is not None
        return from_us(row[0])

    def of_record(
        self, lookup_code: str, issuer: tuple[str, str] | None, after_id: str | None, limit: int
    ) -> list[Page]:
        def build() -> Select[Any]:
            q = (
                select(*PAGE_COLS)
                .where(pages.c.lookup_code == P("code"))
                .order_by(pages.c.id)
                .limit(P("limit"))
                .offset(_NO_OFFSET)
            )
            if issuer is not None:
                q = q.where(pages.c.issuing_province == P("province"), pages.c.issuing_school == P("school"))
            return q if after_id is None else q.where(pages.c.id > P("after"))

        params = {
            "code": lookup_code, "province": issuer[0] if issuer else None, "school": issuer[1] if issuer else None,
            "after": after_id, "limit": limit,
        }  # fmt: skip
        key = f"pages_of_record_{issuer is None}_{after_id is None}"
        return [_page(r) for r in self.db.all(key, build, params)]

    def due_for_lock(self, now: datetime, limit: int) -> list[Page]:
        def build() -> Select[Any]:
            return (
                select(*PAGE_COLS)
                .where(pages.c.state == literal_column(str(int(PageState.SIGNED))), pages.c.lock_due_us <= P("now"))
                .order_by(pages.c.lock_due_us)
                .limit(P("limit"))
                .offset(_NO_OFFSET)
            )

        return [_page(r) for r in self.db.all("pages_due_for_lock", build, {"now": to_us(now), "limit": limit})]


class SqlTasks:
    def __init__(self, runner: Runner) -> None:
        self.db = runner

    def of_page(self, page_id: str) -> list[SigningTask]:
        self.db.cursor.execute(self.db.sql["tasks_of_page"], self.db._params("tasks_of_page", {"page_id": page_id}))
        return [_task(r) for r in self.db.cursor.fetchall()]

    @staticmethod
    def _values(t: SigningTask) -> dict[str, Any]:
        return {
            "page_id": t.page_id, "requirement": str(t.requirement), "assignee": t.assignee, "signed_by": t.signed_by,
            "signature": t.signature, "certificate_sha256": t.certificate_sha256, "signed_at_us": _opt_us(t.signed_at),
        }  # fmt: skip

    def add(self, school: str, tasks: Sequence[SigningTask]) -> None:
        self.db.many(
            "task_insert",
            [
                self._values(t)
                | {
                    "role": int(t.requirement.role),
                    "subject": t.requirement.subject,
                    "school": school,
                    "duty_key": str(t.duty),
                }
                for t in tasks
            ],
        )

    def update(self, t: SigningTask) -> None:
        self.db.run("task_update", self._values(t))

    def replace_all(self, page_id: str, school: str, tasks: Sequence[SigningTask]) -> None:
        self.db.run("page_delete_tasks", {"page_id": page_id})
        self.add(school, tasks)

    def last_signed_by(self, teacher_id: str, since: datetime, until: datetime | None) -> datetime | None:
        params = {
            "teacher_id": teacher_id,
            "since_us": to_us(since),
            "until_us": 2**62 if until is None else to_us(until),
        }
        row = self.db.one("task_last_signed_by", params)
        return None if row is None or row[0] is None else from_us(int(row[0]))

    def reassign(self, tasks: Sequence[SigningTask], assignee: str) -> None:
        self.db.many(
            "task_reassign",
            [{"page_id": t.page_id, "requirement": str(t.requirement), "assignee": assignee} for t in tasks],
        )

    def pending_for(self, teacher_id: str, after: tuple[str, str] | None, limit: int) -> list[SigningTask]:
        t = signing_tasks

        def build() -> Select[Any]:
            q = (
                select(*t.c)
                .where(t.c.assignee == P("teacher"), t.c.signed_by.is_(None))
                .order_by(t.c.page_id, t.c.requirement)
                .limit(P("limit"))
                .offset(_NO_OFFSET)
            )
            if after is None:
                return q
            return q.where(or_(t.c.page_id > P("page"), and_(t.c.page_id == P("page"), t.c.requirement > P("req"))))

        params = {"teacher": teacher_id, "page": after[0] if after else None, "req": after[1] if after else None,
                  "limit": limit}  # fmt: skip
        return [_task(r) for r in self.db.all(f"tasks_pending_for_{after is None}", build, params)]

    def pending_of_duty(self, school: str, duty: DutyKey) -> list[SigningTask]:
        t = signing_tasks

        def build() -> Select[Any]:
            return select(*t.c).where(t.c.school == P("school"), t.c.duty_key == P("duty"), t.c.signed_by.is_(None))

        return [_task(r) for r in self.db.all("tasks_of_duty", build, {"school": school, "duty": str(duty)})]


class SqlHandoffs:
    def __init__(self, runner: Runner) -> None:
        self.db = runner

    @staticmethod
    def _values(h: Handoff) -> dict[str, Any]:
        return {
            "id": h.id, "duties_json": json.dumps([[str(k), t] for k, t in h.duties]), "state": int(h.state),
            "applied_at_us": _opt_us(h.applied_at), "ended_at_us": _opt_us(h.ended_at), "moved_tasks": h.moved_tasks,
        }  # fmt: skip

    def get(self, handoff_id: str) -> Handoff | None:
        row = self.db.one("handoff_get", {"id": handoff_id})
        return None if row is None else _handoff(row)

    def add(self, h: Handoff) -> None:
        self.db.run(
            "handoff_insert",
            self._values(h)
            | {
                "school": h.school, "teacher_id": h.teacher_id, "reason": int(h.reason),
                "effective_day": _day(h.effective_date), "end_day": None if h.end_date is None else _day(h.end_date),
                "replacement": h.replacement, "created_by": h.created_by, "created_at_us": to_us(h.created_at),
                "salt": h.salt or None,
            },
        )  # fmt: skip

    def update(self, h: Handoff) -> None:
        self.db.run("handoff_update", self._values(h))

    def open_for(self, teacher_id: str) -> list[Handoff]:
        self.db.cursor.execute(
            self.db.sql["handoffs_open_for"], self.db._params("handoffs_open_for", {"teacher_id": teacher_id})
        )
        return [_handoff(r) for r in self.db.cursor.fetchall()]

    def scheduled_in_school(self, school: str) -> list[Handoff]:
        h = handoffs

        def build() -> Select[Any]:
            return (
                select(*h.c)
                .where(h.c.school == P("school"), h.c.state == literal_column(str(int(HandoffState.SCHEDULED))))
                .order_by(h.c.created_at_us, h.c.id)
            )

        return [_handoff(r) for r in self.db.all("handoffs_scheduled_in_school", build, {"school": school})]

    def due(self, today: date, limit: int, after: tuple[datetime, str] | None = None) -> list[Handoff]:
        h = handoffs

        def build() -> Select[Any]:
            q = (
                select(*h.c)
                .where(
                    or_(
                        and_(
                            h.c.state == literal_column(str(int(HandoffState.SCHEDULED))),
                            h.c.effective_day <= P("day"),
                        ),
                        and_(h.c.state == literal_column(str(int(HandoffState.IN_FORCE))), h.c.end_day <= P("day")),
                    )
                )
                .order_by(h.c.created_at_us, h.c.id)
                .limit(P("limit"))
                .offset(_NO_OFFSET)
            )
            if after is None:
                return q
            return q.where(or_(h.c.created_at_us > P("us"), and_(h.c.created_at_us == P("us"), h.c.id > P("hid"))))

        params: dict[str, Any] = {"day": _day(today), "limit": limit}
        if after is not None:
            params |= {"us": to_us(after[0]), "hid": after[1]}
        rows = self.db.all(f"handoffs_due_{after is None}", build, params)
        return [_handoff(r) for r in rows]

    def page(self, school: str, teacher_id: str | None, after_key: str | None, limit: int) -> list[Handoff]:
        h = handoffs
        us, hid = None, None
        if after_key is not None:
            us_text, _, hid = after_key.partition(":")
            us = int(us_text)

        def build() -> Select[Any]:
            q = (
                select(*h.c)
                .where(h.c.school == P("school"))
                .order_by(h.c.created_at_us, h.c.id)
                .limit(P("limit"))
                .offset(_NO_OFFSET)
            )
            if teacher_id is not None:
                q = q.where(h.c.teacher_id == P("teacher"))
            if after_key is None:
                return q
            return q.where(or_(h.c.created_at_us > P("us"), and_(h.c.created_at_us == P("us"), h.c.id > P("hid"))))

        params = {"school": school, "teacher": teacher_id, "us": us, "hid": hid, "limit": limit}
        key = f"handoffs_page_{teacher_id is None}_{after_key is None}"
        return [_handoff(r) for r in self.db.all(key, build, params)]


def _outbox(row: Sequence[Any]) -> OutboxMessage:
    mid, tid, peer, kind, payload, state, attempts, next_us, error, created, delivered, receipt, trace_id = row
    return OutboxMessage(
        int(mid), tid, peer, MessageKind(kind), bytes(payload), OutboxState(state), int(attempts), from_us(next_us),
        error, from_us(created), _opt_from_us(delivered), None if receipt is None else bytes(receipt), trace_id,
    )  # fmt: skip


def _skipped(peers: Collection[str]) -> tuple[list[str], dict[str, str]]:
    """The peers to leave out, in a fixed order, and their bind parameters (skip0, skip1, …)."""
    skip = sorted(set(peers))
    return skip, {f"skip{i}": p for i, p in enumerate(skip)}


def _sendable(skip_peers: Sequence[str] = ()) -> tuple[ColumnElement[bool], ...]:
    """PENDING outbox messages with no earlier PENDING message of the same
    transfer, for none of `skip_peers` (bound as skip0, skip1, …)."""
    earlier = outbox.alias("earlier")
    pending: ColumnElement[Any] = literal_column(str(int(OutboxState.PENDING)))
    blocked = (
        select(earlier.c.id)
        .where(earlier.c.transfer_id == outbox.c.transfer_id, earlier.c.id < outbox.c.id, earlier.c.state == pending)
        .exists()
    )
    conditions: list[ColumnElement[bool]] = [outbox.c.state == pending, ~blocked]
    if skip_peers:
        conditions.append(outbox.c.peer.not_in([P(f"skip{i}") for i in range(len(skip_peers))]))
    return tuple(conditions)


class SqlOutbox:
    def __init__(self, runner: Runner) -> None:
        self.db = runner

    def add(self, m: OutboxMessage) -> None:
        self.db.run(
            "outbox_insert",
            {
                "transfer_id": m.transfer_id, "peer": m.peer, "kind": int(m.kind), "payload": m.payload,
                "state": int(m.state), "attempts": m.attempts, "next_attempt_us": to_us(m.next_attempt_at),
                "last_error": m.last_error, "created_at_us": to_us(m.created_at),
                "delivered_at_us": _opt_us(m.delivered_at), "receipt": m.receipt, "trace_id": m.trace_id,
            },
        )  # fmt: skip

    def get(self, message_id: int) -> OutboxMessage | None:
        row = self.db.one("outbox_get", {"id": message_id})
        return None if row is None else _outbox(row)

    def update(self, m: OutboxMessage) -> None:
        self.db.run(
            "outbox_update",
            {
                "id": m.id, "state": int(m.state), "attempts": m.attempts, "next_attempt_us": to_us(m.next_attempt_at),
                "last_error": m.last_error, "delivered_at_us": _opt_us(m.delivered_at), "receipt": m.receipt,
            },
        )  # fmt: skip

    def bring_forward(self, peer: str, now: datetime) -> None:
        self.db.run("outbox_bring_forward", {"peer": peer, "now": to_us(now)})

    def due(self, now: datetime, limit: int, skip_peers: Collection[str] = ()) -> list[OutboxMessage]:
        skip, skip_params = _skipped(skip_peers)

        def build() -> Select[Any]:
            return (
                select(*outbox.c)
                .where(*_sendable(skip), outbox.c.next_attempt_us <= P("now"))
                .order_by(outbox.c.next_attempt_us, outbox.c.id)
                .limit(P("limit"))
                .offset(_NO_OFFSET)
            )

        params = {"now": to_us(now), "limit": limit} | skip_params
        return [_outbox(r) for r in self.db.all(f"outbox_due_{len(skip)}", build, params)]

    def pending_of(self, transfer_id: str) -> list[OutboxMessage]:
        def build() -> Select[Any]:
            o = outbox
            pending: ColumnElement[Any] = literal_column(str(int(OutboxState.PENDING)))
            return select(*o.c).where(o.c.transfer_id == P("transfer_id"), o.c.state == pending).order_by(o.c.id)

        return [_outbox(r) for r in self.db.all("outbox_pending_of", build, {"transfer_id": transfer_id})]

    def delivered_of(self, transfer_id: str) -> list[OutboxMessage]:
        def build() -> Select[Any]:
            o = outbox
            delivered: ColumnElement[Any] = literal_column(str(int(OutboxState.DELIVERED)))
            return select(*o.c).where(o.c.transfer_id == P("transfer_id"), o.c.state == delivered).order_by(o.c.id)

        return [_outbox(r) for r in self.db.all("outbox_delivered_of", build, {"transfer_id": transfer_id})]

    def next_attempt(self, skip_peers: Collection[str] = ()) -> datetime | None:
        # Over the messages `due` may return: one waiting behind an earlier
        # message of its transfer is not due before that one is delivered.
        skip, skip_params = _skipped(skip_peers)
        rows = self.db.all(
            f"outbox_next_{len(skip)}",
            lambda: select(func.min(outbox.c.next_attempt_us)).where(*_sendable(skip)),
            skip_params,
        )
        return None if not rows or rows[0][0] is None else from_us(rows[0][0])

    def stats(self) -> list[DeliveryStats]:
        o = outbox
        one: ColumnElement[Any] = literal_column("1")
        zero: ColumnElement[Any] = literal_column("0")

        def state_is(state: OutboxState) -> ColumnElement[bool]:
            return o.c.state == literal_column(str(int(state)))

        def counts() -> Select[Any]:
            pending = state_is(OutboxState.PENDING)
            return (
                select(
                    o.c.peer,
                    func.sum(case((pending, one), else_=zero)),
                    func.sum(case((state_is(OutboxState.FAILED), one), else_=zero)),
                    func.sum(case((state_is(OutboxState.DELIVERED), one), else_=zero)),
                    func.min(case((pending, o.c.created_at_us), else_=literal_column("NULL"))),
                    func.max(case((pending, o.c.attempts), else_=zero)),
                )
                .group_by(o.c.peer)
                .order_by(o.c.peer)
            )

        def last_error() -> Select[Any]:
            return (
                select(o.c.last_error)
                .where(o.c.peer == P("peer"), o.c.last_error != literal_column("''"))
                .order_by(o.c.id.desc())
                .limit(P("limit"))
                .offset(_NO_OFFSET)
            )

        out = []
        for peer, n_pending, n_failed, n_done, oldest, attempts in self.db.all("outbox_stats", counts, {}):
            rows = self.db.all("outbox_last_error", last_error, {"peer": peer, "limit": 1})
            last = rows[0][0] if rows else ""
            out.append(
                DeliveryStats(
                    peer,
                    int(n_pending or 0),
                    int(n_failed or 0),
                    int(n_done or 0),
                    _opt_from_us(oldest),
                    int(attempts or 0),
                    last or "",
                )
            )
        return out

    def backlog(self) -> list[OutboxBacklog]:
        # The filter on state uses ix_outbox_state_due: delivered messages, most of the table, are not read.
        o = outbox
        pending: ColumnElement[Any] = literal_column(str(int(OutboxState.PENDING)))
        failed: ColumnElement[Any] = literal_column(str(int(OutboxState.FAILED)))

        def build() -> Select[Any]:
            return (
                select(o.c.peer, o.c.state, func.count(), func.min(o.c.created_at_us), func.max(o.c.attempts))
                .where(o.c.state.in_([pending, failed]))
                .group_by(o.c.peer, o.c.state)
                .order_by(o.c.peer)
            )

        found: dict[str, OutboxBacklog] = {}
        for peer, state, count, oldest, attempts in self.db.all("outbox_backlog", build, {}):
            seen = found.get(peer) or OutboxBacklog(peer, 0, 0, None, 0)
            if int(state) == OutboxState.PENDING:
                seen = replace(
                    seen, pending=int(count), oldest_pending_at=_opt_from_us(oldest), max_attempts=int(attempts)
                )
            else:
                seen = replace(seen, failed=int(count))
            found[peer] = seen
        return list(found.values())


def _peer_bundle(row: Sequence[Any]) -> PeerBundle:
    oid, peer, state, attempts, next_us, delivered_us, error, bundle, conflicting = row
    return PeerBundle(
        int(oid), peer, PeerBundleState(state), int(attempts), from_us(next_us), from_us(delivered_us),
        error, bundle, conflicting,
    )  # fmt: skip


class SqlPeerBundles:
    """The witnessed proof bundles of peers' receipts and their refresh schedule (`peer_bundles`)."""

    def __init__(self, runner: Runner) -> None:
        self.db = runner

    def _params(self, b: PeerBundle) -> dict[str, Any]:
        return {
            "outbox_id": b.outbox_id, "peer": b.peer, "state": int(b.state), "attempts": b.attempts,
            "next_attempt_us": to_us(b.next_attempt_at), "delivered_at_us": to_us(b.delivered_at),
            "last_error": b.last_error, "bundle": b.bundle, "conflicting_checkpoint": b.conflicting_checkpoint,
        }  # fmt: skip

    def add(self, b: PeerBundle) -> None:
        self.db.run("peer_bundle_insert", self._params(b))

    def update(self, b: PeerBundle) -> None:
        params = self._params(b)
        del params["peer"], params["delivered_at_us"]
        self.db.run("peer_bundle_update", params)

    def due(self, now: datetime, limit: int) -> list[tuple[PeerBundle, bytes]]:
        def build() -> Select[Any]:
            waiting: ColumnElement[Any] = literal_column(str(int(PeerBundleState.WAITING)))
            return (
                select(*peer_bundles.c, outbox.c.receipt)
                .join(outbox, outbox.c.id == peer_bundles.c.outbox_id)
                .where(peer_bundles.c.state == waiting, peer_bundles.c.next_attempt_us <= P("now"))
                .order_by(peer_bundles.c.next_attempt_us, peer_bundles.c.outbox_id)
                .limit(P("limit"))
                .offset(_NO_OFFSET)
            )

        rows = self.db.all("peer_bundles_due", build, {"now": to_us(now), "limit": limit})
        return [(_peer_bundle(r[:-1]), bytes(r[-1])) for r in rows if r[-1] is not None]

    def next_attempt(self) -> datetime | None:
        def build() -> Select[Any]:
            waiting: ColumnElement[Any] = literal_column(str(int(PeerBundleState.WAITING)))
            return select(func.min(peer_bundles.c.next_attempt_us)).where(peer_bundles.c.state == waiting)

        rows = self.db.all("peer_bundles_next", build, {})
        return None if not rows or rows[0][0] is None else from_us(rows[0][0])

    def of_transfer(self, transfer_id: str) -> dict[int, PeerBundle]:
        def build() -> Select[Any]:
            return (
                select(*peer_bundles.c)
                .join(outbox, outbox.c.id == peer_bundles.c.outbox_id)
                .where(outbox.c.transfer_id == P("transfer_id"))
            )

        rows = self.db.all("peer_bundles_of_transfer", build, {"transfer_id": transfer_id})
        return {b.outbox_id: b for b in map(_peer_bundle, rows)}

    def split_views(self) -> dict[str, int]:
        def build() -> Select[Any]:
            split: ColumnElement[Any] = literal_column(str(int(PeerBundleState.SPLIT_VIEW)))
            return (
                select(peer_bundles.c.peer, func.count())
                .where(peer_bundles.c.state == split)
                .group_by(peer_bundles.c.peer)
            )

        return {str(peer): int(count) for peer, count in self.db.all("peer_bundles_split_views", build, {})}


class SqlInbound:
    def __init__(self, runner: Runner) -> None:
        self.db = runner

    def get(self, peer: str, transfer_id: str, kind: MessageKind) -> InboundMessage | None:
        row = self.db.one("inbound_get", {"peer": peer, "transfer_id": transfer_id, "kind": int(kind)})
        if row is None:
            return None
        p, tid, k, digest, index, received, state = row
        return InboundMessage(
            p, tid, MessageKind(k), bytes(digest), int(index), from_us(received), TransferState(state)
        )

    def add(self, m: InboundMessage) -> None:
        self.db.run(
            "inbound_insert",
            {
                "peer": m.peer, "transfer_id": m.transfer_id, "kind": int(m.kind), "digest": m.digest,
                "log_index": m.log_index, "received_at_us": to_us(m.received_at), "state": int(m.state),
            },
        )  # fmt: skip

    def add_package(self, transfer_id: str, peer: str, package: bytes, seal: bytes) -> None:
        self.db.run("package_insert", {"transfer_id": transfer_id, "peer": peer, "package": package, "seal": seal})

    def package(self, transfer_id: str) -> bytes | None:
        row = self.db.one("package_get", {"transfer_id": transfer_id})
        return None if row is None else bytes(row[0])

    def refusal(self, peer: str, digest: bytes, reason: str) -> int | None:
        row = self.db.one("refusal_get", {"peer": peer, "digest": digest, "reason": reason})
        return None if row is None else int(row[0])

    def add_refusal(self, peer: str, digest: bytes, reason: str, log_index: int, at: datetime) -> None:
        self.db.run(
            "refusal_insert",
            {"peer": peer, "digest": digest, "reason": reason, "log_index": log_index, "refused_at_us": to_us(at)},
        )

    def import_certificate(self, c: CertificateInfo) -> None:
        if self.db.one("imported_cert_get", {"sha256": c.sha256}) is None:
            self.db.run(
                "imported_cert_insert",
                {
                    "sha256": c.sha256, "der": c.der, "chain": _chain_bytes(c.chain),
                    "not_before_us": to_us(c.not_before), "not_after_us": to_us(c.not_after),
                },
            )  # fmt: skip

    def certificate(self, sha256: str) -> CertificateInfo | None:
        row = self.db.one("imported_cert_get", {"sha256": sha256})
        if row is None:
            return None
        sha, der, chain, nb, na = row
        return CertificateInfo(sha, bytes(der), "imported", from_us(nb), from_us(na), _chain_parts(bytes(chain)))


class SqlUnitOfWork:
    """The repositories of one transaction and the items to announce after commit.

    A repository is made when first used: a batch of transfers touches five
    of the fourteen, and the writer makes a unit of work per batch."""

    def __init__(self, conn: Connection, log_state: LogState | None = None) -> None:
        self.runner = Runner(conn)
        self._log_state = log_state
        self.published: list[object] = []

    @functools.cached_property
    def schools(self) -> SqlSchools:
        return SqlSchools(self.runner)

    @functools.cached_property
    def records(self) -> SqlRecords:
        return SqlRecords(self.runner)

    @functools.cached_property
    def transfers(self) -> SqlTransfers:
        return SqlTransfers(self.runner)

    @functools.cached_property
    def events(self) -> SqlEvents:
        return SqlEvents(self.runner)

    @functools.cached_property
    def idempotency(self) -> SqlIdempotency:
        return SqlIdempotency(self.runner)

    @functools.cached_property
    def log(self) -> SqlLog:
        return SqlLog(self.runner, self._log_state)

    @functools.cached_property
    def teachers(self) -> SqlTeachers:
        return SqlTeachers(self.runner)

    @functools.cached_property
    def duties(self) -> SqlDuties:
        return SqlDuties(self.runner)

    @functools.cached_property
    def pages(self) -> SqlPages:
        return SqlPages(self.runner)

    @functools.cached_property
    def tasks(self) -> SqlTasks:
        return SqlTasks(self.runner)

    @functools.cached_property
    def handoffs(self) -> SqlHandoffs:
        return SqlHandoffs(self.runner)

    @functools.cached_property
    def outbox(self) -> SqlOutbox:
        return SqlOutbox(self.runner)

    @functools.cached_property
    def peer_bundles(self) -> SqlPeerBundles:
        return SqlPeerBundles(self.runner)

    @functools.cached_property
    def inbound(self) -> SqlInbound:
        return SqlInbound(self.runner)

    def read_ahead(self, hints: Sequence[ReadAhead]) -> None:
        """Read the rows a batch of commands named (`ReadAhead`), a statement
        per table instead of one per command: first the transfers, then the
        records and schools they and the hints name."""
        if not hints:
            return
        codes: set[str] = set()
        school_codes: set[str] = set()
        ids: set[str] = set()
        for h in hints:
            codes.update(h.records)
            school_codes.update(h.schools)
            ids.update(h.transfers)
        if ids:
            for t in self.transfers.prefetch(ids):
                codes.add(t.lookup_code)
                school_codes.add(t.to_school)
        if codes:
            self.records.prefetch(codes)
        if school_codes:
            self.schools.prefetch(school_codes)

    def publish(self, item: object) -> None:
        self.published.append(item)

    @property
    def writes(self) -> int:
        """Statements written or staged so far (to tell a clean refusal from a half-done change)."""
        staged = 0
        for name in ("events", "idempotency", "log"):
            repo = self.__dict__.get(name)  # only those made can hold staged rows
            if repo is not None:
                staged += len(repo.staged)
        return self.runner.writes + staged

    def flush(self) -> list[Callable[[], None]]:
        """Write the staged append-only rows; call once, before commit.

        Returns the actions to run after the commit succeeded.
        """
        made = self.__dict__
        if "events" in made:
            self.events.flush()
        if "idempotency" in made:
            self.idempotency.flush()
        install = self.log.flush() if "log" in made else None
        self.runner.sync()  # every write answered: an error belongs to this transaction's commands
        return [install] if install is not None else []
