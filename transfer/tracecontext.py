"""Trace ids: the W3C Trace Context `traceparent` value, and the trace of the call under way.

A `traceparent` (https://www.w3.org/TR/trace-context/#traceparent-header) reads
`00-<trace-id: 32 hex>-<parent-id: 16 hex>-<trace-flags: 2 hex>`, lower-case hex
only. `parse` follows the spec's rules: version `ff` is invalid; version `00` is
exactly 55 characters; a higher version is read by its first four fields (55
characters, then either the end or a `-`); an all-zero trace id or parent id is
invalid. An invalid value gives None: the caller starts a new trace, never refuses.

`current_trace_id` holds the trace id of the call being served (the node's call
log interceptor sets it; the writer runs each command in its caller's context),
so log lines made anywhere during the call, and the outbox messages it writes,
carry it. Pure: no grpc here.
"""

from __future__ import annotations

import secrets
from contextvars import ContextVar
from dataclasses import dataclass

TRACEPARENT = "traceparent"
_HEX = frozenset("0123456789abcdef")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16

current_trace_id: ContextVar[str] = ContextVar("current_trace_id", default="")


def _hex(text: str, size: int) -> bool:
    return len(text) == size and _HEX.issuperset(text)


@dataclass(frozen=True, slots=True)
class TraceParent:
    trace_id: str  # 32 lower-case hex digits, not all zero
    span_id: str  # 16 lower-case hex digits, not all zero: the sender's span (the parent-id)
    flags: str = "01"

    def header(self) -> str:
        """As a version-00 traceparent value."""
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"

    def child(self) -> TraceParent:
        """The same trace, from a new span (ours)."""
        return TraceParent(self.trace_id, new_span_id(), self.flags)


def new_trace_id() -> str:
    """16 random bytes as hex (never all zero in practice; re-drawn if it were)."""
    while True:
        value = secrets.token_hex(16)
        if value != _ZERO_TRACE:
            return value


def new_span_id() -> str:
    while True:
        value = secrets.token_hex(8)
        if value != _ZERO_SPAN:
            return value


def new_trace() -> TraceParent:
    return TraceParent(new_trace_id(), new_span_id())


def parse(value: str) -> TraceParent | None:
    """The traceparent `value` says, or None when it is not a valid one (W3C Trace Context, level 1)."""
    if len(value) < 55:
        return None
    version = value[:2]
    if not _hex(version, 2) or version == "ff":
        return None
    if version == "00" and len(value) != 55:
        return None
    if len(value) > 55 and value[55] != "-":  # a later version's further fields follow a dash
        return None
    if value[2] != "-" or value[35] != "-" or value[52] != "-":
        return None
    trace_id, span_id, flags = value[3:35], value[36:52], value[53:55]
    if not (_hex(trace_id, 32) and _hex(span_id, 16) and _hex(flags, 2)):
        return None
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    return TraceParent(trace_id, span_id, flags)
