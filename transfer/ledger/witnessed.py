"""When a checkpoint counts as witnessed: k of n configured witnesses cosigned it.

A checkpoint served by a node is its signed note with the cosignature lines
of its witnesses appended (c2sp.org/tlog-cosignature, type 0x04). A verifier
that trusts the log key and a set of witness keys accepts the checkpoint as
*witnessed* when the log's signature verifies and at least `quorum` of those
witnesses' cosignatures verify over the same text. `check_witnessed` says
which verify, which are missing and which are present but do not verify, so
that the node, receipt verification and auditors share one rule.

Pure: strings in, a result out; a note the log did not sign is a NoteError.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from transfer.ledger.note import (
    SIG_COSIGNATURE_V1,
    Checkpoint,
    KeyVerifier,
    NoteError,
    Verifier,
    open_checkpoint,
    parse_note,
    parse_vkey,
)

__all__ = ["Witnessed", "check_witnessed", "cosignature_verifier"]


@dataclass(frozen=True)
class Witnessed:
    """The witness policy applied to one checkpoint note.

    `cosigned`: names of the trusted witnesses with a verifying cosignature;
    `missing`: those with none; `invalid`: those whose line(s) carry their key
    ID but do not verify (counted as missing too, and worth an alarm)."""

    checkpoint: Checkpoint
    cosigned: tuple[str, ...]
    missing: tuple[str, ...]
    invalid: tuple[str, ...]
    quorum: int

    @property
    def witnessed(self) -> bool:
        return len(self.cosigned) >= self.quorum


def cosignature_verifier(vkey: str) -> Verifier:
    """A witness's verifier key, which must be a cosignature/v1 key (type 0x04); NoteError otherwise."""
    verifier = parse_vkey(vkey)
    if not isinstance(verifier, KeyVerifier) or verifier.type_byte != SIG_COSIGNATURE_V1:
        raise NoteError(f"verifier key {verifier.name}: a witness key must be a cosignature/v1 key (type 0x04)")
    return verifier


def check_witnessed(
    note: str,
    log_verifiers: Verifier | Sequence[Verifier],
    witnesses: Sequence[Verifier],
    quorum: int,
    origin: str | None = None,
) -> Witnessed:
    """Open `note` with the log's key(s) (NoteError if it does not verify, or is of another origin) and
    count the cosignatures of `witnesses` over its text.

    Each witness counts once however many lines carry its key; a witness with a
    line that does not verify is `invalid`, not cosigned (one bad line from a
    trusted key is not outweighed by a good one)."""
    if quorum < 0 or quorum > len(witnesses):
        raise ValueError(f"quorum {quorum} is not within [0, {len(witnesses)}]")
    checkpoint = open_checkpoint(note, log_verifiers, origin)
    parsed = parse_note(note)
    text = parsed.text.encode("utf-8")
    cosigned: list[str] = []
    missing: list[str] = []
    invalid: list[str] = []
    for witness in witnesses:
        lines = [s for s in parsed.signatures if s.name == witness.name and s.key_id == witness.key_id]
        if not lines:
            missing.append(witness.name)
        elif all(witness.verify(text, s.data) for s in lines):
            cosigned.append(witness.name)
        else:
            invalid.append(witness.name)
            missing.append(witness.name)
    return Witnessed(checkpoint, tuple(cosigned), tuple(missing), tuple(invalid), quorum)
