"""Conversion between transfer.v1 messages and domain objects.

Protobuf types stop here: servicers hand the domain commands and get domain
objects back. Enum numbers are shared by construction (see model.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from transfer.domain.logbook import Logbook, LogInfo
from transfer.domain.model import (
    Duty,
    DutyKey,
    Handoff,
    LogReceipt,
    Record,
    Requirement,
    School,
    SigningTask,
    StoredCheckpoint,
    Teacher,
    Transfer,
    TransferEvent,
)
from transfer.domain.pages import PageView
from transfer.domain.signatures import CertificateInfo
from transfer.v1 import log_pb2, pages_pb2, records_pb2, schools_pb2, staff_pb2, transfers_pb2

M = TypeVar("M", bound=Message)
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
        page_log_salts=list(r.page_salts),
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
    if t.cancel_requested:
        msg.cancel_requested = True
    if t.delivery is not None:
        msg.delivery_state = int(t.delivery)  # type: ignore[assignment]
        msg.delivery_error = t.delivery_error
    if t.salt:
        msg.log_salt = t.salt
    return msg


def event_pb(e: TransferEvent, cursor: str) -> transfers_pb2.WatchTransfersResponse:
    return transfers_pb2.WatchTransfersResponse(
        cursor=cursor, transfer=transfer_pb(e.transfer), event_time=timestamp(e.occurred_at)
    )


def receipt_pb(r: LogReceipt, origin: str) -> log_pb2.LogReceipt | None:
    """The receipt of a change; None when it made no log entry (a cancellation
    request between provinces: the entry comes with the receiving node's decision)."""
    if r.index < 0:
        return None
    return log_pb2.LogReceipt(index=r.index, leaf=r.leaf, origin=origin)


def with_promise(response: M, logbook: Logbook | None) -> M:
    """`response` with its receipt's entry promise signed (docs/log.md, Receipts that verify
    offline), when it carries a receipt and the service signs them."""
    if logbook is None or "receipt" not in response.DESCRIPTOR.fields_by_name or not response.HasField("receipt"):
        return response
    receipt = response.receipt  # type: ignore[attr-defined]
    if isinstance(receipt, log_pb2.LogReceipt) and not receipt.signed_entry:
        receipt.signed_entry = logbook.promise(receipt.index, receipt.leaf)
    return response


def checkpoint_pb(c: StoredCheckpoint) -> log_pb2.GetCheckpointResponse:
    return log_pb2.GetCheckpointResponse(checkpoint=c.note, tree_size=c.size, root_hash=c.root)


def log_info_pb(info: LogInfo) -> log_pb2.GetLogInfoResponse:
    return log_pb2.GetLogInfoResponse(
        origin=info.origin,
        log_vkey=info.log_vkey,
        seal_vkey=info.seal_vkey,
        witnesses=[log_pb2.Witness(name=w.name, vkey=w.vkey, url=w.url) for w in info.witnesses],
        witness_quorum=info.witness_quorum,
        next_log_vkey=info.next_log_vkey,
        previous_log_vkeys=info.previous_log_vkeys,
        own_witness_vkey=info.own_witness_vkey,
    )


# -- pages and staff -------------------------------------------------------------


def requirement_pb(r: Requirement) -> pages_pb2.RequiredSignature:
    return pages_pb2.RequiredSignature(role=int(r.role), subject=r.subject)  # type: ignore[arg-type]


def task_pb(t: SigningTask, digest: bytes = b"") -> pages_pb2.SigningTask:
    msg = pages_pb2.SigningTask(
        page_id=t.page_id,
        requirement=requirement_pb(t.requirement),
        assignee_teacher_id=t.assignee or "",
        signed_by_teacher_id=t.signed_by or "",
        signature=t.signature or b"",
        certificate_sha256=t.certificate_sha256 or "",
        digest=digest,
    )
    if t.signed_at is not None:
        msg.sign_time.CopyFrom(timestamp(t.signed_at))
    return msg


def page_pb(view: PageView) -> pages_pb2.Page:
    p = view.page
    msg = pages_pb2.Page(
        id=p.id,
        lookup_code=p.lookup_code,
        issuing_school=p.issuing_school,
        school_year=p.school_year,
        segment=p.segment,
        grade=p.grade,
        class_name=p.class_name,
        media_type=p.media_type,
        payload_sha256=p.payload_sha256,
        payload_size=p.payload_size,
        version=p.version,
        digest=p.digest,
        state=int(p.state),  # type: ignore[arg-type]
        lock_track=int(p.lock_track),  # type: ignore[arg-type]
        tasks=[task_pb(t, p.digest) for t in view.tasks],
        create_time=timestamp(p.created_at),
        update_time=timestamp(p.updated_at),
        payload=view.payload or b"",
    )
    if p.locked_at is not None:
        msg.lock_time.CopyFrom(timestamp(p.locked_at))
    return msg


def teacher_pb(t: Teacher, certificates: Sequence[CertificateInfo] = ()) -> staff_pb2.Teacher:
    return staff_pb2.Teacher(
        id=t.id,
        school=t.school,
        code=t.code,
        name=t.name,
        status=int(t.status),  # type: ignore[arg-type]
        certificates=[
            staff_pb2.TeacherCertificate(
                sha256=c.sha256,
                key_type=c.key_type,
                not_before=timestamp(c.not_before),
                not_after=timestamp(c.not_after),
                der=c.der,
            )
            for c in certificates
        ],
        create_time=timestamp(t.created_at),
        update_time=timestamp(t.updated_at),
    )


def duty_ref_pb(k: DutyKey) -> staff_pb2.DutyRef:
    return staff_pb2.DutyRef(
        role=int(k.role),  # type: ignore[arg-type]
        school_year=k.school_year,
        class_name=k.class_name,
        subject=k.subject,
    )


def duty_pb(d: Duty) -> staff_pb2.Duty:
    return staff_pb2.Duty(
        school=d.school,
        duty=duty_ref_pb(d.key),
        key=str(d.key),
        holder_teacher_id=d.holder or "",
        update_time=timestamp(d.updated_at),
    )


def handoff_pb(h: Handoff) -> staff_pb2.Handoff:
    msg = staff_pb2.Handoff(
        id=h.id,
        school=h.school,
        teacher_id=h.teacher_id,
        reason=int(h.reason),  # type: ignore[arg-type]
        effective_date=h.effective_date.isoformat(),
        end_date=h.end_date.isoformat() if h.end_date else "",
        replacement_teacher_id=h.replacement or "",
        replacements=[staff_pb2.DutyReplacement(duty=duty_ref_pb(k), teacher_id=t) for k, t in h.duties],
        state=int(h.state),  # type: ignore[arg-type]
        moved_tasks=h.moved_tasks,
        create_time=timestamp(h.created_at),
        log_salt=h.salt,
    )
    if h.applied_at is not None:
        msg.apply_time.CopyFrom(timestamp(h.applied_at))
    if h.ended_at is not None:
        msg.end_time.CopyFrom(timestamp(h.ended_at))
    return msg
