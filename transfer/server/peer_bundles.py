"""Witnessed bundles of the receipts peers gave: fetched after delivery, off the write path.

A peer's sealed receipt proves its entry in the first checkpoint signed over it, which no witness has
cosigned yet. For each delivered message whose receipt names an entry of a peer with a witness policy
(`peers[].witness_vkey_files`, `witness_quorum`), `Federation.delivered` writes a WAITING row; this task
asks the peer's `LogService` (over the dispatcher's channel to it) for that entry proved in a checkpoint
the peer's witnesses cosigned, checks it (transfer.domain.peer_bundles) and keeps it. Bounded: at most
BATCH rows a round, one peer's rows one after the other (peers in parallel), each call with a deadline,
exponential backoff between attempts of a row, and a row stops being asked for HORIZON after its
delivery (one log line). A peer that shows a checkpoint inconsistent with its receipt's is logged at
ERROR, both notes kept, and not asked again for that entry (docs/federation.md, Receipts).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Mapping
from dataclasses import replace
from datetime import timedelta
from types import SimpleNamespace

import grpc
from google.protobuf.message import DecodeError
from tenacity import wait_exponential_jitter

from storage.store import Store
from transfer.domain.errors import Unavailable
from transfer.domain.model import PeerBundle, PeerBundleState
from transfer.domain.peer_bundles import BundleRefused, SplitView, check_extends, check_fetched
from transfer.domain.ports import Clock, UnitOfWork
from transfer.ledger.note import Checkpoint, NoteError, open_checkpoint
from transfer.server.peers import Peer, PeerLinks
from transfer.unavailable import UnavailableLog
from transfer.v1 import log_pb2, peers_pb2

log = logging.getLogger("transfer.peer_bundles")

BATCH = 64  # rows looked at a round
CALL_DEADLINE = 10.0  # seconds per call to a peer
HORIZON = timedelta(days=1)  # after this long since delivery without a witnessed checkpoint: given up
# Between attempts of one row: 1 s, 2 s, 4 s, … up to 10 minutes (witnesses cosign within moments).
BACKOFF = wait_exponential_jitter(initial=1.0, max=600.0, jitter=0.5)
IDLE = 5.0  # seconds between looks when nothing is due (a delivery wakes it sooner)


def _update(uow: UnitOfWork, bundle: PeerBundle) -> None:
    uow.peer_bundles.update(bundle)


class _Retry(Exception):
    """This attempt got no witnessed bundle; try the row again later."""


class BundleRefresher:
    """Seeks, keeps and serves witnessed bundles of the peers' receipts until stopped."""

    def __init__(self, store: Store, links: PeerLinks, peers: Mapping[str, Peer], clock: Clock) -> None:
        self.store = store
        self.links = links
        self.peers = peers
        self.clock = clock
        self.wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Per peer, the size of the last checkpoint seen not yet witnessed: asked for again first, since
        # witnesses cosign the checkpoint submitted to them, which a newer one may have replaced as latest.
        self._candidate: dict[str, int] = {}
        # Consistency proofs verified: (peer, old size, old root, new size, new root).
        self._consistent: set[tuple[str, int, bytes, int, bytes]] = set()
        self._unavailable = UnavailableLog(log, "peer bundle refresh failed: database unavailable; retrying")

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="peer-bundles")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                self.wake.clear()
                due = await self.store.read(lambda uow: uow.peer_bundles.due(self.clock.now(), BATCH))
                by_peer: dict[str, list[tuple[PeerBundle, bytes]]] = {}
                for row, receipt in due:
                    by_peer.setdefault(row.peer, []).append((row, receipt))
                await asyncio.gather(*(self._refresh_peer(rows) for rows in by_peer.values()))
                if len(due) >= BATCH:
                    continue
                nxt = await self.store.read(lambda uow: uow.peer_bundles.next_attempt())
                delay = IDLE if nxt is None else min(IDLE, max(0.0, (nxt - self.clock.now()).total_seconds()))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), timeout=max(delay, 0.05))
            except asyncio.CancelledError:
                raise
            except Unavailable as exc:
                self._unavailable.failed(exc)
                await asyncio.sleep(1.0)
            except Exception:
                log.exception("peer bundle refresh failed; retrying")
                await asyncio.sleep(1.0)

    async def _refresh_peer(self, rows: list[tuple[PeerBundle, bytes]]) -> None:
        for row, receipt in rows:
            try:
                updated = await self._refresh(row, receipt)
            except Exception:  # one row's surprise must not stop the others, nor retry at once
                log.exception("peer bundle refresh crashed", extra={"peer": row.peer, "outbox_id": row.outbox_id})
                updated = self._later(row, "refresh crashed")
            await self.store.write(functools.partial(_update, bundle=updated))

    async def _refresh(self, row: PeerBundle, receipt: bytes) -> PeerBundle:
        """The row after one attempt: WITNESSED, SPLIT_VIEW, GAVE_UP, or WAITING with its next attempt."""
        now = self.clock.now()
        peer = self.peers.get(row.peer)
        if peer is None or not peer.witnessed:
            return replace(row, state=PeerBundleState.GAVE_UP, last_error="the peer has no witness policy configured")
        if now - row.delivered_at > HORIZON:
            log.warning(
                "no witnessed checkpoint of the peer's log within the horizon: no longer sought",
                extra={"peer": row.peer, "outbox_id": row.outbox_id, "attempts": row.attempts, "last": row.last_error},
            )
            return replace(row, state=PeerBundleState.GAVE_UP)
        try:
            body = peers_pb2.PeerReceiptBody.FromString(peers_pb2.PeerReceipt.FromString(receipt).body)
            old = open_checkpoint(body.checkpoint, peer.log_key, peer.origin)
        except (DecodeError, NoteError) as exc:  # checked when stored; only a changed pin gets here
            return replace(row, state=PeerBundleState.GAVE_UP, last_error=f"the stored receipt: {exc}")
        try:
            return await self._witnessed(row, peer, body, old)
        except _Retry as exc:
            return self._later(row, str(exc))

    def _later(self, row: PeerBundle, error: str) -> PeerBundle:
        """The row asked for again after its backoff."""
        wait = BACKOFF(SimpleNamespace(attempt_number=row.attempts + 1))  # type: ignore[arg-type]
        return replace(
            row,
            attempts=row.attempts + 1,
            next_attempt_at=self.clock.now() + timedelta(seconds=wait),
            last_error=error[:500],
        )

    async def _witnessed(
        self, row: PeerBundle, peer: Peer, body: peers_pb2.PeerReceiptBody, old: Checkpoint
    ) -> PeerBundle:
        stub = self.links.log_stub(row.peer)
        sizes = [0]
        hint = self._candidate.get(row.peer, 0)
        if hint > body.log_index and hint >= old.size:
            sizes.insert(0, hint)
        shortfall = ""
        for size in sizes:
            try:
                served = await stub.GetProofBundle(
                    log_pb2.GetProofBundleRequest(index=body.log_index, tree_size=size), timeout=CALL_DEADLINE
                )
            except grpc.aio.AioRpcError as err:
                if size:  # the checkpoint remembered is not served (any more): ask for the latest
                    self._candidate.pop(row.peer, None)
                    continue
                raise _Retry(f"GetProofBundle: {err.code().name}: {err.details() or ''}") from None
            try:
                fetched = check_fetched(
                    served.bundle, index=body.log_index, leaf=body.leaf, origin=peer.origin, log_key=peer.log_key,
                    witnesses=peer.witnesses, quorum=peer.config.witness_quorum,
                )  # fmt: skip
            except BundleRefused as exc:
                log.warning(
                    "peer bundle refused: not stored",
                    extra={"peer": row.peer, "outbox_id": row.outbox_id, "why": str(exc)[:200]},
                )
                raise _Retry(f"bundle refused: {exc}") from None
            try:
                await self._check_consistent(row.peer, old, fetched.checkpoint)
            except SplitView as exc:
                log.error(
                    "split view: the peer showed a checkpoint inconsistent with its receipt's; both kept",
                    extra={
                        "peer": row.peer, "outbox_id": row.outbox_id,
                        "receipt_size": exc.old.size, "receipt_root": exc.old.root.hex(),
                        "served_size": exc.new.size, "served_root": exc.new.root.hex(),
                    },
                )  # fmt: skip
                # The receipt (with its checkpoint) stays in the outbox row; the other note is kept here.
                return replace(
                    row, state=PeerBundleState.SPLIT_VIEW, attempts=row.attempts + 1, last_error=str(exc)[:500],
                    conflicting_checkpoint=fetched.bundle.checkpoint,
                )  # fmt: skip
            if fetched.witnessing.witnessed:
                log.info(
                    "witnessed bundle of a peer's receipt kept",
                    extra={"peer": row.peer, "outbox_id": row.outbox_id, "tree_size": fetched.checkpoint.size},
                )
                return replace(row, state=PeerBundleState.WITNESSED, bundle=fetched.bundle.text(), last_error="")
            w = fetched.witnessing
            if size == 0:
                self._candidate[row.peer] = fetched.checkpoint.size
            shortfall = (
                f"not witnessed yet: checkpoint of size {fetched.checkpoint.size} cosigned by {len(w.cosigned)} of "
                f"{w.quorum} needed (missing: {', '.join(w.missing)})"
            )
        raise _Retry(shortfall)

    async def _check_consistent(self, province: str, old: Checkpoint, new: Checkpoint) -> None:
        key = (province, old.size, old.root, new.size, new.root)
        if key in self._consistent:
            return
        proof: list[bytes] = []
        if new.size > old.size:
            try:
                answer = await self.links.log_stub(province).GetConsistencyProof(
                    log_pb2.GetConsistencyProofRequest(first_size=old.size, second_size=new.size),
                    timeout=CALL_DEADLINE,
                )
            except grpc.aio.AioRpcError as err:
                raise _Retry(f"GetConsistencyProof: {err.code().name}: {err.details() or ''}") from None
            proof = list(answer.proof)
        check_extends(old, new, proof)
        if len(self._consistent) > 4096:
            self._consistent.clear()
        self._consistent.add(key)
