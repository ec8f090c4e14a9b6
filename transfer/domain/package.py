"""The transfer package: a record and all its pages with their signatures,
sealed by the sending node, as it travels to another province's node.

Format: canonical JSON (UTF-8, sorted keys, no spaces; bytes as standard
base64, digests as lowercase hex, instants as integer microseconds since the
Unix epoch, UTC):

    {"format": "hocba-transfer-package/2",
     "transfer": {"id", "from_province", "from_school", "to_province", "to_school",
                  "created_us", "lookup_code", "salt"},
     "record": {"lookup_code", "national_id", "level", "page_salts": [hex, ...]},
     "pages": [{"id", "issuing_province", "issuing_school", "school_year", "segment", "grade",
                "class_name", "media_type", "payload", "payload_sha256", "version", "digest",
                "state", "lock_track", "created_us", "locked_us" (or null),
                "signatures": [{"role", "subject", "teacher_id", "signature",
                                "certificate", "chain": [...], "signed_us"}],
                "pending": [{"role", "subject"}]}]}

The seal is an Ed25519 signature by the sending node's seal key over
"hocba:package:v1\\n" || SHA-256(package bytes); the package digest is
SHA-256(package bytes). `page_salts` (format 2) are the record's page salts,
oldest first (16 bytes each, lowercase hex, at most 256 of them, none twice):
the receiving node keeps them, so the new custodian can match the entries of
the record's earlier pages. A node sends format 2 and reads both: a format 1
package (no `page_salts`, otherwise the same) is read as a record with no
earlier salts. The receiver verifies the exact bytes it was sent, so
no re-encoding is ever needed. A package carries personal data (the national
id): it goes to the receiving node only, and every sending is a log entry.

This module is also where everything a peer sends is read: the package's
strict schema (`decode`, then `check_content`), the decision a RESOLVE
carries (`Decision.decode`), a CANCEL_REQUEST's reason and the transfer id
either names. Their refusals live here too; the provenance rules, which need
this node's database, are applied by `Federation.receive_offer`.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
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
    TransferState,
)
from transfer.domain.pages import GRADES, MAX_REQUIREMENTS, check_media_type, check_segment, page_digest
from transfer.domain.signatures import (
    MAX_CHAIN,
    CertificateInfo,
    SigningTrust,
    fingerprint,
    key_type,
    load_certificate,
    verify_signature,
)

FORMAT = "hocba-transfer-package/2"
# Format 1 (before record page salts, 2026-12): still read, from nodes not yet upgraded.
FORMAT_1 = "hocba-transfer-package/1"
MAX_PAGE_SALTS = 256  # one per custodian the record ever had
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
                "page_salts": [x.hex() for x in self.record.page_salts],
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

    def __init__(self, reason: str, message: str, field_violations: tuple[FieldViolation, ...] = ()) -> None:
        super().__init__(
            reason, message, field_violations=field_violations or (FieldViolation("package", message, reason),)
        )


def verify_seal(package: bytes, seal: bytes, verify_key: ed25519.Ed25519PublicKey) -> None:
    try:
        verify_key.verify(seal, seal_message(package))
    except InvalidSignature:
        raise PackageError("BAD_SEAL", "the package's seal does not verify with the sending node's key") from None


# -- the schema of what peers send --------------------------------------------
#
# Every document a peer sends (a package, a decision, a cancellation request)
# is read here and nowhere else: each field of its JSON type (no null, list or
# number where a string belongs, no bool for a number), bounded, and in the
# alphabet a school's request must use for the same field (the rules of
# `validation` and `pages`), with no field missing and none unknown. Code past
# these functions sees only the validated domain objects they return.

MAX_PAGES = 1000  # pages of one record: one per school year and segment
MAX_SIGNATURE = 1024  # bytes of one teacher signature (RSA-4096 gives 512)
MAX_CERTIFICATE = 16 * 1024  # bytes of one DER certificate
# Instants a peer may state (created, signed, locked, decided): after the
# system began, before a time no clock of a working node reaches.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
MAX_VERSION = 2**31 - 1
# A refusal names at most this many bad fields: its details travel in a
# gRPC trailer, which peers limit to a few KiB.
MAX_VIOLATIONS = 10

_HEX = re.compile(r"[0-9a-f]*")

# What decoding a document that is not JSON at all can raise.
UNREADABLE = (ValueError, RecursionError, UnicodeDecodeError)


class _Bad(Exception):
    """Stops reading a document that has more bad fields than a refusal names."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    doc = dict(pairs)
    if len(doc) != len(pairs):
        raise ValueError("a key appears twice in one object")
    return doc


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _json(data: bytes) -> Any:
    """Strict JSON: UTF-8, no NaN or Infinity, no key twice in an object."""
    return json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_no_constants)


class _Reader:
    """Reads one peer document field by field, collecting what is wrong."""

    def __init__(self) -> None:
        self.v = Violations()

    def add(self, path: str, description: str, reason: str) -> None:
        self.v.add(path, description, reason)
        if len(self.v.items) >= MAX_VIOLATIONS:
            raise _Bad

    def check(self, rule: Any, value: Any, path: str, *args: Any) -> None:
        """Apply a `validation` rule (which reports to a collector) under this reader's bound."""
        found = Violations()
        rule(found, value, path, *args)
        for x in found.items:
            self.add(x.field, x.description, x.reason)

    def fields(self, value: Any, path: str, keys: tuple[str, ...]) -> dict[str, Any] | None:
        """A JSON object with exactly these keys (else None, the fault reported)."""
        if type(value) is not dict:
            self.add(path, "must be a JSON object", "WRONG_TYPE")
            return None
        for k in keys:
            if k not in value:
                self.add(f"{path}.{k}", "required", "MISSING_FIELD")
        for k in sorted(set(value) - set(keys)):
            self.add(f"{path}.{k[:40]}", "not a field of this format", "UNKNOWN_FIELD")
        return value

    def _typed(self, obj: dict[str, Any], key: str, path: str, kind: type, what: str) -> Any:
        """`obj[key]` when present and exactly of type `kind` (a bool is no int), else None (a wrong type noted)."""
        if key not in obj:
            return None
        value = obj[key]
        if type(value) is not kind:
            self.add(f"{path}.{key}", f"must be {what}", "WRONG_TYPE")
            return None
        return value

    def string(self, obj: dict[str, Any], key: str, path: str, max_len: int, rule: Any = None) -> str | None:
        value = self._typed(obj, key, path, str, "a string")
        field = f"{path}.{key}"
        if value is None:
            return None
        if len(value) > max_len:
            self.add(field, f"at most {max_len} characters", "TOO_LONG")
            return None
        before = len(self.v.items)
        if rule is not None:
            self.check(rule, value, field)
        return value if len(self.v.items) == before else None

    def integer(self, obj: dict[str, Any], key: str, path: str, lo: int, hi: int) -> int | None:
        value = self._typed(obj, key, path, int, "an integer")
        if value is None:
            return None
        if not lo <= value <= hi:
            self.add(f"{path}.{key}", f"must be from {lo} to {hi}", "NUMBER_OUT_OF_RANGE")
            return None
        return value  # type: ignore[no-any-return]

    def enum(self, obj: dict[str, Any], key: str, path: str, kind: Any) -> Any:
        value = self.integer(obj, key, path, 1, max(kind))
        return None if value is None else kind(value)

    def instant(self, obj: dict[str, Any], key: str, path: str, *, nullable: bool = False) -> datetime | None:
        if nullable and key in obj and obj[key] is None:
            return None
        value = self.integer(obj, key, path, _us(EARLIEST), _us(LATEST))
        return None if value is None else _at(value)

    def hex_bytes(self, obj: dict[str, Any], key: str, path: str, size: int) -> bytes | None:
        value = self.string(obj, key, path, 2 * size)
        if value is None:
            return None
        if len(value) != 2 * size or not _HEX.fullmatch(value):
            self.add(f"{path}.{key}", f"must be {2 * size} lowercase hexadecimal characters", "INVALID_HEX")
            return None
        return bytes.fromhex(value)

    def base64(self, obj: dict[str, Any], key: str, path: str, max_bytes: int) -> bytes | None:
        return self.blob(obj[key], f"{path}.{key}", max_bytes) if key in obj else None

    def blob(self, value: Any, field: str, max_bytes: int) -> bytes | None:
        """Standard base64 of 1 to `max_bytes` bytes."""
        if type(value) is not str:
            self.add(field, "must be a string", "WRONG_TYPE")
            return None
        if len(value) > 4 * -(-max_bytes // 3):
            self.add(field, f"at most {max_bytes} bytes", "TOO_LONG")
            return None
        try:
            data = base64.b64decode(value, validate=True)
        except ValueError:
            self.add(field, "must be standard base64", "INVALID_BASE64")
            return None
        if not data:
            self.add(field, "required", "MISSING_FIELD")
            return None
        if len(data) > max_bytes:
            self.add(field, f"at most {max_bytes} bytes", "TOO_LONG")
            return None
        return data

    def array(self, obj: dict[str, Any], key: str, path: str, max_items: int) -> list[Any]:
        value = self._typed(obj, key, path, list, "a JSON array")
        if value is None:
            return []
        if len(value) > max_items:
            self.add(f"{path}.{key}", f"at most {max_items} items", "TOO_LONG")
            return []
        return value  # type: ignore[no-any-return]

    def summary(self) -> str:
        more = " (and possibly more)" if len(self.v.items) >= MAX_VIOLATIONS else ""
        return "; ".join(f"{x.field}: {x.description}" for x in self.v.items) + more


def _required(rule: Any) -> Any:
    """A `validation` rule that lets an empty value through (it means "here"), made to require one."""

    def checked(v: Violations, value: str, field: str) -> None:
        if not value:
            v.add(field, "required", "MISSING_FIELD")
        else:
            rule(v, value, field)

    return checked


_PROVINCE = _required(check.province_code)
_TOP = ("format", "transfer", "record", "pages")
_TRANSFER = ("id", "from_province", "from_school", "to_province", "to_school", "created_us", "lookup_code", "salt")
_RECORD = ("lookup_code", "national_id", "level")  # format 1
_RECORD_2 = (*_RECORD, "page_salts")


def _page_salts(r: _Reader, rec: dict[str, Any], w: str) -> tuple[bytes, ...] | None:
    """A format 2 record's page salts: at most MAX_PAGE_SALTS of 16 bytes, in lowercase hex, none twice."""
    field = f"{w}.page_salts"
    if "page_salts" not in rec:
        return None  # reported missing by `fields`
    if type(rec["page_salts"]) is not list or len(rec["page_salts"]) > MAX_PAGE_SALTS:
        r.array(rec, "page_salts", w, MAX_PAGE_SALTS)  # reports the fault
        return None
    items = rec["page_salts"]
    salts: list[bytes] = []
    for i, item in enumerate(items):
        if type(item) is not str or len(item) != 32 or not _HEX.fullmatch(item):
            r.add(f"{field}[{i}]", "must be 32 lowercase hexadecimal characters", "INVALID_HEX")
            return None
        salt = bytes.fromhex(item)
        if salt in salts:
            r.add(f"{field}[{i}]", "the same salt twice", "INCONSISTENT")
            return None
        salts.append(salt)
    return tuple(salts)


_PAGE = (
    "id", "issuing_province", "issuing_school", "school_year", "segment", "grade", "class_name", "media_type",
    "payload", "payload_sha256", "version", "digest", "state", "lock_track", "created_us", "locked_us",
    "signatures", "pending",
)  # fmt: skip
_SIGNATURE = ("role", "subject", "teacher_id", "signature", "certificate", "chain", "signed_us")
_PENDING = ("role", "subject")


def decode(package: bytes) -> Package:
    """Parse a package and check it against the schema, every field of it (not the seal, not the
    page digests or signatures: `check_content` and `verify_signatures` do those)."""
    if len(package) > check.MAX_PACKAGE:
        raise PackageError("MALFORMED_PACKAGE", f"a package is at most {check.MAX_PACKAGE} bytes")
    try:
        doc = _json(package)
    except UNREADABLE as exc:
        raise PackageError("MALFORMED_PACKAGE", f"the package is not strict JSON: {type(exc).__name__}") from None
    if type(doc) is dict and doc.get("format") not in (FORMAT, FORMAT_1):
        shown = doc.get("format")
        shown = repr(shown[:40]) if type(shown) is str else type(shown).__name__
        raise PackageError("UNKNOWN_PACKAGE_FORMAT", f"format {shown} is neither {FORMAT} nor {FORMAT_1}")
    r = _Reader()
    try:
        decoded = _package(r, doc)
    except _Bad:
        decoded = None
    if decoded is None or r.v.items:
        items = tuple(r.v.items) or (FieldViolation("package", "unreadable", "MALFORMED_PACKAGE"),)
        raise PackageError("MALFORMED_PACKAGE", f"the package does not follow {FORMAT}: {r.summary()}", items)
    return decoded


def _package(r: _Reader, doc: Any) -> Package | None:
    top = r.fields(doc, "package", _TOP)
    if top is None:
        return None
    t = r.fields(top.get("transfer"), "package.transfer", _TRANSFER) if "transfer" in top else None
    salted = top.get("format") == FORMAT
    rec = r.fields(top.get("record"), "package.record", _RECORD_2 if salted else _RECORD) if "record" in top else None
    transfer: dict[str, Any] = {}
    if t is not None:
        w = "package.transfer"
        transfer = {
            "id": r.string(t, "id", w, 32, check.transfer_id),
            "from_province": r.string(t, "from_province", w, 2, _PROVINCE),
            "from_school": r.string(t, "from_school", w, 20, check.school_code),
            "to_province": r.string(t, "to_province", w, 2, _PROVINCE),
            "to_school": r.string(t, "to_school", w, 20, check.school_code),
            "created": r.instant(t, "created_us", w),
            "lookup_code": r.string(t, "lookup_code", w, 32, check.lookup_code),
            "salt": r.hex_bytes(t, "salt", w, 16),
        }
    lookup_code = national_id = level = None
    salts: tuple[bytes, ...] | None = ()
    if rec is not None:
        w = "package.record"
        lookup_code = r.string(rec, "lookup_code", w, 32, check.lookup_code)
        national_id = r.string(rec, "national_id", w, 12, check.national_id)
        level = r.enum(rec, "level", w, RecordLevel)
        if salted:
            salts = _page_salts(r, rec, w)
    if lookup_code is not None and transfer.get("lookup_code") not in (None, lookup_code):
        r.add("package.transfer.lookup_code", "must be the record's lookup code", "INCONSISTENT")
    pages: list[PackagedPage] = []
    ids: set[str] = set()
    slots: set[tuple[str, str]] = set()
    for i, item in enumerate(r.array(top, "pages", "package", MAX_PAGES)):
        page = _page(r, item, f"package.pages[{i}]", lookup_code, level)
        if page is None:
            continue
        where = f"package.pages[{i}]"
        if page.page.id in ids:
            r.add(f"{where}.id", "another page of the package has this id", "DUPLICATE_PAGE")
        elif (page.page.school_year, page.page.segment) in slots:
            r.add(where, "another page of the package has this school year and segment", "DUPLICATE_PAGE")
        ids.add(page.page.id)
        slots.add((page.page.school_year, page.page.segment))
        pages.append(page)
    if r.v.items or None in transfer.values() or None in (lookup_code, national_id, level, salts) or t is None:
        return None
    assert lookup_code is not None and national_id is not None and level is not None and salts is not None
    created = transfer["created"]
    record = Record(lookup_code, national_id, level, transfer["to_school"], None, created, created, page_salts=salts)
    return Package(
        transfer["id"], transfer["from_province"], transfer["from_school"], transfer["to_province"],
        transfer["to_school"], created, record, tuple(pages), transfer["salt"],
    )  # fmt: skip


def _page(r: _Reader, item: Any, w: str, lookup_code: str | None, level: RecordLevel | None) -> PackagedPage | None:
    before = len(r.v.items)
    p = r.fields(item, w, _PAGE)
    if p is None:
        return None
    page_id = r.string(p, "id", w, 32, check.opaque_id)
    province = r.string(p, "issuing_province", w, 2, _PROVINCE)
    school = r.string(p, "issuing_school", w, 20, check.school_code)
    year = r.string(p, "school_year", w, 9, check.school_year)
    segment = r.string(p, "segment", w, 20, check_segment)
    grade = r.integer(p, "grade", w, 1, 12)
    if grade is not None and level is not None and grade not in GRADES[level]:
        r.add(f"{w}.grade", f"not a grade of a {level.name.lower()} record", "INVALID_GRADE")
    class_name = r.string(p, "class_name", w, 12, check.class_name)
    media_type = r.string(p, "media_type", w, 100, check_media_type)
    payload = r.base64(p, "payload", w, check.MAX_PAYLOAD)
    sha = r.hex_bytes(p, "payload_sha256", w, 32)
    version = r.integer(p, "version", w, 1, MAX_VERSION)
    digest = r.hex_bytes(p, "digest", w, 32)
    state = r.enum(p, "state", w, PageState)
    track = r.enum(p, "lock_track", w, LockTrack)
    created = r.instant(p, "created_us", w)
    locked = r.instant(p, "locked_us", w, nullable=True)
    if state is not None and "locked_us" in p and (state is PageState.LOCKED) != (p["locked_us"] is not None):
        r.add(f"{w}.locked_us", "set for a locked page, and only for one", "INCONSISTENT")
    signatures = [
        _signature(r, s, f"{w}.signatures[{j}]") for j, s in enumerate(r.array(p, "signatures", w, MAX_REQUIREMENTS))
    ]
    pending = [
        _requirement(r, q, f"{w}.pending[{j}]", _PENDING)
        for j, q in enumerate(r.array(p, "pending", w, MAX_REQUIREMENTS))
    ]
    required = [s.requirement if s is not None else None for s in signatures] + pending
    if "signatures" in p and "pending" in p and not required:
        r.add(w, "a page requires at least one signature", "REQUIREMENTS_REQUIRED")
    elif len(required) > MAX_REQUIREMENTS:
        r.add(w, f"a page requires at most {MAX_REQUIREMENTS} signatures", "TOO_LONG")
    seen: set[Requirement] = set()
    for req in required:
        if req is not None and req in seen:
            r.add(w, f"{req} is required twice", "DUPLICATE_REQUIREMENT")
        if req is not None:
            seen.add(req)
    if state in (PageState.SIGNED, PageState.LOCKED) and pending:
        r.add(f"{w}.pending", f"a {state.name.lower()} page owes no signature", "INCONSISTENT")
    if state is PageState.DRAFT and signatures:
        r.add(f"{w}.signatures", "a draft page has no signature", "INCONSISTENT")
    values = (page_id, province, school, year, segment, grade, class_name, media_type, payload, sha, version)
    if len(r.v.items) > before or lookup_code is None or None in (*values, digest, state, track, created):
        return None
    assert page_id and province and school and year is not None and segment is not None and grade is not None
    assert class_name and media_type and payload and sha and version and digest and state and track and created
    page = Page(
        page_id, lookup_code, school, year, segment, grade, class_name, media_type, sha, len(payload), version,
        digest, state, track, created, created, locked, province,
    )  # fmt: skip
    return PackagedPage(
        page, province, payload, tuple(s for s in signatures if s is not None),
        tuple(q for q in pending if q is not None),
    )  # fmt: skip


def _requirement(r: _Reader, item: Any, w: str, keys: tuple[str, ...]) -> Requirement | None:
    q = r.fields(item, w, keys)
    if q is None:
        return None
    role = r.enum(q, "role", w, SignerRole)
    subject = r.string(q, "subject", w, 30)
    if role is None or subject is None:
        return None
    if role is SignerRole.SUBJECT:
        before = len(r.v.items)
        r.check(check.subject, subject, f"{w}.subject")
        if len(r.v.items) > before:
            return None
    elif subject:
        r.add(f"{w}.subject", "only subject teachers' signatures name a subject", "INVALID_SUBJECT")
        return None
    return Requirement(role, subject)


def _signature(r: _Reader, item: Any, w: str) -> PackagedSignature | None:
    requirement = _requirement(r, item, w, _SIGNATURE)
    if type(item) is not dict:
        return None
    teacher = r.string(item, "teacher_id", w, 32, check.opaque_id)
    signature = r.base64(item, "signature", w, MAX_SIGNATURE)
    certificate = (
        _certificate(r, item["certificate"], f"{w}.certificate", teacher=True) if "certificate" in item else None
    )
    chain: list[bytes | None] = [
        _certificate(r, c, f"{w}.chain[{k}]") for k, c in enumerate(r.array(item, "chain", w, MAX_CHAIN - 1))
    ]
    signed = r.instant(item, "signed_us", w)
    if None in (requirement, teacher, signature, certificate, signed) or None in chain:
        return None
    assert requirement and teacher and signature and certificate and signed
    return PackagedSignature(requirement, teacher, signature, certificate, tuple(c for c in chain if c), signed)


def _certificate(r: _Reader, value: Any, field: str, *, teacher: bool = False) -> bytes | None:
    """A DER X.509 certificate with a key the node can read; a teacher's with a key registration accepts."""
    der = r.blob(value, field, MAX_CERTIFICATE)
    if der is None:
        return None
    problem = _certificate_problem(der, teacher)
    if problem:
        r.add(field, problem[1], problem[0])
        return None
    return der


@functools.lru_cache(maxsize=256)
def _certificate_problem(der: bytes, teacher: bool) -> tuple[str, str] | None:
    """What is wrong with a certificate (reason, description), if anything. A package carries the same
    few certificates on every page: each is parsed once."""
    try:
        cert = load_certificate(der)
        cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return "BAD_CERTIFICATE", "not a DER X.509 certificate with a key this node can read"
    if teacher:
        try:
            key_type(cert)  # the rule RegisterTeacher applies
        except DomainError as exc:
            return exc.reason, "a key other than RSA of at least 2048 bits, ECDSA P-256 or Ed25519"
    return None


def _text(max_len: int, *, required: bool) -> Any:
    def rule(v: Violations, value: str, field: str) -> None:
        check.text(v, value, field, max_len=max_len, required=required)

    return rule


@dataclass(frozen=True, slots=True)
class Decision:
    """The receiving node's decision on a transfer, as the RESOLVE message carries it:
    `{"state", "reason", "decided_us", "decided_by"}`, canonical JSON like the package."""

    state: TransferState
    reason: str
    decided_at: datetime
    decided_by: str

    def encode(self) -> bytes:
        return json.dumps(
            {"state": int(self.state), "reason": self.reason, "decided_us": _us(self.decided_at),
             "decided_by": self.decided_by},
            sort_keys=True, separators=(",", ":"), ensure_ascii=False,
        ).encode("utf-8")  # fmt: skip

    @classmethod
    def decode(cls, data: bytes) -> Decision:
        r = _Reader()
        decision = None
        try:
            d = r.fields(_json(data), "decision", ("state", "reason", "decided_us", "decided_by"))
            if d is not None:
                state = r.enum(d, "state", "decision", TransferState)
                if state is TransferState.REQUESTED:
                    r.add("decision.state", "not a decision", "INVALID_ENUM")
                reason = r.string(d, "reason", "decision", check.MAX_REASON, _text(check.MAX_REASON, required=False))
                by = r.string(
                    d, "decided_by", "decision", check.MAX_PRINCIPAL, _text(check.MAX_PRINCIPAL, required=True)
                )
                at = r.instant(d, "decided_us", "decision")
                if not r.v.items and state is not None and reason is not None and by is not None and at is not None:
                    decision = cls(state, reason, at, by)
        except UNREADABLE as exc:
            r.v.add("decision", f"not strict JSON: {type(exc).__name__}", "MALFORMED_DECISION")
        except _Bad:
            pass
        if decision is None:
            raise InvalidArgument("MALFORMED_DECISION", f"decision: {r.summary()}", field_violations=tuple(r.v.items))
        return decision


def encode_cancel_request(reason: str) -> bytes:
    return json.dumps({"reason": reason}).encode()


def decode_cancel_request(data: bytes) -> str:
    """The reason a CANCEL_REQUEST message gives: `{"reason": …}`, nothing else."""
    r = _Reader()
    reason = None
    try:
        doc = r.fields(_json(data), "request", ("reason",))
        if doc is not None:
            reason = r.string(doc, "reason", "request", check.MAX_REASON, _text(check.MAX_REASON, required=False))
    except UNREADABLE as exc:
        r.v.add("request", f"not strict JSON: {type(exc).__name__}", "MALFORMED_CANCEL")
    except _Bad:
        pass
    if reason is None or r.v.items:
        raise InvalidArgument(
            "MALFORMED_CANCEL", f"the cancellation request: {r.summary()}", field_violations=tuple(r.v.items)
        )
    return reason


def transfer_id_of(value: str) -> str:
    """The transfer id a RESOLVE or CANCEL_REQUEST message names (its request field)."""
    v = Violations()
    check.transfer_id(v, value)
    v.raise_if_any()
    return value


def check_content(package: Package) -> None:
    """Every page's content matches its SHA-256, and its digest is that of its content and identity."""
    for p in package.pages:
        page = p.page
        if hashlib.sha256(p.payload).digest() != page.payload_sha256:
            raise PackageError("BAD_PAGE_DIGEST", f"page {page.id}: the content does not match its SHA-256")
        expected = page_digest(
            page.id, page.version, page.payload_sha256, page.media_type, page.lookup_code, page.school_year,
            page.segment, page.grade, page.class_name,
        )  # fmt: skip
        if page.digest != expected:
            raise PackageError("BAD_PAGE_DIGEST", f"page {page.id}: its digest is not that of its content and identity")


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
    "Decision",
    "Package",
    "PackageError",
    "PackagedPage",
    "PackagedSignature",
    "build_page",
    "certificate_of",
    "check_content",
    "decode",
    "decode_cancel_request",
    "digest_of",
    "encode_cancel_request",
    "seal_message",
    "transfer_id_of",
    "verify_seal",
    "verify_signatures",
]
