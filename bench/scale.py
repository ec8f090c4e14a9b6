"""A node at scale: reads and proofs with a million records and a million log entries.

    python -m bench.scale --records 1000000 --entries 1000000

Seeds a fresh node's database (SQLite file, or PostgreSQL with --db
postgresql and TRANSFER_BENCH_PG): 100 schools through the API, the records
with `transfer-import` (the documented bulk import, from a generated CSV,
progress bar and rate on stderr), the log to the wanted size through the
node's writer (batched appends), and incoming transfers for one school
through the API. Then, against the node process over mTLS, one client times
GetRecord, ListRecords (a page from the middle of a school's records),
ListTransfers (incoming, a page), GetInclusionProof and GetConsistencyProof at
random points, and the node's resident memory is read; then
`transfer-verify-log` checks the whole log and is timed. Prints a table on
stderr and JSON on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import random
import sys
import time
from pathlib import Path
from typing import Any

from bench.harness import NodeProcess, Workdir, database_url, emit, percentile
from bench.log import _seed as seed_log
from bench.log import verify_seconds
from transfer.client import ClientTls, TransferClient
from transfer.server.importer import run_import
from transfer.v1 import transfers_pb2

SCHOOLS = 100


def lookup_code(i: int) -> str:
    return f"{i:032x}"


def school_of(i: int) -> str:
    return f"S{i % SCHOOLS + 1}"


def write_csv(path: Path, n: int) -> float:
    started = time.perf_counter()
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["lookup_code", "national_id", "level", "custodian_school"])
        for i in range(n):
            w.writerow([lookup_code(i), f"{i:012d}", 1, school_of(i)])
    return time.perf_counter() - started


def timed(fn: Any, n: int) -> dict[str, float]:
    xs = []
    for k in range(n):
        t = time.perf_counter()
        fn(k)
        xs.append(time.perf_counter() - t)
    xs.sort()
    return {"p50_ms": percentile(xs, 50) * 1000, "p99_ms": percentile(xs, 99) * 1000, "max_ms": xs[-1] * 1000}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--entries", type=int, default=1_000_000, help="log size (at least the transfers' entries)")
    parser.add_argument("--incoming", type=int, default=2000, help="open transfers to school S1 (through the API)")
    parser.add_argument("--calls", type=int, default=2000, help="timed calls per kind")
    parser.add_argument("--no-verify", action="store_true", help="skip timing transfer-verify-log over the log")
    parser.add_argument("--out", type=Path)
    ns = parser.parse_args(argv)
    work = Workdir()
    url = database_url(ns.db, work.path / "node.db")
    result: dict[str, Any] = {"benchmark": "scale", "db": ns.db, "records": ns.records, "entries": ns.entries}
    try:
        node = NodeProcess(work, url)  # creates the schema; registers the schools
        admin = TransferClient(node.address, ClientTls.from_pki(work.pki, "province-admin"))
        for k in range(1, SCHOOLS + 1):
            admin.register_school(f"S{k}", f"Bench school {k}")
        admin.close()
        node.stop()

        data = work.path / "records.csv"
        print(f"writing {ns.records:,} records to {data.name} ...", file=sys.stderr)
        write_csv(data, ns.records)
        print("importing them with transfer-import:", file=sys.stderr)
        started = time.perf_counter()
        outcome, refused = asyncio.run(run_import(work.path / "node.toml", data, work.path / "rejects.csv"))
        result["import_rows_per_s"] = outcome.added / (time.perf_counter() - started)
        assert refused == 0 and outcome.added == ns.records, (outcome, refused)
        data.unlink()

        print(f"seeding the log to {ns.entries:,} entries:", file=sys.stderr)
        room = max(0, ns.entries - ns.incoming)  # each initiate adds one entry
        result["log_seed_entries_per_s"] = asyncio.run(seed_log(url, room, True)) if room else 0.0

        node = NodeProcess(work, url)
        try:
            s2 = TransferClient(node.address, ClientTls.from_pki(work.pki, "school-S2"))
            s1 = TransferClient(node.address, ClientTls.from_pki(work.pki, "school-S1"))
            print(f"opening {ns.incoming:,} transfers from S2 to S1 through the API ...", file=sys.stderr)
            s2_codes = [lookup_code(i) for i in range(1, ns.records, SCHOOLS)][: ns.incoming]
            for code in s2_codes:
                s2.initiate_transfer(code, "S1")
            size = s1.get_checkpoint().tree_size
            deadline = time.monotonic() + 30
            while size < room + len(s2_codes) and time.monotonic() < deadline:  # signed within a second
                time.sleep(0.2)
                size = s1.get_checkpoint().tree_size
            rng = random.Random(7)
            own = ns.records // SCHOOLS  # records per school
            middle = s1.list_records(page_size=50)
            for _ in range(own // 100):  # walk to the middle of S1's records
                middle = (
                    s1.list_records(page_size=50, page_token=middle.next_page_token)
                    if middle.next_page_token
                    else middle
                )
            token = middle.next_page_token
            incoming = transfers_pb2.TRANSFER_DIRECTION_INCOMING
            figures = {
                "get_record": timed(lambda k: s1.get_record(lookup_code(rng.randrange(own) * SCHOOLS)), ns.calls),
                "list_records_page": timed(lambda k: s1.list_records(page_size=50, page_token=token), ns.calls),
                "list_incoming_page": timed(lambda k: s1.list_transfers(incoming, page_size=50), ns.calls),
                "inclusion_proof": timed(lambda k: s1.inclusion_proof(rng.randrange(size), size), ns.calls),
                "consistency_proof": timed(lambda k: s1.consistency_proof(rng.randrange(1, size), size), ns.calls),
            }
            result["reads"] = figures
            result["log_size"] = size
            result["node_rss_mb"] = node.rss_mb()
            s1.close()
            s2.close()
        finally:
            node.stop()
        if not ns.no_verify:  # the operator's check of the whole log, as stored (docs/operations.md)
            print(f"verifying the {size:,}-entry log with transfer-verify-log ...", file=sys.stderr)
            result["verify_s"] = verify_seconds(work)
        result["db_mb"] = (
            sum(p.stat().st_size for p in work.path.glob("node.db*")) / 2**20 if ns.db == "sqlite" else None
        )
    finally:
        work.cleanup()
    for name, f in result.get("reads", {}).items():
        print(
            f"{name:<20} p50 {f['p50_ms']:6.2f} ms  p99 {f['p99_ms']:6.2f} ms  max {f['max_ms']:6.1f} ms",
            file=sys.stderr,
        )
    print(
        f"import {result['import_rows_per_s']:,.0f} rows/s  log seed {result['log_seed_entries_per_s']:,.0f} entries/s  "
        f"node RSS {result.get('node_rss_mb', float('nan')):.0f} MB  verify {result.get('verify_s', float('nan')):.1f} s",
        file=sys.stderr,
    )
    emit(result, ns.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
