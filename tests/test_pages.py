"""Pages, their required signatures, signing with each key type, locking, and
every refusal of a signature (forged, wrong certificate, expired, unknown CA,
locked, stale, frozen)."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtensionOID, NameOID

from tests.staffing import (
    CLASS,
    HOMEROOM,
    MATH,
    PRINCIPAL,
    REQUIREMENTS,
    YEAR,
    TeacherKey,
    add_page,
    duty,
    hire,
    new_record,
    sign,
    signing_ca,
    teacher_certificate,
)
from tests.support import RunningNode, refused
from transfer.client import TransferClient
from transfer.client.signing import sign_digest
from transfer.devpki import SigningCA
from transfer.domain.leaves import LeafKind, decode_any
from transfer.domain.signatures import verify_signature
from transfer.v1 import pages_pb2


@dataclass
class School:
    admin: TransferClient  # school-admin-S1
    system: TransferClient  # school-S1, the school's information system
    home: TeacherKey
    math: TeacherKey
    head: TeacherKey
    spare: TeacherKey
    ca: SigningCA


@pytest.fixture
def school(node: RunningNode, pki: Path) -> School:
    """S1 with a homeroom teacher (ECDSA), a maths teacher (RSA), a principal (Ed25519) and a spare teacher."""
    ca = signing_ca(pki)
    admin = node.client("school-admin-S1")
    home = hire(admin, ca, "GV-CN", "ecdsa")
    math = hire(admin, ca, "GV-TOAN", "rsa")
    head = hire(admin, ca, "HT", "ed25519")
    spare = hire(admin, ca, "GV-DU", "ecdsa")
    admin.assign_duty(duty(HOMEROOM), home.id)
    admin.assign_duty(duty(MATH), math.id)
    admin.assign_duty(duty(PRINCIPAL), head.id)
    return School(admin, node.client("school-S1"), home, math, head, spare, ca)


def sign_all(school: School, page: pages_pb2.Page) -> pages_pb2.Page:
    for req, teacher in ((HOMEROOM, school.home), (MATH, school.math), (PRINCIPAL, school.head)):
        page = sign(school.system, page, req, teacher)
    return page


def test_page_collects_signatures_of_each_key_type_and_locks(school: School) -> None:
    """RSA, ECDSA P-256 and Ed25519 signatures are accepted; a fully signed page locks and is logged."""
    page = add_page(school.system, new_record(school.system))
    assert page.state == pages_pb2.PAGE_STATE_DRAFT and page.version == 1 and len(page.digest) == 32
    assert {t.assignee_teacher_id for t in page.tasks} == {school.home.id, school.math.id, school.head.id}
    page = sign(school.system, page, HOMEROOM, school.home)
    assert page.state == pages_pb2.PAGE_STATE_SIGNING
    page = sign_all_rest(school, page)
    assert page.state == pages_pb2.PAGE_STATE_SIGNED
    locked = school.system.lock_page(page.id)
    assert locked.page.state == pages_pb2.PAGE_STATE_LOCKED
    leaf = decode_any(locked.receipt.leaf)
    assert leaf.kind is LeafKind.PAGE_LOCKED_SALTED and leaf.page_id == page.id and leaf.count == 3  # type: ignore[union-attr]
    teacher = school.system.get_teacher(school.math.id)
    task = next(t for t in locked.page.tasks if t.requirement.role == MATH[0])
    assert verify_signature(teacher.certificates[0].der, locked.page.digest, task.signature)


def sign_all_rest(school: School, page: pages_pb2.Page) -> pages_pb2.Page:
    page = sign(school.system, page, MATH, school.math)
    return sign(school.system, page, PRINCIPAL, school.head)


def test_bad_signatures_are_refused(school: School, node: RunningNode, rogue_pki: Path, database_url: str) -> None:
    """Forged bytes, another teacher's key, another digest, a signature owed by someone else: each refused."""
    page = add_page(school.system, new_record(school.system))
    with refused("INVALID_ARGUMENT", "BAD_SIGNATURE", database_url=database_url):
        school.system.sign_page(page.id, HOMEROOM, school.home.id, page.digest, b"\x30" * 70)
    with refused("INVALID_ARGUMENT", "BAD_SIGNATURE", database_url=database_url):  # the spare teacher's key
        school.system.sign_page(
            page.id, HOMEROOM, school.home.id, page.digest, sign_digest(school.spare.key, page.digest)
        )
    other = bytes(32)
    with refused("FAILED_PRECONDITION", "STALE_DIGEST", database_url=database_url):
        school.system.sign_page(page.id, HOMEROOM, school.home.id, other, sign_digest(school.home.key, other))
    with refused("PERMISSION_DENIED", "NOT_YOUR_TASK", database_url=database_url):
        sign(school.system, page, HOMEROOM, school.spare)
    with refused("FAILED_PRECONDITION", "NO_CERTIFICATE", database_url=database_url):
        school.system.sign_page(
            page.id, HOMEROOM, school.home.id, page.digest, sign_digest(school.home.key, page.digest),
            certificate_sha256="0" * 64,
        )  # fmt: skip
    with refused("INVALID_ARGUMENT", "UNKNOWN_REQUIREMENT", database_url=database_url):
        sign(school.system, page, (pages_pb2.SIGNER_ROLE_SUBJECT, "van"), school.math)
    sign(school.system, page, HOMEROOM, school.home)
    with refused("FAILED_PRECONDITION", "ALREADY_SIGNED", database_url=database_url):
        sign(school.system, page, HOMEROOM, school.home)
    stranger = node.client("school-S2")
    with refused("PERMISSION_DENIED", "NOT_ISSUING_SCHOOL", database_url=database_url):
        sign(stranger, page, MATH, school.math)


def test_certificates_must_chain_to_a_trusted_ca_and_be_valid(
    school: School, node: RunningNode, rogue_pki: Path
) -> None:
    """Registration refuses an unknown CA, an expired certificate and a weak key; a certificate
    that expires later makes that teacher's later signatures fail with CERTIFICATE_NOT_VALID."""
    rogue = signing_ca(rogue_pki)
    pem, _ = rogue.teacher("X", "ecdsa", not_before=datetime(2026, 1, 1, tzinfo=UTC), write=False)
    with refused("INVALID_ARGUMENT", "UNTRUSTED_CERTIFICATE"):
        school.admin.register_teacher("GV-X", "X", [pem])
    old, _ = school.ca.teacher(
        "Y",
        "ecdsa",
        not_before=datetime(2025, 1, 1, tzinfo=UTC),
        not_after=datetime(2025, 6, 1, tzinfo=UTC),
        write=False,
    )
    with refused("INVALID_ARGUMENT", "CERTIFICATE_NOT_VALID"):
        school.admin.register_teacher("GV-Y", "Y", [old])
    with refused("INVALID_ARGUMENT", "BAD_CERTIFICATE"):
        school.admin.register_teacher("GV-Z", "Z", [b"not a certificate"])
    # A key algorithm the node cannot read (the key's OID changed) is refused, not an internal error.
    good, _ = teacher_certificate(school.ca, "W")
    der = base64.b64decode(b"".join(line for line in good.splitlines() if not line.startswith(b"-----")))
    ec_public_key = bytes.fromhex("06072a8648ce3d0201")  # OID 1.2.840.10045.2.1
    assert der.count(ec_public_key) == 1
    odd = der.replace(ec_public_key, bytes.fromhex("06072a8648ce3d0209"))
    odd_pem = b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(odd) + b"-----END CERTIFICATE-----\n"
    with refused("INVALID_ARGUMENT", "UNSUPPORTED_KEY"):
        school.admin.register_teacher("GV-W", "W", [odd_pem])
    assert node.clock is not None
    short = hire(school.admin, school.ca, "GV-NGAN", "rsa", not_after=node.clock.now() + timedelta(days=2))
    school.admin.assign_duty(duty(HOMEROOM, klass="3B"), short.id)
    page = school.system.add_page(new_record(school.system), YEAR, 3, "3B", b"%PDF", [HOMEROOM]).page
    node.clock.advance(timedelta(days=3))
    with refused("FAILED_PRECONDITION", "CERTIFICATE_NOT_VALID"):
        sign(school.system, page, HOMEROOM, short)
    renewed, key = teacher_certificate(school.ca, "GV-NGAN-2", "ed25519")
    school.admin.add_teacher_certificate(short.id, renewed)
    short.key = key
    assert sign(school.system, page, HOMEROOM, short).state == pages_pb2.PAGE_STATE_SIGNED
    # At most 5 certificates that have not expired (the expired one does not count, and stays).
    for i in range(4):
        school.admin.add_teacher_certificate(short.id, teacher_certificate(school.ca, f"GV-NGAN-{i + 3}")[0])
    with refused("FAILED_PRECONDITION", "TOO_MANY_CERTIFICATES"):
        school.admin.add_teacher_certificate(short.id, teacher_certificate(school.ca, "GV-NGAN-7")[0])
    assert len(school.admin.get_teacher(short.id).certificates) == 6


def _chain_through_a_malformed_ca(ca: SigningCA, *, malformed_leaf: bool = False) -> bytes:
    """A teacher certificate and an intermediate the signing CA issued, one of them with a Basic Constraints
    extension whose content is not Basic Constraints (signatures and names all correct)."""
    broken = x509.UnrecognizedExtension(ExtensionOID.BASIC_CONSTRAINTS, b"\x05\x00")
    mid_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())

    def issue(
        subject: str, issuer: x509.Name, key: Any, signer: Any, extension: x509.ExtensionType
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(datetime(2020, 1, 1, tzinfo=UTC))
            .not_valid_after(datetime(2099, 1, 1, tzinfo=UTC))
            .add_extension(extension, critical=True)
        )
        return builder.sign(signer, hashes.SHA256())

    mid_extension = x509.BasicConstraints(ca=True, path_length=0) if malformed_leaf else broken
    mid = issue("Trung gian", ca.cert.subject, mid_key, ca.key, mid_extension)
    leaf_extension = broken if malformed_leaf else x509.BasicConstraints(ca=False, path_length=None)
    leaf = issue("GV-HONG", mid.subject, leaf_key, mid_key, leaf_extension)
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (leaf, mid))


def test_a_chain_with_a_malformed_certificate_is_bad_certificate(school: School, database_url: str) -> None:
    """A teacher certificate chain whose intermediate (or leaf) has a malformed extension is refused with
    INVALID_ARGUMENT BAD_CERTIFICATE by RegisterTeacher and AddTeacherCertificate (it was INTERNAL), and
    changes nothing."""
    for malformed_leaf in (False, True):
        pem = _chain_through_a_malformed_ca(school.ca, malformed_leaf=malformed_leaf)
        with refused("INVALID_ARGUMENT", "BAD_CERTIFICATE", database_url=database_url):
            school.admin.register_teacher("GV-HONG", "Hồng", [pem])
        with refused("INVALID_ARGUMENT", "BAD_CERTIFICATE", database_url=database_url):
            school.admin.add_teacher_certificate(school.spare.id, pem)


def test_locked_and_frozen_pages_refuse_changes(school: School, node: RunningNode, database_url: str) -> None:
    """A locked page refuses signatures and replacement; a record with an open transfer freezes its pages."""
    code = new_record(school.system)
    page = sign_all(school, add_page(school.system, code))
    school.system.lock_page(page.id)
    with refused("FAILED_PRECONDITION", "PAGE_LOCKED", database_url=database_url):
        school.system.replace_page(page.id, b"new")
    with refused("FAILED_PRECONDITION", "PAGE_LOCKED", database_url=database_url):
        school.system.lock_page(page.id)

    code2 = new_record(school.system)
    page2 = add_page(school.system, code2)
    school.system.initiate_transfer(code2, "S2")
    with refused("FAILED_PRECONDITION", "RECORD_FROZEN", database_url=database_url):
        sign(school.system, page2, HOMEROOM, school.home)
    with refused("FAILED_PRECONDITION", "RECORD_FROZEN", database_url=database_url):
        add_page(school.system, code2, requirements=[PRINCIPAL])  # another segment would be refused too
    with refused("FAILED_PRECONDITION", "RECORD_FROZEN", database_url=database_url):
        school.system.replace_page(page2.id, b"new")


def test_replacing_voids_signatures(school: School, database_url: str) -> None:
    """A replaced page gets a new version and digest; the signatures collected before are void."""
    page = add_page(school.system, new_record(school.system))
    page = sign(school.system, page, HOMEROOM, school.home)
    replaced = school.system.replace_page(page.id, b"%PDF-1.7 corrected")
    assert replaced.page.version == 2 and replaced.page.digest != page.digest
    assert all(not t.signed_by_teacher_id for t in replaced.page.tasks)
    assert decode_any(replaced.receipt.leaf).count == 1  # type: ignore[union-attr]
    with refused("FAILED_PRECONDITION", "STALE_DIGEST", database_url=database_url):
        sign(school.system, page, MATH, school.math)  # signed the old digest
    assert sign(school.system, replaced.page, HOMEROOM, school.home).state == pages_pb2.PAGE_STATE_SIGNING


def test_page_rules(school: School, node: RunningNode, database_url: str) -> None:
    """Missing duties, wrong grades, duplicates, bad content and unfinished locks are refused with reasons."""
    code = new_record(school.system)
    with refused("FAILED_PRECONDITION", "DUTY_UNASSIGNED", database_url=database_url) as caught:
        school.system.add_page(code, YEAR, 3, "3C", b"%PDF", REQUIREMENTS)
    assert {v.subject for v in caught[0].preconditions} == {
        f"duties/homeroom/{YEAR}/3C",
        f"duties/subject/{YEAR}/3C/toan",
    }
    with refused("INVALID_ARGUMENT", "GRADE_LEVEL_MISMATCH", database_url=database_url):
        school.system.add_page(code, YEAR, 7, CLASS, b"%PDF", REQUIREMENTS)
    with refused("INVALID_ARGUMENT", "DUPLICATE_REQUIREMENT", database_url=database_url):
        school.system.add_page(code, YEAR, 3, CLASS, b"%PDF", [HOMEROOM, HOMEROOM])
    with refused("INVALID_ARGUMENT", "INVALID_SCHOOL_YEAR", database_url=database_url):
        school.system.add_page(code, "2026-2028", 3, CLASS, b"%PDF", REQUIREMENTS)
    req = pages_pb2.AddPageRequest(
        request_id="9a0e0c4c-8b66-4d5c-9d63-4a8f3f0f8c11", lookup_code=code, school_year=YEAR, grade=3,
        class_name=CLASS, media_type="application/pdf", payload=b"abc", payload_sha256=bytes(32),
        lock_track=pages_pb2.LOCK_TRACK_COMPLETED, required_signatures=[pages_pb2.RequiredSignature(role=1)],
    )  # fmt: skip
    with refused("INVALID_ARGUMENT", "DIGEST_MISMATCH", database_url=database_url):
        school.system._call(school.system.pages.AddPage, req)
    page = add_page(school.system, code)
    with refused("ALREADY_EXISTS", "PAGE_EXISTS", database_url=database_url):
        add_page(school.system, code)
    with refused("FAILED_PRECONDITION", "PAGE_NOT_FULLY_SIGNED", database_url=database_url) as caught:
        school.system.lock_page(page.id)
    assert len(caught[0].preconditions) == 3
    with refused("PERMISSION_DENIED", "NOT_CUSTODIAN", database_url=database_url):
        add_page(node.client("school-S2"), code)


def test_pages_follow_a_transfer(school: School, node: RunningNode) -> None:
    """After a transfer the new custodian adds pages; the old school reads and still signs and corrects its own."""
    code = new_record(school.system)
    page = add_page(school.system, code)
    s2 = node.client("school-S2")
    t = school.system.initiate_transfer(code, "S2").transfer
    s2.accept_transfer(t.id)
    # S1 still answers for the year it issued: its teachers sign, it may correct before the lock.
    page = sign(school.system, page, HOMEROOM, school.home)
    corrected = school.system.replace_page(page.id, b"%PDF corrected").page
    assert [p.id for p in school.system.iter_pages(code)] == [page.id]
    admin2 = node.client("school-admin-S2")
    t2 = hire(admin2, school.ca, "GV2", "ed25519")
    admin2.assign_duty((pages_pb2.SIGNER_ROLE_PRINCIPAL, "", "", ""), t2.id)
    newer = s2.add_page(code, "2027-2028", 4, "4A", b"%PDF grade 4", [PRINCIPAL]).page
    assert newer.issuing_school == "S2"
    assert {p.id for p in s2.iter_pages(code)} == {corrected.id, newer.id}
    assert s2.get_page(corrected.id, include_payload=True).payload == b"%PDF corrected"  # read-only for S2
    with refused("PERMISSION_DENIED", "NOT_ISSUING_SCHOOL"):
        s2.replace_page(corrected.id, b"not yours")
    with refused("PERMISSION_DENIED", "NOT_YOUR_PAGE"):
        school.system.get_page(newer.id)


def test_pages_lock_themselves_at_the_lock_date(school: School, node: RunningNode) -> None:
    """At the configured date (30 June; 15 August for supplementary) signed pages lock; unsigned ones wait."""
    signed = sign_all(school, add_page(school.system, new_record(school.system)))
    unsigned = add_page(school.system, new_record(school.system))
    late = school.system.add_page(
        new_record(school.system), YEAR, 3, CLASS, b"%PDF", [PRINCIPAL], lock_track=pages_pb2.LOCK_TRACK_SUPPLEMENTARY
    ).page
    late = sign(school.system, late, PRINCIPAL, school.head)
    assert node.clock is not None and node.node is not None
    node.clock.advance(datetime(2027, 7, 1, 1, tzinfo=UTC) - node.clock.now())  # 1 July 08:00 in Hà Nội
    node.run(node.node.sweep_once)
    assert school.system.get_page(signed.id).state == pages_pb2.PAGE_STATE_LOCKED
    assert school.system.get_page(unsigned.id).state == pages_pb2.PAGE_STATE_DRAFT
    assert school.system.get_page(late.id).state == pages_pb2.PAGE_STATE_SIGNED
    node.clock.advance(timedelta(days=46))  # 16 August
    node.run(node.node.sweep_once)
    assert school.system.get_page(late.id).state == pages_pb2.PAGE_STATE_LOCKED


def test_largest_page_travels_through_the_api(school: School, database_url: str) -> None:
    """A page of exactly the largest payload (4 MiB) is taken and read back whole: the
    transport's message limit is above it. One byte more is refused by the rules, not the transport."""
    from transfer.domain.validation import MAX_PAYLOAD

    code = new_record(school.system)
    big = bytes(range(256)) * (MAX_PAYLOAD // 256)
    page = add_page(school.system, code, payload=big)
    assert page.payload_size == MAX_PAYLOAD
    assert school.system.get_page(page.id, include_payload=True).payload == big
    with refused("INVALID_ARGUMENT", "TOO_LONG", database_url=database_url):
        school.system.replace_page(page.id, big + b"x")
