"""What a node answers at its edge to input no servicer should have to see: request bytes that are not the
method's message, and requests whose refusal, quoting them, would be too big for a client to read."""

from __future__ import annotations

import base64
import hashlib
import logging
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from tests.support import InjectedRefusal, RunningNode, db_snapshot, new_lookup_code, new_national_id
from transfer.client import ClientTls, RetryPolicy, TransferClient
from transfer.client.errors import TransferError
from transfer.domain.errors import FailedPrecondition as DomainFailedPrecondition
from transfer.domain.errors import FieldViolation, InvalidArgument, PreconditionViolation
from transfer.server import errors
from transfer.v1 import common_pb2, pages_pb2, schools_pb2, staff_pb2

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

    def counted(request: Any, timeout: float, metadata: Any = ()) -> Any:
        attempts.append(request)
        return garbling(request, timeout=timeout, metadata=metadata)

    with pytest.raises(TransferError) as info:
        client._call(counted, schools_pb2.GetSchoolRequest(code="S1"))
    assert (info.value.code, info.value.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "MALFORMED_REQUEST")
    assert len(attempts) == 1


class Exhausted(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Injected fault: every call is answered RESOURCE_EXHAUSTED; counts the attempts."""

    def __init__(self, details_bin: bytes | None) -> None:
        self.details_bin = details_bin
        self.attempts = 0

    def intercept_unary_unary(self, continuation: object, details: object, request: object) -> object:
        self.attempts += 1
        return InjectedRefusal(grpc.StatusCode.RESOURCE_EXHAUSTED, "quota exceeded", self.details_bin)


def _quota_status() -> bytes:
    info = error_details_pb2.ErrorInfo(reason="QUOTA_EXCEEDED", domain=errors.ERROR_DOMAIN)
    status = status_pb2.Status(code=grpc.StatusCode.RESOURCE_EXHAUSTED.value[0], message="quota exceeded")
    status.details.add().Pack(info)
    return status.SerializeToString()


@pytest.mark.parametrize(
    ("details_bin", "attempts"),
    [pytest.param(_quota_status(), 1, id="sent-on-purpose"), pytest.param(None, 3, id="from-grpc-itself")],
)
def test_resource_exhausted_is_retried_only_when_no_server_sent_it_on_purpose(
    node: RunningNode, details_bin: bytes | None, attempts: int
) -> None:
    """A RESOURCE_EXHAUSTED with an ErrorInfo reason is a refusal the server meant: the client raises it at
    once; one without (gRPC's own, e.g. a server's concurrency limit) stays transient and is retried."""
    fault = Exhausted(details_bin)
    policy = RetryPolicy(attempts=3, initial_backoff=0.01, max_backoff=0.01)
    client = node.client("school-S1", retry=policy, interceptors=[fault])
    with pytest.raises(TransferError) as info:
        client.get_school("S1")
    assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert fault.attempts == attempts
    assert info.value.transient is (attempts > 1)


HUGE = "x" * (1024 * 1024)


def test_a_huge_update_mask_path_is_quoted_by_a_short_prefix(admin: TransferClient, database_url: str) -> None:
    """A 1 MiB update_mask path is refused INVALID_UPDATE_MASK with a status (message and details) far
    under gRPC's 8 KiB metadata limit, quoting a short prefix of the path, not 2 MiB of it."""
    before = db_snapshot(database_url)
    request = schools_pb2.UpdateSchoolRequest(
        request_id="6f1c1f7e-7b0a-4c55-9d61-4c1f3b5a0e11",
        school=schools_pb2.School(code="S1", name="Trường S1"),
        update_mask=field_mask_pb2.FieldMask(paths=[HUGE]),
    )
    with pytest.raises(grpc.RpcError) as info:
        admin.schools.UpdateSchool(request, timeout=10)
    raw: Any = info.value
    assert raw.code() == grpc.StatusCode.INVALID_ARGUMENT, raw.code()
    assert _trailer_bytes(raw) < GRPC_DEFAULT_METADATA_LIMIT // 2
    status = _status_of(raw)
    assert _reason(status) == "INVALID_UPDATE_MASK"
    assert "x" * errors.QUOTE_CHARS in raw.details() and "x" * (errors.QUOTE_CHARS + 1) not in raw.details()
    with pytest.raises(TransferError) as typed:
        admin._call(admin.schools.UpdateSchool, request)
    assert (typed.value.code, typed.value.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_UPDATE_MASK")
    assert db_snapshot(database_url) == before


def _departure(teacher: str, count: int) -> staff_pb2.RecordDepartureRequest:
    return staff_pb2.RecordDepartureRequest(
        request_id="0b5e3c8e-1d2f-4a6b-8c9d-0e1f2a3b4c5d",
        teacher_id=teacher,
        reason=staff_pb2.DEPARTURE_REASON_TRANSFER,
        effective_date="2026-12-01",
        replacements=[
            staff_pb2.DutyReplacement(duty=staff_pb2.DutyRef(role=pages_pb2.SIGNER_ROLE_PRINCIPAL), teacher_id="f" * 32)
            for _ in range(count)
        ],
    )


def _page(lookup_code: str, requirements: list[tuple[int, str]]) -> pages_pb2.AddPageRequest:
    payload = b"%PDF-1.7 hoc ba"
    return pages_pb2.AddPageRequest(
        request_id="7d3f9a2c-5b1e-4c8d-9e0f-1a2b3c4d5e6f",
        lookup_code=lookup_code,
        school_year="2026-2027",
        grade=3,
        class_name="3A",
        media_type="application/pdf",
        payload=payload,
        payload_sha256=hashlib.sha256(payload).digest(),
        lock_track=pages_pb2.LOCK_TRACK_COMPLETED,
        required_signatures=[pages_pb2.RequiredSignature(role=r, subject=s) for r, s in requirements],
    )


@pytest.mark.parametrize(
    ("what", "violations"),
    [("1000 duplicate requirements", 1000), ("1000 invalid subjects", 1001), ("1000 duplicate replacements", 999)],
)
def test_a_thousand_violations_make_a_bounded_status(
    node: RunningNode, admin: TransferClient, database_url: str, what: str, violations: int
) -> None:
    """A request with 1,000 bad requirements or replacements is refused INVALID_ARGUMENT listing at most
    VIOLATIONS_LISTED field violations and counting the rest, in a status far under 8 KiB that the
    project's client reads with gRPC's default settings."""
    s1 = node.client("school-S1", retry=RetryPolicy(attempts=1))
    code = new_lookup_code()
    s1.register_record(code, new_national_id(), common_pb2.RECORD_LEVEL_PRIMARY)
    client, stub, request = {
        "1000 duplicate requirements": (
            s1,
            s1.pages.AddPage,
            _page(code, [(pages_pb2.SIGNER_ROLE_PRINCIPAL, "")] * 1000),
        ),
        "1000 invalid subjects": (
            s1,
            s1.pages.AddPage,
            _page(code, [(pages_pb2.SIGNER_ROLE_SUBJECT, f"{i}-" + "Đ" * 200) for i in range(1000)]),
        ),
        "1000 duplicate replacements": (admin, admin.staff.RecordDeparture, _departure("e" * 32, 1000)),
    }[what]
    before = db_snapshot(database_url)
    with pytest.raises(grpc.RpcError) as info:
        stub(request, timeout=10)
    raw: Any = info.value
    assert raw.code() == grpc.StatusCode.INVALID_ARGUMENT, (raw.code(), raw.details()[:200])
    assert _trailer_bytes(raw) < GRPC_DEFAULT_METADATA_LIMIT // 2
    assert len(_status_of(raw).SerializeToString()) <= errors.STATUS_BYTES
    with pytest.raises(TransferError) as typed:
        client._call(stub, request)
    err = typed.value
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT and err.reason
    assert 1 <= len(err.violations) <= errors.VIOLATIONS_LISTED
    rest = int(err.metadata["field_violations_not_listed"])
    assert len(err.violations) + rest == violations
    assert err.message.endswith(f"({rest} more violations not listed)")
    assert db_snapshot(database_url) == before


def test_every_refusal_is_bounded_whatever_the_domain_says() -> None:
    """to_status, which every refusal passes through, bounds any refusal: long texts clipped, at most
    VIOLATIONS_LISTED violations of each kind listed with the count of the rest, the whole status at most
    STATUS_BYTES (if only the metadata is too large, the reason alone); a small refusal goes out unchanged."""
    long = "Đ" * 100_000
    field_err = InvalidArgument(
        "TOO_LONG",
        long,
        field_violations=tuple(FieldViolation(f"f[{i}]" + long, long, "TOO_LONG") for i in range(1000)),
        resource=("school", long),
        metadata={"k": long},
    )
    precondition_err = DomainFailedPrecondition(
        "HANDOFF_INCOMPLETE",
        "1000 duty(ies) or pending signature(s) would be left without an owner",
        precondition_violations=tuple(
            PreconditionViolation("DUTY_COVERED", f"duties/{i}", "no active replacement named for this duty")
            for i in range(1000)
        ),
        metadata={"uncovered": "1000"},
    )
    for err in (field_err, precondition_err):
        status = status_pb2.Status.FromString(dict(errors.to_status(err).trailing_metadata)["grpc-status-details-bin"])
        assert len(status.SerializeToString()) <= errors.STATUS_BYTES
        assert len(errors.to_status(err).details.encode()) <= errors.MESSAGE_BYTES
        info = error_details_pb2.ErrorInfo()
        assert status.details[0].Unpack(info) and info.reason == err.reason
        listed, texts = 0, []
        for detail in status.details[1:]:
            for kind in (error_details_pb2.BadRequest, error_details_pb2.PreconditionFailure):
                if detail.Is(kind.DESCRIPTOR):
                    message = kind()
                    detail.Unpack(message)
                    items = getattr(
                        message, "field_violations" if kind is error_details_pb2.BadRequest else "violations"
                    )
                    listed = len(items)
                    texts += [t for item in items for _, t in item.ListFields() if isinstance(t, str)]
        key = "field_violations_not_listed" if err is field_err else "precondition_violations_not_listed"
        assert 1 <= listed <= errors.VIOLATIONS_LISTED
        assert listed + int(info.metadata[key]) == 1000
        assert all(len(text.encode()) <= errors.TEXT_BYTES for text in (*info.metadata.values(), *texts))
    crowded = InvalidArgument("CROWDED", "m", metadata={f"key{i}": "v" * 1000 for i in range(50)})
    status = status_pb2.Status.FromString(dict(errors.to_status(crowded).trailing_metadata)["grpc-status-details-bin"])
    info = error_details_pb2.ErrorInfo()
    assert len(status.SerializeToString()) <= errors.STATUS_BYTES
    assert status.details[0].Unpack(info) and info.reason == "CROWDED"
    small = InvalidArgument(
        "INVALID_LOOKUP_CODE",
        "lookup_code: must be 32 lowercase hexadecimal characters",
        field_violations=(FieldViolation("lookup_code", "must be 32 lowercase hexadecimal characters", "X"),),
    )
    status = errors.to_status(small)
    assert status.details == small.message
    decoded = status_pb2.Status.FromString(dict(status.trailing_metadata)["grpc-status-details-bin"])
    info = error_details_pb2.ErrorInfo()
    decoded.details[0].Unpack(info)
    assert dict(info.metadata) == {} and len(decoded.details) == 2
