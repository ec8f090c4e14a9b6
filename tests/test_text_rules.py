"""Text and numbers at the boundary: codes are ASCII, free text follows one rule
(NFC, no control or bidi characters, lengths in code points), and a request
with several bad fields, its request_id among them, is refused once naming all."""

from __future__ import annotations

import json
import unicodedata
import uuid

import pytest

from tests.support import new_lookup_code, new_national_id, refused
from transfer.client import TransferClient
from transfer.domain import validation as check
from transfer.domain.errors import InvalidArgument, Violations
from transfer.domain.federation import Decision
from transfer.v1 import common_pb2, pages_pb2, records_pb2, schools_pb2, staff_pb2, transfers_pb2

PRIMARY = common_pb2.RECORD_LEVEL_PRIMARY
HOMEROOM = pages_pb2.SIGNER_ROLE_HOMEROOM

# 2026-2027 in fullwidth, Arabic-Indic and Devanagari digits: str.isdigit(), int() and re's \d take all three.
FOREIGN_YEARS = ["２０２６-２０２７", "٢٠٢٦-٢٠٢٧", "२०२६-२०२७", "2026-２０２７"]


@pytest.mark.parametrize("year", FOREIGN_YEARS)
def test_school_year_digits_are_ascii(s1: TransferClient, database_url: str, year: str) -> None:
    """A school year in non-ASCII digits is INVALID_SCHOOL_YEAR for a page and for a duty, not a second 2026-2027."""
    code = new_lookup_code()
    s1.register_record(code, new_national_id(), PRIMARY)
    with refused("INVALID_ARGUMENT", "INVALID_SCHOOL_YEAR", database_url=database_url) as caught:
        s1.add_page(code, year, 3, "3A", b"%PDF page", [(HOMEROOM, "")])
    assert [v.field for v in caught[0].violations] == ["school_year"]
    duty = staff_pb2.DutyRef(role=HOMEROOM, school_year=year, class_name="3A")
    req = staff_pb2.AssignDutyRequest(request_id=str(uuid.uuid4()), duty=duty, teacher_id="a" * 32)
    with refused("INVALID_ARGUMENT", "INVALID_SCHOOL_YEAR", database_url=database_url) as caught:
        s1._call(s1.staff.AssignDuty, req)
    assert [v.field for v in caught[0].violations] == ["duty.school_year"]


def test_every_code_pattern_is_ascii() -> None:
    """Each code rule refuses the same code spelled with non-ASCII digits or letters."""
    cases = [
        (check.school_year, "2026-2027", "２０２６-２０２７"),
        (check.national_id, "001234567890", "００１２３４５６７８９０"),
        (check.lookup_code, "0" * 32, "٠" * 32),
        (lambda v, s: check.school_code(v, s, "school"), "S1", "S１"),
        (check.class_name, "3A", "３A"),
        (lambda v, s: check.subject(v, s, "subject"), "toan", "toán"),
        (lambda v, s: check.iso_date(v, s, "date"), "2026-06-30", "２０２６-０６-３０"),
        (lambda v, s: check.iso_date(v, s, "date"), "2026-06-30", "2026-W27-2"),  # fromisoformat takes it
        (check.request_id, str(uuid.UUID(int=7)), "١" * 32),
    ]
    for rule, good, bad in cases:
        ok, refused_ = Violations(), Violations()
        rule(ok, good)
        rule(refused_, bad)
        assert not ok.items and len(refused_.items) == 1, (good, bad)


@pytest.mark.parametrize(
    "spelling",
    [
        pytest.param("١٢٣٤٥٦٧٨" * 4, id="arabic-indic-digits"),
        pytest.param(" " + "a" * 31, id="leading-blank"),
        pytest.param("a_" + "b" * 30, id="underscore"),
        pytest.param("１" * 32, id="fullwidth-digits"),
        pytest.param("{" + "a" * 32, id="unclosed-brace"),
    ],
)
def test_request_id_is_an_ascii_uuid(s1: TransferClient, database_url: str, spelling: str) -> None:
    """uuid.UUID() would take these (int(..., 16) reads non-ASCII digits, '_' and blanks); the node refuses them."""
    with refused("INVALID_ARGUMENT", "INVALID_REQUEST_ID", database_url=database_url) as caught:
        s1.register_record(new_lookup_code(), new_national_id(), PRIMARY, request_id=spelling)
    assert [v.field for v in caught[0].violations] == ["request_id"]


@pytest.mark.parametrize(
    ("name", "why"),
    [
        pytest.param(unicodedata.normalize("NFD", "Trường Tiểu học"), "NFC", id="nfd"),
        pytest.param("Trường\x00A", "control", id="nul"),
        pytest.param("Trường \u2066A\u2069", "format", id="bidi-isolate"),
        pytest.param("Trường \u202aA\u202c", "format", id="bidi-embedding"),
        pytest.param("Trường\u00adA", "format", id="soft-hyphen"),
        pytest.param("Trường\x85A", "control", id="c1-next-line"),
    ],
)
def test_free_text_follows_one_rule(admin: TransferClient, database_url: str, name: str, why: str) -> None:
    """A name that is not NFC, or holds a control, bidi or other format character, is INVALID_TEXT on the field."""
    with refused("INVALID_ARGUMENT", "INVALID_TEXT", database_url=database_url) as caught:
        admin.register_school("S7", name)
    assert [v.field for v in caught[0].violations] == ["name"]
    assert why in caught[0].violations[0].description


def test_the_text_rule_holds_for_every_free_text(
    admin: TransferClient, s1: TransferClient, s2: TransferClient, database_url: str
) -> None:
    """School names (new and updated), teacher names and rejection and cancellation reasons share the rule."""
    nfd = unicodedata.normalize("NFD", "Lớp đã đủ sĩ số")
    with refused("INVALID_ARGUMENT", "INVALID_TEXT", database_url=database_url):
        admin.update_school("S1", name=nfd)
    with refused("INVALID_ARGUMENT", "INVALID_TEXT", database_url=database_url):
        s1.register_teacher("GV01", nfd, [])
    code = new_lookup_code()
    s1.register_record(code, new_national_id(), PRIMARY)
    t = s1.initiate_transfer(code, "S2").transfer
    with refused("INVALID_ARGUMENT", "INVALID_TEXT", database_url=database_url):
        s2.reject_transfer(t.id, nfd)
    with refused("INVALID_ARGUMENT", "INVALID_TEXT", database_url=database_url):
        s1.cancel_transfer(t.id, "đổi ý\u202e")
    assert s2.reject_transfer(t.id, unicodedata.normalize("NFC", nfd)).transfer.reason == "Lớp đã đủ sĩ số"


def test_lengths_are_code_points(admin: TransferClient, database_url: str) -> None:
    """A school name is at most 200 code points after NFC, whatever its UTF-8 length (3 bytes each here)."""
    longest = "ữ" * 200
    assert len(longest.encode()) == 600 and unicodedata.is_normalized("NFC", longest)
    assert admin.register_school("S7", longest).name == longest
    with refused("INVALID_ARGUMENT", "TOO_LONG", database_url=database_url) as caught:
        admin.register_school("S8", longest + "ữ")
    assert "code points" in caught[0].violations[0].description


@pytest.mark.parametrize(
    ("method", "empty", "fields"),
    [
        ("InitiateTransfer", transfers_pb2.InitiateTransferRequest(), ["request_id", "lookup_code", "to_school"]),
        (
            "RegisterRecord",
            records_pb2.RegisterRecordRequest(),
            ["request_id", "lookup_code", "national_id", "level"],
        ),
        ("AcceptTransfer", transfers_pb2.AcceptTransferRequest(), ["request_id", "transfer_id"]),
        ("RejectTransfer", transfers_pb2.RejectTransferRequest(), ["request_id", "transfer_id", "reason"]),
        ("RegisterSchool", schools_pb2.RegisterSchoolRequest(), ["request_id", "code", "name"]),
        ("UpdateSchool", schools_pb2.UpdateSchoolRequest(), ["request_id", "school.code", "update_mask"]),
        ("LockPage", pages_pb2.LockPageRequest(), ["request_id", "page_id"]),
        ("ReplacePage", pages_pb2.ReplacePageRequest(), ["request_id", "page_id", "media_type", "payload"]),
        ("AddTeacherCertificate", staff_pb2.AddTeacherCertificateRequest(), ["request_id", "teacher_id"]),
        ("AssignDuty", staff_pb2.AssignDutyRequest(), ["request_id", "teacher_id", "duty.role"]),
        (
            "RecordDeparture",
            staff_pb2.RecordDepartureRequest(),
            ["request_id", "teacher_id", "reason", "effective_date"],
        ),
    ],
)
def test_an_empty_mutation_reports_every_violation_at_once(
    s1: TransferClient, database_url: str, method: str, empty: object, fields: list[str]
) -> None:
    """An empty request names request_id and every other required field in one INVALID_ARGUMENT."""
    stub = {
        "InitiateTransfer": s1.transfers,
        "AcceptTransfer": s1.transfers,
        "RejectTransfer": s1.transfers,
        "RegisterRecord": s1.records,
        "RegisterSchool": s1.schools,
        "UpdateSchool": s1.schools,
        "LockPage": s1.pages,
        "ReplacePage": s1.pages,
    }.get(method, s1.staff)
    with refused("INVALID_ARGUMENT", "REQUEST_ID_REQUIRED", database_url=database_url) as caught:
        s1._call(getattr(stub, method), empty)
    assert [v.field for v in caught[0].violations] == fields


def test_peer_texts_follow_the_rule() -> None:
    """A peer's decision or cancellation reason with a bidi override or not in NFC is refused as malformed."""
    good = {"state": 3, "reason": "Lớp đã đủ sĩ số", "decided_us": 1_795_000_000_000_000, "decided_by": "school:S2"}
    assert Decision.decode(json.dumps(good).encode()).reason == "Lớp đã đủ sĩ số"
    for reason in ("đủ\u202esĩ số", unicodedata.normalize("NFD", "Lớp đã đủ")):
        with pytest.raises(InvalidArgument) as info:
            Decision.decode(json.dumps(good | {"reason": reason}).encode())
        assert info.value.reason == "MALFORMED_DECISION"
