"""The checks a sending node applies to a proof bundle a peer serves for the entry its sealed receipt named.

A peer's receipt carries its entry, proved in the first checkpoint signed over it, which no witness has
cosigned yet. Later the sender asks the peer (`LogService.GetProofBundle`) for the same entry proved in a
checkpoint its witnesses cosigned, and keeps that bundle only when

* it is of the peer's pinned origin, signed by the peer's pinned log key, and its inclusion proof leads
  from its entry to that checkpoint's root (`transfer.ledger.receipt.verify_bundle`);
* it names the receipt's entry: the same index and the same bytes as the sealed receipt carries;
* its checkpoint extends the receipt's (the same root at the same size, or a verifying RFC 9162
  consistency proof): otherwise the peer has signed two histories, a split view, and both notes are
  evidence;
* at least `quorum` of the pinned witnesses cosigned it (`transfer.ledger.witnessed.check_witnessed`).

Pure: text and bytes in, a result or a refusal out (docs/federation.md, Receipts).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from transfer.ledger import merkle
from transfer.ledger.note import Checkpoint, NoteError, Verifier
from transfer.ledger.receipt import ProofBundle, ReceiptError, parse_bundle, verify_bundle
from transfer.ledger.witnessed import Witnessed, check_witnessed

__all__ = ["BundleRefused", "Fetched", "SplitView", "check_extends", "check_fetched"]


class BundleRefused(ValueError):
    """A bundle that does not prove the receipt's entry in the peer's log: not stored."""


class SplitView(ValueError):
    """The peer showed a signed checkpoint that cannot extend the one its receipt carried."""

    def __init__(self, old: Checkpoint, new: Checkpoint, why: str) -> None:
        super().__init__(
            f"{why}: the receipt's checkpoint has size {old.size} root {old.root.hex()}, "
            f"the one served has size {new.size} root {new.root.hex()}"
        )
        self.old = old
        self.new = new


@dataclass(frozen=True)
class Fetched:
    """A bundle that proves the receipt's entry, and how its checkpoint stands with the witnesses."""

    bundle: ProofBundle
    checkpoint: Checkpoint
    witnessing: Witnessed


def check_fetched(
    text: str,
    *,
    index: int,
    leaf: bytes,
    origin: str,
    log_key: Verifier,
    witnesses: Sequence[Verifier],
    quorum: int,
) -> Fetched:
    """Check a served bundle against the receipt's entry (`index`; `leaf`: b"" when the receipt carried
    none); `BundleRefused` names what is wrong."""
    try:
        bundle = parse_bundle(text)
        # The receipt's entry first: a bundle of another entry is refused as such, whatever else it proves.
        if bundle.index != index:
            raise BundleRefused(f"entry: the bundle proves entry {bundle.index}, the receipt named {index}")
        if leaf and bundle.leaf != leaf:
            raise BundleRefused(f"entry: the bundle's entry {index} is not the one the sealed receipt carries")
        verify_bundle(text, [log_key], origin=origin)
    except ReceiptError as exc:
        raise BundleRefused(f"{exc.check}: {exc}") from None
    try:
        witnessing = check_witnessed(bundle.checkpoint, log_key, witnesses, quorum, origin)
    except NoteError as exc:  # not reached: verify_bundle opened the same note with the same key
        raise BundleRefused(f"log-key: {exc}") from None
    return Fetched(bundle, witnessing.checkpoint, witnessing)


def check_extends(old: Checkpoint, new: Checkpoint, proof: Sequence[bytes]) -> None:
    """`new` extends `old` (the receipt's checkpoint): the same tree at the same size, or `proof` (the
    peer's consistency proof from old.size to new.size) verifies; SplitView otherwise."""
    if new.size < old.size:
        raise SplitView(old, new, "the peer served a checkpoint smaller than its receipt's")
    if new.size == old.size:
        if new.root != old.root:
            raise SplitView(old, new, "the peer signed two trees of the same size")
        return
    try:
        merkle.verify_consistency(old.size, new.size, proof, old.root, new.root)
    except merkle.MerkleError as exc:
        raise SplitView(old, new, f"no consistency between the peer's checkpoints ({exc})") from None
