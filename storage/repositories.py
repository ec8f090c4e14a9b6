"""Repositories over SQLAlchemy Core: rows in, domain objects out.

They take an open connection and never commit; the writer (or a read) owns
the transaction. Core, not the ORM, because these run on every request
(DESIGN §9: the ORM cost a prototype three quarters of its throughput).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, delete, insert, or_, select, update
from sqlalchemy.engine import Row

from storage.schema import idempotency_keys, records, schools, transfer_events, transfers
from transfer.domain.model import (
    Record,
    RecordLevel,
    School,
    StoredResponse,
    Transfer,
    TransferDirection,
    TransferEvent,
    TransferScope,
    TransferState,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def to_us(instant: datetime) -> int:
    return (instant - EPOCH) // _US


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def _opt_from_us(us: int | None) -> datetime | None:
    return None if us is None else from_us(us)


class SqlSchools:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    @staticmethod
    def _school(row: Row[Any]) -> School:
        return School(
            row.code, row.name, row.province, bool(row.active), from_us(row.created_at_us), from_us(row.updated_at_us)
        )

    def get(self, code: str) -> School | None:
        row = self.conn.execute(select(schools).where(schools.c.code == code)).first()
        return None if row is None else self._school(row)

    def add(self, school: School) -> None:
        self.conn.execute(
            insert(schools).values(
                code=school.code,
                name=school.name,
                province=school.province,
                active=school.active,
                created_at_us=to_us(school.created_at),
                updated_at_us=to_us(school.updated_at),
            )
        )

    def update(self, school: School) -> None:
        self.conn.execute(
            update(schools)
            .where(schools.c.code == school.code)
            .values(name=school.name, active=school.active, updated_at_us=to_us(school.updated_at))
        )

    def page(self, after_code: str | None, limit: int) -> list[School]:
        q = select(schools).order_by(schools.c.code).limit(limit)
        if after_code is not None:
            q = q.where(schools.c.code > after_code)
        return [self._school(r) for r in self.conn.execute(q)]


class SqlRecords:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    @staticmethod
    def _record(row: Row[Any]) -> Record:
        return Record(
            row.lookup_code,
            row.national_id,
            RecordLevel(row.level),
            row.custodian_school,
            row.open_transfer_id,
            from_us(row.created_at_us),
            from_us(row.updated_at_us),
        )

    def get(self, lookup_code: str) -> Record | None:
        row = self.conn.execute(select(records).where(records.c.lookup_code == lookup_code)).first()
        return None if row is None else self._record(row)

    def student_has_record(self, national_id: str, level: int) -> bool:
        q = select(records.c.lookup_code).where(records.c.national_id == national_id, records.c.level == int(level))
        return self.conn.execute(q).first() is not None

    def add(self, record: Record) -> None:
        self.conn.execute(
            insert(records).values(
                lookup_code=record.lookup_code,
                national_id=record.national_id,
                level=int(record.level),
                custodian_school=record.custodian_school,
                open_transfer_id=record.open_transfer_id,
                created_at_us=to_us(record.created_at),
                updated_at_us=to_us(record.updated_at),
            )
        )

    def update(self, record: Record) -> None:
        self.conn.execute(
            update(records)
            .where(records.c.lookup_code == record.lookup_code)
            .values(
                custodian_school=record.custodian_school,
                open_transfer_id=record.open_transfer_id,
                updated_at_us=to_us(record.updated_at),
            )
        )

    def list_by_custodian(self, school: str, after_lookup_code: str | None, limit: int) -> list[Record]:
        q = select(records).where(records.c.custodian_school == school).order_by(records.c.lookup_code).limit(limit)
        if after_lookup_code is not None:
            q = q.where(records.c.lookup_code > after_lookup_code)
        return [self._record(r) for r in self.conn.execute(q)]


def _transfer(row: Row[Any]) -> Transfer:
    return Transfer(
        id=row.id,
        lookup_code=row.lookup_code,
        from_school=row.from_school,
        from_province=row.from_province,
        to_school=row.to_school,
        to_province=row.to_province,
        scope=TransferScope(row.scope),
        state=TransferState(row.state),
        reason=row.reason,
        created_at=from_us(row.created_at_us),
        deadline=from_us(row.deadline_us),
        decided_at=_opt_from_us(row.decided_at_us),
        initiated_by=row.initiated_by,
        decided_by=row.decided_by,
    )


class SqlTransfers:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def get(self, transfer_id: str) -> Transfer | None:
        row = self.conn.execute(select(transfers).where(transfers.c.id == transfer_id)).first()
        return None if row is None else _transfer(row)

    def add(self, transfer: Transfer) -> None:
        self.conn.execute(
            insert(transfers).values(
                id=transfer.id,
                lookup_code=transfer.lookup_code,
                from_school=transfer.from_school,
                from_province=transfer.from_province,
                to_school=transfer.to_school,
                to_province=transfer.to_province,
                scope=int(transfer.scope),
                state=int(transfer.state),
                reason=transfer.reason,
                created_at_us=to_us(transfer.created_at),
                deadline_us=to_us(transfer.deadline),
                decided_at_us=None if transfer.decided_at is None else to_us(transfer.decided_at),
                initiated_by=transfer.initiated_by,
                decided_by=transfer.decided_by,
            )
        )

    def update(self, transfer: Transfer) -> None:
        self.conn.execute(
            update(transfers)
            .where(transfers.c.id == transfer.id)
            .values(
                state=int(transfer.state),
                reason=transfer.reason,
                decided_at_us=None if transfer.decided_at is None else to_us(transfer.decided_at),
                decided_by=transfer.decided_by,
            )
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
        q = select(transfers).where(col == school).order_by(transfers.c.seq).limit(limit)
        if states:
            q = q.where(transfers.c.state.in_([int(s) for s in states]))
        if after_key is not None:
            q = q.where(transfers.c.seq > after_key)
        return [(r.seq, _transfer(r)) for r in self.conn.execute(q)]

    def overdue(self, now: datetime, limit: int) -> list[Transfer]:
        q = (
            select(transfers)
            .where(transfers.c.state == int(TransferState.REQUESTED), transfers.c.deadline_us <= to_us(now))
            .order_by(transfers.c.deadline_us)
            .limit(limit)
        )
        return [_transfer(r) for r in self.conn.execute(q)]


class SqlEvents:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def append(self, event: TransferEvent) -> int:
        t = event.transfer
        result = self.conn.execute(
            insert(transfer_events).values(
                transfer_id=t.id,
                from_school=t.from_school,
                to_school=t.to_school,
                state=int(t.state),
                reason=t.reason,
                decided_by=t.decided_by,
                occurred_at_us=to_us(event.occurred_at),
            )
        )
        pk = result.inserted_primary_key
        assert pk is not None
        return int(pk[0])

    def after(self, school: str, after_seq: int, limit: int) -> list[TransferEvent]:
        e = transfer_events
        q = (
            select(
                e.c.seq,
                e.c.state.label("event_state"),
                e.c.reason.label("event_reason"),
                e.c.decided_by.label("event_decided_by"),
                e.c.occurred_at_us,
                transfers,
            )
            .join(transfers, transfers.c.id == e.c.transfer_id)
            .where(or_(e.c.from_school == school, e.c.to_school == school), e.c.seq > after_seq)
            .order_by(e.c.seq)
            .limit(limit)
        )
        out = []
        for r in self.conn.execute(q):
            current = _transfer(r)
            state = TransferState(r.event_state)
            occurred = from_us(r.occurred_at_us)
            # The transfer as it was right after this event.
            snapshot = replace(
                current,
                state=state,
                reason=r.event_reason,
                decided_at=None if state is TransferState.REQUESTED else occurred,
                decided_by=r.event_decided_by,
            )
            out.append(TransferEvent(r.seq, snapshot, occurred))
        return out


class SqlIdempotency:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def get(self, principal: str, request_id: str) -> StoredResponse | None:
        k = idempotency_keys
        row = self.conn.execute(
            select(k.c.fingerprint, k.c.response).where(and_(k.c.principal == principal, k.c.request_id == request_id))
        ).first()
        return None if row is None else StoredResponse(bytes(row.fingerprint), bytes(row.response))

    def put(self, principal: str, request_id: str, stored: StoredResponse, created_at: datetime) -> None:
        self.conn.execute(
            insert(idempotency_keys).values(
                principal=principal,
                request_id=request_id,
                fingerprint=stored.fingerprint,
                response=stored.response,
                created_at_us=to_us(created_at),
            )
        )

    def prune(self, older_than: datetime, limit: int) -> int:
        k = idempotency_keys
        victims = select(k.c.principal, k.c.request_id).where(k.c.created_at_us < to_us(older_than)).limit(limit)
        rows = self.conn.execute(victims).all()
        for row in rows:
            self.conn.execute(delete(k).where(k.c.principal == row.principal, k.c.request_id == row.request_id))
        return len(rows)


class SqlUnitOfWork:
    """The repositories of one transaction and the items to announce after commit."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.schools = SqlSchools(conn)
        self.records = SqlRecords(conn)
        self.transfers = SqlTransfers(conn)
        self.events = SqlEvents(conn)
        self.idempotency = SqlIdempotency(conn)
        self.published: list[object] = []

    def publish(self, item: object) -> None:
        self.published.append(item)
