"""RFC 9162 §2.1 Merkle trees over SHA-256: hashes, proofs, and their verification.

The transparency log stores the hash of every *complete subtree* as a row keyed by a
:data:`NodeId` ``(level, index)``, the subtree ``MTH(D[index * 2**level : (index + 1) * 2**level])``.
Every range that occurs in the RFC 9162 recursion is a handful of such subtrees, so a root, an
inclusion proof or a consistency proof at a million entries needs O(log n) stored hashes and
no leaf rehashing. This module is the arithmetic around those rows:

* which rows a query needs: :func:`root_nodes`, :func:`inclusion_nodes`, :func:`consistency_nodes`;
* the answer computed from them: :func:`root_from_nodes`, :func:`inclusion_proof`,
  :func:`consistency_proof` (any ``Mapping[NodeId, bytes]`` holding at least those rows);
* the rows an append creates: :class:`Frontier` (the right edge of the tree, kept by the writer);
* what a client does with a proof: :func:`verify_inclusion`, :func:`verify_consistency`
  (RFC 9162 §2.1.3.2 and §2.1.4.2), which raise :class:`MerkleError` instead of returning False.

Consistency from the empty tree (``size1 == 0``) is rejected by :func:`verify_consistency`: RFC 9162
defines consistency only for ``0 < first < second``, and transparency-dev/merkle rejects it too. A
client with no earlier tree has nothing to be consistent with; it trusts the first checkpoint it
verifies. (The C2SP tlog-witness rule would accept ``size1 == 0`` with an empty proof.)

Pure: the standard library only (hashlib), no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "Frontier",
    "MerkleError",
    "NodeId",
    "consistency_nodes",
    "consistency_proof",
    "inclusion_nodes",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "range_hash",
    "root",
    "root_from_nodes",
    "root_nodes",
    "subtree_nodes",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
EMPTY_ROOT: bytes = hashlib.sha256(b"").digest()

# Domain separation (RFC 9162 §2.1.1): without it a leaf could be passed off as an interior node.
_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


class MerkleError(ValueError):
    """Bad arguments, a missing or malformed stored hash, or a proof that does not verify."""


NodeId = tuple[int, int]
"""``(level, index)``: the complete subtree ``MTH(D[index * 2**level : (index + 1) * 2**level])``.
Level 0 nodes are the leaf hashes."""


def leaf_hash(data: bytes) -> bytes:
    """The RFC 9162 leaf hash ``SHA-256(0x00 || data)``."""
    h = hashlib.sha256(_LEAF_PREFIX)
    h.update(data)
    return h.digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The RFC 9162 interior node hash ``SHA-256(0x01 || left || right)``; both must be 32 bytes."""
    return _node(_check_hash("left", left), _check_hash("right", right))


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """``MTH(D[n])`` from the list of leaf hashes; :data:`EMPTY_ROOT` for ``[]``.

    O(n) hashing with an O(log n) stack, so a ``verify`` over 10^6 entries needs no recursion.
    """
    stack: list[bytes] = []
    for i, h in enumerate(leaf_hashes):
        if not isinstance(h, bytes | bytearray) or len(h) != HASH_SIZE:
            raise MerkleError(f"leaf_hashes[{i}] is not a {HASH_SIZE}-byte hash")
        top = bytes(h)
        # The stack mirrors the binary digits of i: each trailing 1 bit is a finished left sibling.
        bits = i
        while bits & 1:
            top = _node(stack.pop(), top)
            bits >>= 1
        stack.append(top)
    return _fold(stack)


def subtree_nodes(start: int, end: int) -> list[NodeId]:
    """The maximal complete subtrees exactly covering leaves ``[start, end)``, left to right.

    Defined for the ranges that occur in the RFC 9162 recursion: ``0 <= start <= end`` and ``start``
    a multiple of the smallest power of two ``>= end - start`` (which includes ``start == 0`` and
    empty ranges). Anything else raises :class:`MerkleError`.
    """
    start = _check_count("start", start)
    end = _check_count("end", end)
    if start > end:
        raise MerkleError(f"range [{start}, {end}) has start > end")
    n = end - start
    if start & (_ceil_pow2(n) - 1):
        raise MerkleError(
            f"range [{start}, {end}) is not a subtree range: start must be 0 or a multiple of a power of two >= {n}"
        )
    # The alignment of start makes each power of two in n's binary expansion an aligned, complete subtree.
    nodes: list[NodeId] = []
    pos = start
    for level in range(n.bit_length() - 1, -1, -1):
        if (n >> level) & 1:
            nodes.append((level, pos >> level))
            pos += 1 << level
    return nodes


def range_hash(start: int, end: int, nodes: Mapping[NodeId, bytes]) -> bytes:
    """``MTH(D[start:end])`` for a subtree range (see :func:`subtree_nodes`), from stored subtree hashes.

    Empty range: :data:`EMPTY_ROOT`. A node missing from ``nodes`` or not 32 bytes: :class:`MerkleError`.
    """
    return _fold([_lookup(nodes, node) for node in subtree_nodes(start, end)])


def root_nodes(size: int) -> set[NodeId]:
    """The stored subtrees needed for the root of a tree of ``size`` leaves."""
    return set(subtree_nodes(0, size))


def root_from_nodes(size: int, nodes: Mapping[NodeId, bytes]) -> bytes:
    """``MTH(D[0:size])`` from the hashes of :func:`root_nodes` ``(size)``."""
    return range_hash(0, size, nodes)


def inclusion_nodes(index: int, size: int) -> set[NodeId]:
    """Every stored subtree needed by :func:`inclusion_proof` ``(index, size, ...)``: O(log size) ids."""
    return {node for lo, hi in _inclusion_ranges(index, size) for node in subtree_nodes(lo, hi)}


def inclusion_proof(index: int, size: int, nodes: Mapping[NodeId, bytes]) -> list[bytes]:
    """RFC 9162 ``PATH(index, D[size])``: the leaf's sibling first, the root's child last.

    ``0 <= index < size``, else :class:`MerkleError`; ``nodes`` must hold :func:`inclusion_nodes`.
    """
    return [range_hash(lo, hi, nodes) for lo, hi in _inclusion_ranges(index, size)]


def consistency_nodes(size1: int, size2: int) -> set[NodeId]:
    """Every stored subtree needed by :func:`consistency_proof` ``(size1, size2, ...)``: O(log size2) ids."""
    return {node for lo, hi in _consistency_ranges(size1, size2) for node in subtree_nodes(lo, hi)}


def consistency_proof(size1: int, size2: int, nodes: Mapping[NodeId, bytes]) -> list[bytes]:
    """RFC 9162 ``PROOF(size1, D[size2])`` for ``0 < size1 <= size2`` (empty when the sizes are equal).

    ``size1 == 0`` or ``size1 > size2``: :class:`MerkleError`. ``nodes`` must hold :func:`consistency_nodes`.
    """
    return [range_hash(lo, hi, nodes) for lo, hi in _consistency_ranges(size1, size2)]


def verify_inclusion(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """Check that ``proof`` puts ``leaf_hash`` at ``index`` of the tree of ``size`` leaves with ``root``.

    RFC 9162 §2.1.3.2. Every hash must be exactly 32 bytes and ``0 <= index < size``. Returns None
    on success; raises :class:`MerkleError` saying why otherwise.
    """
    index = _check_count("index", index)
    size = _check_count("size", size)
    r = _check_hash("leaf_hash", leaf_hash)
    expected = _check_hash("root", root)
    path = _check_proof(proof)
    if index >= size:
        raise MerkleError(f"index {index} is not in a tree of size {size}")
    fn, sn = index, size - 1
    for p in path:
        if sn == 0:
            raise MerkleError(f"inclusion proof for index {index} in size {size} has too many hashes")
        if fn & 1 or fn == sn:
            r = _node(p, r)
            if not fn & 1:
                # On the right edge the tree skips levels that have no right sibling.
                shift = _trailing_zeros(fn)
                fn >>= shift
                sn >>= shift
        else:
            r = _node(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise MerkleError(f"inclusion proof for index {index} in size {size} has too few hashes")
    if r != expected:
        raise MerkleError(f"inclusion proof for index {index} does not lead to the given root of size {size}")


def verify_consistency(size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes) -> None:
    """Check that the tree of ``size2`` leaves with ``root2`` extends the tree of ``size1`` with ``root1``.

    RFC 9162 §2.1.4.2 for ``0 < size1 < size2``. ``size1 == size2``: accepted iff the proof is empty and
    the roots are equal byte for byte (nothing is hashed then, so, as transparency-dev/merkle does, their
    length is not checked). ``size1 > size2``: rejected. Otherwise every hash must be exactly 32 bytes.

    ``size1 == 0`` is always rejected. There is no agreed rule for it: RFC 9162 defines consistency
    only for ``0 < first < second``, transparency-dev/merkle rejects it, and the C2SP tlog-witness spec
    accepts it with an empty proof. We follow transparency-dev: a client that trusts nothing yet has no
    earlier tree to be consistent with, and simply trusts the first checkpoint it verifies.

    Returns None on success; raises :class:`MerkleError` saying why otherwise.
    """
    size1 = _check_count("size1", size1)
    size2 = _check_count("size2", size2)
    if size1 > size2:
        raise MerkleError(f"size1 {size1} is larger than size2 {size2}: a log never shrinks")
    if size1 == 0:
        # Policy, not RFC 9162 (see the docstring): every size1 == 0 call fails, whatever the proof and roots.
        raise MerkleError("size1 is 0: consistency with the empty tree is not checked; trust the first checkpoint")
    if size1 == size2:
        if len(proof) != 0:
            raise MerkleError(f"sizes are equal ({size1}) but the consistency proof is not empty")
        if not isinstance(root1, (bytes, bytearray)) or not isinstance(root2, (bytes, bytearray)):
            raise MerkleError("roots must be bytes")
        if bytes(root1) != bytes(root2):
            raise MerkleError(f"sizes are equal ({size1}) but the roots differ")
        return
    first = _check_hash("root1", root1)
    second = _check_hash("root2", root2)
    path = _check_proof(proof)
    if not path:
        raise MerkleError(f"consistency proof from {size1} to {size2} is empty")
    if size1 & (size1 - 1) == 0:
        # The old tree is then a complete subtree of the new one, so the proof omits its hash (root1).
        path = [first, *path]
    fn, sn = size1 - 1, size2 - 1
    # Skip the levels where the old tree's last leaf is a right child: path[0] already covers them.
    shift = _trailing_zeros(fn + 1)
    fn >>= shift
    sn >>= shift
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise MerkleError(f"consistency proof from {size1} to {size2} has too many hashes")
        if fn & 1 or fn == sn:
            fr = _node(c, fr)
            sr = _node(c, sr)
            if not fn & 1:
                shift = _trailing_zeros(fn)
                fn >>= shift
                sn >>= shift
        else:
            sr = _node(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise MerkleError(f"consistency proof from {size1} to {size2} has too few hashes")
    if fr != first:
        raise MerkleError(f"consistency proof does not reproduce root1 of size {size1}")
    if sr != second:
        raise MerkleError(f"consistency proof does not reproduce root2 of size {size2}")


@dataclass
class Frontier:
    """The compact range [0, size): hashes of subtree_nodes(0, size), largest (leftmost) first.

    The log's writer keeps one in memory: appending a leaf costs O(log n) hashes and yields exactly
    the rows to store, and its root is a fold over at most log2(size) + 1 hashes.
    """

    size: int
    hashes: list[bytes]

    def __post_init__(self) -> None:
        self.size = _check_count("size", self.size)
        if len(self.hashes) != self.size.bit_count():
            raise MerkleError(
                f"a frontier of size {self.size} has {self.size.bit_count()} hashes, not {len(self.hashes)}"
            )
        self.hashes = [_check_hash(f"hashes[{i}]", h) for i, h in enumerate(self.hashes)]

    @classmethod
    def empty(cls) -> Frontier:
        """The frontier of the empty tree."""
        return cls(0, [])

    @classmethod
    def from_nodes(cls, size: int, nodes: Mapping[NodeId, bytes]) -> Frontier:
        """The frontier of a stored tree of ``size`` leaves, read from :func:`root_nodes` ``(size)``."""
        return cls(size, [_lookup(nodes, node) for node in subtree_nodes(0, size)])

    def append(self, leaf_hash: bytes) -> list[tuple[NodeId, bytes]]:
        """Add one leaf (given its leaf hash) and return the subtrees this completed.

        In order: ``((0, old_size), leaf_hash)``, then each parent completed by it, lowest level first.
        Storing exactly these rows stores every complete subtree once.
        """
        top = _check_hash("leaf_hash", leaf_hash)
        index = self.size
        level = 0
        completed: list[tuple[NodeId, bytes]] = [((level, index), top)]
        # Each trailing 1 bit of the old size is a complete left sibling waiting for this leaf.
        while index & 1:
            top = _node(self.hashes.pop(), top)
            index >>= 1
            level += 1
            completed.append(((level, index), top))
        self.hashes.append(top)
        self.size += 1
        return completed

    def root(self) -> bytes:
        """``MTH(D[0:size])``; :data:`EMPTY_ROOT` when empty."""
        return _fold(self.hashes)

    def copy(self) -> Frontier:
        """An independent copy (appends to one do not affect the other)."""
        return Frontier(self.size, list(self.hashes))


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def _fold(hashes: Sequence[bytes]) -> bytes:
    # Right to left, because MTH splits off the largest power of two on the left: H(c1, H(c2, ... c_last)).
    if not hashes:
        return EMPTY_ROOT
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = _node(h, acc)
    return acc


def _split(n: int) -> int:
    """The largest power of two strictly less than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def _ceil_pow2(n: int) -> int:
    """The smallest power of two ``>= n`` (1 for n <= 1)."""
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


def _trailing_zeros(n: int) -> int:
    # Closed form rather than a shift loop: sizes are caller-chosen ints, and a loop would be quadratic in their bits.
    return (n & -n).bit_length() - 1 if n else 0


def _inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose MTHs form ``PATH(index, D[size])``, in proof order."""
    index = _check_count("index", index)
    size = _check_count("size", size)
    if index >= size:
        raise MerkleError(f"index {index} is not in a tree of size {size}")
    ranges: list[tuple[int, int]] = []
    lo, hi = 0, size
    while hi - lo > 1:
        mid = lo + _split(hi - lo)
        if index < mid:
            ranges.append((mid, hi))
            hi = mid
        else:
            ranges.append((lo, mid))
            lo = mid
    # Collected root-down; PATH lists the leaf's sibling first.
    ranges.reverse()
    return ranges


def _consistency_ranges(size1: int, size2: int) -> list[tuple[int, int]]:
    """The leaf ranges whose MTHs form ``PROOF(size1, D[size2])``, in proof order (RFC 9162 SUBPROOF)."""
    size1 = _check_count("size1", size1)
    size2 = _check_count("size2", size2)
    if size1 == 0:
        raise MerkleError("size1 must be > 0: RFC 9162 defines no consistency proof from the empty tree")
    if size1 > size2:
        raise MerkleError(f"size1 {size1} is larger than size2 {size2}")
    ranges: list[tuple[int, int]] = []
    lo, hi = 0, size2
    while hi != size1:
        mid = lo + _split(hi - lo)
        if size1 <= mid:
            ranges.append((mid, hi))
            hi = mid
        else:
            ranges.append((lo, mid))
            lo = mid
    # SUBPROOF's flag b is "lo == 0": then [lo, size1) is the old tree, whose root the verifier already has.
    if lo != 0:
        ranges.append((lo, hi))
    ranges.reverse()
    return ranges


def _check_count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise MerkleError(f"{name} must be an int, not {type(value).__name__}")
    if value < 0:
        raise MerkleError(f"{name} must be >= 0, got {value}")
    return value


def _check_hash(name: str, value: object) -> bytes:
    if not isinstance(value, bytes | bytearray):
        raise MerkleError(f"{name} must be {HASH_SIZE} bytes, not {type(value).__name__}")
    if len(value) != HASH_SIZE:
        raise MerkleError(f"{name} must be {HASH_SIZE} bytes, got {len(value)}")
    return bytes(value)


def _check_proof(proof: object) -> list[bytes]:
    if isinstance(proof, bytes | bytearray | str) or not isinstance(proof, Sequence):
        raise MerkleError(f"proof must be a sequence of {HASH_SIZE}-byte hashes, not {type(proof).__name__}")
    return [_check_hash(f"proof[{i}]", p) for i, p in enumerate(proof)]


def _lookup(nodes: Mapping[NodeId, bytes], node: NodeId) -> bytes:
    try:
        value = nodes[node]
    except KeyError:
        raise MerkleError(f"hash of subtree {node} (level, index) is missing") from None
    return _check_hash(f"hash of subtree {node}", value)
