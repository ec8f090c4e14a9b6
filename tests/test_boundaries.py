"""What a node answers at its edge to input no servicer should have to see: request bytes that are not the
method's message."""

from __future__ import annotations

import base64
import logging
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from tests.support import RunningNode, db_snapshot
from transfer.client import ClientTls, RetryPolicy
from transfer.client.errors import TransferError
from transfer.v1 import schools_pb2

# gRPC's default limit on the metadata a client accepts (grpc.max_metadata_size); trailers above it are
# refused and the call fails with RESOURCE_EXHAUSTED.
GRPC_DEFAULT_METADATA_LIMIT = 8 * 1024
INTERNAL_NAMES = ("DecodeError", "google.protobuf", "Unexpected", "<class", "Traceback", "grpc")

NOT_PROTOBUF = b"\xff\xff\xff\xff\x0f"  # field number 0 is invalid, wire type 7 does not exist


def bad_utf8(field: int) -> bytes:
    """The string field `field` (wire type 2) holding two bytes that are not UTF-8."""
    return bytes([field << 3 | 2, 2, 0xFF, 0xFE])


def not_protobuf(field: int) -> bytes:
    return NOT_PROTOBUF


def _channel(node: RunningNode, identity: str = "school-S1") -> grpc.Channel:
    return grpc.secure_channel(node.address, ClientTls.from_pki(node.pki, identity).credentials())


def _status_of(err: grpc.RpcError) -> status_pb2.Status:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None, "a refusal carries a google.rpc.Status"
    return status


def _reason(status: status_pb2.Status) -> str:
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info.reason
    return ""


def _trailer_bytes(err: grpc.RpcError) -> int:
    """The size of the status as it travels: grpc-message percent-encoded, the details trailer in base64."""
    call: Any = err
    message = urllib.parse.quote(call.details() or "", safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~")
    size = len("grpc-status") + 2 + 32 + len("grpc-message") + len(message) + 32
    for key, value in call.trailing_metadata() or ():
        size += len(key) + 32 + (len(base64.b64encode(value)) if key.endswith("-bin") else len(value))
    return size


# (method, the number of one of its request's string fields)
_UNARY = [
    ("/transfer.v1.SchoolDirectoryService/GetSchool", 1),  # a read
    ("/transfer.v1.RecordService/RegisterRecord", 1),  # a mutation
    ("/transfer.v1.LogService/ListEntries", 4),  # the log
    ("/transfer.v1.PeerService/RequestCancellation", 1),  # a peer's method, called by a school
    ("/grpc.health.v1.Health/Check", 1),
]
WATCH = ("/transfer.v1.TransferService/WatchTransfers", 1)  # a server stream
REFLECT = ("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", 1)  # a bidirectional stream


def _undecodable_calls(channel: grpc.Channel, body: Callable[[int], bytes]) -> Iterator[tuple[str, Callable[[], Any]]]:
    for method, field in _UNARY:
        yield method, lambda m=method, f=field: channel.unary_unary(m)(body(f), timeout=10)
    yield WATCH[0], lambda: list(channel.unary_stream(WATCH[0])(body(WATCH[1]), timeout=10))
    yield REFLECT[0], lambda: list(channel.stream_stream(REFLECT[0])(iter([body(REFLECT[1])]), timeout=10))


@pytest.mark.parametrize("body", [bad_utf8, not_protobuf], ids=["invalid-utf8-string", "not-protobuf"])
def test_undecodable_requests_are_invalid_arguments(
    node: RunningNode, database_url: str, caplog: pytest.LogCaptureFixture, body: Callable[[int], bytes]
) -> None:
    """Bytes that are not the method's message get INVALID_ARGUMENT MALFORMED_REQUEST on every kind of RPC
    (unary, server stream, bidirectional stream), name nothing internal, change nothing, and the node says
    so in one log line for all of them (its clock stands still), without a traceback."""
    caplog.set_level(logging.INFO)
    channel = _channel(node)
    before = db_snapshot(database_url)
    mark = len(caplog.records)
    try:
        for method, call in _undecodable_calls(channel, body):
            with pytest.raises(grpc.RpcError) as info:
                call()
            err: Any = info.value
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (method, err.code(), err.details())
            assert _reason(_status_of(err)) == "MALFORMED_REQUEST", method
            assert not any(name in err.details() for name in INTERNAL_NAMES), (method, err.details())
    finally:
        channel.close()
    assert db_snapshot(database_url) == before
    logged = [r for r in list(caplog.records)[mark:] if not r.name.startswith("transfer.client")]
    assert not [r for r in logged if r.exc_info], [r.getMessage() for r in logged if r.exc_info]
    about = [r for r in logged if r.name.startswith(("grpc", "transfer.rpc"))]
    assert [r.getMessage() for r in about] == ["undecodable request refused"]  # one line for all 14 calls
    assert about[0].not_logged == 0 and about[0].method == _UNARY[0][0]  # type: ignore[attr-defined]


def test_the_client_reads_an_undecodable_request_as_invalid_argument(node: RunningNode) -> None:
    """A request the node cannot decode (an encoder that is not protobuf's) reaches the project's client as
    a permanent InvalidArgument MALFORMED_REQUEST, tried once, not as UNKNOWN."""
    client = node.client("school-S1", retry=RetryPolicy(attempts=3, initial_backoff=0.01, max_backoff=0.01))
    garbling = client._channel.unary_unary(
        "/transfer.v1.SchoolDirectoryService/GetSchool",
        request_serializer=lambda _: NOT_PROTOBUF,
        response_deserializer=schools_pb2.GetSchoolResponse.FromString,
    )
    attempts = []

    def counted(request: Any, timeout: float) -> Any:
        attempts.append(request)
        return garbling(request, timeout=timeout)

    with pytest.raises(TransferError) as info:
        client._call(counted, schools_pb2.GetSchoolRequest(code="S1"))
    assert (info.value.code, info.value.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "MALFORMED_REQUEST")
    assert len(attempts) == 1
