"""Repeating a mutation with its request_id: same answer, applied once; a
request_id reused for something else is refused; client retries reuse it."""

from __future__ import annotations

import uuid
from typing import Any

import grpc

from tests.support import db_snapshot, new_lookup_code, new_national_id, refused
from transfer.client import TransferClient
from transfer.v1 import common_pb2, schools_pb2, transfers_pb2

PRIMARY = common_pb2.RECORD_LEVEL_PRIMARY


def test_repeat_returns_first_answer_and_creates_nothing(s1: TransferClient, database_url: str) -> None:
    """Initiate twice with one request_id: one transfer, and the identical first response."""
    code = new_lookup_code()
    s1.register_record(code, new_national_id(), PRIMARY)
    rid = str(uuid.uuid4())
    first = s1.initiate_transfer(code, "S2", request_id=rid).transfer
    before = db_snapshot(database_url)
    again = s1.initiate_transfer(code, "S2", request_id=rid).transfer
    assert again == first
    assert db_snapshot(database_url) == before
    assert len(list(s1.iter_transfers(transfers_pb2.TRANSFER_DIRECTION_OUTGOING))) == 1


def test_repeat_replays_the_first_answer_even_after_changes(s1: TransferClient, s2: TransferClient) -> None:
    """A replayed Initiate answers what it answered then (REQUESTED), not the transfer's state now."""
    code = new_lookup_code()
    s1.register_record(code, new_national_id(), PRIMARY)
    rid = str(uuid.uuid4())
    first = s1.initiate_transfer(code, "S2", request_id=rid)
    accept_rid = str(uuid.uuid4())
    accepted = s2.accept_transfer(first.transfer.id, request_id=accept_rid)
    assert s1.initiate_transfer(code, "S2", request_id=rid) == first  # the same receipt too
    assert s2.accept_transfer(first.transfer.id, request_id=accept_rid) == accepted  # not TRANSFER_NOT_OPEN
    assert accepted.receipt.index == first.receipt.index + 1


def test_every_spelling_of_a_request_id_is_the_same_request(s1: TransferClient, database_url: str) -> None:
    """A UUID in upper case, in braces or as a URN is the same request id: one transfer, the first answer."""
    code = new_lookup_code()
    s1.register_record(code, new_national_id(), PRIMARY)
    rid = uuid.uuid4()
    first = s1.initiate_transfer(code, "S2", request_id=str(rid))
    before = db_snapshot(database_url)
    for spelling in (str(rid).upper(), "{" + str(rid) + "}", rid.urn, rid.hex):
        assert s1.initiate_transfer(code, "S2", request_id=spelling) == first
    assert db_snapshot(database_url) == before
    with refused("INVALID_ARGUMENT", "INVALID_REQUEST_ID", database_url=database_url):
        s1.initiate_transfer(code, "S2", request_id="urn:uuid:" + str(rid) + "0" * 100)


def test_same_request_id_other_content_refused(s1: TransferClient, database_url: str) -> None:
    """The same request_id with a different request (or another method) is INVALID_ARGUMENT REQUEST_ID_REUSED."""
    a, b = new_lookup_code(), new_lookup_code()
    s1.register_record(a, new_national_id(), PRIMARY)
    s1.register_record(b, new_national_id(), PRIMARY)
    rid = str(uuid.uuid4())
    t = s1.initiate_transfer(a, "S2", request_id=rid).transfer
    with refused("INVALID_ARGUMENT", "REQUEST_ID_REUSED", database_url=database_url) as caught:
        s1.initiate_transfer(b, "S2", request_id=rid)
    assert [v.field for v in caught[0].violations] == ["request_id"]
    with refused("INVALID_ARGUMENT", "REQUEST_ID_REUSED", database_url=database_url):
        s1.cancel_transfer(t.id, request_id=rid)


def test_request_ids_are_per_caller(s1: TransferClient, s2: TransferClient) -> None:
    """Two schools choosing the same request_id do not see each other's answers."""
    rid = str(uuid.uuid4())
    a = s1.register_record(new_lookup_code(), new_national_id(), PRIMARY, request_id=rid)
    b = s2.register_record(new_lookup_code(), new_national_id(), PRIMARY, request_id=rid)
    assert (a.custodian_school, b.custodian_school) == ("S1", "S2")


def test_refusal_is_not_remembered(s1: TransferClient, admin: TransferClient) -> None:
    """A refused request stores nothing, so the same request_id succeeds once the cause is fixed."""
    code = new_lookup_code()
    s1.register_record(code, new_national_id(), PRIMARY)
    admin.update_school("S2", active=False)
    rid = str(uuid.uuid4())
    with refused("FAILED_PRECONDITION", "SCHOOL_INACTIVE"):
        s1.initiate_transfer(code, "S2", request_id=rid)
    admin.update_school("S2", active=True)
    assert s1.initiate_transfer(code, "S2", request_id=rid).transfer.to_school == "S2"


class LoseFirstReplies(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Injected fault: the call reaches the server, but its reply is 'lost' (UNAVAILABLE)."""

    def __init__(self, losses: int) -> None:
        self.losses = losses
        self.request_ids: list[str] = []

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        self.request_ids.append(getattr(request, "request_id", ""))
        outcome = continuation(details, request)
        if self.losses > 0:
            self.losses -= 1
            outcome.result()  # the server did the work
            return _Lost()
        return outcome


class _Lost(grpc.RpcError, grpc.Call, grpc.Future):  # type: ignore[misc]
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE

    def details(self) -> str:
        return "reply lost (injected)"

    def trailing_metadata(self) -> tuple[()]:
        return ()

    def initial_metadata(self) -> tuple[()]:
        return ()

    def result(self, timeout: float | None = None) -> Any:
        raise self

    def exception(self, timeout: float | None = None) -> Any:
        return self

    def traceback(self, timeout: float | None = None) -> None:
        return None

    def add_done_callback(self, fn: Any) -> None:
        fn(self)

    def cancel(self) -> bool:
        return False

    def cancelled(self) -> bool:
        return False

    def running(self) -> bool:
        return False

    def done(self) -> bool:
        return True

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> None:
        return None

    def add_callback(self, callback: Any) -> bool:
        return False


def test_client_retries_lost_replies_with_same_request_id(node: Any, s1: TransferClient) -> None:
    """When replies are lost, the client retries with the same request_id and the change applies once."""
    code = new_lookup_code()
    s1.register_record(code, new_national_id(), PRIMARY)
    fault = LoseFirstReplies(losses=2)
    flaky = node.client("school-S1", interceptors=[fault])
    t = flaky.initiate_transfer(code, "S2").transfer
    assert len(fault.request_ids) == 3 and len(set(fault.request_ids)) == 1
    assert [x.id for x in s1.iter_transfers(transfers_pb2.TRANSFER_DIRECTION_OUTGOING)] == [t.id]


def test_client_does_not_retry_refusals(node: Any, s1: TransferClient) -> None:
    """A FAILED_PRECONDITION is final: the client sends it once."""

    class Count(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
        calls = 0

        def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
            Count.calls += 1
            return continuation(details, request)

    code = new_lookup_code()
    s1.register_record(code, new_national_id(), PRIMARY)
    s1.initiate_transfer(code, "S2")
    counted = node.client("school-S1", interceptors=[Count()])
    with refused("FAILED_PRECONDITION", "TRANSFER_ALREADY_OPEN"):
        counted.initiate_transfer(code, "S3")
    assert Count.calls == 1


def test_an_update_mask_in_another_order_is_the_same_request(admin: TransferClient, database_url: str) -> None:
    """UpdateSchool's mask is a set: a retry listing its paths in another order (or twice) gets the first
    answer, not REQUEST_ID_REUSED."""
    rid = str(uuid.uuid4())

    def update(paths: list[str]) -> Any:
        request = schools_pb2.UpdateSchoolRequest(
            request_id=rid, school=schools_pb2.School(code="S2", name="Trường Số 2 (mới)", active=True)
        )
        request.update_mask.paths.extend(paths)
        return admin.schools.UpdateSchool(request, timeout=5)

    first = update(["name", "active"])
    before = db_snapshot(database_url)
    assert update(["active", "name"]) == first
    assert update(["active", "name", "active"]) == first
    assert db_snapshot(database_url) == before
