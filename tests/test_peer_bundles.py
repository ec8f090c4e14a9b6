"""The checks a sending node applies to the bundle a peer serves for its receipt's entry
(transfer/domain/peer_bundles.py): pure, with a small log signed here."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from transfer.domain.peer_bundles import BundleRefused, SplitView, check_extends, check_fetched
from transfer.ledger import merkle
from transfer.ledger.note import (
    Checkpoint,
    CosignatureV1Signer,
    Ed25519Signer,
    parse_note,
    parse_vkey,
    sign_note,
    signature_line,
)
from transfer.ledger.receipt import ProofBundle
from transfer.ledger.witnessed import cosignature_verifier

ORIGIN = "peer.test/province/79/log"
LOG = Ed25519Signer(ORIGIN, ed25519.Ed25519PrivateKey.generate())
W1, W2 = (CosignatureV1Signer(f"witness.test/w{i}", ed25519.Ed25519PrivateKey.generate()) for i in (1, 2))
WITNESSES = [cosignature_verifier(W1.vkey), cosignature_verifier(W2.vkey)]
LEAVES = [b"entry %d" % i for i in range(7)]


def nodes(size: int) -> dict[merkle.NodeId, bytes]:
    """Every complete subtree hash of the first `size` leaves."""
    out: dict[merkle.NodeId, bytes] = {}
    level = [merkle.leaf_hash(leaf) for leaf in LEAVES[:size]]
    depth = 0
    while level:
        out.update({(depth, i): h for i, h in enumerate(level)})
        level = [merkle.node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        depth += 1
    return out


def checkpoint(size: int, *cosigners: CosignatureV1Signer, root: bytes | None = None) -> tuple[Checkpoint, str]:
    cp = Checkpoint(ORIGIN, size, root if root is not None else merkle.root_from_nodes(size, nodes(size)))
    note = sign_note(cp.text(), LOG)
    text = parse_note(note).text
    return cp, note + "".join(signature_line(w.cosign(text, 1_800_000_000)) for w in cosigners)


def bundle(index: int, size: int, *cosigners: CosignatureV1Signer, leaf: bytes | None = None) -> str:
    proof = tuple(merkle.inclusion_proof(index, size, nodes(size)))
    leaf = LEAVES[index] if leaf is None else leaf
    return ProofBundle(ORIGIN, index, leaf, proof, checkpoint(size, *cosigners)[1]).text()


def fetched(text: str, index: int = 2, leaf: bytes = LEAVES[2]) -> object:
    key = parse_vkey(LOG.vkey)
    return check_fetched(text, index=index, leaf=leaf, origin=ORIGIN, log_key=key, witnesses=WITNESSES, quorum=2)


def test_a_bundle_of_the_receipts_entry_counts_the_pinned_witnesses() -> None:
    """A bundle proving the receipt's entry is taken; it is witnessed only with both pinned witnesses' cosignatures."""
    assert fetched(bundle(2, 6, W1, W2)).witnessing.witnessed  # type: ignore[attr-defined]
    found = fetched(bundle(2, 6, W1))
    assert not found.witnessing.witnessed and found.witnessing.missing == ("witness.test/w2",)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (bundle(3, 6, W1, W2), "entry: the bundle proves entry 3, the receipt named 2"),
        (bundle(2, 6, W1, W2, leaf=b"another"), "entry: the bundle's entry 2 is not the one the sealed receipt"),
        (bundle(2, 6, W1, W2).replace(ORIGIN, "other.test/log", 1), "origin: "),
        (
            bundle(2, 6).replace("\nproof ", "\nproof AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\nproof ", 1),
            "inclusion: ",
        ),
        ("hocba-proof-bundle/v1\n", "format: "),
    ],
    ids=["other-index", "other-leaf", "other-origin", "bad-proof", "malformed"],
)
def test_a_bundle_that_does_not_prove_the_receipts_entry_is_refused(text: str, why: str) -> None:
    """Another index, another leaf than the sealed receipt's, another origin, a proof that does not lead to the
    root, a malformed text: BundleRefused naming the check."""
    with pytest.raises(BundleRefused) as info:
        fetched(text)
    assert str(info.value).startswith(why)


def test_a_checkpoint_not_extending_the_receipts_is_a_split_view() -> None:
    """The served checkpoint extends the receipt's when it is the same tree or a consistency proof verifies; a
    smaller one, another root at the same size, or a proof that does not verify is a split view naming both."""
    old, _ = checkpoint(3)
    new, _ = checkpoint(6)
    check_extends(old, old, [])
    check_extends(old, new, merkle.consistency_proof(3, 6, nodes(6)))
    forked, _ = checkpoint(3, root=bytes(32))
    bad = [bytes(32), *merkle.consistency_proof(3, 6, nodes(6))[1:]]
    for a, b, proof, why in (
        (new, old, [], "smaller than its receipt's"),
        (old, forked, [], "two trees of the same size"),
        (old, new, bad, "no consistency between the peer's checkpoints"),
    ):
        with pytest.raises(SplitView) as info:
            check_extends(a, b, proof)
        assert why in str(info.value) and f"size {a.size} root {a.root.hex()}" in str(info.value)
