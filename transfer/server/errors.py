"""Domain refusals as gRPC statuses with google.rpc details (AIP-193).

One table maps each exception type to its code. Every status carries an
`ErrorInfo` (stable reason, domain, metadata) and, where it applies,
`BadRequest` field violations, `PreconditionFailure` or `ResourceInfo`.

Every refusal passes through `to_status`, which also bounds it. A status
travels in the response's trailers: gRPC's message (percent-encoded) and the
encoded `google.rpc.Status` (base64). A client with gRPC's default settings
refuses trailers over 8 KiB and sees RESOURCE_EXHAUSTED instead of the
refusal, and refusals quote what they refuse: one 1 MiB `update_mask` path
made a 2 MiB status, 1,000 duplicate requirements 52 KB. So the bounds below
hold for every refusal, whatever its cause says; worst case (a message of
non-ASCII letters) both trailers together stay under 4.5 KiB.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from transfer.domain.errors import (
    AlreadyExists,
    DataLoss,
    DomainError,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    OutOfRange,
    PermissionDenied,
    PreconditionViolation,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)

ERROR_DOMAIN = "transfer.hocba.vn"

# The bounds of every refusal (see the module's docstring).
QUOTE_CHARS = 40  # of a value a message quotes (`quote`)
TEXT_BYTES = 160  # UTF-8 bytes of any one text of the details: a field path, a description, a subject, a value
MESSAGE_BYTES = 400  # UTF-8 bytes of the status message
VIOLATIONS_LISTED = 10  # field violations, and precondition violations, listed; ErrorInfo counts the rest
STATUS_BYTES = 2048  # the encoded google.rpc.Status, message and details together
CLIPPED = "…"

CODES: dict[type[DomainError], grpc.StatusCode] = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
    OutOfRange: grpc.StatusCode.OUT_OF_RANGE,
    DataLoss: grpc.StatusCode.DATA_LOSS,
    ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
}


def code_of(err: DomainError) -> grpc.StatusCode:
    for cls in type(err).__mro__:
        if cls in CODES:
            return CODES[cls]
    return grpc.StatusCode.UNKNOWN


def quote(value: str) -> str:
    """`value` for a refusal's message: quoted, at most its first QUOTE_CHARS characters, and its length if longer."""
    if len(value) <= QUOTE_CHARS:
        return repr(value)
    return f"{value[:QUOTE_CHARS]!r}{CLIPPED} ({len(value)} characters)"


def clip(text: str, limit: int) -> str:
    """`text` cut to at most `limit` UTF-8 bytes (whole characters), marked where it was cut."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[: limit - len(CLIPPED.encode())].decode("utf-8", errors="ignore") + CLIPPED


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def _field(v: FieldViolation) -> error_details_pb2.BadRequest.FieldViolation:
    return error_details_pb2.BadRequest.FieldViolation(
        field=clip(v.field, TEXT_BYTES), description=clip(v.description, TEXT_BYTES), reason=clip(v.reason, TEXT_BYTES)
    )


def _precondition(v: PreconditionViolation) -> error_details_pb2.PreconditionFailure.Violation:
    return error_details_pb2.PreconditionFailure.Violation(
        type=clip(v.type, TEXT_BYTES), subject=clip(v.subject, TEXT_BYTES), description=clip(v.description, TEXT_BYTES)
    )


def _status(err: DomainError, code: grpc.StatusCode, fields: int, preconditions: int) -> status_pb2.Status:
    """The status listing the first `fields` field and `preconditions` precondition violations."""
    metadata = {clip(k, TEXT_BYTES): clip(v, TEXT_BYTES) for k, v in err.metadata.items()}
    message = err.message
    not_listed = len(err.field_violations) - fields + len(err.precondition_violations) - preconditions
    if len(err.field_violations) > fields:
        metadata["field_violations_not_listed"] = str(len(err.field_violations) - fields)
    if len(err.precondition_violations) > preconditions:
        metadata["precondition_violations_not_listed"] = str(len(err.precondition_violations) - preconditions)
    if not_listed:
        suffix = f" ({not_listed} more violations not listed)"
        message = clip(message, MESSAGE_BYTES - len(suffix.encode())) + suffix
    details = [
        _pack(error_details_pb2.ErrorInfo(reason=err.reason, domain=ERROR_DOMAIN, metadata=metadata)),
    ]
    if fields:
        details.append(
            _pack(error_details_pb2.BadRequest(field_violations=[_field(v) for v in err.field_violations[:fields]]))
        )
    if preconditions:
        violations = [_precondition(v) for v in err.precondition_violations[:preconditions]]
        details.append(_pack(error_details_pb2.PreconditionFailure(violations=violations)))
    if err.resource is not None:
        kind, name = err.resource
        details.append(
            _pack(
                error_details_pb2.ResourceInfo(
                    resource_type=clip(kind, TEXT_BYTES), resource_name=clip(name, TEXT_BYTES)
                )
            )
        )
    return status_pb2.Status(code=getattr(code_pb2, code.name), message=clip(message, MESSAGE_BYTES), details=details)


def to_status(err: DomainError) -> grpc.Status:
    """The refusal as a gRPC status, within the bounds above: the violations that fit are listed, in order."""
    code = code_of(err)
    fields = min(len(err.field_violations), VIOLATIONS_LISTED)
    preconditions = min(len(err.precondition_violations), VIOLATIONS_LISTED)
    status = _status(err, code, fields, preconditions)
    while status.ByteSize() > STATUS_BYTES and (fields or preconditions):
        # Long violations: list fewer (the last of the longer list first), and count them.
        if fields >= preconditions:
            fields -= 1
        else:
            preconditions -= 1
        status = _status(err, code, fields, preconditions)
    if status.ByteSize() > STATUS_BYTES:  # no violation listed, yet too large: the reason and message alone
        info = error_details_pb2.ErrorInfo(reason=clip(err.reason, TEXT_BYTES), domain=ERROR_DOMAIN)
        status = status_pb2.Status(code=status.code, message=status.message, details=[_pack(info)])
    return rpc_status.to_status(status)


def reason_in(trailing_metadata: Iterable[tuple[str, Any]] | None) -> str:
    """The ErrorInfo reason a status in `trailing_metadata` (its `grpc-status-details-bin` entry) carries, if any:
    what `to_status` put there, read back (a peer's refusal, a call this node aborted)."""
    for key, value in trailing_metadata or ():
        if key != "grpc-status-details-bin" or not isinstance(value, bytes):
            continue
        try:
            status = status_pb2.Status.FromString(value)
        except DecodeError:
            return ""
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info):
                return str(info.reason)
    return ""
