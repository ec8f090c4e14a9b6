"""A node as a real process: killed, restarted, stopped with SIGTERM, and its logs."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.support import ServerProcess, new_lookup_code, new_national_id, write_config
from tests.support import process_client as client
from transfer.client import NO_RETRY, TransferError
from transfer.v1 import common_pb2, transfers_pb2

pytestmark = pytest.mark.slow


@pytest.fixture
def server(tmp_path: Path, pki: Path, database_url: str) -> Iterator[ServerProcess]:
    cfg = write_config(tmp_path / "node.toml", pki=pki, database_url=database_url)
    proc = ServerProcess(cfg, tmp_path / "server.log")
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def setup_schools(server: ServerProcess, pki: Path) -> None:
    with client(server, pki, "province-admin") as admin:
        for code in ("S1", "S2"):
            admin.register_school(code, f"Trường {code}")


def test_killed_mid_flow_then_restarted(server: ServerProcess, pki: Path) -> None:
    """SIGKILL between initiate and accept: after restart the transfer is there, an accept sent
    while the node was down completes by retry, and a watcher resumes without loss or repeats."""
    setup_schools(server, pki)
    s1, s2 = client(server, pki, "school-S1"), client(server, pki, "school-S2")
    code = new_lookup_code()
    s1.register_record(code, new_national_id(), common_pb2.RECORD_LEVEL_PRIMARY)
    t = s1.initiate_transfer(code, "S2").transfer

    seen: list[Any] = []
    watcher_done = threading.Event()

    def watch() -> None:
        try:
            for ev in client(server, pki, "school-S2").watch_transfers(max_reconnects=100):
                seen.append(ev)
                if len(seen) == 2:
                    break
        finally:
            watcher_done.set()

    threading.Thread(target=watch, daemon=True).start()
    deadline = time.monotonic() + 10
    while not seen and time.monotonic() < deadline:
        time.sleep(0.05)
    assert seen, "watcher saw the REQUESTED event before the crash"

    server.kill()
    accepted: list[Any] = []
    acceptor = threading.Thread(target=lambda: accepted.append(s2.accept_transfer(t.id)), daemon=True)
    acceptor.start()  # retries while the node is down
    time.sleep(0.5)
    server.start()
    acceptor.join(30)
    assert accepted and accepted[0].transfer.state == transfers_pb2.TRANSFER_STATE_ACCEPTED
    assert s2.get_record(code).custodian_school == "S2"
    assert watcher_done.wait(30)
    assert [(e.transfer.id, e.transfer.state) for e in seen] == [
        (t.id, transfers_pb2.TRANSFER_STATE_REQUESTED),
        (t.id, transfers_pb2.TRANSFER_STATE_ACCEPTED),
    ]
    s1.close()
    s2.close()


def test_sigterm_finishes_in_flight_calls(server: ServerProcess, pki: Path) -> None:
    """SIGTERM during a burst of initiates: the node exits 0; calls it refused while stopping
    fail with a retryable code, and retrying clients finish every transfer exactly once after restart."""
    setup_schools(server, pki)
    codes = [new_lookup_code() for _ in range(60)]
    with client(server, pki, "school-S1") as s1:
        for code in codes:
            s1.register_record(code, new_national_id(), common_pb2.RECORD_LEVEL_PRIMARY)
    once = [client(server, pki, "school-S1", retry=NO_RETRY) for _ in range(6)]
    patient = [client(server, pki, "school-S1") for _ in range(6)]

    request_ids = [str(uuid.uuid4()) for _ in codes]

    def send(i: int) -> Any:
        c = (once if i % 2 else patient)[i % 6]
        try:
            return c.initiate_transfer(codes[i], "S2", request_id=request_ids[i])
        except TransferError as err:
            return err

    with ThreadPoolExecutor(12) as pool:
        futures = [pool.submit(send, i) for i in range(len(codes))]
        time.sleep(0.1)
        assert server.terminate() == 0
        assert '"node stopped"' in server.log_path.read_text()
        server.start()
        outcomes = [f.result(60) for f in futures]
    failed = [o for o in outcomes if isinstance(o, TransferError)]
    assert all(e.transient for e in failed), {(e.code.name, e.reason) for e in failed}
    assert not [o for i, o in enumerate(outcomes) if i % 2 == 0 and isinstance(o, TransferError)]
    with client(server, pki, "school-S1") as s1:
        for i, o in enumerate(outcomes):  # one-shot callers retry by hand, keeping their request_id
            if isinstance(o, TransferError):
                s1.initiate_transfer(codes[i], "S2", request_id=request_ids[i])
        stored = [t.lookup_code for t in s1.iter_transfers(transfers_pb2.TRANSFER_DIRECTION_OUTGOING)]
    assert sorted(stored) == sorted(codes)
    for c in once + patient:
        c.close()


def test_logs_are_json_without_personal_data(server: ServerProcess, pki: Path) -> None:
    """Every log line is one JSON object, and no national id or school name reaches the log."""
    setup_schools(server, pki)
    nid = "079123456789"
    with client(server, pki, "school-S1") as s1, client(server, pki, "school-S2") as s2:
        code = new_lookup_code()
        s1.register_record(code, nid, common_pb2.RECORD_LEVEL_PRIMARY)
        t = s1.initiate_transfer(code, "S2").transfer
        with pytest.raises(TransferError):
            s2.reject_transfer(t.id, "")
        s2.reject_transfer(t.id, "Lý do riêng tư của gia đình")
        with pytest.raises(TransferError):
            s1.register_record(code, nid, common_pb2.RECORD_LEVEL_PRIMARY)
    server.terminate()
    lines = server.log_path.read_text(encoding="utf-8").splitlines()
    assert lines
    for line in lines:
        entry = json.loads(line)
        assert {"ts", "level", "logger", "msg"} <= entry.keys()
    text = "\n".join(lines)
    assert nid not in text
    assert "Trường" not in text and "riêng tư" not in text
