"""`transfer-verify-receipt`: check a receipt or a proof bundle with no network.

    transfer-verify-receipt FILE --log-key VKEY|FILE [--log-key …] [--witness VKEY|FILE …] [--quorum K]
                            [--origin ORIGIN] [--index N]

FILE (or "-" for standard input) holds one of:

* a **proof bundle** (first line `hocba-proof-bundle/v1`: `transfer-cli proof-bundle`, or a
  peer's receipt the sending node kept): the checkpoint must be signed by one of the log keys,
  be of the bundle's origin, cover its index, and the inclusion proof must lead from the entry
  to its root. Witness cosignatures (cosignature/v1) are counted against `--witness` keys;
* a **receipt** as `transfer-cli --json` prints a change (or its `receipt` object alone): its
  `signed_entry`, the node's signed promise, must be signed by one of the log keys and name the
  receipt's origin, index and the hash of its entry bytes;
* an **entry promise** alone (first line `hocba-entry/v1`): its signature is checked, and what
  it promises is printed.

`--log-key` takes the log's current key and, repeated, its previous or next keys (a receipt or
checkpoint signed by any of them verifies). Each key may be given as the vkey itself or as a
file holding it.

Exit status (docs/log.md, Receipts that verify offline):

  0  verified (and, with --quorum, cosigned by at least K of the given witnesses)
  1  does not verify: wrong key, tampered entry, bad inclusion proof, origin or index mismatch,
     a checkpoint that does not cover the entry; the line says which check failed
  2  usage: unreadable file or key, an argument that makes no sense
  3  included, but NOT witnessed: fewer than K valid cosignatures from the given witnesses
     (an entry promise carries none: fetch the bundle once a witnessed checkpoint covers it)
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from transfer.ledger.note import NoteError, Verifier, parse_vkey
from transfer.ledger.receipt import (
    BUNDLE_HEADER,
    ENTRY_HEADER,
    BundleCheck,
    PromiseCheck,
    ReceiptError,
    verify_bundle,
    verify_promise,
)
from transfer.ledger.witnessed import cosignature_verifier

PROG = "transfer-verify-receipt"
OK, FAILED, USAGE, NOT_WITNESSED = 0, 1, 2, 3


class Usage(Exception):
    """An argument or input that cannot be used; exit 2."""


def _key(arg: str, what: str, *, witness: bool = False) -> Verifier:
    """A verifier key given as itself or as a file holding it (a witness's: a cosignature/v1 key)."""
    text = arg
    path = Path(arg)
    if "+" not in arg or path.is_file():
        try:
            text = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise Usage(f"{what} {arg}: not a verifier key, nor a readable file holding one ({exc})") from None
    try:
        return cosignature_verifier(text) if witness else parse_vkey(text)
    except NoteError as exc:
        raise Usage(f"{what} {arg}: {exc}") from None


def _read(arg: str) -> str:
    try:
        return sys.stdin.read() if arg == "-" else Path(arg).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise Usage(f"{arg}: cannot read it ({exc})") from None


def _when(time_us: int) -> str:
    try:
        return datetime.fromtimestamp(time_us / 1e6, UTC).isoformat(timespec="seconds")
    except (OverflowError, ValueError, OSError):
        return f"{time_us} µs"


def _keys(names: Sequence[str]) -> str:
    return ", ".join(names)


def _receipt_fields(text: str) -> tuple[int, bytes, str, str]:
    """(index, leaf, origin, signed_entry) from a receipt in JSON."""
    try:
        data: Any = json.loads(text)
    except ValueError:
        raise Usage("not a proof bundle, an entry promise, nor a receipt in JSON") from None
    receipt = data.get("receipt", data) if isinstance(data, dict) else None
    if not isinstance(receipt, dict):
        raise Usage("the JSON holds no receipt object")
    try:
        index = int(receipt.get("index", 0))
        leaf = base64.b64decode(receipt["leaf"], validate=True)
        origin = str(receipt.get("origin", ""))
        signed = str(receipt.get("signed_entry") or receipt.get("signedEntry") or "")
    except (KeyError, ValueError, TypeError, binascii.Error):
        raise Usage("the receipt's index, leaf or origin is missing or malformed") from None
    if not signed:
        raise ReceiptError(
            "log-key",
            "the receipt carries no signed_entry (a node without this feature, or no log key): nothing to verify offline",
        )
    return index, leaf, origin, signed


def _print_promise(found: PromiseCheck, leaf_checked: bool) -> None:
    p = found.promise
    print(
        f"VERIFIED entry promise: entry {p.index} of log {p.origin} has leaf hash {p.leaf_hash.hex()} "
        f"(entry time {_when(p.time_us)}), signed by log key {_keys(found.signed_by)}"
    )
    if leaf_checked:
        print("  the receipt's entry bytes hash to that leaf hash")
    print(
        "  this is the node's signed promise, not a proof: a checkpoint and inclusion proof (a proof bundle) prove it"
    )


def _print_bundle(found: BundleCheck) -> None:
    b = found.bundle
    print(
        f"VERIFIED inclusion: entry {b.index} of log {b.origin} (leaf hash from its {len(b.leaf)} bytes) is in the "
        f"tree of size {found.tree_size}, whose checkpoint is signed by log key {_keys(found.signed_by)}"
    )


def _witnessing(found: BundleCheck | None, quorum: int | None, witnesses: Sequence[Verifier]) -> int:
    """Report the cosignatures; the exit status they lead to."""
    if found is None:  # an entry promise: nothing is cosigned
        if quorum:
            print(f"included, NOT witnessed (0 of {quorum} needed): an entry promise carries no cosignatures")
            return NOT_WITNESSED
        return OK
    valid, missing, invalid = found.cosigned, found.missing, found.witnessing.invalid
    if witnesses:
        print(
            f"  cosigned by {len(valid)} of the {len(witnesses)} given witnesses"
            + (f": {_keys(valid)}" if valid else "")
            + (f"; no valid cosignature from: {_keys(missing)}" if missing else "")
        )
    if invalid:
        print(
            f"  WARNING: a cosignature line with the key of {_keys(invalid)} does not verify (a broken or forged line)"
        )
    if quorum is None:
        return OK
    if len(valid) >= quorum:
        print(f"WITNESSED: {len(valid)} of {quorum} needed cosignatures verify ({_keys(valid)})")
        return OK
    print(f"included, NOT witnessed ({len(valid)} of {quorum} needed, missing: {_keys(missing) or '-'})")
    return NOT_WITNESSED


def verify(text: str, log_keys: Sequence[Verifier], witnesses: Sequence[Verifier], quorum: int | None,
           origin: str | None, index: int | None) -> int:  # fmt: skip
    """Verify one receipt, promise or bundle and print what was verified; the exit status."""
    first = text.split("\n", 1)[0]
    found: BundleCheck | None = None
    if first == BUNDLE_HEADER:
        found = verify_bundle(text, log_keys, witnesses, origin=origin)
        if index is not None and found.bundle.index != index:
            raise ReceiptError("entry", f"the bundle is for entry {found.bundle.index}, not {index}")
        _print_bundle(found)
    elif first == ENTRY_HEADER:
        _print_promise(verify_promise(text, log_keys, origin=origin, index=index), leaf_checked=False)
    else:
        at, leaf, named, signed = _receipt_fields(text)
        if index is not None and at != index:
            raise ReceiptError("entry", f"the receipt is for entry {at}, not {index}")
        if origin is not None and named and named != origin:
            raise ReceiptError("origin", f"the receipt is for the log {named!r}, not {origin!r}")
        _print_promise(verify_promise(signed, log_keys, leaf=leaf, index=at, origin=named or origin), leaf_checked=True)
    return _witnessing(found, quorum, witnesses)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Verify a log receipt, entry promise or proof bundle offline (docs/log.md).",
        epilog="Exit status: 0 verified; 1 does not verify; 2 usage; 3 included but not witnessed (--quorum).",
    )
    p.add_argument("file", help="the receipt (JSON), entry promise or proof bundle; - for standard input")
    p.add_argument(
        "--log-key", action="append", default=[], required=True, metavar="VKEY|FILE",
        help="the log's verifier key (repeat for its previous or next keys)",
    )  # fmt: skip
    p.add_argument(
        "--witness", action="append", default=[], metavar="VKEY|FILE",
        help="a witness's cosignature/v1 verifier key (repeatable)",
    )  # fmt: skip
    p.add_argument("--quorum", type=int, help="how many of the --witness keys must cosign the checkpoint")
    p.add_argument("--origin", help="the log's origin, as pinned (default: the one the receipt names)")
    p.add_argument("--index", type=int, help="the entry index the receipt must be for")
    ns = p.parse_args(argv)
    try:
        log_keys = [_key(k, "--log-key") for k in ns.log_key]
        witnesses = [_key(k, "--witness", witness=True) for k in ns.witness]
        if ns.quorum is not None and not 0 <= ns.quorum <= len(witnesses):
            raise Usage(f"--quorum {ns.quorum}: want 0 to the number of --witness keys ({len(witnesses)})")
        for given, what in ((log_keys, "--log-key"), (witnesses, "--witness")):
            if len({(k.name, bytes(k.key_id)) for k in given}) != len(given):
                raise Usage(f"a {what} key is given twice")
        text = _read(ns.file)
        return verify(text, log_keys, witnesses, ns.quorum, ns.origin, ns.index)
    except Usage as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return USAGE
    except ReceiptError as exc:
        print(f"FAILED ({exc.check}): {exc}")
        return FAILED


if __name__ == "__main__":
    sys.exit(main())
