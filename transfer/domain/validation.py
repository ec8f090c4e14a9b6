"""Syntax rules of the identifiers and texts the API accepts.

Each check adds field violations to a `Violations` collector so one reply can
name every bad field; use cases then check existence and permissions.

Two rules hold for everything here (docs/protocol.md, "Text and numbers"):

* codes (lookup codes, national ids, school and staff codes, school years,
  request ids, ...) are ASCII: every pattern spells its classes out
  (``[0-9]``, never ``\\d``, which also takes ``２``, ``٢`` or ``२``), and
  numbers are read from those ASCII digits only;
* free text (names, reasons) goes through `text`, the one rule: Unicode NFC
  (other forms are refused, not rewritten, so what is stored is what was
  sent), no control, format (bidi overrides and isolates, zero-width marks),
  line-separator or surrogate characters, and lengths counted in code points.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from datetime import date

from transfer.domain.errors import Violations
from transfer.domain.provinces import is_province

LOOKUP_CODE = re.compile(r"[0-9a-f]{32}")
NATIONAL_ID = re.compile(r"[0-9]{12}")
SCHOOL_CODE = re.compile(r"[A-Za-z0-9._-]{1,20}")
TRANSFER_ID = LOOKUP_CODE
# The spelling uuid.UUID's str() gives (what clients send almost always): no parse needed.
CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# The other spellings accepted: any case, 32 bare hex digits, braces, a URN. Checked
# before uuid.UUID, whose int(…, 16) would also take non-ASCII digits, '_' and blanks.
_HEX = "[0-9A-Fa-f]"
UUID_SPELLING = re.compile(
    rf"(?:urn:uuid:)?(?:{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}|{_HEX}{{32}}"
    rf"|\{{{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}\}}|\{{{_HEX}{{32}}\}})"
)

MAX_SCHOOL_NAME = 200
MAX_REASON = 500
# A principal (who initiated or decided a transfer) as stored: 120 characters.
MAX_PRINCIPAL = 120


def request_id(v: Violations, value: str, field: str = "request_id") -> None:
    """A request id must be a UUID (AIP-155); any common spelling is accepted."""
    if not value:
        v.add(field, "required: a UUID chosen by the client for this request", "REQUEST_ID_REQUIRED")
        return
    if not (CANONICAL_UUID.fullmatch(value) or UUID_SPELLING.fullmatch(value)):
        v.add(field, "must be a UUID (hexadecimal ASCII digits)", "INVALID_REQUEST_ID")


def canonical_request_id(value: str) -> str:
    """The one spelling of a (valid) request id: every spelling of a UUID is the same request."""
    if CANONICAL_UUID.fullmatch(value):
        return value
    return str(uuid.UUID(value))


def lookup_code(v: Violations, value: str, field: str = "lookup_code") -> None:
    if not LOOKUP_CODE.fullmatch(value):
        v.add(field, "must be 32 lowercase hexadecimal characters", "INVALID_LOOKUP_CODE")


def national_id(v: Violations, value: str, field: str = "national_id") -> None:
    if not NATIONAL_ID.fullmatch(value):
        v.add(field, "must be exactly 12 digits", "INVALID_NATIONAL_ID")


def school_code(v: Violations, value: str, field: str, *, required: bool = True) -> None:
    if not value:
        if required:
            v.add(field, "required", "SCHOOL_REQUIRED")
        return
    if len(value) > 20:
        v.add(field, "at most 20 characters", "INVALID_SCHOOL_CODE")
    elif not SCHOOL_CODE.fullmatch(value):
        v.add(field, "only letters, digits, '.', '_' and '-'", "INVALID_SCHOOL_CODE")


def province_code(v: Violations, value: str, field: str) -> None:
    if value and not is_province(value):
        v.add(field, "not one of the 34 province codes", "UNKNOWN_PROVINCE")


def transfer_id(v: Violations, value: str, field: str = "transfer_id") -> None:
    if not TRANSFER_ID.fullmatch(value):
        v.add(field, "must be 32 lowercase hexadecimal characters", "INVALID_TRANSFER_ID")


# Control (incl. NUL and C1), format (bidi embeddings and overrides U+202A-202E,
# isolates U+2066-2069, zero-width marks), line and paragraph separators, lone
# surrogates: they reorder or hide text in logs, terminals and other schools' screens.
_INVISIBLE = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})


def text(
    v: Violations,
    value: str,
    field: str,
    *,
    max_len: int,
    required: bool,
    required_reason: str = "REQUIRED",
) -> None:
    """A free text, the one rule for every name and reason that enters the node:
    not blank when required; at most `max_len` Unicode code points; no control,
    format or line-separator characters (they break logs and terminals, or
    reorder what others see); in Unicode NFC (one spelling of each text, so
    equal texts are equal strings and lengths mean the same for everyone)."""
    if not value.strip():
        if required:
            v.add(field, "required", required_reason)
        elif value:
            v.add(field, "must not be only white space", "INVALID_TEXT")
        return
    if len(value) > max_len:
        v.add(field, f"at most {max_len} characters (Unicode code points)", "TOO_LONG")
    elif any(unicodedata.category(c) in _INVISIBLE for c in value):
        v.add(field, "must not contain control, format or line-separator characters", "INVALID_TEXT")
    elif not unicodedata.is_normalized("NFC", value):
        v.add(field, "must be in Unicode normalization form NFC (compose it before sending)", "INVALID_TEXT")


def text_problems(value: str, field: str, *, max_len: int, required: bool) -> str:
    """What `text` finds wrong with a text that came inside a peer's message, as one
    line ('' when nothing): such a message is refused as a whole, not field by field."""
    v = Violations()
    text(v, value, field, max_len=max_len, required=required)
    return "; ".join(f"{x.field}: {x.description}" for x in v.items)


def enum_value(v: Violations, value: int, allowed: type, field: str) -> None:
    """An enum field must name a known, non-UNSPECIFIED value."""
    try:
        allowed(value)
    except ValueError:
        v.add(field, "required" if value == 0 else f"unknown value {value}", "INVALID_ENUM")


SCHOOL_YEAR = re.compile(r"([0-9]{4})-([0-9]{4})")
CLASS_NAME = re.compile(r"[A-Za-z0-9.-]{1,12}")
SUBJECT = re.compile(r"[a-z0-9-]{1,30}")
SEGMENT = re.compile(r"[a-z0-9-]{0,20}")
STAFF_CODE = SCHOOL_CODE
ID = LOOKUP_CODE
MEDIA_TYPE = re.compile(r"[a-z0-9.+-]+/[a-z0-9.+-]+")
MAX_PAYLOAD = 4 * 1024 * 1024
# Largest message the node and its clients exchange: a page with its payload
# fits with room to spare, and so does a transfer package (the whole record,
# payloads in base64) up to MAX_PACKAGE.
MAX_PACKAGE = 48 * 1024 * 1024
MAX_MESSAGE = 64 * 1024 * 1024


def school_year(v: Violations, value: str, field: str = "school_year") -> None:
    m = SCHOOL_YEAR.fullmatch(value)
    if not m or int(m[2]) != int(m[1]) + 1 or not 2000 <= int(m[1]) <= 2100:
        v.add(field, "must be like 2025-2026 (two consecutive years)", "INVALID_SCHOOL_YEAR")


def class_name(v: Violations, value: str, field: str = "class_name") -> None:
    if not CLASS_NAME.fullmatch(value):
        v.add(field, "1 to 12 letters, digits, '.' or '-' (e.g. 3A)", "INVALID_CLASS_NAME")


def subject(v: Violations, value: str, field: str) -> None:
    if not SUBJECT.fullmatch(value):
        v.add(field, "1 to 30 lowercase letters, digits or '-' (e.g. toan)", "INVALID_SUBJECT")


def opaque_id(v: Violations, value: str, field: str) -> None:
    if not ID.fullmatch(value):
        v.add(field, "must be 32 lowercase hexadecimal characters", "INVALID_ID")


# The dates staff changes may carry (departures, leaves).
ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
EARLIEST_DATE = date(2000, 1, 1)
LATEST_DATE = date(2999, 12, 31)


def iso_date(v: Violations, value: str, field: str, *, required: bool = True) -> None:
    if not value:
        if required:
            v.add(field, "required: a date like 2026-06-30", "INVALID_DATE")
        return
    try:
        # date.fromisoformat alone would also take week dates such as 2026-W01-1.
        if not ISO_DATE.fullmatch(value):
            raise ValueError(value)
        day = date.fromisoformat(value)
    except ValueError:
        v.add(field, "must be a date like 2026-06-30", "INVALID_DATE")
        return
    if not EARLIEST_DATE <= day <= LATEST_DATE:
        # The log counts days from 1970 in four bytes, with 0 for "no date".
        v.add(field, f"must be between {EARLIEST_DATE} and {LATEST_DATE}", "INVALID_DATE")
