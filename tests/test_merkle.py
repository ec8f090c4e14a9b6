"""RFC 9162 Merkle trees: published known answers, transparency-dev verifier probes, and properties
checked against a naive recursive transcription of RFC 9162 §2.1 written here."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transfer.ledger.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    Frontier,
    MerkleError,
    NodeId,
    consistency_nodes,
    consistency_proof,
    inclusion_nodes,
    inclusion_proof,
    leaf_hash,
    node_hash,
    range_hash,
    root,
    root_from_nodes,
    root_nodes,
    subtree_nodes,
    verify_consistency,
    verify_inclusion,
)


def _no_floats(text: str) -> float:
    raise ValueError(f"unexpected non-integer number {text} in the vectors")


# json gives arbitrary-precision ints already; parse_int makes that explicit, and no float may slip in.
VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parent / "data" / "merkle-vectors.json").read_text(encoding="utf-8"),
    parse_int=int,
    parse_float=_no_floats,
)
REFERENCE = VECTORS["reference_tree"]
PROBES = VECTORS["verifier_probes"]
INCLUSION_PROBES: list[dict[str, Any]] = PROBES["inclusion"]
CONSISTENCY_PROBES: list[dict[str, Any]] = PROBES["consistency"]

# This probe's "roots" are the 12-byte strings "don't care 2": with equal sizes nothing is hashed, and the
# roots are compared byte for byte without a length check (as transparency-dev/merkle does), so it passes.
EQUAL_SIZES_PROBE = "testdata/consistency/additional/sizes-are-equal-one-and-proof-is-empty.json"

SIZE1_ZERO_FLIP = "testdata/consistency/additional/size1-is-zero-and-size2-is-not-zero.json"


def _hex(value: str | None) -> bytes | None:
    return None if value is None else bytes.fromhex(value)


def _node_map(leaf_hashes: Sequence[bytes]) -> dict[NodeId, bytes]:
    """Every complete-subtree hash of the tree, as a log stores them: the rows Frontier.append returns."""
    frontier = Frontier.empty()
    nodes: dict[NodeId, bytes] = {}
    for h in leaf_hashes:
        nodes.update(frontier.append(h))
    return nodes


REFERENCE_LEAVES = [bytes.fromhex(x) for x in REFERENCE["leaf_hashes_hex"]]
REFERENCE_NODES = _node_map(REFERENCE_LEAVES)
REFERENCE_ROOTS = {int(size): bytes.fromhex(h) for size, h in REFERENCE["roots_by_tree_size"].items()}


# --- A naive RFC 9162 §2.1, transcribed literally: recursive, slow, independent of the module. ---


def _k(n: int) -> int:
    """The largest power of two strictly less than n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def naive_mth(d: Sequence[bytes]) -> bytes:
    """MTH(D[n]) over leaf *inputs*."""
    n = len(d)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + d[0]).digest()
    k = _k(n)
    return hashlib.sha256(b"\x01" + naive_mth(d[:k]) + naive_mth(d[k:])).digest()


def naive_path(m: int, d: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n])."""
    n = len(d)
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return [*naive_path(m, d[:k]), naive_mth(d[k:])]
    return [*naive_path(m - k, d[k:]), naive_mth(d[:k])]


def naive_path_sides(m: int, n: int) -> list[str]:
    """Which side each PATH(m, D[n]) element sits on: the proof's shape, independent of the hashes."""
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return [*naive_path_sides(m, k), "right"]
    return [*naive_path_sides(m - k, n - k), "left"]


def naive_subproof(m: int, d: Sequence[bytes], b: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b)."""
    n = len(d)
    if m == n:
        return [] if b else [naive_mth(d)]
    k = _k(n)
    if m <= k:
        return [*naive_subproof(m, d[:k], b), naive_mth(d[k:])]
    return [*naive_subproof(m - k, d[k:], False), naive_mth(d[:k])]


def naive_proof(m: int, d: Sequence[bytes]) -> list[bytes]:
    """PROOF(m, D[n])."""
    return naive_subproof(m, d, True)


def _leaves(seed: bytes, n: int) -> list[bytes]:
    """n distinct leaf inputs (distinct, so that no two leaves can stand in for each other)."""
    return [seed + i.to_bytes(2, "big") for i in range(n)]


def _rejects(check: Any, *args: Any) -> bool:
    try:
        check(*args)
    except MerkleError:
        return True
    return False


class _CountingNodes(Mapping[NodeId, bytes]):
    """A stand-in for the database: synthesises any complete subtree of a tree of `size` and records reads."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.reads: set[NodeId] = set()

    def __getitem__(self, node: NodeId) -> bytes:
        level, index = node
        if level < 0 or index < 0 or (index + 1) << level > self.size:
            raise KeyError(node)
        self.reads.add(node)
        return hashlib.sha256(repr(node).encode()).digest()

    def __iter__(self) -> Iterator[NodeId]:
        raise NotImplementedError("proofs must look nodes up, never scan the store")

    def __len__(self) -> int:
        raise NotImplementedError("proofs must look nodes up, never scan the store")


# --- 1. The reference tree. ---


def test_vector_file_is_complete() -> None:
    """The copied vector file holds every section and the probe counts it declares."""
    counts = PROBES["counts"]
    assert len(INCLUSION_PROBES) == counts["inclusion"] == 98
    assert len(CONSISTENCY_PROBES) == counts["consistency"] == 98
    assert sum(not p["want_error"] for p in INCLUSION_PROBES) == counts["inclusion_accept"] == 6
    assert sum(not p["want_error"] for p in CONSISTENCY_PROBES) == counts["consistency_accept"] == 6
    assert len({p["file"] for p in INCLUSION_PROBES + CONSISTENCY_PROBES}) == 196


def test_empty_tree_root_is_sha256_of_nothing() -> None:
    """The empty tree's root is SHA-256(''), however it is computed."""
    assert EMPTY_ROOT == hashlib.sha256(b"").digest() == REFERENCE_ROOTS[0]
    assert EMPTY_ROOT.hex() in VECTORS["conventions"]["empty_tree_root"]
    assert root([]) == Frontier.empty().root() == root_from_nodes(0, {}) == range_hash(5, 5, {}) == EMPTY_ROOT
    assert HASH_SIZE == len(EMPTY_ROOT) == 32


def test_reference_leaf_hashes() -> None:
    """Every reference leaf hashes to its published leaf hash (leaf 0 is the empty input)."""
    inputs = [bytes.fromhex(x) for x in REFERENCE["leaf_inputs_hex"]]
    assert inputs[0] == b""
    assert [leaf_hash(x) for x in inputs] == REFERENCE_LEAVES


def test_reference_complete_subtree_hashes() -> None:
    """Frontier.append over the 8 leaves yields exactly the 15 published complete-subtree hashes."""
    subtrees = REFERENCE["complete_subtree_hashes"]
    expected = {
        (level, index): bytes.fromhex(h) for level in range(4) for index, h in enumerate(subtrees[f"level_{level}"])
    }
    assert len(expected) == 15
    assert expected == REFERENCE_NODES
    assert node_hash(expected[(0, 0)], expected[(0, 1)]) == expected[(1, 0)]


def test_reference_roots_by_tree_size() -> None:
    """Every published root, for sizes 0-8, from leaves, from the stored nodes, and from a growing frontier."""
    assert sorted(REFERENCE_ROOTS) == list(range(9))
    frontier = Frontier.empty()
    for size, expected in REFERENCE_ROOTS.items():
        assert root(REFERENCE_LEAVES[:size]) == expected
        assert root_from_nodes(size, REFERENCE_NODES) == expected
        assert frontier.root() == expected
        assert Frontier.from_nodes(size, REFERENCE_NODES) == frontier
        if size < 8:
            frontier.append(REFERENCE_LEAVES[size])


# --- 2. Published proofs. ---


@pytest.mark.parametrize(
    "vector",
    [pytest.param(v, id=f"leaf{v['leaf_index']}-of-{v['tree_size']}") for v in VECTORS["inclusion_proofs"]["vectors"]],
)
def test_published_inclusion_proof(vector: dict[str, Any]) -> None:
    """Each published inclusion proof is generated from the stored nodes and accepted by the verifier."""
    index, size = vector["leaf_index"], vector["tree_size"]
    leaf = bytes.fromhex(vector["leaf_hash_hex"])
    proof = [bytes.fromhex(h) for h in vector["proof_hex"]]
    assert leaf_hash(bytes.fromhex(vector["leaf_input_hex"])) == leaf
    assert bytes.fromhex(vector["root_hex"]) == REFERENCE_ROOTS[size]
    assert inclusion_proof(index, size, REFERENCE_NODES) == proof
    verify_inclusion(leaf, index, size, proof, REFERENCE_ROOTS[size])


@pytest.mark.parametrize(
    "vector",
    [pytest.param(v, id=f"{v['size1']}-to-{v['size2']}") for v in VECTORS["consistency_proofs"]["vectors"]],
)
def test_published_consistency_proof(vector: dict[str, Any]) -> None:
    """Each published consistency proof is generated from the stored nodes and accepted by the verifier."""
    size1, size2 = vector["size1"], vector["size2"]
    proof = [bytes.fromhex(h) for h in vector["proof_hex"]]
    root1, root2 = bytes.fromhex(vector["root1_hex"]), bytes.fromhex(vector["root2_hex"])
    assert (root1, root2) == (REFERENCE_ROOTS[size1], REFERENCE_ROOTS[size2])
    assert consistency_proof(size1, size2, REFERENCE_NODES) == proof
    verify_consistency(size1, size2, proof, root1, root2)


# --- 3. Every proof over the reference tree. ---


def test_derived_exhaustive_inclusion_proofs() -> None:
    """All 36 inclusion proofs with leaf < size <= 8 are generated exactly and verify."""
    vectors = VECTORS["derived_exhaustive_sizes_1_to_8"]["inclusion"]
    assert {(v["leaf_index"], v["tree_size"]) for v in vectors} == {(i, n) for n in range(1, 9) for i in range(n)}
    for v in vectors:
        index, size = v["leaf_index"], v["tree_size"]
        proof = [bytes.fromhex(h) for h in v["proof_hex"]]
        assert inclusion_proof(index, size, REFERENCE_NODES) == proof, (index, size)
        verify_inclusion(REFERENCE_LEAVES[index], index, size, proof, REFERENCE_ROOTS[size])


def test_derived_exhaustive_consistency_proofs() -> None:
    """All 28 consistency proofs with 0 < size1 < size2 <= 8 are generated exactly and verify."""
    vectors = VECTORS["derived_exhaustive_sizes_1_to_8"]["consistency"]
    assert {(v["size1"], v["size2"]) for v in vectors} == {(m, n) for n in range(1, 9) for m in range(1, n)}
    for v in vectors:
        size1, size2 = v["size1"], v["size2"]
        proof = [bytes.fromhex(h) for h in v["proof_hex"]]
        assert consistency_proof(size1, size2, REFERENCE_NODES) == proof, (size1, size2)
        verify_consistency(size1, size2, proof, REFERENCE_ROOTS[size1], REFERENCE_ROOTS[size2])


# --- 4. transparency-dev verifier probes. ---


def _inclusion_args(probe: dict[str, Any]) -> tuple[Any, ...]:
    """verify_inclusion's arguments, as the probe gives them (a null or absent leaf hash becomes None)."""
    return (
        _hex(probe.get("leaf_hash_hex")),
        probe["leaf_index"],
        probe["tree_size"],
        [_hex(h) for h in probe["proof_hex"]],
        _hex(probe["root_hex"]),
    )


def _consistency_args(probe: dict[str, Any]) -> tuple[Any, ...]:
    """verify_consistency's arguments, as the probe gives them."""
    return (
        probe["size1"],
        probe["size2"],
        [_hex(h) for h in probe["proof_hex"]],
        _hex(probe["root1_hex"]),
        _hex(probe["root2_hex"]),
    )


@pytest.mark.parametrize("probe", [pytest.param(p, id=p["file"]) for p in INCLUSION_PROBES])
def test_inclusion_probe(probe: dict[str, Any]) -> None:
    """Each transparency-dev inclusion probe is accepted or rejected as it says."""
    args = _inclusion_args(probe)
    if probe["want_error"]:
        with pytest.raises(MerkleError):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("probe", [pytest.param(p, id=p["file"]) for p in CONSISTENCY_PROBES])
def test_consistency_probe(probe: dict[str, Any]) -> None:
    """Each transparency-dev consistency probe is accepted or rejected as it says."""
    args = _consistency_args(probe)
    if probe["want_error"]:
        with pytest.raises(MerkleError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


def test_equal_sizes_need_an_empty_proof_and_equal_roots() -> None:
    """size1 == size2 accepts iff the proof is empty and the roots are equal byte for byte, whatever their length."""
    r = REFERENCE_ROOTS[1]
    verify_consistency(1, 1, [], r, r)
    verify_consistency(8, 8, [], REFERENCE_ROOTS[8], REFERENCE_ROOTS[8])
    with pytest.raises(MerkleError, match="roots differ"):
        verify_consistency(1, 1, [], r, REFERENCE_ROOTS[2])
    with pytest.raises(MerkleError, match="not empty"):
        verify_consistency(1, 1, [r], r, r)
    (probe,) = [p for p in CONSISTENCY_PROBES if p["file"] == EQUAL_SIZES_PROBE]
    assert (probe["size1"], probe["size2"], probe["proof_hex"]) == (1, 1, [])
    assert probe["root1_hex"] == probe["root2_hex"] and bytes.fromhex(probe["root1_hex"]) == b"don't care 2"
    verify_consistency(1, 1, [], b"don't care 2", b"don't care 2")
    with pytest.raises(MerkleError, match="roots differ"):
        verify_consistency(1, 1, [], b"don't care 2", b"don't care 3")


def test_big_integer_indices_are_parsed_exactly_and_rejected() -> None:
    """The uint64 underflow probes carry leaf index 2**64 - 1 exactly, and the verifier rejects it cleanly."""
    big = [p for p in INCLUSION_PROBES if p["leaf_index"] == 2**64 - 1]
    assert big and all(type(p["leaf_index"]) is int and p["want_error"] for p in big)
    for p in big:
        with pytest.raises(MerkleError, match="not in a tree"):
            verify_inclusion(bytes.fromhex(p["leaf_hash_hex"]), p["leaf_index"], p["tree_size"], [], REFERENCE_ROOTS[1])
    with pytest.raises(MerkleError):
        inclusion_proof(2**64 - 1, 8, REFERENCE_NODES)


def _c2sp_size1_zero_accepts(probe: dict[str, Any]) -> bool:
    """The alternative C2SP tlog-witness rule: size1 = 0 is consistent iff the proof is empty and root1 is
    SHA-256(''). Equal sizes still need equal roots, so (0, 0) also needs root2 == root1."""
    root1, root2 = _hex(probe["root1_hex"]), _hex(probe["root2_hex"])
    if probe["proof_hex"] or root1 != EMPTY_ROOT:
        return False
    return probe["size2"] > 0 or root2 == root1


def test_size1_zero_policy() -> None:
    """size1 == 0 is always rejected (transparency-dev's rule); the C2SP rule would accept exactly one probe."""
    zero = [p for p in CONSISTENCY_PROBES if p["size1"] == 0]
    assert len(zero) == 9
    assert all(p["want_error"] for p in zero)
    for p in zero:
        with pytest.raises(MerkleError, match="size1 is 0"):
            verify_consistency(*_consistency_args(p))
    assert [p["file"] for p in zero if _c2sp_size1_zero_accepts(p)] == [SIZE1_ZERO_FLIP]
    # Even the best-formed request of that kind is refused: the empty tree against a real tree.
    with pytest.raises(MerkleError, match="size1 is 0"):
        verify_consistency(0, 8, [], EMPTY_ROOT, REFERENCE_ROOTS[8])
    with pytest.raises(MerkleError, match="size1 is 0"):
        verify_consistency(0, 0, [], EMPTY_ROOT, EMPTY_ROOT)
    with pytest.raises(MerkleError):
        consistency_proof(0, 8, REFERENCE_NODES)
    with pytest.raises(MerkleError):
        consistency_nodes(0, 8)


# --- 5. The accumulated subtree-hash vector. ---


def _valid_subtree(start: int, end: int) -> bool:
    """The vector's definition: start <= end and (start == 0 or start == end or start is a multiple of the
    smallest power of two >= end - start)."""
    if start > end:
        return False
    if start in (0, end):
        return True
    p = 1
    while p < end - start:
        p *= 2
    return start % p == 0


def test_accumulated_subtree_hash_vector() -> None:
    """Hashing '[start, end) MTH' lines for every valid range of the 130-leaf tree gives the published SHA-256."""
    vector = VECTORS["accumulated_subtree_hash_vector"]
    leaves = [leaf_hash(bytes([i])) for i in range(130)]
    nodes = _node_map(leaves)
    acc = hashlib.sha256()
    ranges = 0
    for end in range(131):
        for start in range(end + 1):
            if not _valid_subtree(start, end):
                with pytest.raises(MerkleError, match="not a subtree range"):
                    subtree_nodes(start, end)
                continue
            mth = range_hash(start, end, nodes)
            if start == 0:
                assert mth == root(leaves[:end])
            acc.update(f"[{start}, {end}) {mth.hex()}\n".encode("ascii"))
            ranges += 1
    # 712 ranges (131 of them roots, 130 empty); the file's "2,000+" remark overstates it, the hash is what counts.
    assert ranges == 712
    assert acc.hexdigest() == vector["expected_sha256_hex"]


# --- Unit behaviour. ---


def test_subtree_nodes_examples_and_rejections() -> None:
    """Ranges split into maximal aligned subtrees, largest first; ranges outside the recursion are refused."""
    assert subtree_nodes(0, 0) == []
    assert subtree_nodes(0, 1) == [(0, 0)]
    assert subtree_nodes(0, 7) == [(2, 0), (1, 2), (0, 6)]
    assert subtree_nodes(8, 11) == [(1, 4), (0, 10)]
    assert subtree_nodes(0, 10**6) == [(level, (10**6 >> level) - 1) for level in (19, 18, 17, 16, 14, 9, 6)]
    assert root_nodes(7) == {(2, 0), (1, 2), (0, 6)}
    for start, end in [(1, 0), (1, 3), (2, 5), (-1, 1), (0, -1)]:
        with pytest.raises(MerkleError):
            subtree_nodes(start, end)
    with pytest.raises(MerkleError):
        subtree_nodes(0.0, 1)  # type: ignore[arg-type]


def test_missing_or_malformed_stored_hashes_are_errors() -> None:
    """A node absent from the store, or stored with the wrong length, raises MerkleError naming it."""
    partial = dict(REFERENCE_NODES)
    del partial[(1, 2)]
    with pytest.raises(MerkleError, match=r"\(1, 2\)"):
        root_from_nodes(7, partial)
    with pytest.raises(MerkleError, match=r"\(1, 2\)"):
        inclusion_proof(0, 7, partial)
    with pytest.raises(MerkleError, match=r"\(1, 2\)"):
        Frontier.from_nodes(7, partial)
    corrupt = {**REFERENCE_NODES, (1, 2): b"short"}
    with pytest.raises(MerkleError, match="32 bytes"):
        consistency_proof(4, 7, corrupt)


def test_proof_generation_rejects_bad_arguments() -> None:
    """inclusion_proof needs 0 <= index < size; consistency_proof needs 0 < size1 <= size2."""
    for index, size in [(0, 0), (8, 8), (-1, 8), (9, 8)]:
        with pytest.raises(MerkleError):
            inclusion_proof(index, size, REFERENCE_NODES)
        with pytest.raises(MerkleError):
            inclusion_nodes(index, size)
    for size1, size2 in [(0, 0), (0, 3), (4, 3), (-1, 3)]:
        with pytest.raises(MerkleError):
            consistency_proof(size1, size2, REFERENCE_NODES)
    assert consistency_proof(5, 5, REFERENCE_NODES) == []
    assert consistency_nodes(5, 5) == set()


def test_verifiers_reject_malformed_arguments_cleanly() -> None:
    """Wrong types, lengths, negative or huge ints, and size1 > size2 all raise MerkleError, never TypeError."""
    leaf, r8 = REFERENCE_LEAVES[0], REFERENCE_ROOTS[8]
    good = inclusion_proof(0, 8, REFERENCE_NODES)
    verify_inclusion(leaf, 0, 8, good, r8)
    as_bytearrays: tuple[Any, ...] = (bytearray(leaf), 0, 8, [bytearray(h) for h in good], bytearray(r8))
    verify_inclusion(*as_bytearrays)
    bad_inclusion: list[tuple[Any, ...]] = [
        (None, 0, 8, good, r8),
        (leaf[:31], 0, 8, good, r8),
        (leaf + b"\x00", 0, 8, good, r8),
        (leaf, 0, 8, good, None),
        (leaf, 0, 8, good, b""),
        (leaf, 0, 8, [*good[:2], None], r8),
        (leaf, 0, 8, None, r8),
        (leaf, 0, 8, b"".join(good), r8),
        (leaf, "0", 8, good, r8),
        (leaf, 0, 8.0, good, r8),
        (leaf, True, 8, good, r8),
        (leaf, -1, 8, good, r8),
        (leaf, 2**64 - 1, 8, good, r8),
        (leaf, 0, 2**64 - 1, good, r8),
        (leaf, 2**4096, 2**4096 + 1, good, r8),
    ]
    for args in bad_inclusion:
        with pytest.raises(MerkleError):
            verify_inclusion(*args)
    r6 = REFERENCE_ROOTS[6]
    cproof = consistency_proof(6, 8, REFERENCE_NODES)
    verify_consistency(6, 8, cproof, r6, r8)
    bad_consistency: list[tuple[Any, ...]] = [
        (6, 8, cproof, r6[:16], r8),
        (6, 8, cproof, r6, None),
        (6, 8, [*cproof, b""], r6, r8),
        (6, 8, None, r6, r8),
        (6, 8.0, cproof, r6, r8),
        (-6, 8, cproof, r6, r8),
        (8, 6, cproof, r8, r6),
        (6, 2**64 - 1, cproof, r6, r8),
        (2**64 - 2, 2**64 - 1, cproof, r6, r8),
        (2**4096 - 1, 2**4096, cproof, r6, r8),
    ]
    for args in bad_consistency:
        with pytest.raises(MerkleError):
            verify_consistency(*args)
    with pytest.raises(MerkleError):
        node_hash(leaf, leaf[:16])


def test_frontier_basics() -> None:
    """append reports the leaf then its completed parents, lowest first; copy is independent; bad frontiers refused."""
    frontier = Frontier.empty()
    for h in REFERENCE_LEAVES[:7]:
        frontier.append(h)
    before = frontier.copy()
    rows = frontier.append(REFERENCE_LEAVES[7])
    assert [node for node, _ in rows] == [(0, 7), (1, 3), (2, 1), (3, 0)]
    assert rows == [(node, REFERENCE_NODES[node]) for node, _ in rows]
    assert frontier == Frontier(8, [REFERENCE_ROOTS[8]])
    assert before == Frontier.from_nodes(7, REFERENCE_NODES) and before.root() == REFERENCE_ROOTS[7]
    with pytest.raises(MerkleError):
        frontier.append(b"\x00" * 31)
    assert frontier.size == 8
    with pytest.raises(MerkleError):
        Frontier(3, [REFERENCE_ROOTS[2]])
    with pytest.raises(MerkleError):
        Frontier(1, [b"short"])


def test_proofs_at_a_million_entries_read_only_their_node_sets() -> None:
    """At 10**6 (and 2**64 - 1) entries a proof reads exactly its O(log n) node set from the store, no scan."""
    for size in (10**6, 2**64 - 1):
        store = _CountingNodes(size)
        for index in (0, 1, size // 3, size - 2, size - 1):
            ids = inclusion_nodes(index, size)
            assert len(ids) <= 2 * size.bit_length()
            store.reads.clear()
            assert len(inclusion_proof(index, size, store)) <= 2 * size.bit_length()
            assert store.reads == ids
        for size1 in (1, 2, 3, size // 2, size // 2 + 1, size - 1, size):
            ids = consistency_nodes(size1, size)
            assert len(ids) <= 2 * size.bit_length()
            store.reads.clear()
            consistency_proof(size1, size, store)
            assert store.reads == ids
        store.reads.clear()
        Frontier.from_nodes(size, store)
        assert store.reads == root_nodes(size)


# --- 6. Properties against the naive definition. ---

PROPERTY = settings(max_examples=120, deadline=None)
seeds = st.binary(max_size=4)


@PROPERTY
@given(n=st.integers(0, 300), seed=seeds)
def test_roots_match_naive_mth(n: int, seed: bytes) -> None:
    """root, Frontier.root and root_from_nodes all equal the naive MTH."""
    data = _leaves(seed, n)
    leaves = [leaf_hash(x) for x in data]
    expected = naive_mth(data)
    nodes = _node_map(leaves)
    assert root(leaves) == expected
    assert root_from_nodes(n, nodes) == expected
    assert Frontier.from_nodes(n, nodes).root() == expected


@PROPERTY
@given(data=st.data(), seed=seeds)
def test_range_hash_matches_naive_mth_of_the_slice(data: st.DataObject, seed: bytes) -> None:
    """For any subtree range, subtree_nodes tiles it with maximal aligned subtrees and range_hash is its MTH."""
    level = data.draw(st.integers(0, 8))
    start = data.draw(st.integers(0, 3)) << level
    end = data.draw(st.integers(start, start + (1 << level)))
    leaves = _leaves(seed, end)
    ids = subtree_nodes(start, end)
    pos = start
    for lvl, idx in ids:
        assert idx << lvl == pos
        pos += 1 << lvl
    assert pos == end
    # Strictly shrinking levels: no two neighbours could merge into a larger subtree.
    assert all(left[0] > right[0] for left, right in pairwise(ids))
    assert range_hash(start, end, _node_map([leaf_hash(x) for x in leaves])) == naive_mth(leaves[start:end])


@PROPERTY
@given(data=st.data(), seed=seeds)
def test_inclusion_proofs_match_naive_path_and_verify(data: st.DataObject, seed: bytes) -> None:
    """inclusion_proof equals PATH(m, D[n]), needs only inclusion_nodes, and verifies."""
    n = data.draw(st.integers(1, 300))
    index = data.draw(st.integers(0, n - 1))
    leaves = _leaves(seed, n)
    nodes = _node_map([leaf_hash(x) for x in leaves])
    proof = inclusion_proof(index, n, nodes)
    assert proof == naive_path(index, leaves)
    only_needed = {node: nodes[node] for node in inclusion_nodes(index, n)}
    assert inclusion_proof(index, n, only_needed) == proof
    verify_inclusion(leaf_hash(leaves[index]), index, n, proof, naive_mth(leaves))


@PROPERTY
@given(data=st.data(), seed=seeds)
def test_consistency_proofs_match_naive_proof_and_verify(data: st.DataObject, seed: bytes) -> None:
    """consistency_proof equals PROOF(m, D[n]), needs only consistency_nodes, and verifies."""
    n = data.draw(st.integers(1, 300))
    m = data.draw(st.integers(1, n))
    leaves = _leaves(seed, n)
    nodes = _node_map([leaf_hash(x) for x in leaves])
    proof = consistency_proof(m, n, nodes)
    assert proof == naive_proof(m, leaves)
    only_needed = {node: nodes[node] for node in consistency_nodes(m, n)}
    assert consistency_proof(m, n, only_needed) == proof
    verify_consistency(m, n, proof, naive_mth(leaves[:m]), naive_mth(leaves))


def _tampered(proof: list[bytes], data: st.DataObject) -> Iterator[list[bytes]]:
    """One flipped bit, one element dropped, one random element inserted."""
    if proof:
        i = data.draw(st.integers(0, len(proof) - 1), label="flip element")
        bit = data.draw(st.integers(0, 8 * HASH_SIZE - 1), label="flip bit")
        flipped = bytearray(proof[i])
        flipped[bit // 8] ^= 1 << (bit % 8)
        yield [*proof[:i], bytes(flipped), *proof[i + 1 :]]
        i = data.draw(st.integers(0, len(proof) - 1), label="drop element")
        yield [*proof[:i], *proof[i + 1 :]]
    i = data.draw(st.integers(0, len(proof)), label="insert at")
    extra = data.draw(st.binary(min_size=HASH_SIZE, max_size=HASH_SIZE), label="inserted hash")
    yield [*proof[:i], extra, *proof[i:]]


@PROPERTY
@given(data=st.data(), seed=seeds)
def test_tampered_inclusion_proofs_are_rejected(data: st.DataObject, seed: bytes) -> None:
    """A flipped bit, a dropped or added element, another index, or another size with its own root: rejected."""
    n = data.draw(st.integers(1, 300))
    index = data.draw(st.integers(0, n - 1))
    other_size = data.draw(st.integers(1, 320).filter(lambda s: s != n))
    leaves = _leaves(seed, max(n, other_size))
    leaf, good_root = leaf_hash(leaves[index]), naive_mth(leaves[:n])
    proof = naive_path(index, leaves[:n])
    verify_inclusion(leaf, index, n, proof, good_root)
    for bad in _tampered(proof, data):
        assert _rejects(verify_inclusion, leaf, index, n, bad, good_root)
    for other_index in {index ^ 1, (index + 1) % n, n, 2**64 - 1} - {index}:
        assert _rejects(verify_inclusion, leaf, other_index, n, proof, good_root)
    assert _rejects(verify_inclusion, leaf, index, other_size, proof, naive_mth(leaves[:other_size]))
    assert _rejects(verify_inclusion, leaf, index, n, proof, hashlib.sha256(good_root).digest())


@PROPERTY
@given(data=st.data(), seed=seeds)
def test_inclusion_proof_alone_does_not_bind_the_tree_size(data: st.DataObject, seed: bytes) -> None:
    """Against the *same* root, another size is accepted exactly when its PATH has the same shape.

    The tree size is bound by the signed checkpoint carrying (size, root), not by the proof itself.
    """
    n = data.draw(st.integers(1, 300))
    index = data.draw(st.integers(0, n - 1))
    other_size = data.draw(st.integers(1, 320).filter(lambda s: s != n))
    leaves = _leaves(seed, n)
    proof = naive_path(index, leaves)
    accepted = not _rejects(verify_inclusion, leaf_hash(leaves[index]), index, other_size, proof, naive_mth(leaves))
    same_shape = index < other_size and naive_path_sides(index, other_size) == naive_path_sides(index, n)
    assert accepted == same_shape


@PROPERTY
@given(data=st.data(), seed=seeds)
def test_tampered_consistency_proofs_are_rejected(data: st.DataObject, seed: bytes) -> None:
    """A flipped bit, a dropped or added element, or other sizes with their own roots: rejected."""
    n = data.draw(st.integers(1, 300))
    m = data.draw(st.integers(1, n))
    other = data.draw(st.integers(1, 320).filter(lambda s: s not in (m, n)))
    leaves = _leaves(seed, max(n, other))
    root1, root2 = naive_mth(leaves[:m]), naive_mth(leaves[:n])
    proof = naive_proof(m, leaves[:n])
    verify_consistency(m, n, proof, root1, root2)
    for bad in _tampered(proof, data):
        assert _rejects(verify_consistency, m, n, bad, root1, root2)
    other_root = naive_mth(leaves[:other])
    assert _rejects(verify_consistency, other, n, proof, other_root, root2)
    assert _rejects(verify_consistency, m, other, proof, root1, other_root)
    assert _rejects(verify_consistency, m, n, proof, root2 if m != n else other_root, root2)
    assert _rejects(verify_consistency, m, n, proof, root1, hashlib.sha256(root2).digest())


@PROPERTY
@given(n=st.integers(0, 300), seed=seeds)
def test_frontier_appends_store_each_complete_subtree_once(n: int, seed: bytes) -> None:
    """Over n appends, the returned rows are exactly the complete subtrees of size n, each once, with their MTH."""
    leaves = _leaves(seed, n)
    frontier = Frontier.empty()
    rows: list[tuple[NodeId, bytes]] = []
    for i, x in enumerate(leaves):
        new = frontier.append(leaf_hash(x))
        assert [node for node, _ in new] == [(level, i >> level) for level in range(len(new))]
        assert len(new) == (~i & (i + 1)).bit_length()  # the leaf, plus one per trailing 1 bit of the old size
        rows.extend(new)
    ids = [node for node, _ in rows]
    assert len(ids) == len(set(ids))
    assert set(ids) == {(level, index) for level in range(n.bit_length()) for index in range(n >> level)}
    for (level, index), h in rows:
        assert h == naive_mth(leaves[index << level : (index + 1) << level])
    assert frontier.size == n
    assert frontier.root() == naive_mth(leaves)


@PROPERTY
@given(data=st.data(), seed=seeds)
def test_frontier_from_nodes_equals_the_incremental_frontier(data: st.DataObject, seed: bytes) -> None:
    """Frontier.from_nodes(size, store) of a larger stored tree equals the frontier built by appending size leaves."""
    n = data.draw(st.integers(0, 300))
    size = data.draw(st.integers(0, n))
    leaves = [leaf_hash(x) for x in _leaves(seed, n)]
    nodes = _node_map(leaves)
    incremental = Frontier.empty()
    for h in leaves[:size]:
        incremental.append(h)
    assert Frontier.from_nodes(size, nodes) == incremental
    assert incremental.hashes == [nodes[node] for node in subtree_nodes(0, size)]
    assert Frontier.from_nodes(size, {node: nodes[node] for node in root_nodes(size)}) == incremental
