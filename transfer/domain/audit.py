"""Recompute the whole log from its leaves and check everything stored against it.

Used by the node's `verify` command. It proves, from the database alone and
the node's public log key:

* leaf indices run 0..n-1 with no gap;
* each stored leaf hash is SHA-256(0x00 || leaf) — a leaf altered behind the
  service's back is named by its index;
* each stored interior hash is the hash of its two children, level by level —
  an altered subtree hash is named with the leaves it covers;
* every stored checkpoint carries a valid signature from the log key, for
  this log's origin, and its root is the root of the verified tree at its size
  (so all checkpoints are consistent with each other);
* each checkpoint held outside the database (the node's
  `log.latest_checkpoint_file`, one a peer or an auditor kept) is signed by
  the log key for this origin, and the stored tree holds it: as many entries,
  the same root. A database restored behind it fails here.

Memory stays flat: each level is streamed in index order against the one
below it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from transfer.domain.model import StoredCheckpoint
from transfer.ledger import merkle
from transfer.ledger.note import NoteError, Verifier, open_checkpoint

Progress = Callable[[str, int, int], None]


class LogSource(Protocol):
    def leaves(self) -> Iterator[tuple[int, bytes]]: ...
    def level(self, level: int) -> Iterator[tuple[int, bytes]]: ...
    def leaf_count(self) -> int: ...
    def nodes(self, ids: Collection[merkle.NodeId]) -> dict[merkle.NodeId, bytes]: ...
    def checkpoints(self) -> list[StoredCheckpoint]: ...


@dataclass
class AuditReport:
    size: int = 0
    nodes_checked: int = 0
    checkpoints_checked: int = 0
    held_checked: int = 0
    problems: list[str] = field(default_factory=list)
    first_bad_index: int | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def fail(self, message: str, index: int | None = None) -> None:
        self.problems.append(message)
        if index is not None and (self.first_bad_index is None or index < self.first_bad_index):
            self.first_bad_index = index


def _no_progress(stage: str, done: int, total: int) -> None:
    return None


def audit_log(
    source: LogSource,
    verifier: Verifier | Sequence[Verifier],
    origin: str,
    *,
    progress: Progress = _no_progress,
    held: Sequence[tuple[str, str]] = (),
) -> AuditReport:
    """Check the log as it is when the audit starts; entries a live node appends meanwhile are left out.

    The checkpoints are read first and the size fixed next, so every checkpoint
    read is within the size checked (the log only grows). `held`: (where it
    came from, signed note) of checkpoints kept outside the database."""
    report = AuditReport()
    checkpoints = source.checkpoints()
    total = source.leaf_count()
    _check_leaves(source, report, total, progress)
    if report.ok:
        _check_levels(source, report, progress)
    if report.ok:
        _check_checkpoints(source, checkpoints, report, verifier, origin)
    if report.ok:
        for where, note in held:
            _check_held(source, report, verifier, origin, where, note)
    return report


def _check_held(
    source: LogSource, report: AuditReport, verifier: Verifier | Sequence[Verifier], origin: str, where: str, text: str
) -> None:
    try:
        body = open_checkpoint(text, verifier, origin)
    except NoteError as exc:
        report.fail(f"the checkpoint in {where} is not one this log signed: {exc}")
        return
    if body.size > report.size:
        report.fail(
            f"the checkpoint in {where} is of {body.size} entries, but the database holds {report.size}: "
            "entries this log signed are missing (a database restored from an older backup?)",
            report.size,
        )
        return
    if merkle.root_from_nodes(body.size, source.nodes(merkle.root_nodes(body.size))) != body.root:
        report.fail(f"the checkpoint in {where} has another root than the database's tree at {body.size} entries")
        return
    report.held_checked += 1


def _check_leaves(source: LogSource, report: AuditReport, total: int, progress: Progress) -> None:
    stored = source.level(0)
    expected = 0
    for index, data in source.leaves():
        if expected == total:
            break  # appended after the audit started
        if index != expected:
            report.fail(f"leaf {expected} is missing (next stored leaf is {index})", expected)
            return
        node = next(stored, None)
        if node is None or node[0] != index:
            report.fail(f"leaf {index} has no stored leaf hash", index)
            return
        if merkle.leaf_hash(data) != node[1]:
            report.fail(f"leaf {index}: its data does not match its stored hash (altered leaf)", index)
            return
        expected += 1
        if expected % 100_000 == 0:
            progress("leaves", expected, total)
    report.size = expected
    progress("leaves", expected, total)
    if expected < total:
        report.fail(f"leaf {expected} is missing (the log counted {total} leaves)", expected)


def _check_levels(source: LogSource, report: AuditReport, progress: Progress) -> None:
    level = 1
    width = report.size // 2
    while width > 0:
        below = source.level(level - 1)
        stored = source.level(level)
        for i in range(width):
            left, right = next(below, None), next(below, None)
            node = next(stored, None)
            if left is None or right is None or node is None or node[0] != i:
                first = i << level
                report.fail(f"subtree ({level}, {i}) over leaves {first}..{first + (1 << level) - 1} is missing", first)
                return
            if merkle.node_hash(left[1], right[1]) != node[1]:
                first = i << level
                report.fail(
                    f"subtree ({level}, {i}) over leaves {first}..{first + (1 << level) - 1}: stored hash is wrong",
                    first,
                )
                return
            report.nodes_checked += 1
        progress(f"level {level}", width, width)
        level += 1
        width >>= 1


def _check_checkpoints(
    source: LogSource,
    checkpoints: list[StoredCheckpoint],
    report: AuditReport,
    verifier: Verifier | Sequence[Verifier],
    origin: str,
) -> None:
    previous: StoredCheckpoint | None = None
    for cp in checkpoints:
        where = f"checkpoint {cp.size}"
        try:
            body = open_checkpoint(cp.note, verifier)
        except NoteError as exc:
            report.fail(f"{where}: signature or format is invalid: {exc}")
            return
        if body.origin != origin or body.size != cp.size or body.root != cp.root:
            report.fail(f"{where}: the signed note does not match its stored row (origin, size or root)")
            return
        if cp.size > report.size:
            report.fail(f"{where} claims more entries than the log holds ({report.size})", report.size)
            return
        root = merkle.root_from_nodes(cp.size, source.nodes(merkle.root_nodes(cp.size)))
        if root != cp.root:
            report.fail(f"{where}: its root is not the root of the stored tree at that size")
            return
        if previous is not None and previous.size > 0:
            ids = merkle.consistency_nodes(previous.size, cp.size)
            proof = merkle.consistency_proof(previous.size, cp.size, source.nodes(ids))
            try:
                merkle.verify_consistency(previous.size, cp.size, proof, previous.root, cp.root)
            except merkle.MerkleError as exc:
                report.fail(f"{where} is not consistent with checkpoint {previous.size}: {exc}")
                return
        report.checkpoints_checked += 1
        previous = cp
