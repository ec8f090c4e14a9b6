"""The witness's rules (c2sp.org/tlog-witness) and its split-view evidence, without I/O.

A log asks a witness to cosign a checkpoint with `POST <prefix>/add-checkpoint`,
whose body is an `old <size>` line, zero to 63 base64 consistency-proof lines, a
blank line and the signed checkpoint. The witness answers, in this order:

* 400: a malformed body (or `old` above the checkpoint's size);
* 404: an origin it does not witness;
* 403: no trusted log signature verifies, or a trusted one fails;
* 409: `old` is not the size it last cosigned (the body says that size);
* 422: the checkpoint is not consistent with what it cosigned (a size-0 tree
  with another root, a proof with `old` 0, a proof that fails, the same size
  with another root);
* 200: it stores the new checkpoint, then returns its cosignature.

This module parses requests (`parse_add_checkpoint`), decides 409/422
(`check_consistency`, given the stored checkpoint), and writes and checks the
evidence a witness keeps when a validly signed checkpoint contradicts the one
it cosigned (`Evidence`, `verify_evidence`). The HTTP server and the state file
live in `transfer/witness/` and `storage/witness.py`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from transfer.ledger.merkle import EMPTY_ROOT, HASH_SIZE, MerkleError, verify_consistency
from transfer.ledger.note import Checkpoint, NoteError, Verifier, open_note, parse_checkpoint, parse_note

__all__ = [
    "EVIDENCE_FORMAT",
    "KIND_BAD_PROOF",
    "KIND_SAME_SIZE",
    "MAX_PROOF_LINES",
    "AddCheckpoint",
    "Evidence",
    "Refusal",
    "Stored",
    "check_consistency",
    "open_submitted",
    "parse_add_checkpoint",
    "verify_evidence",
]

MAX_PROOF_LINES: Final = 63
EVIDENCE_FORMAT: Final = "hocba-witness-split-view/v1"
KIND_SAME_SIZE: Final = "same-size-different-root"
KIND_BAD_PROOF: Final = "consistency-proof-fails"

_OLD_LINE: Final = re.compile("old (0|[1-9][0-9]{0,19})")


class Refusal(Exception):
    """A request the witness refuses: the HTTP status, a one-line reason, and for 409 the stored size.

    `evidence` is set when the refusal contradicts a cosigned checkpoint (422 with a valid signature):
    the caller keeps it before answering.
    """

    def __init__(
        self, status: int, reason: str, *, stored_size: int | None = None, evidence: Evidence | None = None
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.stored_size = stored_size
        self.evidence = evidence


@dataclass(frozen=True)
class AddCheckpoint:
    """A parsed add-checkpoint body: the size the log thinks the witness has, the proof, the signed note."""

    old: int
    proof: tuple[bytes, ...]
    note: str


def _b64hash(line: str) -> bytes:
    try:
        raw = base64.b64decode(line, validate=True)
    except (binascii.Error, ValueError):
        raise Refusal(400, "a consistency proof line is not base64") from None
    if len(raw) != HASH_SIZE or base64.b64encode(raw).decode("ascii") != line:
        raise Refusal(400, "a consistency proof line is not a canonical base64 SHA-256 hash")
    return raw


def parse_add_checkpoint(body: bytes) -> AddCheckpoint:
    """Split an add-checkpoint body; Refusal(400) if it is not one."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Refusal(400, "the body is not UTF-8") from None
    head, sep, note = text.partition("\n\n")
    if not sep:
        raise Refusal(400, "the body has no blank line before the checkpoint")
    lines = head.split("\n")
    match = _OLD_LINE.fullmatch(lines[0])
    if match is None:
        raise Refusal(400, "the first line is not 'old <size>' (decimal, no leading zeros)")
    old = int(match.group(1))
    if old > 2**64 - 1:
        raise Refusal(400, "the old size is not a uint64")
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise Refusal(400, f"more than {MAX_PROOF_LINES} consistency proof lines")
    return AddCheckpoint(old, tuple(_b64hash(line) for line in lines[1:]), note)


def open_submitted(note: str, logs: dict[str, list[Verifier]]) -> Checkpoint:
    """The checkpoint of a submitted note: 400 if malformed, 404 if its origin is not witnessed,
    403 if no trusted signature verifies or a trusted one fails."""
    try:
        parsed = parse_note(note)
        checkpoint = parse_checkpoint(parsed.text)
    except NoteError as exc:
        raise Refusal(400, f"not a signed checkpoint: {exc}") from None
    verifiers = logs.get(checkpoint.origin)
    if verifiers is None:
        raise Refusal(404, "unknown origin")
    try:
        open_note(note, verifiers)
    except NoteError as exc:
        raise Refusal(403, f"the checkpoint is not signed by the log: {exc}") from None
    return checkpoint


@dataclass(frozen=True)
class Evidence:
    """Two checkpoints signed by one log that no append-only log can both have produced.

    `cosigned` is the signed note the witness cosigned; `conflicting` the one later submitted with
    `old` equal to its size. KIND_SAME_SIZE: both have one size and two roots, a fork by itself.
    KIND_BAD_PROOF: `conflicting` is larger and the consistency proof the log sent with it does not
    lead from one root to the other (the log could not show that its new tree extends the old one).
    """

    origin: str
    kind: str
    cosigned: str
    conflicting: str
    proof: tuple[bytes, ...] = ()

    def to_json(self) -> str:
        """The evidence file: JSON with the format name, both signed notes and the proof."""
        doc = {
            "format": EVIDENCE_FORMAT,
            "origin": self.origin,
            "kind": self.kind,
            "cosigned": self.cosigned,
            "conflicting": self.conflicting,
            "proof": [base64.b64encode(h).decode("ascii") for h in self.proof],
        }
        return json.dumps(doc, indent=1, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Evidence:
        """Parse an evidence file; ValueError if it is not one."""
        try:
            doc: Any = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"evidence is not JSON: {exc}") from None
        if not isinstance(doc, dict) or doc.get("format") != EVIDENCE_FORMAT:
            raise ValueError(f"evidence is not in the {EVIDENCE_FORMAT} format")
        fields = ("origin", "kind", "cosigned", "conflicting")
        if not all(isinstance(doc.get(f), str) for f in fields) or not isinstance(doc.get("proof"), list):
            raise ValueError("evidence lacks origin, kind, cosigned, conflicting or proof")
        proof = []
        for line in doc["proof"]:
            if not isinstance(line, str):
                raise ValueError("evidence proof lines must be base64 strings")
            try:
                proof.append(_b64hash(line))
            except Refusal as exc:
                raise ValueError(exc.reason) from None
        return cls(doc["origin"], doc["kind"], doc["cosigned"], doc["conflicting"], tuple(proof))


@dataclass(frozen=True)
class Stored:
    """What the witness last cosigned for an origin."""

    size: int
    root: bytes
    note: str


def check_consistency(stored: Stored | None, request: AddCheckpoint, checkpoint: Checkpoint) -> None:
    """The checks after the signature: 400 old > size, 409 old is not the stored size, 422 inconsistent.

    `stored` is read in the same transaction that will store the new checkpoint if this passes.
    A 422 that contradicts the stored checkpoint carries the evidence.
    """
    if request.old > checkpoint.size:
        raise Refusal(400, f"old size {request.old} is larger than the checkpoint's size {checkpoint.size}")
    stored_size = stored.size if stored is not None else 0
    if request.old != stored_size:
        raise Refusal(409, f"the witness's size is {stored_size}, not {request.old}", stored_size=stored_size)
    if checkpoint.size == 0 and checkpoint.root != EMPTY_ROOT:
        raise Refusal(422, "a checkpoint of size 0 must have the empty tree's root")
    if request.old == 0:
        # The empty tree is consistent with every tree (and a stored size-0 root was checked as empty).
        if request.proof:
            raise Refusal(422, "old size 0 needs an empty consistency proof")
        return
    assert stored is not None  # old == stored.size > 0
    if checkpoint.size == stored.size:
        if checkpoint.root != stored.root:
            raise Refusal(
                422,
                "same size as the cosigned checkpoint but another root",
                evidence=_evidence(KIND_SAME_SIZE, stored, checkpoint, request),
            )
        if request.proof:
            raise Refusal(422, "same size as the cosigned checkpoint: the consistency proof must be empty")
        return
    try:
        verify_consistency(stored.size, checkpoint.size, request.proof, stored.root, checkpoint.root)
    except MerkleError as exc:
        raise Refusal(
            422,
            f"the consistency proof does not verify: {exc}",
            evidence=_evidence(KIND_BAD_PROOF, stored, checkpoint, request),
        ) from None


def _evidence(kind: str, stored: Stored, checkpoint: Checkpoint, request: AddCheckpoint) -> Evidence:
    return Evidence(checkpoint.origin, kind, stored.note, request.note, request.proof)


def verify_evidence(evidence: Evidence, verifiers: Iterable[Verifier]) -> tuple[Checkpoint, Checkpoint]:
    """Check split-view evidence offline: both notes signed by the log's key(s), one origin, and not
    consistent as its kind says. Returns both checkpoints; ValueError saying why otherwise."""
    keys = list(verifiers)
    try:
        first = _open(evidence.cosigned, keys, evidence.origin)
        second = _open(evidence.conflicting, keys, evidence.origin)
    except NoteError as exc:
        raise ValueError(str(exc)) from None
    if evidence.kind == KIND_SAME_SIZE:
        if first.size != second.size:
            raise ValueError(f"the checkpoints have sizes {first.size} and {second.size}, not one size")
        if first.root == second.root:
            raise ValueError("the checkpoints have the same root: they agree")
        return first, second
    if evidence.kind == KIND_BAD_PROOF:
        if second.size <= first.size:
            raise ValueError("the conflicting checkpoint is not larger than the cosigned one")
        try:
            verify_consistency(first.size, second.size, list(evidence.proof), first.root, second.root)
        except MerkleError:
            return first, second
        raise ValueError("the consistency proof verifies: the checkpoints are consistent")
    raise ValueError(f"unknown evidence kind {evidence.kind!r}")


def _open(signed: str, keys: list[Verifier], origin: str) -> Checkpoint:
    note, _ = open_note(signed, keys)
    return parse_checkpoint(note.text, origin=origin)
