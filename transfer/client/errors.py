"""Typed exceptions for callers of the service, carrying the server's reason.

Every failed call raises a subclass of `TransferError` with the gRPC code,
the stable `reason` from the status's ErrorInfo, the message, the field
or precondition violations the server listed, and the call's `trace_id` (the
one the node's log line for the call carries).
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from transfer.tracecontext import TRACEPARENT, parse

# Codes a retry may fix. Every mutating call carries a request_id the server
# deduplicates, so retrying a mutation is as safe as retrying a read.
#
# CANCELLED is here too: this client never cancels a unary call itself, and a
# gRPC server that is shutting down answers calls it had received but not yet
# handed to a handler with CANCELLED instead of UNAVAILABLE
# (grpc/grpc#41785). Such a call was not executed; retrying it is safe.
TRANSIENT = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.CANCELLED,
    }
)


@dataclass(frozen=True)
class Violation:
    field: str
    description: str
    reason: str = ""


@dataclass(frozen=True)
class Precondition:
    type: str
    subject: str
    description: str


class TransferError(Exception):
    """A call the service refused or could not complete."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(
        self,
        code: grpc.StatusCode,
        reason: str,
        message: str,
        *,
        violations: tuple[Violation, ...] = (),
        preconditions: tuple[Precondition, ...] = (),
        metadata: dict[str, str] | None = None,
        trace_id: str = "",
    ) -> None:
        super().__init__(f"{code.name} {reason}: {message}" if reason else f"{code.name}: {message}")
        self.code = code
        self.reason = reason
        self.message = message
        self.violations = violations
        self.preconditions = preconditions
        self.metadata = metadata or {}
        # The W3C trace id of the call (32 hex digits): grep the node's log for it. "" when unknown.
        self.trace_id = trace_id

    @property
    def transient(self) -> bool:
        # RESOURCE_EXHAUSTED with a reason is a refusal the server sent on purpose (every refusal of the
        # node carries an ErrorInfo); without one it is gRPC's own (a server's limit of concurrent calls).
        if self.code is grpc.StatusCode.RESOURCE_EXHAUSTED and self.reason:
            return False
        return self.code in TRANSIENT


class InvalidArgument(TransferError):
    pass


class NotFound(TransferError):
    pass


class AlreadyExists(TransferError):
    pass


class PermissionDenied(TransferError):
    pass


class FailedPrecondition(TransferError):
    pass


class Unauthenticated(TransferError):
    pass


class Unavailable(TransferError):
    pass


class DeadlineExceeded(TransferError):
    pass


class Internal(TransferError):
    pass


_BY_CODE: dict[grpc.StatusCode, type[TransferError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.INTERNAL: Internal,
}


def _trace_in(call: grpc.Call | None) -> str:
    """The trace id of the node's `traceparent` trailing metadata entry, or ""."""
    try:
        trailing = call.trailing_metadata() if call is not None else None
    except Exception:  # a call object that cannot tell: no trace id then
        return ""
    for key, value in trailing or ():
        if key == TRACEPARENT and isinstance(value, str):
            parent = parse(value)
            return parent.trace_id if parent is not None else ""
    return ""


def from_rpc_error(err: grpc.RpcError, trace_id: str = "") -> TransferError:
    """The typed error for a failed call, with the details the server sent.

    `trace_id`: the trace the caller sent; without it, the one the node's trailing metadata names."""
    call = err if isinstance(err, grpc.Call) else None
    code = call.code() if call is not None else grpc.StatusCode.UNKNOWN
    message = (call.details() if call is not None else str(err)) or ""
    reason = ""
    violations: list[Violation] = []
    preconditions: list[Precondition] = []
    metadata: dict[str, str] = {}
    try:
        status = rpc_status.from_call(call) if call is not None else None
    except (ValueError, DecodeError):  # a trailer that does not parse or contradicts the status: ignore it
        status = None
    if status is not None:
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason = info.reason
                metadata = dict(info.metadata)
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                violations += [Violation(v.field, v.description, v.reason) for v in bad.field_violations]
            elif detail.Is(error_details_pb2.PreconditionFailure.DESCRIPTOR):
                pf = error_details_pb2.PreconditionFailure()
                detail.Unpack(pf)
                preconditions += [Precondition(v.type, v.subject, v.description) for v in pf.violations]
    cls = _BY_CODE.get(code, TransferError)
    return cls(
        code,
        reason,
        message,
        violations=tuple(violations),
        preconditions=tuple(preconditions),
        metadata=metadata,
        trace_id=trace_id or _trace_in(call),
    )


__all__ = [
    "TRANSIENT",
    "AlreadyExists",
    "DeadlineExceeded",
    "FailedPrecondition",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "Precondition",
    "TransferError",
    "Unauthenticated",
    "Unavailable",
    "Violation",
    "from_rpc_error",
]
