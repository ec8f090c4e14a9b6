"""What a node does with what its peers send, and with its own failed deliveries, checked on the domain and
servicer objects over a real database (faster and more pointed than two node processes, tests/test_federation.py):
repeats answered from what was stored, page ids that belong to another record, an offer that overtakes the
answer to our own, receipts for another message, attempts that crash, and documents that do not parse."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID
from sqlalchemy import Engine, create_engine

from storage import migrate
from storage.database import open_database, sync_url
from storage.repositories import SqlUnitOfWork
from storage.store import Store
from storage.writer import Writer
from tests.federation import unowned_signatures
from tests.support import db_snapshot
from transfer.domain import package as pkg
from transfer.domain.errors import FailedPrecondition, InvalidArgument, PermissionDenied, Unavailable
from transfer.domain.federation import Decision, Federation, PeerKeys
from transfer.domain.leaves import NO_ID, LeafKind, decode_any
from transfer.domain.model import (
    Actor,
    Duty,
    LockTrack,
    MessageKind,
    OutboxMessage,
    OutboxState,
    Page,
    PageState,
    Record,
    RecordLevel,
    Requirement,
    Role,
    School,
    SignerRole,
    SigningTask,
    Teacher,
    TeacherStatus,
    TransferState,
)
from transfer.domain.pages import PagePolicy, page_digest
from transfer.domain.services import Records
from transfer.domain.signatures import SigningTrust
from transfer.server.auth import Authenticator
from transfer.server.peers import Dispatcher, Peer, PeerServicer, Sealer
from transfer.v1 import peers_pb2

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
FROM_01 = Actor(Role.PEER, "01")
FROM_79 = Actor(Role.PEER, "79")


class _Clock:
    def now(self) -> datetime:
        return NOW


@dataclass
class Keys:
    k01: ed25519.Ed25519PrivateKey
    k79: ed25519.Ed25519PrivateKey


@pytest.fixture
def keys() -> Keys:
    return Keys(ed25519.Ed25519PrivateKey.generate(), ed25519.Ed25519PrivateKey.generate())


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    migrate.upgrade(database_url)
    e = create_engine(sync_url(database_url))
    yield e
    e.dispose()


def node(province: str, keys: Keys) -> Federation:
    """This province's federation rules, with the other province as its peer."""
    own, other = (keys.k01, keys.k79) if province == "01" else (keys.k79, keys.k01)
    peer = "79" if province == "01" else "01"
    return Federation(
        province, {peer: PeerKeys(peer, other.public_key())}, own, SigningTrust([]), PagePolicy(), 8, _Clock()
    )


def _page(page_id: str, lookup_code: str, payload: bytes) -> Page:
    sha = hashlib.sha256(payload).digest()
    digest = page_digest(page_id, 1, sha, "application/pdf", lookup_code, "2025-2026", "", 1, "1A")
    return Page(
        page_id, lookup_code, "D1", "2025-2026", "", 1, "1A", "application/pdf", sha, len(payload), 1, digest,
        PageState.DRAFT, LockTrack.COMPLETED, NOW, NOW, None, "79",
    )  # fmt: skip


def sealed_offer(
    keys: Keys,
    transfer_id: str,
    lookup_code: str,
    pages: tuple[pkg.PackagedPage, ...] = (),
    national_id: str = "210987654321",
) -> tuple[bytes, bytes]:
    """A package from 01/S1 to 79/D1, sealed by node 01."""
    record = Record(lookup_code, national_id, RecordLevel.PRIMARY, "S1", None, NOW, NOW)
    data = pkg.Package(transfer_id, "01", "S1", "79", "D1", NOW, record, pages, b"\x01" * 16).encode()
    return data, keys.k01.sign(pkg.seal_message(data))


def test_a_repeated_offer_is_answered_from_what_was_stored(database_url: str, keys: Keys) -> None:
    """The receipt of a stored offer was lost and the receiving node's configuration changed since (here: its
    signature check now refuses everything, an injected fault standing for a signing CA dropped from its
    bundle). The repeat gets the same receipt as the first delivery, not a refusal the sender would take as
    final while this node holds the transfer; a new offer is still checked, and refused."""
    migrate.upgrade(database_url)
    federation = node("79", keys)

    async def scenario() -> tuple[bytes, bytes, str]:
        db = open_database(database_url)
        writer = Writer(db)
        writer.start()
        store = Store(db, writer)
        try:
            await store.write(lambda uow: uow.schools.add(School("D1", "D1", "79", True, NOW, NOW)))

            async def no_checkpoint(index: int) -> None:
                return None

            servicer = PeerServicer(
                store, Authenticator("79"), _Clock(), federation, Sealer("79", keys.k79), no_checkpoint
            )
            offer = PeerServicer.OfferTransfer.__wrapped__  # type: ignore[attr-defined]  # past the mTLS guard
            data, seal = sealed_offer(keys, "d" * 32, "b" * 32)
            request = peers_pb2.OfferTransferRequest(package=data, seal=seal)
            first = await offer(servicer, request, FROM_01)

            def untrusted(package: pkg.Package) -> None:
                raise pkg.PackageError("UNTRUSTED_CERTIFICATE", "injected: the pages' CA is no longer trusted")

            federation.check_signatures = untrusted  # type: ignore[method-assign]
            again = await offer(servicer, request, FROM_01)
            other_data, other_seal = sealed_offer(keys, "e" * 32, "c" * 32)
            with pytest.raises(pkg.PackageError) as refused:
                await offer(servicer, peers_pb2.OfferTransferRequest(package=other_data, seal=other_seal), FROM_01)
            return first.receipt.SerializeToString(), again.receipt.SerializeToString(), refused.value.reason
        finally:
            await writer.stop()
            await db.close()

    first, again, reason = asyncio.run(scenario())
    assert again == first
    assert reason == "UNTRUSTED_CERTIFICATE"


def test_a_package_reusing_another_records_page_id_is_refused(engine: Engine, keys: Keys) -> None:
    """Page ids come from the sender: one that names a page of another record here would overwrite that
    page on acceptance. The offer is refused (MALFORMED_PACKAGE) before anything is stored."""
    federation = node("79", keys)
    mine, page_id = "a" * 32, "c" * 32
    with engine.begin() as conn:
        uow = SqlUnitOfWork(conn)
        uow.schools.add(School("D1", "D1", "79", True, NOW, NOW))
        uow.records.add(Record(mine, "123456789012", RecordLevel.PRIMARY, "D1", None, NOW, NOW))
        uow.pages.add(_page(page_id, mine, b"D1's own page"), b"D1's own page", NOW)
    homeroom = (Requirement(SignerRole.HOMEROOM),)
    forged = pkg.PackagedPage(_page(page_id, "b" * 32, b"overwritten"), "01", b"overwritten", (), homeroom)
    data, seal = sealed_offer(keys, "d" * 32, "b" * 32, (forged,))
    package = federation.open_offer(FROM_01, data, seal)
    with engine.begin() as conn, pytest.raises(pkg.PackageError) as refused:
        federation.receive_offer(SqlUnitOfWork(conn), FROM_01, package, data, seal)
    with engine.begin() as conn:
        uow = SqlUnitOfWork(conn)
        assert uow.transfers.get("d" * 32) is None
        assert uow.pages.payload(page_id) == b"D1's own page"
    assert refused.value.reason == "MALFORMED_PACKAGE" and page_id in refused.value.message


def test_an_offer_overtaking_the_answer_to_our_own_is_retried_not_refused(engine: Engine, keys: Keys) -> None:
    """01 sent record R to 79 (T1); 79 accepted and at once sent R back (T2). Messages are ordered per
    transfer only, so the offer of T2 can reach 01 before 79's answer to T1. It is refused as transient
    (UNAVAILABLE: the sender retries), not as final (which would reject T2)."""
    federation = node("01", keys)
    code = "a" * 32
    with engine.begin() as conn:
        uow = SqlUnitOfWork(conn)
        uow.schools.add(School("S1", "S1", "01", True, NOW, NOW))
        record = Record(code, "123456789012", RecordLevel.PRIMARY, "S1", None, NOW, NOW)
        uow.records.add(record)
        federation.offer(uow, Actor(Role.SCHOOL, "01", "S1"), record, "D1", "79", "1" * 32, b"\x01" * 16)
        uow.flush()
    back = Record(code, "123456789012", RecordLevel.PRIMARY, "D1", None, NOW, NOW)
    data = pkg.Package("2" * 32, "79", "D1", "01", "S1", NOW, back, (), b"\x02" * 16).encode()
    seal = keys.k79.sign(pkg.seal_message(data))
    package = federation.open_offer(FROM_79, data, seal)
    with engine.begin() as conn, pytest.raises(Unavailable) as retry:
        federation.receive_offer(SqlUnitOfWork(conn), FROM_79, package, data, seal)
    assert retry.value.reason == "RESOLUTION_PENDING"


def test_a_receipt_must_name_the_message_sent(keys: Keys) -> None:
    """A receipt sealed by the peer for this transfer and kind, but naming another message's digest, proves
    nothing about this one: it is not taken as delivery."""
    peer = Peer(None, None, keys.k79.public_key(), None)  # type: ignore[arg-type]  # only its seal key is used
    dispatcher = Dispatcher(None, None, None, {"79": peer}, _Clock())  # type: ignore[arg-type]
    message = OutboxMessage(
        1, "a" * 32, "79", MessageKind.RESOLVE, b'{"state":2}', OutboxState.PENDING, 0, NOW, "", NOW
    )
    sealer = Sealer("79", keys.k79)
    right = sealer.receipt(
        message.transfer_id, message.kind, hashlib.sha256(message.payload).digest(), -1, None, 2, NOW
    )
    wrong = sealer.receipt(message.transfer_id, message.kind, b"\x00" * 32, -1, None, 2, NOW)
    assert dispatcher._check_receipt(message, peers_pb2.PeerReceipt.FromString(right)).transfer_id == "a" * 32
    with pytest.raises(ValueError, match="another message"):
        dispatcher._check_receipt(message, peers_pb2.PeerReceipt.FromString(wrong))


class _CrashingLinks:
    """Injected fault: the link to the peer cannot be made (as for a peer removed from the configuration)."""

    def __init__(self) -> None:
        self.calls = 0

    def stub(self, province: str) -> Any:
        self.calls += 1
        raise KeyError(province)


def test_an_attempt_that_crashes_backs_off(database_url: str) -> None:
    """An attempt that fails with an unexpected error records a retry with backoff, like a transient gRPC
    error, so the message is not sent again at once in a loop."""
    migrate.upgrade(database_url)
    clock = _Clock()

    async def scenario() -> OutboxMessage | None:
        db = open_database(database_url)
        writer = Writer(db)
        writer.start()
        store = Store(db, writer)
        try:
            message = OutboxMessage(0, "b" * 32, "48", MessageKind.RESOLVE, b"{}", OutboxState.PENDING, 0, NOW, "", NOW)
            await store.write(lambda uow: uow.outbox.add(message))
            (due,) = await store.read(lambda uow: uow.outbox.due(NOW, 10))
            federation = Federation("01", {}, None, SigningTrust([]), PagePolicy(), 8, clock)
            links = _CrashingLinks()
            dispatcher = Dispatcher(store, federation, links, {}, clock)  # type: ignore[arg-type]
            await dispatcher._launch(due)
            assert not dispatcher._busy and not dispatcher._in_flight
            assert links.calls == 1
            return await store.read(lambda uow: uow.outbox.get(due.id))
        finally:
            await writer.stop()
            await db.close()

    stored = asyncio.run(scenario())
    assert stored is not None and stored.state is OutboxState.PENDING
    assert stored.attempts == 1 and stored.next_attempt_at > NOW
    assert "attempt crashed: KeyError" in stored.last_error


@pytest.mark.parametrize(
    "document",
    [
        {"state": 2, "reason": "", "decided_us": 10**20, "decided_by": "school:D1"},
        {"state": float("inf"), "reason": "", "decided_us": 0, "decided_by": "school:D1"},
        {"state": 2, "reason": "", "decided_us": 0, "decided_by": "x" * 121},
        {"state": 3, "reason": "x" * 501, "decided_us": 0, "decided_by": "school:D1"},
        [1, 2, 3],
    ],
)
def test_a_decision_that_does_not_parse_is_refused_as_such(document: Any) -> None:
    with pytest.raises(InvalidArgument) as refused:
        Decision.decode(json.dumps(document).encode())
    assert refused.value.reason == "MALFORMED_DECISION"


@pytest.mark.parametrize("mangle", ["a JSON list", "a created time past year 9999"])
def test_a_package_that_does_not_parse_is_refused_as_such(keys: Keys, mangle: str) -> None:
    data, _ = sealed_offer(keys, "d" * 32, "b" * 32)
    if mangle == "a JSON list":
        data = b"[1, 2, 3]"
    else:
        doc = json.loads(data)
        doc["transfer"]["created_us"] = 10**20
        data = json.dumps(doc).encode()
    with pytest.raises(pkg.PackageError) as refused:
        pkg.decode(data)
    assert refused.value.reason == "MALFORMED_PACKAGE"


def test_a_decision_state_is_checked() -> None:
    """A well-formed decision still has to be one (not REQUESTED)."""
    ok = Decision(TransferState.ACCEPTED, "", NOW, "school:D1")
    assert Decision.decode(ok.encode()) == ok
    with pytest.raises(InvalidArgument):
        Decision.decode(json.dumps({"state": 1, "reason": "", "decided_us": 0, "decided_by": "x"}).encode())


def test_a_namesake_of_the_receiving_school_cannot_read_the_record(engine: Engine, keys: Keys) -> None:
    """School codes are unique within a province only. While S1 (province 01) sends a record to school S2 of
    province 79, the record (its national id included) is not readable by province 01's own school S2; the
    sending school still reads it."""
    federation = node("01", keys)
    code = "a" * 32
    with engine.begin() as conn:
        uow = SqlUnitOfWork(conn)
        for school in ("S1", "S2"):
            uow.schools.add(School(school, school, "01", True, NOW, NOW))
        record = Record(code, "123456789012", RecordLevel.PRIMARY, "S1", None, NOW, NOW)
        uow.records.add(record)
        federation.offer(uow, Actor(Role.SCHOOL, "01", "S1"), record, "S2", "79", "1" * 32, b"\x01" * 16)
        uow.flush()
    records = Records(_Clock())
    with engine.begin() as conn:
        uow = SqlUnitOfWork(conn)
        assert records.get(uow, Actor(Role.SCHOOL, "01", "S1"), code).national_id == "123456789012"
        with pytest.raises(PermissionDenied):
            records.get(uow, Actor(Role.SCHOOL, "01", "S2"), code)


def test_a_second_record_of_a_pupil_is_refused_on_arrival_and_on_acceptance(engine: Engine, keys: Keys) -> None:
    """A node holds one record per pupil and level. An offer of another record of a pupil it already holds
    at that level is refused (FAILED_PRECONDITION, STUDENT_RECORD_EXISTS), not left to fail as an internal
    error when the receiving school accepts; one registered after the offer arrived refuses the acceptance
    before anything is written."""
    federation = node("79", keys)
    with engine.begin() as conn:
        uow = SqlUnitOfWork(conn)
        uow.schools.add(School("D1", "D1", "79", True, NOW, NOW))
        uow.records.add(Record("f" * 32, "210987654321", RecordLevel.PRIMARY, "D1", None, NOW, NOW))
    data, seal = sealed_offer(keys, "d" * 32, "b" * 32)  # the same pupil (national id), another record
    package = federation.open_offer(FROM_01, data, seal)
    with engine.begin() as conn, pytest.raises(FailedPrecondition) as refused:
        federation.receive_offer(SqlUnitOfWork(conn), FROM_01, package, data, seal)
    assert refused.value.reason == "STUDENT_RECORD_EXISTS"

    other, other_seal = sealed_offer(keys, "e" * 32, "c" * 32, national_id="111122223333")
    with engine.begin() as conn:
        uow = SqlUnitOfWork(conn)
        federation.receive_offer(uow, FROM_01, federation.open_offer(FROM_01, other, other_seal), other, other_seal)
        uow.flush()
    with engine.begin() as conn:  # meanwhile the pupil's record of that level is registered here
        SqlUnitOfWork(conn).records.add(Record("9" * 32, "111122223333", RecordLevel.PRIMARY, "D1", None, NOW, NOW))
    with engine.begin() as conn:
        uow = SqlUnitOfWork(conn)
        transfer = uow.transfers.get("e" * 32)
        assert transfer is not None
        with pytest.raises(FailedPrecondition) as at_acceptance:
            federation.require_importable(uow, transfer)
    assert at_acceptance.value.reason == "STUDENT_RECORD_EXISTS"


# -- a page this node issued comes back ---------------------------------------------------

HOMEROOM, PRINCIPAL, MATH = (
    Requirement(SignerRole.HOMEROOM),
    Requirement(SignerRole.PRINCIPAL),
    Requirement(SignerRole.SUBJECT, "toan"),
)


def _our_page(page_id: str, lookup_code: str, payload: bytes) -> Page:
    """A page 01/S1 issued, as `_page` but of province 01."""
    return dataclasses.replace(_page(page_id, lookup_code, payload), issuing_school="S1", issuing_province="01")


def _our_segment_page(page_id: str, lookup_code: str, payload: bytes, segment: str) -> Page:
    """`_our_page` for another segment of the same year."""
    sha = hashlib.sha256(payload).digest()
    digest = page_digest(page_id, 1, sha, "application/pdf", lookup_code, "2025-2026", segment, 1, "1A")
    return dataclasses.replace(_our_page(page_id, lookup_code, payload), segment=segment, digest=digest)


def _teacher_certificate() -> bytes:
    """A DER certificate with a key a teacher may have (Ed25519): what a package's signature must carry."""
    key = ed25519.Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "teacher")])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(NOW.replace(year=2020)).not_valid_after(NOW.replace(year=2100))
        .sign(key, None)
    )  # fmt: skip
    return cert.public_bytes(serialization.Encoding.DER)


def _staff(uow: SqlUnitOfWork, *teachers: tuple[str, TeacherStatus, Requirement | None]) -> None:
    """School S1 of 01, teachers (id, status, the duty of the page's class they hold)."""
    uow.schools.add(School("S1", "S1", "01", True, NOW, NOW))
    for tid, status, req in teachers:
        uow.teachers.add(Teacher(tid, "S1", f"GV{tid[:4]}", "Giáo viên", status, NOW, NOW))
        if req is not None:
            uow.duties.put(Duty("S1", req.duty("2025-2026", "1A"), tid, NOW))


def _coming_back(keys: Keys, lookup_code: str, pages: tuple[pkg.PackagedPage, ...]) -> tuple[bytes, bytes]:
    """A package from 79/D1 to 01/S1 (transfer "2"*32), sealed by node 79."""
    record = Record(lookup_code, "123456789012", RecordLevel.PRIMARY, "D1", None, NOW, NOW)
    data = pkg.Package("2" * 32, "79", "D1", "01", "S1", NOW, record, pages, b"\x02" * 16).encode()
    return data, keys.k79.sign(pkg.seal_message(data))


def _accept(federation: Federation, uow: SqlUnitOfWork, transfer_id: str) -> None:
    """S1 accepts the incoming transfer, as `Transfers.decide` does: refusals first, then the decision."""
    transfer = uow.transfers.get(transfer_id)
    assert transfer is not None
    federation.require_importable(uow, transfer)
    federation.decided_here(uow, transfer.decided(TransferState.ACCEPTED, by="school:S1", at=NOW), "school:S1")


def _owed(uow: SqlUnitOfWork, page_id: str) -> dict[Requirement, str | None]:
    return {t.requirement: t.assignee for t in uow.tasks.of_page(page_id) if t.pending}


def test_a_page_this_node_issued_comes_back_owed_as_it_left(engine: Engine, database_url: str, keys: Keys) -> None:
    """01/S1's page left with the homeroom signature given, the principal's owed by P and the math teacher's
    owed by nobody (as the former import left it when the page came back once before). It comes back from 79
    claiming the principal's signature too: the homeroom teacher's signature copied into the principal's
    place, which 01 never recorded. 01's own copy stands: the principal's is still owed by P, the math
    teacher's goes to the holder of its duty (a logged move), and the copied signature is not taken."""
    federation = node("01", keys)
    code, page_id, payload = "a" * 32, "c" * 32, b"%PDF-1.7 lop 1"
    page = _our_page(page_id, code, payload)
    homeroom_sig = SigningTask(page_id, HOMEROOM, HOMEROOM.duty("2025-2026", "1A"), "1" * 32, "1" * 32,
                               b"homeroom signature", "f" * 64, NOW)  # fmt: skip
    with engine.begin() as conn:
        uow = SqlUnitOfWork(conn)
        _staff(uow, ("1" * 32, TeacherStatus.ACTIVE, HOMEROOM), ("3" * 32, TeacherStatus.ACTIVE, PRINCIPAL),
               ("4" * 32, TeacherStatus.ACTIVE, MATH))  # fmt: skip
        uow.records.add(Record(code, "123456789012", RecordLevel.PRIMARY, "S1", None, NOW, NOW, transferred_out=True))
        uow.pages.add(dataclasses.replace(page, state=PageState.SIGNING), payload, NOW)
        uow.tasks.add("S1", [
            homeroom_sig,
            SigningTask(page_id, PRINCIPAL, PRINCIPAL.duty("", ""), "3" * 32),
            SigningTask(page_id, MATH, MATH.duty("2025-2026", "1A"), None),
        ])  # fmt: skip
    copied = [
        pkg.PackagedSignature(req, "1" * 32, b"homeroom signature", _teacher_certificate(), (), NOW)
        for req in (HOMEROOM, PRINCIPAL)
    ]
    signing = dataclasses.replace(page, state=PageState.SIGNING)
    data, seal = _coming_back(keys, code, (pkg.PackagedPage(signing, "01", payload, tuple(copied), (MATH,)),))
    with engine.begin() as conn:
        uow = SqlUnitOfWork(conn)
        federation.receive_offer(uow, FROM_79, federation.open_offer(FROM_79, data, seal), data, seal)
        uow.flush()
    with engine.begin() as conn:
        uow = SqlUnitOfWork(conn)
        before = uow.log.size()
        _accept(federation, uow, "2" * 32)
        uow.flush()
    with engine.begin() as conn:
        uow = SqlUnitOfWork(conn)
        assert _owed(uow, page_id) == {PRINCIPAL: "3" * 32, MATH: "4" * 32}
        assert [t for t in uow.tasks.of_page(page_id) if not t.pending] == [homeroom_sig]
        stored = uow.pages.get(page_id)
        assert stored is not None and stored.state is PageState.SIGNING
        record = uow.records.get(code)
        assert record is not None and not record.transferred_out and record.custodian_school == "S1"
        leaves = [decode_any(leaf) for leaf in uow.log.leaves(before, uow.log.size())]
    moves = [x for x in leaves if x.kind is LeafKind.TASK_MOVED]
    assert [(m.page_id, m.subject, m.from_teacher, m.to_teacher) for m in moves] == [
        (page_id, str(MATH), NO_ID, "4" * 32)
    ]
    assert unowned_signatures(database_url, "01") == []


def test_a_record_whose_owed_signatures_would_have_no_owner_is_not_accepted(
    engine: Engine, database_url: str, keys: Keys
) -> None:
    """The record comes back with two pages 01/S1 issued that owe the principal's signature, owed by nobody
    (as the former import left them). S1 has no active principal (the last one departed): the acceptance is
    refused (DUTY_UNASSIGNED, one violation per owed signature) before anything is written. Once S1's admin
    assigns the duty, the record is accepted and the new principal owes both."""
    federation = node("01", keys)
    code, held, new, payload = "a" * 32, "c" * 32, "d" * 32, b"%PDF-1.7 lop 1"
    with engine.begin() as conn:
        uow = SqlUnitOfWork(conn)
        _staff(uow, ("5" * 32, TeacherStatus.DEPARTED, PRINCIPAL), ("6" * 32, TeacherStatus.ACTIVE, None))
        uow.records.add(Record(code, "123456789012", RecordLevel.PRIMARY, "S1", None, NOW, NOW, transferred_out=True))
        for pid, segment in ((held, ""), (new, "hk2")):
            uow.pages.add(_our_segment_page(pid, code, payload, segment), payload, NOW)
            uow.tasks.add("S1", [SigningTask(pid, PRINCIPAL, PRINCIPAL.duty("", ""), None)])
    pages = tuple(
        pkg.PackagedPage(_our_segment_page(pid, code, payload, segment), "01", payload, (), (PRINCIPAL,))
        for pid, segment in ((held, ""), (new, "hk2"))
    )
    data, seal = _coming_back(keys, code, pages)
    with engine.begin() as conn:
        uow = SqlUnitOfWork(conn)
        federation.receive_offer(uow, FROM_79, federation.open_offer(FROM_79, data, seal), data, seal)
        uow.flush()
    before = db_snapshot(database_url)
    with engine.begin() as conn, pytest.raises(FailedPrecondition) as refused:
        _accept(federation, SqlUnitOfWork(conn), "2" * 32)
    assert refused.value.reason == "DUTY_UNASSIGNED"
    assert [(v.type, v.subject) for v in refused.value.precondition_violations] == [
        ("DUTY_ASSIGNED", "schools/S1/duties/principal")
    ] * 2
    assert db_snapshot(database_url) == before

    with engine.begin() as conn:
        SqlUnitOfWork(conn).duties.put(Duty("S1", PRINCIPAL.duty("", ""), "6" * 32, NOW))
    with engine.begin() as conn:
        uow = SqlUnitOfWork(conn)
        _accept(federation, uow, "2" * 32)
        uow.flush()
    with engine.begin() as conn:
        uow = SqlUnitOfWork(conn)
        assert [_owed(uow, pid) for pid in (held, new)] == [{PRINCIPAL: "6" * 32}] * 2
        transfer = uow.transfers.get("2" * 32)
        assert transfer is not None and transfer.state is TransferState.ACCEPTED
    assert unowned_signatures(database_url, "01") == []


def test_holidays_lengthen_the_deadlines_of_transfers_between_provinces(engine: Engine, keys: Keys) -> None:
    """`transfers.holidays` are not working days for transfers between provinces either: the receiving
    node's deadline and the sending node's both skip them (NOW is Monday 23 November, 09:00 in Hà Nội)."""
    holidays = [date(2026, 11, 24), date(2026, 11, 25)]

    def federation(province: str, days_off: list[date]) -> Federation:
        own, other = (keys.k01, keys.k79) if province == "01" else (keys.k79, keys.k01)
        peer = "79" if province == "01" else "01"
        return Federation(
            province, {peer: PeerKeys(peer, other.public_key())}, own, SigningTrust([]), PagePolicy(), 8, _Clock(),
            holidays=days_off,
        )  # fmt: skip

    with engine.begin() as conn:
        uow = SqlUnitOfWork(conn)
        uow.schools.add(School("D1", "D1", "79", True, NOW, NOW))
        uow.schools.add(School("S1", "S1", "01", True, NOW, NOW))
        record = Record("a" * 32, "123456789012", RecordLevel.PRIMARY, "S1", None, NOW, NOW)
        uow.records.add(record)
        sent = federation("01", holidays).offer(
            uow, Actor(Role.SCHOOL, "01", "S1"), record, "D1", "79", "1" * 32, b"\x01" * 16
        )
        uow.flush()
    for tid, code, nid, days_off in (("d" * 32, "b" * 32, "1" * 12, []), ("e" * 32, "c" * 32, "2" * 12, holidays)):
        receiver = federation("79", days_off)
        data, seal = sealed_offer(keys, tid, code, national_id=nid)
        with engine.begin() as conn:
            uow = SqlUnitOfWork(conn)
            receiver.receive_offer(uow, FROM_01, receiver.open_offer(FROM_01, data, seal), data, seal)
            uow.flush()
    with engine.begin() as conn:
        uow = SqlUnitOfWork(conn)
        received = [uow.transfers.get(tid) for tid in ("d" * 32, "e" * 32)]
    # Eight working days from Monday: until the end of Thursday 3 December in Hà Nội (17:00 UTC), or of
    # Monday 7 December with two holidays.
    plain, closed = datetime(2026, 12, 3, 17, tzinfo=UTC), datetime(2026, 12, 7, 17, tzinfo=UTC)
    assert [t.deadline for t in received if t is not None] == [plain, closed]
    assert sent.value.deadline == closed
