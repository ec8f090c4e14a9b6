"""No oracles: a caller who may not see a thing gets the same refusal whether it
exists or not; where the rule must answer (a pupil already has a record), the
answer names nothing the caller may not read, and is logged without the id."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import uuid
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from tests.staffing import CLASS, HOMEROOM, YEAR, add_page, duty, hire, new_record, signing_ca
from tests.support import RunningNode, new_lookup_code, new_national_id, refused
from transfer.client import TransferClient
from transfer.domain.logbook import Logbook
from transfer.domain.services import HELD_ELSEWHERE
from transfer.ledger.note import generate_key, parse_skey
from transfer.server.app import digest_key
from transfer.server.logs import JsonFormatter
from transfer.v1 import common_pb2, pages_pb2, records_pb2, staff_pb2, transfers_pb2

PRIMARY = common_pb2.RECORD_LEVEL_PRIMARY


def _refusal(call: Callable[[], object]) -> tuple[grpc.StatusCode, str, bytes]:
    """Everything a caller sees of a refusal: code, message and the rich status trailer, byte for byte."""
    with pytest.raises(grpc.RpcError) as info:
        call()
    err = info.value
    trailer = dict(err.trailing_metadata())  # type: ignore[attr-defined]
    return err.code(), err.details(), trailer["grpc-status-details-bin"]  # type: ignore[attr-defined]


def _list_pages(client: TransferClient, code: str, token: str = "") -> Callable[[], object]:
    req = pages_pb2.ListPagesRequest(lookup_code=code, page_token=token)
    return lambda: client.pages.ListPages(req, timeout=10)


def _register(client: TransferClient, code: str, national_id: str, custodian: str = "") -> Callable[[], object]:
    req = records_pb2.RegisterRecordRequest(
        request_id=str(uuid.uuid4()),
        lookup_code=code,
        national_id=national_id,
        level=PRIMARY,
        custodian_school=custodian,
    )
    return lambda: client.records.RegisterRecord(req, timeout=10)


def test_list_pages_refuses_another_schools_record_as_an_absent_one(s1: TransferClient, s2: TransferClient) -> None:
    """ListPages of another school's record (no page of it issued by the caller) and of no record: one refusal."""
    held, absent = new_lookup_code(), new_lookup_code()
    s1.register_record(held, new_national_id(), PRIMARY)
    seen = _refusal(_list_pages(s2, held))
    assert seen == _refusal(_list_pages(s2, absent))
    assert seen[0] == grpc.StatusCode.PERMISSION_DENIED


def _unsealed_token(key: str, filters: tuple[object, ...]) -> str:
    digest = hashlib.sha256(repr(filters).encode()).hexdigest()[:16]
    return base64.urlsafe_b64encode(json.dumps({"k": key, "f": digest}).encode()).decode().rstrip("=")


def test_a_made_up_page_token_tells_nothing_either(s1: TransferClient, s2: TransferClient) -> None:
    """A page token made up for another school's record (in the unsealed form of earlier versions, whose filter
    digest anyone can compute) is refused like one for no record."""
    held, absent = new_lookup_code(), new_lookup_code()
    s1.register_record(held, new_national_id(), PRIMARY)
    forged = {code: _unsealed_token("0" * 32, ("pages", code)) for code in (held, absent)}
    assert _refusal(_list_pages(s2, held, forged[held])) == _refusal(_list_pages(s2, absent, forged[absent]))


def test_registering_a_record_held_elsewhere_names_nothing(s1: TransferClient, s2: TransferClient) -> None:
    """Another school's lookup code and another school's pupil get one refusal, naming no record and no school."""
    code, nid = new_lookup_code(), new_national_id()
    s1.register_record(code, nid, PRIMARY)
    by_code = _refusal(_register(s2, code, new_national_id()))
    by_pupil = _refusal(_register(s2, new_lookup_code(), nid))
    assert by_code == by_pupil
    assert by_code[:2] == (grpc.StatusCode.ALREADY_EXISTS, HELD_ELSEWHERE)
    assert code.encode() not in by_code[2] and b"S1" not in by_code[2]
    with refused("ALREADY_EXISTS", "STUDENT_RECORD_EXISTS") as caught:
        s2.register_record(code, new_national_id(), PRIMARY)
    assert caught[0].metadata == {}


def test_who_may_read_the_record_learns_which_and_where(
    s1: TransferClient, admin: TransferClient, database_url: str
) -> None:
    """The custodian and province admins are told which record collides and who holds it."""
    code, nid = new_lookup_code(), new_national_id()
    s1.register_record(code, nid, PRIMARY)
    with refused("ALREADY_EXISTS", "RECORD_EXISTS", database_url=database_url) as caught:
        s1.register_record(code, new_national_id(), PRIMARY)
    assert caught[0].metadata == {"custodian_school": "S1"}
    with refused("ALREADY_EXISTS", "STUDENT_RECORD_EXISTS", database_url=database_url) as caught:
        s1.register_record(new_lookup_code(), nid, PRIMARY)
    assert caught[0].metadata == {"custodian_school": "S1"} and caught[0].message != HELD_ELSEWHERE
    _, _, trailer = _refusal(_register(admin, new_lookup_code(), nid, custodian="S2"))
    assert code.encode() in trailer and b"S1" in trailer  # ResourceInfo names the record, metadata the school


def test_a_pupil_taken_first_by_another_school_is_transferred_not_registered(
    s1: TransferClient, s2: TransferClient, admin: TransferClient
) -> None:
    """A school that registered a pupil first keeps the record; the province admin finds it and moves it."""
    nid, taken = new_national_id(), new_lookup_code()
    s2.register_record(taken, nid, PRIMARY)  # S2 got there first (by mistake or not)
    with refused("ALREADY_EXISTS", "STUDENT_RECORD_EXISTS") as caught:
        s1.register_record(new_lookup_code(), nid, PRIMARY)
    assert caught[0].message == HELD_ELSEWHERE
    with refused("ALREADY_EXISTS", "STUDENT_RECORD_EXISTS") as caught:
        admin.register_record(new_lookup_code(), nid, PRIMARY, custodian_school="S1")
    assert caught[0].metadata == {"custodian_school": "S2"}
    t = admin.initiate_transfer(taken, "S1").transfer
    s1.accept_transfer(t.id)
    assert s1.get_record(taken).national_id == nid


def test_held_elsewhere_refusals_are_logged_with_a_digest_never_the_id(
    s1: TransferClient, s2: TransferClient, admin: TransferClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Each refusal is logged with the caller, which key collided, a keyed digest and the caller's count."""
    caplog.set_level(logging.INFO, logger="transfer.rpc")
    code, nid, other = new_lookup_code(), new_national_id(), new_national_id()
    s1.register_record(code, nid, PRIMARY)
    s1.register_record(new_lookup_code(), other, PRIMARY)
    for probe in (nid, nid, other):
        with refused("ALREADY_EXISTS", "STUDENT_RECORD_EXISTS"):
            s2.register_record(new_lookup_code(), probe, PRIMARY)
    with refused("ALREADY_EXISTS", "STUDENT_RECORD_EXISTS"):
        s2.register_record(code, new_national_id(), PRIMARY)
    with refused("ALREADY_EXISTS", "STUDENT_RECORD_EXISTS"):
        admin.register_record(new_lookup_code(), nid, PRIMARY, custodian_school="S2")
    lines = [r for r in caplog.records if r.getMessage() == "refused" and getattr(r, "conflict", None)]
    seen = [(r.caller, r.conflict, r.id_digest, getattr(r, "held_elsewhere_refusals", None)) for r in lines]  # type: ignore[attr-defined]
    assert [(c, k, n) for c, k, _, n in seen] == [
        ("school:S2", "national_id", 1),
        ("school:S2", "national_id", 2),
        ("school:S2", "national_id", 3),
        ("school:S2", "lookup_code", 4),
        (seen[4][0], "national_id", None),  # the admin, who learns where, is logged but not counted
    ]
    assert seen[4][0].startswith("province_admin:")
    digests = [d for _, _, d, _ in seen]
    assert digests[0] == digests[1] == digests[4] != digests[2] and len(digests[0]) == 32
    text = "\n".join(JsonFormatter().format(r) for r in caplog.records)
    for secret in (nid, other, code):
        assert secret not in text


def test_the_digest_key_comes_from_the_log_key() -> None:
    """The same log key gives the same digest key (digests compare across restarts); another key, another."""
    skey, _ = generate_key("hocba.test")
    again = digest_key(Logbook("o", parse_skey(skey), None))  # type: ignore[arg-type]
    assert digest_key(Logbook("o", parse_skey(skey), None)) == again  # type: ignore[arg-type]
    assert digest_key(Logbook("o", parse_skey(generate_key("hocba.test")[0]), None)) != again  # type: ignore[arg-type]


def test_every_lookup_refuses_the_unseen_as_the_absent(node: RunningNode, pki: Path) -> None:
    """Records, pages, transfers and teachers of S1, asked about by S2 (system and admin): each refusal
    is byte for byte the one an id that exists nowhere gets."""
    s1_admin, s1 = node.client("school-admin-S1"), node.client("school-S1")
    s2_admin, s2 = node.client("school-admin-S2"), node.client("school-S2")
    teacher = hire(s1_admin, signing_ca(pki), "GV-CN")
    s1_admin.assign_duty(duty(HOMEROOM), teacher.id)
    code = new_record(s1)
    page = add_page(s1, code, requirements=[HOMEROOM])
    transfer = s1.initiate_transfer(new_record(s1), "S3").transfer
    absent = new_lookup_code()  # 32 hex digits: a record, page, transfer or teacher id that does not exist
    payload = b"%PDF other"

    def rid() -> str:
        return str(uuid.uuid4())

    asks: dict[str, Callable[[str], Callable[[], object]]] = {
        "GetRecord": lambda x: lambda: s2.records.GetRecord(records_pb2.GetRecordRequest(lookup_code=x), timeout=10),
        "InitiateTransfer": lambda x: (
            lambda: s2.transfers.InitiateTransfer(
                transfers_pb2.InitiateTransferRequest(request_id=rid(), lookup_code=x, to_school="S3"), timeout=10
            )
        ),
        "AddPage": lambda x: (
            lambda: s2.pages.AddPage(
                pages_pb2.AddPageRequest(
                    request_id=rid(),
                    lookup_code=x,
                    school_year=YEAR,
                    grade=3,
                    class_name=CLASS,
                    media_type="application/pdf",
                    payload=payload,
                    payload_sha256=hashlib.sha256(payload).digest(),
                    lock_track=pages_pb2.LOCK_TRACK_COMPLETED,
                    required_signatures=[pages_pb2.RequiredSignature(role=pages_pb2.SIGNER_ROLE_HOMEROOM)],
                ),
                timeout=10,
            )
        ),
        "ListPages": lambda x: _list_pages(s2, x),
        "GetPage": lambda x: lambda: s2.pages.GetPage(pages_pb2.GetPageRequest(page_id=x), timeout=10),
        "ReplacePage": lambda x: (
            lambda: s2.pages.ReplacePage(
                pages_pb2.ReplacePageRequest(
                    request_id=rid(),
                    page_id=x,
                    media_type="application/pdf",
                    payload=payload,
                    payload_sha256=hashlib.sha256(payload).digest(),
                ),
                timeout=10,
            )
        ),
        "SignPage": lambda x: (
            lambda: s2.pages.SignPage(
                pages_pb2.SignPageRequest(
                    request_id=rid(),
                    page_id=x,
                    requirement=pages_pb2.RequiredSignature(role=pages_pb2.SIGNER_ROLE_HOMEROOM),
                    teacher_id=teacher.id,
                    digest=bytes(32),
                    signature=b"s",
                ),
                timeout=10,
            )
        ),
        "LockPage": lambda x: (
            lambda: s2.pages.LockPage(pages_pb2.LockPageRequest(request_id=rid(), page_id=x), timeout=10)
        ),
        "GetTransfer": lambda x: (
            lambda: s2.transfers.GetTransfer(transfers_pb2.GetTransferRequest(transfer_id=x), timeout=10)
        ),
        "AcceptTransfer": lambda x: (
            lambda: s2.transfers.AcceptTransfer(
                transfers_pb2.AcceptTransferRequest(request_id=rid(), transfer_id=x), timeout=10
            )
        ),
        "RejectTransfer": lambda x: (
            lambda: s2.transfers.RejectTransfer(
                transfers_pb2.RejectTransferRequest(request_id=rid(), transfer_id=x, reason="không"), timeout=10
            )
        ),
        "CancelTransfer": lambda x: (
            lambda: s2.transfers.CancelTransfer(
                transfers_pb2.CancelTransferRequest(request_id=rid(), transfer_id=x), timeout=10
            )
        ),
        "GetTeacher": lambda x: lambda: s2.staff.GetTeacher(staff_pb2.GetTeacherRequest(teacher_id=x), timeout=10),
        "ListSigningTasks": lambda x: (
            lambda: s2.staff.ListSigningTasks(staff_pb2.ListSigningTasksRequest(teacher_id=x), timeout=10)
        ),
        "ListDuties": lambda x: lambda: s2.staff.ListDuties(staff_pb2.ListDutiesRequest(teacher_id=x), timeout=10),
        "AddTeacherCertificate": lambda x: (
            lambda: s2_admin.staff.AddTeacherCertificate(
                staff_pb2.AddTeacherCertificateRequest(request_id=rid(), teacher_id=x, certificate=teacher.cert_pem),
                timeout=10,
            )
        ),
        "RecordDeparture": lambda x: (
            lambda: s2_admin.staff.RecordDeparture(
                staff_pb2.RecordDepartureRequest(
                    request_id=rid(),
                    teacher_id=x,
                    reason=staff_pb2.DEPARTURE_REASON_RETIREMENT,
                    effective_date="2027-01-04",
                ),
                timeout=10,
            )
        ),
        "AssignDuty": lambda x: (
            lambda: s2_admin.staff.AssignDuty(
                staff_pb2.AssignDutyRequest(
                    request_id=rid(),
                    teacher_id=x,
                    duty=staff_pb2.DutyRef(role=pages_pb2.SIGNER_ROLE_PRINCIPAL),
                ),
                timeout=10,
            )
        ),
    }
    existing = {
        "GetRecord": code, "InitiateTransfer": code, "AddPage": code, "ListPages": code,
        "GetPage": page.id, "ReplacePage": page.id, "SignPage": page.id, "LockPage": page.id,
        "GetTransfer": transfer.id, "AcceptTransfer": transfer.id, "RejectTransfer": transfer.id,
        "CancelTransfer": transfer.id,
    }  # fmt: skip

    def refusal(method: str, x: str) -> tuple[grpc.StatusCode, str, bytes]:
        code_, message, trailer = _refusal(asks[method](x))  # an id the message echoes is the caller's own
        return code_, message.replace(x, "<id>"), trailer.replace(x.encode(), b"<id>")

    for method in asks:
        seen = refusal(method, existing.get(method, teacher.id))
        assert seen == refusal(method, absent), method
        assert seen[0] in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.FAILED_PRECONDITION), method
