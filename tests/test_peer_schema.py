"""A peer's package is checked as strictly as a school's request. Node 79 runs in-process (real mTLS, real
database on each engine); the test plays node 01 with its real certificate and seal key (tests/hostile_peer.py)
and sends validly sealed packages (and decisions, cancellation requests) with one flaw each. Every one is
refused at OfferTransfer with INVALID_ARGUMENT naming the bad field, before anything is stored: a package that
fails the schema leaves only its `offer refused` entry (and the row that remembers it), one that fails the
provenance rules leaves nothing. What passes is accepted by the receiving school without an internal error."""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.federation import free_port, peer_block
from tests.hostile_peer import (
    NOW,
    Flaw,
    HostilePeer,
    b64,
    encode,
    package_document,
    page_document,
    refusal,
    teacher_of,
    us,
)
from tests.staffing import HOMEROOM, add_page, duty, hire, new_record, sign
from tests.support import (
    FakeClock,
    RunningNode,
    create_pg_database,
    db_snapshot,
    drop_pg_database,
    load_config,
    postgres_base,
    running_node,
    write_config,
)
from transfer.client.signing import sign_digest
from transfer.devpki import SigningCA, make_dev_pki
from transfer.domain import package as pkg
from transfer.domain.errors import InvalidArgument
from transfer.domain.pages import page_digest
from transfer.domain.validation import MAX_PAYLOAD
from transfer.v1 import peers_pb2, records_pb2, transfers_pb2

ACCEPTED = transfers_pb2.TRANSFER_STATE_ACCEPTED
# The dispatcher of node 79 keeps retrying its own offers to 01 (nobody listens there): its schedule in the
# outbox changes whatever the test does.
BUSY = {"outbox"}


@pytest.fixture(scope="module")
def pki79(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pki79")
    make_dev_pki(out, "79", ["D1", "D2"])
    SigningCA(out, not_before=NOW.replace(year=2020), not_after=NOW.replace(year=2100))
    return out


@dataclass
class Receiver:
    node: RunningNode
    url: str
    peer: HostilePeer

    def state(self) -> dict[str, list[tuple[Any, ...]]]:
        return {k: v for k, v in db_snapshot(self.url).items() if k not in BUSY}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def receiver(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, pki: Path, pki79: Path
) -> Iterator[Receiver]:
    """Node 79 (schools D1, D2), trusting 01's and its own teachers' CAs, with 01 as its (unreachable)
    peer; and the hostile peer 01 connected to it."""
    tmp = tmp_path_factory.mktemp(f"receiver-{request.param}")
    base = os.environ.get("TRANSFER_TEST_PG", "")
    url = f"sqlite:///{tmp / 'node.db'}" if request.param == "sqlite" else create_pg_database(postgres_base(request))
    bundle = tmp / "signing-cas.pem"
    bundle.write_bytes((pki / "signing-ca.pem").read_bytes() + (pki79 / "signing-ca.pem").read_bytes())
    extra = f'\n[seal]\nkey_file = "{pki79 / "seal.key"}"\n' + peer_block(pki, "01", free_port())
    path = write_config(tmp / "node.toml", pki=pki79, database_url=url, province="79", extra=extra, signing_ca=bundle)
    try:
        with running_node(load_config(path), pki79, FakeClock(), path) as node:
            admin = node.client("province-admin")
            admin.register_school("D1", "Trường Tiểu học Quận 1")
            admin.register_school("D2", "Trường Tiểu học Quận 2")
            peer = HostilePeer(pki, pki79, node.address)
            try:
                yield Receiver(node, url, peer)
            finally:
                peer.close()
    finally:
        if request.param == "postgresql":
            drop_pg_database(base, url)


# -- the flaws ------------------------------------------------------------------------------------------------

Path_ = tuple[str | int, ...]


def _at(doc: Any, path: Path_) -> tuple[Any, str | int]:
    for key in path[:-1]:
        doc = doc[key]
    return doc, path[-1]


def _set(path: Path_, value: Any) -> Flaw:
    def flaw(doc: dict[str, Any]) -> None:
        parent, key = _at(doc, path)
        parent[key] = copy.deepcopy(value)

    return flaw


def _drop(path: Path_) -> Flaw:
    def flaw(doc: dict[str, Any]) -> None:
        parent, key = _at(doc, path)
        del parent[key]

    return flaw


def field(path: Path_) -> str:
    return "package" + "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in path)


P0: Path_ = ("pages", 0)
SIG: Path_ = (*P0, "signatures", 0)
PENDING: Path_ = (*P0, "pending", 0)
STRINGS: list[Path_] = [
    *[("transfer", k) for k in ("id", "from_province", "from_school", "to_province", "to_school", "lookup_code")],
    ("transfer", "salt"),
    ("record", "lookup_code"),
    ("record", "national_id"),
    *[
        (*P0, k)
        for k in (
            "id",
            "issuing_province",
            "issuing_school",
            "school_year",
            "segment",
            "class_name",
            "media_type",
            "payload",
            "payload_sha256",
            "digest",
        )
    ],
    *[(*SIG, k) for k in ("subject", "teacher_id", "signature", "certificate")],
    (*SIG, "chain", 0),
    (*PENDING, "subject"),
]
INTEGERS: list[Path_] = [
    ("transfer", "created_us"),
    ("record", "level"),
    *[(*P0, k) for k in ("grade", "version", "state", "lock_track", "created_us")],
    (*SIG, "role"),
    (*SIG, "signed_us"),
    (*PENDING, "role"),
]
LISTS: list[Path_] = [("pages",), (*P0, "signatures"), (*P0, "pending"), (*SIG, "chain")]
OBJECTS: list[Path_] = [("transfer",), ("record",), P0, SIG, PENDING]


def _with_chain(flaw: Flaw) -> Flaw:
    """The flaw applied to a package whose signature carries one intermediate (so the chain has an item)."""

    def flawed(doc: dict[str, Any]) -> bytes | None:
        sig = doc["pages"][0]["signatures"][0]
        sig["chain"] = [sig["certificate"]]
        return flaw(doc)

    return flawed


def _wrong_types() -> list[Any]:
    """Every field with a value of the wrong JSON type: null, a list, a number, an object, a bool."""
    cases = []
    for path in STRINGS:
        for value in (None, 7, ["x"], {"x": "y"}, True):
            flaw = _set(path, value)
            cases.append(pytest.param(_with_chain(flaw) if "chain" in path else flaw, field(path),
                                      id=f"{field(path)}={json.dumps(value)}"))  # fmt: skip
    for path in INTEGERS:
        for value in (None, "1", [1], 1.0, True):
            cases.append(pytest.param(_set(path, value), field(path), id=f"{field(path)}={json.dumps(value)}"))
    for path in LISTS:
        for value in (None, 7, "x", {"x": "y"}):
            cases.append(pytest.param(_set(path, value), field(path), id=f"{field(path)}={json.dumps(value)}"))
    for path in OBJECTS:
        for value in (None, [], 7, "x"):
            cases.append(pytest.param(_set(path, value), field(path), id=f"{field(path)}={json.dumps(value)}"))
    for value in ("0", [], True, 1.5):
        cases.append(pytest.param(_set((*P0, "locked_us"), value), field((*P0, "locked_us")), id=f"locked_us={value}"))
    return cases


def _raw(data: bytes) -> Flaw:
    return lambda doc: data


def _json_with(text: str) -> Flaw:
    """The package as JSON text with `text` in place of the transfer's created_us value."""

    def flaw(doc: dict[str, Any]) -> bytes:
        marker = 123456789
        doc["transfer"]["created_us"] = marker
        return encode(doc).replace(str(marker).encode(), text.encode(), 1)

    return flaw


def _long_chain(doc: dict[str, Any]) -> None:
    sig = doc["pages"][0]["signatures"][0]
    sig["chain"] = [sig["certificate"]] * 4


def _duplicate_page(doc: dict[str, Any]) -> None:
    doc["pages"].append(copy.deepcopy(doc["pages"][0]))


def _same_year_twice(doc: dict[str, Any]) -> None:
    other = copy.deepcopy(doc["pages"][0])
    other["id"] = uuid.uuid4().hex
    doc["pages"].append(other)


def _many_pages(doc: dict[str, Any]) -> None:
    doc["pages"] = [doc["pages"][0]] * 1001


def _signed_and_pending(doc: dict[str, Any]) -> None:
    doc["pages"][0]["pending"].append({"role": 1, "subject": ""})


def _no_requirement(doc: dict[str, Any]) -> None:
    doc["pages"][0]["signatures"] = []
    doc["pages"][0]["pending"] = []
    doc["pages"][0]["state"] = 1


def _many_requirements(doc: dict[str, Any]) -> None:
    doc["pages"][0]["pending"] = [{"role": 2, "subject": f"mon-{i}"} for i in range(40)]


def _locked_without_time(doc: dict[str, Any]) -> None:
    doc["pages"][0]["pending"] = []
    doc["pages"][0]["state"] = 4


def _unknown_key(doc: dict[str, Any]) -> None:
    doc["pages"][0]["issuer_rights"] = "all"


def _lookup_codes_differ(doc: dict[str, Any]) -> None:
    doc["transfer"]["lookup_code"] = uuid.uuid4().hex


def _p384_certificate() -> bytes:
    """A self-issued certificate whose key is on P-384: readable, but not a key a teacher may register."""
    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "teacher on P-384")])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(NOW.replace(year=2020)).not_valid_after(NOW.replace(year=2100))
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    return cert.public_bytes(serialization.Encoding.DER)


P = pytest.param
NAMED = [
    # school years
    *[
        P(_set((*P0, "school_year"), y), field((*P0, "school_year")), id=f"school_year={y[:20]!r}")
        for y in (
            "2026-x",
            "9998-10000",
            "2" * 300,
            "2025-2027",
            "1999-2000",
            "2100-2101x",
            "",
            " 2026-2027",
            "２０２６-２０２７",
            "٢٠٢٦-٢٠٢٧",
            "२०२६-२०२७",
        )
    ],
    # control, bidi and other characters outside the field's alphabet
    P(_set((*P0, "issuing_school"), "S\x001"), field((*P0, "issuing_school")), id="issuer with NUL"),
    P(_set((*P0, "issuing_school"), "\u202eS1"), field((*P0, "issuing_school")), id="issuer with bidi override"),
    P(_set(("transfer", "from_school"), "S1\u2066"), field(("transfer", "from_school")), id="from_school bidi"),
    P(_set((*P0, "class_name"), "3A\x00"), field((*P0, "class_name")), id="class_name with NUL"),
    P(_set((*P0, "class_name"), "3\u200bA"), field((*P0, "class_name")), id="class_name zero-width"),
    P(_set((*P0, "media_type"), "application/pdf\n"), field((*P0, "media_type")), id="media_type newline"),
    P(_set((*P0, "segment"), "HK1"), field((*P0, "segment")), id="segment upper case"),
    P(_set((*PENDING, "role"), 2), field((*PENDING, "subject")), id="subject role without subject"),
    P(_set(PENDING, {"role": 2, "subject": "to\u202ean"}), field((*PENDING, "subject")), id="subject with bidi"),
    P(_set((*PENDING, "subject"), "toan"), field((*PENDING, "subject")), id="principal with a subject"),
    P(_set((*SIG, "teacher_id"), "a" * 31 + "\x00"), field((*SIG, "teacher_id")), id="teacher_id with NUL"),
    P(_set(("record", "national_id"), "٢١٠٩٨٧٦٥٤٣٢١"), field(("record", "national_id")), id="arabic digits"),
    P(_set(("record", "lookup_code"), "A" * 32), field(("record", "lookup_code")), id="lookup upper case"),
    # the record's page salts (format 2)
    P(_drop(("record", "page_salts")), field(("record", "page_salts")), id="page_salts missing"),
    P(_set(("record", "page_salts"), "ab" * 16), field(("record", "page_salts")), id="page_salts a string"),
    P(_set(("record", "page_salts"), ["AB" * 16]), field(("record", "page_salts", 0)), id="page salt upper case"),
    P(_set(("record", "page_salts"), ["ab" * 15]), field(("record", "page_salts", 0)), id="page salt 15 bytes"),
    P(_set(("record", "page_salts"), [1]), field(("record", "page_salts", 0)), id="page salt a number"),
    P(_set(("record", "page_salts"), ["ab" * 16] * 2), field(("record", "page_salts", 1)), id="page salt twice"),
    P(
        _set(("record", "page_salts"), [f"{i:032x}" for i in range(257)]),
        field(("record", "page_salts")),
        id="257 page salts",
    ),
    P(_set((*P0, "issuing_province"), "99"), field((*P0, "issuing_province")), id="issuing_province 99"),
    P(_set((*P0, "issuing_province"), ""), field((*P0, "issuing_province")), id="issuing_province empty"),
    P(_set((*P0, "issuing_school"), "\ud800"), field((*P0, "issuing_school")), id="issuer lone surrogate"),
    # instants
    P(_set(("transfer", "created_us"), -1), field(("transfer", "created_us")), id="created_us -1"),
    P(_set(("transfer", "created_us"), 10**20), field(("transfer", "created_us")), id="created_us 1e20"),
    P(_set(("transfer", "created_us"), 2**64), field(("transfer", "created_us")), id="created_us 2^64"),
    P(_set((*P0, "created_us"), -(10**12)), field((*P0, "created_us")), id="page created negative"),
    P(_set((*SIG, "signed_us"), -1), field((*SIG, "signed_us")), id="signed_us -1"),
    P(_set((*SIG, "signed_us"), 0), field((*SIG, "signed_us")), id="signed_us 1970"),
    P(_set((*P0, "locked_us"), us(NOW)), field((*P0, "locked_us")), id="locked_us on an unlocked page"),
    P(_locked_without_time, field((*P0, "locked_us")), id="locked page without locked_us"),
    # numbers out of range
    *[
        P(_set((*P0, k), v), field((*P0, k)), id=f"{k}={v}")
        for k, v in (
            ("grade", 0),
            ("grade", 13),
            ("grade", 7),
            ("version", 0),
            ("version", 2**31),
            ("state", 0),
            ("state", 5),
            ("lock_track", 3),
        )
    ],
    P(_set(("record", "level"), 4), field(("record", "level")), id="level=4"),
    P(_set((*SIG, "role"), 4), field((*SIG, "role")), id="role=4"),
    # sizes
    P(_set((*P0, "payload"), b64(b"x" * (MAX_PAYLOAD + 1))), field((*P0, "payload")), id="payload 4 MiB + 1"),
    P(_many_pages, field(("pages",)), id="1001 pages"),
    P(_set((*SIG, "signature"), b64(b"s" * 1025)), field((*SIG, "signature")), id="signature 1025 bytes"),
    P(_set((*SIG, "certificate"), b64(b"c" * 17000)), field((*SIG, "certificate")), id="certificate 17 kB"),
    P(_long_chain, field((*SIG, "chain")), id="chain of 4"),
    P(_set((*P0, "class_name"), "A" * 13), field((*P0, "class_name")), id="class_name 13"),
    P(_set((*P0, "segment"), "s" * 21), field((*P0, "segment")), id="segment 21"),
    P(_set(("transfer", "to_school"), "D" * 21), field(("transfer", "to_school")), id="school code 21"),
    P(_set((*P0, "media_type"), "application/" + "x" * 89), field((*P0, "media_type")), id="media_type 101"),
    P(_many_requirements, field(P0), id="41 requirements"),
    # encodings
    P(_set(("transfer", "salt"), "ab" * 15), field(("transfer", "salt")), id="salt 15 bytes"),
    P(_set(("transfer", "salt"), "AB" * 16), field(("transfer", "salt")), id="salt upper case"),
    P(_set((*P0, "payload_sha256"), "00" * 31), field((*P0, "payload_sha256")), id="sha256 31 bytes"),
    P(_set((*P0, "payload"), "%%%%"), field((*P0, "payload")), id="payload not base64"),
    P(_set((*P0, "payload"), ""), field((*P0, "payload")), id="payload empty"),
    P(_set((*SIG, "signature"), ""), field((*SIG, "signature")), id="signature empty"),
    # certificates that are not certificates
    P(_set((*SIG, "certificate"), b64(b"not a certificate")), field((*SIG, "certificate")), id="cert not DER"),
    P(_set((*SIG, "chain"), [b64(b"\x30\x03\x02\x01\x01")]), field((*SIG, "chain", 0)), id="chain item not DER"),
    P(_set((*SIG, "certificate"), b64(_p384_certificate())), field((*SIG, "certificate")), id="teacher key P-384"),
    # consistency and duplicates
    P(_lookup_codes_differ, field(("transfer", "lookup_code")), id="lookup codes differ"),
    P(_set((*P0, "state"), 3), field((*P0, "pending")), id="signed page with pending signatures"),
    P(_set((*P0, "state"), 1), field((*P0, "signatures")), id="draft page with signatures"),
    P(_signed_and_pending, field(P0), id="requirement signed and pending"),
    P(_no_requirement, field(P0), id="no requirement"),
    P(_duplicate_page, field((*P0, "id")).replace("[0]", "[1]"), id="the same page twice"),
    P(_same_year_twice, field(("pages", 1)), id="two pages of one year and segment"),
    # keys
    P(_drop((*P0, "grade")), field((*P0, "grade")), id="missing grade"),
    P(_drop(("record",)), field(("record",)), id="missing record"),
    P(_unknown_key, field((*P0, "issuer_rights")), id="unknown field"),
    # not strict JSON
    P(_json_with("NaN"), "package", id="NaN"),
    P(_json_with("1e400"), field(("transfer", "created_us")), id="1e400"),
    P(_json_with("1" * 5000), "package", id="5000 digits"),
    P(lambda d: encode(d).replace(b'{"format"', b'{"format":"x","format"', 1), "package", id="duplicate key"),
    P(_raw(b'{"format":"hocba-transfer-package/1","x":"\xff"}'), "package", id="invalid UTF-8"),
    P(_raw(b"[1, 2, 3]"), "package", id="a JSON list"),
    P(_raw(b"[" * 100000 + b"]" * 100000), "package", id="deep nesting"),
    P(_raw(b""), "package", id="empty"),
]


def _refused(receiver: Receiver, flaw: Flaw, expected_reason: str = "") -> tuple[str, list[tuple[str, str]]]:
    doc = receiver.peer.package()
    with pytest.raises(grpc.RpcError) as err:
        receiver.peer.offer(doc, flaw)
    code, reason, fields = refusal(err.value)
    assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, reason, err.value.details())  # type: ignore[attr-defined]
    if expected_reason:
        assert reason == expected_reason, err.value.details()  # type: ignore[attr-defined]
    return reason, fields


@pytest.mark.parametrize(("flaw", "bad_field"), [*NAMED, *_wrong_types()])
def test_a_flawed_package_is_refused_at_the_offer(receiver: Receiver, flaw: Flaw, bad_field: str) -> None:
    """A validly sealed package with one flaw is refused at OfferTransfer (INVALID_ARGUMENT, MALFORMED_PACKAGE,
    the bad field named in BadRequest); nothing is stored but its `offer refused` entry and the row that
    remembers it; sending it again is refused the same way and logged no more."""
    before = receiver.state()
    _reason, fields = _refused(receiver, flaw, "MALFORMED_PACKAGE")
    assert bad_field in [f for f, _ in fields], fields
    after = receiver.state()
    changed = {t for t in after if after[t] != before[t]}
    assert changed <= {"refused_packages", "log_leaves", "log_nodes"}, changed
    assert len(after["refused_packages"]) == len(before["refused_packages"]) + 1
    assert len(after["log_leaves"]) == len(before["log_leaves"]) + 1
    (row,) = set(after["refused_packages"]) - set(before["refused_packages"])
    assert "MALFORMED_PACKAGE" in row


def test_a_refused_package_is_logged_once(receiver: Receiver) -> None:
    """The same flawed package sent twice is refused twice, the same way, and logged once."""
    data, seal = receiver.peer.sealed(receiver.peer.package(), _set((*P0, "school_year"), "2026-x"))
    answers = []
    for _ in range(2):
        before = receiver.state()
        with pytest.raises(grpc.RpcError) as err:
            receiver.peer.stub.OfferTransfer(peers_pb2.OfferTransferRequest(package=data, seal=seal), timeout=30)
        answers.append(refusal(err.value))
    assert answers[0] == answers[1] and answers[0][1] == "MALFORMED_PACKAGE"
    assert receiver.state() == before


def test_an_unknown_format_is_refused_as_such(receiver: Receiver) -> None:
    """A package of another format (or none) is refused with UNKNOWN_PACKAGE_FORMAT."""
    for value in ("hocba-transfer-package/3", None, 1):
        assert _refused(receiver, _set(("format",), value))[0] == "UNKNOWN_PACKAGE_FORMAT"


# -- provenance ------------------------------------------------------------------------------------------------


def test_a_page_naming_a_school_of_the_receiving_node_is_refused(receiver: Receiver) -> None:
    """A page naming as its issuer a school of the receiving node that never issued it (which would let that
    school replace a page of a record another school holds) is refused with BAD_PAGE_ISSUER, and nothing
    at all is stored or logged."""
    peer = receiver.peer
    for school in ("D1", "D2"):
        doc = peer.package(issuer=("79", school))
        before = receiver.state()
        with pytest.raises(grpc.RpcError) as err:
            peer.offer(doc)
        code, reason, fields = refusal(err.value)
        assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "BAD_PAGE_ISSUER")
        assert fields == [("package.pages[0].issuing_school", "BAD_PAGE_ISSUER")]
        assert receiver.state() == before


@dataclass
class Returning:
    """A record D1 of node 79 issued a page for and sent to 01, accepted there: the package 79 sent."""

    lookup_code: str
    page_id: str
    package: dict[str, Any]


def _sent_to_01_and_back(receiver: Receiver, lookup_code: str) -> dict[str, Any]:
    """D1 sends the record to 01/S1, which accepts it; returns the package 79 sent, re-addressed as 01's offer
    of the record back to 79/D1 (what a genuine 01 would send, the pages unchanged)."""
    d1 = receiver.node.client("school-D1")
    sent = d1.initiate_transfer(lookup_code, "S1", "01").transfer
    (row,) = [r for r in db_snapshot(receiver.url)["outbox"] if r[1] == sent.id]
    decision = json.dumps({"state": 2, "reason": "", "decided_us": us(NOW), "decided_by": "school:S1"}).encode()
    receiver.peer.stub.ResolveTransfer(
        peers_pb2.ResolveTransferRequest(transfer_id=sent.id, decision=decision), timeout=30
    )
    assert d1.get_record(lookup_code).status == records_pb2.RECORD_STATUS_TRANSFERRED_OUT
    package: dict[str, Any] = json.loads(bytes(row[4])[64:])
    package["transfer"].update(
        id=uuid.uuid4().hex, from_province="01", from_school="S1", to_province="79", to_school="D1"
    )
    return package


def _returning(receiver: Receiver, pki79: Path) -> Returning:
    node = receiver.node
    admin, d1 = node.client("school-admin-D1"), node.client("school-D1")
    teacher = hire(admin, SigningCA.load(pki79), f"GV-{uuid.uuid4().hex[:8]}")
    admin.assign_duty(duty(HOMEROOM), teacher.id)
    code = new_record(d1)
    page = sign(d1, add_page(d1, code, requirements=[HOMEROOM]), HOMEROOM, teacher)
    return Returning(code, page.id, _sent_to_01_and_back(receiver, code))


def _changed(
    doc: dict[str, Any], *, payload: bytes = b"%PDF-1.7 diem da sua", version: int = 1, **identity: Any
) -> None:
    """The first page's content or identity changed, its SHA-256 and digest made to match, its signatures
    dropped (owed again): everything but its provenance checks out."""
    page = doc["pages"][0]
    page.update(identity, version=version)
    sha = hashlib.sha256(payload).digest()
    page["payload"], page["payload_sha256"] = b64(payload), sha.hex()
    page["pending"] += [{"role": s["role"], "subject": s["subject"]} for s in page["signatures"]]
    page["signatures"], page["state"] = [], 1
    page["digest"] = page_digest(
        page["id"], page["version"], sha, page["media_type"], doc["record"]["lookup_code"], page["school_year"],
        page["segment"], page["grade"], page["class_name"],
    ).hex()  # fmt: skip


def test_a_returning_record_must_bring_back_the_pages_this_node_issued(receiver: Receiver, pki79: Path) -> None:
    """A record D1 issued a page for comes back from 01: its copy of that page must name the same issuer and
    have the same digest as the page this node holds, and no new page may take that page's school year;
    otherwise the offer is refused (BAD_PAGE_ISSUER, MALFORMED_PACKAGE) and nothing is stored or logged.
    The genuine return is acknowledged, and D1 accepts it without an internal error."""
    back = _returning(receiver, pki79)

    def relabel(province: str, school: str) -> Flaw:
        def flaw(doc: dict[str, Any]) -> None:
            doc["pages"][0].update(issuing_province=province, issuing_school=school)

        return flaw

    def new_page_same_year(doc: dict[str, Any]) -> None:
        doc["pages"] = [page_document(back.lookup_code, receiver.peer.teacher, issuer=("01", "S1"))]

    for flaw, reason in (
        (relabel("79", "D2"), "BAD_PAGE_ISSUER"),
        (relabel("01", "S1"), "BAD_PAGE_ISSUER"),
        (_changed, "BAD_PAGE_ISSUER"),
        (new_page_same_year, "MALFORMED_PACKAGE"),
    ):
        before = receiver.state()
        with pytest.raises(grpc.RpcError) as err:
            receiver.peer.offer(back.package, flaw)
        code, got, fields = refusal(err.value)
        assert (code, got) == (grpc.StatusCode.INVALID_ARGUMENT, reason), err.value.details()  # type: ignore[attr-defined]
        assert fields and fields[0][0].startswith("package.pages[0]")
        assert receiver.state() == before

    body = receiver.peer.offer(back.package)
    assert body.transfer_id == back.package["transfer"]["id"] and body.logged
    d1 = receiver.node.client("school-D1")
    assert d1.accept_transfer(body.transfer_id).transfer.state == ACCEPTED
    assert d1.get_record(back.lookup_code).status == records_pb2.RECORD_STATUS_ACTIVE
    assert d1.get_page(back.page_id).issuing_school == "D1"


# -- what passes is accepted ------------------------------------------------------------------------------------


def _at_the_limits(doc: dict[str, Any], teacher_key: Any) -> None:
    """Every field at the edge of what the schema allows."""
    code = doc["record"]["lookup_code"]
    page = doc["pages"][0]
    page.update(
        school_year="2100-2101", segment="s" * 20, grade=5, class_name="A" * 12,
        media_type="application/" + "x" * 88, version=2**31 - 1, lock_track=2,
    )  # fmt: skip
    sha = bytes.fromhex(page["payload_sha256"])
    digest = page_digest(
        page["id"], page["version"], sha, page["media_type"], code, page["school_year"], page["segment"],
        page["grade"], page["class_name"],
    )  # fmt: skip
    page["digest"] = digest.hex()
    page["signatures"][0]["signature"] = b64(sign_digest(teacher_key, digest))
    page["pending"] = [{"role": 3, "subject": ""}] + [{"role": 2, "subject": f"{i:02d}" + "m" * 28} for i in range(38)]


@pytest.mark.parametrize("shape", ["plain", "at the limits"])
def test_a_package_that_passes_is_accepted_without_an_internal_error(receiver: Receiver, shape: str) -> None:
    """A package that passed the checks is acknowledged, and the receiving school's AcceptTransfer imports
    it (record, pages, signatures, pending tasks) instead of failing as an internal error."""
    peer = receiver.peer
    doc = peer.package()
    if shape == "at the limits":
        _at_the_limits(doc, peer.teacher[0])
    body = peer.offer(doc)
    assert body.logged and body.transfer_id == doc["transfer"]["id"]
    d1 = receiver.node.client("school-D1")
    assert d1.accept_transfer(body.transfer_id).transfer.state == ACCEPTED
    code = doc["record"]["lookup_code"]
    assert d1.get_record(code).custodian_school == "D1"
    (page,) = d1.iter_pages(code)
    assert page.id == doc["pages"][0]["id"] and page.digest.hex() == doc["pages"][0]["digest"]


def test_the_record_page_salts_travel_and_a_new_one_is_drawn_on_acceptance(receiver: Receiver) -> None:
    """A format 2 package's page salts are kept by the receiving node, which adds a new one when its
    school accepts: the custodian reads them all, oldest first, the sender's among them."""
    doc = receiver.peer.package()
    sent = [uuid.uuid4().hex, uuid.uuid4().hex]
    doc["record"]["page_salts"] = sent
    body = receiver.peer.offer(doc)
    d1 = receiver.node.client("school-D1")
    code = doc["record"]["lookup_code"]
    d1.accept_transfer(body.transfer_id)
    salts = [x.hex() for x in d1.get_record(code).page_log_salts]
    assert salts[:2] == sent and len(salts) == 3 and len(salts[2]) == 32 and salts[2] not in sent


def test_a_format_1_package_of_an_older_node_is_still_accepted(receiver: Receiver) -> None:
    """A package of format 1 (no page salts: a node not yet upgraded) is read and imported; the record
    gets one page salt, drawn on acceptance."""
    doc = receiver.peer.package()
    doc["format"] = "hocba-transfer-package/1"
    del doc["record"]["page_salts"]
    body = receiver.peer.offer(doc)
    d1 = receiver.node.client("school-D1")
    d1.accept_transfer(body.transfer_id)
    assert len(d1.get_record(doc["record"]["lookup_code"]).page_log_salts) == 1


def test_a_certificate_that_is_not_one_is_a_refusal(receiver: Receiver) -> None:
    """A signature whose certificate is a PEM text instead of DER (a certificate, but not as the format says)
    is refused as malformed, not answered INTERNAL; so is one with a key a teacher may not register."""
    pem = x509.load_der_x509_certificate(receiver.peer.teacher[1]).public_bytes(serialization.Encoding.PEM)
    _, fields = _refused(receiver, _set((*SIG, "certificate"), b64(pem)), "MALFORMED_PACKAGE")
    assert (field((*SIG, "certificate")), "BAD_CERTIFICATE") in fields
    _, fields = _refused(receiver, _set((*SIG, "certificate"), b64(_p384_certificate())), "MALFORMED_PACKAGE")
    assert (field((*SIG, "certificate")), "UNSUPPORTED_KEY") in fields


# -- the other peer messages ------------------------------------------------------------------------------------

GOOD_DECISION = {"state": 2, "reason": "", "decided_us": us(NOW), "decided_by": "school:S1"}
FLAWED_DECISIONS = [
    ({**GOOD_DECISION, "decided_by": "school:\u202eS1"}, "decision.decided_by"),
    ({**GOOD_DECISION, "reason": "da nhan\x00"}, "decision.reason"),
    ({**GOOD_DECISION, "decided_by": None}, "decision.decided_by"),
    ({**GOOD_DECISION, "reason": ["x"]}, "decision.reason"),
    ({**GOOD_DECISION, "decided_us": -1}, "decision.decided_us"),
    ({**GOOD_DECISION, "decided_us": "1"}, "decision.decided_us"),
    ({**GOOD_DECISION, "state": True}, "decision.state"),
    ({**GOOD_DECISION, "state": 1}, "decision.state"),
    ({**GOOD_DECISION, "state": 6}, "decision.state"),
    ({**GOOD_DECISION, "extra": 1}, "decision.extra"),
    ({k: v for k, v in GOOD_DECISION.items() if k != "reason"}, "decision.reason"),
    ([GOOD_DECISION], "decision"),
]
FLAWED_CANCELS = [
    ({"reason": None}, "request.reason"),
    ({"reason": 7}, "request.reason"),
    ({"reason": "x\u2067"}, "request.reason"),
    ({"reason": "x" * 501}, "request.reason"),
    ({"reason": "", "why": "x"}, "request.why"),
    ({}, "request.reason"),
    ("reason", "request"),
]


def test_flawed_decisions_and_cancellation_requests_are_refused(receiver: Receiver) -> None:
    """A RESOLVE whose decision, or a CANCEL_REQUEST whose request, breaks its schema (types, control and bidi
    characters, instants, unknown or missing fields) is refused INVALID_ARGUMENT (MALFORMED_DECISION,
    MALFORMED_CANCEL) naming the field, and a transfer id that is not one (a NUL in it) INVALID_TRANSFER_ID;
    the transfer is unchanged and nothing is stored."""
    peer, node = receiver.peer, receiver.node
    d1 = node.client("school-D1")
    outgoing = d1.initiate_transfer(new_record(d1), "S1", "01").transfer  # 79 -> 01: 01 decides
    incoming = peer.offer(peer.package()).transfer_id  # 01 -> 79: 01 may ask to cancel
    before = receiver.state()
    for document, bad in FLAWED_DECISIONS:
        with pytest.raises(grpc.RpcError) as err:
            peer.stub.ResolveTransfer(
                peers_pb2.ResolveTransferRequest(transfer_id=outgoing.id, decision=encode(document)), timeout=30
            )
        code, reason, fields = refusal(err.value)
        assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "MALFORMED_DECISION"), document
        assert bad in [f for f, _ in fields], (document, fields)
    for document, bad in FLAWED_CANCELS:
        with pytest.raises(grpc.RpcError) as err:
            peer.stub.RequestCancellation(
                peers_pb2.RequestCancellationRequest(transfer_id=incoming, request=encode(document)), timeout=30
            )
        code, reason, fields = refusal(err.value)
        assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "MALFORMED_CANCEL"), document
        assert bad in [f for f, _ in fields], (document, fields)
    for call, request in (
        (peer.stub.ResolveTransfer, peers_pb2.ResolveTransferRequest(transfer_id="a" * 31 + "\x00",
                                                                       decision=encode(GOOD_DECISION))),
        (peer.stub.RequestCancellation, peers_pb2.RequestCancellationRequest(transfer_id="\u202e" + "a" * 31,
                                                                               request=b'{"reason":""}')),
    ):  # fmt: skip
        with pytest.raises(grpc.RpcError) as err:
            call(request, timeout=30)
        assert refusal(err.value)[:2] == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_TRANSFER_ID")
    assert receiver.state() == before
    assert d1.get_transfer(outgoing.id).state == transfers_pb2.TRANSFER_STATE_REQUESTED


# -- the schema as a property -----------------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
_teacher = functools.cache(teacher_of)
EVERY_FIELD = [*STRINGS, *INTEGERS, *LISTS, *OBJECTS, (*P0, "locked_us"), ("format",)]


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_decoding_any_value_in_any_field_refuses_or_returns_a_valid_package(pki: Path, data: st.DataObject) -> None:
    """Whatever JSON value stands in whatever field of a valid package, decoding it either returns a package
    or refuses it as a package error (INVALID_ARGUMENT): never another exception."""
    doc = package_document(_teacher(pki))
    doc["pages"][0]["signatures"][0]["chain"] = [doc["pages"][0]["signatures"][0]["certificate"]]
    path = data.draw(st.sampled_from(EVERY_FIELD))
    value = data.draw(JSON)
    parent, key = _at(doc, path)
    parent[key] = value
    try:
        package = pkg.decode(encode(doc))
    except pkg.PackageError as exc:
        assert exc.reason in ("MALFORMED_PACKAGE", "UNKNOWN_PACKAGE_FORMAT") and exc.field_violations
        return
    assert package.record.lookup_code == doc["record"]["lookup_code"]


@settings(max_examples=300, deadline=None)
@given(document=JSON, raw=st.binary(max_size=64))
def test_decoding_any_decision_or_cancellation_request_refuses_or_reads_it(document: Any, raw: bytes) -> None:
    """Any JSON document, or any bytes, given as a decision or a cancellation request, is read or refused
    (MALFORMED_DECISION, MALFORMED_CANCEL): never another exception."""
    for data in (encode(document), raw):
        try:
            pkg.Decision.decode(data)
        except InvalidArgument as exc:
            assert exc.reason == "MALFORMED_DECISION"
        try:
            pkg.decode_cancel_request(data)
        except InvalidArgument as exc:
            assert exc.reason == "MALFORMED_CANCEL"


def test_a_second_offer_of_a_record_already_offered_is_refused(receiver: Receiver) -> None:
    """While an offer of a record waits for the receiving school, another offer of the same record (another
    transfer id; a genuine sender keeps the record frozen and never sends one) is refused as a precondition
    (TRANSFER_ALREADY_OPEN), not as an internal error, and stores nothing; the first one is then accepted."""
    peer = receiver.peer
    first = peer.package()
    second = copy.deepcopy(first)
    second["transfer"]["id"] = uuid.uuid4().hex
    second["pages"] = [page_document(first["record"]["lookup_code"], peer.teacher)]  # same year, another page
    assert peer.offer(first).logged
    before = receiver.state()
    with pytest.raises(grpc.RpcError) as err:
        peer.offer(second)
    assert refusal(err.value)[:2] == (grpc.StatusCode.FAILED_PRECONDITION, "TRANSFER_ALREADY_OPEN")
    assert receiver.state() == before
    d1 = receiver.node.client("school-D1")
    assert d1.accept_transfer(first["transfer"]["id"]).transfer.state == ACCEPTED


def test_a_returning_record_keeps_the_identity_of_pages_issued_elsewhere(receiver: Receiver) -> None:
    """A record arrives from 01 with a page 01's school S1 issued, leaves for 01 and comes back. The page's
    content may have been corrected meanwhile (S1 answers for it on its own node: its word is taken), but
    not its school year, segment, grade or class (MALFORMED_PACKAGE, nothing stored)."""
    peer = receiver.peer
    first = peer.package()
    code, page_id = first["record"]["lookup_code"], first["pages"][0]["id"]
    d1 = receiver.node.client("school-D1")
    assert d1.accept_transfer(peer.offer(first).transfer_id).transfer.state == ACCEPTED
    back = _sent_to_01_and_back(receiver, code)
    assert back["pages"][0]["issuing_province"] == "01" and back["pages"][0]["id"] == page_id

    before = receiver.state()
    for identity in ({"school_year": "2025-2026"}, {"grade": 4}, {"class_name": "3B"}, {"segment": "hk1"}):
        with pytest.raises(grpc.RpcError) as err:
            peer.offer(back, lambda doc, identity=identity: _changed(doc, version=2, **identity))  # type: ignore[misc]
        code_, reason, fields = refusal(err.value)
        assert (code_, reason, fields) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "MALFORMED_PACKAGE",
            [("package.pages[0]", "INCONSISTENT")],
        ), identity
        assert receiver.state() == before

    corrected = peer.offer(back, lambda doc: _changed(doc, version=2))
    assert d1.accept_transfer(corrected.transfer_id).transfer.state == ACCEPTED
    page = d1.get_page(page_id)
    assert page.version == 2 and page.issuing_school == "S1"
