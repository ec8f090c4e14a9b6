"""Use cases of the append-only log: checkpoints, entries and proofs (DESIGN §8).

Leaves are appended by the other use cases, in the same transaction as the
change they record (`leaves.append_entry`, which keeps entry times from going
backwards). Here the node publishes checkpoints —
never two inconsistent ones: each new checkpoint is proved consistent with the
latest published one before it is signed, and it is stored in the same write
transaction that read the latest (the writer's lock makes that a
compare-and-swap) — and serves what verifiers ask for.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from transfer.domain.errors import DataLoss, FieldViolation, InvalidArgument, NotFound, OutOfRange, Unavailable
from transfer.domain.model import Actor, StoredCheckpoint
from transfer.domain.paging import Page, Tokens
from transfer.domain.ports import Clock, UnitOfWork
from transfer.ledger import merkle
from transfer.ledger.note import (
    Checkpoint,
    NoteError,
    Signature,
    Signer,
    Verifier,
    open_checkpoint,
    parse_note,
    parse_signature_line,
    sign_note,
    signature_line,
)
from transfer.ledger.receipt import ProofBundle, entry_time, sign_promise

MAX_ENTRIES_PAGE = 1000


def tree_root(uow: UnitOfWork, size: int) -> bytes:
    return merkle.root_from_nodes(size, uow.log.nodes(merkle.root_nodes(size)))


def _root_or_none(uow: UnitOfWork, size: int) -> bytes | None:
    """The root at `size`, or None when the stored hashes cannot make it (rows missing)."""
    try:
        return tree_root(uow, size)
    except (KeyError, ValueError, merkle.MerkleError):
        return None


_ENTRIES_KEY = re.compile(r"(-?[0-9]{1,18}):([0-9]{1,18})")


def _entries_key(key: str | int) -> tuple[int, int]:
    """A ListEntries token's key: "<last index read>:<end of the range>"."""
    found = _ENTRIES_KEY.fullmatch(str(key))
    if found is None:
        raise InvalidArgument(
            "INVALID_PAGE_TOKEN",
            "page_token is not one this service issued",
            field_violations=(FieldViolation("page_token", "malformed", "INVALID_PAGE_TOKEN"),),
        )
    return int(found.group(1)), int(found.group(2))


class LogInconsistent(DataLoss):
    """The stored log contradicts a checkpoint this node signed: signing anything now would fork it.

    `size`/`root` are the stored log's (root None when it cannot be computed);
    `signed_size`/`signed_root` the checkpoint's (root None when unknown)."""

    def __init__(
        self, reason: str, message: str, *, signed_size: int, signed_root: bytes | None, size: int, root: bytes | None
    ) -> None:
        super().__init__(reason, message)
        self.signed_size = signed_size
        self.signed_root = signed_root
        self.size = size
        self.root = root

    @classmethod
    def shrank(
        cls, size: int, root: bytes | None, before: str, *, signed_size: int, signed_root: bytes | None
    ) -> LogInconsistent:
        """The stored log has `size` entries, fewer than `before` says it had ("checkpoint 9 was signed")."""
        return cls(
            "LOG_SHRANK",
            f"the log has {size} entries but {before}",
            signed_size=signed_size,
            signed_root=signed_root,
            size=size,
            root=root,
        )

    def log_extra(self) -> dict[str, str | int]:
        """The sizes and roots, for the node's one log line."""
        return {
            "cause": self.reason,
            "signed_size": self.signed_size,
            "signed_root": "" if self.signed_root is None else self.signed_root.hex(),
            "tree_size": self.size,
            "root": "" if self.root is None else self.root.hex(),
        }


class LogGate:
    """Node-wide: whether the node may still change anything.

    Closed for good (until an operator restarts the node) the first time the
    log is found inconsistent with a checkpoint the node signed: every change
    would then append entries at positions it cannot prove, or under a tree it
    cannot sign, so none is accepted (UNAVAILABLE LOG_INCONSISTENT)."""

    def __init__(self) -> None:
        self.broken: LogInconsistent | None = None
        self._listeners: list[Callable[[LogInconsistent], None]] = []

    def on_break(self, listener: Callable[[LogInconsistent], None]) -> None:
        self._listeners.append(listener)

    def trip(self, cause: LogInconsistent) -> bool:
        """Close the gate; True the first time (the listeners were told), False when it was closed already."""
        if self.broken is not None:
            return False
        self.broken = cause
        for listener in self._listeners:
            listener(cause)
        return True

    def check(self) -> None:
        """Refuse a change while the gate is closed."""
        if self.broken is not None:
            raise self.refusal()

    def refusal(self) -> Unavailable:
        return Unavailable(
            "LOG_INCONSISTENT",
            "the node's log is inconsistent with a checkpoint it signed; it accepts no changes until an operator "
            "repairs it (reads still work)",
        )


def _bad(field: str, message: str, reason: str = "INVALID_TREE_SIZE") -> InvalidArgument:
    return InvalidArgument(reason, f"{field}: {message}", field_violations=(FieldViolation(field, message, reason),))


@dataclass(frozen=True)
class Witness:
    """A witness cosigning the log's checkpoints: its key name, verifier key and address."""

    name: str
    vkey: str
    url: str


@dataclass(frozen=True)
class LogInfo:
    """What verifiers pin: the log's origin, its checkpoint key, the node's seal key (verifier
    keys, "" when none) and the witness policy (none yet: no witnesses, quorum 0)."""

    origin: str
    log_vkey: str
    seal_vkey: str = ""
    next_log_vkey: str = ""
    previous_log_vkeys: tuple[str, ...] = ()
    witnesses: tuple[Witness, ...] = ()
    witness_quorum: int = 0
    own_witness_vkey: str = ""  # the node's own witness of its peers' logs ([witness]), "" when none


class Logbook:
    def __init__(self, origin: str, signer: Signer | None, clock: Clock, *, also: Sequence[Signer] = ()) -> None:
        self.origin = origin
        self.signer = signer
        self.also = tuple(also)  # during a key rotation, the next key signs every checkpoint too
        self.clock = clock

    # -- publishing ---------------------------------------------------------

    def publish(self, uow: UnitOfWork) -> StoredCheckpoint | None:
        """Sign and store a checkpoint of the whole log if it grew; None if not.

        "The whole log" is what earlier transactions committed: entries staged by
        commands in the same batch have no stored subtree hashes yet, and are
        covered by the next checkpoint."""
        checkpoint = self.prepare(uow)
        if checkpoint is not None:
            uow.log.add_checkpoint(checkpoint)
        return checkpoint

    def prepare(self, uow: UnitOfWork) -> StoredCheckpoint | None:
        """Sign a checkpoint of the committed log if it grew since the latest
        stored one, without storing it (None if it did not grow)."""
        if self.signer is None:
            raise RuntimeError("this node has no log signing key")
        size = uow.log.committed_size()
        latest = uow.log.latest_checkpoint()
        if latest is not None and latest.size >= size:
            if latest.size > size:
                raise LogInconsistent.shrank(
                    size,
                    _root_or_none(uow, size),
                    f"checkpoint {latest.size} was signed",
                    signed_size=latest.size,
                    signed_root=latest.root,
                )
            return None
        root = tree_root(uow, size)
        self._check_consistent(uow, latest, size, root)
        note = sign_note(Checkpoint(self.origin, size, root).text(), self.signer, *self.also)
        return StoredCheckpoint(size, root, note, self.clock.now())

    def store(self, uow: UnitOfWork, checkpoint: StoredCheckpoint) -> StoredCheckpoint | None:
        """Store a checkpoint `prepare` signed, in a write transaction: checked
        again against the latest stored one, which may have changed meanwhile.
        None if one as large is stored already."""
        latest = uow.log.latest_checkpoint()
        if latest is not None and latest.size >= checkpoint.size:
            return None
        self._check_consistent(uow, latest, checkpoint.size, checkpoint.root)
        uow.log.add_checkpoint(checkpoint)
        return checkpoint

    @staticmethod
    def _check_consistent(uow: UnitOfWork, latest: StoredCheckpoint | None, size: int, root: bytes) -> None:
        if latest is None or latest.size == 0:
            return
        proof = merkle.consistency_proof(latest.size, size, uow.log.nodes(merkle.consistency_nodes(latest.size, size)))
        try:
            merkle.verify_consistency(latest.size, size, proof, latest.root, root)
        except merkle.MerkleError as exc:
            # Signing now would put two inconsistent checkpoints in the world.
            raise LogInconsistent(
                "LOG_INCONSISTENT",
                f"the log at {size} is not consistent with checkpoint {latest.size}: {exc}",
                signed_size=latest.size,
                signed_root=latest.root,
                size=size,
                root=root,
            ) from exc

    def check_origin(self, uow: UnitOfWork) -> None:
        """Refuse to go on with a log whose stored checkpoints name another origin.

        The origin is the log's identity: every checkpoint a peer, a school or an
        auditor holds names it. Signing the same tree under another origin (after
        a change of log.origin, node.domain or node.province) would make a second
        log of the same history that no holder of the first can follow."""
        latest = uow.log.latest_checkpoint()
        if latest is None:
            return
        stored = latest.note.split("\n", 1)[0]
        if stored != self.origin:
            raise DataLoss(
                "LOG_ORIGIN_CHANGED",
                f"the database's checkpoints are of the log {stored!r}, but this node is configured as "
                f"{self.origin!r}: set log.origin = {stored!r} to go on with this log",
            )

    def check_signed_before(self, uow: UnitOfWork, note: str, verifier: Verifier | Sequence[Verifier]) -> Checkpoint:
        """Check that the database still holds the tree of a checkpoint this node
        signed (`note`, a copy kept outside the database).

        A database restored from an older backup, or another log's, would
        otherwise have the node sign a second, different tree of a size it has
        already signed: a fork that every holder of the first checkpoint can
        prove. Refused with DataLoss; the checkpoint when the database holds it."""
        try:
            signed = open_checkpoint(note, verifier, self.origin)
        except NoteError as exc:
            raise DataLoss(
                "LATEST_CHECKPOINT_UNREADABLE", f"the saved latest checkpoint is not one this log signed: {exc}"
            ) from None
        size = uow.log.committed_size()
        if size < signed.size:
            raise DataLoss(
                "LOG_BEHIND_SIGNED_CHECKPOINT",
                f"the database holds {size} log entries, but this node has signed a checkpoint of {signed.size}: "
                "it was restored from an older backup, or it is not this node's database; signing now would fork "
                "the log",
            )
        if tree_root(uow, signed.size) != signed.root:
            raise DataLoss(
                "LOG_DIVERGES_FROM_SIGNED_CHECKPOINT",
                f"the database's log at {signed.size} entries has another root than the checkpoint this node "
                "signed at that size: it is not this node's database",
            )
        return signed

    # -- receipts that verify offline -----------------------------------------

    def promise(self, index: int, leaf: bytes) -> str:
        """The signed entry promise of a receipt: "the entry with this leaf hash is at `index`"
        (transfer/ledger/receipt.py). Deterministic (Ed25519 over the entry's own time), so a
        repeated request gets the same bytes; "" on a node without a log key."""
        if self.signer is None:
            return ""
        when = entry_time(leaf)
        if when is None:  # every entry this node writes has the version-1 header
            raise ValueError(f"entry {index} is not in the node's entry format")
        return sign_promise(self.origin, index, leaf, when, self.signer, *self.also)

    def proof_bundle(self, uow: UnitOfWork, index: int, size: int = 0) -> ProofBundle:
        """Entry `index`, its inclusion proof and the checkpoint (`checkpoint`: the latest for
        size 0, with whatever cosignatures it carries) that covers it."""
        if index < 0:
            raise _bad("index", "must not be negative", "INVALID_INDEX")
        current = uow.log.size()
        if index >= current:
            raise OutOfRange("BEYOND_LOG", f"index {index} is beyond the log's {current} entries")
        checkpoint = self.checkpoint(uow, size)
        if index >= checkpoint.size:
            if size:
                raise _bad("index", f"must be within [0, {checkpoint.size})", "INVALID_INDEX")
            raise Unavailable(
                "NO_CHECKPOINT_YET",
                f"no checkpoint covers entry {index} yet (the latest is of {checkpoint.size}); retry",
            )
        return self._bundle(uow, index, checkpoint)

    def receipt_bundle(self, uow: UnitOfWork, index: int) -> ProofBundle | None:
        """Entry `index` proved in the first checkpoint signed over it (None: not signed yet): what a
        receipt to a peer carries, always the same bytes once that checkpoint exists."""
        found = self.first_covering(uow, index)
        return None if found is None else self._bundle(uow, index, found)

    def _bundle(self, uow: UnitOfWork, index: int, checkpoint: StoredCheckpoint) -> ProofBundle:
        leaf = uow.log.leaves(index, index + 1)[0]
        nodes = uow.log.nodes(merkle.inclusion_nodes(index, checkpoint.size))
        proof = merkle.inclusion_proof(index, checkpoint.size, nodes)
        return ProofBundle(self.origin, index, leaf, tuple(proof), checkpoint.note)

    # -- witnesses ----------------------------------------------------------

    def check_cosignature(self, uow: UnitOfWork, size: int, witness: Verifier, answer: str) -> list[Signature]:
        """The cosignature(s) by `witness` in a witness's answer (signature lines) for the checkpoint
        of `size`, each checked with the witness's key over that checkpoint's text (a read: the
        write that stores them, `add_cosignatures`, then has nothing left to refuse).

        Lines of other keys are ignored; a line of the witness's key that does not
        verify refuses the whole answer (NoteError), since a witness that sends a bad
        cosignature is broken or not the one configured."""
        stored = uow.log.checkpoint(size)
        if stored is None:
            raise NoteError(f"no checkpoint of size {size} is stored")
        text = parse_note(stored.note).text.encode("utf-8")
        if not answer.endswith("\n"):
            raise NoteError("the witness's answer does not end with a newline")
        found = [
            sig
            for sig in (parse_signature_line(line) for line in answer[:-1].split("\n"))
            if (sig.name, sig.key_id) == (witness.name, witness.key_id)
        ]
        if not found:
            raise NoteError(f"the witness's answer holds no cosignature by {witness.name}")
        for sig in found:
            if not witness.verify(text, sig.data):
                raise NoteError(f"the cosignature by {witness.name} does not verify over checkpoint {size}")
        return found

    def add_cosignatures(self, uow: UnitOfWork, size: int, cosignatures: Sequence[Signature]) -> int:
        """Store cosignatures `check_cosignature` returned (a write); how many were new."""
        now = self.clock.now()
        return sum(uow.log.add_cosignature(size, s.name, s.key_id, signature_line(s), now) for s in cosignatures)

    def _cosigned(self, uow: UnitOfWork, checkpoint: StoredCheckpoint) -> StoredCheckpoint:
        """The checkpoint with the witnesses' cosignature lines appended to its note (extra signature lines)."""
        lines = uow.log.cosignatures(checkpoint.size)
        if not lines:
            return checkpoint
        return replace(checkpoint, note=checkpoint.note + "".join(lines))

    # -- reading ------------------------------------------------------------

    def checkpoint(self, uow: UnitOfWork, size: int = 0) -> StoredCheckpoint:
        """The latest checkpoint (size 0) or the one signed at exactly `size`, with every cosignature
        the node holds for it appended to the note (docs/log.md, Witnesses)."""
        if size < 0:
            raise _bad("tree_size", "must not be negative")
        current = uow.log.size()
        if size > current:
            raise OutOfRange("BEYOND_LOG", f"tree_size {size} is beyond the log's {current} entries")
        found = uow.log.latest_checkpoint() if size == 0 else uow.log.checkpoint(size)
        if found is None:
            raise NotFound(
                "NO_CHECKPOINT",
                "no checkpoint has been published yet" if size == 0 else f"no checkpoint was signed at size {size}",
                resource=("checkpoint", str(size)),
            )
        return self._cosigned(uow, found)

    def first_covering(self, uow: UnitOfWork, index: int) -> StoredCheckpoint | None:
        """The first checkpoint signed over entry `index` (None: not signed yet).

        Always the same one once it exists: what receipts to peers name."""
        return uow.log.checkpoint_covering(index)

    def entries(
        self, uow: UnitOfWork, actor: Actor, start: int, end: int, page_size: int, page_token: str, tokens: Tokens
    ) -> Page[tuple[int, bytes]]:
        """Leaves [start, end) in index order (end 0: up to the current size), paged."""
        size = uow.log.size()
        if start < 0 or end < 0:
            raise _bad("start" if start < 0 else "end", "must not be negative", "INVALID_RANGE")
        # The token is bound to the request as given (end 0 included) and carries
        # the end it was resolved to on the first page, so paging through "up to
        # the current size" reads one fixed range however much the log grows.
        filters = ("entries", start, end)
        req = tokens.page_request(actor, page_size, page_token, filters, MAX_ENTRIES_PAGE)
        first = start
        if req.after is not None:
            after, resolved = _entries_key(req.after)
            if not (start - 1 <= after < resolved) or (end and resolved != end):
                raise InvalidArgument(
                    "INVALID_PAGE_TOKEN",
                    "page_token does not continue this range",
                    field_violations=(FieldViolation("page_token", "out of range", "INVALID_PAGE_TOKEN"),),
                )
            first, end = after + 1, resolved
        end = end or size
        if start > end:
            raise _bad("start", "must not be after end", "INVALID_RANGE")
        if end > size:
            raise OutOfRange("BEYOND_LOG", f"end {end} is beyond the log's {size} entries")
        last = min(end, first + min(req.size, MAX_ENTRIES_PAGE))
        leaves = uow.log.leaves(first, last)
        token = tokens.next_token(actor, f"{last - 1}:{end}", filters) if last < end else ""
        return Page(list(enumerate(leaves, start=first)), token)

    def inclusion_proof(self, uow: UnitOfWork, index: int, size: int) -> list[bytes]:
        self._check_size(uow, size, "tree_size")
        if not 0 <= index < size:
            raise _bad("index", f"must be within [0, {size})", "INVALID_INDEX")
        return merkle.inclusion_proof(index, size, uow.log.nodes(merkle.inclusion_nodes(index, size)))

    def consistency_proof(self, uow: UnitOfWork, first: int, second: int) -> list[bytes]:
        self._check_size(uow, second, "second_size")
        if not 0 < first <= second:
            raise _bad("first_size", f"must be within [1, {second}]")
        return merkle.consistency_proof(first, second, uow.log.nodes(merkle.consistency_nodes(first, second)))

    @staticmethod
    def _check_size(uow: UnitOfWork, size: int, field: str) -> None:
        if size <= 0:
            raise _bad(field, "must be positive")
        current = uow.log.size()
        if size > current:
            raise OutOfRange("BEYOND_LOG", f"{field} {size} is beyond the log's {current} entries")


__all__ = ["LogGate", "LogInconsistent", "Logbook", "tree_root"]
