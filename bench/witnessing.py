"""Mutations with witnessing on and off, and how long a checkpoint takes to become witnessed.

    python -m bench.witnessing --concurrency 16 --seconds 5 --runs 2

In one run, alternately (off, on, off, on, ...: the machine's speed drifts), a node
(SQLite) under the transfers benchmark's load (initiate + accept, each worker moving
its own record between two schools), once without witnesses and once with one
standalone `transfer-witness` process in `log.witnesses`. Prints JSON: the mutating
RPC rates and p99s of both, their ratio (on / off), and, from the witnessed runs'
node logs (`checkpoint witnessed`, `after_ms`), the time from a checkpoint's
publication until its cosignature is stored: count, p50, p95, max. Figures only:
nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.harness import ROOT, NodeProcess, Workdir, database_url, emit, percentile, run_clients
from bench.transfers import seed
from transfer.ledger.note import parse_vkey

ORIGIN = "hocba.invalid/province/01/log"
WITNESS = "bench-witness.example/w"


class WitnessProcess:
    """`python -m transfer.witness serve` with a new key, trusting the workdir's log key."""

    def __init__(self, work: Workdir) -> None:
        where = work.path / "witness"
        where.mkdir()
        subprocess.run(
            [sys.executable, "-m", "transfer.witness", "generate-key", WITNESS, str(where / "witness.key")],
            cwd=ROOT,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        log_vkey = (work.pki / "log.vkey").read_text().strip()
        (where / "witness.toml").write_text(
            'listen = "127.0.0.1:0"\nkey_file = "witness.key"\nstate_file = "witness.sqlite"\n\n'
            f'[[log]]\norigin = "{ORIGIN}"\nvkeys = ["{log_vkey}"]\n',
            encoding="utf-8",
        )
        self.log_path = where / "witness.log"
        self.log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "transfer.witness", "serve", "--config", str(where / "witness.toml")],
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while True:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
            found = re.search(r"^listening on (http://\S+)", text, re.M)
            key = re.search(r"^witness (\S+)", text, re.M)
            if found and key:
                self.url, self.vkey = found.group(1), key.group(1)
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"witness did not start; see {self.log_path}")
            time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()


class WitnessedNode(NodeProcess):
    """The harness's node, with `witness` (if any) as its one witness."""

    def __init__(self, work: Workdir, database_url: str, witness: WitnessProcess | None) -> None:
        witnesses = ""
        if witness is not None:
            name = parse_vkey(witness.vkey).name
            witnesses = f'\n[[log.witnesses]]\nname = "{name}"\nvkey = "{witness.vkey}"\nurl = "{witness.url}"\n'
        cfg = work.path / "node.toml"
        cfg.write_text(
            f"""
[node]
province = "01"
listen = "127.0.0.1:0"
port_file = "node.port"
[tls]
ca_file = "pki/ca.pem"
cert_file = "pki/node.pem"
key_file = "pki/node.key"
[database]
url = "{database_url}"
[log]
key_file = "pki/log.key"
latest_checkpoint_file = "node.latest-checkpoint"
{witnesses}
[signing]
ca_file = "pki/signing-ca.pem"
[logging]
level = "INFO"
format = "json"
""",
            encoding="utf-8",
        )
        self._launch(cfg, work.path / "node.port", work.path / "node.log")

    def witnessed_after_ms(self) -> list[float]:
        """`after_ms` of every `checkpoint witnessed` line the node logged."""
        out = []
        for line in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            if '"checkpoint witnessed"' in line:
                after = json.loads(line).get("after_ms")
                if after is not None:
                    out.append(float(after))
        return out


def one_run(witnessed: bool, concurrency: int, processes: int, seconds: float, warmup: float) -> dict[str, Any]:
    work = Workdir()
    witness = WitnessProcess(work) if witnessed else None
    node = None
    try:
        node = WitnessedNode(work, database_url("sqlite", work.path / "node.db"), witness)
        seed(node.address, work, concurrency)
        stats = run_clients(
            "bench.transfers:transfer_worker",
            {"addresses": [node.address], "pki": str(work.pki)},
            concurrency=concurrency,
            processes=processes,
            seconds=seconds,
            warmup=warmup,
            server_pid=node.proc.pid,
        )
    finally:
        if node is not None:
            node.stop()
        if witness is not None:
            witness.stop()
    summary = stats.summary(seconds)
    result: dict[str, Any] = {
        "witnessed": witnessed,
        "mutating_rpcs_per_s": summary["initiate"]["per_s"] + summary["accept"]["per_s"],
        "p99_ms": max(summary["initiate"]["p99_ms"], summary["accept"]["p99_ms"]),
        "after_ms": node.witnessed_after_ms() if node is not None else [],
    }
    work.cleanup()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--processes", type=int, default=2, help="client processes")
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--warmup", type=float, default=1)
    parser.add_argument("--runs", type=int, default=2, help="pairs of runs (off, then on)")
    parser.add_argument("--out", type=Path)
    ns = parser.parse_args(argv)
    runs = []
    for _ in range(ns.runs):
        for witnessed in (False, True):
            runs.append(one_run(witnessed, ns.concurrency, min(ns.processes, ns.concurrency), ns.seconds, ns.warmup))
    off = [r["mutating_rpcs_per_s"] for r in runs if not r["witnessed"]]
    on = [r["mutating_rpcs_per_s"] for r in runs if r["witnessed"]]
    after = sorted(a for r in runs for a in r["after_ms"])
    result = {
        "benchmark": "witnessing",
        "concurrency": ns.concurrency,
        "seconds": ns.seconds,
        "off_per_s": statistics.median(off),
        "on_per_s": statistics.median(on),
        "ratio_on_off": statistics.median(on) / statistics.median(off),
        "off_p99_ms": statistics.median(r["p99_ms"] for r in runs if not r["witnessed"]),
        "on_p99_ms": statistics.median(r["p99_ms"] for r in runs if r["witnessed"]),
        "runs": [{k: v for k, v in r.items() if k != "after_ms"} for r in runs],
        "witnessed": {
            "checkpoints": len(after),
            "p50_ms": percentile(after, 50) if after else float("nan"),
            "p95_ms": percentile(after, 95) if after else float("nan"),
            "max_ms": after[-1] if after else float("nan"),
        },
    }
    print(
        f"c={ns.concurrency} mutating/s off {result['off_per_s']:.0f} on {result['on_per_s']:.0f} "
        f"(ratio {result['ratio_on_off']:.3f}); p99 off {result['off_p99_ms']:.1f} ms on {result['on_p99_ms']:.1f} ms; "
        f"publication -> witnessed over {len(after)} checkpoints: p50 {result['witnessed']['p50_ms']:.1f} ms "
        f"p95 {result['witnessed']['p95_ms']:.1f} ms",
        file=sys.stderr,
    )
    emit(result, ns.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
