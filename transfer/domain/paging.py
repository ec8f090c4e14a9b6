"""Opaque page tokens (AIP-158) bound to the query they continue.

A token carries the last key of the previous page and a digest of the
query's filters, so a token replayed against another query is refused rather
than silently returning the wrong rows.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Generic, TypeVar

from transfer.domain.errors import FieldViolation, InvalidArgument, Violations

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
# Tokens this service issues are a few hundred characters; longer ones are not read.
MAX_TOKEN = 1024


@dataclass(frozen=True, slots=True)
class PageRequest:
    size: int
    after: str | int | None


def _filter_digest(filters: tuple[object, ...]) -> str:
    return hashlib.sha256(repr(filters).encode()).hexdigest()[:16]


def page_request(
    page_size: int, page_token: str, filters: tuple[object, ...], max_size: int = MAX_PAGE_SIZE
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
        if len(page_token) > MAX_TOKEN:
            raise ValueError("token too long")
        raw = json.loads(base64.urlsafe_b64decode(page_token.encode() + b"=" * (-len(page_token) % 4)))
        key, digest = raw["k"], raw["f"]
        if not isinstance(key, (str, int)) or isinstance(key, bool):
            raise ValueError("bad key")
        # Keys go to the database: integers within 64 bits, strings of a sane length.
        if isinstance(key, int) and not -(2**63) <= key < 2**63:
            raise ValueError("key out of range")
        if isinstance(key, str) and len(key) > 200:
            raise ValueError("key too long")
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise InvalidArgument(
            "INVALID_PAGE_TOKEN",
            "page_token is not one this service issued",
            field_violations=_token_violation("malformed"),
        ) from exc
    if digest != _filter_digest(filters):
        raise InvalidArgument(
            "INVALID_PAGE_TOKEN",
            "page_token belongs to a different query",
            field_violations=_token_violation("belongs to a different query"),
        )
    return PageRequest(size, key)


def next_token(last_key: str | int, filters: tuple[object, ...]) -> str:
    payload = json.dumps({"k": last_key, "f": _filter_digest(filters)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).rstrip(b"=").decode()


def _token_violation(why: str) -> tuple[FieldViolation, ...]:
    return (FieldViolation("page_token", why, "INVALID_PAGE_TOKEN"),)


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a listing and the token of the next (empty on the last)."""

    items: list[T]
    next_page_token: str
