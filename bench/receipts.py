"""What a receipt's entry promise costs per mutation, and what verifying one costs a school.

    python -m bench.receipts [--count 5000]

The node signs each receipt's promise (transfer/ledger/receipt.py) after the writer committed,
on the event loop: this measures that work alone — `Logbook.promise` on real entries (the
leaf hash, the note text, one Ed25519 signature; two during a key rotation) and
`convert.with_promise` on a real response (the same plus the protobuf field) — and, for the
school, `verify_promise` and `verify_bundle` offline. CPU time per operation (process time),
in microseconds. Compare with the node's CPU per mutating call (docs/performance.md: 1.2-1.9 ms).
Prints a table on stderr and JSON on stdout.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from bench.harness import emit
from transfer.domain.leaves import LeafKind, TransferLeaf
from transfer.domain.logbook import Logbook
from transfer.ledger import merkle
from transfer.ledger.note import Checkpoint, generate_key, parse_skey, parse_vkey, sign_note
from transfer.ledger.receipt import ProofBundle, verify_bundle, verify_promise
from transfer.server.convert import with_promise
from transfer.v1 import log_pb2, transfers_pb2

ORIGIN = "hocba.invalid/province/01/log"


class _Clock:
    def now(self) -> datetime:
        return datetime.now(UTC)


def _leaves(count: int) -> list[bytes]:
    now = datetime.now(UTC)
    return [
        TransferLeaf(
            LeafKind.TRANSFER_ACCEPTED, now, uuid.uuid4().hex, bytes(32), "01", "S1", "01", "S2", "school:S2"
        ).encode()
        for _ in range(count)
    ]


def _per_op_us(count: int, op: Callable[[int], object]) -> float:
    start = time.process_time()
    for i in range(count):
        op(i)
    return (time.process_time() - start) / count * 1e6


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.receipts", description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--count", type=int, default=5000)
    p.add_argument("--out", type=Path)
    ns = p.parse_args(argv)
    n = ns.count
    skey, vkey = generate_key(ORIGIN)
    next_skey, _ = generate_key(ORIGIN)
    signer = parse_skey(skey)
    logbook = Logbook(ORIGIN, signer, _Clock())
    rotating = Logbook(ORIGIN, signer, _Clock(), also=[parse_skey(next_skey)])
    leaves = _leaves(n)
    promises = [logbook.promise(i, leaf) for i, leaf in enumerate(leaves)]
    verifiers = [parse_vkey(vkey)]

    def respond(i: int) -> object:
        msg = transfers_pb2.AcceptTransferResponse(receipt=log_pb2.LogReceipt(index=i, leaf=leaves[i], origin=ORIGIN))
        return with_promise(msg, logbook)

    size = 1 << 20
    hashes = [merkle.leaf_hash(leaf) for leaf in leaves[:64]]
    proof = tuple(hashes[:20])  # a proof's length in a log of 2^20 (content is irrelevant to its cost)
    note = sign_note(Checkpoint(ORIGIN, size, bytes(32)).text(), signer)
    bundle = ProofBundle(ORIGIN, 12345, leaves[0], proof, note).text()

    def bundle_check(i: int) -> object:
        try:
            return verify_bundle(bundle, verifiers)
        except ValueError:  # the proof is not a real one: the cost up to the hash chain is what counts
            return None

    rows = {
        "promise_sign_us": _per_op_us(n, lambda i: logbook.promise(i, leaves[i])),
        "promise_sign_rotation_us": _per_op_us(n, lambda i: rotating.promise(i, leaves[i])),
        "response_with_promise_us": _per_op_us(n, respond),
        "promise_verify_us": _per_op_us(n, lambda i: verify_promise(promises[i], verifiers, leaf=leaves[i])),
        "bundle_verify_us": _per_op_us(min(n, 2000), bundle_check),
    }
    for name, value in rows.items():
        print(f"{name:28} {value:8.1f} µs", file=sys.stderr)
    emit({"count": n, **{k: round(v, 1) for k, v in rows.items()}}, ns.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
