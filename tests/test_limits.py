"""Bounds on what callers hold open: silent connections, idle and old connections, abandoned
streams, streams per connection and watch streams per caller (docs/operations.md, Limits).

These are about connections, not storage: the nodes run on SQLite files only. Nodes that are
measured from outside (their open files, through /proc) run as processes."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.support import (
    ROOT,
    FakeClock,
    ServerProcess,
    load_config,
    new_lookup_code,
    new_national_id,
    refused,
    running_node,
    schools_and_a_transfer,
    write_config,
)
from transfer.client import NO_RETRY, ClientTls, TransferClient, TransferError
from transfer.client.errors import from_rpc_error
from transfer.v1 import common_pb2, schools_pb2, transfers_pb2, transfers_pb2_grpc

needs_proc = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts open files through /proc")


def _wait_for(what: str, condition: Callable[[], bool], within: float = 20.0) -> None:
    """Wait until `condition()` holds, failing with `what` if it has not within `within` seconds (a bound, not a
    measurement: the limits under test are a few seconds)."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"not within {within} s: {what}"
        time.sleep(0.1)


def _open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _settled_open_files(pid: int) -> int:
    """The process's open files once the count stops moving (closed connections take a moment to be let go)."""
    last = -1
    for _ in range(100):
        count = _open_files(pid)
        if count == last:
            return count
        last = count
        time.sleep(0.3)
    return last


def _node_config(tmp_path: Path, pki: Path, limits: str) -> Path:
    """The test configuration with `limits` (lines of [server] keys) added."""
    path = write_config(tmp_path / "node.toml", pki=pki, database_url=f"sqlite:///{tmp_path / 'node.db'}")
    path.write_text(path.read_text(encoding="utf-8").replace("[server]\n", f"[server]\n{limits}\n"), encoding="utf-8")
    return path


@contextlib.contextmanager
def _server(tmp_path: Path, pki: Path, limits: str) -> Iterator[ServerProcess]:
    """A node process with S1 and S2 registered, S1 with one transfer to S2 (so each school's watch stream
    starts with an event)."""
    proc = ServerProcess(_node_config(tmp_path, pki, limits), tmp_path / "server.log")
    proc.start()
    try:
        with _client(proc, pki, "province-admin") as admin:
            admin.register_school("S1", "Trường S1")
            admin.register_school("S2", "Trường S2")
        with _client(proc, pki, "school-S1") as s1:
            code = new_lookup_code()
            s1.register_record(code, new_national_id(), common_pb2.RECORD_LEVEL_PRIMARY)
            s1.initiate_transfer(code, "S2")
            s1.get_school("S1")  # the node opens its read connection at the first read: before the baseline
        yield proc
    finally:
        proc.stop()


def _client(proc: ServerProcess, pki: Path, identity: str) -> TransferClient:
    return TransferClient(proc.address, ClientTls.from_pki(pki, identity), timeout=10, retry=NO_RETRY)


def _first_event(client: TransferClient) -> Any:
    """Open a watch stream and return it once it delivered its first event (so the node holds it)."""
    call = client.transfers.WatchTransfers(transfers_pb2.WatchTransfersRequest(), timeout=120)
    try:
        next(call)
    except grpc.RpcError as err:
        raise from_rpc_error(err) from None
    return call


def _sees_end(sock: socket.socket) -> bool:
    """Whether the node closed or reset this connection (waiting up to the socket's timeout)."""
    try:
        while sock.recv(4096):  # a TLS alert may come before the end
            pass
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


@needs_proc
@pytest.mark.slow
def test_silent_connections_are_closed_after_the_handshake_timeout_while_calls_are_served(
    tmp_path: Path, pki: Path
) -> None:
    """200 TCP connections that never start TLS: the node answers calls meanwhile, closes every one of them
    once the handshake timeout (2 s here, 120 s in gRPC by default) has passed, and its open files return to
    what they were."""
    with _server(tmp_path, pki, "handshake_timeout_seconds = 2") as proc:
        assert proc.proc is not None
        baseline = _settled_open_files(proc.proc.pid)
        silent = [socket.create_connection(("127.0.0.1", proc.port), timeout=20) for _ in range(200)]
        try:
            with _client(proc, pki, "school-S1") as s1:
                for _ in range(5):
                    assert s1.get_school("S2").code == "S2"
                    assert [t.to_school for t in s1.iter_transfers(transfers_pb2.TRANSFER_DIRECTION_OUTGOING)]
            assert all(_sees_end(sock) for sock in silent), "a silent connection was still open after 20 s"
        finally:
            for sock in silent:
                sock.close()
        _wait_for("the node's open files back to their baseline", lambda: _open_files(proc.proc.pid) <= baseline)


@needs_proc
@pytest.mark.slow
def test_abandoned_watch_streams_are_freed_by_keepalive(tmp_path: Path, pki: Path) -> None:
    """A client process holds its school's every allowed watch stream (the school's next is refused with
    TOO_MANY_STREAMS), then freezes (SIGSTOP: its kernel still acknowledges, nothing answers): other calls are
    served; the node's keepalive ping goes unanswered, it closes the connection, and the streams, the school's
    quota and the node's open files are freed."""
    limits = "max_watch_streams_per_caller = 20\nkeepalive_time_seconds = 1\nkeepalive_timeout_seconds = 1"
    with _server(tmp_path, pki, limits) as proc:
        assert proc.proc is not None
        baseline = _settled_open_files(proc.proc.pid)
        holder = subprocess.Popen(
            [sys.executable, "-c", _HOLDER, proc.address, str(pki), "20"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            ready = _line_within(holder, 30)
            assert ready == b"holding 20\n", ready
            with _client(proc, pki, "school-S1") as s1, _client(proc, pki, "school-S2") as s2:
                with refused("RESOURCE_EXHAUSTED", "TOO_MANY_STREAMS"):
                    _first_event(s1)
                holder.send_signal(signal.SIGSTOP)
                s2_stream = _first_event(s2)  # another caller's quota is its own
                s2_stream.cancel()
                assert s1.get_school("S1").code == "S1"

                def s1_may_watch() -> bool:
                    try:
                        _first_event(s1).cancel()
                        return True
                    except TransferError as err:
                        assert err.reason == "TOO_MANY_STREAMS", err
                        return False

                _wait_for("the frozen client's streams freed", s1_may_watch)
            _wait_for("the node's open files back to their baseline", lambda: _open_files(proc.proc.pid) <= baseline)
        finally:
            holder.kill()
            holder.send_signal(signal.SIGCONT)
            holder.wait(10)
            assert holder.stdout is not None
            holder.stdout.close()


# Opens N watch streams as school S1, reads each one's first event, says so, and waits.
_HOLDER = """
import sys, time
from pathlib import Path
from transfer.client import ClientTls, TransferClient
from transfer.v1 import transfers_pb2
address, pki, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
client = TransferClient(address, ClientTls.from_pki(Path(pki), "school-S1"))
calls = [client.transfers.WatchTransfers(transfers_pb2.WatchTransfersRequest(), timeout=600) for _ in range(n)]
for call in calls:
    next(call)
print(f"holding {n}", flush=True)
time.sleep(600)
"""


def _line_within(proc: subprocess.Popen[bytes], seconds: float) -> bytes:
    assert proc.stdout is not None
    out: list[bytes] = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(seconds)
    return out[0] if out else b"(nothing)"


@needs_proc
@pytest.mark.slow
def test_idle_connections_are_closed(tmp_path: Path, pki: Path) -> None:
    """A client connection without calls is closed by the node after max_connection_idle (3 s here), and the
    client's next call opens a new one without the caller noticing."""
    with _server(tmp_path, pki, "max_connection_idle_seconds = 3") as proc:
        assert proc.proc is not None
        baseline = _settled_open_files(proc.proc.pid)
        with _client(proc, pki, "school-S1") as s1:
            assert s1.get_school("S1").code == "S1"
            assert _open_files(proc.proc.pid) > baseline
            _wait_for("the idle connection closed", lambda: _open_files(proc.proc.pid) <= baseline)
            assert s1.get_school("S1").code == "S1"


def _in_process(tmp_path: Path, pki: Path, clock: FakeClock, limits: str) -> contextlib.AbstractContextManager[Any]:
    path = _node_config(tmp_path, pki, limits)
    return running_node(load_config(path), pki, clock, path)


def test_watch_streams_per_caller_are_limited(tmp_path: Path, pki: Path, clock: FakeClock) -> None:
    """A caller with max_watch_streams_per_caller streams open is refused another with RESOURCE_EXHAUSTED
    (TOO_MANY_STREAMS, its limit in the metadata); other callers are not; closing one of its streams frees
    its place."""
    with _in_process(tmp_path, pki, clock, "max_watch_streams_per_caller = 3") as node:
        schools_and_a_transfer(node)
        s1, s2, s1_admin = node.client("school-S1"), node.client("school-S2"), node.client("school-admin-S1")
        streams = [_first_event(s1) for _ in range(3)]
        with refused("RESOURCE_EXHAUSTED", "TOO_MANY_STREAMS") as caught:
            _first_event(node.client("school-S1"))  # another connection, the same caller
        assert caught[0].metadata == {"limit": "3"}
        others = [_first_event(s2), _first_event(s1_admin)]  # each caller has its own quota
        streams.pop().cancel()

        def may_watch() -> bool:
            try:
                streams.append(_first_event(s1))
                return True
            except TransferError as err:
                assert err.reason == "TOO_MANY_STREAMS", err
                return False

        _wait_for("the closed stream's place freed", may_watch)
        assert node.node is not None and node.node.watch_quota.held("school:S1") == 3
        for call in streams + others:
            call.cancel()
        _wait_for("every stream let go", lambda: node.node is not None and node.node.notifier.subscribers == 0)
        assert node.node.watch_quota.held("school:S1") == 0


def test_streams_per_connection_are_limited(tmp_path: Path, pki: Path, clock: FakeClock) -> None:
    """With max_concurrent_streams calls open on a connection, the client's next call on it waits for one to
    end (here: until its deadline), while a call on another connection is served; once a stream ends, it goes."""
    with _in_process(tmp_path, pki, clock, "max_concurrent_streams = 4") as node:
        schools_and_a_transfer(node)
        s1 = node.client("school-S1")
        streams = [_first_event(s1) for _ in range(4)]
        with pytest.raises(grpc.RpcError) as waited:
            s1.schools.GetSchool(schools_pb2.GetSchoolRequest(code="S1"), timeout=1)
        assert waited.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED  # type: ignore[attr-defined]
        assert node.client("school-S1").get_school("S1").code == "S1"
        streams.pop().cancel()
        assert s1.get_school("S1").code == "S1"
        for call in streams:
            call.cancel()


def test_connections_are_closed_at_their_maximum_age_and_watchers_resume(
    tmp_path: Path, pki: Path, clock: FakeClock
) -> None:
    """A connection older than max_connection_age (1 s here) takes no new calls, and its open watch stream ends
    with UNAVAILABLE after the grace (1 s): the client's watch_transfers resumes from its cursor on a new
    connection, losing and repeating nothing."""
    limits = "max_connection_age_seconds = 1\nmax_connection_age_grace_seconds = 1"
    with _in_process(tmp_path, pki, clock, limits) as node:
        schools_and_a_transfer(node)
        s1 = node.client("school-S1")
        drops: list[TransferError] = []
        events: list[Any] = []
        watch = node.client("school-S2").watch_transfers(max_reconnects=None, on_drop=lambda e, n, d: drops.append(e))

        def follow() -> None:
            for event in watch:
                events.append(event)
                if len(events) == 2:
                    return

        follower = threading.Thread(target=follow, daemon=True)
        follower.start()
        _wait_for("the first event", lambda: bool(events))
        _wait_for("the aged connection cut", lambda: bool(drops))
        assert drops[0].code == grpc.StatusCode.UNAVAILABLE, drops[0]
        s1.cancel_transfer(events[0].transfer.id)
        follower.join(20)
        assert [(e.transfer.id, e.transfer.state) for e in events] == [
            (events[0].transfer.id, transfers_pb2.TRANSFER_STATE_REQUESTED),
            (events[0].transfer.id, transfers_pb2.TRANSFER_STATE_CANCELLED),
        ]


def _ended(sock: socket.socket) -> bool:
    """Whether the node closed or reset this connection already (without waiting)."""
    sock.settimeout(0)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


def test_connections_past_the_cap_are_closed_at_once(tmp_path: Path, pki: Path, clock: FakeClock) -> None:
    """With max_connections connections open (silent ones here, under a handshake timeout of a minute), the node
    closes the next one at once, and refuses calls; when they close, calls are served again."""
    limits = "max_connections = 5\nhandshake_timeout_seconds = 60"
    with _in_process(tmp_path, pki, clock, limits) as node:
        port = int(node.address.rsplit(":", 1)[1])
        silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(6)]
        try:
            _wait_for("one connection closed", lambda: any(_ended(sock) for sock in silent))
            assert sum(_ended(sock) for sock in silent) == 1  # the other five hold the node's every place
            with pytest.raises(TransferError) as info:
                node.client("province-admin", retry=NO_RETRY).get_school("S1")
            assert info.value.code == grpc.StatusCode.UNAVAILABLE
        finally:
            for sock in silent:
                sock.close()
        with refused("NOT_FOUND", "SCHOOL_NOT_FOUND"):
            node.client("province-admin").get_school("S1")


def test_clients_pinging_too_often_are_disconnected(tmp_path: Path, pki: Path, clock: FakeClock) -> None:
    """A client that pings a connection with a quiet watch stream every 0.2 s, where min_client_ping_interval
    allows one every 30 s, gets max_ping_strikes (2) strikes and then GOAWAY: its stream ends UNAVAILABLE
    ("Too many pings")."""
    with _in_process(tmp_path, pki, clock, "min_client_ping_interval_seconds = 30\nmax_ping_strikes = 2") as node:
        schools_and_a_transfer(node)
        tls = ClientTls.from_pki(pki, "school-S1")
        options = [("grpc.keepalive_time_ms", 200), ("grpc.http2.max_pings_without_data", 0)]
        with grpc.secure_channel(node.address, tls.credentials(), options=options) as channel:
            call = transfers_pb2_grpc.TransferServiceStub(channel).WatchTransfers(
                transfers_pb2.WatchTransfersRequest(), timeout=30
            )
            next(call)
            with pytest.raises(grpc.RpcError) as ended:
                next(call)
            assert ended.value.code() == grpc.StatusCode.UNAVAILABLE, ended.value  # type: ignore[attr-defined]
            assert "too many pings" in ended.value.details().lower()  # type: ignore[attr-defined]
