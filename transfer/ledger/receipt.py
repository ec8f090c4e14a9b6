"""Receipts that verify offline: the node's signed promise for one entry, and
the proof bundle a school stores with its record.

Two forms, both plain text (docs/log.md, "Receipts that verify offline"):

* the **entry promise**, a C2SP signed note by the log key whose text is

      hocba-entry/v1
      <origin>
      <index>
      <base64 SHA-256 leaf hash, RFC 9162: SHA-256(0x00 || entry)>
      <entry time, decimal microseconds since 1970-01-01 UTC>

  It says "the entry with this leaf hash is at index i of log O", as
  Certificate Transparency's SCT or Rekor's signed entry timestamp do. Its
  first line can never be a checkpoint's origin line followed by a size (the
  second line is the origin, not a number), so no verifier of checkpoints
  takes it for one. Any later checkpoint of size > i whose inclusion proof
  for i yields another leaf hash proves the log broke the promise.

* the **proof bundle**: the entry, its inclusion proof and a checkpoint that
  covers it (with whatever witness cosignatures the node holds):

      hocba-proof-bundle/v1
      origin <origin>
      index <index>
      leaf <base64 entry bytes>
      proof <base64 hash>          (one line per hash, the leaf's sibling first; none for a tree of 1)
      checkpoint
      <the signed checkpoint note, verbatim, to the end>

Pure: text and bytes in and out, no I/O. Refusals are `ReceiptError`s whose
`check` names the check that failed (a stable word: the CLI prints it).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from transfer.ledger import merkle
from transfer.ledger.note import (
    Note,
    NoteError,
    Signature,
    Signer,
    Verifier,
    open_note,
    parse_checkpoint,
    parse_note,
    sign_note,
)
from transfer.ledger.witnessed import Witnessed, check_witnessed

__all__ = [
    "BUNDLE_HEADER",
    "ENTRY_HEADER",
    "BundleCheck",
    "EntryPromise",
    "PromiseCheck",
    "ProofBundle",
    "ReceiptError",
    "entry_time",
    "parse_bundle",
    "parse_promise_text",
    "sign_promise",
    "verify_bundle",
    "verify_promise",
]

ENTRY_HEADER: Final = "hocba-entry/v1"
BUNDLE_HEADER: Final = "hocba-proof-bundle/v1"

_UINT: Final = re.compile("0|[1-9][0-9]{0,19}")
_MAX_U64: Final = 2**64 - 1
_HASH_SIZE: Final = 32
# A bundle's proof has at most 64 hashes (a tree of 2^64 entries); anything longer is not ours.
_MAX_PROOF: Final = 64


class ReceiptError(ValueError):
    """A receipt or bundle that is malformed or does not verify.

    `check` is one of: "format", "log-key" (no valid signature by a given log
    key), "origin", "entry" (the leaf does not match what was signed: tampered),
    "inclusion" (the proof does not lead to the checkpoint's root), "coverage"
    (the checkpoint does not cover the index)."""

    def __init__(self, check: str, message: str) -> None:
        super().__init__(message)
        self.check = check


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _unb64(s: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError):
        raise ReceiptError("format", f"{what}: invalid base64") from None
    if _b64(raw) != s:
        raise ReceiptError("format", f"{what}: non-canonical base64")
    return raw


def _uint(s: str, what: str) -> int:
    if not _UINT.fullmatch(s) or int(s) > _MAX_U64:
        raise ReceiptError("format", f"{what} {s!r} is not a decimal uint64 without leading zeros")
    return int(s)


def entry_time(leaf: bytes) -> int | None:
    """The time (µs since the epoch) of an entry in the node's format (docs/log.md, Entries:
    version 1 || kind || time:u64 || body); None for bytes that are not such an entry."""
    if len(leaf) < 10 or leaf[0] != 1:
        return None
    return int.from_bytes(leaf[2:10], "big")


# -- the entry promise --------------------------------------------------------


@dataclass(frozen=True)
class EntryPromise:
    """What an entry promise says: the entry with `leaf_hash` is at `index` of log `origin`."""

    origin: str
    index: int
    leaf_hash: bytes
    time_us: int

    def text(self) -> str:
        return f"{ENTRY_HEADER}\n{self.origin}\n{self.index}\n{_b64(self.leaf_hash)}\n{self.time_us}\n"


def parse_promise_text(text: str) -> EntryPromise:
    """Parse an entry promise's note text strictly (five lines, each ending in a newline)."""
    if not text.endswith("\n"):
        raise ReceiptError("format", "an entry promise's text ends with a newline")
    lines = text[:-1].split("\n")
    if len(lines) != 5 or lines[0] != ENTRY_HEADER:
        raise ReceiptError("format", f"not an entry promise (want 5 lines, the first {ENTRY_HEADER!r})")
    _, origin, index, leaf_hash, time_us = lines
    if not origin or any(c.isspace() for c in origin):
        raise ReceiptError("format", "an entry promise's origin is empty or holds a space")
    raw = _unb64(leaf_hash, "leaf hash")
    if len(raw) != _HASH_SIZE:
        raise ReceiptError("format", f"leaf hash is {len(raw)} bytes, want 32")
    return EntryPromise(origin, _uint(index, "index"), raw, _uint(time_us, "time"))


def sign_promise(origin: str, index: int, leaf: bytes, time_us: int, *signers: Signer) -> str:
    """The signed entry promise for `leaf` at `index` of `origin` (deterministic: Ed25519)."""
    return sign_note(EntryPromise(origin, index, merkle.leaf_hash(leaf), time_us).text(), *signers)


@dataclass(frozen=True)
class PromiseCheck:
    """What a verified entry promise established."""

    promise: EntryPromise
    signed_by: tuple[str, ...]  # the names of the log keys whose signatures verified


def _open(note_text: str, log_keys: Sequence[Verifier], what: str) -> tuple[Note, list[Signature]]:
    try:
        parse_note(note_text)
    except NoteError as exc:
        raise ReceiptError("format", f"the {what} is not a signed note: {exc}") from None
    try:
        return open_note(note_text, log_keys)
    except NoteError as exc:  # the note is well formed: what failed is a signature by the keys given
        names = ", ".join(f"{k.name}+{k.key_id.hex()}" for k in log_keys)
        if "no verifiable signatures" in str(exc):
            raise ReceiptError("log-key", f"the {what} carries no signature by the given log key ({names})") from None
        raise ReceiptError("log-key", f"the {what}'s signature by a given log key does not verify: {exc}") from None


def verify_promise(
    signed: str,
    log_keys: Sequence[Verifier],
    *,
    leaf: bytes | None = None,
    index: int | None = None,
    origin: str | None = None,
) -> PromiseCheck:
    """Check an entry promise: signed by one of `log_keys`, and (when given) naming `origin`,
    `index` and the hash of `leaf` (with the entry's own time, for the node's entries)."""
    note, sigs = _open(signed, log_keys, "entry promise")
    promise = parse_promise_text(note.text)
    if origin is not None and promise.origin != origin:
        raise ReceiptError("origin", f"the promise is for the log {promise.origin!r}, not {origin!r}")
    if index is not None and promise.index != index:
        raise ReceiptError("entry", f"the promise is for entry {promise.index}, the receipt says {index}")
    if leaf is not None:
        if merkle.leaf_hash(leaf) != promise.leaf_hash:
            raise ReceiptError(
                "entry", f"the entry's bytes do not hash to the leaf hash signed for entry {promise.index}"
            )
        when = entry_time(leaf)
        if when is not None and when != promise.time_us:
            raise ReceiptError("entry", f"the entry's time {when} is not the time signed, {promise.time_us}")
    return PromiseCheck(promise, tuple(s.name for s in sigs))


# -- the proof bundle -------------------------------------------------------------


@dataclass(frozen=True)
class ProofBundle:
    """An entry, its inclusion proof and a signed checkpoint (note) that covers it."""

    origin: str
    index: int
    leaf: bytes
    proof: tuple[bytes, ...]
    checkpoint: str

    def tree_size(self) -> int:
        """The size of the tree its checkpoint signs (parsed, not verified)."""
        try:
            return parse_checkpoint(parse_note(self.checkpoint).text).size
        except NoteError as exc:
            raise ReceiptError("format", f"the bundle's checkpoint: {exc}") from None

    def text(self) -> str:
        lines = [BUNDLE_HEADER, f"origin {self.origin}", f"index {self.index}", f"leaf {_b64(self.leaf)}"]
        lines += [f"proof {_b64(h)}" for h in self.proof]
        lines.append("checkpoint")
        return "\n".join(lines) + "\n" + self.checkpoint


def parse_bundle(text: str) -> ProofBundle:
    """Parse a proof bundle strictly: the header, then origin, index, leaf, the proof lines in
    order, the line "checkpoint", and the checkpoint note to the end."""
    head, sep, checkpoint = text.partition("\ncheckpoint\n")
    if not sep:
        raise ReceiptError("format", "not a proof bundle: no line 'checkpoint' before the checkpoint note")
    lines = head.split("\n")
    if lines[0] != BUNDLE_HEADER:
        raise ReceiptError("format", f"not a proof bundle: the first line is not {BUNDLE_HEADER!r}")
    fields = [line.partition(" ") for line in lines[1:]]
    names = [name for name, _, _ in fields]
    if names[:3] != ["origin", "index", "leaf"] or any(n != "proof" for n in names[3:]):
        raise ReceiptError("format", "a proof bundle's fields are origin, index, leaf and proof lines, in that order")
    if len(names) - 3 > _MAX_PROOF:
        raise ReceiptError("format", f"an inclusion proof has at most {_MAX_PROOF} hashes")
    origin = fields[0][2]
    if not origin or any(c.isspace() for c in origin):
        raise ReceiptError("format", "the bundle's origin is empty or holds a space")
    proof = tuple(_unb64(value, f"proof hash {i}") for i, (_, _, value) in enumerate(fields[3:]))
    if any(len(h) != _HASH_SIZE for h in proof):
        raise ReceiptError("format", "a proof hash is not 32 bytes")
    return ProofBundle(origin, _uint(fields[1][2], "index"), _unb64(fields[2][2], "leaf"), proof, checkpoint)


@dataclass(frozen=True)
class BundleCheck:
    """What a verified bundle established: the entry is in the log's tree of `tree_size`,
    signed by `signed_by`; `witnessing`: the given witnesses that did and did not cosign that
    checkpoint (`transfer.ledger.witnessed`, the rule the node and auditors apply too)."""

    bundle: ProofBundle
    tree_size: int
    signed_by: tuple[str, ...]
    witnessing: Witnessed

    @property
    def cosigned(self) -> tuple[str, ...]:
        return self.witnessing.cosigned

    @property
    def missing(self) -> tuple[str, ...]:
        return self.witnessing.missing


def verify_bundle(
    text: str, log_keys: Sequence[Verifier], witnesses: Sequence[Verifier] = (), *, origin: str | None = None
) -> BundleCheck:
    """Check that a bundle's checkpoint is signed by one of `log_keys` for the bundle's origin
    (and `origin`, when given), covers its index, and that the proof leads from the entry to its
    root. Counts the witnesses' valid cosignatures (`check_witnessed`); deciding on a quorum is the
    caller's."""
    bundle = parse_bundle(text)
    if origin is not None and bundle.origin != origin:
        raise ReceiptError("origin", f"the bundle is for the log {bundle.origin!r}, not {origin!r}")
    note, sigs = _open(bundle.checkpoint, log_keys, "bundle's checkpoint")
    try:
        checkpoint = parse_checkpoint(note.text)
    except NoteError as exc:
        raise ReceiptError("format", f"the bundle's checkpoint: {exc}") from None
    if checkpoint.origin != bundle.origin:
        raise ReceiptError(
            "origin", f"the checkpoint is of the log {checkpoint.origin!r}, the bundle says {bundle.origin!r}"
        )
    if bundle.index >= checkpoint.size:
        raise ReceiptError("coverage", f"the checkpoint (size {checkpoint.size}) does not cover entry {bundle.index}")
    try:
        merkle.verify_inclusion(
            merkle.leaf_hash(bundle.leaf), bundle.index, checkpoint.size, bundle.proof, checkpoint.root
        )
    except merkle.MerkleError as exc:
        raise ReceiptError(
            "inclusion",
            f"entry {bundle.index} with these bytes is not in the signed tree of {checkpoint.size} "
            f"(a tampered entry or a bad proof): {exc}",
        ) from None
    witnessing = check_witnessed(bundle.checkpoint, log_keys, witnesses, 0)
    return BundleCheck(bundle, checkpoint.size, tuple(s.name for s in sigs), witnessing)
