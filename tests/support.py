"""Test harness: real nodes on 127.0.0.1 (in-process or as processes), a fake
clock, and PostgreSQL databases made per test."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from hypothesis import HealthCheck, settings

from transfer.client import ClientTls, RetryPolicy, TransferClient
from transfer.server.app import Node
from transfer.server.config import Config, load

ROOT = Path(__file__).resolve().parent.parent
# Fast retries keep fault tests short; bounded so a broken test cannot hang.
TEST_RETRY = RetryPolicy(attempts=8, initial_backoff=0.05, max_backoff=0.5, total_seconds=20)


class FakeClock:
    """A clock tests move by hand; thread-safe (the node runs in another thread)."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # a Monday, 09:00 in Hà Nội
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, delta: timedelta) -> None:
        with self._lock:
            self._now += delta


def write_config(
    path: Path,
    *,
    pki: Path,
    database_url: str,
    province: str = "01",
    listen: str = "127.0.0.1:0",
    extra: str = "",
    signing_ca: Path | None = None,
    latest_checkpoint_file: Path | None = None,
) -> Path:
    """A node's configuration. `log.latest_checkpoint_file` takes its default beside a SQLite file; a
    PostgreSQL database, which has none, gets one named after the database beside the configuration."""
    if latest_checkpoint_file is None and database_url.startswith("postgresql"):
        latest_checkpoint_file = path.parent / f"{database_url.rsplit('/', 1)[1]}.latest-checkpoint"
    latest = f'latest_checkpoint_file = "{latest_checkpoint_file}"\n' if latest_checkpoint_file else ""
    path.write_text(
        f"""
[node]
province = "{province}"
name = "hocba-node-{province}"
listen = "{listen}"
port_file = "{path.parent / (path.stem + ".port")}"

[tls]
ca_file = "{pki / "ca.pem"}"
cert_file = "{pki / "node.pem"}"
key_file = "{pki / "node.key"}"

[database]
url = "{database_url}"

[log]
key_file = "{pki / "log.key"}"
checkpoint_interval_seconds = 0.2
{latest}
[signing]
ca_file = "{signing_ca or pki / "signing-ca.pem"}"

[transfers]
expiry_sweep_seconds = 3600

[server]
shutdown_grace_seconds = 5

[logging]
level = "INFO"
format = "json"
{extra}
""",
        encoding="utf-8",
    )
    return path


@dataclass
class RunningNode:
    """Handle of a node under test, with clients for its identities."""

    address: str
    pki: Path
    config_path: Path | None = None
    clock: FakeClock | None = None
    node: Node | None = None
    loop: asyncio.AbstractEventLoop | None = None
    _clients: list[TransferClient] = field(default_factory=list)

    def client(self, identity: str, *, retry: RetryPolicy | None = None, **kw: Any) -> TransferClient:
        c = TransferClient(
            self.address, ClientTls.from_pki(self.pki, identity), timeout=10, retry=retry or TEST_RETRY, **kw
        )
        self._clients.append(c)
        return c

    def run(self, coro_fn: Callable[[], Any], timeout: float = 30) -> Any:
        """Run a coroutine on the node's event loop and wait for its result."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro_fn(), self.loop).result(timeout)

    def close_clients(self) -> None:
        for c in self._clients:
            c.close()
        self._clients.clear()


class NodeThread:
    """A node running in this process, on its own event loop thread."""

    def __init__(self, config: Config, clock: FakeClock, **options: Any) -> None:
        self.config = config
        self.clock = clock
        self.options = options  # Node's keyword options (accept_missing_checkpoint_file)
        self.node: Node | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="node", daemon=True)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            self.node = Node(self.config, clock=self.clock, **self.options)
            await self.node.start()
        except BaseException as exc:
            self._error = exc
            self._started.set()
            return
        self._started.set()
        await self._stop.wait()
        await self.node.stop(grace=2)

    def start(self) -> int:
        self._thread.start()
        if not self._started.wait(30):
            raise TimeoutError("node did not start within 30 s")
        if self._error is not None:
            raise self._error
        assert self.node is not None
        return self.node.port

    def stop(self) -> None:
        if self.loop is not None and self._stop is not None and self._thread.is_alive():
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        if self._thread.is_alive():
            raise TimeoutError("node did not stop within 30 s")


@contextlib.contextmanager
def running_node(
    config: Config, pki: Path, clock: FakeClock, config_path: Path | None = None, **options: Any
) -> Iterator[RunningNode]:
    nt = NodeThread(config, clock, **options)
    port = nt.start()
    handle = RunningNode(f"127.0.0.1:{port}", pki, config_path, clock, nt.node, nt.loop)
    try:
        yield handle
    finally:
        handle.close_clients()
        nt.stop()


class ServerProcess:
    """`python -m transfer.server` as a child process, killable and restartable."""

    def __init__(self, config_path: Path, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.config_path = config_path
        self.log_path = log_path
        self.env = {**os.environ, **(env or {})}
        self.port_file = config_path.parent / (config_path.stem + ".port")
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self, timeout: float = 30) -> int:
        self.port_file.unlink(missing_ok=True)
        env = dict(self.env)
        if self.port:  # come back on the same port, as a restarted node would
            env["TRANSFER_NODE_LISTEN"] = f"127.0.0.1:{self.port}"
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "transfer.server", "--config", str(self.config_path)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.port_file.exists() and self.port_file.read_text().strip():
                self.port = int(self.port_file.read_text())
                return self.port
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log_path.read_text()[-2000:]}")
            time.sleep(0.05)
        raise TimeoutError(f"server did not start: {self.log_path.read_text()[-2000:]}")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def terminate(self, timeout: float = 30) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


PATIENT = RetryPolicy(attempts=60, initial_backoff=0.1, max_backoff=0.5, total_seconds=30)


def process_client(server: ServerProcess, pki: Path, identity: str, retry: RetryPolicy = PATIENT) -> TransferClient:
    """A client of the node process `server` as `identity` of `pki`."""
    return TransferClient(server.address, ClientTls.from_pki(pki, identity), timeout=5, retry=retry)


@contextlib.contextmanager
def with_schools(server: ServerProcess, pki: Path) -> Iterator[ServerProcess]:
    """The started node process `server` with schools S1 and S2 registered; stopped at the end."""
    try:
        with process_client(server, pki, "province-admin") as admin:
            for code in ("S1", "S2"):
                admin.register_school(code, f"Trường {code}")
        yield server
    finally:
        server.stop()


def run_module(module: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`python -m MODULE ARGS` in the repository, its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )


def postgres_base(request: pytest.FixtureRequest) -> str:
    """TRANSFER_TEST_PG, the server the [postgresql] cases make their databases on; without it the test is
    skipped (failed under --require-postgres)."""
    base = os.environ.get("TRANSFER_TEST_PG")
    if not base:
        if request.config.getoption("--require-postgres"):
            pytest.fail("TRANSFER_TEST_PG is not set but --require-postgres was given")
        pytest.skip("PostgreSQL not configured (set TRANSFER_TEST_PG, or run `make test`)")
    return base


def create_pg_database(base_url: str) -> str:
    """A fresh, empty database on the test cluster; returns its URL."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return base_url.rsplit("/", 1)[0] + f"/{name}"


def drop_pg_database(base_url: str, url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def load_config(path: Path) -> Config:
    return load(path, env={})


def new_lookup_code() -> str:
    return uuid.uuid4().hex


_national_ids = iter(range(100_000_000_000, 999_999_999_999))


def new_national_id() -> str:
    """A fresh, well-formed 12-digit id (synthetic: no real person's)."""
    return f"{next(_national_ids):012d}"


def db_snapshot(database_url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, sorted: two equal snapshots mean nothing was written.

    Checkpoints are left out: the node's publisher signs them in the
    background for entries written earlier, whatever the call under test did.
    """
    from sqlalchemy import create_engine, select

    from storage.database import sync_url
    from storage.schema import metadata

    engine = create_engine(sync_url(database_url))
    try:
        with engine.connect() as conn:
            return {
                name: sorted((tuple(r) for r in conn.execute(select(table))), key=repr)
                for name, table in metadata.tables.items()
                if name != "log_checkpoints"
            }
    finally:
        engine.dispose()


@contextlib.contextmanager
def refused(code: str, reason: str, *, database_url: str | None = None) -> Iterator[list[Any]]:
    """Expect a TransferError with this code and reason, and (given a URL) no change in the database."""
    import pytest

    from transfer.client import TransferError

    before = db_snapshot(database_url) if database_url else None
    caught: list[Any] = []
    with pytest.raises(TransferError) as info:
        yield caught
    err = info.value
    caught.append(err)
    assert (err.code.name, err.reason) == (code, reason), f"got {err.code.name} {err.reason}: {err.message}"
    assert err.message, "a refusal must say why"
    if database_url:
        assert db_snapshot(database_url) == before, "a refused call changed the database"


def model_settings(examples: int, steps: int) -> settings:
    """Settings of a stateful model test: `examples` sequences of up to `steps` steps, unless the
    environment asks for more (MODEL_EXAMPLES, MODEL_STEPS); no per-example deadline (real servers)."""
    return settings(
        max_examples=int(os.environ.get("MODEL_EXAMPLES", examples)),
        stateful_step_count=int(os.environ.get("MODEL_STEPS", steps)),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


@contextlib.contextmanager
def quiet_node(tmp_path: Path, pki: Path, database_url: str, clock: FakeClock) -> Iterator[RunningNode]:
    """A node with S1 and S2 whose background writers stay idle (no periodic checkpoints):
    the writes the test makes are the only ones."""
    path = write_config(tmp_path / "node.toml", pki=pki, database_url=database_url)
    config = load(path, env={"TRANSFER_LOG_CHECKPOINT_INTERVAL_SECONDS": "3600"})
    with running_node(config, pki, clock, path) as node:
        admin = node.client("province-admin")
        admin.register_school("S1", "Trường S1")
        admin.register_school("S2", "Trường S2")
        yield node


def assert_log_verifies(config_path: Path) -> None:
    """`transfer-verify-log` passes on the database of the node configured in `config_path`."""
    verified = subprocess.run(
        [sys.executable, "-m", "transfer.server.verify", "--config", str(config_path), "--quiet"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr


class InjectedRefusal(grpc.RpcError, grpc.Call):  # type: ignore[misc]
    """Injected fault: a refusal as a client interceptor returns it, with the status trailer given (or none)."""

    def __init__(self, code: grpc.StatusCode, message: str, details_bin: bytes | None) -> None:
        self._code, self._message, self.details_bin = code, message, details_bin

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._message

    def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:
        return () if self.details_bin is None else (("grpc-status-details-bin", self.details_bin),)

    def initial_metadata(self) -> tuple[()]:
        return ()

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> None:
        return None

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback: object) -> bool:
        return False

    def result(self, timeout: float | None = None) -> None:
        raise self


def schools_and_a_transfer(node: RunningNode) -> Any:
    """Schools S1 and S2 registered, and a record of S1 offered to S2: the transfer's change (with its receipt)."""
    from transfer.v1 import common_pb2

    admin = node.client("province-admin")
    for code in ("S1", "S2"):
        admin.register_school(code, f"Trường {code}")
    s1 = node.client("school-S1")
    code = new_lookup_code()
    s1.register_record(code, new_national_id(), common_pb2.RECORD_LEVEL_PRIMARY)
    return s1.initiate_transfer(code, "S2")
