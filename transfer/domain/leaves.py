"""The log's leaf format: an explicit, versioned byte encoding of each event.

The log itself only sees bytes; this module is where the domain says what a
leaf means. Leaves are public to every node and auditor, so they hold ids,
states, times, the acting identity and digests — never a pupil's national id,
name or lookup code, nor free text, in clear.

Layout (all integers big-endian):

    leaf    = version:u8 (= 1) || kind:u8 || time:u64 (µs since the Unix epoch, UTC) || body
    str8    = length:u8 || UTF-8 bytes
    digest  = 32 bytes (SHA-256)

Transfer events (kinds 1-5) share one body:

    transfer_id:16 (the id's 128 bits) || record:digest || from_province:2 (ASCII)
    || from_school:str8 || to_province:2 || to_school:str8 || actor:str8 || extra

    kind 1  transfer.requested   extra = deadline:u64 (µs)
    kind 2  transfer.accepted    extra = (none)
    kind 3  transfer.rejected    extra = reason:digest
    kind 4  transfer.cancelled   extra = reason:digest (of "" when none was given)
    kind 5  transfer.expired     extra = (none)

Between nodes (kinds 6-9); `peer` is the other node's province:

    kind 6 transfer.offered         transfer_id:16 || peer:2 || package:digest || actor:str8
    kind 7 message.acknowledged     transfer_id:16 || peer:2 || message_kind:u8 || message:digest
                                    || peer_log_index:u64 (the peer's receipt for our message)
    kind 9 offer.refused            transfer_id:16 || peer:2 || package:digest || reason:str8 (a reason
                                    code, `REASON_CODE`) || text:digest
    kind 8 offer.refused            transfer_id:16 || peer:2 || package:digest || reason:str8 (the
                                    refusal's text in clear): written before migration 0009, still read

Pages (kinds 19-21; 16-18 before migration 0009, still read), by the school that issued them:

    page_id:16 || record:digest || school:str8 || school_year:str8 || version:u32
    || page_digest:digest || actor:str8 || extra

    kind 19 (16) page.added       extra = (none)
    kind 20 (17) page.replaced    extra = voided:u16 (signatures voided by the replacement)
    kind 21 (18) page.locked      extra = signatures:u16

Teachers and handoffs (kinds 32-35); teacher ids are the node's opaque ids:

    kind 36 teacher.left        handoff_id:16 || school:str8 || teacher:16 || reason:digest
                                || effective:u32 (days since 1970-01-01) || end:u32 (0: none) || actor:str8
    kind 32 teacher.departed    the same with reason:u8 (the reason code in clear) instead of its digest:
                                written before migration 0005, still read
    kind 33 duty.reassigned     handoff_id:16 (zero: not by a handoff) || school:str8 || duty:str8
                                || from:16 (zero: none) || to:16 || actor:str8
    kind 34 task.moved          handoff_id:16 (zero: not by a handoff) || page_id:16 || requirement:str8
                                || from:16 || to:16 || actor:str8
    kind 35 handoff.ended       handoff_id:16 || school:str8 || teacher:16 || actor:str8

In transfer entries `record` is SHA-256("hocba:record:v2:" || salt || lookup
code) and `reason` SHA-256("hocba:text:v2:" || salt || reason), where salt is
16 random bytes of the transfer, known to its two schools only: nobody else
can link a transfer's entries to a record (or to the record's later moves), or
confirm a guessed reason. A departure's `reason` is
SHA-256("hocba:departure-reason:v1:" || salt || code:u8), with 16 random bytes
of the handoff as salt (shown only to its school and the province's admins): a reason such as
maternity leave is the teacher's personal data, and five codes are too few to
commit to without a salt. In page entries of kinds 19-21 `record` is
SHA-256("hocba:page-record:v2:" || salt || page id || lookup code), salt being the
record's page salt of the time (`Record.page_salts`, re-drawn at each change of
custodian): a school that let the record go cannot match the entries of later
pages; kinds 16-18 hold SHA-256("hocba:page-record:v1:" || page id || lookup
code), unsalted. Kind 9's `text` is SHA-256("hocba:text:v2:" || transfer salt ||
the refusal's text): no text from a peer enters a leaf. Entry times never go
backwards along a log (`append_entry`). Decoding is strict: unknown versions or kinds,
truncated input, trailing bytes and a kind 9 reason that is not a code are refused.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import re
import struct
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

from transfer.domain.model import LogReceipt, Transfer, TransferState

if TYPE_CHECKING:
    from transfer.domain.ports import LogRepository

VERSION = 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


class LeafKind(enum.IntEnum):
    TRANSFER_REQUESTED = 1
    TRANSFER_ACCEPTED = 2
    TRANSFER_REJECTED = 3
    TRANSFER_CANCELLED = 4
    TRANSFER_EXPIRED = 5
    TRANSFER_OFFERED = 6
    MESSAGE_ACKNOWLEDGED = 7
    OFFER_REFUSED = 8  # before migration 0009: the refusal's text in clear (still decoded)
    OFFER_REFUSED_CODED = 9  # a refusal as its reason code and a salted digest of its text
    PAGE_ADDED = 16
    PAGE_REPLACED = 17
    PAGE_LOCKED = 18
    # Kinds 16-18 name the record unsalted (before migration 0009, still decoded);
    # 19-21 by the record's page salt (`page_record_digest`).
    PAGE_ADDED_SALTED = 19
    PAGE_REPLACED_SALTED = 20
    PAGE_LOCKED_SALTED = 21
    TEACHER_DEPARTED = 32  # before migration 0005: the reason code in clear (still decoded)
    DUTY_REASSIGNED = 33
    TASK_MOVED = 34
    HANDOFF_ENDED = 35
    TEACHER_LEFT = 36  # a departure or leave; its reason as a salted digest


TRANSFER_KINDS = frozenset(range(1, 6))
PAGE_KINDS = frozenset({16, 17, 18, 19, 20, 21})
SALTED_PAGE_KIND = {
    LeafKind.PAGE_ADDED: LeafKind.PAGE_ADDED_SALTED,
    LeafKind.PAGE_REPLACED: LeafKind.PAGE_REPLACED_SALTED,
    LeafKind.PAGE_LOCKED: LeafKind.PAGE_LOCKED_SALTED,
}
# A refusal's reason code as kind 9 holds it: an ErrorInfo reason (or a gRPC
# status code's name), never text.
REASON_CODE = re.compile(r"[A-Z][A-Z0-9_]{0,62}")
NO_ID = "0" * 32


_KIND_OF_STATE = {
    TransferState.REQUESTED: LeafKind.TRANSFER_REQUESTED,
    TransferState.ACCEPTED: LeafKind.TRANSFER_ACCEPTED,
    TransferState.REJECTED: LeafKind.TRANSFER_REJECTED,
    TransferState.CANCELLED: LeafKind.TRANSFER_CANCELLED,
    TransferState.EXPIRED: LeafKind.TRANSFER_EXPIRED,
}


class LeafError(ValueError):
    """Bytes that are not a leaf of this format."""


def record_digest(lookup_code: str, salt: bytes = b"") -> bytes:
    """The record as transfer entries name it: salted per transfer (see Transfer.salt)."""
    return hashlib.sha256(b"hocba:record:v2:" + salt + lookup_code.encode("ascii")).digest()


def text_digest(text: str, salt: bytes = b"") -> bytes:
    return hashlib.sha256(b"hocba:text:v2:" + salt + text.encode("utf-8")).digest()


def departure_reason_digest(reason: int, salt: bytes) -> bytes:
    """A departure's reason as its log entry names it: confirmable only by who knows the handoff's salt."""
    return hashlib.sha256(b"hocba:departure-reason:v1:" + salt + bytes([reason])).digest()


def page_record_digest(salt: bytes, page_id: str, lookup_code: str) -> bytes:
    """The record as a page's entries (kinds 19-21) name it: matched only by who knows the
    record's page salt of the time (`Record.page_salts`), not by whoever knows a lookup code."""
    assert len(salt) == 16, "a record's page salt is 16 bytes"
    return hashlib.sha256(
        b"hocba:page-record:v2:" + salt + page_id.encode("ascii") + lookup_code.encode("ascii")
    ).digest()


def legacy_page_record_digest(page_id: str, lookup_code: str) -> bytes:
    """The record as page entries of kinds 16-18 (before migration 0009) name it: unsalted,
    so anyone who knows the lookup code and reads the page id in the entry can match it."""
    return hashlib.sha256(b"hocba:page-record:v1:" + page_id.encode("ascii") + lookup_code.encode("ascii")).digest()


def reason_code(value: str) -> str:
    """`value` if it is a well-formed reason code (UPPER_SNAKE ASCII, at most 63 characters), else ""."""
    return value if REASON_CODE.fullmatch(value) else ""


def _us(instant: datetime) -> int:
    return (instant - _EPOCH) // _US


@dataclass(frozen=True, slots=True)
class TransferLeaf:
    """A transfer event as the log holds it."""

    kind: LeafKind
    time: datetime
    transfer_id: str
    record: bytes
    from_province: str
    from_school: str
    to_province: str
    to_school: str
    actor: str
    deadline: datetime | None = None  # kind 1
    reason: bytes | None = None  # kinds 3, 4

    def encode(self) -> bytes:
        out = bytearray(struct.pack(">BBQ", VERSION, self.kind, _us(self.time)))
        out += bytes.fromhex(self.transfer_id)
        out += self.record
        for province, school in ((self.from_province, self.from_school), (self.to_province, self.to_school)):
            out += _province(province)
            out += _str8(school)
        out += _str8(self.actor)
        if self.kind is LeafKind.TRANSFER_REQUESTED:
            assert self.deadline is not None
            out += struct.pack(">Q", _us(self.deadline))
        elif self.kind in (LeafKind.TRANSFER_REJECTED, LeafKind.TRANSFER_CANCELLED):
            assert self.reason is not None and len(self.reason) == 32
            out += self.reason
        return bytes(out)


def transfer_leaf(transfer: Transfer, actor: str, at: datetime) -> TransferLeaf:
    """The leaf recording `transfer` as it is right after a change by `actor`."""
    kind = _KIND_OF_STATE[transfer.state]
    return TransferLeaf(
        kind=kind,
        time=at,
        transfer_id=transfer.id,
        record=record_digest(transfer.lookup_code, transfer.salt),
        from_province=transfer.from_province,
        from_school=transfer.from_school,
        to_province=transfer.to_province,
        to_school=transfer.to_school,
        actor=actor,
        deadline=transfer.deadline if kind is LeafKind.TRANSFER_REQUESTED else None,
        reason=text_digest(transfer.reason, transfer.salt)
        if kind in (LeafKind.TRANSFER_REJECTED, LeafKind.TRANSFER_CANCELLED)
        else None,
    )


def _str8(value: str) -> bytes:
    raw = value.encode("utf-8")
    if len(raw) > 255:
        raise LeafError("string longer than 255 bytes")
    return bytes([len(raw)]) + raw


def _province(code: str) -> bytes:
    raw = code.encode("ascii")
    if len(raw) != 2:
        raise LeafError("province codes are two characters")
    return raw


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise LeafError("truncated leaf")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def u64(self) -> int:
        return int(struct.unpack(">Q", self.take(8))[0])

    def header(self) -> tuple[LeafKind, datetime]:
        """The version (which must be ours), kind and time every leaf starts with."""
        version, kind_value = self.take(1)[0], self.take(1)[0]
        if version != VERSION:
            raise LeafError(f"unknown leaf version {version}")
        try:
            kind = LeafKind(kind_value)
        except ValueError:
            raise LeafError(f"unknown leaf kind {kind_value}") from None
        return kind, _EPOCH + timedelta(microseconds=self.u64())

    def str8(self) -> str:
        try:
            return self.take(self.take(1)[0]).decode("utf-8")
        except UnicodeDecodeError:
            raise LeafError("string is not UTF-8") from None

    def ascii(self, n: int) -> str:
        try:
            return self.take(n).decode("ascii")
        except UnicodeDecodeError:
            raise LeafError("not ASCII") from None


def decode_leaf(data: bytes) -> TransferLeaf:
    """The event a leaf records; LeafError if `data` is not exactly one valid leaf."""
    r = _Reader(data)
    kind, time = r.header()
    transfer_id = r.take(16).hex()
    record = r.take(32)
    from_province, from_school = r.ascii(2), r.str8()
    to_province, to_school = r.ascii(2), r.str8()
    actor = r.str8()
    deadline = reason = None
    if kind is LeafKind.TRANSFER_REQUESTED:
        deadline = _EPOCH + timedelta(microseconds=r.u64())
    elif kind in (LeafKind.TRANSFER_REJECTED, LeafKind.TRANSFER_CANCELLED):
        reason = r.take(32)
    if r.pos != len(data):
        raise LeafError("trailing bytes after the leaf")
    return TransferLeaf(
        kind, time, transfer_id, record, from_province, from_school, to_province, to_school, actor, deadline, reason
    )


# -- pages, teachers, handoffs --------------------------------------------------

_DAY = timedelta(days=1)
_EPOCH_DATE = date(1970, 1, 1)


def _days(d: date | None) -> int:
    return 0 if d is None else (d - _EPOCH_DATE).days


def _from_days(n: int) -> date | None:
    return None if n == 0 else _EPOCH_DATE + n * _DAY


def _header(kind: LeafKind, time: datetime) -> bytearray:
    return bytearray(struct.pack(">BBQ", VERSION, kind, _us(time)))


@dataclass(frozen=True, slots=True)
class PageLeaf:
    kind: LeafKind
    time: datetime
    page_id: str
    record: bytes
    school: str
    school_year: str
    version: int
    page_digest: bytes
    actor: str
    count: int = 0  # voided signatures (replaced) or signatures (locked)

    @property
    def salted(self) -> bool:
        """Whether `record` is salted with the record's page salt (kinds 19-21), not unsalted (16-18)."""
        return self.kind in SALTED_PAGE_KIND.values()

    def encode(self) -> bytes:
        out = _header(self.kind, self.time)
        out += bytes.fromhex(self.page_id) + self.record + _str8(self.school) + _str8(self.school_year)
        out += struct.pack(">I", self.version) + self.page_digest + _str8(self.actor)
        if self.kind not in (LeafKind.PAGE_ADDED, LeafKind.PAGE_ADDED_SALTED):
            out += struct.pack(">H", self.count)
        return bytes(out)


@dataclass(frozen=True, slots=True)
class DepartureLeaf:
    """A teacher leaving (kind 36): `reason` is `departure_reason_digest` of the
    reason code. Entries of kind 32 (before the salt) hold the code itself, as
    one byte."""

    time: datetime
    handoff_id: str
    school: str
    teacher_id: str
    reason: bytes
    effective: date
    end: date | None
    actor: str
    kind: LeafKind = LeafKind.TEACHER_LEFT

    def encode(self) -> bytes:
        assert len(self.reason) == (32 if self.kind is LeafKind.TEACHER_LEFT else 1)
        out = _header(self.kind, self.time)
        out += bytes.fromhex(self.handoff_id) + _str8(self.school) + bytes.fromhex(self.teacher_id) + self.reason
        out += struct.pack(">II", _days(self.effective), _days(self.end)) + _str8(self.actor)
        return bytes(out)


@dataclass(frozen=True, slots=True)
class MoveLeaf:
    """A duty reassigned (kind 33; `subject` is the duty key) or a task moved
    (kind 34; `subject` is the requirement, `page_id` the page)."""

    kind: LeafKind
    time: datetime
    handoff_id: str
    school: str
    subject: str
    from_teacher: str
    to_teacher: str
    actor: str
    page_id: str = NO_ID

    def encode(self) -> bytes:
        out = _header(self.kind, self.time) + bytes.fromhex(self.handoff_id)
        if self.kind is LeafKind.DUTY_REASSIGNED:
            out += _str8(self.school) + _str8(self.subject)
        else:
            out += bytes.fromhex(self.page_id) + _str8(self.subject)
        out += bytes.fromhex(self.from_teacher) + bytes.fromhex(self.to_teacher) + _str8(self.actor)
        return bytes(out)


@dataclass(frozen=True, slots=True)
class HandoffEndLeaf:
    time: datetime
    handoff_id: str
    school: str
    teacher_id: str
    actor: str
    kind: LeafKind = LeafKind.HANDOFF_ENDED

    def encode(self) -> bytes:
        out = _header(self.kind, self.time) + bytes.fromhex(self.handoff_id) + _str8(self.school)
        return bytes(out + bytes.fromhex(self.teacher_id) + _str8(self.actor))


# kind 7 when the peer's receipt names no entry of its log (it logged nothing for the message)
NO_PEER_ENTRY = 2**64 - 1


@dataclass(frozen=True, slots=True)
class PeerLeaf:
    """Kinds 6-9: what crossed (or failed to cross) to another node."""

    kind: LeafKind
    time: datetime
    transfer_id: str
    peer: str
    digest: bytes
    # the actor (kind 6), the refusal's reason code (kind 9) or, in kind 8 entries
    # written before migration 0009, the refusal's text
    text: str = ""
    message_kind: int = 0  # kind 7
    peer_log_index: int = 0  # kind 7
    details: bytes = b""  # kind 9: text_digest of the refusal's text

    def encode(self) -> bytes:
        out = _header(self.kind, self.time) + bytes.fromhex(self.transfer_id) + _province(self.peer)
        if self.kind is LeafKind.MESSAGE_ACKNOWLEDGED:
            out += struct.pack(">B", self.message_kind) + self.digest + struct.pack(">Q", self.peer_log_index)
        elif self.kind is LeafKind.OFFER_REFUSED_CODED:
            if not REASON_CODE.fullmatch(self.text):
                raise LeafError("a refusal's reason code is UPPER_SNAKE ASCII, 1 to 63 characters")
            assert len(self.details) == 32
            out += self.digest + _str8(self.text) + self.details
        else:
            out += self.digest + _str8(self.text)
        return bytes(out)


LogLeaf = TransferLeaf | PageLeaf | DepartureLeaf | MoveLeaf | HandoffEndLeaf | PeerLeaf
_PEER_KINDS = frozenset(
    {LeafKind.TRANSFER_OFFERED, LeafKind.MESSAGE_ACKNOWLEDGED, LeafKind.OFFER_REFUSED, LeafKind.OFFER_REFUSED_CODED}
)


def entry_time(data: bytes) -> datetime:
    """The time a leaf's header gives (every kind starts with version, kind and time)."""
    return _Reader(data[:10]).header()[1]


def append_entry(log: LogRepository, leaf: LogLeaf) -> LogReceipt:
    """Append `leaf` to the log, its time raised to the time of the log's last entry if it is
    earlier: entry times never go backwards within one log, whatever the clock did (stepped
    back, or a time taken from elsewhere). The receipt holds the bytes as appended."""
    last = log.last_leaf()
    if last is not None:
        floor = entry_time(last)
        if leaf.time < floor:
            leaf = dataclasses.replace(leaf, time=floor)
    data = leaf.encode()
    return LogReceipt(log.append(data), data)


def decode_any(data: bytes) -> LogLeaf:
    """The event any leaf records (see the module docstring for the layouts)."""
    if len(data) >= 2 and data[1] in TRANSFER_KINDS:
        return decode_leaf(data)
    r = _Reader(data)
    kind, time = r.header()
    leaf: LogLeaf
    if kind in _PEER_KINDS:
        transfer_id, peer = r.take(16).hex(), r.ascii(2)
        if kind is LeafKind.MESSAGE_ACKNOWLEDGED:
            message_kind, digest = r.take(1)[0], r.take(32)
            leaf = PeerLeaf(kind, time, transfer_id, peer, digest, "", message_kind, r.u64())
        elif kind is LeafKind.OFFER_REFUSED_CODED:
            digest, code = r.take(32), r.str8()
            if not REASON_CODE.fullmatch(code):
                raise LeafError("a refusal's reason code is UPPER_SNAKE ASCII, 1 to 63 characters")
            leaf = PeerLeaf(kind, time, transfer_id, peer, digest, code, details=r.take(32))
        else:
            leaf = PeerLeaf(kind, time, transfer_id, peer, r.take(32), r.str8())
    elif kind in PAGE_KINDS:
        page_id, record = r.take(16).hex(), r.take(32)
        school, year = r.str8(), r.str8()
        version_no = int(struct.unpack(">I", r.take(4))[0])
        digest, actor = r.take(32), r.str8()
        added = kind in (LeafKind.PAGE_ADDED, LeafKind.PAGE_ADDED_SALTED)
        count = 0 if added else int(struct.unpack(">H", r.take(2))[0])
        leaf = PageLeaf(kind, time, page_id, record, school, year, version_no, digest, actor, count)
    elif kind in (LeafKind.TEACHER_LEFT, LeafKind.TEACHER_DEPARTED):
        handoff_id, school, teacher = r.take(16).hex(), r.str8(), r.take(16).hex()
        reason = r.take(32 if kind is LeafKind.TEACHER_LEFT else 1)
        effective, end = struct.unpack(">II", r.take(8))
        start = _from_days(effective)
        if start is None:
            raise LeafError("a departure needs an effective date")
        leaf = DepartureLeaf(time, handoff_id, school, teacher, reason, start, _from_days(end), r.str8(), kind)
    elif kind in (LeafKind.DUTY_REASSIGNED, LeafKind.TASK_MOVED):
        handoff_id = r.take(16).hex()
        if kind is LeafKind.DUTY_REASSIGNED:
            school, page_id, subject = r.str8(), NO_ID, ""
            subject = r.str8()
        else:
            school, page_id, subject = "", r.take(16).hex(), r.str8()
        from_t, to_t = r.take(16).hex(), r.take(16).hex()
        leaf = MoveLeaf(kind, time, handoff_id, school, subject, from_t, to_t, r.str8(), page_id)
    else:
        handoff_id, school, teacher = r.take(16).hex(), r.str8(), r.take(16).hex()
        leaf = HandoffEndLeaf(time, handoff_id, school, teacher, r.str8())
    if r.pos != len(data):
        raise LeafError("trailing bytes after the leaf")
    return leaf
