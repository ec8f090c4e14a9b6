"""The log: appends per second, and proof latency as the log grows.

    python -m bench.log --sizes 10000,100000,1000000

1. Appends with their transactions, through the node's writer (group commit),
   one command per append and batched (many appends in one command).
2. For each size: a log of that many entries (seeded through the writer in
   batches), then a node process serving it; latency percentiles of
   GetInclusionProof and GetConsistencyProof over mTLS from one client, and of
   the same proofs computed in-process from the database (no network), then
   `transfer-verify-log` over the whole log.
Prints a table on stderr and JSON on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Connection

from bench.harness import ROOT, NodeProcess, Workdir, emit, percentile
from storage import migrate
from storage.database import open_database
from storage.repositories import SqlUnitOfWork
from storage.writer import Writer
from transfer.client import ClientTls, TransferClient
from transfer.domain.logbook import Logbook
from transfer.domain.ports import SystemClock, UnitOfWork


def _appends(leaves: list[bytes]) -> Any:
    def command(uow: UnitOfWork) -> int:
        for leaf in leaves:
            last = uow.log.append(leaf)
        return last

    return command


async def _append_rate(url: str, per_command: int, total: int, concurrency: int) -> float:
    db = open_database(url)
    writer = Writer(db)
    writer.start()
    leaf = b"\x01\x02" + os.urandom(150)
    started = time.perf_counter()
    done = 0

    async def worker() -> None:
        nonlocal done
        while done < total:
            done += per_command
            await writer.submit(_appends([leaf] * per_command))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    await writer.stop()
    await db.close()
    return done / elapsed


async def _seed(url: str, size: int, progress: bool) -> float:
    db = open_database(url)
    writer = Writer(db)
    writer.start()
    batch = 2000
    started = time.perf_counter()
    rng = random.Random(1)
    for first in range(0, size, batch):
        leaves = [rng.randbytes(120) for _ in range(min(batch, size - first))]
        await writer.submit(_appends(leaves))
        if progress and (first // batch) % 50 == 0:
            done = first + len(leaves)
            rate = done / (time.perf_counter() - started)
            bar = "#" * (30 * done // size)
            print(f"\r  seeding [{bar:<30}] {done:>9,}/{size:,} ({rate:,.0f}/s)", end="", file=sys.stderr, flush=True)
    await writer.stop()
    await db.close()
    if progress:
        print(file=sys.stderr)
    return size / (time.perf_counter() - started)


def _inclusion(logbook: Logbook, conn: Connection, *, index: int, size: int) -> list[bytes]:
    return logbook.inclusion_proof(SqlUnitOfWork(conn), index, size)


def _consistency(logbook: Logbook, conn: Connection, *, first: int, size: int) -> list[bytes]:
    return logbook.consistency_proof(SqlUnitOfWork(conn), first, size)


def _in_process_proofs(url: str, size: int, n: int) -> dict[str, float]:
    db = open_database(url)
    logbook = Logbook("hocba-node-01", None, SystemClock())
    rng = random.Random(2)
    inc: list[float] = []
    con: list[float] = []

    async def run() -> None:
        for _ in range(n):
            index = rng.randrange(size)
            t = time.perf_counter()
            await db.read(functools.partial(_inclusion, logbook, index=index, size=size))
            inc.append(time.perf_counter() - t)
            first = rng.randrange(1, size)
            t = time.perf_counter()
            await db.read(functools.partial(_consistency, logbook, first=first, size=size))
            con.append(time.perf_counter() - t)
        await db.close()

    asyncio.run(run())
    return _stats("inproc_inclusion", inc) | _stats("inproc_consistency", con)


def _stats(name: str, xs: list[float]) -> dict[str, float]:
    v = sorted(xs)
    return {f"{name}_p50_ms": percentile(v, 50) * 1000, f"{name}_p99_ms": percentile(v, 99) * 1000}


def _api_proofs(work: Workdir, url: str, size: int, n: int) -> dict[str, float]:
    node = NodeProcess(work, url)
    try:
        c = TransferClient(node.address, ClientTls.from_pki(work.pki, "auditor"))
        rng = random.Random(3)
        inc: list[float] = []
        con: list[float] = []
        for _ in range(n):
            index = rng.randrange(size)
            t = time.perf_counter()
            c.inclusion_proof(index, size)
            inc.append(time.perf_counter() - t)
            first = rng.randrange(1, size)
            t = time.perf_counter()
            c.consistency_proof(first, size)
            con.append(time.perf_counter() - t)
        rss = node.rss_mb()
        c.close()
    finally:
        node.stop()
    return _stats("api_inclusion", inc) | _stats("api_consistency", con) | {"node_rss_mb": rss}


def verify_seconds(work: Workdir) -> float:
    """Wall time of `transfer-verify-log` over the node's whole log (its node.toml in `work`)."""
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "transfer.server.verify", "--config", str(work.path / "node.toml"), "--quiet"],
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--proofs", type=int, default=300, help="proofs timed per size and kind")
    parser.add_argument("--appends", type=int, default=20000, help="appends timed per append mode")
    parser.add_argument("--no-verify", action="store_true")
    parser.add_argument("--out", type=Path)
    ns = parser.parse_args(argv)
    result: dict[str, Any] = {"benchmark": "log", "appends": {}, "sizes": []}

    for per_command, concurrency in ((1, 64), (100, 4), (1000, 1)):
        with Workdir() as work:
            url = f"sqlite:///{work.path / 'node.db'}"
            migrate.upgrade(url)
            rate = asyncio.run(_append_rate(url, per_command, ns.appends, concurrency))
        result["appends"][f"{per_command}_per_command"] = rate
        print(f"appends, {per_command:>4} per command x {concurrency:>2} concurrent: {rate:10,.0f}/s", file=sys.stderr)

    for size in (int(s) for s in ns.sizes.split(",")):
        work = Workdir()
        url = f"sqlite:///{work.path / 'node.db'}"
        migrate.upgrade(url)
        seed_rate = asyncio.run(_seed(url, size, progress=size >= 100_000))
        NodeProcess(work, url).stop()  # writes node.toml, publishes a checkpoint
        row: dict[str, Any] = {"size": size, "seed_appends_per_s": seed_rate}
        row |= _in_process_proofs(url, size, ns.proofs)
        row |= _api_proofs(work, url, size, ns.proofs)
        if not ns.no_verify:
            row["verify_s"] = verify_seconds(work)
        row["db_mb"] = sum(p.stat().st_size for p in work.path.glob("node.db*")) / 1e6
        work.cleanup()
        result["sizes"].append(row)
        print(
            f"size {size:>9,}: inclusion p50/p99 {row['api_inclusion_p50_ms']:.2f}/{row['api_inclusion_p99_ms']:.2f} ms "
            f"(in-process {row['inproc_inclusion_p50_ms']:.2f}/{row['inproc_inclusion_p99_ms']:.2f}), "
            f"consistency {row['api_consistency_p50_ms']:.2f}/{row['api_consistency_p99_ms']:.2f} ms, "
            f"verify {row.get('verify_s', float('nan')):.1f} s, db {row['db_mb']:.0f} MB, rss {row['node_rss_mb']:.0f} MB",
            file=sys.stderr,
        )
    emit(result, ns.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
