"""Transfers between provinces: offers per second between two nodes, and the
latency from initiate to acknowledged.

    python -m bench.federation --concurrency 1,16 --seconds 10

Two node processes on loopback, 01 (Hà Nội) and 79 (Hồ Chí Minh City), each
with its own PKI and SQLite file (or PostgreSQL databases under
TRANSFER_BENCH_PG with --db postgresql), configured as each other's peer.
Client processes initiate transfers at 01 from school S1 to a school of 79,
each worker one at a time: initiate, then wait until the transfer shows up in
that school's watch stream on node 79 (the offer was verified and recorded
there), then the next record. Each client process sends to a receiving school
of its own (D1, D2, ...) and holds that school's one watch stream, as a
school's information system would: processes watching one school would each
be sent every event of the others' transfers too. The records are registered beforehand (each carries one page
with one teacher signature, so the package and its verification are real).

Figures: offers per second as acknowledged (from node 01's outbox: delivered
within the measured window), initiate→acknowledged latency (outbox creation to
the stored receipt, p50/p99, from node 01's database), the client-seen
initiate→arrival latency, and the bare-echo rate of the same machine in the
same run as the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc

from bench.harness import NodeProcess, credentials, database_url, percentile, run_clients
from transfer.devpki import SigningCA, make_dev_pki
from transfer.v1 import transfers_pb2, transfers_pb2_grpc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def lookup_code(i: int) -> str:
    return f"{i:032x}"


class Node(NodeProcess):
    """A node of a two-province federation, each the other's peer."""

    def __init__(self, work: Path, province: str, url: str, port: int, peer: str, peer_port: int) -> None:
        own, other = work / f"pki{province}", work / f"pki{peer}"
        self.pki = own
        self.url = url
        cfg = work / f"node{province}.toml"
        cfg.write_text(
            f"""
[node]
province = "{province}"
listen = "127.0.0.1:{port}"
port_file = "node{province}.port"
[tls]
ca_file = "{own}/ca.pem"
cert_file = "{own}/node.pem"
key_file = "{own}/node.key"
[database]
url = "{url}"
[log]
key_file = "{own}/log.key"
latest_checkpoint_file = "node{province}.latest-checkpoint"
[signing]
ca_file = "{work}/signing-cas.pem"
[seal]
key_file = "{own}/seal.key"
[logging]
level = "WARNING"
[[peers]]
province = "{peer}"
address = "127.0.0.1:{peer_port}"
server_name = "localhost"
ca_file = "{other}/ca.pem"
seal_vkey_file = "{other}/seal.vkey"
log_vkey_file = "{other}/log.vkey"
""",
            encoding="utf-8",
        )
        self._launch(cfg, work / f"node{province}.port", work / f"node{province}.log")


async def offer_worker(args: dict[str, Any]) -> Callable[..., Awaitable[None]]:
    """One process: initiate at 01, learn arrivals from its school's watch stream at 79."""
    school = receiving_school(args["process"])
    sender = transfers_pb2_grpc.TransferServiceStub(
        grpc.aio.secure_channel(args["sender"], credentials(Path(args["pki01"]), "school-S1"))
    )
    watcher = transfers_pb2_grpc.TransferServiceStub(
        grpc.aio.secure_channel(args["receiver"], credentials(Path(args["pki79"]), f"school-{school}"))
    )
    waiting: dict[str, asyncio.Future[None]] = {}
    arrived: set[str] = set()

    async def watch() -> None:
        cursor = ""
        while True:
            try:
                async for ev in watcher.WatchTransfers(transfers_pb2.WatchTransfersRequest(cursor=cursor)):
                    cursor = ev.cursor
                    fut = waiting.pop(ev.transfer.id, None)
                    if fut is not None and not fut.done():
                        fut.set_result(None)
                    else:
                        arrived.add(ev.transfer.id)
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.1)

    task = asyncio.get_running_loop().create_task(watch())
    per_worker, workers = args["records_per_worker"], args["workers"]

    async def run(i: int, end: float, record: Callable[[str, float], None], failed: Callable[[str], None]) -> None:
        _ = task  # keep the watcher alive as long as the workers
        for k in range(per_worker):
            if time.time() >= end:
                return
            code = lookup_code(i + k * workers)
            t0 = time.perf_counter()
            try:
                resp = await sender.InitiateTransfer(
                    transfers_pb2.InitiateTransferRequest(
                        request_id=str(uuid.uuid4()), lookup_code=code, to_school=school, to_province="79"
                    ),
                    timeout=10,
                )
            except grpc.aio.AioRpcError:
                failed("initiate")
                return
            t1 = time.perf_counter()
            record("initiate", t1 - t0)
            tid = resp.transfer.id
            if tid in arrived:
                arrived.discard(tid)
            else:
                fut = asyncio.get_running_loop().create_future()
                waiting[tid] = fut
                try:
                    await asyncio.wait_for(fut, timeout=30)
                except TimeoutError:
                    failed("arrival")
                    return
            record("initiate_to_arrival", time.perf_counter() - t0)

    return run


def receiving_school(process: int) -> str:
    return f"D{process + 1}"


def seed(work: Path, sender: Node, receiver: Node, n: int, receiving: list[str]) -> None:
    """Schools on both nodes; n records at 01/S1, each with a page signed by its homeroom teacher."""
    from transfer.client import ClientTls, TransferClient
    from transfer.client.signing import sign_digest

    a = TransferClient(sender.address, ClientTls.from_pki(sender.pki, "province-admin"))
    b = TransferClient(receiver.address, ClientTls.from_pki(receiver.pki, "province-admin"))
    a.register_school("S1", "Bench school 1")
    for code in receiving:
        b.register_school(code, f"Bench school {code}")
    staff = TransferClient(sender.address, ClientTls.from_pki(sender.pki, "school-admin-S1"))
    ca = SigningCA.load(sender.pki)
    pem, key = ca.teacher("GV1", "ed25519", write=False)
    teacher = staff.register_teacher("GV1", "Bench teacher", [pem])
    year = "2026-2027"
    staff.assign_duty((1, year, "3A", ""), teacher.id)
    s1 = TransferClient(sender.address, ClientTls.from_pki(sender.pki, "school-S1"))
    t0 = time.monotonic()

    def one(i: int) -> None:
        code = lookup_code(i)
        s1.register_record(code, f"{i:012d}", 1)
        page = s1.add_page(code, year, 3, "3A", f"%PDF bench {i}".encode(), [(1, "")]).page
        s1.sign_page(page.id, (1, ""), teacher.id, page.digest, sign_digest(key, page.digest))

    # Several calls in flight (the client is thread-safe): the node group-commits them.
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        for done, _ in enumerate(pool.map(one, range(n)), 1):
            if done % 500 == 0 or done == n:
                rate = done / (time.monotonic() - t0)
                print(f"\rseeding records: {done}/{n} ({rate:.0f}/s)", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    for c in (a, b, staff, s1):
        c.close()


def outbox_figures(url: str, start: float, seconds: float) -> dict[str, Any]:
    """From node 01's database: offers acknowledged in the window, and their latency."""
    from sqlalchemy import create_engine, select

    from storage.database import sync_url
    from storage.schema import outbox

    engine = create_engine(sync_url(url))
    with engine.connect() as conn:
        rows = conn.execute(
            select(outbox.c.created_at_us, outbox.c.delivered_at_us, outbox.c.attempts).where(outbox.c.kind == 1)
        ).all()
    engine.dispose()
    lo, hi = int(start * 1e6), int((start + seconds) * 1e6)
    delivered = [r for r in rows if r[1] is not None and lo <= r[1] <= hi]
    latencies = sorted((r[1] - r[0]) / 1e6 for r in delivered)
    return {
        "offers_total": len(rows),
        "acknowledged_in_window": len(delivered),
        "acknowledged_per_s": len(delivered) / seconds,
        "ack_latency_p50_ms": percentile(latencies, 50) * 1000,
        "ack_latency_p99_ms": percentile(latencies, 99) * 1000,
        "retried": sum(1 for r in rows if r[2] > 0),
    }


def main(argv: list[str] | None = None) -> int:
    from bench.harness import emit
    from bench.transfers import echo_rate

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--concurrency", default="1,16")
    parser.add_argument("--processes", type=int, default=2, help="client processes")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--records", type=int, default=3000, help="records seeded per run (one per offer)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--keep", action="store_true", help="keep the nodes' directories (logs, databases)")
    ns = parser.parse_args(argv)
    results = []
    for c in [int(x) for x in ns.concurrency.split(",")]:
        work = Path(tempfile.mkdtemp(prefix="hocba-bench-fed-"))
        make_dev_pki(work / "pki01", "01", ["S1"])
        receiving = [receiving_school(k) for k in range(min(ns.processes, c))]
        make_dev_pki(work / "pki79", "79", receiving)
        SigningCA(
            work / "pki01", not_before=datetime(2020, 1, 1, tzinfo=UTC), not_after=datetime(2040, 1, 1, tzinfo=UTC)
        )
        (work / "signing-cas.pem").write_bytes(
            (work / "pki01" / "signing-ca.pem").read_bytes() + (work / "pki79" / "signing-ca.pem").read_bytes()
        )
        urls = [database_url(ns.db, work / "node01.db"), database_url(ns.db, work / "node79.db")]
        # The echo baseline uses the same TLS settings (node 01's PKI).
        from bench.harness import Workdir

        echo_work = Workdir()
        echo = echo_rate(echo_work, c, min(ns.processes, c), ns.seconds, ns.warmup)
        echo_work.cleanup()
        p01, p79 = free_port(), free_port()
        a = Node(work, "01", urls[0], p01, "79", p79)
        b = Node(work, "79", urls[1], p79, "01", p01)
        try:
            # Enough records for the window: one per offer; a single client needs fewer.
            n_records = ns.records if c > 1 else max(ns.records // 2, 200)
            seed(work, a, b, n_records, receiving)
            processes = min(ns.processes, c)
            start = time.time() + 2.0 + ns.warmup
            stats = run_clients(
                "bench.federation:offer_worker",
                {
                    "sender": a.address,
                    "receiver": b.address,
                    "pki01": str(work / "pki01"),
                    "pki79": str(work / "pki79"),
                    "records_per_worker": n_records // c,
                    "workers": c,
                },
                concurrency=c,
                processes=processes,
                seconds=ns.seconds,
                warmup=ns.warmup,
            )
            rss = {"01": a.rss_mb(), "79": b.rss_mb()}
        finally:
            a.stop()
            b.stop()
        figures = outbox_figures(urls[0], start, ns.seconds)
        summary = stats.summary(ns.seconds)
        arrival = summary.get("initiate_to_arrival", {})
        results.append(
            {
                "concurrency": c,
                "echo_per_s": echo["per_s"],
                **figures,
                "ratio_to_echo": figures["acknowledged_per_s"] / echo["per_s"],
                # every seeded record offered: the rate may be short of what the nodes could do
                "records_ran_out": figures["offers_total"] >= n_records - c,
                "rpcs": summary,
                "node_rss_mb": rss,
            }
        )
        print(
            f"c={c:<3} echo {echo['per_s']:7.0f}/s  acknowledged offers {figures['acknowledged_per_s']:6.0f}/s  "
            f"initiate->ack p50 {figures['ack_latency_p50_ms']:.1f} ms p99 {figures['ack_latency_p99_ms']:.1f} ms  "
            f"client initiate->arrival p50 {arrival.get('p50_ms', float('nan')):.1f} ms  "
            f"errors {sum(stats.errors.values())}",
            file=sys.stderr,
        )
        if results[-1]["records_ran_out"]:
            print("  (the records ran out inside the window: raise --records)", file=sys.stderr)
        import shutil

        if ns.keep:
            print(f"  kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    emit({"benchmark": "federation", "db": ns.db, "seconds": ns.seconds, "results": results}, ns.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
