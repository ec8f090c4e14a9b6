"""Check a node's log from its database: `transfer-verify-log --config node.toml`.

Recomputes every leaf hash and every subtree hash from the stored leaves,
checks index contiguity, and checks each stored checkpoint's signature (with
the public half of the node's log key, or --vkey) and root. Prints progress
on long logs, then either "log verified" with figures or the first problem —
naming the first bad index when a row was altered behind the service's back.
Checkpoints held outside the database — the node's `log.latest_checkpoint_file`,
and any given with --checkpoint (one from a peer's receipt, an auditor's) —
must be signed by the log and held by the database's tree: after a restore,
this says whether the node may start. `--database URL` verifies another database
(a backup) with the node's keys and origin: against its own checkpoints and those
given with --checkpoint, not the node's latest-checkpoint file, which a backup of a
serving node is expected to be behind.
Exit status 0 when the log verifies, 1 when it does not, 2 on usage errors.
Run it while the node is up or down; it only reads.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from storage.database import DatabaseUnreachable, url_problem
from storage.logscan import LogScanner
from transfer.domain.audit import audit_log
from transfer.ledger.note import NoteError, Verifier, parse_vkey
from transfer.server.app import log_verifiers
from transfer.server.config import ConfigError, load


def _progress(stage: str, done: int, total: int) -> None:
    pct = f" ({done * 100 // total}%)" if total else ""
    print(f"  {stage}: {done:,}/{total:,}{pct}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="transfer-verify-log", description="Verify a node's append-only log.")
    parser.add_argument("--config", type=Path, required=True, help="the node's configuration")
    parser.add_argument("--vkey", help="the log's verifier key (default: derived from the node's log key file)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.add_argument(
        "--database",
        metavar="URL",
        help="verify this database (a backup, e.g. sqlite:///copy.db) with the node's keys and origin, instead of "
        "database.url; the node's log.latest_checkpoint_file is then not applied (give it with --checkpoint)",
    )
    parser.add_argument(
        "--checkpoint",
        action="append",
        type=Path,
        default=[],
        metavar="FILE",
        help="a signed checkpoint of this log held outside the database, which its tree must hold (repeatable)",
    )
    ns = parser.parse_args(argv)
    if ns.database is not None and (problem := url_problem(ns.database)) is not None:
        print(f"transfer-verify-log: --database: {problem}", file=sys.stderr)
        return 2
    try:
        cfg = load(ns.config)
        verifier: Verifier | list[Verifier] = parse_vkey(ns.vkey) if ns.vkey else log_verifiers(cfg)
        files = list(ns.checkpoint)
        if ns.database is None and cfg.latest_checkpoint_file.exists():
            files.insert(0, cfg.latest_checkpoint_file)
        held = [(str(f), f.read_text(encoding="utf-8")) for f in files]
    except (ConfigError, NoteError, OSError, UnicodeDecodeError) as exc:
        print(f"transfer-verify-log: {exc}", file=sys.stderr)
        return 2
    try:
        scanner = LogScanner(ns.database or cfg.database_url)
    except DatabaseUnreachable as exc:
        print(f"transfer-verify-log: {exc}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    try:
        report = audit_log(
            scanner, verifier, cfg.log_origin, progress=(lambda *a: None) if ns.quiet else _progress, held=held
        )
    finally:
        scanner.close()
    seconds = time.perf_counter() - started
    if not report.ok:
        for problem in report.problems:
            print(f"LOG DOES NOT VERIFY: {problem}")
        if report.first_bad_index is not None:
            print(f"first bad index: {report.first_bad_index}")
        return 1
    print(
        f"log verified: {report.size:,} entries, {report.nodes_checked:,} subtree hashes, "
        f"{report.checkpoints_checked} checkpoints"
        + (f", {report.held_checked} held outside the database" if held else "")
        + f", in {seconds:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
