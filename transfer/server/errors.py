"""Domain refusals as gRPC statuses with google.rpc details (AIP-193).

One table maps each exception type to its code. Every status carries an
`ErrorInfo` (stable reason, domain, metadata) and, where it applies,
`BadRequest` field violations, `PreconditionFailure` or `ResourceInfo`.
"""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from transfer.domain.errors import (
    AlreadyExists,
    DataLoss,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    OutOfRange,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)

ERROR_DOMAIN = "transfer.hocba.vn"

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


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def to_status(err: DomainError) -> grpc.Status:
    code = code_of(err)
    details = [
        _pack(error_details_pb2.ErrorInfo(reason=err.reason, domain=ERROR_DOMAIN, metadata=err.metadata)),
    ]
    if err.field_violations:
        details.append(
            _pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field=v.field, description=v.description, reason=v.reason
                        )
                        for v in err.field_violations
                    ]
                )
            )
        )
    if err.precondition_violations:
        details.append(
            _pack(
                error_details_pb2.PreconditionFailure(
                    violations=[
                        error_details_pb2.PreconditionFailure.Violation(
                            type=v.type, subject=v.subject, description=v.description
                        )
                        for v in err.precondition_violations
                    ]
                )
            )
        )
    if err.resource is not None:
        kind, name = err.resource
        details.append(_pack(error_details_pb2.ResourceInfo(resource_type=kind, resource_name=name)))
    status = status_pb2.Status(code=getattr(code_pb2, code.name), message=err.message, details=details)
    return rpc_status.to_status(status)
