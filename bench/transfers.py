"""Complete intra-province transfers per second, against the bare echo rate.

    python -m bench.transfers --db sqlite --concurrency 1,16,64 --seconds 10

For each concurrency: the echo baseline, then a node (SQLite file or the
PostgreSQL URL in TRANSFER_BENCH_PG) under the same client load doing
initiate (sending school) + accept (receiving school) over mTLS, each with
authorization, validation and an idempotency record. Each worker owns one
record and moves it back and forth between two schools. Prints JSON: rates,
latency percentiles per RPC, the ratio of mutating RPCs to echo calls, and the
node's resident memory.

`--nodes 2` runs two node processes on the one database (the workers spread
over them; CPU, memory and group commits are their sums): the experiment of
using the second core with whole nodes, kept to repeat it (see
docs/performance.md).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc

from bench.harness import ROOT, NodeProcess, Workdir, credentials, database_url, emit, run_clients
from transfer.v1 import transfers_pb2, transfers_pb2_grpc


def lookup_code(i: int) -> str:
    return f"{i:032x}"


async def transfer_worker(args: dict[str, Any]) -> Callable[..., Awaitable[None]]:
    pki = Path(args["pki"])
    nodes = []  # one pair of stubs per node process; worker i talks to node i mod n
    for address in args["addresses"]:
        stubs = {}
        for school in ("S1", "S2"):
            creds = credentials(pki, f"school-{school}")
            stubs[school] = transfers_pb2_grpc.TransferServiceStub(grpc.aio.secure_channel(address, creds))
        nodes.append(stubs)

    async def run(i: int, end: float, record: Callable[[str, float], None], failed: Callable[[str], None]) -> None:
        stubs = nodes[i % len(nodes)]
        holder, other = "S1", "S2"
        code = lookup_code(i)
        while time.time() < end:
            t0 = time.perf_counter()
            try:
                t = await stubs[holder].InitiateTransfer(
                    transfers_pb2.InitiateTransferRequest(
                        request_id=str(uuid.uuid4()), lookup_code=code, to_school=other
                    ),
                    timeout=10,
                )
            except grpc.aio.AioRpcError:
                failed("initiate")
                return
            t1 = time.perf_counter()
            try:
                await stubs[other].AcceptTransfer(
                    transfers_pb2.AcceptTransferRequest(request_id=str(uuid.uuid4()), transfer_id=t.transfer.id),
                    timeout=10,
                )
            except grpc.aio.AioRpcError:
                failed("accept")
                return
            t2 = time.perf_counter()
            record("initiate", t1 - t0)
            record("accept", t2 - t1)
            record("transfer", t2 - t0)
            holder, other = other, holder

    return run


def seed(address: str, work: Workdir, n: int) -> None:
    """Register the schools and one record per worker (outside the timed window)."""
    from transfer.client import ClientTls, TransferClient

    admin = TransferClient(address, ClientTls.from_pki(work.pki, "province-admin"))
    admin.register_school("S1", "Bench school 1")
    admin.register_school("S2", "Bench school 2")
    s1 = TransferClient(address, ClientTls.from_pki(work.pki, "school-S1"))
    for i in range(n):
        s1.register_record(lookup_code(i), f"{i:012d}", 1)
    admin.close()
    s1.close()


def echo_rate(work: Workdir, concurrency: int, processes: int, seconds: float, warmup: float) -> dict[str, Any]:
    """The bare echo's rate and latency under the same load, and its server's CPU per call."""
    port_file = work.path / "echo.port"
    port_file.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.echo", "--pki", str(work.pki), "--port-file", str(port_file)], cwd=ROOT
    )
    try:
        while not port_file.exists():
            time.sleep(0.05)
        address = f"127.0.0.1:{port_file.read_text()}"
        stats = run_clients(
            "bench.echo:echo_worker",
            {"address": address, "pki": str(work.pki)},
            concurrency=concurrency,
            processes=processes,
            seconds=seconds,
            warmup=warmup,
            server_pid=proc.pid,
        )
    finally:
        proc.terminate()
        proc.wait(10)
    summary = stats.summary(seconds)["echo"]
    summary["server_cpu_ms_per_call"] = stats.server_cpu_s * 1000 / max(1, summary["count"])
    return summary


def _writers(stats: list[dict[str, Any]]) -> dict[str, Any]:
    """The writers' figures of every node process, added up."""
    if not all(stats):
        return {}
    commands, batches = sum(s["commands"] for s in stats), sum(s["batches"] for s in stats)
    return {"commands": commands, "batches": batches, "mean_batch": commands / max(1, batches)}


def main(argv: list[str] | None = None) -> int:

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--processes", type=int, default=2, help="client processes")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--sqlite-synchronous", default="FULL", choices=["FULL", "NORMAL"], help="database.sqlite_synchronous"
    )
    parser.add_argument(
        "--profile", type=Path, help="record the node with py-spy during the run (collapsed stacks, one file per level)"
    )
    parser.add_argument(
        "--nodes",
        type=int,
        default=1,
        help="node processes sharing the one database, the workers spread over them (an experiment: default 1)",
    )
    ns = parser.parse_args(argv)
    levels = [int(c) for c in ns.concurrency.split(",")]
    results = []
    for c in levels:
        work = Workdir()
        url = database_url(ns.db, work.path / "node.db")
        echo = echo_rate(work, c, min(ns.processes, c), ns.seconds, ns.warmup)
        env = {"TRANSFER_DATABASE_SQLITE_SYNCHRONOUS": ns.sqlite_synchronous}
        node = NodeProcess(work, url, extra_env=env)
        nodes = [node]
        try:
            seed(node.address, work, c)
            nodes += [NodeProcess(work, url, extra_env=env, name=f"node{k}") for k in range(2, ns.nodes + 1)]
            spy = None
            if ns.profile is not None:
                spy = subprocess.Popen(
                    [str(Path(sys.executable).with_name("py-spy")), "record", "-p", str(node.proc.pid), "-f", "raw", "-r", "200", "--nonblocking",
                     "-d", str(int(ns.seconds + ns.warmup + 2)), "-o", f"{ns.profile}.c{c}.txt"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
            stats = run_clients(
                "bench.transfers:transfer_worker",
                {"addresses": [n.address for n in nodes], "pki": str(work.pki)},
                concurrency=c,
                processes=min(ns.processes, c),
                seconds=ns.seconds,
                warmup=ns.warmup,
                server_pid=[n.proc.pid for n in nodes],
            )
            rss = sum(n.rss_mb() for n in nodes)
            if spy is not None:
                spy.wait(60)
        finally:
            for n in nodes:
                n.stop()
            writer = _writers([n.writer_stats() for n in nodes])
            work.cleanup()
        summary = stats.summary(ns.seconds)
        mutating = summary["initiate"]["per_s"] + summary["accept"]["per_s"]
        cpu_per_rpc = stats.server_cpu_s * 1000 / max(1.0, mutating * ns.seconds)
        results.append(
            {
                "concurrency": c,
                "nodes": ns.nodes,
                "echo_per_s": echo["per_s"],
                "echo_p99_ms": echo["p99_ms"],
                "transfers_per_s": summary["transfer"]["per_s"],
                "mutating_rpcs_per_s": mutating,
                "ratio_to_echo": mutating / echo["per_s"],
                "rpcs": summary,
                "node_rss_mb": rss,
                "node_cpu_ms_per_rpc": cpu_per_rpc,
                "echo_cpu_ms_per_call": echo["server_cpu_ms_per_call"],
                "writer": writer,  # whole run, seeding included
            }
        )
        print(
            f"c={c:<3} echo {echo['per_s']:8.0f}/s  transfers {summary['transfer']['per_s']:7.0f}/s  "
            f"mutating {mutating:7.0f}/s  ratio {mutating / echo['per_s']:.2f}  "
            f"p99 initiate {summary['initiate']['p99_ms']:.1f} ms accept {summary['accept']['p99_ms']:.1f} ms  "
            f"server CPU/RPC {cpu_per_rpc:.2f} ms (echo {echo['server_cpu_ms_per_call']:.2f} ms)  "
            f"mean group commit {writer.get('mean_batch', float('nan')):.1f}",
            file=sys.stderr,
        )
    emit(
        {
            "benchmark": "transfers",
            "db": ns.db,
            "sqlite_synchronous": ns.sqlite_synchronous,
            "seconds": ns.seconds,
            "results": results,
        },
        ns.out,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
