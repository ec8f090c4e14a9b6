"""How long transfer-backup takes on a serving SQLite node, and how long it keeps writers waiting.

    python -m bench.backup [--transfers 2500] [--backups 5]

Seeds a node process with `--transfers` transfers (two log entries each), then keeps three client
threads making transfers while a probe writer (its own connection to the node's file) takes and
releases SQLite's write lock every few milliseconds, and runs `transfer-backup` (a process) `--backups`
times. Prints the backup's time and size, the probe's longest wait for the write lock and the clients'
mutation latencies, outside and during the backups.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import datetime
from typing import Any

from bench.harness import ROOT, NodeProcess, Workdir, percentile
from transfer.client import ClientTls, RetryPolicy, TransferClient
from transfer.v1 import common_pb2

RETRY = RetryPolicy(attempts=20, initial_backoff=0.05, max_backoff=0.5, total_seconds=30)
_ids = iter(range(100_000_000_000, 999_999_999_999))


def _transfer(s1: TransferClient, s2: TransferClient, n: int) -> None:
    code = f"{n:032x}"
    s1.register_record(code, f"{next(_ids):012d}", common_pb2.RECORD_LEVEL_PRIMARY)
    s2.accept_transfer(s1.initiate_transfer(code, "S2").transfer.id)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.backup")
    parser.add_argument("--transfers", type=int, default=2500)
    parser.add_argument("--backups", type=int, default=5)
    ns = parser.parse_args(argv)
    with Workdir() as work:
        db = work.path / "node.db"
        node = NodeProcess(work, f"sqlite:///{db}")
        try:
            tls = {who: ClientTls.from_pki(work.pki, who) for who in ("province-admin", "school-S1", "school-S2")}

            def client(who: str) -> TransferClient:
                return TransferClient(node.address, tls[who], timeout=10, retry=RETRY)

            with client("province-admin") as admin:
                for code in ("S1", "S2"):
                    admin.register_school(code, f"Trường {code}")
            counter = iter(range(10**9))
            lock = threading.Lock()

            def seed(share: int) -> None:
                with client("school-S1") as s1, client("school-S2") as s2:
                    for _ in range(share):
                        with lock:
                            n = next(counter)
                        _transfer(s1, s2, n)

            started = time.perf_counter()
            seeders = [threading.Thread(target=seed, args=(ns.transfers // 4,)) for _ in range(4)]
            for t in seeders:
                t.start()
            for t in seeders:
                t.join()
            print(f"seeded {4 * (ns.transfers // 4):,} transfers in {time.perf_counter() - started:.1f} s", flush=True)

            stop = threading.Event()
            latencies: list[tuple[float, float]] = []  # (end, seconds)
            waits: list[tuple[float, float]] = []

            def load() -> None:
                with client("school-S1") as s1, client("school-S2") as s2:
                    while not stop.is_set():
                        with lock:
                            n = next(counter)
                        t0 = time.time()
                        _transfer(s1, s2, n)
                        latencies.append((time.time(), (time.time() - t0) / 3))

            def probe() -> None:
                conn = sqlite3.connect(db, isolation_level=None, timeout=10)
                while not stop.is_set():
                    t0 = time.time()
                    conn.execute("BEGIN IMMEDIATE")
                    waits.append((time.time(), time.time() - t0))
                    conn.execute("ROLLBACK")
                    time.sleep(0.002)
                conn.close()

            def backups(label: str) -> None:
                for i in range(ns.backups):
                    dest = work.path / f"backup-{label}-{i}.db"
                    done = subprocess.run(
                        [sys.executable, "-m", "transfer.server.backup", "--database", f"sqlite:///{db}", str(dest), "--json"],
                        cwd=ROOT, capture_output=True, text=True, check=True,
                    )  # fmt: skip
                    r = json.loads(done.stdout)
                    t0 = datetime.fromisoformat(r["taken_at"].replace("Z", "+00:00")).timestamp()
                    windows.append((t0, t0 + r["seconds"]))  # from its first step to the copy in place
                    results.append(r)
                    time.sleep(1)

            prober = threading.Thread(target=probe)
            prober.start()
            windows: list[tuple[float, float]] = []
            results: list[dict[str, Any]] = []
            # First with the node idle: the probe is then the only writer, and any wait is the backup's.
            time.sleep(1)
            backups("idle")
            idle_windows, windows = windows, []
            idle_waits = list(waits)
            loaders = [threading.Thread(target=load) for _ in range(3)]
            for t in loaders:
                t.start()
            time.sleep(2)
            waits.clear()
            backups("load")
            stop.set()
            for t in [*loaders, prober]:
                t.join()
        finally:
            node.stop()

    def during(end: float, seconds: float) -> bool:
        return any(end >= a and end - seconds <= b for a, b in windows)

    def line(name: str, values: list[float]) -> str:
        v = sorted(values)
        if not v:
            return f"{name}: none"
        return (
            f"{name}: n={len(v)}, p50 {percentile(v, 50) * 1000:.2f} ms, p99 {percentile(v, 99) * 1000:.2f} ms, "
            f"max {v[-1] * 1000:.2f} ms"
        )

    for r in results:
        print(
            f"backup: {r['bytes'] / 1e6:.1f} MB, log {r['log_size']:,} entries, checkpoint {r['checkpoint']['size']:,}, "
            f"{r['pages']:,} pages in {r['steps']} steps, {r['seconds'] * 1000:.0f} ms"
        )

    def idle(end: float, seconds: float) -> bool:
        return any(end >= a and end - seconds <= b for a, b in idle_windows)

    print(
        line(
            "idle node: probe's wait for the write lock, outside the backups",
            [s for e, s in idle_waits if not idle(e, s)],
        )
    )
    print(
        line("idle node: probe's wait for the write lock, during the backups", [s for e, s in idle_waits if idle(e, s)])
    )
    print(line("probe's wait for the write lock, outside the backups", [s for e, s in waits if not during(e, s)]))
    print(line("probe's wait for the write lock, during the backups", [s for e, s in waits if during(e, s)]))
    print(
        line(
            "client mutating call (mean of a transfer's three), outside the backups",
            [s for e, s in latencies if not during(e, s)],
        )
    )
    print(
        line(
            "client mutating call (mean of a transfer's three), during the backups",
            [s for e, s in latencies if during(e, s)],
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
