"""Every refusal of the transfer rules: its status code, its stable reason, its
details, and that it leaves the database exactly as it was."""

from __future__ import annotations

import base64
from datetime import timedelta

import grpc
import pytest
from google.rpc import status_pb2

from tests.support import InjectedRefusal, RunningNode, db_snapshot, new_lookup_code, new_national_id, refused
from transfer.client import TransferClient
from transfer.v1 import common_pb2, records_pb2, schools_pb2, transfers_pb2

PRIMARY = common_pb2.RECORD_LEVEL_PRIMARY


def register(client: TransferClient, **kw: str) -> str:
    code = new_lookup_code()
    client.register_record(code, new_national_id(), PRIMARY, **kw)
    return code


def test_only_custodian_may_initiate(s1: TransferClient, s2: TransferClient, database_url: str) -> None:
    """A school that does not hold the record cannot send it: PERMISSION_DENIED NOT_CUSTODIAN."""
    code = register(s1)
    with refused("PERMISSION_DENIED", "NOT_CUSTODIAN", database_url=database_url):
        s2.initiate_transfer(code, "S3")
    with refused("PERMISSION_DENIED", "NOT_CUSTODIAN", database_url=database_url):
        s2.initiate_transfer(new_lookup_code(), "S3")  # unknown record: same answer, nothing leaks


def test_one_open_transfer_per_record(s1: TransferClient, database_url: str) -> None:
    """A frozen record refuses a second transfer, naming the open one."""
    code = register(s1)
    t = s1.initiate_transfer(code, "S2").transfer
    with refused("FAILED_PRECONDITION", "TRANSFER_ALREADY_OPEN", database_url=database_url) as caught:
        s1.initiate_transfer(code, "S3")
    assert caught[0].metadata["open_transfer_id"] == t.id
    assert caught[0].preconditions[0].type == "RECORD_NOT_FROZEN"


def test_receiver_must_exist_and_differ(s1: TransferClient, database_url: str) -> None:
    """Unknown receiving school and sending to oneself are invalid arguments on to_school."""
    code = register(s1)
    with refused("INVALID_ARGUMENT", "UNKNOWN_SCHOOL", database_url=database_url) as caught:
        s1.initiate_transfer(code, "S9")
    assert [v.field for v in caught[0].violations] == ["to_school"]
    with refused("INVALID_ARGUMENT", "SAME_SCHOOL", database_url=database_url) as caught:
        s1.initiate_transfer(code, "S1")
    assert [v.field for v in caught[0].violations] == ["to_school"]


def test_inactive_receiver_refused(
    s1: TransferClient, s3: TransferClient, admin: TransferClient, database_url: str
) -> None:
    """An inactive school receives no transfers, nor accepts one opened before: SCHOOL_INACTIVE; it may still reject."""
    code = register(s1)
    admin.update_school("S2", active=False)
    with refused("FAILED_PRECONDITION", "SCHOOL_INACTIVE", database_url=database_url):
        s1.initiate_transfer(code, "S2")
    t = s1.initiate_transfer(code, "S3").transfer
    admin.update_school("S3", active=False)
    with refused("FAILED_PRECONDITION", "SCHOOL_INACTIVE", database_url=database_url):
        s3.accept_transfer(t.id)
    assert (
        s3.reject_transfer(t.id, "trường tạm ngừng hoạt động").transfer.state == transfers_pb2.TRANSFER_STATE_REJECTED
    )


def test_inter_province_not_served_yet(s1: TransferClient, database_url: str) -> None:
    """A receiving school in another province is refused until peers exist; a bad province is invalid."""
    code = register(s1)
    with refused("FAILED_PRECONDITION", "INTER_PROVINCE_UNAVAILABLE", database_url=database_url):
        s1.initiate_transfer(code, "HCM1", to_province="79")
    with refused("INVALID_ARGUMENT", "UNKNOWN_PROVINCE", database_url=database_url):
        s1.initiate_transfer(code, "HCM1", to_province="99")


@pytest.mark.parametrize(
    ("lookup_code", "national_id", "level", "field", "reason"),
    [
        ("ABCDEF0123456789ABCDEF0123456789", "001234567890", PRIMARY, "lookup_code", "INVALID_LOOKUP_CODE"),
        ("abc", "001234567890", PRIMARY, "lookup_code", "INVALID_LOOKUP_CODE"),
        ("0" * 33, "001234567890", PRIMARY, "lookup_code", "INVALID_LOOKUP_CODE"),
        ("0" * 32, "12345678901", PRIMARY, "national_id", "INVALID_NATIONAL_ID"),
        ("0" * 32, "12345678901a", PRIMARY, "national_id", "INVALID_NATIONAL_ID"),
        ("0" * 32, "", PRIMARY, "national_id", "INVALID_NATIONAL_ID"),
        ("0" * 32, "001234567890", 0, "level", "INVALID_ENUM"),
        ("0" * 32, "001234567890", 7, "level", "INVALID_ENUM"),
    ],
)
def test_record_fields_validated(
    s1: TransferClient, database_url: str, lookup_code: str, national_id: str, level: int, field: str, reason: str
) -> None:
    """Malformed record fields are INVALID_ARGUMENT with a BadRequest violation on the field."""
    with refused("INVALID_ARGUMENT", reason, database_url=database_url) as caught:
        s1.register_record(lookup_code, national_id, level)
    assert field in [v.field for v in caught[0].violations]


def test_all_bad_fields_reported_at_once(s1: TransferClient) -> None:
    """One reply names every invalid field, not just the first."""
    with refused("INVALID_ARGUMENT", "INVALID_LOOKUP_CODE") as caught:
        s1.register_record("nope", "123", 0)
    assert [v.field for v in caught[0].violations] == ["lookup_code", "national_id", "level"]


def test_duplicate_records_refused(s1: TransferClient, s2: TransferClient, database_url: str) -> None:
    """A lookup code or a pupil's record of a level registers once only: ALREADY_EXISTS; another
    school's record is refused as STUDENT_RECORD_EXISTS whichever key collided (test_oracles.py)."""
    code, nid = new_lookup_code(), new_national_id()
    s1.register_record(code, nid, PRIMARY)
    with refused("ALREADY_EXISTS", "RECORD_EXISTS", database_url=database_url):
        s1.register_record(code, new_national_id(), PRIMARY)
    # Was RECORD_EXISTS: it told S2 that S1's lookup code exists. Now the same answer as a pupil held elsewhere.
    with refused("ALREADY_EXISTS", "STUDENT_RECORD_EXISTS", database_url=database_url):
        s2.register_record(code, new_national_id(), PRIMARY)
    with refused("ALREADY_EXISTS", "STUDENT_RECORD_EXISTS", database_url=database_url):
        s2.register_record(new_lookup_code(), nid, PRIMARY)
    s2.register_record(new_lookup_code(), nid, common_pb2.RECORD_LEVEL_LOWER_SECONDARY)  # next level: fine


@pytest.mark.parametrize(
    ("code", "name", "reason"),
    [
        ("", "Trường A", "SCHOOL_REQUIRED"),
        ("X" * 21, "Trường A", "INVALID_SCHOOL_CODE"),
        ("bad code", "Trường A", "INVALID_SCHOOL_CODE"),
        ("S7", "", "REQUIRED"),
        ("S7", "   ", "REQUIRED"),
        ("S7", "x" * 201, "TOO_LONG"),
        ("S7", "tab\there", "INVALID_TEXT"),
        ("S7", "Trường \u202eA", "INVALID_TEXT"),  # a bidi override reorders what others see
        ("S7", "Trường\u200bA", "INVALID_TEXT"),  # zero-width space
        ("S7", "Trường\u2028A", "INVALID_TEXT"),  # line separator
    ],
)
def test_school_fields_validated(admin: TransferClient, database_url: str, code: str, name: str, reason: str) -> None:
    """School codes (1-20 safe characters) and names (1-200, no control characters) are checked."""
    with refused("INVALID_ARGUMENT", reason, database_url=database_url):
        admin.register_school(code, name)


def test_school_directory_rules(admin: TransferClient, s1: TransferClient, database_url: str) -> None:
    """Only province admins change the directory; codes are unique; updates need a known field."""
    with refused("PERMISSION_DENIED", "PROVINCE_ADMIN_ONLY", database_url=database_url):
        s1.register_school("S7", "Trường 7")
    with refused("ALREADY_EXISTS", "SCHOOL_EXISTS", database_url=database_url):
        admin.register_school("S1", "again")
    with refused("NOT_FOUND", "SCHOOL_NOT_FOUND", database_url=database_url):
        admin.update_school("S8", name="x")
    with refused("INVALID_ARGUMENT", "EMPTY_UPDATE_MASK", database_url=database_url):
        admin.update_school("S1")
    req = schools_pb2.UpdateSchoolRequest(
        request_id="0b7f0a4e-8d1c-4f1e-9a51-0d3c8f6f1a11", school=schools_pb2.School(code="S1", province="79")
    )
    req.update_mask.paths.append("province")
    with refused("INVALID_ARGUMENT", "INVALID_UPDATE_MASK", database_url=database_url):
        admin._call(admin.schools.UpdateSchool, req)
    renamed = admin.update_school("S1", name="Trường Tiểu học Số 1")
    assert renamed.name == "Trường Tiểu học Số 1" and renamed.active
    assert [s.code for s in s1.iter_schools()] == ["S1", "S2", "S3"]


def test_reject_needs_a_reason(s1: TransferClient, s2: TransferClient, database_url: str) -> None:
    """Rejecting without a reason (or with an over-long one) is INVALID_ARGUMENT on reason."""
    t = s1.initiate_transfer(register(s1), "S2").transfer
    with refused("INVALID_ARGUMENT", "REASON_REQUIRED", database_url=database_url) as caught:
        s2.reject_transfer(t.id, "")
    assert [v.field for v in caught[0].violations] == ["reason"]
    with refused("INVALID_ARGUMENT", "REASON_REQUIRED", database_url=database_url):
        s2.reject_transfer(t.id, " \n ")
    with refused("INVALID_ARGUMENT", "TOO_LONG", database_url=database_url):
        s2.reject_transfer(t.id, "x" * 501)


def test_who_decides(s1: TransferClient, s2: TransferClient, s3: TransferClient, database_url: str) -> None:
    """Only the receiver accepts or rejects, only the sender cancels, strangers see nothing."""
    t = s1.initiate_transfer(register(s1), "S2").transfer
    with refused("PERMISSION_DENIED", "NOT_RECEIVING_SCHOOL", database_url=database_url):
        s1.accept_transfer(t.id)
    with refused("PERMISSION_DENIED", "NOT_RECEIVING_SCHOOL", database_url=database_url):
        s3.reject_transfer(t.id, "not ours")
    with refused("PERMISSION_DENIED", "NOT_SENDING_SCHOOL", database_url=database_url):
        s2.cancel_transfer(t.id)
    with refused("PERMISSION_DENIED", "NOT_A_PARTY"):
        s3.get_transfer(t.id)
    with refused("PERMISSION_DENIED", "NOT_RECEIVING_SCHOOL", database_url=database_url):
        s2.accept_transfer("f" * 32)  # unknown id: same answer as someone else's


@pytest.mark.parametrize("first", ["accept", "reject", "cancel"])
def test_no_decision_after_a_decision(s1: TransferClient, s2: TransferClient, database_url: str, first: str) -> None:
    """Once decided, a transfer refuses every other decision with FAILED_PRECONDITION TRANSFER_NOT_OPEN."""
    t = s1.initiate_transfer(register(s1), "S2").transfer
    decide = {
        "accept": lambda: s2.accept_transfer(t.id),
        "reject": lambda: s2.reject_transfer(t.id, "full"),
        "cancel": lambda: s1.cancel_transfer(t.id),
    }
    decide[first]()
    for name, again in decide.items():
        with refused("FAILED_PRECONDITION", "TRANSFER_NOT_OPEN", database_url=database_url) as caught:
            again()
        assert caught[0].preconditions[0].type == "TRANSFER_STATE", name


def test_expired_transfer_never_accepts(
    node: RunningNode, s1: TransferClient, s2: TransferClient, database_url: str
) -> None:
    """Past its deadline a transfer refuses decisions, then the sweep expires it and unfreezes the record."""
    code = register(s1)
    t = s1.initiate_transfer(code, "S2").transfer
    assert node.clock is not None and node.node is not None
    # Created Monday 23 November 2026, 09:00 (UTC+7): 5 working days, Tuesday 24 November (Vietnam
    # Cultural Day, a public holiday) not counted -> due at the end of Tuesday 1 December.
    node.clock.advance(timedelta(days=8, hours=14))  # Tuesday 23:00: still open
    assert s2.get_transfer(t.id).state == transfers_pb2.TRANSFER_STATE_REQUESTED
    node.clock.advance(timedelta(hours=2))
    with refused("FAILED_PRECONDITION", "TRANSFER_EXPIRED", database_url=database_url):
        s2.accept_transfer(t.id)
    with refused("FAILED_PRECONDITION", "TRANSFER_EXPIRED", database_url=database_url):
        s1.cancel_transfer(t.id)
    assert node.run(node.node.sweep_once) == 1
    assert s2.get_transfer(t.id).state == transfers_pb2.TRANSFER_STATE_EXPIRED
    assert s1.get_record(code).status == records_pb2.RECORD_STATUS_ACTIVE
    with refused("FAILED_PRECONDITION", "TRANSFER_NOT_OPEN", database_url=database_url):
        s2.accept_transfer(t.id)
    assert node.run(node.node.sweep_once) == 0


def test_other_schools_data_is_private(s1: TransferClient, s2: TransferClient, database_url: str) -> None:
    """A school cannot read, list or register another school's records by naming it."""
    code = register(s1)
    with refused("PERMISSION_DENIED", "NOT_CUSTODIAN"):
        s2.get_record(code)
    with refused("PERMISSION_DENIED", "NOT_YOUR_SCHOOL"):
        s2.list_records("S1")
    with refused("PERMISSION_DENIED", "NOT_YOUR_SCHOOL"):
        s2.list_transfers(transfers_pb2.TRANSFER_DIRECTION_OUTGOING, school="S1")
    with refused("PERMISSION_DENIED", "NOT_YOUR_SCHOOL", database_url=database_url):
        s2.register_record(new_lookup_code(), new_national_id(), PRIMARY, custodian_school="S1")
    with refused("PERMISSION_DENIED", "NOT_YOUR_SCHOOL"):
        next(s2.watch_transfers(school="S1", resume=False))


def test_receiving_school_may_read_offered_record(s1: TransferClient, s2: TransferClient) -> None:
    """While a transfer is open, the receiving school may read the record it is offered."""
    code = register(s1)
    s1.initiate_transfer(code, "S2")
    assert s2.get_record(code).custodian_school == "S1"


def test_request_id_must_be_a_uuid(s1: TransferClient, database_url: str) -> None:
    """Mutations without a UUID request_id are INVALID_ARGUMENT on request_id."""
    with refused("INVALID_ARGUMENT", "INVALID_REQUEST_ID", database_url=database_url) as caught:
        s1.register_record(new_lookup_code(), new_national_id(), PRIMARY, request_id="not-a-uuid")
    assert [v.field for v in caught[0].violations] == ["request_id"]
    req = transfers_pb2.AcceptTransferRequest(transfer_id="a" * 32)
    with refused("INVALID_ARGUMENT", "REQUEST_ID_REQUIRED", database_url=database_url):
        s1._call(s1.transfers.AcceptTransfer, req)


def test_listing_arguments_validated(s1: TransferClient, s2: TransferClient) -> None:
    """Bad page sizes, foreign or forged page tokens, unknown enums and cursors are INVALID_ARGUMENT."""
    for _ in range(3):
        s1.initiate_transfer(register(s1), "S2")
    with refused("INVALID_ARGUMENT", "INVALID_PAGE_SIZE"):
        s2.list_transfers(transfers_pb2.TRANSFER_DIRECTION_INCOMING, page_size=-1)
    with refused("INVALID_ARGUMENT", "INVALID_PAGE_TOKEN"):
        s2.list_transfers(transfers_pb2.TRANSFER_DIRECTION_INCOMING, page_token="garbage!")
    token = s2.list_transfers(transfers_pb2.TRANSFER_DIRECTION_INCOMING, page_size=1).next_page_token
    with refused("INVALID_ARGUMENT", "INVALID_PAGE_TOKEN"):  # a token of another query
        s2.list_transfers(transfers_pb2.TRANSFER_DIRECTION_OUTGOING, page_token=token)
    with refused("INVALID_ARGUMENT", "INVALID_ENUM"):
        s2.list_transfers(0)
    with refused("INVALID_ARGUMENT", "INVALID_ENUM"):
        s2.list_transfers(transfers_pb2.TRANSFER_DIRECTION_INCOMING, states=[9])
    with refused("INVALID_ARGUMENT", "INVALID_CURSOR"):
        next(s2.watch_transfers(cursor="%%%", resume=False))
    for body in (b"ev1:" + b"9" * 30, b"ev1:-1", b"ev1: 7", b"ev1:1_0", "ev1:١٢".encode()):
        forged = base64.urlsafe_b64encode(body).decode().rstrip("=")
        with refused("INVALID_ARGUMENT", "INVALID_CURSOR"):
            next(s2.watch_transfers(cursor=forged, resume=False))
    with refused("INVALID_ARGUMENT", "INVALID_TRANSFER_ID"):
        s2.get_transfer("123")
    page = s2.list_transfers(transfers_pb2.TRANSFER_DIRECTION_INCOMING, page_size=10_000)
    assert len(page.transfers) == 3 and not page.next_page_token  # sizes above 500 are coerced


def test_province_admin_gets_not_found(admin: TransferClient) -> None:
    """A province admin, allowed to see everything, learns that a record or transfer does not exist."""
    with refused("NOT_FOUND", "RECORD_NOT_FOUND"):
        admin.get_record(new_lookup_code())
    with refused("NOT_FOUND", "TRANSFER_NOT_FOUND"):
        admin.get_transfer("e" * 32)
    with refused("INVALID_ARGUMENT", "SCHOOL_REQUIRED"):
        admin.list_records()


def test_internal_errors_hide_internals(node: RunningNode, s1: TransferClient, database_url: str) -> None:
    """An unexpected exception becomes INTERNAL with a reference, never a stack trace, and writes nothing."""
    from transfer.domain.services import Records

    assert node.node is not None
    original = Records.register

    def boom(self: Records, *args: object, **kwargs: object) -> object:
        raise RuntimeError("secret internal detail")

    before = db_snapshot(database_url)
    Records.register = boom  # type: ignore[method-assign]
    try:
        with pytest.raises(Exception) as info:
            s1.register_record(new_lookup_code(), new_national_id(), PRIMARY)
    finally:
        Records.register = original  # type: ignore[method-assign]
    err = info.value
    assert err.code == grpc.StatusCode.INTERNAL  # type: ignore[attr-defined]
    assert "secret" not in err.message and "ref" in err.message  # type: ignore[attr-defined]
    assert db_snapshot(database_url) == before


class GarbleRefusals(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Injected fault: every reply is replaced by a FAILED_PRECONDITION with an inconsistent trailer."""

    def __init__(self, details_bin: bytes) -> None:
        self.details_bin = details_bin

    def intercept_unary_unary(self, continuation: object, details: object, request: object) -> object:
        return InjectedRefusal(grpc.StatusCode.FAILED_PRECONDITION, "refused by a garbled server", self.details_bin)


@pytest.mark.parametrize(
    "details_bin",
    [
        pytest.param(b"\xff\xff not a protobuf", id="unparsable"),
        pytest.param(
            status_pb2.Status(code=grpc.StatusCode.UNAVAILABLE.value[0], message="other").SerializeToString(),
            id="other-code",
        ),
    ],
)
def test_a_refusal_with_a_garbled_status_trailer_is_still_a_typed_error(node: RunningNode, details_bin: bytes) -> None:
    """A status-details trailer that does not parse or contradicts the status gives the typed error, not a crash."""
    from transfer.client.errors import FailedPrecondition

    client = node.client("school-S1", interceptors=[GarbleRefusals(details_bin)])
    with pytest.raises(FailedPrecondition) as info:
        client.get_record(new_lookup_code())
    assert info.value.message == "refused by a garbled server" and info.value.reason == ""
