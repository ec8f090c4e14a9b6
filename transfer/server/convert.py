"""Conversion between transfer.v1 messages and domain objects.

Protobuf types stop here: servicers hand the domain commands and get domain
objects back. Enum numbers are shared by construction (see model.py).
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

from google.protobuf.timestamp_pb2 import Timestamp

from transfer.domain.errors import FieldViolation, InvalidArgument
from transfer.domain.model import LogReceipt, Record, School, StoredCheckpoint, Transfer, TransferEvent
from transfer.v1 import log_pb2, records_pb2, schools_pb2, transfers_pb2

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def timestamp(instant: datetime) -> Timestamp:
    us = (instant - _EPOCH) // _US
    return Timestamp(seconds=us // 1_000_000, nanos=(us % 1_000_000) * 1000)


def school_pb(s: School) -> schools_pb2.School:
    return schools_pb2.School(
        code=s.code,
        name=s.name,
        province=s.province,
        active=s.active,
        create_time=timestamp(s.created_at),
        update_time=timestamp(s.updated_at),
    )


def record_pb(r: Record) -> records_pb2.Record:
    return records_pb2.Record(
        lookup_code=r.lookup_code,
        national_id=r.national_id,
        level=int(r.level),  # type: ignore[arg-type]
        custodian_school=r.custodian_school,
        status=int(r.status),  # type: ignore[arg-type]
        open_transfer_id=r.open_transfer_id or "",
        create_time=timestamp(r.created_at),
        update_time=timestamp(r.updated_at),
    )


def transfer_pb(t: Transfer) -> transfers_pb2.Transfer:
    msg = transfers_pb2.Transfer(
        id=t.id,
        lookup_code=t.lookup_code,
        from_school=t.from_school,
        from_province=t.from_province,
        to_school=t.to_school,
        to_province=t.to_province,
        scope=int(t.scope),  # type: ignore[arg-type]
        state=int(t.state),  # type: ignore[arg-type]
        reason=t.reason,
        create_time=timestamp(t.created_at),
        deadline=timestamp(t.deadline),
    )
    if t.decided_at is not None:
        msg.decide_time.CopyFrom(timestamp(t.decided_at))
    return msg


_CURSOR_PREFIX = b"ev1:"


def cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(_CURSOR_PREFIX + str(seq).encode()).rstrip(b"=").decode()


def parse_cursor(value: str) -> int:
    """The event sequence number a cursor stands for; 0 for an empty cursor."""
    if not value:
        return 0
    try:
        raw = base64.urlsafe_b64decode(value.encode() + b"=" * (-len(value) % 4))
        if not raw.startswith(_CURSOR_PREFIX):
            raise ValueError("prefix")
        seq = int(raw[len(_CURSOR_PREFIX) :])
        if seq < 0:
            raise ValueError("negative")
        return seq
    except ValueError as exc:
        raise InvalidArgument(
            "INVALID_CURSOR",
            "cursor is not one this service issued",
            field_violations=(FieldViolation("cursor", "not a cursor this service issued", "INVALID_CURSOR"),),
        ) from exc


def event_pb(e: TransferEvent) -> transfers_pb2.WatchTransfersResponse:
    return transfers_pb2.WatchTransfersResponse(
        cursor=cursor(e.seq), transfer=transfer_pb(e.transfer), event_time=timestamp(e.occurred_at)
    )


def receipt_pb(r: LogReceipt, origin: str) -> log_pb2.LogReceipt:
    return log_pb2.LogReceipt(index=r.index, leaf=r.leaf, origin=origin)


def checkpoint_pb(c: StoredCheckpoint) -> log_pb2.GetCheckpointResponse:
    return log_pb2.GetCheckpointResponse(checkpoint=c.note, tree_size=c.size, root_hash=c.root)
