"""Page tokens (AIP-158) and watch cursors: opaque, sealed, bound to caller and query.

Both are outside data that this node once handed out. A token carries the
last key of the previous page; a cursor the sequence number of the last event
a watcher received. Both are sealed with AES-SIV (RFC 5297, deterministic
authenticated encryption) under keys derived from the node's secret (stored
in its database, so every process on that database and every restart reads
the same tokens; see docs/protocol.md): what they carry is hidden, and
anything the node did not seal itself for this caller (forged, truncated,
re-encoded, another caller's, another node's) fails authentication and is
refused with INVALID_PAGE_TOKEN / INVALID_CURSOR before anything reads it.

The caller's principal is authenticated data of the seal; the digest of the
query's filters is inside, so that a token replayed against another query of
the same caller is told apart ("belongs to a different query").
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Generic, TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from transfer.domain.errors import FieldViolation, InvalidArgument, Violations
from transfer.domain.model import Actor, TransferEvent, TransferState

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
# Tokens this service issues are at most a few hundred characters; longer ones are not read.
MAX_TOKEN = 1024
# The bytes of the node's secret the keys are derived from.
SECRET_BYTES = 32

_VERSION = b"\x01"
_DIGEST = 16  # bytes of the filter digest inside a page token
_URLSAFE = re.compile(r"[A-Za-z0-9_-]*")
_KEY_INT, _KEY_STR = b"i", b"s"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class PageRequest:
    size: int
    after: str | int | None


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a watch stream resumes: after event `seq`, whose identity was `mark`."""

    seq: int
    mark: bytes


def event_mark(transfer_id: str, state: TransferState, occurred_at: datetime) -> bytes:
    """What identifies the event at a sequence number (to tell a restored database's reissued numbers apart)."""
    us = (occurred_at - _EPOCH) // timedelta(microseconds=1)
    return hashlib.sha256(f"{transfer_id}/{int(state)}/{us}".encode()).digest()[:16]


def _filter_digest(filters: tuple[object, ...]) -> bytes:
    return hashlib.sha256(repr(filters).encode()).digest()[:_DIGEST]


def _subkey(secret: bytes, purpose: bytes) -> bytes:
    return HKDF(hashes.SHA256(), 64, salt=None, info=b"hocba " + purpose).derive(secret)


def _encode(sealed: bytes) -> str:
    return base64.urlsafe_b64encode(_VERSION + sealed).rstrip(b"=").decode()


def _decode(value: str) -> bytes:
    """The sealed bytes of a token exactly as `_encode` writes it (no padding, no other alphabet)."""
    if len(value) > MAX_TOKEN or not _URLSAFE.fullmatch(value):
        raise ValueError("not a token")
    raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    if _encode(raw[1:]) != value or raw[:1] != _VERSION:
        raise ValueError("not in canonical form")
    return raw[1:]


class Tokens:
    """Seals and opens this node's page tokens and watch cursors."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < SECRET_BYTES:
            raise ValueError(f"the node secret must have at least {SECRET_BYTES} bytes")
        self._pages = AESSIV(_subkey(secret, b"page tokens v1"))
        self._cursors = AESSIV(_subkey(secret, b"watch cursors v1"))

    # -- page tokens ------------------------------------------------------

    def page_request(
        self,
        actor: Actor,
        page_size: int,
        page_token: str,
        filters: tuple[object, ...],
        max_size: int = MAX_PAGE_SIZE,
    ) -> PageRequest:
        """Validate size and token; sizes above the maximum are coerced down."""
        v = Violations()
        if page_size < 0:
            v.add("page_size", "must not be negative", "INVALID_PAGE_SIZE")
        v.raise_if_any()
        size = min(page_size or DEFAULT_PAGE_SIZE, max_size)
        if not page_token:
            return PageRequest(size, None)
        try:
            plain = self._pages.decrypt(_decode(page_token), [_VERSION, actor.principal.encode()])
        except (ValueError, binascii.Error, InvalidTag) as exc:
            raise _bad_token("page_token is not one this node issued to you", "not issued to this caller") from exc
        digest, kind, body = plain[:_DIGEST], plain[_DIGEST : _DIGEST + 1], plain[_DIGEST + 1 :]
        if digest != _filter_digest(filters):
            raise _bad_token("page_token belongs to a different query", "belongs to a different query")
        try:
            if kind == _KEY_INT and len(body) == 8:
                return PageRequest(size, struct.unpack(">q", body)[0])
            if kind == _KEY_STR:
                return PageRequest(size, body.decode())
        except UnicodeDecodeError:
            pass
        raise _bad_token("page_token is not one this node issued to you", "malformed")  # not sealed by this code

    def next_token(self, actor: Actor, last_key: str | int, filters: tuple[object, ...]) -> str:
        """The token of the page after `last_key` of this caller's query."""
        body = _KEY_INT + struct.pack(">q", last_key) if isinstance(last_key, int) else _KEY_STR + last_key.encode()
        sealed = self._pages.encrypt(_filter_digest(filters) + body, [_VERSION, actor.principal.encode()])
        return _encode(sealed)

    # -- watch cursors ----------------------------------------------------

    def cursor(self, actor: Actor, school: str, event: TransferEvent) -> str:
        """The cursor after `event` in `actor`'s stream of `school`: fixed length, its number hidden."""
        mark = event_mark(event.transfer.id, event.transfer.state, event.occurred_at)
        plain = struct.pack(">Q", event.seq) + mark
        return _encode(self._cursors.encrypt(plain, _cursor_context(actor, school)))

    def parse_cursor(self, actor: Actor, school: str, value: str) -> Cursor | None:
        """The position a cursor stands for (None for an empty cursor: from the start)."""
        if not value:
            return None
        try:
            plain = self._cursors.decrypt(_decode(value), _cursor_context(actor, school))
            if len(plain) != 24:
                raise ValueError("not a cursor of this version")
        except (ValueError, binascii.Error, InvalidTag) as exc:
            raise bad_cursor("cursor is not one this node issued to you for this school") from exc
        return Cursor(struct.unpack(">Q", plain[:8])[0], plain[8:])


def _cursor_context(actor: Actor, school: str) -> list[bytes]:
    return [_VERSION, b"cursor", actor.principal.encode(), school.encode()]


def bad_cursor(message: str) -> InvalidArgument:
    return InvalidArgument(
        "INVALID_CURSOR",
        message,
        field_violations=(FieldViolation("cursor", "not a cursor this node issued", "INVALID_CURSOR"),),
    )


def _bad_token(message: str, why: str) -> InvalidArgument:
    return InvalidArgument(
        "INVALID_PAGE_TOKEN", message, field_violations=(FieldViolation("page_token", why, "INVALID_PAGE_TOKEN"),)
    )


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a listing and the token of the next (empty on the last)."""

    items: list[T]
    next_page_token: str
