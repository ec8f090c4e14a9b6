"""The database failing under a running node: clear transient errors, nothing
acknowledged lost, nothing half-written, and the node recovers by itself."""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.federation import free_port, peer_block, wait_for
from tests.support import (
    FakeClock,
    ServerProcess,
    assert_log_verifies,
    db_snapshot,
    new_lookup_code,
    new_national_id,
    quiet_node,
    running_node,
    write_config,
)
from transfer.client import NO_RETRY, ClientTls, TransferClient, TransferError
from transfer.devpki import make_dev_pki
from transfer.server.config import load
from transfer.v1 import common_pb2

PRIMARY = common_pb2.RECORD_LEVEL_PRIMARY

# Holds SQLite's write lock (BEGIN IMMEDIATE) until its stdin closes: another process
# writing to the node's database, as transfer-import does while the node runs.
_HOLD_WRITE_LOCK = (
    "import sqlite3, sys\n"
    "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
    "c.execute('BEGIN IMMEDIATE')\n"
    "print('locked', flush=True)\n"
    "sys.stdin.read()\n"
    "c.execute('ROLLBACK')\n"
)


@contextlib.contextmanager
def _held_by_another_process(script: str, database_url: str, ready: str) -> Iterator[None]:
    """Run `script` on the SQLite file in a process of its own until the block ends (its stdin closes)."""
    path = database_url.removeprefix("sqlite:///")
    holder = subprocess.Popen(
        [sys.executable, "-c", script, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == ready
        yield
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(10)
        if holder.stdout is not None:
            holder.stdout.close()


def write_lock_held(database_url: str) -> contextlib.AbstractContextManager[None]:
    return _held_by_another_process(_HOLD_WRITE_LOCK, database_url, "locked")


# Another process recovering the database's WAL, as the first to open it after a crash does, until its
# stdin closes: it holds SQLite's WAL write, checkpoint and recovery locks (bytes 120-122 of the -shm
# file, https://sqlite.org/walformat.html) and has zeroed both copies of the wal-index header, which
# sends every reader to recovery. Readers wait for it (the busy timeout), then give up with
# SQLITE_BUSY_RECOVERY; once it is gone, the next reader recovers the WAL itself.
_RECOVER_WAL = (
    "import fcntl, os, sys, time\n"
    "fd = os.open(sys.argv[1] + '-shm', os.O_RDWR)\n"
    "for _ in range(200):\n"
    "    try:\n"
    "        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 3, 120)\n"
    "        break\n"
    "    except OSError:\n"
    "        time.sleep(0.05)\n"
    "else:\n"
    "    sys.exit('the WAL locks stayed taken')\n"
    "os.pwrite(fd, bytes(96), 0)\n"
    "print('recovering', flush=True)\n"
    "sys.stdin.read()\n"
)


def wal_recovery_elsewhere(database_url: str) -> contextlib.AbstractContextManager[None]:
    return _held_by_another_process(_RECOVER_WAL, database_url, "recovering")


def _outcome(call: Any, *args: Any, **kwargs: Any) -> Any:
    """What `call(*args, **kwargs)` returned, or the TransferError it raised."""
    try:
        return call(*args, **kwargs)
    except TransferError as exc:
        return exc


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_write_lock_held_elsewhere_answers_unavailable_then_the_retry_completes(
    tmp_path: Path, pki: Path, database_url: str, clock: FakeClock
) -> None:
    """Another process holds the SQLite write lock past the busy timeout: the write answers UNAVAILABLE (DATABASE_BUSY), having written nothing, and its retry completes once the lock is free."""
    with quiet_node(tmp_path, pki, database_url, clock) as node:
        s1 = node.client("school-S1", retry=NO_RETRY)
        code, nid, request_id = new_lookup_code(), new_national_id(), str(uuid.uuid4())
        before = db_snapshot(database_url)
        with write_lock_held(database_url):
            refused = _outcome(s1.register_record, code, nid, PRIMARY, request_id=request_id)
        assert isinstance(refused, TransferError), refused
        assert (refused.code.name, refused.reason) == ("UNAVAILABLE", "DATABASE_BUSY"), refused
        assert db_snapshot(database_url) == before, "a refused write changed the database"
        record = s1.register_record(code, nid, PRIMARY, request_id=request_id)
        assert record.custodian_school == "S1"
        assert s1.register_record(code, nid, PRIMARY, request_id=request_id) == record  # a repeat


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_reads_are_served_while_the_writer_waits_for_the_write_lock(
    tmp_path: Path, pki: Path, database_url: str, clock: FakeClock
) -> None:
    """While the writer waits for a write lock another process holds, the node keeps serving reads, and the waiting write completes once the lock is released."""
    with quiet_node(tmp_path, pki, database_url, clock) as node:
        assert node.node is not None and node.node.db is not None
        s1 = node.client("school-S1", retry=NO_RETRY)
        known = new_lookup_code()
        s1.register_record(known, new_national_id(), PRIMARY)

        db = node.node.db
        write = db.write
        writing = threading.Event()

        async def spied_write(fn: Any, *, busy: bool = False) -> Any:  # observes, changes nothing
            writing.set()
            return await write(fn, busy=busy)

        db.write = spied_write  # type: ignore[method-assign]
        code = new_lookup_code()
        results: list[Any] = []
        with write_lock_held(database_url):
            writer = threading.Thread(
                target=lambda: results.append(_outcome(s1.register_record, code, new_national_id(), PRIMARY))
            )
            writer.start()
            assert writing.wait(20), "the write never reached the database"
            # The lock stays held until this read is answered: a node that waits for the
            # lock on its event loop answers it only after the write gave up.
            assert s1.get_record(known).lookup_code == known
        writer.join(30)
        assert not writer.is_alive()
        assert results and not isinstance(results[0], TransferError), results
        assert s1.get_record(code).custodian_school == "S1"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_reads_while_another_process_recovers_the_wal_answer_unavailable_then_the_retry_succeeds(
    tmp_path: Path,
    pki: Path,
    database_url: str,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another process holds the SQLite database's locks to recover its WAL: reads (GetRecord, ListRecords, a
    watch stream's catch-up) answer UNAVAILABLE (DATABASE_BUSY) once the busy timeout has passed, not INTERNAL,
    each logged in one line without a traceback; once that process is gone, the same reads succeed and
    the node writes again, without a restart, and its log verifies."""
    monkeypatch.setattr("storage.database.BUSY_TIMEOUT_MS", 200)  # the fault is real; the wait for it shorter
    caplog.set_level(logging.INFO)
    with quiet_node(tmp_path, pki, database_url, clock) as node:
        s1 = node.client("school-S1", retry=NO_RETRY)
        code = new_lookup_code()
        s1.register_record(code, new_national_id(), PRIMARY)
        mark = len(caplog.records)
        with wal_recovery_elsewhere(database_url):
            refusals = [
                _outcome(s1.get_record, code),
                _outcome(s1.list_records),
                _outcome(lambda: next(s1.watch_transfers("S1", resume=False))),
            ]
        logged = caplog.records[mark:]
        for refused in refusals:
            assert isinstance(refused, TransferError), refused
            assert (refused.code.name, refused.reason) == ("UNAVAILABLE", "DATABASE_BUSY"), refused
        assert [r for r in logged if r.exc_info] == [], "a failed read was logged with its traceback"
        assert [(r.getMessage(), getattr(r, "reason", "")) for r in logged if r.name == "transfer.rpc"] == [
            ("refused", "DATABASE_BUSY")
        ] * 3

        assert s1.get_record(code).lookup_code == code
        assert [r.lookup_code for r in s1.iter_records()] == [code]
        s1.register_record(new_lookup_code(), new_national_id(), PRIMARY)
        assert node.node is not None
        node.run(node.node.publish_checkpoint)
        assert node.config_path is not None
    assert_log_verifies(node.config_path)


def _logged_since(caplog: pytest.LogCaptureFixture, mark: int, logger: str) -> list[logging.LogRecord]:
    return [r for r in list(caplog.records)[mark:] if r.name == logger and r.levelno >= logging.ERROR]


def _config_with_an_absent_peer(tmp_path: Path, pki: Path, database_url: str) -> Path:
    """A node's configuration with province 79 as its peer, at a port where nobody listens."""
    pki79 = tmp_path / "pki79"
    make_dev_pki(pki79, "79", ["D1"])
    extra = f'\n[seal]\nkey_file = "{pki / "seal.key"}"\n' + peer_block(pki79, "79", free_port())
    return write_config(tmp_path / "node.toml", pki=pki, database_url=database_url, extra=extra)


def _retried(caplog: pytest.LogCaptureFixture, mark: int) -> list[logging.LogRecord]:
    """The dispatcher's records, since `mark`, of a delivery attempt that failed and will be retried."""
    return [r for r in list(caplog.records)[mark:] if r.getMessage() == "delivery will be retried"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_background_readers_say_once_that_the_database_cannot_be_read_and_carry_on(
    tmp_path: Path,
    pki: Path,
    database_url: str,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While reads fail (another process recovering the WAL), the federation dispatcher and the checkpoint
    publisher, which read the outbox and the log every second or so, each log one line without a traceback,
    not one per failed round; both carry on once the database can be read again: a checkpoint covers the
    entries made after, and the dispatcher tries to deliver a message queued after."""
    monkeypatch.setattr("storage.database.BUSY_TIMEOUT_MS", 100)  # the fault is real; the wait for it shorter
    caplog.set_level(logging.INFO)
    path = _config_with_an_absent_peer(tmp_path, pki, database_url)
    config = load(path, env={"TRANSFER_LOG_LATEST_CHECKPOINT_FILE": str(tmp_path / "latest-checkpoint")})
    with running_node(config, pki, clock, path) as node:
        node.client("province-admin").register_school("S1", "Trường S1")
        node.client("province-admin").register_school("S2", "Trường S2")
        s1 = node.client("school-S1", retry=NO_RETRY)
        signed = wait_for("a first checkpoint", s1.get_checkpoint, timeout=20).tree_size
        with wal_recovery_elsewhere(database_url):
            mark, started = len(caplog.records), time.monotonic()
            # The dispatcher looks at an empty outbox every 5 s; once a look failed, it looks again every second.
            wait_for("the dispatcher to fail", lambda: _logged_since(caplog, mark, "transfer.peers"), timeout=15)
            time.sleep(2)  # two more looks, and the publisher tries about every 0.3 s
            logged, lasted = list(caplog.records)[mark:], time.monotonic() - started
        assert [r for r in logged if r.exc_info] == [], "a failed read was logged with its traceback"
        for logger, message in [
            ("transfer.peers", "dispatcher loop failed: database unavailable; retrying"),
            ("transfer.node", "checkpoint publication failed: database unavailable; will retry"),
        ]:
            lines = [
                (r.getMessage(), getattr(r, "reason", ""))
                for r in logged
                if r.name == logger and r.levelno >= logging.ERROR
            ]
            # one line, and one more per UNAVAILABLE_LOG_SECONDS (10 s) should the wait have lasted that long
            assert lines[:1] == [(message, "DATABASE_BUSY")] and len(lines) <= 1 + lasted // 10, lines

        mark = len(caplog.records)
        code = new_lookup_code()
        s1.register_record(code, new_national_id(), PRIMARY)
        s1.initiate_transfer(code, "D1", "79")
        wait_for("a checkpoint of the entries made after", lambda: s1.get_checkpoint().tree_size > signed)
        wait_for("a delivery attempt", lambda: _retried(caplog, mark))


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_delivery_outcomes_that_cannot_be_recorded_are_said_once_and_retried(
    tmp_path: Path,
    pki: Path,
    database_url: str,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While another process holds the write lock, the dispatcher's attempts to a peer that is down cannot
    record their outcome: each such failure was logged with two tracebacks ("delivery attempt crashed",
    "cannot record the crashed attempt"); it is one line now and then, and the message is retried once the
    database can be written again."""
    monkeypatch.setattr("storage.database.BUSY_TIMEOUT_MS", 100)  # the fault is real; the wait for it shorter
    caplog.set_level(logging.INFO)
    path = _config_with_an_absent_peer(tmp_path, pki, database_url)

    with running_node(load(path), pki, clock, path) as node:
        node.client("province-admin").register_school("S1", "Trường S1")
        s1 = node.client("school-S1", retry=NO_RETRY)
        code = new_lookup_code()
        s1.register_record(code, new_national_id(), PRIMARY)
        mark = len(caplog.records)
        s1.initiate_transfer(code, "D1", "79")
        wait_for("the first attempt's outcome", lambda: _retried(caplog, mark), timeout=20)
        with write_lock_held(database_url):
            mark, started = len(caplog.records), time.monotonic()
            clock.advance(timedelta(hours=1))  # the retry is due; it and the next cannot record their outcome
            wait_for(
                "an outcome that cannot be recorded", lambda: _logged_since(caplog, mark, "transfer.peers"), timeout=30
            )
            time.sleep(1)
            errors, lasted = _logged_since(caplog, mark, "transfer.peers"), time.monotonic() - started
        assert [r.getMessage() for r in errors if r.exc_info] == [], "an unrecorded outcome was logged with a traceback"
        lines = [(r.getMessage(), getattr(r, "reason", "")) for r in errors]
        assert lines[:1] == [
            ("delivery outcome not recorded: database unavailable; the message is retried later", "DATABASE_BUSY")
        ]
        assert len(lines) <= 1 + lasted // 10, lines
        mark = len(caplog.records)
        clock.advance(timedelta(hours=1))
        wait_for("an outcome recorded again", lambda: _retried(caplog, mark), timeout=30)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A small tmpfs of its own, to fill up (needs the right to mount: root)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount_point)], capture_output=True, check=False
    )
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True, check=False)


def _fill(directory: Path) -> Path:
    """Fill the file system of `directory` up to the last block; the file to delete to free it."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for _ in range(1_000_000):  # bounded: 4 GB at most
            os.write(fd, b"\0" * 4096)
    except OSError:  # ENOSPC: full
        pass
    finally:
        os.close(fd)
    return filler


def test_a_full_disk_answers_unavailable_and_the_node_recovers_when_space_is_freed(
    tmp_path: Path, pki: Path, clock: FakeClock, small_disk: Path
) -> None:
    """The SQLite database's disk fills up: writes answer UNAVAILABLE (DATABASE_UNAVAILABLE), never INTERNAL, reads go on, nothing acknowledged is lost, and once space is freed the failed writes' retries complete and the log verifies."""
    database_url = f"sqlite:///{small_disk / 'node.db'}"
    with quiet_node(tmp_path, pki, database_url, clock) as node:
        s1 = node.client("school-S1", retry=NO_RETRY)
        acknowledged = [new_lookup_code() for _ in range(3)]
        for code in acknowledged:
            s1.register_record(code, new_national_id(), PRIMARY)
        filler = _fill(small_disk)

        refused: list[tuple[str, str, str, TransferError]] = []
        for _ in range(200):  # the first writes may still fit in pages the database holds
            code, nid, request_id = new_lookup_code(), new_national_id(), str(uuid.uuid4())
            outcome = _outcome(s1.register_record, code, nid, PRIMARY, request_id=request_id)
            if isinstance(outcome, TransferError):
                refused.append((code, nid, request_id, outcome))
                if len(refused) == 5:
                    break
            else:
                acknowledged.append(code)
        assert refused, "the full disk refused no write"
        for *_, err in refused:
            assert (err.code.name, err.reason) == ("UNAVAILABLE", "DATABASE_UNAVAILABLE"), err
        assert s1.get_record(acknowledged[0]).lookup_code == acknowledged[0]  # reads go on

        filler.unlink()
        for code, nid, request_id, _ in refused:
            assert s1.register_record(code, nid, PRIMARY, request_id=request_id).lookup_code == code
        for code in acknowledged:
            assert s1.get_record(code).lookup_code == code
        assert node.node is not None
        node.run(node.node.publish_checkpoint)
        assert node.config_path is not None
    assert_log_verifies(node.config_path)


class _Relay:
    """A TCP relay between the node and PostgreSQL on a loopback port, for injecting faults into the
    link: subclasses say what `_relay` does with the bytes of one connection (both ends are closed
    after it), and may refuse to connect one (`_admit`)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self._admit(client):
                server = socket.create_connection(self.upstream)
                threading.Thread(target=self._serve, args=(client, server), daemon=True).start()

    def _admit(self, client: socket.socket) -> bool:
        return True

    def _serve(self, client: socket.socket, server: socket.socket) -> None:
        try:
            self._relay(client, server)
        except OSError:
            return
        finally:
            for end in (client, server):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
                end.close()

    def _relay(self, client: socket.socket, server: socket.socket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self._closed = True
        self.listener.close()


class _CommitCutter(_Relay):
    """Once armed, the writer's next COMMIT reaches the server, and the link breaks before its answer
    comes back."""

    COMMIT = b"Q\x00\x00\x00\x0bCOMMIT\x00"  # a simple-protocol COMMIT, as psycopg sends it
    WRITE_LOCK = b"pg_advisory_xact_lock"  # only the writer's connection takes it

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.armed = threading.Event()
        self.cut = threading.Event()
        super().__init__(upstream)

    def _relay(self, client: socket.socket, server: socket.socket) -> None:
        writer = False
        while not self._closed:
            ready, _, _ = select.select([client, server], [], [], 0.5)
            for end in ready:
                data = end.recv(65536)
                if not data:
                    return
                if end is server:
                    client.sendall(data)
                    continue
                writer = writer or self.WRITE_LOCK in data
                server.sendall(data)
                if writer and self.COMMIT in data and self.armed.is_set():
                    self.armed.clear()
                    server.settimeout(10)
                    server.recv(65536)  # the server's answer: it committed; the node never hears it
                    self.cut.set()
                    return


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # a link to a database server
def test_a_commit_whose_answer_is_lost_is_reported_by_its_repeat_and_reaches_watchers(
    tmp_path: Path, pki: Path, database_url: str, clock: FakeClock
) -> None:
    """The link to PostgreSQL breaks after COMMIT went out: the call answers UNAVAILABLE, its change stands, a watcher sees it with no later commit, its repeat answers the same, and the log verifies."""
    url = urllib.parse.urlsplit(database_url)
    cutter = _CommitCutter((url.hostname or "127.0.0.1", url.port or 5432))
    relayed = url._replace(netloc=f"{url.username}@127.0.0.1:{cutter.port}", query="sslmode=disable").geturl()
    try:
        with quiet_node(tmp_path, pki, relayed, clock) as node:
            s1 = node.client("school-S1", retry=NO_RETRY)
            first, second = new_lookup_code(), new_lookup_code()
            for code in (first, second):
                s1.register_record(code, new_national_id(), PRIMARY)
            seen: list[str] = []
            watching = threading.Event()

            def watch() -> None:
                with contextlib.suppress(TransferError, ValueError):  # ValueError: the client closed at teardown
                    for event in node.client("school-S2").watch_transfers(reopen_after=600):
                        seen.append(event.transfer.id)
                        watching.set()
                        if len(seen) == 2:
                            return

            threading.Thread(target=watch, daemon=True).start()
            s1.initiate_transfer(first, "S2")
            assert watching.wait(20), "the watcher saw no event"

            request_id = str(uuid.uuid4())
            cutter.armed.set()
            lost = _outcome(s1.initiate_transfer, second, "S2", request_id=request_id)
            assert cutter.cut.is_set(), "the writer's COMMIT never went out"
            assert isinstance(lost, TransferError), lost
            assert (lost.code.name, lost.reason) == ("UNAVAILABLE", "DATABASE_UNAVAILABLE"), lost
            transfer_id = s1.get_record(second).open_transfer_id
            assert transfer_id, "the committed change is not there"
            for _ in range(200):  # the watchers were woken to re-read: no later commit is needed
                if len(seen) == 2:
                    break
                threading.Event().wait(0.1)
            assert seen[1:] == [transfer_id]
            repeat = s1.initiate_transfer(second, "S2", request_id=request_id).transfer
            assert repeat.id == transfer_id
            assert node.node is not None
            node.run(node.node.publish_checkpoint)
            assert node.config_path is not None
        assert_log_verifies(node.config_path)
    finally:
        cutter.close()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_postgresql_server_out_of_disk_answers_unavailable_then_the_retry_completes(
    tmp_path: Path, pki: Path, database_url: str, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """PostgreSQL refuses writes for want of disk (SQLSTATE 53100; a trigger stands in for the full disk): the
    write answers UNAVAILABLE (DATABASE_UNAVAILABLE) rather than INTERNAL, having written nothing, the
    node says so in one log line rather than a traceback per failed write, and the retry with the same
    request id completes once there is room again."""
    import psycopg

    with quiet_node(tmp_path, pki, database_url, clock) as node:
        s1 = node.client("school-S1", retry=NO_RETRY)
        code, nid, request_id = new_lookup_code(), new_national_id(), str(uuid.uuid4())
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(
                "CREATE FUNCTION disk_full() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION"
                " 'could not extend file: No space left on device' USING ERRCODE = 'disk_full'; END $$"
            )
            conn.execute("CREATE TRIGGER disk_full BEFORE INSERT ON records FOR EACH ROW EXECUTE FUNCTION disk_full()")
            before = db_snapshot(database_url)
            refused = _outcome(s1.register_record, code, nid, PRIMARY, request_id=request_id)
            assert isinstance(refused, TransferError), refused
            assert (refused.code.name, refused.reason) == ("UNAVAILABLE", "DATABASE_UNAVAILABLE"), refused
            assert db_snapshot(database_url) == before, "a refused write changed the database"
            for _ in range(20):
                again = _outcome(s1.register_record, new_lookup_code(), new_national_id(), PRIMARY)
                assert isinstance(again, TransferError) and again.reason == "DATABASE_UNAVAILABLE", again
            conn.execute("DROP TRIGGER disk_full ON records")
        failures = [r for r in caplog.records if r.name == "storage.writer"]
        assert len(failures) == 1 and failures[0].exc_info is None, failures
        record = s1.register_record(code, nid, PRIMARY, request_id=request_id)
        assert record.custodian_school == "S1"
        assert s1.get_record(code) == record


class _SilentLink(_Relay):
    """A relay that can go silent, as a partition or a dead host does: bytes are swallowed both ways,
    nothing is closed, new connections are accepted and never answered. Once armed, the link goes
    silent when the server answers that it took the write lock (the answer names the column
    pg_advisory_xact_lock), which it keeps in an open transaction. When the link comes back,
    connections made since are relayed; those it silenced stay silent, their ends at the server open
    (the node's close of them was lost too), until `close`."""

    WRITE_LOCK = _CommitCutter.WRITE_LOCK

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.armed = threading.Event()
        self.silent = threading.Event()
        self._held: list[socket.socket] = []  # accepted while silent: never answered
        super().__init__(upstream)

    def _admit(self, client: socket.socket) -> bool:
        if self.silent.is_set():
            self._held.append(client)
            return False
        return True

    def _relay(self, client: socket.socket, server: socket.socket) -> None:
        ends, lost = [client, server], False
        while not self._closed:
            ready, _, _ = select.select(ends, [], [], 0.2)
            for end in ready:
                data = end.recv(65536)
                if end is server and self.WRITE_LOCK in data and self.armed.is_set():  # the lock is taken
                    self.armed.clear()
                    self.silent.set()
                lost = lost or self.silent.is_set()
                if lost:  # swallowed; the node closing its end is not heard of either
                    if not data:
                        if end is server:
                            return
                        ends.remove(client)
                    continue
                if not data:
                    return
                (client if end is server else server).sendall(data)

    def close(self) -> None:
        super().close()
        for held in self._held:
            held.close()


def _log_size(database_url: str) -> int:
    import psycopg

    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM log_leaves").fetchone()
        assert row is not None
        return int(row[0])


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # a link to a database server
def test_a_silent_link_to_postgresql_answers_unavailable_within_the_bound_then_the_retry_completes_once(
    tmp_path: Path, pki: Path, database_url: str
) -> None:
    """The link to PostgreSQL goes silent mid-transaction (no answer, no reset): a write and a read answer
    UNAVAILABLE (DATABASE_UNAVAILABLE) after database.unavailable_after_seconds, not at the client's
    deadline; once the link is back, the write's retry with the same request id completes, once (the
    server ended the transaction the silence left holding the write lock), and the log verifies."""
    url = urllib.parse.urlsplit(database_url)
    link = _SilentLink((url.hostname or "127.0.0.1", url.port or 5432))
    relayed = url._replace(netloc=f"{url.username}@127.0.0.1:{link.port}", query="sslmode=disable").geturl()
    config_path = write_config(tmp_path / "node.toml", pki=pki, database_url=relayed)
    quiet = {"TRANSFER_LOG_CHECKPOINT_INTERVAL_SECONDS": "3600"}  # the test's transactions are the only ones
    server = ServerProcess(
        config_path, tmp_path / "server.log", env={"TRANSFER_DATABASE_UNAVAILABLE_AFTER_SECONDS": "3", **quiet}
    )
    clients: list[TransferClient] = []
    try:
        server.start()
        clients += [
            TransferClient(server.address, ClientTls.from_pki(pki, who), timeout=30, retry=NO_RETRY)
            for who in ("province-admin", "school-S1")
        ]
        admin, s1 = clients
        admin.register_school("S1", "Trường S1")
        admin.register_school("S2", "Trường S2")
        first, second = new_lookup_code(), new_lookup_code()
        for code in (first, second):
            s1.register_record(code, new_national_id(), PRIMARY)
        before = _log_size(database_url)
        s1.initiate_transfer(first, "S2")
        logged = _log_size(database_url) - before  # the entries one transfer adds
        assert logged > 0

        request_id = str(uuid.uuid4())
        link.armed.set()
        started = time.monotonic()
        silenced = _outcome(s1.initiate_transfer, second, "S2", request_id=request_id)
        waited = time.monotonic() - started
        assert link.silent.is_set(), "the writer never took the write lock"
        assert isinstance(silenced, TransferError), silenced
        assert (silenced.code.name, silenced.reason) == ("UNAVAILABLE", "DATABASE_UNAVAILABLE"), silenced
        assert waited < 20, f"answered after {waited:.1f} s"
        started = time.monotonic()
        unread = _outcome(s1.get_record, first)
        waited = time.monotonic() - started
        assert isinstance(unread, TransferError), unread
        assert (unread.code.name, unread.reason) == ("UNAVAILABLE", "DATABASE_UNAVAILABLE"), unread
        assert waited < 20, f"answered after {waited:.1f} s"

        link.silent.clear()  # the link is back
        transfer = s1.initiate_transfer(second, "S2", request_id=request_id).transfer
        assert s1.initiate_transfer(second, "S2", request_id=request_id).transfer.id == transfer.id  # a repeat
        assert s1.get_record(second).open_transfer_id == transfer.id
        assert _log_size(database_url) == before + 2 * logged, "the transfer was not made exactly once"
        assert server.terminate() == 0
        assert_log_verifies(config_path)
    finally:
        for c in clients:
            c.close()
        server.stop()
        link.close()


class _Switch(_Relay):
    """A link to PostgreSQL that can be taken down (`down` set: its connections are cut and new ones
    closed at once, as when the server stops or the network to it fails) and brought back."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.down = threading.Event()
        super().__init__(upstream)

    def _admit(self, client: socket.socket) -> bool:
        if self.down.is_set():
            client.close()
            return False
        return True

    def _relay(self, client: socket.socket, server: socket.socket) -> None:
        while not self._closed and not self.down.is_set():
            ready, _, _ = select.select([client, server], [], [], 0.1)
            for end in ready:
                data = end.recv(65536)
                if not data:
                    return
                (server if end is client else client).sendall(data)


def _switchable(database_url: str) -> tuple[_Switch | None, str]:
    """The URL a node is given for `database_url`: SQLite's file itself (no switch), or the PostgreSQL database
    reached through a new _Switch that can take the link down (the caller closes it)."""
    if not database_url.startswith("postgresql"):
        return None, database_url
    parts = urllib.parse.urlsplit(database_url)
    switch = _Switch((parts.hostname or "127.0.0.1", parts.port or 5432))
    return switch, parts._replace(netloc=f"{parts.username}@127.0.0.1:{switch.port}", query="sslmode=disable").geturl()


@contextlib.contextmanager
def _link_down(switch: _Switch) -> Iterator[None]:
    switch.down.set()
    try:
        yield
    finally:
        switch.down.clear()


def _health_status(config_path: Path, service: str) -> int:
    """transfer-healthcheck's exit status for `service` (0: SERVING)."""
    from transfer.server.healthcheck import main as healthcheck_main

    return healthcheck_main(["--config", str(config_path), "--service", service, "--timeout", "5"])


TRANSFER_SERVICE = "transfer.v1.TransferService"
LOG_SERVICE = "transfer.v1.LogService"


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_readiness_and_the_write_services_follow_the_database_and_liveness_stays_serving(
    tmp_path: Path,
    pki: Path,
    database_url: str,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The database stops answering (SQLite: another process holds the write lock; PostgreSQL: the link
    to the server is cut): the periodic probe turns `readiness` and the write services NOT_SERVING
    while `liveness`, the overall status and the read-only services stay SERVING; once the database
    answers again they are SERVING again, without a restart, each change said in one line."""
    monkeypatch.setattr("storage.database.BUSY_TIMEOUT_MS", 100)  # the fault is real; the wait for it shorter
    caplog.set_level(logging.INFO, logger="transfer.health")
    switch, url = _switchable(database_url)
    path = write_config(tmp_path / "node.toml", pki=pki, database_url=url)
    config = load(path, env={"TRANSFER_SERVER_HEALTH_PROBE_SECONDS": "0.2"})
    try:
        with running_node(config, pki, clock, path) as node:
            node.client("province-admin").register_school("S1", "Trường S1")
            s1 = node.client("school-S1", retry=NO_RETRY)
            for service in ("liveness", "readiness", "", TRANSFER_SERVICE, LOG_SERVICE):
                assert _health_status(path, service) == 0, service
            outage = write_lock_held(database_url) if switch is None else _link_down(switch)
            with outage:
                # A checkpoint publication that fails turns readiness alone NOT_SERVING, and can come first; the
                # probe then turns the write services too.
                wait_for("readiness NOT_SERVING", lambda: _health_status(path, "readiness") == 1, timeout=30)
                wait_for("writes NOT_SERVING", lambda: _health_status(path, TRANSFER_SERVICE) == 1, timeout=30)
                for service in ("liveness", "", LOG_SERVICE):
                    assert _health_status(path, service) == 0, service
                refused = _outcome(s1.register_record, new_lookup_code(), new_national_id(), PRIMARY)
                assert isinstance(refused, TransferError), refused
                assert refused.code.name == "UNAVAILABLE", refused
            wait_for("readiness SERVING again", lambda: _health_status(path, "readiness") == 0, timeout=30)
            for service in ("liveness", "", TRANSFER_SERVICE, LOG_SERVICE):
                assert _health_status(path, service) == 0, service
            code = new_lookup_code()
            assert s1.register_record(code, new_national_id(), PRIMARY).lookup_code == code
    finally:
        if switch is not None:
            switch.close()
    said = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "transfer.health"]
    # (the checkpoint publisher, which reads the database too, may say it failed and recovered as well)
    assert [line for line in said if line[1].startswith("database")] == [
        ("WARNING", "database unavailable: readiness and the write services NOT_SERVING until it answers"),
        ("INFO", "database answers again: readiness and the write services SERVING"),
    ], said


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_readiness_says_not_serving_while_checkpoints_cannot_be_published(
    tmp_path: Path, pki: Path, database_url: str, clock: FakeClock
) -> None:
    """The log can no longer be signed (its log.latest_checkpoint_file cannot be written: here a
    directory stands in its place): `readiness` turns NOT_SERVING while writes go on (the write services
    stay SERVING); once the file can be written, the next publication turns it SERVING again."""
    path = write_config(tmp_path / "node.toml", pki=pki, database_url=database_url)
    config = load(path, env={"TRANSFER_SERVER_HEALTH_PROBE_SECONDS": "0.2"})
    latest = config.latest_checkpoint_file
    with running_node(config, pki, clock, path) as node:
        node.client("province-admin").register_school("S1", "Trường S1")
        node.client("province-admin").register_school("S2", "Trường S2")
        s1 = node.client("school-S1", retry=NO_RETRY)
        signed = wait_for("a first checkpoint", s1.get_checkpoint, timeout=20).tree_size
        latest.unlink()
        (latest / "in-the-way").mkdir(parents=True)  # os.replace cannot put the file there
        code = new_lookup_code()
        s1.register_record(code, new_national_id(), PRIMARY)
        s1.initiate_transfer(code, "S2")  # the log grew: a checkpoint is due
        wait_for("readiness NOT_SERVING", lambda: _health_status(path, "readiness") == 1, timeout=30)
        assert _health_status(path, "liveness") == 0
        assert _health_status(path, TRANSFER_SERVICE) == 0
        assert s1.get_checkpoint().tree_size == signed  # nothing was signed meanwhile
        (latest / "in-the-way").rmdir()
        latest.rmdir()
        wait_for("readiness SERVING again", lambda: _health_status(path, "readiness") == 0, timeout=30)
        assert s1.get_checkpoint().tree_size > signed
        assert latest.is_file()
