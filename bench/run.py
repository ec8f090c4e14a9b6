"""The standard benchmark set: `make bench` (or `python -m bench.run`).

Runs each benchmark of `bench/` as its own process, the quick ones several
times (--runs, default 3) and the long ones (a million log entries, a million
records) once, then reports every figure's median, min and max over the runs,
next to its target and, for rates, its ratio to the bare-echo rate measured in
the same run. Writes bench/results/latest.json and bench/results/latest.md and
prints the table. PostgreSQL figures are included when TRANSFER_BENCH_PG (or
TRANSFER_TEST_PG) names a server (`make bench` starts a throwaway one).

The machine is shared and noisy: compare ratios taken in one run, and medians.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


@dataclass(frozen=True)
class Figure:
    name: str
    unit: str
    target: str  # human-readable
    ok: Callable[[float], bool] | None
    get: Callable[[dict[str, Any]], float]
    # for a figure whose one result already holds several runs: their (min, max)
    spread: Callable[[dict[str, Any]], tuple[float, float]] | None = None


def _by_c(result: dict[str, Any], c: int) -> dict[str, Any]:
    return next(r for r in result["results"] if r["concurrency"] == c)


def _at(c: int, key: str) -> Callable[[dict[str, Any]], float]:
    """The figure `key` of concurrency `c` in a transfers result."""
    return lambda r: float(_by_c(r, c)[key])


def transfer_figures(db: str) -> list[Figure]:
    figs = []
    for c in (1, 16, 64):
        figs.append(
            Figure(
                f"intra {db} c={c}: mutating RPCs / echo",
                "ratio",
                "≥ 0.6",
                lambda v: v >= 0.6,
                _at(c, "ratio_to_echo"),
            )
        )
        figs.append(
            Figure(
                f"intra {db} c={c}: complete transfers",
                "/s",
                "≥ 1000" if db == "sqlite" else "≥ 800",
                (lambda v: v >= 1000) if db == "sqlite" else (lambda v: v >= 800),
                _at(c, "transfers_per_s"),
            )
        )
        figs.append(
            Figure(
                f"intra {db} c={c}: node CPU per mutating RPC",
                "ms",
                "",
                None,
                _at(c, "node_cpu_ms_per_rpc"),
            )
        )
    figs.append(
        Figure(
            f"intra {db} c=16: p99 of a mutating RPC",
            "ms",
            "≤ 25",
            lambda v: v <= 25,
            lambda r: max(_by_c(r, 16)["rpcs"]["initiate"]["p99_ms"], _by_c(r, 16)["rpcs"]["accept"]["p99_ms"]),
        )
    )
    figs.append(Figure(f"intra {db} c=16: bare echo", "calls/s", "", None, lambda r: _by_c(r, 16)["echo_per_s"]))
    return figs


FEDERATION = [
    Figure("inter-province c=16: offers acknowledged", "/s", "≥ 300", lambda v: v >= 300,
           lambda r: _by_c(r, 16)["acknowledged_per_s"]),
    Figure("inter-province c=1: initiate→acknowledged p50", "ms", "≤ 50", lambda v: v <= 50,
           lambda r: _by_c(r, 1)["ack_latency_p50_ms"]),
    Figure("inter-province c=16: initiate→acknowledged p50", "ms", "≤ 50", lambda v: v <= 50,
           lambda r: _by_c(r, 16)["ack_latency_p50_ms"]),
]  # fmt: skip

HANDOFF = [
    Figure("handoff of 1,000 pending tasks", "ms", "≤ 1000", lambda v: v <= 1000,
           lambda r: r["handoff_s"]["median"] * 1000,
           lambda r: (r["handoff_s"]["min"] * 1000, r["handoff_s"]["max"] * 1000)),
    Figure("Ed25519 signatures verified", "/s", "", None, lambda r: r["verify_per_s"]["ed25519"]["raw"]),
]  # fmt: skip

LOG = [
    Figure("log appends, batched (1000 per transaction)", "/s", "≥ 20000", lambda v: v >= 20000,
           lambda r: r["appends"]["1000_per_command"]),
    Figure("log appends, one per command (group commit)", "/s", "", None, lambda r: r["appends"]["1_per_command"]),
    Figure("inclusion proof at 10^5 (API) p99", "ms", "≤ 10", lambda v: v <= 10,
           lambda r: r["sizes"][-1]["api_inclusion_p99_ms"]),
]  # fmt: skip

WITNESSING = [
    Figure("c=16 mutating RPCs, witnessing on / off", "ratio", "≥ 0.95", lambda v: v >= 0.95,
           lambda r: r["ratio_on_off"]),
    Figure("checkpoint published → witnessed p50", "ms", "", None, lambda r: r["witnessed"]["p50_ms"]),
    Figure("checkpoint published → witnessed p95", "ms", "", None, lambda r: r["witnessed"]["p95_ms"]),
]  # fmt: skip

RECEIPTS = [
    Figure("receipt's entry promise, signed per mutation (CPU)", "µs", "", None, lambda r: r["promise_sign_us"]),
    Figure("receipt verified offline (CPU)", "µs", "", None, lambda r: r["promise_verify_us"]),
]  # fmt: skip

SCALE = [
    Figure("10^6 records: GetRecord p99", "ms", "≤ 10", lambda v: v <= 10, lambda r: r["reads"]["get_record"]["p99_ms"]),
    Figure("10^6 records: ListRecords page p99", "ms", "≤ 10", lambda v: v <= 10,
           lambda r: r["reads"]["list_records_page"]["p99_ms"]),
    Figure("10^6 records: incoming transfers page p99", "ms", "≤ 10", lambda v: v <= 10,
           lambda r: r["reads"]["list_incoming_page"]["p99_ms"]),
    Figure("10^6 entries: inclusion proof p99", "ms", "≤ 10", lambda v: v <= 10,
           lambda r: r["reads"]["inclusion_proof"]["p99_ms"]),
    Figure("10^6 entries: consistency proof p99", "ms", "", None, lambda r: r["reads"]["consistency_proof"]["p99_ms"]),
    Figure("verify 10^6 entries (transfer-verify-log)", "s", "≤ 60", lambda v: v <= 60, lambda r: r["verify_s"]),
    Figure("node resident memory at scale", "MB", "≤ 300", lambda v: v <= 300, lambda r: r["node_rss_mb"]),
    Figure("bulk import (transfer-import)", "rows/s", "", None, lambda r: r["import_rows_per_s"]),
]  # fmt: skip


def run_one(module: str, args: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = Path(f.name)
    started = time.monotonic()
    print(f"--- python -m {module} {' '.join(args)}", file=sys.stderr, flush=True)
    subprocess.run(
        [sys.executable, "-m", module, *args, "--out", str(out)],
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )
    result: dict[str, Any] = json.loads(out.read_text())
    out.unlink()
    print(f"    ({time.monotonic() - started:.0f} s)", file=sys.stderr, flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3, help="runs of the quick benchmarks")
    parser.add_argument("--seconds", type=float, default=3, help="measured window of each load test")
    parser.add_argument("--scale", type=int, default=1_000_000, help="records and log entries of the scale test")
    parser.add_argument("--skip-long", action="store_true", help="leave out the 10^6 log and scale tests")
    ns = parser.parse_args(argv)
    pg = os.environ.get("TRANSFER_BENCH_PG") or os.environ.get("TRANSFER_TEST_PG")
    started = time.monotonic()
    secs = ["--seconds", str(ns.seconds), "--warmup", "1"]
    plan: list[tuple[str, list[Figure], str, list[str], int]] = [
        (
            "transfers-sqlite",
            transfer_figures("sqlite"),
            "bench.transfers",
            ["--concurrency", "1,16,64", *secs],
            ns.runs,
        ),
        ("federation", FEDERATION, "bench.federation", ["--concurrency", "1,16", "--records", "1500", *secs], ns.runs),
        # off and on alternate within one run; its own median over them
        ("witnessing", WITNESSING, "bench.witnessing", ["--concurrency", "16", "--runs", str(ns.runs), *secs], 1),
        # CPU per operation in one process: the promise each receipt carries, and verifying it offline
        ("receipts", RECEIPTS, "bench.receipts", ["--count", "5000"], 1),
        # one process, its own median over the runs (a handoff takes a fraction of a second)
        ("handoff", HANDOFF, "bench.handoff", ["--runs", str(ns.runs), "--verify-seconds", "1"], 1),
    ]
    if pg:
        plan.insert(1, ("transfers-postgresql", transfer_figures("postgresql"), "bench.transfers",
                        ["--db", "postgresql", "--concurrency", "16,64", *secs], ns.runs))  # fmt: skip
    if not ns.skip_long:
        n = str(ns.scale)
        plan += [
            # append rates, and proofs at 10^5; the million-entry log (proofs, verify) is the scale test's
            (
                "log",
                LOG,
                "bench.log",
                ["--sizes", str(min(ns.scale, 100_000)), "--proofs", "300", "--appends", "20000", "--no-verify"],
                1,
            ),
            ("scale", SCALE, "bench.scale", ["--records", n, "--entries", n, "--calls", "1000"], 1),
        ]
    raw: dict[str, list[dict[str, Any]]] = {}
    for key, _, module, args, runs in plan:
        raw[key] = [run_one(module, args) for _ in range(runs)]

    rows = []
    for key, figures, _, _, _ in plan:
        for fig in figures:
            values = []
            for result in raw[key]:
                try:
                    values.append(float(fig.get(result)))
                except (KeyError, StopIteration, IndexError):
                    continue
            if not values:
                continue
            med = statistics.median(values)
            lo, hi = min(values), max(values)
            runs = len(values)
            if fig.spread is not None and len(raw[key]) == 1:
                lo, hi = fig.spread(raw[key][0])
                runs = ns.runs
            rows.append(
                {
                    "figure": fig.name, "unit": fig.unit, "median": med, "min": lo, "max": hi,
                    "runs": runs, "target": fig.target,
                    "meets": None if fig.ok is None else bool(fig.ok(med)),
                }
            )  # fmt: skip
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "runs": ns.runs,
        "seconds": ns.seconds,
        "elapsed_s": round(time.monotonic() - started),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps({"meta": meta, "figures": rows, "raw": raw}, indent=1) + "\n")
    table = _table(meta, rows)
    (RESULTS / "latest.md").write_text(table)
    print(table)
    return 0


def _fmt(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.2f}"


def _table(meta: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    lines = [
        f"Benchmarks of {meta['date']} on {meta['machine']}; quick ones {meta['runs']} runs of "
        f"{meta['seconds']} s windows, long ones once; {meta['elapsed_s']} s in all.",
        "",
        "| figure | median | min | max | unit | target | meets |",
        "| --- | ---: | ---: | ---: | --- | --- | --- |",
    ]
    for r in rows:
        meets = "" if r["meets"] is None else ("yes" if r["meets"] else "**no**")
        lines.append(
            f"| {r['figure']} | {_fmt(r['median'])} | {_fmt(r['min'])} | {_fmt(r['max'])} | {r['unit']} "
            f"| {r['target']} | {meets} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
