"""The wire contract: enum numbers agree with the domain, and errors carry their details."""

from __future__ import annotations

from google.rpc import error_details_pb2, status_pb2

from transfer.domain import model
from transfer.domain.errors import FailedPrecondition, FieldViolation, InvalidArgument, PreconditionViolation
from transfer.server.errors import ERROR_DOMAIN, to_status
from transfer.v1 import common_pb2, records_pb2, transfers_pb2


def _pairs(domain_enum: type, proto_enum: object, prefix: str) -> None:
    proto_values = {name.removeprefix(prefix): num for name, num in proto_enum.items()}  # type: ignore[attr-defined]
    assert proto_values.pop("UNSPECIFIED") == 0
    assert {m.name: m.value for m in domain_enum} == proto_values


def test_domain_enums_match_proto_enums() -> None:
    """Every domain enum has the same names and numbers as its proto enum (conversion is a cast)."""
    _pairs(model.TransferState, transfers_pb2.TransferState, "TRANSFER_STATE_")
    _pairs(model.TransferScope, transfers_pb2.TransferScope, "TRANSFER_SCOPE_")
    _pairs(model.TransferDirection, transfers_pb2.TransferDirection, "TRANSFER_DIRECTION_")
    _pairs(model.RecordLevel, common_pb2.RecordLevel, "RECORD_LEVEL_")
    _pairs(model.RecordStatus, records_pb2.RecordStatus, "RECORD_STATUS_")


def test_status_details() -> None:
    """A refusal becomes a google.rpc.Status with ErrorInfo plus BadRequest or PreconditionFailure."""
    err = InvalidArgument("BAD", "x: bad", field_violations=(FieldViolation("x", "bad", "BAD"),), metadata={"k": "v"})
    trailer = dict(to_status(err).trailing_metadata)["grpc-status-details-bin"]
    proto = status_pb2.Status.FromString(trailer)
    assert proto.code == 3 and proto.message == "x: bad"
    info, bad = error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest()
    assert proto.details[0].Unpack(info) and proto.details[1].Unpack(bad)
    assert (info.reason, info.domain, dict(info.metadata)) == ("BAD", ERROR_DOMAIN, {"k": "v"})
    assert [(v.field, v.reason) for v in bad.field_violations] == [("x", "BAD")]

    err2 = FailedPrecondition("NOPE", "no", precondition_violations=(PreconditionViolation("T", "s", "d"),))
    proto2 = status_pb2.Status.FromString(dict(to_status(err2).trailing_metadata)["grpc-status-details-bin"])
    pf = error_details_pb2.PreconditionFailure()
    assert proto2.code == 9 and proto2.details[1].Unpack(pf) and pf.violations[0].type == "T"
