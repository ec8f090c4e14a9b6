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

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, delete, or_, select

from storage.schema import (
    idempotency_keys,
    log_leaves,
    records,
    schools,
    transfer_events,
    transfers,
)
from storage.sql import RECORD_COLS, SCHOOL_COLS, TRANSFER_COLS, Runner
from transfer.domain.model import (
    Record,
    RecordLevel,
    School,
    StoredCheckpoint,
    StoredResponse,
    Transfer,
    TransferDirection,
    TransferEvent,
    TransferScope,
    TransferState,
)
from transfer.ledger.merkle import Frontier, NodeId, leaf_hash, root_nodes

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


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
    code, nid, level, custodian, open_id, created, updated = row
    return Record(code, nid, RecordLevel(level), custodian, open_id, from_us(created), from_us(updated))


def _transfer(row: Sequence[Any]) -> Transfer:
    (tid, code, from_school, from_prov, to_school, to_prov, scope, state, reason, created, deadline, decided,
     initiated_by, decided_by) = row  # fmt: skip
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
    )


class SqlSchools:
    def __init__(self, runner: Runner) -> None:
        self.db = runner

    def get(self, code: str) -> School | None:
        row = self.db.one("school_get", {"code": code})
        return None if row is None else _school(row)

    def add(self, s: School) -> None:
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
        self.db.run(
            "school_update", {"code": s.code, "name": s.name, "active": s.active, "updated_at_us": to_us(s.updated_at)}
        )

    def page(self, after_code: str | None, limit: int) -> list[School]:
        q = select(*SCHOOL_COLS).order_by(schools.c.code).limit(limit)
        if after_code is not None:
            q = q.where(schools.c.code > after_code)
        return [_school(r) for r in self.db.conn.execute(q)]


class SqlRecords:
    def __init__(self, runner: Runner) -> None:
        self.db = runner

    def get(self, lookup_code: str) -> Record | None:
        row = self.db.one("record_get", {"lookup_code": lookup_code})
        return None if row is None else _record(row)

    def student_has_record(self, national_id: str, level: int) -> bool:
        return self.db.one("record_by_student", {"national_id": national_id, "level": int(level)}) is not None

    def add(self, r: Record) -> None:
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
            },
        )

    def update(self, r: Record) -> None:
        self.db.run(
            "record_update",
            {
                "lookup_code": r.lookup_code,
                "custodian_school": r.custodian_school,
                "open_transfer_id": r.open_transfer_id,
                "updated_at_us": to_us(r.updated_at),
            },
        )

    def list_by_custodian(self, school: str, after_lookup_code: str | None, limit: int) -> list[Record]:
        q = (
            select(*RECORD_COLS)
            .where(records.c.custodian_school == school)
            .order_by(records.c.lookup_code)
            .limit(limit)
        )
        if after_lookup_code is not None:
            q = q.where(records.c.lookup_code > after_lookup_code)
        return [_record(r) for r in self.db.conn.execute(q)]


class SqlTransfers:
    def __init__(self, runner: Runner) -> None:
        self.db = runner

    def get(self, transfer_id: str) -> Transfer | None:
        row = self.db.one("transfer_get", {"id": transfer_id})
        return None if row is None else _transfer(row)

    def add(self, t: Transfer) -> None:
        self.db.run(
            "transfer_insert",
            {
                "id": t.id,
                "lookup_code": t.lookup_code,
                "from_school": t.from_school,
                "from_province": t.from_province,
                "to_school": t.to_school,
                "to_province": t.to_province,
                "scope": int(t.scope),
                "state": int(t.state),
                "reason": t.reason,
                "created_at_us": to_us(t.created_at),
                "deadline_us": to_us(t.deadline),
                "decided_at_us": _opt_us(t.decided_at),
                "initiated_by": t.initiated_by,
                "decided_by": t.decided_by,
            },
        )

    def update(self, t: Transfer) -> None:
        self.db.run(
            "transfer_update",
            {
                "id": t.id,
                "state": int(t.state),
                "reason": t.reason,
                "decided_at_us": _opt_us(t.decided_at),
                "decided_by": t.decided_by,
            },
        )

    def page(
        self,
        school: str,
        direction: TransferDirection,
        states: Sequence[TransferState],
        after_key: int | None,
        limit: int,
    ) -> list[tuple[int, Transfer]]:
        col = transfers.c.to_school if direction is TransferDirection.INCOMING else transfers.c.from_school
        q = select(transfers.c.seq, *TRANSFER_COLS).where(col == school).order_by(transfers.c.seq).limit(limit)
        if states:
            q = q.where(transfers.c.state.in_([int(s) for s in states]))
        if after_key is not None:
            q = q.where(transfers.c.seq > after_key)
        return [(r[0], _transfer(r[1:])) for r in self.db.conn.execute(q)]

    def overdue(self, now: datetime, limit: int) -> list[Transfer]:
        q = (
            select(*TRANSFER_COLS)
            .where(transfers.c.state == int(TransferState.REQUESTED), transfers.c.deadline_us <= to_us(now))
            .order_by(transfers.c.deadline_us)
            .limit(limit)
        )
        return [_transfer(r) for r in self.db.conn.execute(q)]


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

    def after(self, school: str, after_seq: int, limit: int) -> list[TransferEvent]:
        e = transfer_events
        q = (
            select(e.c.seq, e.c.state, e.c.reason, e.c.decided_by, e.c.occurred_at_us, *TRANSFER_COLS)
            .join(transfers, transfers.c.id == e.c.transfer_id)
            .where(or_(e.c.from_school == school, e.c.to_school == school), e.c.seq > after_seq)
            .order_by(e.c.seq)
            .limit(limit)
        )
        out = []
        for r in self.db.conn.execute(q):
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

    def flush(self) -> None:
        self.db.many("event_insert", self.staged)
        self.staged = []


class SqlIdempotency:
    def __init__(self, runner: Runner) -> None:
        self.db = runner
        self.staged: dict[tuple[str, str], Mapping[str, Any]] = {}

    def get(self, principal: str, request_id: str) -> StoredResponse | None:
        staged = self.staged.get((principal, request_id))
        if staged is not None:
            return StoredResponse(staged["fingerprint"], staged["response"])
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
        victims = select(k.c.principal, k.c.request_id).where(k.c.created_at_us < to_us(older_than)).limit(limit)
        rows = self.db.conn.execute(victims).all()
        for principal, request_id in rows:
            self.db.writes += 1
            self.db.conn.execute(delete(k).where(and_(k.c.principal == principal, k.c.request_id == request_id)))
        return len(rows)

    def flush(self) -> None:
        self.db.many("idempotency_insert", list(self.staged.values()))
        self.staged = {}


class LogState:
    """The writer's memory of the committed log: its frontier (compact range).

    It is only a cache: every write transaction compares it with the head it
    reads under the write lock and reloads it (O(log n) rows) when another
    process appended meanwhile.
    """

    def __init__(self) -> None:
        self.frontier: Frontier | None = None


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
            if cached is None or cached.size != size:
                cached = Frontier.from_nodes(size, self.nodes(root_nodes(size)))
            self._frontier = cached.copy()
        return self._frontier

    def append(self, leaf: bytes) -> int:
        index = self._working_frontier().size + len(self.staged)
        self.staged.append(leaf)
        return index

    def size(self) -> int:
        return self._committed_size() + len(self.staged)

    def leaves(self, start: int, end: int) -> list[bytes]:
        q = (
            select(log_leaves.c.data)
            .where(log_leaves.c.idx >= start, log_leaves.c.idx < end)
            .order_by(log_leaves.c.idx)
        )
        return [bytes(r[0]) for r in self.db.conn.execute(q)]

    def nodes(self, ids: Collection[NodeId]) -> dict[NodeId, bytes]:
        if not ids:
            return {}
        return {(level, idx): h for level, idx, h in self.db.nodes(ids)}

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        row = self.db.one("checkpoint_latest", {})
        return None if row is None else _checkpoint(row)

    def checkpoint(self, size: int) -> StoredCheckpoint | None:
        row = self.db.one("checkpoint_at", {"size": size})
        return None if row is None else _checkpoint(row)

    def add_checkpoint(self, checkpoint: StoredCheckpoint) -> None:
        self.db.run(
            "checkpoint_insert",
            {
                "size": checkpoint.size,
                "root": checkpoint.root,
                "note": checkpoint.note,
                "created_at_us": to_us(checkpoint.created_at),
            },
        )

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
        self.staged = []
        state = self.state

        def install() -> None:
            if state is not None:
                state.frontier = frontier

        return install


def _checkpoint(row: Sequence[Any]) -> StoredCheckpoint:
    size, root, note, created = row
    return StoredCheckpoint(int(size), bytes(root), note, from_us(created))


class SqlUnitOfWork:
    """The repositories of one transaction and the items to announce after commit."""

    def __init__(self, conn: Connection, log_state: LogState | None = None) -> None:
        self.runner = Runner(conn)
        self.schools = SqlSchools(self.runner)
        self.records = SqlRecords(self.runner)
        self.transfers = SqlTransfers(self.runner)
        self.events = SqlEvents(self.runner)
        self.idempotency = SqlIdempotency(self.runner)
        self.log = SqlLog(self.runner, log_state)
        self.published: list[object] = []

    def publish(self, item: object) -> None:
        self.published.append(item)

    @property
    def writes(self) -> int:
        """Statements written or staged so far (to tell a clean refusal from a half-done change)."""
        return self.runner.writes + len(self.events.staged) + len(self.idempotency.staged) + len(self.log.staged)

    def flush(self) -> list[Callable[[], None]]:
        """Write the staged append-only rows; call once, before commit.

        Returns the actions to run after the commit succeeded.
        """
        self.events.flush()
        self.idempotency.flush()
        install = self.log.flush()
        return [install] if install is not None else []
