"""Shared pieces of the benchmarks: a dev PKI, node and echo server processes,
load-generating client processes, and latency statistics.

Clients run in separate processes (the server must not share their GIL), each
with one asyncio loop and many concurrent calls over one mTLS channel per
identity, like a school system would.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from transfer.devpki import make_dev_pki

ROOT = Path(__file__).resolve().parent.parent


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


@dataclass
class Stats:
    """Per-operation latency samples (seconds) from all client processes."""

    samples: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    server_cpu_s: float = float("nan")

    def merge(self, other: dict[str, Any]) -> None:
        for op, values in other["samples"].items():
            self.samples.setdefault(op, []).extend(values)
        for op, n in other["errors"].items():
            self.errors[op] = self.errors.get(op, 0) + n

    def summary(self, seconds: float) -> dict[str, dict[str, float]]:
        out = {}
        for op, values in sorted(self.samples.items()):
            v = sorted(values)
            out[op] = {
                "count": len(v),
                "per_s": len(v) / seconds,
                "p50_ms": percentile(v, 50) * 1000,
                "p99_ms": percentile(v, 99) * 1000,
                "mean_ms": statistics.fmean(v) * 1000 if v else float("nan"),
                "errors": self.errors.get(op, 0),
            }
        return out


def credentials(pki: Path, identity: str) -> grpc.ChannelCredentials:
    """Client credentials of `identity` (a dev PKI's certificate and key) for mTLS."""
    return grpc.ssl_channel_credentials(
        (pki / "ca.pem").read_bytes(), (pki / f"{identity}.key").read_bytes(), (pki / f"{identity}.pem").read_bytes()
    )


def database_url(db: str, sqlite_path: Path) -> str:
    """A fresh database: a SQLite file, or a new database on TRANSFER_BENCH_PG's server."""
    if db == "sqlite":
        return f"sqlite:///{sqlite_path}"
    base = os.environ.get("TRANSFER_BENCH_PG") or os.environ.get("TRANSFER_TEST_PG")
    if not base:
        raise SystemExit("set TRANSFER_BENCH_PG to a PostgreSQL URL whose server may create databases")
    from tests.support import create_pg_database

    return create_pg_database(base)


class Workdir:
    """A temporary directory with a dev PKI for one node (province 01, schools S1, S2)."""

    def __init__(self) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="hocba-bench-"))
        self.pki = self.path / "pki"
        make_dev_pki(self.pki, "01", ["S1", "S2"])

    def cleanup(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self) -> Workdir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def credentials(self, identity: str) -> grpc.ChannelCredentials:
        return credentials(self.pki, identity)


class NodeProcess:
    """A node started with `python -m transfer.server` on a free loopback port."""

    def __init__(
        self, work: Workdir, database_url: str, *, extra_env: dict[str, str] | None = None, name: str = "node"
    ) -> None:
        """`name` names its files in `work` (<name>.toml, .port, .log): several nodes may share one database."""
        cfg = work.path / f"{name}.toml"
        cfg.write_text(
            f"""
[node]
province = "01"
listen = "127.0.0.1:0"
port_file = "{name}.port"
[tls]
ca_file = "pki/ca.pem"
cert_file = "pki/node.pem"
key_file = "pki/node.key"
[database]
url = "{database_url}"
[log]
key_file = "pki/log.key"
latest_checkpoint_file = "{name}.latest-checkpoint"
[signing]
ca_file = "pki/signing-ca.pem"
[logging]
level = "INFO"
format = "json"
""",
            encoding="utf-8",
        )
        self._launch(cfg, work.path / f"{name}.port", work.path / f"{name}.log", extra_env)

    def _launch(self, cfg: Path, port_file: Path, log_path: Path, extra_env: dict[str, str] | None = None) -> None:
        """Start `transfer.server` on `cfg` and wait until it wrote `port_file`."""
        port_file.unlink(missing_ok=True)
        self.log_path = log_path
        self.log = log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "transfer.server", "--config", str(cfg)],
            cwd=ROOT,
            env={**os.environ, **(extra_env or {})},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"node did not start; see {log_path}")
            time.sleep(0.05)
        self.address = f"127.0.0.1:{port_file.read_text().strip()}"

    def rss_mb(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()

    def writer_stats(self) -> dict[str, Any]:
        """What the stopped node's writer logged: commands, batches (group commits), mean batch."""
        for line in reversed(self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()):
            if '"writer stopped"' in line:
                entry = json.loads(line)
                return {k: entry[k] for k in ("commands", "batches", "mean_batch")}
        return {}


Worker = Callable[[dict[str, Any], int, Callable[[str, float], None], Callable[[str], None]], Awaitable[None]]


def _client_main(
    worker_path: str, args: dict[str, Any], first_worker: int, workers: int, start_at: float, seconds: float, out: Any
) -> None:
    module, _, name = worker_path.partition(":")
    worker_factory = getattr(__import__(module, fromlist=[name]), name)

    samples: dict[str, list[float]] = {}
    errors: dict[str, int] = {}

    def record(op: str, latency: float) -> None:
        if start_at <= time.time() <= start_at + seconds:
            samples.setdefault(op, []).append(latency)

    def failed(op: str) -> None:
        errors[op] = errors.get(op, 0) + 1

    async def main() -> None:
        run = await worker_factory(args)
        end = start_at + seconds
        tasks = [asyncio.create_task(run(first_worker + i, end, record, failed)) for i in range(workers)]
        await asyncio.gather(*tasks)

    asyncio.run(main())
    out.put({"samples": samples, "errors": errors})


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process (all its threads) has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _measure_cpu(pids: list[int], start_at: float, seconds: float, out: list[float]) -> None:
    time.sleep(max(0.0, start_at - time.time()))
    first = sum(cpu_seconds(pid) for pid in pids)
    time.sleep(max(0.0, start_at + seconds - time.time()))
    out.append(sum(cpu_seconds(pid) for pid in pids) - first)


def run_clients(
    worker_path: str,
    args: dict[str, Any],
    *,
    concurrency: int,
    processes: int,
    seconds: float,
    warmup: float,
    server_pid: int | list[int] | None = None,
) -> Stats:
    """Run `concurrency` workers spread over `processes` client processes for warmup + seconds.

    With `server_pid` (one or several processes), the server's CPU seconds
    within the measured window land in `stats.server_cpu_s`."""
    import threading

    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    start_at = time.time() + 2.0 + warmup  # time for the processes to start, then warm up
    cpu: list[float] = []
    meter = None
    if server_pid is not None:
        pids = [server_pid] if isinstance(server_pid, int) else server_pid
        meter = threading.Thread(target=_measure_cpu, args=(pids, start_at, seconds, cpu), daemon=True)
        meter.start()
    procs = []
    per = [concurrency // processes + (1 if i < concurrency % processes else 0) for i in range(processes)]
    first = 0
    for index, n in enumerate(per):
        if n == 0:
            continue
        own = {**args, "process": index}  # a worker factory may give each process its own part of the load
        p = ctx.Process(target=_client_main, args=(worker_path, own, first, n, start_at, seconds, out))
        p.start()
        procs.append(p)
        first += n
    stats = Stats()
    for _ in procs:
        stats.merge(out.get(timeout=seconds + warmup + 120))
    for p in procs:
        p.join(30)
    if meter is not None:
        meter.join(seconds + 5)
        stats.server_cpu_s = cpu[0] if cpu else float("nan")
    return stats


def emit(result: dict[str, Any], path: Path | None) -> None:
    text = json.dumps(result, indent=2, default=str)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n", encoding="utf-8")
    print(text)
