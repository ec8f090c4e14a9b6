"""`transfer-audit`: the federation's promises checked from the nodes' logs alone.

Unit tests of the rules (transfer/domain/custody.py) on hand-built entry lists: a clean federation, and each
rule broken one way. Then the command itself, as a subprocess, against real nodes: a clean federation of two
provinces passes; an entry edited in one node's database fails naming the node and entry; logs whose
acknowledgement is missing or names another package fail naming the entries."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import create_engine, text

from storage.database import sync_url
from tests.federation import Node, close_all, free_port, make_node, wait_for
from tests.staffing import new_record
from tests.support import (
    FakeClock,
    RunningNode,
    create_pg_database,
    drop_pg_database,
    load_config,
    postgres_base,
    run_module,
    running_node,
    write_config,
)
from transfer.auditor import UsageError, pins_from
from transfer.client.logverify import EntryMismatch, LogVerifier
from transfer.domain.custody import DEFAULT_HORIZON, Report, Rule, check_federation, read_entries
from transfer.domain.leaves import (
    NO_PEER_ENTRY,
    LeafKind,
    LogLeaf,
    PageLeaf,
    PeerLeaf,
    TransferLeaf,
    record_digest,
    text_digest,
)
from transfer.domain.model import MessageKind
from transfer.ledger.note import Checkpoint, parse_skey, sign_note
from transfer.v1 import transfers_pb2

T0 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
SALT = bytes(range(16))
PACKAGE = hashlib.sha256(b"the package").digest()
ACCEPTED, REJECTED = LeafKind.TRANSFER_ACCEPTED, LeafKind.TRANSFER_REJECTED
CANCELLED, EXPIRED = LeafKind.TRANSFER_CANCELLED, LeafKind.TRANSFER_EXPIRED
ACK = LeafKind.MESSAGE_ACKNOWLEDGED
REQUESTED = transfers_pb2.TRANSFER_STATE_REQUESTED
INCOMING = transfers_pb2.TRANSFER_DIRECTION_INCOMING


class History:
    """Two provinces' logs, as correct nodes write them, which a test may then break."""

    def __init__(self) -> None:
        self.logs: dict[str, list[LogLeaf | bytes]] = {"01": [], "79": []}

    def add(self, province: str, leaf: LogLeaf | bytes) -> int:
        self.logs.setdefault(province, []).append(leaf)
        return len(self.logs[province]) - 1

    def check(self, horizon: timedelta = DEFAULT_HORIZON, only: tuple[str, ...] = ()) -> Report:
        return check_federation(
            [
                read_entries(p, [x if isinstance(x, bytes) else x.encode() for x in leaves])
                for p, leaves in self.logs.items()
                if not only or p in only
            ],
            horizon,
        )

    def offered(
        self, tid: str, at: datetime = T0, *, sender: str = "01", receiver: str = "79", package: bytes = PACKAGE
    ) -> dict[str, int]:
        """Initiated at the sender and delivered: returns the indices of the entries by name."""
        requested = TransferLeaf(LeafKind.TRANSFER_REQUESTED, at, tid, record_digest(tid, SALT), sender, "S1",
                                 receiver, "D1", "school:S1", deadline=at + timedelta(days=12))  # fmt: skip
        found = {"requested": self.add(sender, requested)}
        found["offer"] = self.add(sender, PeerLeaf(LeafKind.TRANSFER_OFFERED, at, tid, receiver, package, "school:S1"))
        arrived = replace(requested, time=at + timedelta(seconds=1), actor=f"peer:{sender}")
        found["arrived"] = self.add(receiver, arrived)
        found["offer_ack"] = self.add(sender, PeerLeaf(ACK, at + timedelta(seconds=1), tid, receiver, package, "",
                                                       MessageKind.OFFER, found["arrived"]))  # fmt: skip
        return found

    def decided(
        self, tid: str, kind: LeafKind, at: datetime = T0 + timedelta(hours=1), *, sender: str = "01",
        receiver: str = "79", actor: str = "school:D1",
    ) -> dict[str, int]:  # fmt: skip
        """Decided at the receiver, resolved at the sender, acknowledged."""
        reason = text_digest("no room", SALT) if kind in (REJECTED, CANCELLED) else None
        decision = TransferLeaf(kind, at, tid, record_digest(tid, SALT), sender, "S1", receiver, "D1", actor,
                                reason=reason)  # fmt: skip
        found = {"decision": self.add(receiver, decision)}
        found["resolution"] = self.add(sender, replace(decision, actor=f"peer:{receiver}"))
        found["resolve_ack"] = self.add(receiver, PeerLeaf(ACK, at + timedelta(seconds=1), tid, sender,
                                                           hashlib.sha256(b"decision").digest(), "",
                                                           MessageKind.RESOLVE, found["resolution"]))  # fmt: skip
        return found


def tid(n: int) -> str:
    return f"{n:032x}"


def clean() -> History:
    """Every ending of an inter-province transfer, a transfer inside 01, and a page entry."""
    h = History()
    h.offered(tid(1))
    h.decided(tid(1), ACCEPTED)
    h.offered(tid(2))
    h.decided(tid(2), REJECTED)
    h.offered(tid(3))
    h.decided(tid(3), EXPIRED, actor="system")
    # A cancellation request: granted by 79 (its cancellation is the entry the request's receipt names).
    h.offered(tid(4))
    cancel = h.decided(tid(4), CANCELLED, actor="peer:01")
    h.add("01", PeerLeaf(ACK, T0 + timedelta(hours=1), tid(4), "79", hashlib.sha256(b"cancel").digest(), "",
                         MessageKind.CANCEL_REQUEST, cancel["decision"]))  # fmt: skip
    # A cancellation request arriving after the decision: acknowledged, naming no entry.
    h.offered(tid(5))
    h.decided(tid(5), ACCEPTED)
    h.add("01", PeerLeaf(ACK, T0 + timedelta(hours=2), tid(5), "79", hashlib.sha256(b"late").digest(), "",
                         MessageKind.CANCEL_REQUEST, NO_PEER_ENTRY))  # fmt: skip
    # An offer 79 refused for good: rejected at 01 by node:79, with the refusal entry; nothing at 79.
    requested = TransferLeaf(LeafKind.TRANSFER_REQUESTED, T0, tid(6), record_digest("x", SALT), "01", "S1", "79",
                             "D9", "school:S1", deadline=T0 + timedelta(days=12))  # fmt: skip
    h.add("01", requested)
    h.add("01", PeerLeaf(LeafKind.TRANSFER_OFFERED, T0, tid(6), "79", PACKAGE, "school:S1"))
    h.add("01", replace(requested, kind=REJECTED, deadline=None, actor="node:79", reason=text_digest("x", SALT)))
    h.add("01", PeerLeaf(LeafKind.OFFER_REFUSED, T0, tid(6), "79", PACKAGE, "UNKNOWN_SCHOOL"))
    # Inside 01: requested and accepted, nothing crosses.
    inside = replace(requested, transfer_id=tid(7), to_province="01", to_school="S2")
    h.add("01", inside)
    h.add("01", replace(inside, kind=ACCEPTED, deadline=None, actor="school:S2"))
    h.add("79", PageLeaf(LeafKind.PAGE_ADDED, T0, tid(8), bytes(32), "D1", "2026-2027", 1, bytes(32), "school:D1"))
    # The newest entry, a day on: nothing above may still be waiting.
    h.add("79", PageLeaf(LeafKind.PAGE_ADDED, T0 + timedelta(days=1), tid(9), bytes(32), "D1", "2026-2027", 1,
                         bytes(32), "school:D1"))  # fmt: skip
    return h


def failures(report: Report) -> list[tuple[Rule, str, int, str, str]]:
    return [(f.rule, f.province, f.index, f.kind, f.transfer_id) for f in report.findings]


# -- the rules, on hand-built logs ------------------------------------------------------------------------------


def test_a_clean_federation_passes_every_rule() -> None:
    """Every ending of an inter-province transfer, logged as correct nodes log it, passes every rule."""
    report = clean().check()
    assert report.ok, [str(f) for f in report.findings]
    tallies = report.tallies
    assert tallies[Rule.DECODE].checked == tallies[Rule.DECODE].passed > 0
    # Six offers (five acknowledged, one refused) and five arrivals on 79.
    assert (tallies[Rule.OFFERS].checked, tallies[Rule.OFFERS].failed) == (11, 0)
    assert tallies[Rule.DECISIONS].failed == 0 and tallies[Rule.DECISIONS].checked >= 12
    assert tallies[Rule.ONCE].checked == 7 + 5  # transfers on 01, transfers on 79
    assert tallies[Rule.DANGLING].checked == 0
    assert report.unchecked_provinces == set()


def test_an_entry_that_does_not_decode_is_named() -> None:
    """An entry of an unknown kind, or truncated, fails `entries decode` with its node and index."""
    h = clean()
    bad = h.add("79", b"\x01\x63" + bytes(8))
    short = h.add("01", h.logs["01"][0].encode()[:-3])  # type: ignore[union-attr]
    report = h.check()
    assert failures(report) == [
        (Rule.DECODE, "01", short, "transfer.requested", ""),
        (Rule.DECODE, "79", bad, "kind 99", ""),
    ]
    assert report.tallies[Rule.DECODE].failed == 2


def test_an_acknowledgement_of_another_package_is_named() -> None:
    """The sender's acknowledgement naming another package digest than its offer fails `offers acknowledged`,
    naming the acknowledgement."""
    h = clean()
    at = h.offered(tid(20))
    ack = h.logs["01"][at["offer_ack"]]
    assert isinstance(ack, PeerLeaf)
    h.logs["01"][at["offer_ack"]] = replace(ack, digest=hashlib.sha256(b"another package").digest())
    report = h.check()
    assert failures(report) == [(Rule.OFFERS, "01", at["offer_ack"], "message.acknowledged", tid(20))]
    assert "acknowledges package" in str(report.findings[0])
    assert f"the offer (entry {at['offer']})" in str(report.findings[0])


def test_an_acknowledgement_naming_the_wrong_receiver_entry_is_named() -> None:
    """The acknowledgement must name the receiver's transfer.requested of this very transfer."""
    h = clean()
    at = h.offered(tid(21))
    ack = h.logs["01"][at["offer_ack"]]
    assert isinstance(ack, PeerLeaf)
    h.logs["01"][at["offer_ack"]] = replace(ack, peer_log_index=0)  # 79's entry 0 is another transfer's
    report = h.check()
    assert failures(report) == [(Rule.OFFERS, "01", at["offer_ack"], "message.acknowledged", tid(21))]
    assert f"transfer.requested of transfer {tid(1)}" in str(report.findings[0])


def test_an_unacknowledged_offer_dangles_only_past_the_horizon() -> None:
    """An offer with no acknowledgement is in flight within the horizon and fails `nothing dangles` past it."""
    h = History()
    at = h.offered(tid(30))
    del h.logs["01"][at["offer_ack"]]
    h.add("01", PageLeaf(LeafKind.PAGE_ADDED, T0 + timedelta(minutes=5), tid(31), bytes(32), "S1", "2026-2027", 1,
                         bytes(32), "school:S1"))  # fmt: skip
    young = h.check()
    assert young.ok and young.tallies[Rule.DANGLING].in_flight == 2  # the offer, and the transfer 79 must decide
    old = h.check(horizon=timedelta(minutes=4))
    assert failures(old) == [(Rule.DANGLING, "01", at["offer"], "transfer.offered", tid(30))]
    assert "neither acknowledged nor refused, 5 minutes before the newest entry" in str(old.findings[0])


def test_a_decision_never_resolved_dangles() -> None:
    """A decision on the receiving node that its sender never acknowledged fails past the horizon."""
    h = clean()
    h.offered(tid(40))
    decision = h.add("79", TransferLeaf(ACCEPTED, T0 + timedelta(hours=2), tid(40), record_digest(tid(40), SALT),
                                        "01", "S1", "79", "D1", "school:D1"))  # fmt: skip
    report = h.check()
    assert failures(report) == [(Rule.DANGLING, "79", decision, "transfer.accepted", tid(40))]
    assert "not acknowledged by 01" in str(report.findings[0])


def test_a_resolution_of_another_kind_is_named() -> None:
    """The sender's resolution must be the receiver's decision: a rejection applied as an acceptance fails."""
    h = clean()
    h.offered(tid(41))
    at = h.decided(tid(41), REJECTED)
    resolution = h.logs["01"][at["resolution"]]
    assert isinstance(resolution, TransferLeaf)
    h.logs["01"][at["resolution"]] = replace(resolution, kind=ACCEPTED, reason=None)
    report = h.check()
    assert sorted(failures(report)) == [
        (Rule.DECISIONS, "01", at["resolution"], "transfer.accepted", tid(41)),
        (Rule.DECISIONS, "79", at["decision"], "transfer.rejected", tid(41)),
    ]
    named = "\n".join(map(str, report.findings))
    assert f"names entry {at['resolution']} of 01, which is a transfer.accepted" in named
    assert "79 decided it as transfer.rejected" in named


def test_a_transfer_decided_twice_is_named() -> None:
    """Two decisions of one transfer on one node fail `decided at most once`, naming the second."""
    h = clean()
    h.offered(tid(42))
    at = h.decided(tid(42), ACCEPTED)
    decision = h.logs["79"][at["decision"]]
    assert isinstance(decision, TransferLeaf)
    again = h.add("79", replace(decision, kind=EXPIRED, actor="system"))
    report = h.check()
    assert (Rule.ONCE, "79", again, "transfer.expired", tid(42)) in failures(report)
    assert f"decided 2 times on this node: entries {at['decision']} (transfer.accepted), {again}" in str(
        next(f for f in report.findings if f.rule is Rule.ONCE)
    )


def test_the_sending_node_deciding_an_outgoing_transfer_itself_is_named() -> None:
    """Only the receiving node decides an inter-province transfer: a decision by the sender's school fails."""
    h = clean()
    at = h.offered(tid(43))
    requested = h.logs["01"][at["requested"]]
    assert isinstance(requested, TransferLeaf)
    own = h.add("01", replace(requested, kind=CANCELLED, deadline=None, reason=bytes(32)))
    report = h.check()
    assert (Rule.DECISIONS, "01", own, "transfer.cancelled", tid(43)) in failures(report)


def test_an_offer_refused_by_the_sender_but_held_by_the_receiver_is_named() -> None:
    """An offer the sender logged as refused for good must not be a transfer at the receiver."""
    h = clean()
    at = h.offered(tid(44))
    del h.logs["01"][at["offer_ack"]]
    refusal = h.add("01", PeerLeaf(LeafKind.OFFER_REFUSED, T0, tid(44), "79", PACKAGE, "BAD_SEAL"))
    report = h.check()
    assert failures(report) == [(Rule.OFFERS, "01", refusal, "offer.refused", tid(44))]


def test_a_cancellation_receipt_naming_another_entry_is_named() -> None:
    """An acknowledged cancellation request names the receiver's cancellation, nothing else."""
    h = clean()
    h.offered(tid(45))
    at = h.decided(tid(45), ACCEPTED)
    ack = h.add("01", PeerLeaf(ACK, T0 + timedelta(hours=2), tid(45), "79", bytes(32), "",
                               MessageKind.CANCEL_REQUEST, at["decision"]))  # fmt: skip
    report = h.check()
    assert failures(report) == [(Rule.DECISIONS, "01", ack, "message.acknowledged", tid(45))]


def test_an_undecided_transfer_past_its_deadline_dangles() -> None:
    """A transfer its receiving node never decided, past its deadline by more than the horizon, dangles."""
    h = clean()
    at = h.offered(tid(46), at=T0 - timedelta(days=13))  # deadline 12 days on: a day before the newest entry
    report = h.check()
    assert failures(report) == [(Rule.DANGLING, "79", at["arrived"], "transfer.requested", tid(46))]
    assert "undecided past its deadline" in str(report.findings[0])


def test_entries_naming_a_province_not_given_are_not_checked() -> None:
    """With only the sender's log, what names the receiver is counted as not checked, never as failed."""
    h = clean()
    h.offered(tid(47), receiver="48")  # never acknowledged: 48's log is not given either way
    report = h.check(only=("01",))
    assert report.ok, [str(f) for f in report.findings]
    assert report.unchecked_provinces == {"79", "48"}
    assert report.tallies[Rule.OFFERS].not_checked == 7
    assert report.tallies[Rule.DECISIONS].not_checked > 0


def test_one_log_per_province() -> None:
    """Two logs for one province are refused: the rules match entries by province."""
    with pytest.raises(ValueError, match="one log per province"):
        check_federation([read_entries("01", []), read_entries("01", [])])


# -- the command, against real nodes --------------------------------------------------------------------------

ORIGIN = "hocba.invalid/province/{}/log"


@pytest.fixture(params=["sqlite", "postgresql"])
def engine_urls(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Two fresh databases, one per province, on each engine."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
        return
    base = postgres_base(request)
    urls = (create_pg_database(base), create_pg_database(base))
    try:
        yield urls
    finally:
        for url in urls:
            drop_pg_database(base, url)


def audit_config(path: Path, nodes: list[tuple[str, str, Path]], **extra: str) -> Path:
    """A `transfer-audit` configuration: (province, address, pki) per node, pinned to the PKI's log key."""
    text = ""
    for province, address, pki in nodes:
        text += f"""
[[nodes]]
province = "{province}"
address = "{address}"
server_name = "localhost"
origin = "{ORIGIN.format(province)}"
vkey_file = "{pki / "log.vkey"}"
ca_file = "{pki / "ca.pem"}"
cert_file = "{pki / "auditor.pem"}"
key_file = "{pki / "auditor.key"}"
"""
        if province in extra:
            text += f'checkpoint_file = "{extra[province]}"\n'
    path.write_text(text, encoding="utf-8")
    return path


def run_audit(*args: str) -> subprocess.CompletedProcess[str]:
    return run_module("transfer.auditor", *args, timeout=120)


def covered(node: Node) -> None:
    """Wait until the node's latest checkpoint covers every entry it holds."""
    admin = node.admin
    wait_for(
        f"{node.province}'s checkpoint to cover its log",
        lambda: admin.get_checkpoint().checkpoint.split("\n")[1] == str(sum(1 for _ in admin.iter_entries())),
    )


def _tamper(database_url: str, index: int) -> None:
    """Go behind the node's back: change one byte of a log entry in its database."""
    engine = create_engine(sync_url(database_url))
    try:
        with engine.begin() as conn:
            if engine.dialect.name == "sqlite":
                conn.execute(text("DROP TRIGGER IF EXISTS log_leaves_no_update"))
            else:
                conn.execute(text("ALTER TABLE log_leaves DISABLE TRIGGER log_leaves_append_only"))
            data = conn.execute(text("SELECT data FROM log_leaves WHERE idx = :i"), {"i": index}).scalar_one()
            forged = bytes(data[:-1]) + bytes([data[-1] ^ 1])
            conn.execute(text("UPDATE log_leaves SET data = :d WHERE idx = :i"), {"d": forged, "i": index})
    finally:
        engine.dispose()


@pytest.mark.slow
def test_a_clean_federation_passes_and_an_edited_entry_is_named(
    tmp_path: Path, pki: Path, pki79: Path, signing_bundle: Path, engine_urls: tuple[str, str]
) -> None:
    """Two real nodes after accepted, rejected and cancelled transfers between them: the audit passes (exit 0),
    also against a checkpoint pinned earlier; after one entry is edited in 79's database it fails (exit 1)
    naming node 79 and the entry."""
    port_a, port_b = free_port(), free_port()
    a = make_node(tmp_path / "a", pki, "01", engine_urls[0], port_a, (pki79, "79", port_b), signing_bundle)
    b = make_node(tmp_path / "b", pki79, "79", engine_urls[1], port_b, (pki, "01", port_a), signing_bundle)
    try:
        a.proc.start()
        b.proc.start()
        a.admin.register_school("S1", "Trường Số 1")
        b.admin.register_school("D1", "Trường Quận 1")
        s1, d1 = a.client("school-S1"), b.client("school-D1")
        sent = [s1.initiate_transfer(new_record(s1), "D1", "79").transfer.id for _ in range(3)]
        for t in sent:
            wait_for("the offer to arrive", lambda t=t: any(x.id == t for x in d1.iter_transfers(INCOMING)))
        d1.accept_transfer(sent[0])
        wait_for("the acceptance to reach 01", lambda: s1.get_transfer(sent[0]).state != REQUESTED)
        covered(a)
        pinned = tmp_path / "01.checkpoint"  # an auditor's earlier view of 01's log
        pinned.write_text(a.admin.get_checkpoint().checkpoint, encoding="utf-8")
        pinned_size = int(pinned.read_text().split("\n")[1])
        d1.reject_transfer(sent[1], "không đủ chỗ")
        s1.cancel_transfer(sent[2], "gia đình ở lại")
        for t in sent:
            wait_for("the decision to reach 01", lambda t=t: s1.get_transfer(t).state != REQUESTED)
        for node in (a, b):
            wait_for("deliveries", lambda node=node: all(d.pending == 0 for d in node.admin.list_deliveries()))
        for node in (a, b):
            covered(node)
        config = audit_config(
            tmp_path / "audit.toml", [("01", a.proc.address, pki), ("79", b.proc.address, pki79)], **{"01": str(pinned)}
        )

        pin = pinned.read_text(encoding="utf-8")
        done = run_audit("--config", str(config))
        assert done.returncode == 0, done.stdout + done.stderr
        assert pinned.read_text(encoding="utf-8") == pin  # the auditor's pin is read, never replaced
        out = done.stdout
        assert "RESULT: PASSED" in out and "BROKEN" not in out
        size_a = sum(1 for _ in a.admin.iter_entries())
        assert pinned_size < size_a
        assert f"node 01  {ORIGIN.format('01')}  size {size_a}  checkpoint verified, consistent with the pinned " \
               f"size {pinned_size}" in out  # fmt: skip
        assert f"node 79  {ORIGIN.format('79')}  size " in out
        tallies = _tallies(out)
        assert tallies["offers acknowledged"] == (6, 6, 0, 0, 0)  # 3 offers at 01, 3 arrivals at 79
        assert tallies["decisions resolved"][2] == 0 and tallies["decisions resolved"][0] >= 6
        assert tallies["decided at most once"] == (6, 6, 0, 0, 0)
        assert "reading 01:" in done.stderr and "reading 79:" in done.stderr  # progress, on stderr

        _tamper(engine_urls[1], 1)  # 79's second entry
        broken = run_audit("--config", str(config), "--quiet")
        assert broken.returncode == 1, broken.stdout + broken.stderr
        assert f"node 79  {ORIGIN.format('79')}  LOG DOES NOT VERIFY: entry 1 as served does not match the signed " \
               "tree" in broken.stdout  # fmt: skip
        assert "RESULT: BROKEN" in broken.stdout and broken.stderr == ""
        assert "not checked: entries naming 79" in broken.stdout
    finally:
        close_all([a, b])


def _tallies(out: str) -> dict[str, tuple[int, ...]]:
    rows = {}
    for rule in Rule:
        line = next(x for x in out.splitlines() if x.startswith(rule.value))
        rows[rule.value] = tuple(int(n) for n in line[len(rule.value) :].split())
    return rows


def _write_log(handle: RunningNode, leaves: list[LogLeaf]) -> None:
    """Append entries through the storage layer and sign a checkpoint with the node's own log key: logs a correct
    node never writes."""
    assert handle.node is not None
    node = handle.node
    for leaf in leaves:
        handle.run(lambda leaf=leaf: node.store.write(lambda uow: uow.log.append(leaf.encode())))
    handle.run(node.publish_checkpoint)


def test_a_missing_or_mismatched_acknowledgement_is_named(
    tmp_path: Path, pki: Path, pki79: Path, engine_urls: tuple[str, str]
) -> None:
    """Logs (signed by the nodes' real keys) where 01's acknowledgement names another package than its offer,
    and where an old offer was never acknowledged: the audit fails (exit 1) naming each entry; a horizon longer
    than the offer's age leaves it in flight."""
    clock = FakeClock()
    configs = [
        write_config(tmp_path / f"{p}.toml", pki=k, database_url=url, province=p)
        for p, k, url in (("01", pki, engine_urls[0]), ("79", pki79, engine_urls[1]))
    ]
    with (
        running_node(load_config(configs[0]), pki, clock, configs[0]) as a,
        running_node(load_config(configs[1]), pki79, clock, configs[1]) as b,
    ):
        h = History()
        wrong = h.offered(tid(1))
        ack = h.logs["01"][wrong["offer_ack"]]
        assert isinstance(ack, PeerLeaf)
        h.logs["01"][wrong["offer_ack"]] = replace(ack, digest=hashlib.sha256(b"another package").digest())
        lost = h.offered(tid(2), at=T0 - timedelta(days=1))
        del h.logs["01"][lost["offer_ack"]]
        _write_log(a, [x for x in h.logs["01"] if not isinstance(x, bytes)])
        _write_log(b, [x for x in h.logs["79"] if not isinstance(x, bytes)])
        config = audit_config(tmp_path / "audit.toml", [("01", a.address, pki), ("79", b.address, pki79)])

        done = run_audit("--config", str(config), "--quiet")
        # With a horizon of two days the old offer is still in flight: only the other package is broken.
        config.write_text("horizon_seconds = 172800\n" + config.read_text(encoding="utf-8"), encoding="utf-8")
        patient = run_audit("--config", str(config), "--quiet")
        hasty = run_audit("--config", str(config), "--quiet", "--horizon", "0")
    assert patient.returncode == 1 and "horizon 172800 s" in patient.stdout
    assert [x for x in patient.stdout.splitlines() if x.startswith("BROKEN")] == [
        x for x in done.stdout.splitlines() if x.startswith("BROKEN [offers acknowledged]")
    ]
    assert "horizon 0 s" in hasty.stdout  # the command line's horizon wins over the file's
    assert done.returncode == 1, done.stdout + done.stderr
    lines = [x for x in done.stdout.splitlines() if x.startswith("BROKEN")]
    assert len(lines) == 2, done.stdout
    assert lines[0].startswith(
        f"BROKEN [offers acknowledged] node 01 entry {wrong['offer_ack']} (message.acknowledged) transfer {tid(1)}: "
        f"acknowledges package"
    )
    assert lines[1].startswith(
        f"BROKEN [nothing dangles] node 01 entry {lost['offer']} (transfer.offered) transfer {tid(2)}: offer to 79 "
        "neither acknowledged nor refused, 24 hours before the newest entry"
    )
    assert "checkpoint verified" in done.stdout and "RESULT: BROKEN" in done.stdout


def test_usage_and_connection_errors_exit_2(tmp_path: Path, pki: Path) -> None:
    """No node, an unreadable file or a node that does not answer: exit 2 with a message, nothing broken."""
    none = run_audit()
    assert none.returncode == 2 and "no node to audit" in none.stderr
    missing = run_audit("--config", str(tmp_path / "absent.toml"))
    assert missing.returncode == 2 and "absent.toml" in missing.stderr
    bad_key = run_audit("--node", f"province=01,address=127.0.0.1:1,origin=x,vkey=nonsense,pki={pki}")
    assert bad_key.returncode == 2 and "malformed verifier key" in bad_key.stderr
    down = run_audit(
        "--timeout", "1", "--node",
        f"province=01,address=127.0.0.1:{free_port()},origin={ORIGIN.format('01')},vkey_file={pki / 'log.vkey'},pki={pki}",
    )  # fmt: skip
    assert down.returncode == 2, down.stdout + down.stderr
    assert "node 01" in down.stdout and "NOT READ: UNAVAILABLE" in down.stdout
    assert "RESULT: INCOMPLETE" in down.stdout


def test_a_log_that_does_not_extend_the_pinned_checkpoint_fails(
    tmp_path: Path, pki: Path, engine_urls: tuple[str, str]
) -> None:
    """A checkpoint pinned earlier that the node's log does not extend (another root at that size, signed by the
    log's own key: a fork), or larger than the node's log, fails the node's log (exit 1), naming the sizes;
    without the pin, the node passes."""
    config = write_config(tmp_path / "01.toml", pki=pki, database_url=engine_urls[0], province="01")
    with running_node(load_config(config), pki, FakeClock(), config) as a:
        signer = parse_skey((pki / "log.key").read_text(encoding="utf-8").strip())
        forked = tmp_path / "forked.checkpoint"
        forked.write_text(sign_note(Checkpoint(ORIGIN.format("01"), 2, bytes(32)).text(), signer), encoding="utf-8")
        node = f"province=01,address={a.address},server-name=localhost,origin={ORIGIN.format('01')},pki={pki}"
        node += f",vkey_file={pki / 'log.vkey'}"
        # A new node signs its empty tree: that verifies, but is a rollback when a larger tree was pinned.
        empty = run_audit("--quiet", "--node", node)
        emptied = run_audit("--quiet", "--node", f"{node},checkpoint_file={forked}")
        h = History()
        h.offered(tid(1), receiver="48")
        _write_log(a, [x for x in h.logs["01"] if not isinstance(x, bytes)])
        alone = run_audit("--quiet", "--node", node)
        fork = run_audit("--quiet", "--node", f"{node},checkpoint_file={forked}")
    assert empty.returncode == 0 and "size 0  checkpoint verified" in empty.stdout, empty.stdout
    assert emptied.returncode == 1, emptied.stdout + emptied.stderr
    assert "LOG DOES NOT VERIFY: the log went back from size 2 to 0" in emptied.stdout
    assert alone.returncode == 0, alone.stdout + alone.stderr
    assert "not checked: entries naming 48" in alone.stdout
    assert fork.returncode == 1, fork.stdout + fork.stderr
    assert "node 01  hocba.invalid/province/01/log  LOG DOES NOT VERIFY: checkpoint 3 is not consistent with " \
           "trusted checkpoint 2" in fork.stdout  # fmt: skip


@pytest.mark.parametrize(
    ("table", "message"),
    [
        pytest.param({"colour": "red"}, "unknown keys colour", id="unknown-key"),
        pytest.param({"address": ""}, "missing address", id="missing-address"),
        pytest.param({"province": "1"}, "province must be a two-digit code", id="bad-province"),
        pytest.param({"vkey": "x"}, "exactly one of vkey and vkey_file", id="two-keys"),
        pytest.param({"cert_file": "{tmp}/absent.pem"}, "absent.pem", id="absent-file"),
        pytest.param({"checkpoint_file": "{pki}/log.vkey"}, "checkpoint", id="not-a-checkpoint"),
        pytest.param({"origin": "another/origin"}, "origin", id="checkpoint-of-another-origin"),
        pytest.param({"witness_vkey_files": "w.vkey"}, "a list of file names", id="witnesses-not-a-list"),
        pytest.param({"witness_quorum": "1"}, "witness_quorum without witness_vkey_files", id="quorum-alone"),
    ],
)
def test_unusable_node_tables_are_refused(tmp_path: Path, pki: Path, table: dict[str, str], message: str) -> None:
    """Each unusable part of a node's table is refused before any node is called, naming the table and what."""
    pinned = tmp_path / "pinned.checkpoint"
    signer = parse_skey((pki / "log.key").read_text(encoding="utf-8").strip())
    pinned.write_text(sign_note(Checkpoint(ORIGIN.format("01"), 1, bytes(32)).text(), signer), encoding="utf-8")
    base = {"province": "01", "address": "127.0.0.1:1", "origin": ORIGIN.format("01"), "pki": str(pki),
            "vkey_file": str(pki / "log.vkey"), "checkpoint_file": str(pinned)}  # fmt: skip
    items = {**base, **{k: v.format(tmp=tmp_path, pki=pki) for k, v in table.items()}}
    config = tmp_path / "audit.toml"
    config.write_text("[[nodes]]\n" + "".join(f'{k} = "{v}"\n' for k, v in items.items()), encoding="utf-8")
    with pytest.raises(UsageError) as info:
        pins_from(config, [])
    assert f"{config}: nodes[0]: " in str(info.value) and message in str(info.value)
    config.write_text("[[nodes]]\n" + "".join(f'{k} = "{v}"\n' for k, v in base.items()), encoding="utf-8")
    assert [p.province for p in pins_from(config, [])[0]] == ["01"]
    twice = f"province=01,address=x,origin=o,vkey_file={pki / 'log.vkey'},pki={pki}"
    with pytest.raises(UsageError, match="one node per province"):
        pins_from(config, [twice])


@pytest.mark.parametrize(
    ("witness", "message"),
    [
        pytest.param("witness_vkey_file={pki}/log.vkey", "must be a cosignature/v1 key", id="not-a-witness-key"),
        pytest.param("witness_vkey_file={tmp}/absent.vkey", "absent.vkey", id="absent-key-file"),
        pytest.param("witness_vkey_file={tmp}/garbage.vkey", "can't decode", id="not-text"),
        pytest.param("witness_vkey_file={tmp}/text.vkey", "malformed verifier key", id="not-a-key"),
        pytest.param(
            "witness_vkey_file={pki}/witness.vkey,witness_vkey_file={pki}/witness.vkey", "named twice", id="twice"
        ),
        pytest.param("witness_vkey_file={pki}/witness.vkey,witness_quorum=2", "between 1 and 1", id="quorum-too-big"),
        pytest.param("witness_vkey_file={pki}/witness.vkey,witness_quorum=0", "between 1 and 1", id="quorum-zero"),
        pytest.param("witness_vkey_file={pki}/witness.vkey,witness_quorum=-1", "whole number", id="quorum-negative"),
        pytest.param("witness_vkey_file={pki}/witness.vkey,witness_quorum=x", "whole number", id="quorum-not-a-number"),
    ],
)
def test_unusable_witness_pins_on_the_command_line_are_refused(
    tmp_path: Path, pki: Path, witness: str, message: str
) -> None:
    """A --node witness policy with a key file that is absent, no key, not a cosignature/v1 key or given twice, or a
    quorum that is no whole number between 1 and the witnesses given, is refused before any node is called."""
    (tmp_path / "garbage.vkey").write_bytes(b"\xff not a key\n")
    (tmp_path / "text.vkey").write_text("not a key\n", encoding="utf-8")
    node = f"province=01,address=x,origin=o,vkey_file={pki / 'log.vkey'},pki={pki}"
    spec = f"{node},{witness.format(pki=pki, tmp=tmp_path)}"
    with pytest.raises(UsageError) as info:
        pins_from(None, [spec])
    assert str(info.value).startswith(f"--node {spec}: "), info.value
    assert message in str(info.value).removeprefix(f"--node {spec}: "), info.value
    pins, _ = pins_from(None, [f"{node},witness_vkey_file={pki / 'witness.vkey'}"])
    assert [(p.province, p.witness_quorum, len(p.witnesses)) for p in pins] == [("01", 1, 1)]


def test_an_acknowledgement_of_a_message_never_sent_is_named() -> None:
    """An acknowledgement of an offer or a decision its node never logged, or of an unknown message kind, fails."""
    h = clean()
    offer_ack = h.add("01", PeerLeaf(ACK, T0, tid(50), "79", PACKAGE, "", MessageKind.OFFER, 0))
    resolve_ack = h.add("79", PeerLeaf(ACK, T0, tid(51), "01", PACKAGE, "", MessageKind.RESOLVE, 0))
    unknown = h.add("79", PeerLeaf(ACK, T0, tid(52), "01", PACKAGE, "", 9, 0))
    report = h.check()
    assert (Rule.OFFERS, "01", offer_ack, "message.acknowledged", tid(50)) in failures(report)
    assert (Rule.DECISIONS, "79", resolve_ack, "message.acknowledged", tid(51)) in failures(report)
    assert (Rule.OFFERS, "79", unknown, "message.acknowledged", tid(52)) in failures(report)
    assert len(report.findings) == 3, [str(f) for f in report.findings]


class MisplacedEntry(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Injected fault: a log that serves its entry 1 under another index."""

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        call = continuation(details, request)
        if details.method.endswith("/ListEntries"):
            for entry in call.result().entries:
                if entry.index == 1:
                    entry.index = 5
        return call


def test_an_entry_served_out_of_place_is_named(node: RunningNode, tmp_path: Path) -> None:
    """The verifier refuses entries whose served index is not their place in the list, naming the place."""
    h = History()
    h.offered(tid(1))
    _write_log(node, [x for x in h.logs["01"] if not isinstance(x, bytes)])
    vkey = (node.pki / "log.vkey").read_text(encoding="utf-8").strip()
    served: list[bytes] = []
    honest = LogVerifier(node.client("auditor"), vkey, None, origin=ORIGIN.format("01"))
    assert honest.audit(each=served.append).size == len(served) == 3
    forged = LogVerifier(
        node.client("auditor", interceptors=[MisplacedEntry()]), vkey, None, origin=ORIGIN.format("01")
    )
    with pytest.raises(EntryMismatch, match="served entry 5 in place of 1") as info:
        forged.audit()
    assert info.value.index == 1
