"""Client-side verification of the node's log, the way Go's checksum-database
client checks sum.golang.org.

`LogVerifier` keeps the last checkpoint it trusted in a file the caller names.
Each newer checkpoint must carry a valid signature from the log's key and be
proved consistent with the trusted one before it replaces it; a log that
shrank or rewrote history is refused (`LogForked`), and the file is left as
it was, as evidence. Receipts from transfer responses are checked for
inclusion against a trusted checkpoint, and `audit` recomputes the tree from
every entry and names the first one that does not belong.

`verify_receipt_offline` is the same inclusion check with no network at all:
a receipt, a signed checkpoint and a proof.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from transfer.client.client import TransferClient
from transfer.ledger import merkle
from transfer.ledger.note import Checkpoint, NoteError, Verifier, parse_vkey
from transfer.ledger.note import open_checkpoint as open_signed_checkpoint
from transfer.v1 import log_pb2


class LogVerificationError(Exception):
    """The log failed a check; the message says which and why."""


class LogForked(LogVerificationError):
    """The log presented a history inconsistent with a checkpoint already trusted."""


class PinMismatch(LogVerificationError):
    """The node serves another origin or log key than the ones pinned."""


class EntryMismatch(LogVerificationError):
    """An entry served by the log is not the one its checkpoints commit to."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(message)
        self.index = index


def open_checkpoint(signed: str, verifier: Verifier | Sequence[Verifier], origin: str | None) -> Checkpoint:
    """A checkpoint whose signature by `verifier` is valid (and whose origin is `origin`)."""
    try:
        return open_signed_checkpoint(signed, verifier, origin)
    except NoteError as exc:
        raise LogVerificationError(f"checkpoint rejected: {exc}") from None


def verify_receipt_offline(
    receipt: log_pb2.LogReceipt, signed_checkpoint: str, proof: Sequence[bytes], verifier: Verifier
) -> Checkpoint:
    """Check, without any network, that the signed checkpoint's tree holds the receipt's leaf."""
    checkpoint = open_checkpoint(signed_checkpoint, verifier, receipt.origin or None)
    if receipt.index >= checkpoint.size:
        raise LogVerificationError(f"checkpoint of size {checkpoint.size} does not cover entry {receipt.index}")
    try:
        merkle.verify_inclusion(merkle.leaf_hash(receipt.leaf), receipt.index, checkpoint.size, proof, checkpoint.root)
    except merkle.MerkleError as exc:
        raise EntryMismatch(receipt.index, f"entry {receipt.index} is not in the signed tree: {exc}") from None
    return checkpoint


class LogVerifier:
    """Verifies one log, pinned by its verifier key `vkey` and (recommended) its `origin`: values
    obtained out of band (from the province's published list, a signed letter, the operator), never
    from the node being verified — what the node serves about itself (GetLogInfo) is only compared
    with them (`check_log_info`)."""

    def __init__(
        self,
        client: TransferClient,
        vkey: str,
        state_file: str | Path | None,
        *,
        origin: str | None = None,
        previous_vkeys: Sequence[str] = (),
        remember: bool = True,
    ) -> None:
        self.client = client
        self.vkey = vkey
        self.verifier = parse_vkey(vkey)
        # After the log's key rotation: the retired keys, accepted only for the checkpoint already
        # trusted (the state file); every new checkpoint must be signed by `vkey`.
        self.previous = [parse_vkey(v) for v in previous_vkeys]
        self.origin = origin
        # None: nothing trusted before. `remember=False` reads the trusted checkpoint and never replaces it
        # (an auditor's pinned checkpoint, which each run checks consistency against).
        self.state_file = None if state_file is None else Path(state_file)
        self.remember = remember
        self.latest_note: str | None = None  # the signed note of the checkpoint `refresh` last returned

    def check_log_info(self) -> log_pb2.GetLogInfoResponse:
        """Fetch GetLogInfo and check that it names the pinned log key (and origin, when pinned);
        PinMismatch otherwise: the node changed its key or origin, or it is not the log pinned."""
        info = self.client.get_log_info()
        if self.vkey not in (info.log_vkey, info.next_log_vkey):  # pinned to the next key during a rotation
            raise PinMismatch(f"the node serves the log key {info.log_vkey!r}, not the pinned {self.vkey!r}")
        if self.origin is not None and info.origin != self.origin:
            raise PinMismatch(f"the node serves the origin {info.origin!r}, not the pinned {self.origin!r}")
        return info

    # -- trusted state ------------------------------------------------------

    def trusted(self) -> tuple[Checkpoint, str] | None:
        """The checkpoint trusted so far and its signed note (re-verified from the file)."""
        if self.state_file is None:
            return None
        try:
            signed = self.state_file.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        return open_checkpoint(signed, [self.verifier, *self.previous], self.origin), signed

    def _save(self, signed: str) -> None:
        if self.state_file is None or not self.remember:
            return
        fd, tmp = tempfile.mkstemp(dir=self.state_file.parent, prefix=self.state_file.name + ".")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(signed)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.state_file)

    # -- checks ---------------------------------------------------------------

    def refresh(self) -> Checkpoint:
        """Fetch the latest checkpoint; trust it only if it extends the trusted one."""
        signed = self.client.get_checkpoint().checkpoint
        new = open_checkpoint(signed, self.verifier, self.origin)
        old = self.trusted()
        if old is not None:
            trusted, _ = old
            if new.size < trusted.size:
                raise LogForked(f"the log went back from size {trusted.size} to {new.size}")
            if new.size == trusted.size:
                if new.root != trusted.root:
                    raise LogForked(f"two different roots signed for size {new.size}")
                self.latest_note = signed
                return trusted
            if trusted.size > 0:  # the empty tree is consistent with every tree
                proof = self.client.consistency_proof(trusted.size, new.size)
                try:
                    merkle.verify_consistency(trusted.size, new.size, proof, trusted.root, new.root)
                except merkle.MerkleError as exc:
                    raise LogForked(
                        f"checkpoint {new.size} is not consistent with trusted checkpoint {trusted.size}: {exc}"
                    ) from None
        self._save(signed)
        self.latest_note = signed
        return new

    def verify_receipt(self, receipt: log_pb2.LogReceipt, *, wait_seconds: float = 10.0) -> Checkpoint:
        """Check that the log holds the receipt's entry, waiting for a checkpoint that covers it."""
        deadline = time.monotonic() + wait_seconds
        while True:
            checkpoint = self.refresh()
            if receipt.index < checkpoint.size:
                break
            if time.monotonic() > deadline:
                raise LogVerificationError(f"no checkpoint covers entry {receipt.index} after {wait_seconds} s")
            time.sleep(0.2)
        proof = self.client.inclusion_proof(receipt.index, checkpoint.size)
        try:
            merkle.verify_inclusion(
                merkle.leaf_hash(receipt.leaf), receipt.index, checkpoint.size, proof, checkpoint.root
            )
        except merkle.MerkleError as exc:
            raise EntryMismatch(receipt.index, f"entry {receipt.index} is not in the log: {exc}") from None
        return checkpoint

    def audit(
        self,
        *,
        each: Callable[[bytes], None] | None = None,
        progress: Callable[[int, int], None] | None = None,
        page_size: int = 1000,
    ) -> Checkpoint:
        """Fetch every entry up to the trusted checkpoint and check they make its root.

        `each` is given every entry in index order as served, `progress` (entries read, of how many) after
        each page: they count as the log's only once `audit` returned. On a mismatch, bisect with inclusion
        proofs to name the first entry that does not belong (O(log n) proofs).
        """
        checkpoint = self.refresh()
        hashes: list[bytes] = []
        for entry in self.client.iter_entries(0, checkpoint.size, page_size=page_size):
            if entry.index != len(hashes):
                raise EntryMismatch(len(hashes), f"the log served entry {entry.index} in place of {len(hashes)}")
            hashes.append(merkle.leaf_hash(entry.leaf))
            if each is not None:
                each(entry.leaf)
            if progress is not None and len(hashes) % page_size == 0:
                progress(len(hashes), checkpoint.size)
        if progress is not None:
            progress(len(hashes), checkpoint.size)
        if len(hashes) != checkpoint.size:
            raise EntryMismatch(
                len(hashes), f"the log served {len(hashes)} entries, its checkpoint has {checkpoint.size}"
            )
        if merkle.root(hashes) == checkpoint.root:
            return checkpoint
        index = self._first_bad(hashes, checkpoint)
        proof = self._inclusion_proof(index, checkpoint.size)
        try:
            merkle.verify_inclusion(hashes[index], index, checkpoint.size, proof, checkpoint.root)
        except merkle.MerkleError:
            raise EntryMismatch(index, f"entry {index} as served does not match the signed tree") from None
        raise LogVerificationError("the served entries do not make the signed root, and the proofs contradict them")

    def _first_bad(self, hashes: list[bytes], checkpoint: Checkpoint) -> int:
        # Each served entry is checked against the signed root through its own
        # inclusion proof; we descend the RFC 9162 split (left half first) by
        # comparing the subtree hashes the proofs reveal with those computed
        # from the served entries.
        lo, hi = 0, checkpoint.size
        while hi - lo > 1:
            k = 1 << ((hi - lo - 1).bit_length() - 1)  # largest power of two < hi - lo
            mid = lo + k
            # The proof of leaf `mid` reveals MTH(D[lo:mid]) as its sibling at this split.
            proof = self._inclusion_proof(mid, checkpoint.size)
            depth = _depth_of_split(lo, hi, checkpoint.size)
            left_signed = proof[len(proof) - 1 - depth]
            if merkle.root(hashes[lo:mid]) != left_signed:
                hi = mid
            else:
                lo = mid
        return lo

    def _inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """The log's inclusion proof of `index` in `size`, refused unless it has the RFC 9162 shape.

        The bisection reads the proof's hashes by position: one missing or extra
        would make it index out of range or name an entry that is fine.
        """
        proof = self.client.inclusion_proof(index, size)
        expected = _depth_of_split(index, index + 1, size)
        if len(proof) != expected or any(len(h) != merkle.HASH_SIZE for h in proof):
            raise LogVerificationError(
                f"the log served a malformed inclusion proof for entry {index} in a tree of {size}: "
                f"{len(proof)} hashes, expected {expected} of {merkle.HASH_SIZE} bytes"
            )
        return proof


def _depth_of_split(lo: int, hi: int, size: int) -> int:
    """How many splits down from the root the range [lo, hi) is reached."""
    depth, start, end = 0, 0, size
    while (start, end) != (lo, hi):
        k = 1 << ((end - start - 1).bit_length() - 1)
        if lo < start + k:
            end = start + k
        else:
            start = start + k
        depth += 1
    return depth
