"""Transfers between provinces: two node processes (01 and 79) on loopback,
each with its own PKI and database, talking PeerService to each other.

After each scenario: exactly one custodian across both nodes, and both logs
verify (`transfer-verify-log` on each database)."""

from __future__ import annotations

import base64
import collections
import contextlib
import dataclasses
import json
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, multiple, precondition, rule, run_state_machine_as_test
from sqlalchemy import create_engine, update

from storage import schema
from storage.database import sync_url
from tests.federation import (
    Node,
    NodeDatabases,
    Pair,
    free_port,
    issue_from_ca,
    make_node,
    node_uris,
    peer_block,
    peer_channel,
    peer_stub,
    unowned_signatures,
    wait_for,
)
from tests.staffing import HOMEROOM, MATH, PRINCIPAL, add_page, duty, hire, new_record, sign
from tests.support import (
    FakeClock,
    load_config,
    model_settings,
    running_node,
    write_config,
)
from transfer.client import NO_RETRY, ClientTls, TransferClient, TransferError
from transfer.client.client import TransferChange
from transfer.client.logverify import LogVerifier
from transfer.client.signing import sign_digest
from transfer.devpki import SigningCA, make_dev_pki
from transfer.domain.leaves import LeafKind, PeerLeaf, TransferLeaf
from transfer.domain.model import MessageKind, OutboxState, Role
from transfer.domain.package import digest_of, seal_message
from transfer.ledger import merkle
from transfer.ledger.note import parse_skey
from transfer.server.peers import Sealer
from transfer.v1 import pages_pb2, peers_pb2, peers_pb2_grpc, records_pb2, staff_pb2, transfers_pb2

pytestmark = pytest.mark.slow

REQUESTED = transfers_pb2.TRANSFER_STATE_REQUESTED
ACCEPTED = transfers_pb2.TRANSFER_STATE_ACCEPTED
REJECTED = transfers_pb2.TRANSFER_STATE_REJECTED
CANCELLED = transfers_pb2.TRANSFER_STATE_CANCELLED
DELIVERED = transfers_pb2.DELIVERY_STATE_DELIVERED
FAILED = transfers_pb2.DELIVERY_STATE_FAILED
INCOMING = transfers_pb2.TRANSFER_DIRECTION_INCOMING


StartPair = Callable[..., Pair]


@pytest.fixture
def start_pair(
    request: pytest.FixtureRequest, tmp_path: Path, pki: Path, pki79: Path, signing_bundle: Path
) -> Iterator[StartPair]:
    nodes: list[Node] = []
    databases = NodeDatabases(request, tmp_path)

    def start(
        engine: str = "sqlite",
        *,
        env_a: dict[str, str] | None = None,
        env_b: dict[str, str] | None = None,
        start_b: bool = True,
        a_peer_port: int | None = None,
        a_more_peers: Sequence[tuple[Path, str, int]] = (),
    ) -> Pair:
        urls = [databases.url(name, engine) for name in ("a", "b")]
        port_a, port_b = free_port(), free_port()
        a = make_node(tmp_path / "a", pki, "01", urls[0], port_a, (pki79, "79", a_peer_port or port_b),
                      signing_bundle, env_a, a_more_peers)  # fmt: skip
        b = make_node(tmp_path / "b", pki79, "79", urls[1], port_b, (pki, "01", port_a), signing_bundle, env_b)
        nodes.extend([a, b])
        a.proc.start()
        a.admin.register_school("S1", "Trường Tiểu học Số 1 (Hà Nội)")
        if start_b:
            b.proc.start()
            b.admin.register_school("D1", "Trường Tiểu học Quận 1")
        return Pair(a, b)

    try:
        yield start
    finally:
        for n in nodes:
            n.close()
        databases.drop()


def prepared_record(node: Node) -> tuple[str, str]:
    """A record at 01/S1 with one page, homeroom-signed, math and principal still pending.

    Returns (lookup code, page id)."""
    if "home" not in node.teachers:
        ca = SigningCA.load(node.pki)
        admin = node.client("school-admin-S1")
        home, other = hire(admin, ca, "GV-home"), hire(admin, ca, "GV-other")
        admin.assign_duty(duty(HOMEROOM), home.id)
        admin.assign_duty(duty(MATH), other.id)
        admin.assign_duty(duty(PRINCIPAL), other.id)
        node.teachers["home"], node.teachers["other"] = home, other
    s1 = node.client("school-S1")
    code = new_record(s1)
    page = add_page(s1, code)
    sign(s1, page, HOMEROOM, node.teachers["home"])
    return code, page.id


def offer(pair: Pair, code: str, *, refused_at_once: bool = False) -> transfers_pb2.Transfer:
    """Initiate at 01; the record is frozen until 79 answers (which a peer
    refusing everything may do before we look: then it is active again)."""
    sent = pair.a.client("school-S1").initiate_transfer(code, "D1", "79")
    t = sent.transfer
    assert t.state == REQUESTED and t.to_province == "79" and t.from_province == "01"
    assert t.delivery_state == transfers_pb2.DELIVERY_STATE_PENDING
    if not refused_at_once:
        assert pair.a.client("school-S1").get_record(code).status == records_pb2.RECORD_STATUS_FROZEN
    return t


def arrived(pair: Pair, transfer_id: str) -> transfers_pb2.Transfer:
    d1 = pair.b.client("school-D1")
    return wait_for(
        "the offer to arrive at 79",
        lambda: next((t for t in d1.iter_transfers(INCOMING) if t.id == transfer_id), None),
    )


def settled(pair: Pair, transfer_id: str, state: int) -> transfers_pb2.Transfer:
    """Wait until the sending node learned the decision."""
    s1 = pair.a.client("school-S1")
    return wait_for(
        f"the decision to reach 01 ({state})", lambda: (t := s1.get_transfer(transfer_id)).state == state and t
    )


def drained(node: Node) -> None:
    """Wait until the node's outbox is empty (its last acknowledgement logged)."""
    admin = node.admin
    wait_for(f"{node.province}'s outbox to drain", lambda: all(d.pending == 0 for d in admin.list_deliveries()))


def kinds(leaves: list[Any], transfer_id: str) -> list[LeafKind]:
    return [leaf.kind for leaf in leaves if getattr(leaf, "transfer_id", None) == transfer_id]


# -- the happy path, rejection, cancellation ---------------------------------------


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_record_moves_to_another_province(start_pair: StartPair, engine: str) -> None:
    pair = start_pair(engine)
    code, page_id = prepared_record(pair.a)
    t = offer(pair, code)

    incoming = arrived(pair, t.id)
    assert (incoming.from_province, incoming.from_school, incoming.to_school) == ("01", "S1", "D1")
    assert incoming.log_salt == t.log_salt  # both logs name the record by the same digest
    delivered = wait_for(
        "the acknowledgement", lambda: (x := pair.a.admin.get_transfer(t.id)).delivery_state == DELIVERED and x
    )
    assert delivered.state == REQUESTED
    d1 = pair.b.client("school-D1")
    # While undecided, the record does not exist on 79: the only holder is S1 (frozen).
    assert pair.holders(code) == [("01", "S1")]

    accepted = d1.accept_transfer(t.id)
    assert accepted.transfer.state == ACCEPTED and accepted.logged
    record = d1.get_record(code)
    assert (record.custodian_school, record.status) == ("D1", records_pb2.RECORD_STATUS_ACTIVE)
    pages = list(d1.iter_pages(code))
    assert [p.id for p in pages] == [page_id]
    signed = [task for task in d1.get_page(page_id).tasks if task.signed_by_teacher_id]
    assert len(signed) == 1 and signed[0].signature  # the homeroom teacher's signature travelled with the page

    final = settled(pair, t.id, ACCEPTED)
    assert final.decide_time == accepted.transfer.decide_time  # the receiving node's decision, as it made it
    s1 = pair.a.client("school-S1")
    assert s1.get_record(code).status == records_pb2.RECORD_STATUS_TRANSFERRED_OUT
    assert s1.get_page(page_id).id == page_id  # the old school still reads the pages it issued
    with pytest.raises(TransferError) as err:
        add_page(s1, code)
    assert err.value.reason in ("RECORD_TRANSFERRED_OUT", "NOT_CUSTODIAN")
    with pytest.raises(TransferError) as err:
        s1.initiate_transfer(code, "D1", "79")
    assert err.value.reason in ("RECORD_TRANSFERRED_OUT", "NOT_CUSTODIAN")
    # The new custodian adds the next year's page on its own node, with its own teachers.
    staff79 = pair.b.client("school-admin-D1")
    teacher79 = hire(staff79, SigningCA.load(pair.b.pki), "GV79")
    for requirement in (HOMEROOM, MATH, PRINCIPAL):
        staff79.assign_duty(duty(requirement, "2027-2028", "4B"), teacher79.id)
    next_year = d1.add_page(code, "2027-2028", 4, "4B", b"%PDF-1.7 lop 4", [HOMEROOM, MATH, PRINCIPAL]).page
    assert next_year.issuing_school == "D1"

    drained(pair.b)
    pair.assert_consistent(code)
    # Evidence: 01's log holds the offer and the acknowledgements, naming 79's log entries.
    leaves_a, leaves_b = pair.a.leaves(), pair.b.leaves()
    assert kinds(leaves_a, t.id) == [
        LeafKind.TRANSFER_REQUESTED, LeafKind.TRANSFER_OFFERED, LeafKind.MESSAGE_ACKNOWLEDGED, LeafKind.TRANSFER_ACCEPTED,
    ]  # fmt: skip
    assert kinds(leaves_b, t.id) == [
        LeafKind.TRANSFER_REQUESTED, LeafKind.TRANSFER_ACCEPTED, LeafKind.MESSAGE_ACKNOWLEDGED,
    ]  # fmt: skip
    ack = next(x for x in leaves_a if isinstance(x, PeerLeaf) and x.kind is LeafKind.MESSAGE_ACKNOWLEDGED)
    at_b = leaves_b[ack.peer_log_index]
    assert isinstance(at_b, TransferLeaf) and at_b.kind is LeafKind.TRANSFER_REQUESTED and at_b.transfer_id == t.id
    offered = next(x for x in leaves_a if isinstance(x, PeerLeaf) and x.kind is LeafKind.TRANSFER_OFFERED)
    assert ack.digest == offered.digest  # 79 acknowledged exactly the package 01 logged
    requested_a = next(x for x in leaves_a if isinstance(x, TransferLeaf) and x.transfer_id == t.id)
    assert requested_a.record == at_b.record

    deliveries = {d.peer_province: d for d in pair.a.admin.list_deliveries()}
    assert deliveries["79"].delivered == 1 and deliveries["79"].pending == 0 and deliveries["79"].failed == 0
    assert {d.peer_province: d.delivered for d in pair.b.admin.list_deliveries()} == {"01": 1}


def _there_and_back(pair: Pair, code: str, while_away: Callable[[], None] = lambda: None) -> None:
    """01/S1 sends the record to 79/D1, which accepts it; then D1 sends it back to S1, which accepts it."""
    t = offer(pair, code)
    arrived(pair, t.id)
    pair.b.client("school-D1").accept_transfer(t.id)
    settled(pair, t.id, ACCEPTED)
    while_away()
    back = pair.b.client("school-D1").initiate_transfer(code, "S1", "01").transfer
    s1 = pair.a.client("school-S1")
    wait_for("the record's offer to reach 01", lambda: any(x.id == back.id for x in s1.iter_transfers(INCOMING)))
    s1.accept_transfer(back.id)
    d1 = pair.b.client("school-D1")
    wait_for("the decision to reach 79", lambda: d1.get_transfer(back.id).state == ACCEPTED)
    assert pair.holders(code) == [("01", "S1")]


def _owed(client: TransferClient, page_id: str) -> dict[str, str]:
    """The signatures a page still owes: requirement -> the teacher who owes it."""
    return {
        f"{t.requirement.role}/{t.requirement.subject}": t.assignee_teacher_id
        for t in client.get_page(page_id).tasks
        if not t.signed_by_teacher_id
    }


def test_signing_duties_survive_round_trips(start_pair: StartPair) -> None:
    """A page of 01/S1 that still owes its math and principal signatures goes to 79 and comes back, twice.
    Back at 01, each owed signature is owed by an active teacher of S1: the teacher who owed it when it left
    (who signs it), or, when that teacher left while the record was away, their replacement under the
    handoff rules; the principal's task list shows it, and the page can be completed and locked."""
    pair = start_pair()
    code, page_id = prepared_record(pair.a)
    other = pair.a.teachers["other"]
    s1 = pair.a.client("school-S1")
    math, principal = f"{MATH[0]}/{MATH[1]}", f"{PRINCIPAL[0]}/{PRINCIPAL[1]}"

    _there_and_back(pair, code)
    assert _owed(s1, page_id) == {math: other.id, principal: other.id}
    assert [t.page_id for t in s1.iter_signing_tasks(other.id)] == [page_id, page_id]
    sign(s1, s1.get_page(page_id), MATH, other)  # not NOT_YOUR_TASK: the duty came back with the page
    pair.assert_consistent(code)

    admin = pair.a.client("school-admin-S1")
    successor = hire(admin, SigningCA.load(pair.a.pki), "GV-successor")

    def principal_retires() -> None:
        today = datetime.now(timezone(timedelta(hours=7))).date().isoformat()
        admin.record_departure(other.id, staff_pb2.DEPARTURE_REASON_RETIREMENT, today, replacement=successor.id)

    _there_and_back(pair, code, principal_retires)
    assert _owed(s1, page_id) == {principal: successor.id}
    assert list(s1.iter_signing_tasks(other.id)) == []
    sign(s1, s1.get_page(page_id), PRINCIPAL, successor)
    assert s1.lock_page(page_id).page.state == pages_pb2.PAGE_STATE_LOCKED
    pair.assert_consistent(code)


def test_rejection(start_pair: StartPair) -> None:
    pair = start_pair()
    code, page_id = prepared_record(pair.a)
    t = offer(pair, code)
    arrived(pair, t.id)
    with pytest.raises(TransferError) as err:
        pair.a.client("school-S1").replace_page(page_id, b"%PDF-1.7 sua diem")
    assert err.value.reason == "RECORD_FROZEN"
    rejected = pair.b.client("school-D1").reject_transfer(t.id, "Trường đã đủ sĩ số")
    assert rejected.transfer.state == REJECTED
    final = settled(pair, t.id, REJECTED)
    assert final.reason == "Trường đã đủ sĩ số"
    s1 = pair.a.client("school-S1")
    assert s1.get_record(code).status == records_pb2.RECORD_STATUS_ACTIVE
    s1.replace_page(page_id, b"%PDF-1.7 sua diem")  # unfrozen: S1 goes on
    with pytest.raises(TransferError) as err:
        pair.b.admin.get_record(code)
    assert err.value.reason == "RECORD_NOT_FOUND"  # the package never became a record at 79
    pair.assert_consistent(code)


def test_cancellation(start_pair: StartPair) -> None:
    pair = start_pair()
    code, _ = prepared_record(pair.a)
    t = offer(pair, code)
    arrived(pair, t.id)
    s1 = pair.a.client("school-S1")
    asked = s1.cancel_transfer(t.id, "Gia đình đổi ý")
    assert asked.transfer.state == REQUESTED and asked.transfer.cancel_requested and not asked.logged
    with pytest.raises(TransferError) as err:
        s1.cancel_transfer(t.id)
    assert (err.value.code, err.value.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "CANCEL_ALREADY_REQUESTED")
    final = settled(pair, t.id, CANCELLED)
    assert not final.cancel_requested
    assert pair.b.admin.get_transfer(t.id).state == CANCELLED
    with pytest.raises(TransferError) as err:
        pair.b.client("school-D1").accept_transfer(t.id)
    assert err.value.reason == "TRANSFER_NOT_OPEN"
    assert s1.get_record(code).status == records_pb2.RECORD_STATUS_ACTIVE
    pair.assert_consistent(code)


def test_cancellation_racing_an_acceptance(start_pair: StartPair) -> None:
    """The sender's cancellation and the receiver's acceptance at the same moment:
    the receiving node decides one, and both nodes end with that decision."""
    pair = start_pair()
    s1, d1 = pair.a.client("school-S1"), pair.b.client("school-D1")
    for _ in range(4):
        code = new_record(s1)
        t = offer(pair, code)
        arrived(pair, t.id)
        results: dict[str, Any] = {}
        barrier = threading.Barrier(2, timeout=10)

        def run(
            name: str, fn: Callable[[], Any], barrier: threading.Barrier = barrier, results: dict[str, Any] = results
        ) -> None:
            barrier.wait()
            try:
                results[name] = fn()
            except TransferError as err:
                results[name] = err

        threads = [
            threading.Thread(target=run, args=("cancel", lambda t=t: s1.cancel_transfer(t.id))),
            threading.Thread(target=run, args=("accept", lambda t=t: d1.accept_transfer(t.id))),
        ]
        for th in threads:
            th.start()
        for th in threads:
            th.join(30)
        if isinstance(results["accept"], TransferError):
            assert results["accept"].reason == "TRANSFER_NOT_OPEN"
            assert not isinstance(results["cancel"], TransferError)
            expected, holder = CANCELLED, ("01", "S1")
        else:
            # The request is taken unless the acceptance already reached the sender
            # first; then the sender itself knows the transfer is closed.
            if isinstance(results["cancel"], TransferError):
                assert results["cancel"].reason == "TRANSFER_NOT_OPEN"
                assert pair.a.admin.get_transfer(t.id).state == ACCEPTED
            expected, holder = ACCEPTED, ("79", "D1")
        settled(pair, t.id, expected)
        assert pair.b.admin.get_transfer(t.id).state == expected
        assert pair.holders(code) == [holder]
    pair.assert_consistent()


# -- failures: a peer down, a crash, lost acknowledgements ---------------------------


def test_receiving_node_down_then_back(start_pair: StartPair) -> None:
    pair = start_pair(start_b=False)
    code, _ = prepared_record(pair.a)
    t = offer(pair, code)
    admin = pair.a.admin
    pending = wait_for(
        "failed attempts to show",
        lambda: next((d for d in admin.list_deliveries() if d.peer_province == "79" and d.max_attempts >= 2), None),
    )
    assert pending.pending == 1 and pending.last_error.startswith("UNAVAILABLE")
    assert "79" in pending.peer_province and pending.oldest_pending_seconds >= 0
    shown = admin.get_transfer(t.id)
    assert shown.delivery_state == transfers_pb2.DELIVERY_STATE_PENDING and shown.delivery_error == ""

    pair.b.proc.start()
    pair.b.admin.register_school("D1", "Trường Tiểu học Quận 1")
    arrived(pair, t.id)
    wait_for("the acknowledgement", lambda: admin.get_transfer(t.id).delivery_state == DELIVERED)
    pair.b.client("school-D1").accept_transfer(t.id)
    settled(pair, t.id, ACCEPTED)
    pair.assert_consistent(code)


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_sender_killed_after_commit_before_delivery(start_pair: StartPair, engine: str) -> None:
    """SIGKILL right after the offer committed (the peer is not up, so it cannot have
    been delivered); restarted, the node delivers it by itself."""
    pair = start_pair(engine, start_b=False)
    code, _ = prepared_record(pair.a)
    t = offer(pair, code)
    pair.a.proc.kill()
    for c in pair.a.clients:
        c.close()
    pair.a.clients.clear()

    pair.b.proc.start()
    pair.b.admin.register_school("D1", "Trường Tiểu học Quận 1")
    pair.a.proc.start()
    arrived(pair, t.id)
    pair.b.client("school-D1").accept_transfer(t.id)
    settled(pair, t.id, ACCEPTED)
    assert pair.b.client("school-D1").get_record(code).custodian_school == "D1"
    drained(pair.b)
    pair.assert_consistent(code)
    assert kinds(pair.b.leaves(), t.id) == [
        LeafKind.TRANSFER_REQUESTED, LeafKind.TRANSFER_ACCEPTED, LeafKind.MESSAGE_ACKNOWLEDGED,
    ]  # fmt: skip


def test_lost_acknowledgements(start_pair: StartPair) -> None:
    """Each node drops its first acknowledgements: the same offer and the same decision
    arrive several times, and are processed once."""
    faults = {"TRANSFER_FAULTS": "drop_peer_acks=3"}
    pair = start_pair(env_a=faults, env_b=faults)
    code, _ = prepared_record(pair.a)
    t = offer(pair, code)
    arrived(pair, t.id)
    wait_for("the acknowledgement", lambda: pair.a.admin.get_transfer(t.id).delivery_state == DELIVERED)
    pair.b.client("school-D1").accept_transfer(t.id)
    settled(pair, t.id, ACCEPTED)
    drained(pair.b)

    (offer_row,) = [r for r in pair.a.rows("outbox") if r[1] == t.id]
    assert offer_row[6] >= 3  # attempts that failed: the offer was sent at least 4 times
    (resolve_row,) = [r for r in pair.b.rows("outbox") if r[1] == t.id]
    assert resolve_row[6] >= 3
    assert len(pair.b.rows("inbound_messages")) == 1  # one offer, processed once
    assert len(pair.a.rows("inbound_messages")) == 1  # one decision, applied once
    assert kinds(pair.b.leaves(), t.id).count(LeafKind.TRANSFER_REQUESTED) == 1
    assert kinds(pair.a.leaves(), t.id).count(LeafKind.TRANSFER_ACCEPTED) == 1
    pair.assert_consistent(code)


# -- refusals: permanent, tampered, forged, not yours, wrong identity ------------------


def test_peer_refusing_for_good(start_pair: StartPair) -> None:
    pair = start_pair(env_b={"TRANSFER_FAULTS": "refuse_offers"})
    code, _ = prepared_record(pair.a)
    t = offer(pair, code, refused_at_once=True)
    final = settled(pair, t.id, REJECTED)
    assert final.delivery_state == FAILED and "FAILED_PRECONDITION" in final.delivery_error
    assert pair.a.client("school-S1").get_record(code).status == records_pb2.RECORD_STATUS_ACTIVE
    (peer,) = pair.a.admin.list_deliveries()
    assert (peer.peer_province, peer.failed, peer.pending) == ("79", 1, 0) and "INJECTED_FAULT" in peer.last_error
    assert LeafKind.OFFER_REFUSED_CODED in kinds(pair.a.leaves(), t.id)
    pair.assert_consistent(code)


def test_tampered_package_is_refused(start_pair: StartPair) -> None:
    pair = start_pair(env_a={"TRANSFER_FAULTS": "tamper_packages"})
    code, _ = prepared_record(pair.a)
    t = offer(pair, code, refused_at_once=True)
    final = settled(pair, t.id, REJECTED)
    assert final.delivery_state == FAILED and "BAD_SEAL" in final.delivery_error
    assert pair.b.rows("transfers") == [] and pair.b.rows("records") == []
    refusals = [x for x in pair.b.leaves() if isinstance(x, PeerLeaf) and x.kind is LeafKind.OFFER_REFUSED_CODED]
    assert len(refusals) == 1 and refusals[0].transfer_id == t.id and refusals[0].text == "BAD_SEAL"
    pair.assert_consistent(code)


@pytest.mark.parametrize(
    ("column", "value", "reason", "logged_at_79"),
    [
        ("issuing_school", "D1", "BAD_PAGE_ISSUER", False),  # with issuing_province 79: a school of 79's
        ("school_year", "2026-x", "MALFORMED_PACKAGE", True),
    ],
)
def test_a_package_failing_the_receivers_checks_ends_the_offer_at_once(
    start_pair: StartPair, column: str, value: str, reason: str, logged_at_79: bool
) -> None:
    """01 sends a package 79 must refuse (a page of 01's database altered behind the node's back: one naming
    79's school D1 as its issuer, or with a malformed school year). 79 refuses it at the offer
    (INVALID_ARGUMENT), so 01 ends the offer at its first attempt: transfer REJECTED, delivery FAILED with
    the reason, the record active again; 79 holds no transfer, no record and no page of it."""
    pair = start_pair()
    code, page_id = prepared_record(pair.a)
    changes = {column: value, **({"issuing_province": "79"} if column == "issuing_school" else {})}
    engine = create_engine(sync_url(pair.a.database_url))
    with engine.begin() as conn:
        conn.execute(update(schema.pages).where(schema.pages.c.id == page_id).values(**changes))
    engine.dispose()
    t = offer(pair, code, refused_at_once=True)
    final = settled(pair, t.id, REJECTED)
    assert final.delivery_state == FAILED and reason in final.delivery_error
    (row,) = [r for r in pair.a.rows("outbox") if r[1] == t.id]
    assert row[6] == 1  # attempts: refused for good at the first
    assert pair.a.client("school-S1").get_record(code).status == records_pb2.RECORD_STATUS_ACTIVE
    assert pair.b.rows("transfers") == [] and pair.b.rows("records") == [] and pair.b.rows("pages") == []
    assert pair.b.rows("inbound_packages") == []
    refusals = [x.text for x in pair.b.leaves() if isinstance(x, PeerLeaf) and x.kind is LeafKind.OFFER_REFUSED_CODED]
    assert refusals == ([reason] if logged_at_79 else [])
    pair.a.verify_log()
    pair.b.verify_log()


def _stored_offer(node: Node, transfer_id: str) -> tuple[bytes, bytes]:
    (row,) = [r for r in node.rows("outbox") if r[1] == transfer_id]
    payload = bytes(row[4])
    return payload[64:], payload[:64]


def test_forged_packages_are_refused(start_pair: StartPair, pki: Path, rogue_pki: Path) -> None:
    """Packages sealed with 01's real key but with altered content: every page digest and
    teacher signature is checked against 79's trusted CAs before anything is acknowledged."""
    pair = start_pair(a_peer_port=free_port())  # 01 cannot reach 79: its offer stays in the outbox
    code, _ = prepared_record(pair.a)
    t = offer(pair, code)
    package, seal = _stored_offer(pair.a, t.id)
    seal_key = parse_skey((pki / "seal.key").read_text().strip())._key  # type: ignore[attr-defined]
    stub = peer_stub(peer_channel(pki, pair.b.pki, pair.b.proc.address))
    before = pair.b.rows("transfers")

    def reseal(doc: dict[str, Any]) -> tuple[bytes, bytes]:
        raw = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        return raw, seal_key.sign(seal_message(raw))

    def refused(raw: bytes, sig: bytes) -> tuple[grpc.StatusCode, str]:
        with pytest.raises(grpc.RpcError) as err:
            stub.OfferTransfer(peers_pb2.OfferTransferRequest(package=raw, seal=sig), timeout=10)
        return err.value.code(), err.value.details()

    doc = json.loads(package)
    content = json.loads(package)
    content["pages"][0]["payload"] = base64.b64encode(b"%PDF-1.7 diem da sua").decode()
    assert refused(*reseal(content))[0] == grpc.StatusCode.INVALID_ARGUMENT

    wrong_sig = json.loads(package)
    sig = bytearray(base64.b64decode(wrong_sig["pages"][0]["signatures"][0]["signature"]))
    sig[10] ^= 1
    wrong_sig["pages"][0]["signatures"][0]["signature"] = base64.b64encode(bytes(sig)).decode()
    first = code_, details = refused(*reseal(wrong_sig))
    assert code_ == grpc.StatusCode.INVALID_ARGUMENT and "does not verify" in details

    # A teacher certificate from a CA 79 does not trust, with a signature that verifies.
    rogue = SigningCA.load(rogue_pki)
    pem, key = rogue.teacher("rogue", "ecdsa", write=False)
    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    untrusted = json.loads(package)
    page = untrusted["pages"][0]
    page["signatures"][0]["certificate"] = base64.b64encode(der).decode()
    page["signatures"][0]["chain"] = []
    page["signatures"][0]["signature"] = base64.b64encode(sign_digest(key, bytes.fromhex(page["digest"]))).decode()
    code_, details = refused(*reseal(untrusted))
    assert code_ == grpc.StatusCode.INVALID_ARGUMENT

    elsewhere = json.loads(package)
    elsewhere["transfer"]["from_province"] = "48"
    assert refused(*reseal(elsewhere))[0] == grpc.StatusCode.PERMISSION_DENIED

    assert refused(package, bytes(64))[0] == grpc.StatusCode.INVALID_ARGUMENT  # the real package, a bad seal
    assert pair.b.rows("transfers") == before and pair.b.rows("records") == []
    reasons = [x.text for x in pair.b.leaves() if isinstance(x, PeerLeaf) and x.kind is LeafKind.OFFER_REFUSED_CODED]
    assert reasons == ["BAD_PAGE_DIGEST", "BAD_TEACHER_SIGNATURE", "UNTRUSTED_TEACHER_CERTIFICATE", "BAD_SEAL"]
    # The same forged package again (overlapping attempts, a lost answer): refused the
    # same way, and not logged again; one row per package and reason remembers it.
    assert refused(*reseal(wrong_sig)) == first
    assert refused(package, bytes(64))[0] == grpc.StatusCode.INVALID_ARGUMENT
    reasons = [x.text for x in pair.b.leaves() if isinstance(x, PeerLeaf) and x.kind is LeafKind.OFFER_REFUSED_CODED]
    assert reasons == ["BAD_PAGE_DIGEST", "BAD_TEACHER_SIGNATURE", "UNTRUSTED_TEACHER_CERTIFICATE", "BAD_SEAL"]
    assert sorted(r[2] for r in pair.b.rows("refused_packages")) == sorted(reasons)

    # The genuine package, sent the same way, is acknowledged with a receipt sealed by 79.
    response = stub.OfferTransfer(peers_pb2.OfferTransferRequest(package=package, seal=seal), timeout=10)
    body = peers_pb2.PeerReceiptBody.FromString(response.receipt.body)
    assert body.transfer_id == t.id and body.receiver_province == "79" and body.logged
    assert body.state == REQUESTED and body.checkpoint.startswith("hocba.invalid/province/79/log\n")
    assert doc["transfer"]["id"] == t.id
    again = stub.OfferTransfer(peers_pb2.OfferTransferRequest(package=package, seal=seal), timeout=10)
    assert again.receipt == response.receipt  # a repeat returns the stored receipt
    assert pair.holders(code) == [("01", "S1")]
    pair.a.verify_log()
    pair.b.verify_log()
    assert pair.a.unowned_signatures() == pair.b.unowned_signatures() == []


def test_peer_acting_on_transfers_not_its_own(start_pair: StartPair, pki: Path, pki79: Path) -> None:
    pair = start_pair()
    s1 = pair.a.client("school-S1")
    pair.a.admin.register_school("S2", "Trường Tiểu học Số 2")
    local_code = new_record(s1)
    local = s1.initiate_transfer(local_code, "S2").transfer  # inside province 01
    as_79 = peer_stub(peer_channel(pki79, pki, pair.a.proc.address))

    decision = json.dumps({"state": 2, "reason": "", "decided_us": 0, "decided_by": "school:D1"}).encode()
    with pytest.raises(grpc.RpcError) as err:
        as_79.ResolveTransfer(peers_pb2.ResolveTransferRequest(transfer_id=local.id, decision=decision), timeout=10)
    assert (
        err.value.code() == grpc.StatusCode.PERMISSION_DENIED and "not offered to your province" in err.value.details()
    )
    with pytest.raises(grpc.RpcError) as err:
        as_79.RequestCancellation(
            peers_pb2.RequestCancellationRequest(transfer_id=local.id, request=b'{"reason":""}'), timeout=10
        )
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert pair.a.admin.get_transfer(local.id).state == REQUESTED  # untouched

    # A peer may call nothing but PeerService and LogService; nobody else may call PeerService.
    tls = ClientTls.from_files(pki / "ca.pem", pki79 / "node.pem", pki79 / "node.key")
    with TransferClient(pair.a.proc.address, tls, server_name="localhost", retry=NO_RETRY) as c:
        with pytest.raises(TransferError) as terr:
            c.get_transfer(local.id)
        assert (terr.value.code, terr.value.reason) == (grpc.StatusCode.PERMISSION_DENIED, "ROLE_NOT_ALLOWED")
    school_channel = grpc.secure_channel(
        pair.a.proc.address,
        grpc.ssl_channel_credentials(
            (pki / "ca.pem").read_bytes(), (pki / "school-S1.key").read_bytes(), (pki / "school-S1.pem").read_bytes()
        ),
    )
    with pytest.raises(grpc.RpcError) as err:
        peer_stub(school_channel).ResolveTransfer(
            peers_pb2.ResolveTransferRequest(transfer_id=local.id, decision=decision), timeout=10
        )
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED and "peer node" in err.value.details()
    pair.assert_consistent(local_code)


def test_a_peer_node_reads_the_log(tmp_path: Path, pki: Path, pki79: Path, database_url: str) -> None:
    """A peer node's certificate may read this node's log (checkpoints, entries, inclusion and consistency
    proofs, all verifying), as docs/protocol.md says; the services of schools and admins still refuse it."""
    extra = f'\n[seal]\nkey_file = "{pki / "seal.key"}"\n' + peer_block(pki79, "79", free_port())
    path = write_config(tmp_path / "node.toml", pki=pki, database_url=database_url, extra=extra)
    with running_node(load_config(path), pki, FakeClock(), path) as node:
        admin = node.client("province-admin")
        for code in ("S1", "S2"):
            admin.register_school(code, f"Trường {code}")
        s1 = node.client("school-S1")
        first = s1.initiate_transfer(new_record(s1), "S2")
        last = s1.initiate_transfer(new_record(s1), "S2")
        assert node.node is not None
        node.run(node.node.publish_checkpoint)
        tls = ClientTls.from_files(pki / "ca.pem", pki79 / "node.pem", pki79 / "node.key")
        with TransferClient(node.address, tls, retry=NO_RETRY) as peer:
            verifier = LogVerifier(
                peer,
                (pki / "log.vkey").read_text().strip(),
                tmp_path / "trusted",
                origin="hocba.invalid/province/01/log",
            )
            checkpoint = verifier.verify_receipt(first.receipt)  # GetCheckpoint, GetInclusionProof
            assert checkpoint.size == last.receipt.index + 1
            leaves = [e.leaf for e in peer.iter_entries()]
            assert leaves == [first.receipt.leaf, last.receipt.leaf]
            assert merkle.root([merkle.leaf_hash(x) for x in leaves]) == peer.get_checkpoint().root_hash
            merkle.verify_consistency(
                1, 2, peer.consistency_proof(1, 2), merkle.leaf_hash(leaves[0]), peer.get_checkpoint().root_hash
            )
            with pytest.raises(TransferError) as refused:
                peer.get_transfer(first.transfer.id)
            assert (refused.value.code, refused.value.reason) == (grpc.StatusCode.PERMISSION_DENIED, "ROLE_NOT_ALLOWED")


@pytest.mark.parametrize(
    ("uris", "what"),
    [
        (node_uris("48"), "a node certificate of 79's CA naming province 48"),
        ([*node_uris("79", Role.SCHOOL), "urn:hocba:school:D1"], "a school certificate of 79's CA"),
        (node_uris("79", Role.PEER), "a peer-role certificate of 79's CA"),
    ],
)
def test_peer_certificate_naming_another_identity(
    start_pair: StartPair, pki: Path, pki79: Path, tmp_path: Path, uris: list[str], what: str
) -> None:
    pair = start_pair(start_b=False)
    out = tmp_path / "forged"
    out.mkdir()
    issue_from_ca(pki79, out, "forged", uris)
    creds = grpc.ssl_channel_credentials(
        (pki / "ca.pem").read_bytes(), (out / "forged.key").read_bytes(), (out / "forged.pem").read_bytes()
    )
    channel = grpc.secure_channel(pair.a.proc.address, creds, options=[("grpc.ssl_target_name_override", "localhost")])
    with pytest.raises(grpc.RpcError) as err:
        peer_stub(channel).OfferTransfer(peers_pb2.OfferTransferRequest(package=b"{}", seal=bytes(64)), timeout=10)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED, what
    assert "province 79" in err.value.details()
    channel.close()
    pair.a.verify_log()
    assert pair.a.unowned_signatures() == []


def test_cancellation_queued_behind_a_refused_offer(start_pair: StartPair) -> None:
    """The sender asks to cancel while its offer is still undelivered; the offer is then
    refused for good: the transfer ends refused and the cancellation is never sent."""
    pair = start_pair(start_b=False, env_b={"TRANSFER_FAULTS": "refuse_offers"})
    code, _ = prepared_record(pair.a)
    t = offer(pair, code)
    asked = pair.a.client("school-S1").cancel_transfer(t.id)
    assert asked.transfer.cancel_requested
    pair.b.proc.start()
    final = settled(pair, t.id, REJECTED)
    assert final.delivery_state == FAILED
    (peer,) = pair.a.admin.list_deliveries()
    assert (peer.pending, peer.failed, peer.delivered) == (0, 2, 0)
    assert pair.b.rows("transfers") == []
    pair.assert_consistent(code)


def test_expiry_decided_by_the_receiving_node(tmp_path: Path, pki: Path, pki79: Path, signing_bundle: Path) -> None:
    """Nobody decides: the receiving node's deadline passes, its sweeper expires the
    transfer and sends EXPIRED back; the sender unfreezes the record. (In-process
    nodes with fake clocks; the sender never expires what the receiver decides.)"""
    clock = FakeClock()
    ports = {"01": free_port(), "79": free_port()}
    nodes = {}
    with contextlib.ExitStack() as stack:
        for province, own, other, peer in (("01", pki, pki79, "79"), ("79", pki79, pki, "01")):
            (tmp_path / province).mkdir()
            path = write_config(
                tmp_path / province / "node.toml",
                pki=own,
                database_url=f"sqlite:///{tmp_path / province / 'node.db'}",
                province=province,
                listen=f"127.0.0.1:{ports[province]}",
                extra=f'\n[seal]\nkey_file = "{own / "seal.key"}"\n' + peer_block(other, peer, ports[peer]),
                signing_ca=signing_bundle,
            )
            nodes[province] = stack.enter_context(running_node(load_config(path), own, clock, path))
        a, b = nodes["01"], nodes["79"]
        a.client("province-admin").register_school("S1", "Trường Số 1")
        b.client("province-admin").register_school("D1", "Trường Quận 1")
        s1 = a.client("school-S1")
        code = new_record(s1)
        t = s1.initiate_transfer(code, "D1", "79").transfer
        d1 = b.client("school-D1")
        incoming = wait_for("the offer", lambda: next(iter(d1.iter_transfers(INCOMING)), None))
        assert incoming.id == t.id
        assert a.run(a.node.sweep_once) == 0  # the sender's sweeper leaves it to the receiver

        clock.advance(timedelta(days=14))
        assert b.run(b.node.sweep_once) == 1
        assert d1.get_transfer(t.id).state == transfers_pb2.TRANSFER_STATE_EXPIRED
        with pytest.raises(TransferError) as err:
            d1.accept_transfer(t.id)
        assert err.value.reason in ("TRANSFER_NOT_OPEN", "TRANSFER_EXPIRED")
        final = wait_for(
            "EXPIRED to reach 01",
            lambda: (x := s1.get_transfer(t.id)).state == transfers_pb2.TRANSFER_STATE_EXPIRED and x,
        )
        assert final.decide_time.seconds > 0
        assert s1.get_record(code).status == records_pb2.RECORD_STATUS_ACTIVE
    for province in nodes:
        assert unowned_signatures(f"sqlite:///{tmp_path / province / 'node.db'}", province) == []


def _peer_48(servicer: Any, pki48: Path, pki: Path) -> tuple[grpc.Server, int]:
    """A stand-in for node 48's PeerService on 127.0.0.1 (mutual TLS, clients from `pki`'s CA), started."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=64))
    peers_pb2_grpc.add_PeerServiceServicer_to_server(servicer, server)
    creds = grpc.ssl_server_credentials(
        [((pki48 / "node.key").read_bytes(), (pki48 / "node.pem").read_bytes())],
        root_certificates=(pki / "ca.pem").read_bytes(),
        require_client_auth=True,
    )
    port = server.add_secure_port("127.0.0.1:0", creds)
    server.start()
    return server, port


class _HangingPeer(peers_pb2_grpc.PeerServiceServicer):
    """A peer that takes every offer and never answers (until released): counts the
    attempts it holds at once."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.holding = 0
        self.most = 0
        self.seen = 0

    def OfferTransfer(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self.lock:
            self.holding += 1
            self.seen += 1
            self.most = max(self.most, self.holding)
        try:
            self.release.wait(30)
            context.abort(grpc.StatusCode.UNAVAILABLE, "hanging peer released")
        finally:
            with self.lock:
                self.holding -= 1


def test_a_hanging_peer_does_not_hold_up_deliveries_to_the_others(
    start_pair: StartPair, pki: Path, tmp_path: Path
) -> None:
    """Province 48's node accepts connections and never answers. More offers to it than
    the attempts the dispatcher gives one peer (once shared by all peers) are queued
    before an offer to 79: that one is delivered while 48 still holds its attempts, not
    after they time out, and 48 is never given more than its share of attempts."""
    from transfer.server.peers import PER_PEER

    pki48 = tmp_path / "pki48"
    make_dev_pki(pki48, "48", ["H1"])
    hanging = _HangingPeer()
    server, port48 = _peer_48(hanging, pki48, pki)
    try:
        pair = start_pair(a_more_peers=[(pki48, "48", port48)])
        s1 = pair.a.client("school-S1")
        to_48 = PER_PEER + 8
        for _ in range(to_48):
            s1.initiate_transfer(new_record(s1), "H1", "48")
        wait_for("48 to hold its share of attempts", lambda: hanging.holding >= PER_PEER)
        code = new_record(s1)
        t = offer(pair, code)
        arrived(pair, t.id)
        delivered = wait_for(
            "the offer to 79 to be acknowledged", lambda: (x := s1.get_transfer(t.id)).delivery_state == DELIVERED and x
        )
        assert delivered.state == REQUESTED
        # None of 48's attempts has ended (they would after 10 s): 79 did not wait for them.
        assert hanging.holding == hanging.seen == hanging.most == PER_PEER
        (d48,) = [d for d in pair.a.admin.list_deliveries() if d.peer_province == "48"]
        assert d48.pending == to_48
        # 48 answers at last (UNAVAILABLE): each attempt that ends starts one of those waiting.
        hanging.release.set()
        wait_for("every offer to 48 to have been tried", lambda: hanging.seen >= to_48)
        assert pair.a.unowned_signatures() == pair.b.unowned_signatures() == []
    finally:
        hanging.release.set()
        server.stop(0)


class _FlakyPeer(peers_pb2_grpc.PeerServiceServicer):
    """Province 48's node, answering UNAVAILABLE (as a node that is down or restarting) while `down` is set,
    then acknowledging every offer with a receipt sealed with its key. Counts the calls per transfer; once
    up, it holds the offers of `held` transfers until PER_PEER of them are with it at once (at most 5 s),
    and notes the most it held."""

    def __init__(self, seal_key: Any, per_peer: int) -> None:
        self.sealer = Sealer("48", seal_key)
        self.per_peer = per_peer
        self.down = True
        self.held: set[str] = set()
        self.calls: collections.Counter[str] = collections.Counter()
        self.lock = threading.Lock()
        self.holding = 0
        self.most = 0
        self.full = threading.Event()

    def OfferTransfer(self, request: Any, context: grpc.ServicerContext) -> Any:
        transfer_id = json.loads(request.package)["transfer"]["id"]
        with self.lock:
            self.calls[transfer_id] += 1
        if self.down:
            context.abort(grpc.StatusCode.UNAVAILABLE, "peer down")
        if transfer_id in self.held:
            with self.lock:
                self.holding += 1
                self.most = max(self.most, self.holding)
                if self.holding >= self.per_peer:
                    self.full.set()
            self.full.wait(5)
            with self.lock:
                self.holding -= 1
        receipt = self.sealer.receipt(
            transfer_id, MessageKind.OFFER, digest_of(request.package), -1, None, REQUESTED, datetime.now(UTC)
        )
        return peers_pb2.OfferTransferResponse(receipt=peers_pb2.PeerReceipt.FromString(receipt))


def _schedule(database_url: str) -> dict[str, tuple[int, int, int]]:
    """Node 01's outbox, read-only: transfer id -> (state, attempts, next attempt in µs)."""
    from sqlalchemy import create_engine, select

    from storage.database import sync_url
    from storage.schema import outbox

    engine = create_engine(sync_url(database_url))
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(outbox.c.transfer_id, outbox.c.state, outbox.c.attempts,
                                       outbox.c.next_attempt_us)).all()  # fmt: skip
    finally:
        engine.dispose()
    return {tid: (int(state), int(attempts), int(at)) for tid, state, attempts, at in rows}


def test_deliveries_resume_at_once_when_a_peer_answers_again(
    tmp_path: Path, pki: Path, database_url: str, clock: FakeClock
) -> None:
    """Province 48's node cannot serve while node 01 (in-process, fake clock) offers it more records than
    the attempts it gives one peer: ten attempts each, the clock moved on past each backoff, until every
    offer waits 60 s. Then 48 serves again and a new offer goes through at once: the waiting offers are
    brought forward to that moment and delivered with one more attempt each, without the clock moving on,
    at most PER_PEER of them at a time."""
    from storage.repositories import to_us
    from transfer.server.peers import PER_PEER

    pki48 = tmp_path / "pki48"
    make_dev_pki(pki48, "48", ["H1"])
    seal_key = parse_skey((pki48 / "seal.key").read_text().strip())._key  # type: ignore[attr-defined]
    flaky = _FlakyPeer(seal_key, PER_PEER)
    server, port48 = _peer_48(flaky, pki48, pki)
    path = write_config(
        tmp_path / "node.toml", pki=pki, database_url=database_url,
        extra=f'\n[seal]\nkey_file = "{pki / "seal.key"}"\n' + peer_block(pki48, "48", port48),
    )  # fmt: skip
    try:
        with running_node(load_config(path), pki, clock, path) as h:
            assert h.node is not None and h.node.dispatcher is not None and h.loop is not None
            dispatcher, loop = h.node.dispatcher, h.loop
            h.client("province-admin").register_school("S1", "Trường Số 1")
            s1 = h.client("school-S1")
            waiting = [s1.initiate_transfer(new_record(s1), "H1", "48").transfer.id for _ in range(PER_PEER + 8)]
            wait_for(  # each offer is tried when it is made
                "the first attempt of every offer to be recorded",
                lambda: all(a == 1 for _, a, _ in _schedule(database_url).values()),
            )
            for attempt in range(2, 11):
                clock.advance(timedelta(seconds=61))  # past every offer's backoff
                loop.call_soon_threadsafe(dispatcher.wake.set)
                wait_for(
                    f"attempt {attempt} of every offer to be recorded",
                    lambda attempt=attempt: all(a == attempt for _, a, _ in _schedule(database_url).values()),
                )
            now = to_us(clock.now())
            before = _schedule(database_url)
            assert all(at >= now + 59_000_000 for _, _, at in before.values())  # each waits its grown backoff
            assert [flaky.calls[t] for t in waiting] == [10] * len(waiting)

            flaky.down = False
            flaky.held = set(waiting)
            first = s1.initiate_transfer(new_record(s1), "H1", "48").transfer.id
            delivered = int(OutboxState.DELIVERED)
            after = wait_for(
                "every offer to be delivered",
                lambda: (x := _schedule(database_url)) and all(state == delivered for state, _, _ in x.values()) and x,
            )
            assert to_us(clock.now()) == now  # not one backoff was waited out
            assert after[first] == (delivered, 0, now)
            assert {after[t] for t in waiting} == {(delivered, 10, now)}  # brought forward to the first delivery
            assert [flaky.calls[t] for t in waiting] == [11] * len(waiting) and flaky.calls[first] == 1
            assert flaky.most == PER_PEER  # as many at a time as one peer is given, not more
    finally:
        flaky.full.set()
        server.stop(0)


# -- the rules between provinces as a model ----------------------------------------------


PROVINCE_SCHOOLS = {"01": ("S1", "S2"), "79": ("D1", "D2")}
PROVINCE_CALLERS = {  # identity -> the school it acts for (None: the province admin)
    "01": {"school-S1": "S1", "school-S2": "S2", "school-admin-S1": "S1", "province-admin": None},
    "79": {"school-D1": "D1", "school-D2": "D2", "province-admin": None},
}


@dataclasses.dataclass
class _Moved:
    """A transfer as the model sees it once both nodes have settled."""

    id: str
    code: str
    source: tuple[str, str]  # (province, school)
    target: tuple[str, str]
    state: int = REQUESTED


def _acts_for(province: str, caller: str, school: str) -> bool:
    own = PROVINCE_CALLERS[province][caller]
    return own is None or own == school


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_transfers_between_provinces_follow_the_model(start_pair: StartPair, engine: str) -> None:
    """Random sequences of registrations, transfers within and between 01 and 79, decisions,
    cancellation requests, repeats and node restarts, each step let settle (both outboxes
    drained): every record has exactly the one holder the model says, every transfer the
    model's state on both nodes, every call the model's outcome, and every signature still owed on a
    page a node issued (each record is registered with one) has an active owner there; both logs
    verify at the end."""
    pair = start_pair(engine)
    nodes = {"01": pair.a, "79": pair.b}
    pair.a.admin.register_school("S2", "Trường Tiểu học Số 2 (Hà Nội)")
    pair.b.admin.register_school("D2", "Trường Tiểu học Quận 2")
    clients = {(p, c): nodes[p].client(c) for p, callers in PROVINCE_CALLERS.items() for c in callers}
    for province, schools in PROVINCE_SCHOOLS.items():
        for school in schools:
            staff = nodes[province].client(f"school-admin-{school}")
            teacher = hire(staff, SigningCA.load(nodes[province].pki), f"GV-{school}")
            for requirement in (HOMEROOM, PRINCIPAL):
                staff.assign_duty(duty(requirement), teacher.id)
    every_code: list[str] = []

    def settle() -> None:
        for node in nodes.values():
            drained(node)

    class Between(RuleBasedStateMachine):
        records = Bundle("records")
        transfers = Bundle("transfers")

        def __init__(self) -> None:
            super().__init__()
            self.home: dict[str, tuple[str, str]] = {}  # lookup code -> (province, school) holding it
            self.left: dict[str, dict[str, str]] = {}  # lookup code -> {province: school} of copies left behind
            self.open: dict[str, str | None] = {}
            self.moves: dict[str, _Moved] = {}
            self.used: dict[tuple[str, str, str], tuple[Callable[[], TransferChange], TransferChange]] = {}
            self.restarts = 0

        @rule(target=records, province=st.sampled_from(sorted(PROVINCE_SCHOOLS)), data=st.data())
        def register(self, province: str, data: st.DataObject) -> str:
            school = data.draw(st.sampled_from(PROVINCE_SCHOOLS[province]))
            client = clients[(province, f"school-{school}")]
            code = new_record(client)
            add_page(client, code, requirements=[HOMEROOM, PRINCIPAL])  # both signatures owed at its school
            self.home[code], self.left[code], self.open[code] = (province, school), {}, None
            every_code.append(code)
            return code

        @rule(target=transfers, code=records, data=st.data())
        def initiate(self, code: str, data: st.DataObject) -> str:
            province, school = self.home[code]
            at = data.draw(st.sampled_from([province, province, "01", "79"]))  # mostly where the record lives
            rightful = sorted(c for c in PROVINCE_CALLERS[at] if _acts_for(at, c, school))
            caller = data.draw(st.sampled_from(rightful) | st.sampled_from(sorted(PROVINCE_CALLERS[at])))
            to = data.draw(st.sampled_from([(p, s) for p, schools in PROVINCE_SCHOOLS.items() for s in schools]))
            rid = str(uuid.uuid4())
            client = clients[(at, caller)]

            def call() -> TransferChange:
                return client.initiate_transfer(code, to[1], "" if to[0] == at else to[0], request_id=rid)

            expected = self._initiate_refusal(code, at, caller, to)
            if expected is not None:
                self._refused(call, expected)
                return multiple()  # type: ignore[return-value]
            answer = call()
            t = answer.transfer
            assert (t.from_province, t.from_school, t.to_province, t.to_school) == (*self.home[code], *to)
            self.moves[t.id] = _Moved(t.id, code, self.home[code], to)
            self.open[code] = t.id
            self.used[(at, caller, rid)] = (call, answer)
            settle()
            self._check(code)
            return t.id

        @rule(tid=transfers, verb=st.sampled_from(["accept", "reject", "cancel"]), data=st.data())
        def decide(self, tid: str, verb: str, data: st.DataObject) -> None:
            m = self.moves[tid]
            at, school = m.source if verb == "cancel" else m.target
            rightful = sorted(c for c in PROVINCE_CALLERS[at] if _acts_for(at, c, school))
            caller = data.draw(st.sampled_from(rightful) | st.sampled_from(sorted(PROVINCE_CALLERS[at])))
            rid = str(uuid.uuid4())
            client = clients[(at, caller)]
            methods = {
                "accept": lambda: client.accept_transfer(tid, request_id=rid),
                "reject": lambda: client.reject_transfer(tid, "đủ sĩ số", request_id=rid),
                "cancel": lambda: client.cancel_transfer(tid, "gia đình đổi ý", request_id=rid),
            }
            call = methods[verb]
            if not _acts_for(at, caller, school):
                denied = "NOT_SENDING_SCHOOL" if verb == "cancel" else "NOT_RECEIVING_SCHOOL"
                self._refused(call, ("PERMISSION_DENIED", denied))
                return
            if m.state != REQUESTED:
                self._refused(call, ("FAILED_PRECONDITION", "TRANSFER_NOT_OPEN"))
                return
            answer = call()
            between = m.source[0] != m.target[0]
            if verb == "cancel" and between:  # a request to the receiving node, which decides
                assert answer.transfer.state == REQUESTED and answer.transfer.cancel_requested and not answer.logged
            else:
                assert answer.logged
            m.state = {"accept": ACCEPTED, "reject": REJECTED, "cancel": CANCELLED}[verb]
            self.open[m.code] = None
            if m.state == ACCEPTED:
                if between:
                    self.left[m.code][m.source[0]] = m.source[1]
                    self.left[m.code].pop(m.target[0], None)
                self.home[m.code] = m.target
            self.used[(at, caller, rid)] = (call, answer)
            settle()
            self._check(m.code)

        @precondition(lambda self: bool(self.used))
        @rule(data=st.data())
        def repeat(self, data: st.DataObject) -> None:
            """A call sent again with its request id gets its first answer, whatever happened since."""
            call, first = self.used[data.draw(st.sampled_from(sorted(self.used)))]
            again = call()
            assert again.transfer.SerializeToString(deterministic=True) == first.transfer.SerializeToString(
                deterministic=True
            )
            assert again.receipt == first.receipt

        @rule(code=records, verb=st.sampled_from(["accept", "reject"]), to=st.sampled_from([0, 1]))
        def race(self, code: str, verb: str, to: int) -> None:
            """The record is sent to the other province; then its receiving school decides while the sending
            school cancels, at the same moment: the receiving node takes exactly one of them, and both nodes
            end with it."""
            if self.open[code] is not None:
                return
            province, school = self.home[code]
            other = "79" if province == "01" else "01"
            target = (other, PROVINCE_SCHOOLS[other][to])
            sent = clients[(province, f"school-{school}")].initiate_transfer(code, target[1], other).transfer
            tid = sent.id
            m = self.moves[tid] = _Moved(tid, code, (province, school), target)
            self.open[code] = tid
            settle()
            decide = clients[(m.target[0], f"school-{m.target[1]}")]
            cancel = clients[(m.source[0], f"school-{m.source[1]}")]
            calls = {
                "decide": (lambda: decide.accept_transfer(tid)) if verb == "accept"
                else (lambda: decide.reject_transfer(tid, "đủ sĩ số")),
                "cancel": lambda: cancel.cancel_transfer(tid, "gia đình đổi ý"),
            }  # fmt: skip
            barrier, results = threading.Barrier(2, timeout=10), {}

            def run(name: str) -> None:
                barrier.wait()
                try:
                    results[name] = calls[name]()
                except TransferError as err:
                    results[name] = err

            threads = [threading.Thread(target=run, args=(name,)) for name in calls]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            assert not any(t.is_alive() for t in threads)
            settle()
            final = nodes[m.target[0]].admin.get_transfer(tid).state  # the receiving node decides
            assert final in (CANCELLED, ACCEPTED if verb == "accept" else REJECTED), final
            if final == CANCELLED:  # the decision lost: refused as no longer open
                lost = results["decide"]
                assert isinstance(lost, TransferError) and lost.reason == "TRANSFER_NOT_OPEN", lost
            elif isinstance(results["cancel"], TransferError):  # the sender had heard of the decision
                assert results["cancel"].reason == "TRANSFER_NOT_OPEN", results["cancel"]
            m.state = final
            self.open[m.code] = None
            if final == ACCEPTED:
                self.left[m.code][m.source[0]] = m.source[1]
                self.left[m.code].pop(m.target[0], None)
                self.home[m.code] = m.target
            self._check(m.code)

        @precondition(lambda self: self.restarts < 1)
        @rule(province=st.sampled_from(sorted(PROVINCE_SCHOOLS)), now=st.integers(0, 3))
        def crash_and_restart(self, province: str, now: int) -> None:
            """A node killed (no shutdown code) and started again loses nothing it acknowledged."""
            if now:  # a restart costs seconds: one chance in four when drawn
                return
            self.restarts += 1
            nodes[province].proc.kill()
            nodes[province].proc.start()
            settle()
            for code in self.home:
                self._check(code)

        def _initiate_refusal(self, code: str, at: str, caller: str, to: tuple[str, str]) -> tuple[str, str] | None:
            province, school = self.home[code]
            if at == province:
                if not _acts_for(at, caller, school):
                    return ("PERMISSION_DENIED", "NOT_CUSTODIAN")
                if self.open[code] is not None:
                    return ("FAILED_PRECONDITION", "TRANSFER_ALREADY_OPEN")
                if to == (province, school):
                    return ("INVALID_ARGUMENT", "SAME_SCHOOL")
                return None
            if at in self.left[code]:  # a read-only copy left behind when the record moved away
                if _acts_for(at, caller, self.left[code][at]):
                    return ("FAILED_PRECONDITION", "RECORD_TRANSFERRED_OUT")
                return ("PERMISSION_DENIED", "NOT_CUSTODIAN")
            if PROVINCE_CALLERS[at][caller] is None:
                return ("NOT_FOUND", "RECORD_NOT_FOUND")
            return ("PERMISSION_DENIED", "NOT_CUSTODIAN")

        def _refused(self, call: Callable[[], Any], expected: tuple[str, str]) -> None:
            with pytest.raises(TransferError) as err:
                call()
            assert (err.value.code.name, err.value.reason) == expected, err.value

        def _check(self, code: str) -> None:
            assert pair.holders(code) == [self.home[code]]
            province, _ = self.home[code]
            record = nodes[province].admin.get_record(code)
            assert record.open_transfer_id == (self.open[code] or "")
            for m in self.moves.values():
                if m.code != code:
                    continue
                for p in {m.source[0], m.target[0]}:
                    seen = nodes[p].admin.get_transfer(m.id)
                    assert seen.state == m.state and not seen.cancel_requested, (p, m, seen)
            for node in nodes.values():
                assert node.unowned_signatures() == [], node.province

    run_state_machine_as_test(
        Between,
        settings=model_settings(6, 15),
    )
    pair.assert_consistent(*every_code)
