"""The intra-province transfer flow end to end, through the client library."""

from __future__ import annotations

import itertools
import queue
import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.support import (
    FakeClock,
    RunningNode,
    new_lookup_code,
    new_national_id,
    quiet_node,
)
from transfer.client import TransferClient
from transfer.v1 import common_pb2, records_pb2, transfers_pb2

INCOMING = transfers_pb2.TRANSFER_DIRECTION_INCOMING
OUTGOING = transfers_pb2.TRANSFER_DIRECTION_OUTGOING
REQUESTED = transfers_pb2.TRANSFER_STATE_REQUESTED
ACCEPTED = transfers_pb2.TRANSFER_STATE_ACCEPTED
REJECTED = transfers_pb2.TRANSFER_STATE_REJECTED
CANCELLED = transfers_pb2.TRANSFER_STATE_CANCELLED


def register(client: TransferClient) -> str:
    code = new_lookup_code()
    client.register_record(code, new_national_id(), common_pb2.RECORD_LEVEL_PRIMARY)
    return code


def test_initiate_list_accept_moves_custody(s1: TransferClient, s2: TransferClient) -> None:
    """A transfer S1 -> S2 shows up as incoming at S2; accepting it moves custody to S2."""
    code = register(s1)
    t = s1.initiate_transfer(code, "S2").transfer
    assert t.state == REQUESTED and t.from_school == "S1" and t.to_school == "S2"
    assert t.scope == transfers_pb2.TRANSFER_SCOPE_INTRA_PROVINCE
    assert t.deadline.seconds > t.create_time.seconds

    frozen = s1.get_record(code)
    assert frozen.status == records_pb2.RECORD_STATUS_FROZEN and frozen.open_transfer_id == t.id
    incoming = list(s2.iter_transfers(INCOMING, states=[REQUESTED]))
    assert [x.id for x in incoming] == [t.id]
    assert [x.id for x in s1.iter_transfers(OUTGOING)] == [t.id]

    accepted = s2.accept_transfer(t.id).transfer
    assert accepted.state == ACCEPTED and accepted.decide_time.seconds > 0
    record = s2.get_record(code)
    assert record.custodian_school == "S2" and record.status == records_pb2.RECORD_STATUS_ACTIVE
    assert [r.lookup_code for r in s2.iter_records()] == [code]
    assert list(s1.iter_records()) == []
    assert list(s2.iter_transfers(INCOMING, states=[REQUESTED])) == []


def test_reject_keeps_custody_and_unfreezes(s1: TransferClient, s2: TransferClient) -> None:
    """A rejected transfer keeps the record at the sender, unfrozen, with the reason kept."""
    code = register(s1)
    t = s1.initiate_transfer(code, "S2").transfer
    rejected = s2.reject_transfer(t.id, "Lớp đã đủ sĩ số").transfer
    assert rejected.state == REJECTED and rejected.reason == "Lớp đã đủ sĩ số"
    record = s1.get_record(code)
    assert record.custodian_school == "S1" and record.status == records_pb2.RECORD_STATUS_ACTIVE
    # The record can be sent again, elsewhere.
    assert s1.initiate_transfer(code, "S3").transfer.state == REQUESTED


def test_cancel_before_decision(s1: TransferClient, s2: TransferClient) -> None:
    """The sender may cancel an open transfer; the record unfreezes at the sender."""
    code = register(s1)
    t = s1.initiate_transfer(code, "S2").transfer
    cancelled = s1.cancel_transfer(t.id, "gia đình đổi ý").transfer
    assert cancelled.state == CANCELLED
    assert s1.get_record(code).status == records_pb2.RECORD_STATUS_ACTIVE
    assert s2.get_transfer(t.id).state == CANCELLED


def test_list_pages_cover_everything_once(s1: TransferClient, s2: TransferClient) -> None:
    """Paging through incoming transfers and records returns each item exactly once, in order."""
    ids = [s1.initiate_transfer(register(s1), "S2").transfer.id for _ in range(7)]
    first = s2.list_transfers(INCOMING, page_size=3)
    assert len(first.transfers) == 3 and first.next_page_token
    assert [t.id for t in s2.iter_transfers(INCOMING, page_size=3)] == ids
    codes = sorted(r.lookup_code for r in s1.iter_records(page_size=2))
    assert len(codes) == 7 and codes == sorted(s1.get_transfer(i).lookup_code for i in ids)


def _collect(stream: object, out: queue.Queue[object], stop_after: int) -> None:
    try:
        for ev in itertools.islice(stream, stop_after):  # type: ignore[call-overload]
            out.put(ev)
    except Exception as exc:  # surfaced by the test through the queue
        out.put(exc)


def _take(q: queue.Queue[object], n: int) -> list[transfers_pb2.WatchTransfersResponse]:
    items = []
    for _ in range(n):
        item = q.get(timeout=15)
        if isinstance(item, Exception):
            raise item
        items.append(item)
    return items  # type: ignore[return-value]


def test_watch_receives_events_as_they_happen(s1: TransferClient, s2: TransferClient) -> None:
    """A receiving school's open watch stream gets the request and the acceptance live."""
    events: queue.Queue[object] = queue.Queue()
    watcher = threading.Thread(target=_collect, args=(s2.watch_transfers(), events, 2), daemon=True)
    watcher.start()
    code = register(s1)
    t = s1.initiate_transfer(code, "S2").transfer
    (first,) = _take(events, 1)
    assert first.transfer.id == t.id and first.transfer.state == REQUESTED
    s2.accept_transfer(t.id)
    (second,) = _take(events, 1)
    assert second.transfer.state == ACCEPTED and second.cursor != first.cursor
    watcher.join(10)


def test_watch_resumes_from_cursor_after_drop(s1: TransferClient, s2: TransferClient, s3: TransferClient) -> None:
    """After a dropped stream, watching from the last cursor yields exactly the missed events."""
    t1 = s1.initiate_transfer(register(s1), "S2").transfer
    stream = s2.watch_transfers()
    first = next(stream)
    assert first.transfer.id == t1.id
    stream.close()  # the connection drops: the client cancels the call

    s2.accept_transfer(t1.id)
    t2 = s1.initiate_transfer(register(s1), "S2").transfer
    t3 = s3.initiate_transfer(register(s3), "S1").transfer  # not S2's business: must not appear

    resumed = s2.watch_transfers(cursor=first.cursor)
    got = [next(resumed), next(resumed)]
    resumed.close()
    assert [(e.transfer.id, e.transfer.state) for e in got] == [(t1.id, ACCEPTED), (t2.id, REQUESTED)]
    assert t3.id not in {e.transfer.id for e in got}
    # From the start, the full history replays in commit order.
    replay = s2.watch_transfers()
    assert [next(replay).transfer.state for _ in range(3)] == [REQUESTED, ACCEPTED, REQUESTED]
    replay.close()


def test_watch_call_reopens_at_its_deadline_without_loss_or_repeat(
    node: RunningNode, s1: TransferClient, s2: TransferClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each watch call has a deadline, after which the client reopens it from its cursor at once (a call
    lost in transit cannot hang for ever): events committed before, between and after deadlines arrive
    once each, in order."""
    assert node.node is not None
    notifier, opened = node.node.notifier, []
    subscribe = notifier.subscribe
    monkeypatch.setattr(notifier, "subscribe", lambda school: opened.append(school) or subscribe(school))
    stream = s2.watch_transfers(reopen_after=0.3)
    result: queue.Queue[object] = queue.Queue()
    threading.Thread(target=_collect, args=(stream, result, 4), daemon=True).start()
    sent = [s1.initiate_transfer(register(s1), "S2").transfer.id]
    assert _take(result, 1)[0].transfer.id == sent[0]
    for _ in range(3):
        time.sleep(0.45)  # past the call's deadline: a new call carries the next event
        sent.append(s1.initiate_transfer(register(s1), "S2").transfer.id)
    got = [e.transfer.id for e in _take(result, 3)]
    assert got == sent[1:]
    assert result.empty()
    assert len(opened) >= 2  # reopened at its deadlines (one call without them)


def test_watch_stream_ends_unavailable_on_shutdown(node: RunningNode, s1: TransferClient, s2: TransferClient) -> None:
    """Stopping the node ends open watch streams with UNAVAILABLE, so clients know to resume."""
    from transfer.client.errors import Unavailable

    t = s1.initiate_transfer(register(s1), "S2").transfer
    stream = s2.watch_transfers(resume=False)
    result: queue.Queue[object] = queue.Queue()
    threading.Thread(target=_collect, args=(stream, result, 2), daemon=True).start()
    # A first event proves the stream is open and its handler subscribed: the stop
    # must then end it (rather than race the call's set-up, or refuse the connection).
    (first,) = _take(result, 1)
    assert first.transfer.id == t.id
    assert node.node is not None
    node.run(lambda: node.node.stop(grace=1))  # type: ignore[union-attr]
    err = result.get(timeout=15)
    assert isinstance(err, Unavailable) and err.reason == "SHUTTING_DOWN", repr(err)


@pytest.mark.parametrize("level", [1, 2, 3])
def test_records_of_each_level(s1: TransferClient, level: int) -> None:
    """Records of every level register and read back unchanged."""
    code = new_lookup_code()
    nid = new_national_id()
    r = s1.register_record(code, nid, level)
    assert (r.lookup_code, r.national_id, r.level, r.custodian_school) == (code, nid, level, "S1")
    assert s1.get_record(code) == r


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # connections to a database server
def test_node_recovers_when_its_database_connections_drop(
    database_url: str, tmp_path: Path, pki: Path, clock: FakeClock
) -> None:
    """PostgreSQL drops every connection of the node (as on a server restart): the next call
    answers UNAVAILABLE (DATABASE_UNAVAILABLE), nothing half-done, and a retry with the same
    request id completes it, once."""
    import psycopg

    from transfer.client import NO_RETRY
    from transfer.client.errors import Unavailable

    # No background checkpoint publication: the next write after the drop must be ours.
    with quiet_node(tmp_path, pki, database_url, clock) as node:
        s1 = node.client("school-S1")
        s2 = node.client("school-S2", retry=NO_RETRY)
        code = register(s1)
        transfer_id = s1.initiate_transfer(code, "S2").transfer.id
        s1.get_record(code)  # a reader connection in the pool too
        with psycopg.connect(database_url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()) AS t"
            ).fetchone()
        assert row is not None and row[0] >= 1

        request_id = str(uuid.uuid4())
        with pytest.raises(Unavailable) as refused:
            s2.accept_transfer(transfer_id, request_id=request_id)
        assert refused.value.reason == "DATABASE_UNAVAILABLE"
        assert s1.get_transfer(transfer_id).state == REQUESTED  # nothing of it was kept
        accepted = s2.accept_transfer(transfer_id, request_id=request_id).transfer  # the retry
        assert accepted.state == ACCEPTED
        assert s2.accept_transfer(transfer_id, request_id=request_id).transfer == accepted  # a repeat
        assert s2.get_record(code).custodian_school == "S2"
        assert s2.initiate_transfer(code, "S1").transfer.state == REQUESTED


def test_a_stream_that_subscribes_after_shutdown_began_ends_at_once() -> None:
    """The watch loop clears its flag before each read: a close that came
    before (or between) must still end the wait, not leave the stream hanging
    until the server cancels it."""
    import asyncio

    from transfer.server.notify import Notifier

    async def scenario() -> tuple[bool, bool]:
        notifier = Notifier()
        early = notifier.subscribe("S1")
        notifier.close()
        late = notifier.subscribe("S1")  # a stream whose handler started during shutdown
        results = []
        for sub in (early, late):
            sub.clear()  # what the loop does before reading
            results.append(await asyncio.wait_for(sub.wait(), timeout=5))
        return results[0], results[1]

    assert asyncio.run(scenario()) == (False, False)
