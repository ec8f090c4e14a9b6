"""Privacy of log entries (issue 17, item 6): page entries matched only with the record's page salt, which
is drawn anew for each custodian; no text from a peer in any entry; entry times that never go backwards;
entries of the kinds written before all this still decoded and verified."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from concurrent import futures
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from tests.federation import free_port, peer_block, wait_for
from tests.staffing import CLASS, HOMEROOM, PRINCIPAL, YEAR, add_page, duty, hire, new_record, signing_ca
from tests.support import FakeClock, RunningNode, assert_log_verifies, load_config, running_node, write_config
from transfer.client import TransferClient
from transfer.client.errors import PermissionDenied
from transfer.devpki import make_dev_pki
from transfer.domain.leaves import (
    LeafError,
    LeafKind,
    PageLeaf,
    PeerLeaf,
    decode_any,
    entry_time,
    legacy_page_record_digest,
    page_record_digest,
    text_digest,
)
from transfer.v1 import peers_pb2_grpc, transfers_pb2

REJECTED = transfers_pb2.TRANSFER_STATE_REJECTED
T0 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


def _entries(client: TransferClient) -> list[Any]:
    return [decode_any(e.leaf) for e in client.iter_entries()]


def _page_entries(client: TransferClient) -> list[PageLeaf]:
    return [x for x in _entries(client) if isinstance(x, PageLeaf)]


def _matches(entry: PageLeaf, lookup_code: str, salts: list[bytes]) -> bool:
    """Whether someone knowing the lookup code and `salts` can tell that `entry` is of the record."""
    if entry.record == legacy_page_record_digest(entry.page_id, lookup_code):
        return True
    return any(entry.record == page_record_digest(s, entry.page_id, lookup_code) for s in salts)


def _staffed(node: RunningNode, school: str) -> TransferClient:
    """`school`'s system, with a homeroom teacher and a principal to owe a page's signatures."""
    admin = node.client(f"school-admin-{school}")
    assert node.config_path is not None
    ca = signing_ca(node.pki)
    for requirement, code in ((HOMEROOM, "GV-CN"), (PRINCIPAL, "HT")):
        admin.assign_duty(duty(requirement), hire(admin, ca, f"{code}-{school}").id)
    return node.client(f"school-{school}")


def test_a_former_school_cannot_match_the_pages_added_after_the_record_left(node: RunningNode) -> None:
    """With the lookup code, its page's id and the page salt it was shown, the school that let a record go
    cannot tell which later page entries are the record's (nor the receiving school before it accepts); the
    new custodian, shown every salt, matches them all, the earlier school's page among them."""
    s1, s2 = _staffed(node, "S1"), _staffed(node, "S2")
    code = new_record(s1)
    s1_salts = list(s1.get_record(code).page_log_salts)
    assert len(s1_salts) == 1 and len(s1_salts[0]) == 16
    first = add_page(s1, code, requirements=[HOMEROOM, PRINCIPAL])
    t = s1.initiate_transfer(code, "S2").transfer
    assert list(s2.get_record(code).page_log_salts) == []  # the receiver reads the record, not its salts
    s2.accept_transfer(t.id)
    s2_salts = list(s2.get_record(code).page_log_salts)
    assert s2_salts[0] == s1_salts[0] and len(s2_salts) == 2 and s2_salts[1] != s1_salts[0]
    later = s2.add_page(code, YEAR, 3, CLASS, b"%PDF-1.7 hk2", [HOMEROOM, PRINCIPAL], segment="hk2").page
    with pytest.raises(PermissionDenied):
        s1.get_record(code)

    entries = _page_entries(node.client("auditor"))
    assert {e.kind for e in entries} == {LeafKind.PAGE_ADDED_SALTED}
    mine = [e for e in entries if e.page_id == first.id]
    theirs = [e for e in entries if e.page_id == later.id]
    assert mine and theirs
    # The former school: its own page, yes; the page added after it let the record go, no.
    assert all(_matches(e, code, s1_salts) for e in mine)
    assert not any(_matches(e, code, s1_salts) for e in theirs)
    # Without any salt (only the lookup code, as before kinds 19-21), nothing matches.
    assert not any(_matches(e, code, []) for e in entries)
    # The custodian matches both, each with the salt of its time.
    assert all(_matches(e, code, s2_salts) for e in mine + theirs)
    assert all(e.record == page_record_digest(s2_salts[1], e.page_id, code) for e in theirs)


# -- refusals from a peer ----------------------------------------------------------------------------------------

FREE_TEXT = "Gia đình khó khăn, bố mẹ ly hôn (SECRET-4711)"
GARBLED_REASON = "not a reason: SECRET-4712"


class RefusingPeer(peers_pb2_grpc.PeerServiceServicer):
    """Province 79 as a node that refuses every offer for good, with a free text and the given reasons."""

    def __init__(self, reasons: list[str]) -> None:
        self.reasons = reasons
        self.packages: list[dict[str, Any]] = []

    def OfferTransfer(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.packages.append(json.loads(request.package))
        info = any_pb2.Any()
        info.Pack(error_details_pb2.ErrorInfo(reason=self.reasons.pop(0), domain="hocba.example"))
        status = status_pb2.Status(code=grpc.StatusCode.FAILED_PRECONDITION.value[0], message=FREE_TEXT, details=[info])
        context.abort_with_status(rpc_status.to_status(status))


@pytest.fixture
def refusing_pair(
    tmp_path: Path, pki: Path, database_url: str, clock: FakeClock
) -> Iterator[tuple[RunningNode, RefusingPeer]]:
    """Node 01 (in-process, fake clock) with 79 as its peer: a PeerService that refuses every offer."""
    pki79 = tmp_path / "pki79"
    make_dev_pki(pki79, "79", ["D1"])
    port = free_port()
    peer = RefusingPeer(["UNKNOWN_SCHOOL", GARBLED_REASON])
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    peers_pb2_grpc.add_PeerServiceServicer_to_server(peer, server)
    creds = grpc.ssl_server_credentials(
        [((pki79 / "node.key").read_bytes(), (pki79 / "node.pem").read_bytes())],
        root_certificates=(pki / "ca.pem").read_bytes(),
        require_client_auth=True,
    )
    server.add_secure_port(f"127.0.0.1:{port}", creds)
    server.start()
    extra = f'\n[seal]\nkey_file = "{pki / "seal.key"}"\n' + peer_block(pki79, "79", port)
    path = write_config(tmp_path / "node.toml", pki=pki, database_url=database_url, extra=extra)
    try:
        with running_node(load_config(path), pki, clock, path) as node:
            node.client("province-admin").register_school("S1", "Trường S1")
            yield node, peer
    finally:
        server.stop(None)


def test_an_offer_refused_with_a_free_text_leaves_no_text_in_any_entry(
    refusing_pair: tuple[RunningNode, RefusingPeer],
) -> None:
    """A peer refuses two offers for good with a free text (a family's circumstances), once with a well-formed
    reason and once with a reason that is text: no entry's bytes hold any of that text; each refusal is a
    kind 9 entry with a reason code (the peer's, or the gRPC status's name when the peer's is not one) and
    the text as a digest that the schools can check with the transfer's log salt."""
    node, peer = refusing_pair
    s1 = node.client("school-S1")
    refused = []
    for _ in range(2):
        t = s1.initiate_transfer(new_record(s1), "D1", "79").transfer
        refused.append(wait_for("the refusal", lambda t=t: (x := s1.get_transfer(t.id)).state == REJECTED and x))
    assert peer.reasons == []
    # The package handed the record's page salt to 79; the record took a new one with the offer.
    salts = [x.hex() for x in s1.get_record(refused[0].lookup_code).page_log_salts]
    assert peer.packages[0]["record"]["page_salts"] == salts[:1] and len(salts) == 2
    assert all(FREE_TEXT in t.delivery_error for t in refused)  # the schools see it; the log does not
    raw = [e.leaf for e in node.client("auditor").iter_entries()]
    for needle in (FREE_TEXT, "SECRET-4711", "SECRET-4712", "ly hôn", GARBLED_REASON, "not a reason"):
        assert not [leaf for leaf in raw if needle.encode() in leaf], needle
    refusals = [x for x in map(decode_any, raw) if isinstance(x, PeerLeaf) and x.kind is LeafKind.OFFER_REFUSED_CODED]
    assert [(x.transfer_id, x.text) for x in refusals] == [
        (refused[0].id, "UNKNOWN_SCHOOL"),
        (refused[1].id, "FAILED_PRECONDITION"),
    ]
    for x, t in zip(refusals, refused, strict=True):
        assert x.details == text_digest(t.delivery_error, t.log_salt)
        assert x.details != text_digest(t.delivery_error)
    assert LeafKind.OFFER_REFUSED not in {x.kind for x in map(decode_any, raw)}
    assert node.config_path is not None
    assert_log_verifies(node.config_path)


# -- entry times ---------------------------------------------------------------------------------------------------


def test_entry_times_never_go_backwards_when_the_clock_steps_back(node: RunningNode, clock: FakeClock) -> None:
    """After the clock steps back an hour, the next entries take the time of the last one (not the clock's)
    until the clock passes it again: entry times are non-decreasing along the log; the transfer keeps the
    clock's own time as its decide_time."""
    s1, s2 = _staffed(node, "S1"), node.client("school-S2")
    code = new_record(s1)
    sent = s1.initiate_transfer(code, "S2")
    before = entry_time(sent.receipt.leaf)
    clock.advance(timedelta(hours=-1))
    rejected = s2.reject_transfer(sent.transfer.id, "không nhận")
    assert entry_time(rejected.receipt.leaf) == before
    assert rejected.transfer.decide_time.ToDatetime(tzinfo=UTC) == before - timedelta(hours=1)
    page = add_page(s1, code, requirements=[HOMEROOM, PRINCIPAL])
    clock.advance(timedelta(minutes=30))  # still behind the log's last entry
    s1.initiate_transfer(new_record(s1), "S2")
    clock.advance(timedelta(hours=1))  # past it again: entries take the clock's time
    last = s1.initiate_transfer(new_record(s1), "S2")
    assert entry_time(last.receipt.leaf) == clock.now() > before
    times = [x.time for x in _entries(node.client("auditor"))]
    assert times == sorted(times) and len(times) >= 5
    assert any(isinstance(x, PageLeaf) and x.page_id == page.id for x in _entries(node.client("auditor")))
    assert node.config_path is not None
    assert_log_verifies(node.config_path)


# -- entries of the earlier kinds ---------------------------------------------------------------------------------


def _old_entries(at: datetime, lookup_code: str) -> list[bytes]:
    """Entries as a node wrote them before migration 0010: page entries with the unsalted record digest
    (kinds 16-18) and a refused offer with its text in clear (kind 8)."""
    page_id, digest = "ab" * 16, bytes(range(32))
    record = legacy_page_record_digest(page_id, lookup_code)
    return [
        PageLeaf(LeafKind.PAGE_ADDED, at, page_id, record, "S1", "2026-2027", 1, digest, "school:S1").encode(),
        PageLeaf(LeafKind.PAGE_REPLACED, at, page_id, record, "S1", "2026-2027", 2, digest, "school:S1", 1).encode(),
        PageLeaf(LeafKind.PAGE_LOCKED, at, page_id, record, "S1", "2026-2027", 2, digest, "system", 2).encode(),
        PeerLeaf(LeafKind.OFFER_REFUSED, at, "cd" * 16, "79", digest, "FAILED_PRECONDITION: old text").encode(),
    ]


def test_entries_of_the_earlier_kinds_still_decode_and_verify(node: RunningNode, clock: FakeClock) -> None:
    """A log holding entries of kinds 8 and 16-18 (as written before migration 0010) between entries of
    the kinds written now (9, 19) decodes entry by entry, and `transfer-verify-log` verifies it."""
    s1 = _staffed(node, "S1")
    code = new_record(s1)
    old = _old_entries(clock.now(), code)

    def write_old(uow: Any) -> None:
        for leaf in old:
            uow.log.append(leaf)

    assert node.node is not None and node.node.store is not None
    store = node.node.store
    node.run(lambda: store.write(write_old))
    add_page(s1, code, requirements=[HOMEROOM, PRINCIPAL])
    raw = [e.leaf for e in node.client("auditor").iter_entries()]
    assert all(leaf in raw for leaf in old)
    decoded = [decode_any(leaf) for leaf in raw]
    kinds = {x.kind for x in decoded}
    assert {LeafKind.PAGE_ADDED, LeafKind.PAGE_REPLACED, LeafKind.PAGE_LOCKED, LeafKind.OFFER_REFUSED} <= kinds
    assert LeafKind.PAGE_ADDED_SALTED in kinds
    legacy = [x for x in decoded if isinstance(x, PageLeaf) and not x.salted]
    assert len(legacy) == 3 and all(x.record == legacy_page_record_digest(x.page_id, code) for x in legacy)
    assert [x.encode() for x in decoded] == raw  # each decodes to what encodes back to the same bytes
    assert node.config_path is not None
    assert_log_verifies(node.config_path)


def test_kind_9_refuses_a_reason_that_is_not_a_code() -> None:
    """Kind 9 holds a reason code only: encoding or decoding one with spaces, lower case or over 63
    characters is refused, and a well-formed one round-trips with its salted text digest."""
    leaf = PeerLeaf(LeafKind.OFFER_REFUSED_CODED, T0, "ab" * 16, "79", bytes(32), "BAD_SEAL", details=bytes(range(32)))
    raw = leaf.encode()
    assert decode_any(raw) == leaf
    for bad in ("bad seal", "Bad_SEAL", "X" * 64, "", "1ABC", "ĐÃ_TỪ_CHỐI"):
        with pytest.raises(LeafError):
            PeerLeaf(LeafKind.OFFER_REFUSED_CODED, T0, "ab" * 16, "79", bytes(32), bad, details=bytes(32)).encode()
        code = bad.encode()
        forged = raw[: 10 + 16 + 2 + 32] + struct.pack(">B", len(code)) + code + bytes(32)
        with pytest.raises(LeafError):
            decode_any(forged)
    with pytest.raises(LeafError):
        decode_any(raw + b"\x00")
    with pytest.raises(LeafError):
        decode_any(raw[:-1])


def test_page_entries_of_kinds_19_to_21_round_trip() -> None:
    """Kinds 19-21 have the layout of 16-18 (only the record digest's salt differs) and decode back."""
    record = page_record_digest(bytes(16), "ab" * 16, "cd" * 16)
    assert record != legacy_page_record_digest("ab" * 16, "cd" * 16)
    for kind, count in ((LeafKind.PAGE_ADDED_SALTED, 0), (LeafKind.PAGE_REPLACED_SALTED, 2),
                        (LeafKind.PAGE_LOCKED_SALTED, 3)):  # fmt: skip
        leaf = PageLeaf(kind, T0, "ab" * 16, record, "S1", "2026-2027", 2, bytes(32), "school:S1", count)
        assert decode_any(leaf.encode()) == leaf and leaf.salted
