"""Page tokens and watch cursors: only what this node issued, to this caller, for this query, is accepted."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from storage.database import sync_url
from tests.staffing import HOMEROOM, YEAR, add_page, duty, hire, new_record, signing_ca
from tests.support import FakeClock, RunningNode, load_config, refused, running_node, write_config
from transfer.client import TransferClient
from transfer.v1 import log_pb2, pages_pb2, records_pb2, schools_pb2, staff_pb2, transfers_pb2

Lister = Callable[[str], Any]
TODAY = "2026-11-23"  # the fake clock's date in Hà Nội
INCOMING = transfers_pb2.TRANSFER_DIRECTION_INCOMING
OUTGOING = transfers_pb2.TRANSFER_DIRECTION_OUTGOING


def _raw(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def tampered(token: str) -> dict[str, str]:
    """Strings made from a token (or cursor) the node issued, none of which it issued itself."""
    raw = _raw(token)
    flipped = bytearray(raw)
    flipped[len(raw) // 2] ^= 0x01
    variants = {
        "forged (the unsealed form of earlier versions)": _b64(json.dumps({"k": "x", "f": "0" * 16}).encode()),
        "forged cursor of earlier versions": _b64(b"ev1:1"),
        "truncated": token[:-3],
        "one bit changed": _b64(bytes(flipped)),
        "extended": _b64(raw + b"\x00"),
        "padded": token + "=" * ((-len(token) % 4) or 4),
        "standard base64 alphabet": base64.b64encode(raw).decode(),
        "with a newline": token + "\n",
    }
    return {why: forged for why, forged in variants.items() if forged != token}


def _assert_sealed(token: str, call: Callable[[str], Any], reason: str = "INVALID_PAGE_TOKEN") -> None:
    call(token)  # the genuine one works
    for why, forged in tampered(token).items():
        with refused("INVALID_ARGUMENT", reason) as caught:
            call(forged)
        assert caught, why


@pytest.fixture
def seeded(node: RunningNode, pki: Path, admin: TransferClient) -> dict[str, Any]:
    """Two of everything a list RPC pages through, on school S1 (and transfers to S2)."""
    s1, s2 = node.client("school-S1"), node.client("school-S2")
    s1_admin = node.client("school-admin-S1")
    ca = signing_ca(pki)
    homeroom, other, away1, away2 = (hire(s1_admin, ca, code) for code in ("GV1", "GV2", "GV3", "GV4"))
    s1_admin.assign_duty(duty(HOMEROOM), homeroom.id)
    record = new_record(s1)
    s1.add_page(record, YEAR, 3, "3A", b"%PDF a", [HOMEROOM])
    s1.add_page(record, YEAR, 3, "3A", b"%PDF b", [HOMEROOM], segment="hk1")
    other_record = new_record(s1)
    add_page(s1, other_record, requirements=[HOMEROOM])
    for _ in range(2):
        s1.initiate_transfer(new_record(s1), "S2")
    for teacher in (away1, away2):
        s1_admin.record_departure(teacher.id, staff_pb2.DEPARTURE_REASON_MATERNITY_LEAVE, TODAY, end_date="2027-05-23")
    return {
        "s1": s1, "s2": s2, "s1_admin": s1_admin, "admin": admin, "record": record,
        "other_record": other_record, "homeroom": homeroom.id, "other": other.id,
    }  # fmt: skip


def _lister(client: TransferClient, service: str, method: str, request_type: Any, **fields: Any) -> Lister:
    """One page (of size 1) of `service.method` with these fields, as `client`, from a page token."""
    stub = getattr(getattr(client, service), method)
    return lambda token: client._call(stub, request_type(page_size=1, page_token=token, **fields))


def _lists(d: dict[str, Any]) -> dict[str, tuple[Lister, Lister, Lister | None]]:
    """Per list RPC: the query of its first caller, the same query by another caller, another query by the
    first caller."""
    s1, s2, s1_admin, admin = d["s1"], d["s2"], d["s1_admin"], d["admin"]
    schools = ("schools", "ListSchools", schools_pb2.ListSchoolsRequest)
    records = ("records", "ListRecords", records_pb2.ListRecordsRequest)
    transfers = ("transfers", "ListTransfers", transfers_pb2.ListTransfersRequest)
    pages = ("pages", "ListPages", pages_pb2.ListPagesRequest)
    teachers = ("staff", "ListTeachers", staff_pb2.ListTeachersRequest)
    tasks = ("staff", "ListSigningTasks", staff_pb2.ListSigningTasksRequest)
    handoffs = ("staff", "ListHandoffs", staff_pb2.ListHandoffsRequest)
    entries = ("log", "ListEntries", log_pb2.ListEntriesRequest)
    record, other_record, homeroom, other = d["record"], d["other_record"], d["homeroom"], d["other"]
    return {
        "ListSchools": (_lister(s1, *schools), _lister(s2, *schools), None),
        "ListRecords": (
            _lister(admin, *records, school="S1"),
            _lister(s1, *records),
            _lister(admin, *records, school="S2"),
        ),
        "ListTransfers": (
            _lister(s2, *transfers, direction=INCOMING),
            _lister(admin, *transfers, school="S2", direction=INCOMING),
            _lister(s2, *transfers, direction=OUTGOING),
        ),
        "ListPages": (
            _lister(s1, *pages, lookup_code=record),
            _lister(s1_admin, *pages, lookup_code=record),
            _lister(s1, *pages, lookup_code=other_record),
        ),
        "ListTeachers": (
            _lister(admin, *teachers, school="S1"),
            _lister(s1_admin, *teachers),
            _lister(admin, *teachers, school="S2"),
        ),
        "ListSigningTasks": (
            _lister(s1, *tasks, teacher_id=homeroom),
            _lister(s1_admin, *tasks, teacher_id=homeroom),
            _lister(s1, *tasks, teacher_id=other),
        ),
        "ListHandoffs": (
            _lister(s1_admin, *handoffs),
            _lister(s1, *handoffs),
            _lister(s1_admin, *handoffs, teacher_id=other),
        ),
        "ListEntries": (_lister(s1, *entries), _lister(s2, *entries), _lister(s1, *entries, start=1)),
    }


def test_every_list_refuses_tokens_it_did_not_issue_to_this_caller_for_this_query(seeded: dict[str, Any]) -> None:
    """On each list RPC, a forged, truncated, altered or re-encoded token, another caller's token and another
    query's token are all INVALID_ARGUMENT INVALID_PAGE_TOKEN; the genuine one continues the listing."""
    for name, (first, other_caller, other_query) in _lists(seeded).items():
        token = first("").next_page_token
        assert token, f"{name}: the seed should give two pages"
        _assert_sealed(token, first)
        with refused("INVALID_ARGUMENT", "INVALID_PAGE_TOKEN"):
            other_caller(token)
        if other_query is not None:
            with refused("INVALID_ARGUMENT", "INVALID_PAGE_TOKEN") as caught:
                other_query(token)
            assert "different query" in caught[0].message, name


def test_tokens_and_cursors_outlive_a_restart_and_work_on_every_process_of_the_database(
    tmp_path: Path, pki: Path, database_url: str, clock: FakeClock
) -> None:
    """The key of tokens and cursors is made once and kept in the database: two nodes started together on
    one database accept each other's, and a token and a cursor issued before a restart work after it."""
    config = load_config(write_config(tmp_path / "node.toml", pki=pki, database_url=database_url))
    with running_node(config, pki, clock) as one, running_node(config, pki, clock) as two:
        one.client("province-admin").register_school("S1", "Trường S1")
        one.client("province-admin").register_school("S2", "Trường S2")
        s1 = one.client("school-S1")
        for _ in range(3):
            s1.initiate_transfer(new_record(s1), "S2")
        token = one.client("school-S2").list_transfers(INCOMING, page_size=1).next_page_token
        cursor = next(one.client("school-S2").watch_transfers(resume=False)).cursor
        assert len(two.client("school-S2").list_transfers(INCOMING, page_size=5, page_token=token).transfers) == 2
    with running_node(config, pki, clock) as again:
        s2 = again.client("school-S2")
        assert len(s2.list_transfers(INCOMING, page_size=5, page_token=token).transfers) == 2
        assert len(_take(s2.watch_transfers(cursor=cursor, resume=False), 2)) == 2


def _take(stream: Any, n: int) -> list[Any]:
    out = []
    for event in stream:
        out.append(event)
        if len(out) == n:
            break
    return out


def test_watch_refuses_cursors_it_did_not_issue_to_this_caller_for_this_school(
    node: RunningNode, s1: TransferClient, s2: TransferClient, admin: TransferClient
) -> None:
    """A forged, altered or re-encoded cursor, another caller's, or one of another school's stream is
    INVALID_ARGUMENT INVALID_CURSOR; the genuine one resumes."""
    for _ in range(2):
        s1.initiate_transfer(new_record(s1), "S2")
    cursor = next(s2.watch_transfers(resume=False)).cursor
    _assert_sealed(cursor, lambda c: next(s2.watch_transfers(cursor=c, resume=False)), "INVALID_CURSOR")
    with refused("INVALID_ARGUMENT", "INVALID_CURSOR"):  # another caller's
        next(admin.watch_transfers(school="S2", cursor=cursor, resume=False))
    with refused("INVALID_ARGUMENT", "INVALID_CURSOR"):  # another school's stream
        next(admin.watch_transfers(school="S1", cursor=next(admin.watch_transfers(school="S2", resume=False)).cursor,
                                   resume=False))  # fmt: skip


def test_cursors_do_not_show_how_many_events_other_schools_caused(
    node: RunningNode, s1: TransferClient, s2: TransferClient, s3: TransferClient
) -> None:
    """A cursor has one length whatever its position, and its bytes do not hold the node's event count
    (as the earlier `ev1:<n>` cursors did), however many events other schools caused in between."""
    s1.initiate_transfer(new_record(s1), "S2")
    for _ in range(300):  # other schools' events: the node's count passes 256
        s3.initiate_transfer(new_record(s3), "S1")
    s1.initiate_transfer(new_record(s1), "S2")
    first, second = _take(s2.watch_transfers(resume=False), 2)
    assert len(first.cursor) == len(second.cursor)
    for cursor, seq in ((first.cursor, 1), (second.cursor, 302)):
        raw = _raw(cursor)
        assert f"ev1:{seq}".encode() not in raw and seq.to_bytes(8, "big") not in raw
    assert b"302" not in _raw(second.cursor)


def test_a_cursor_ahead_of_the_nodes_events_is_refused(
    s1: TransferClient, s2: TransferClient, database_url: str
) -> None:
    """When the database has lost its latest events (restored from an earlier backup), a cursor issued for
    one of them is refused (INVALID_CURSOR, "ahead"), and so is it once its number names another event;
    a cursor of an event the database still holds resumes."""
    s1.initiate_transfer(new_record(s1), "S2")
    s1.initiate_transfer(new_record(s1), "S2")
    early, late = (e.cursor for e in _take(s2.watch_transfers(resume=False), 2))
    engine = create_engine(sync_url(database_url))
    try:
        with engine.begin() as conn:  # what a restore of the backup taken before the second event leaves
            conn.execute(text("DELETE FROM transfer_events WHERE seq = 2"))
    finally:
        engine.dispose()
    with refused("INVALID_ARGUMENT", "INVALID_CURSOR") as caught:
        next(s2.watch_transfers(cursor=late, resume=False))
    assert "ahead" in caught[0].message
    s1.initiate_transfer(new_record(s1), "S2")  # the restored node gives number 2 to this event
    with refused("INVALID_ARGUMENT", "INVALID_CURSOR") as caught:
        next(s2.watch_transfers(cursor=late, resume=False))
    assert "no longer holds" in caught[0].message
    resumed = next(s2.watch_transfers(cursor=early, resume=False))
    assert resumed.cursor != late


def test_tokens_of_the_earlier_unsealed_form_are_refused_even_with_the_querys_digest(seeded: dict[str, Any]) -> None:
    """Unsealed tokens carrying the query's filter digest (anyone could compute it) and a key this node never
    issued were INTERNAL on ListSigningTasks and ListHandoffs (IndexError, ValueError, OverflowError); they
    are INVALID_PAGE_TOKEN, like any token the node did not seal."""
    lists = _lists(seeded)
    queries = {
        "ListSigningTasks": ("tasks", seeded["homeroom"]),
        "ListHandoffs": ("handoffs", "S1", ""),
        "ListTransfers": ("transfers", "S2", int(INCOMING), ()),
    }
    for name, filters in queries.items():
        digest = hashlib.sha256(repr(filters).encode()).hexdigest()[:16]
        for key in ("x", "9" * 30 + ":x", "1e999:x", "x:y", -1, 2**62):
            forged = _b64(json.dumps({"k": key, "f": digest}).encode())
            with refused("INVALID_ARGUMENT", "INVALID_PAGE_TOKEN"):
                lists[name][0](forged)
