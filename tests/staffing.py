"""Helpers for tests of teachers, duties, pages and signatures."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from tests.support import new_lookup_code, new_national_id
from transfer.client import TransferClient
from transfer.client.signing import sign_digest
from transfer.devpki import SigningCA
from transfer.v1 import common_pb2, pages_pb2

YEAR = "2026-2027"  # the school year of the tests' fake clock (November 2026)
CLASS = "3A"
HOMEROOM = (pages_pb2.SIGNER_ROLE_HOMEROOM, "")
MATH = (pages_pb2.SIGNER_ROLE_SUBJECT, "toan")
PRINCIPAL = (pages_pb2.SIGNER_ROLE_PRINCIPAL, "")
REQUIREMENTS = [HOMEROOM, MATH, PRINCIPAL]
# Certificates valid around the fake clock (in-process nodes) and around the real one (node processes),
# whatever the real date: from before the fake clock's start to ten years after today.
VALID_FROM = datetime(2026, 1, 1, tzinfo=UTC)
VALID_TO = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3653)


def duty(requirement: tuple[int, str], year: str = YEAR, klass: str = CLASS) -> tuple[int, str, str, str]:
    role, subject = requirement
    if role == pages_pb2.SIGNER_ROLE_PRINCIPAL:
        return (role, "", "", "")
    return (role, year, klass, subject)


@dataclass
class TeacherKey:
    id: str
    code: str
    key: PrivateKeyTypes
    cert_pem: bytes


def teacher_certificate(
    ca: SigningCA,
    name: str,
    key_type: str = "ecdsa",
    *,
    not_before: datetime = VALID_FROM,
    not_after: datetime = VALID_TO,
) -> tuple[bytes, PrivateKeyTypes]:
    """A teacher's certificate (PEM) and key, valid around the fake clock whatever the real date."""
    return ca.teacher(name, key_type, not_before=not_before, not_after=not_after, write=False)


def hire(
    admin: TransferClient,
    ca: SigningCA,
    code: str,
    key_type: str = "ecdsa",
    *,
    not_before: datetime = VALID_FROM,
    not_after: datetime = VALID_TO,
) -> TeacherKey:
    pem, key = teacher_certificate(ca, code, key_type, not_before=not_before, not_after=not_after)
    teacher = admin.register_teacher(code, f"Giáo viên {code}", [pem])
    return TeacherKey(teacher.id, code, key, pem)


def sign(
    client: TransferClient, page: pages_pb2.Page, requirement: tuple[int, str], teacher: TeacherKey
) -> pages_pb2.Page:
    """The teacher signs the page's current digest with their key; the school system submits it."""
    return client.sign_page(page.id, requirement, teacher.id, page.digest, sign_digest(teacher.key, page.digest))


def new_record(client: TransferClient) -> str:
    code = new_lookup_code()
    client.register_record(code, new_national_id(), common_pb2.RECORD_LEVEL_PRIMARY)
    return code


def add_page(
    client: TransferClient,
    lookup_code: str,
    *,
    payload: bytes = b"%PDF-1.7 hoc ba",
    requirements: list[tuple[int, str]] = REQUIREMENTS,
) -> pages_pb2.Page:
    return client.add_page(lookup_code, YEAR, 3, CLASS, payload, requirements).page


def signing_ca(pki: Path) -> SigningCA:
    return SigningCA.load(pki)
