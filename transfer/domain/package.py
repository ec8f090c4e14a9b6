"""The transfer package: a record and all its pages with their signatures,
sealed by the sending node, as it travels to another province's node.

Format: canonical JSON (UTF-8, sorted keys, no spaces; bytes as standard
base64, digests as lowercase hex, instants as integer microseconds since the
Unix epoch, UTC):

    {"format": "hocba-transfer-package/1",
     "transfer": {"id", "from_province", "from_school", "to_province", "to_school",
                  "created_us", "lookup_code", "salt"},
     "record": {"lookup_code", "national_id", "level"},
     "pages": [{"id", "issuing_province", "issuing_school", "school_year", "segment", "grade",
                "class_name", "media_type", "payload", "payload_sha256", "version", "digest",
                "state", "lock_track", "created_us", "locked_us" (or null),
                "signatures": [{"role", "subject", "teacher_id", "signature",
                                "certificate", "chain": [...], "signed_us"}],
                "pending": [{"role", "subject"}]}]}

The seal is an Ed25519 signature by the sending node's seal key over
"hocba:package:v1\\n" || SHA-256(package bytes); the package digest is
SHA-256(package bytes). The receiver verifies the exact bytes it was sent, so
no re-encoding is ever needed. A package carries personal data (the national
id): it goes to the receiving node only, and every sending is a log entry.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from transfer.domain import validation as check
from transfer.domain.errors import DomainError, FieldViolation, InvalidArgument, Violations
from transfer.domain.model import (
    LockTrack,
    Page,
    PageState,
    Record,
    RecordLevel,
    Requirement,
    SignerRole,
    SigningTask,
)
from transfer.domain.pages import page_digest
from transfer.domain.signatures import CertificateInfo, SigningTrust, fingerprint, load_certificate, verify_signature

FORMAT = "hocba-transfer-package/1"
SEAL_CONTEXT = b"hocba:package:v1\n"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def _us(t: datetime) -> int:
    return (t - _EPOCH) // _US


def _at(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def digest_of(package: bytes) -> bytes:
    return hashlib.sha256(package).digest()


def seal_message(package: bytes) -> bytes:
    return SEAL_CONTEXT + digest_of(package)


@dataclass(frozen=True, slots=True)
class PackagedSignature:
    requirement: Requirement
    teacher_id: str
    signature: bytes
    certificate: bytes  # DER
    chain: tuple[bytes, ...]
    signed_at: datetime


@dataclass(frozen=True, slots=True)
class PackagedPage:
    page: Page
    issuing_province: str
    payload: bytes
    signatures: tuple[PackagedSignature, ...]
    pending: tuple[Requirement, ...]


@dataclass(frozen=True, slots=True)
class Package:
    transfer_id: str
    from_province: str
    from_school: str
    to_province: str
    to_school: str
    created_at: datetime
    record: Record
    pages: tuple[PackagedPage, ...]
    # The transfer's log salt (Transfer.salt): both nodes' log entries name the
    # record by the same salted digest, so their logs can be compared.
    salt: bytes = b""

    def encode(self) -> bytes:
        doc = {
            "format": FORMAT,
            "transfer": {
                "id": self.transfer_id,
                "from_province": self.from_province,
                "from_school": self.from_school,
                "to_province": self.to_province,
                "to_school": self.to_school,
                "created_us": _us(self.created_at),
                "lookup_code": self.record.lookup_code,
                "salt": self.salt.hex(),
            },
            "record": {
                "lookup_code": self.record.lookup_code,
                "national_id": self.record.national_id,
                "level": int(self.record.level),
            },
            "pages": [_page_doc(p) for p in self.pages],
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _page_doc(p: PackagedPage) -> dict[str, Any]:
    page = p.page
    return {
        "id": page.id,
        "issuing_province": p.issuing_province,
        "issuing_school": page.issuing_school,
        "school_year": page.school_year,
        "segment": page.segment,
        "grade": page.grade,
        "class_name": page.class_name,
        "media_type": page.media_type,
        "payload": _b64(p.payload),
        "payload_sha256": page.payload_sha256.hex(),
        "version": page.version,
        "digest": page.digest.hex(),
        "state": int(page.state),
        "lock_track": int(page.lock_track),
        "created_us": _us(page.created_at),
        "locked_us": None if page.locked_at is None else _us(page.locked_at),
        "signatures": [
            {
                "role": int(s.requirement.role),
                "subject": s.requirement.subject,
                "teacher_id": s.teacher_id,
                "signature": _b64(s.signature),
                "certificate": _b64(s.certificate),
                "chain": [_b64(c) for c in s.chain],
                "signed_us": _us(s.signed_at),
            }
            for s in p.signatures
        ],
        "pending": [{"role": int(r.role), "subject": r.subject} for r in p.pending],
    }


def build_page(page: Page, province: str, payload: bytes, tasks: Sequence[SigningTask],
               certificates: dict[str, CertificateInfo]) -> PackagedPage:  # fmt: skip
    """A local page with its signatures (and the certificates that made them)."""
    signatures = []
    pending = []
    for t in tasks:
        if t.pending:
            pending.append(t.requirement)
            continue
        assert t.signed_by and t.signature is not None and t.signed_at is not None and t.certificate_sha256
        cert = certificates[t.certificate_sha256]
        signatures.append(PackagedSignature(t.requirement, t.signed_by, t.signature, cert.der, cert.chain, t.signed_at))
    return PackagedPage(page, province, payload, tuple(signatures), tuple(pending))


class PackageError(InvalidArgument):
    """A package that is malformed, tampered with, or unverifiable."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(reason, message, field_violations=(FieldViolation("package", message, reason),))


def verify_seal(package: bytes, seal: bytes, verify_key: ed25519.Ed25519PublicKey) -> None:
    try:
        verify_key.verify(seal, seal_message(package))
    except InvalidSignature:
        raise PackageError("BAD_SEAL", "the package's seal does not verify with the sending node's key") from None


# What parsing a peer's JSON document can raise when it is not what it should be
# (missing keys, wrong types, numbers out of range, deep nesting, bad UTF-8).
UNREADABLE = (KeyError, TypeError, ValueError, AttributeError, OverflowError, RecursionError, UnicodeDecodeError)


def decode(package: bytes) -> Package:
    """Parse and check a package's structure and content (not its seal)."""
    try:
        doc = json.loads(package.decode("utf-8"))
        if doc.get("format") != FORMAT:
            raise PackageError("UNKNOWN_PACKAGE_FORMAT", f"format {doc.get('format')!r} is not {FORMAT}")
        t, r = doc["transfer"], doc["record"]
        v = Violations()
        check.lookup_code(v, r["lookup_code"])
        check.national_id(v, r["national_id"])
        check.transfer_id(v, t["id"])
        check.school_code(v, t["from_school"], "from_school")
        check.school_code(v, t["to_school"], "to_school")
        check.province_code(v, t["from_province"], "from_province")
        check.province_code(v, t["to_province"], "to_province")
        if v.items or t["lookup_code"] != r["lookup_code"]:
            raise PackageError(
                "MALFORMED_PACKAGE", "; ".join(f"{x.field}: {x.description}" for x in v.items) or "lookup codes differ"
            )
        salt = bytes.fromhex(t["salt"])
        if len(salt) != 16:
            raise PackageError("MALFORMED_PACKAGE", "salt: must be 16 bytes")
        created = _at(int(t["created_us"]))
        record = Record(
            r["lookup_code"], r["national_id"], RecordLevel(int(r["level"])), t["to_school"], None, created, created
        )
        pages = tuple(_decode_page(p, r["lookup_code"]) for p in doc["pages"])
    except PackageError:
        raise
    except UNREADABLE as exc:
        raise PackageError("MALFORMED_PACKAGE", f"the package cannot be read: {type(exc).__name__}: {exc}") from None
    return Package(
        t["id"], t["from_province"], t["from_school"], t["to_province"], t["to_school"], created, record, pages, salt
    )


def _decode_page(p: dict[str, Any], lookup_code: str) -> PackagedPage:
    # A page's codes obey the rules a school's AddPage does (ASCII digits in a school year).
    v = Violations()
    check.school_year(v, p["school_year"])
    check.class_name(v, p["class_name"])
    check.school_code(v, p["issuing_school"], "issuing_school")
    if not check.SEGMENT.fullmatch(p["segment"]):
        v.add("segment", "at most 20 lowercase letters, digits or '-'", "INVALID_SEGMENT")
    if not check.MEDIA_TYPE.fullmatch(p["media_type"]) or len(p["media_type"]) > 100:
        v.add("media_type", "a media type like application/pdf", "INVALID_MEDIA_TYPE")
    if v.items:
        raise PackageError(
            "MALFORMED_PACKAGE", "; ".join(f"page {p['id']}: {x.field}: {x.description}" for x in v.items)
        )
    payload = base64.b64decode(p["payload"], validate=True)
    sha = bytes.fromhex(p["payload_sha256"])
    if hashlib.sha256(payload).digest() != sha:
        raise PackageError("BAD_PAGE_DIGEST", f"page {p['id']}: the content does not match its SHA-256")
    digest = bytes.fromhex(p["digest"])
    expected = page_digest(
        p["id"], int(p["version"]), sha, p["media_type"], lookup_code, p["school_year"], p["segment"],
        int(p["grade"]), p["class_name"],
    )  # fmt: skip
    if digest != expected:
        raise PackageError("BAD_PAGE_DIGEST", f"page {p['id']}: its digest is not that of its content and identity")
    page = Page(
        p["id"], lookup_code, p["issuing_school"], p["school_year"], p["segment"], int(p["grade"]), p["class_name"],
        p["media_type"], sha, len(payload), int(p["version"]), digest, PageState(int(p["state"])),
        LockTrack(int(p["lock_track"])), _at(int(p["created_us"])), _at(int(p["created_us"])),
        None if p["locked_us"] is None else _at(int(p["locked_us"])),
    )  # fmt: skip
    signatures = tuple(
        PackagedSignature(
            Requirement(SignerRole(int(s["role"])), s["subject"]),
            s["teacher_id"],
            base64.b64decode(s["signature"], validate=True),
            base64.b64decode(s["certificate"], validate=True),
            tuple(base64.b64decode(c, validate=True) for c in s["chain"]),
            _at(int(s["signed_us"])),
        )
        for s in p["signatures"]
    )
    pending = tuple(Requirement(SignerRole(int(q["role"])), q["subject"]) for q in p["pending"])
    return PackagedPage(page, p["issuing_province"], payload, signatures, pending)


def verify_signatures(package: Package, trust: SigningTrust) -> None:
    """Every teacher signature verifies over its page digest with a certificate
    that chains to a CA this node trusts and was valid when it signed."""
    for p in package.pages:
        for s in p.signatures:
            where = f"page {p.page.id}, {s.requirement} signature"
            if not verify_signature(s.certificate, p.page.digest, s.signature):
                raise PackageError("BAD_TEACHER_SIGNATURE", f"{where} does not verify")
            try:
                trust.check_chain(load_certificate(s.certificate), [load_certificate(c) for c in s.chain], s.signed_at)
            except DomainError as exc:
                raise PackageError("UNTRUSTED_TEACHER_CERTIFICATE", f"{where}: {exc.message}") from None
            except ValueError as exc:
                raise PackageError(
                    "UNTRUSTED_TEACHER_CERTIFICATE", f"{where}: unreadable certificate ({exc})"
                ) from None


def certificate_of(s: PackagedSignature) -> CertificateInfo:
    cert = load_certificate(s.certificate)
    return CertificateInfo(
        fingerprint(s.certificate),
        s.certificate,
        "imported",
        cert.not_valid_before_utc,
        cert.not_valid_after_utc,
        s.chain,
    )


__all__ = [
    "FORMAT",
    "Package",
    "PackageError",
    "PackagedPage",
    "PackagedSignature",
    "build_page",
    "certificate_of",
    "decode",
    "digest_of",
    "seal_message",
    "verify_seal",
    "verify_signatures",
]
