"""The log across crashes and several writer processes sharing one database."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from storage.logscan import LogScanner
from tests.support import ServerProcess, new_lookup_code, new_national_id, write_config
from transfer.client import ClientTls, RetryPolicy, TransferClient
from transfer.client.logverify import LogVerifier
from transfer.server.verify import main as verify_main
from transfer.v1 import common_pb2

pytestmark = pytest.mark.slow

PATIENT = RetryPolicy(attempts=60, initial_backoff=0.1, max_backoff=0.5, total_seconds=30)


def client(address: str, pki: Path, identity: str) -> TransferClient:
    return TransferClient(address, ClientTls.from_pki(pki, identity), timeout=10, retry=PATIENT)


def transfers(address: str, pki: Path, n: int, to: str = "S2") -> int:
    """n transfers S1 -> `to`, each accepted; returns the log entries they made (2 each)."""
    with client(address, pki, "school-S1") as s1, client(address, pki, f"school-{to}") as s2:
        for _ in range(n):
            code = new_lookup_code()
            s1.register_record(code, new_national_id(), common_pb2.RECORD_LEVEL_PRIMARY)
            s2.accept_transfer(s1.initiate_transfer(code, to).transfer.id)
    return 2 * n


@pytest.fixture
def config(tmp_path: Path, pki: Path, database_url: str) -> Path:
    return write_config(tmp_path / "node.toml", pki=pki, database_url=database_url)


@pytest.fixture
def servers(tmp_path: Path, config: Path) -> Iterator[list[ServerProcess]]:
    started: list[ServerProcess] = []
    yield started
    for s in started:
        s.stop()


def test_crash_between_append_and_publish(
    config: Path,
    tmp_path: Path,
    pki: Path,
    database_url: str,
    servers: list[ServerProcess],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Entries committed but not yet covered by a checkpoint when the node dies: the log still
    verifies, the next start covers them with a checkpoint consistent with the old one, and the flow goes on."""
    node = ServerProcess(config, tmp_path / "node.log", env={"TRANSFER_LOG_CHECKPOINT_INTERVAL_SECONDS": "3600"})
    servers.append(node)
    node.start()
    with client(node.address, pki, "province-admin") as admin:
        for code in ("S1", "S2"):
            admin.register_school(code, code)
    state = tmp_path / "trusted"
    entries = transfers(node.address, pki, 2)
    with client(node.address, pki, "auditor") as auditor:
        trusted = LogVerifier(auditor, (pki / "log.vkey").read_text().strip(), state).refresh()
    assert trusted.size < entries  # published at start-up, before these entries
    entries += transfers(node.address, pki, 3)
    node.kill()  # no shutdown: the last entries have no checkpoint

    scanner = LogScanner(database_url)
    try:
        assert scanner.leaf_count() == entries
        assert max(c.size for c in scanner.checkpoints()) < entries
    finally:
        scanner.close()
    assert verify_main(["--config", str(config), "--quiet"]) == 0
    capsys.readouterr()

    node.start()  # publishes a checkpoint at start-up
    entries += transfers(node.address, pki, 1)
    with client(node.address, pki, "auditor") as auditor:
        verifier = LogVerifier(auditor, (pki / "log.vkey").read_text().strip(), state)
        assert verifier.refresh().size >= entries - 2  # consistent with what it trusted before the crash
        verifier.audit()
    assert node.terminate() == 0  # and a final checkpoint covers everything
    assert verify_main(["--config", str(config), "--quiet"]) == 0
    assert f"log verified: {entries} entries" in capsys.readouterr().out


def test_concurrent_writer_processes_share_one_log(
    config: Path, tmp_path: Path, pki: Path, servers: list[ServerProcess], capsys: pytest.CaptureFixture[str]
) -> None:
    """Two node processes on one database, each under concurrent clients: indices stay contiguous
    with no duplicate, every checkpoint either signed is consistent with the others, and all verifies."""
    for name in ("a", "b"):
        servers.append(ServerProcess(config, tmp_path / f"{name}.log"))
    for s in servers:
        s.port = 0
        s.start()
    with client(servers[0].address, pki, "province-admin") as admin:
        for code in ("S1", "S2", "S3"):
            admin.register_school(code, code)
    jobs = [(s.address, to) for s in servers for to in ("S2", "S3") for _ in range(2)]
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(job: tuple[str, str]) -> int:
        try:
            return transfers(job[0], pki, 5, to=job[1])
        except BaseException as exc:
            with lock:
                errors.append(exc)
            raise

    with ThreadPoolExecutor(len(jobs)) as pool:
        made = sum(pool.map(run, jobs))
    assert not errors
    for s in servers:
        assert s.terminate() == 0
    assert verify_main(["--config", str(config), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"log verified: {made} entries" in out
    checkpoints = int(out.split("subtree hashes, ")[1].split(" checkpoints")[0])
    assert checkpoints >= 2
