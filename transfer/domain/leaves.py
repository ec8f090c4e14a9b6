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

`record` is SHA-256("hocba:record:v1:" || lookup code): whoever knows a
record's lookup code can find its entries; nobody can read the code back.
`reason` is SHA-256 of the reason's UTF-8 text. Decoding is strict: unknown
versions or kinds, truncated input and trailing bytes are refused.
"""

from __future__ import annotations

import enum
import hashlib
import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from transfer.domain.model import Transfer, TransferState

VERSION = 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


class LeafKind(enum.IntEnum):
    TRANSFER_REQUESTED = 1
    TRANSFER_ACCEPTED = 2
    TRANSFER_REJECTED = 3
    TRANSFER_CANCELLED = 4
    TRANSFER_EXPIRED = 5


_KIND_OF_STATE = {
    TransferState.REQUESTED: LeafKind.TRANSFER_REQUESTED,
    TransferState.ACCEPTED: LeafKind.TRANSFER_ACCEPTED,
    TransferState.REJECTED: LeafKind.TRANSFER_REJECTED,
    TransferState.CANCELLED: LeafKind.TRANSFER_CANCELLED,
    TransferState.EXPIRED: LeafKind.TRANSFER_EXPIRED,
}


class LeafError(ValueError):
    """Bytes that are not a leaf of this format."""


def record_digest(lookup_code: str) -> bytes:
    return hashlib.sha256(b"hocba:record:v1:" + lookup_code.encode("ascii")).digest()


def text_digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


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
        record=record_digest(transfer.lookup_code),
        from_province=transfer.from_province,
        from_school=transfer.from_school,
        to_province=transfer.to_province,
        to_school=transfer.to_school,
        actor=actor,
        deadline=transfer.deadline if kind is LeafKind.TRANSFER_REQUESTED else None,
        reason=text_digest(transfer.reason)
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
    version, kind_value = r.take(1)[0], r.take(1)[0]
    if version != VERSION:
        raise LeafError(f"unknown leaf version {version}")
    try:
        kind = LeafKind(kind_value)
    except ValueError:
        raise LeafError(f"unknown leaf kind {kind_value}") from None
    time = _EPOCH + timedelta(microseconds=r.u64())
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
