"""This node's side of the node-to-node protocol: links to the peers, the
PeerService other nodes call, sealed receipts, and the outbox dispatcher.

The dispatcher delivers what the outbox holds, oldest first and one message at
a time per transfer, several transfers in parallel. Each attempt is one call
with a deadline; the schedule (attempts, next attempt, last error) is written
back to the database, so a restarted node resumes where it stopped. Transient
failures are retried with tenacity's exponential backoff with jitter; when a
peer that could not be reached answers again, its other waiting messages are
made due at once rather than each waiting out the backoff it grew meanwhile. A
peer that refuses this node as a caller (its certificate or identity, not the
message: `refuses_caller`) is treated like one that cannot be reached: its
messages wait, retried, and a reload of this node's TLS material makes them due
at once. A permanent refusal of a message is recorded (and, for an offer, ends
the transfer where both schools see it).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import functools
import hashlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Protocol

import grpc
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519
from google.protobuf.message import DecodeError
from tenacity import wait_exponential_jitter

from storage.store import Store
from transfer.domain.errors import PermissionDenied, Unavailable, Violations
from transfer.domain.federation import Federation, OutboxWake, PeerKeys, message_digest, split_sealed
from transfer.domain.leaves import NO_PEER_ENTRY, reason_code
from transfer.domain.model import Actor, InboundMessage, MessageKind, OutboxMessage, PeerBundleState
from transfer.domain.package import PackageError, digest_of
from transfer.domain.ports import Clock, UnitOfWork
from transfer.domain.validation import MAX_MESSAGE
from transfer.domain.validation import opaque_id as check_opaque_id
from transfer.ledger import merkle
from transfer.ledger.note import (
    Checkpoint,
    Ed25519Signer,
    NoteError,
    Verifier,
    open_checkpoint,
    parse_skey,
    parse_vkey,
)
from transfer.ledger.receipt import ProofBundle
from transfer.ledger.witnessed import cosignature_verifier
from transfer.server import convert, faults
from transfer.server.auth import Authenticator
from transfer.server.certs import TlsMaterial
from transfer.server.config import Config, PeerConfig
from transfer.server.errors import reason_in
from transfer.server.servicers import _Base, _guard
from transfer.tracecontext import TRACEPARENT, TraceParent, current_trace_id, new_span_id, new_trace
from transfer.unavailable import UnavailableLog
from transfer.v1 import log_pb2_grpc, peers_pb2, peers_pb2_grpc

log = logging.getLogger("transfer.peers")

RECEIPT_CONTEXT = b"hocba:receipt:v1\n"
ATTEMPT_DEADLINE = 10.0  # seconds per delivery attempt
PER_PEER = 32  # attempts in flight to one peer: a peer that hangs holds these, never another's
BATCH = 64  # due messages looked up at a time
VERIFIED_CHECKPOINTS = 256  # peers' checkpoint notes remembered as verified
# How long a message rests when its attempt crashed and not even the retry could be recorded.
CRASH_REST_SECONDS = 5.0
# Codes after which the same message can never succeed: recorded, not retried (for an offer: the transfer
# ends as refused). Not UNAUTHENTICATED, and not every PERMISSION_DENIED: see `refuses_caller`.
PERMANENT = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)
# The one PERMISSION_DENIED reason PeerService gives about a message: the transfer it names is not
# between the two nodes (Federation.open_offer, receive_cancel, receive_decision). Every other
# PERMISSION_DENIED it gives is about the caller, decided before the message is read, from our
# certificate and the peer's configuration: PEER_IDENTITY (a certificate from our CA that is not our
# node's, or our CA configured as the peer's own), PEERS_ONLY (we are not among its configured peers),
# the certificate-name refusals of transfer/identity.py (NO_ROLE, UNKNOWN_ROLE, BAD_PROVINCE, BAD_SCHOOL,
# WRONG_PROVINCE) and ROLE_NOT_ALLOWED.
MESSAGE_DENIED_REASONS = frozenset({"NOT_YOUR_TRANSFER"})
BACKOFF = wait_exponential_jitter(multiplier=0.2, max=60.0, jitter=0.5)
# Failures that say the peer as a whole could not be reached or could not serve (down, restarting,
# its database unavailable), not that this message failed: the peer's messages back off for its
# sake, so its next successful delivery makes them all due at once. A refusal of one message
# (RESOLUTION_PENDING, a dropped acknowledgement) does not: it would retry that message each time
# another one is delivered.
UNREACHABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED})
PEER_WIDE_REASONS = frozenset({"", "DATABASE_UNAVAILABLE", "DATABASE_BUSY", "SHUTTING_DOWN"})


def refuses_caller(code: grpc.StatusCode, reason: str) -> bool:
    """The peer refused this node as a caller, not the message: a peer-wide condition, retried.

    UNAUTHENTICATED is always about the caller (our certificate revoked, expired or untrusted on the
    peer's side: CERTIFICATE_REVOKED, UNTRUSTED_CLIENT_CERTIFICATE, …), and so is PERMISSION_DENIED
    with any reason but those of MESSAGE_DENIED_REASONS (no reason, or one this node does not know, from
    another implementation, included: a refusal is final only where it is known to be about the
    message). The same message goes through once the operators fix the certificate or the
    configuration, so it waits (nothing lost) rather than ending its transfer."""
    if code is grpc.StatusCode.UNAUTHENTICATED:
        return True
    return code is grpc.StatusCode.PERMISSION_DENIED and reason not in MESSAGE_DENIED_REASONS


def _reason_of(err: grpc.aio.AioRpcError) -> str:
    """The ErrorInfo reason a peer gave with its refusal, if any."""
    return reason_in(err.trailing_metadata())


def receipt_message(body: bytes) -> bytes:
    return RECEIPT_CONTEXT + hashlib.sha256(body).digest()


@dataclass(frozen=True)
class Peer:
    config: PeerConfig
    ca: x509.Certificate
    seal_key: ed25519.Ed25519PublicKey
    log_key: Verifier
    witnesses: tuple[Verifier, ...] = ()  # the peer's witnesses, pinned (peers[].witness_vkey_files)

    @property
    def origin(self) -> str:
        return self.config.log_origin or self.log_key.name

    @property
    def witnessed(self) -> bool:
        """The peer has a witness policy: witnessed bundles of its receipts are sought."""
        return self.config.witness_quorum > 0


def load_peers(config: Config) -> dict[str, Peer]:
    """Each configured peer's CA and seal key, read once at start-up."""
    peers = {}
    for p in config.peers:
        try:
            vkey = parse_vkey(p.seal_vkey_file.read_text(encoding="utf-8").strip())
        except NoteError as exc:
            raise OSError(f"{p.seal_vkey_file}: not a verifier key: {exc}") from None
        try:
            key = ed25519.Ed25519PublicKey.from_public_bytes(getattr(vkey, "public_key", b""))
        except ValueError:
            raise OSError(f"{p.seal_vkey_file}: not an Ed25519 verifier key") from None
        try:
            log_key = parse_vkey(p.log_vkey_file.read_text(encoding="utf-8").strip())
        except NoteError as exc:
            raise OSError(f"{p.log_vkey_file}: not a verifier key: {exc}") from None
        try:
            ca = x509.load_pem_x509_certificate(p.ca_file.read_bytes())
        except ValueError:
            raise OSError(f"{p.ca_file}: no PEM certificate in it") from None
        witnesses = tuple(cosignature_verifier(v) for v in p.witness_vkeys)  # checked by the config
        peers[p.province] = Peer(p, ca, key, log_key, witnesses)
    return peers


def read_key_file(path: Path, what: str) -> str:
    """The text of a key file the configuration names at `what` (e.g. `seal.key_file`); OSError in one line
    naming `what` and the file when it cannot be read, or is not text."""
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise OSError(f"{what} {path}: cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise OSError(f"{what} {path}: not a signed-note key: not UTF-8 text") from None


def load_seal_signer(config: Config) -> Ed25519Signer | None:
    if config.seal_key_file is None:
        return None
    try:
        signer = parse_skey(read_key_file(config.seal_key_file, "seal.key_file"))
        if not isinstance(signer, Ed25519Signer):
            raise NoteError("the seal key must be an Ed25519 key")
    except NoteError as exc:
        raise OSError(f"seal.key_file {config.seal_key_file}: not a signed-note private key: {exc}") from None
    return signer


def load_seal_key(config: Config) -> ed25519.Ed25519PrivateKey | None:
    signer = load_seal_signer(config)
    return None if signer is None else signer._key


def peer_keys(peers: Mapping[str, Peer]) -> dict[str, PeerKeys]:
    return {p: PeerKeys(p, peer.seal_key) for p, peer in peers.items()}


class PeerLinks:
    """gRPC channels to the peers, presenting this node's certificate.

    `renew` (a TLS reload) puts new calls on new channels with the new certificate and trust; each
    old channel is closed once the calls on it end (an attempt's deadline at most)."""

    def __init__(self, peers: Mapping[str, Peer], material: TlsMaterial) -> None:
        self.peers = peers
        self.material = material
        self._stubs: dict[str, peers_pb2_grpc.PeerServiceStub] = {}
        self._log_stubs: dict[str, log_pb2_grpc.LogServiceStub] = {}
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._retiring: set[asyncio.Task[None]] = set()
        self.generation = 0  # renewals so far: an attempt made before the latest one used older credentials

    def log_stub(self, province: str) -> log_pb2_grpc.LogServiceStub:
        """The peer's LogService, on the same channel as its PeerService (renewed with it)."""
        if province not in self._log_stubs:
            self.stub(province)
            self._log_stubs[province] = log_pb2_grpc.LogServiceStub(self._channels[province])
        return self._log_stubs[province]

    def stub(self, province: str) -> peers_pb2_grpc.PeerServiceStub:
        if province not in self._stubs:
            peer = self.peers[province]
            creds = grpc.ssl_channel_credentials(
                root_certificates=self.material.peer_ca[province],
                private_key=self.material.key,
                certificate_chain=self.material.cert,
            )
            options: list[tuple[str, Any]] = (
                [("grpc.ssl_target_name_override", peer.config.server_name)] if peer.config.server_name else []
            )
            # Reconnect soon after a peer comes back: the dispatcher has its own backoff.
            options += [
                ("grpc.max_receive_message_length", MAX_MESSAGE),
                ("grpc.max_send_message_length", MAX_MESSAGE),
                ("grpc.initial_reconnect_backoff_ms", 500),
                ("grpc.min_reconnect_backoff_ms", 500),
                ("grpc.max_reconnect_backoff_ms", 5000),
            ]
            channel = grpc.aio.secure_channel(peer.config.address, creds, options=options)
            self._channels[province] = channel
            self._stubs[province] = peers_pb2_grpc.PeerServiceStub(channel)
        return self._stubs[province]

    def renew(self, material: TlsMaterial) -> None:
        """Use `material` (the node's certificate, key and peers' CAs) for every call from now on."""
        old = list(self._channels.values())
        self.material = material
        self.generation += 1
        self._stubs, self._log_stubs, self._channels = {}, {}, {}
        for channel in old:
            task = asyncio.get_running_loop().create_task(channel.close(grace=ATTEMPT_DEADLINE))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        await asyncio.gather(*self._retiring, return_exceptions=True)


class Sealer:
    """Builds this node's sealed receipts for the messages peers deliver to it."""

    def __init__(self, province: str, key: ed25519.Ed25519PrivateKey | None) -> None:
        self.province = province
        self.key = key

    def receipt(self, transfer_id: str, kind: MessageKind, digest: bytes, index: int, bundle: ProofBundle | None,
                state: int, at: datetime) -> bytes:  # fmt: skip
        """The sealed receipt; `bundle` proves entry `index` (None when the message made no entry)."""
        assert self.key is not None
        body = peers_pb2.PeerReceiptBody(
            transfer_id=transfer_id,
            kind=int(kind),  # type: ignore[arg-type]
            message_sha256=digest,
            receiver_province=self.province,
            log_index=max(index, 0),
            logged=index >= 0,
            checkpoint=bundle.checkpoint if bundle else "",
            state=state,  # type: ignore[arg-type]
            receive_time=convert.timestamp(at),
            leaf=bundle.leaf if bundle else b"",
            inclusion_proof=bundle.proof if bundle else (),
        ).SerializeToString(deterministic=True)
        return peers_pb2.PeerReceipt(body=body, seal=self.key.sign(receipt_message(body))).SerializeToString()


class PeerServicer(_Base, peers_pb2_grpc.PeerServiceServicer):
    """What other nodes call. Thin: verification and rules live in the domain."""

    peers_allowed = True

    def __init__(self, store: Store, auth: Authenticator, clock: Clock, federation: Federation, sealer: Sealer,
                 bundle: Any) -> None:  # fmt: skip
        super().__init__(store, auth, clock)
        self.federation = federation
        self.sealer = sealer
        self.bundle = bundle  # async (index) -> the entry proved in the first signed checkpoint covering it

    async def _answer(self, kind: MessageKind, digest: bytes, write: Any) -> bytes:
        """Process the message (a repeat changes nothing) and seal its receipt.

        The receipt is built from what was stored with the message, its entry
        and the inclusion proof in the first checkpoint covering it (a proof
        bundle the sender keeps), and Ed25519 signatures are deterministic: a
        repeat, even after a restart, gets the same bytes."""
        message: InboundMessage = await self.store.write(write)
        bundle = None if message.log_index < 0 else await self.bundle(message.log_index)
        receipt = self.sealer.receipt(
            message.transfer_id, kind, digest, message.log_index, bundle, int(message.state), message.received_at
        )
        faults.maybe_drop_ack()
        return receipt

    @_guard
    async def OfferTransfer(self, request: peers_pb2.OfferTransferRequest, actor: Actor) -> Any:
        faults.maybe_refuse_offer()
        package_bytes, seal = request.package, request.seal
        digest = digest_of(package_bytes)
        try:
            package = self.federation.open_offer(actor, package_bytes, seal)
            # A repeat of an offer already stored (its receipt was lost) is answered
            # from what was stored, before the checks that depend on today's
            # configuration (the signing CAs): a CA dropped since must not turn an
            # offer this node holds into a refusal the sender takes as final.
            stored = await self.store.read(
                lambda uow: self.federation.stored_inbound(uow, actor, package.transfer_id, MessageKind.OFFER, digest)
            )
            if stored is None:
                self.federation.check_signatures(package)
        except PackageError as exc:
            log.warning("package refused", extra={"peer": actor.province, "reason": exc.reason})
            reason = exc.reason
            await self.store.write(lambda uow: self.federation.refused_offer(uow, actor, package_bytes, reason))
            raise

        receipt = await self._answer(
            MessageKind.OFFER, digest,
            lambda uow: self.federation.receive_offer(uow, actor, package, package_bytes, seal),
        )  # fmt: skip
        return peers_pb2.OfferTransferResponse(receipt=peers_pb2.PeerReceipt.FromString(receipt))

    @_guard
    async def RequestCancellation(self, request: peers_pb2.RequestCancellationRequest, actor: Actor) -> Any:
        receipt = await self._answer(
            MessageKind.CANCEL_REQUEST, hashlib.sha256(request.request).digest(),
            lambda uow: self.federation.receive_cancel(uow, actor, request.transfer_id, request.request),
        )  # fmt: skip
        return peers_pb2.RequestCancellationResponse(receipt=peers_pb2.PeerReceipt.FromString(receipt))

    @_guard
    async def ResolveTransfer(self, request: peers_pb2.ResolveTransferRequest, actor: Actor) -> Any:
        receipt = await self._answer(
            MessageKind.RESOLVE, hashlib.sha256(request.decision).digest(),
            lambda uow: self.federation.receive_decision(uow, actor, request.transfer_id, request.decision),
        )  # fmt: skip
        return peers_pb2.ResolveTransferResponse(receipt=peers_pb2.PeerReceipt.FromString(receipt))


class DeliveryServicer(_Base, peers_pb2_grpc.DeliveryServiceServicer):
    @_guard
    async def ListDeliveries(self, request: peers_pb2.ListDeliveriesRequest, actor: Actor) -> Any:
        if not actor.is_province_admin:
            raise PermissionDenied("PROVINCE_ADMIN_ONLY", "only a province admin sees the node's deliveries")
        stats = await self.store.read(lambda uow: uow.outbox.stats())
        now = self.clock.now()
        return peers_pb2.ListDeliveriesResponse(
            peers=[
                peers_pb2.PeerDeliveries(
                    peer_province=s.peer,
                    pending=s.pending,
                    failed=s.failed,
                    delivered=s.delivered,
                    oldest_pending_seconds=int((now - s.oldest_pending_at).total_seconds())
                    if s.oldest_pending_at
                    else 0,
                    max_attempts=s.max_attempts,
                    last_error=s.last_error,
                )
                for s in stats
            ]
        )

    @_guard
    async def ListPeerReceipts(self, request: peers_pb2.ListPeerReceiptsRequest, actor: Actor) -> Any:
        if not actor.is_province_admin:
            raise PermissionDenied("PROVINCE_ADMIN_ONLY", "only a province admin sees the node's deliveries")
        v = Violations()
        check_opaque_id(v, request.transfer_id, "transfer_id")
        v.raise_if_any()
        messages, bundles = await self.store.read(
            lambda uow: (
                uow.outbox.delivered_of(request.transfer_id),
                uow.peer_bundles.of_transfer(request.transfer_id),
            )
        )
        out = []
        for m in messages:
            if m.receipt is None:
                continue
            held = bundles.get(m.id)
            witnessed = held is not None and held.state is PeerBundleState.WITNESSED
            out.append(
                peers_pb2.DeliveredReceipt(
                    kind=int(m.kind),  # type: ignore[arg-type]
                    peer_province=m.peer,
                    receipt=peers_pb2.PeerReceipt.FromString(m.receipt),
                    # The witnessed bundle once held; until then the one the sealed receipt makes.
                    bundle=held.bundle if held is not None and witnessed else peer_bundle(m.receipt),
                    deliver_time=convert.timestamp(m.delivered_at) if m.delivered_at else None,
                    bundle_state=int(held.state) if held is not None else 0,  # type: ignore[arg-type]
                    bundle_error=held.last_error if held is not None else "",
                    conflicting_checkpoint=held.conflicting_checkpoint if held is not None else "",
                )
            )
        return peers_pb2.ListPeerReceiptsResponse(receipts=out)


def peer_bundle(receipt: bytes) -> str:
    """The proof bundle (docs/log.md) a peer's sealed receipt makes: its entry, inclusion proof and
    checkpoint, checked by `Dispatcher._check_receipt` before the receipt was stored; "" when the
    receipt names no entry or the peer sent no entry and proof (another implementation)."""
    body = peers_pb2.PeerReceiptBody.FromString(peers_pb2.PeerReceipt.FromString(receipt).body)
    if not (body.logged and body.leaf):
        return ""
    origin = body.checkpoint.split("\n", 1)[0]
    return ProofBundle(origin, body.log_index, body.leaf, tuple(body.inclusion_proof), body.checkpoint).text()


def _due(uow: UnitOfWork, now: datetime, skip: set[str]) -> list[OutboxMessage]:
    return uow.outbox.due(now, BATCH, skip)


def _next_attempt(uow: UnitOfWork, skip: set[str]) -> datetime | None:
    return uow.outbox.next_attempt(skip)


# The outcomes of a delivery attempt told to a DeliveryObserver.
OUTCOMES = ("delivered", "retry", "auth_refused", "refused", "crashed")


class DeliveryObserver(Protocol):
    """Hears of each delivery attempt's end (the node's metrics): on the event loop, quick, never raising."""

    def attempt_ended(self, peer: str, outcome: str, message: OutboxMessage, at: datetime) -> None:
        """`outcome`: delivered, retry (a transient failure, tried again later), auth_refused (the peer refused
        this node's certificate or identity: tried again later, `refuses_caller`), refused (for good) or
        crashed."""


class Dispatcher:
    """Delivers the outbox to the peers until stopped."""

    def __init__(
        self, store: Store, federation: Federation, links: PeerLinks, peers: Mapping[str, Peer], clock: Clock
    ) -> None:
        self.store = store
        self.federation = federation
        self.links = links
        self.peers = peers
        self.clock = clock
        self.observer: DeliveryObserver | None = None
        self.wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Set when a delivery leaves a witnessed bundle to be sought (the BundleRefresher's wake).
        self.bundles_due: asyncio.Event | None = None
        self._in_flight: set[int] = set()
        self._busy: collections.Counter[str] = collections.Counter()  # attempts in flight, by peer
        # Due messages of a peer that had no slot free when they were looked up, oldest
        # first: each attempt that ends starts the next of its peer, without a lookup.
        self._backlog: dict[str, dict[int, OutboxMessage]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        # Messages whose attempt crashed and whose retry could not be recorded
        # either: left alone until this (monotonic) time, not retried in a loop.
        self._resting: dict[int, float] = {}
        # Attempts ended, numbered: a lookup that began before an attempt's outcome was recorded may
        # read the message as it was before (due), and must not start it again.
        self._ended = 0
        self._ended_at: dict[int, int] = {}
        self._verified_checkpoints: collections.OrderedDict[tuple[str, str], Checkpoint] = collections.OrderedDict()
        # Peers whose messages may be backed off for the peer's sake (it could not be reached): all
        # of them at start, since the schedule in the database may come from before a restart.
        self._unreachable: set[str] = set(peers)
        # Peers refusing this node as a caller (`refuses_caller`), with the reason they gave: said at ERROR
        # once per streak, which ends with a delivery to the peer or a reload of this node's TLS material.
        self._refusing: dict[str, str] = {}
        self._unavailable = UnavailableLog(log, "dispatcher loop failed: database unavailable; retrying")
        self._outcome_unavailable = UnavailableLog(
            log, "delivery outcome not recorded: database unavailable; the message is retried later"
        )

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="dispatcher")

    async def stop(self) -> None:
        self._stopping = True  # attempts cancelled now start no others
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def notify(self, items: list[object]) -> None:
        if any(isinstance(i, OutboxWake) for i in items):
            self.wake.set()

    def _saturated(self) -> set[str]:
        return {peer for peer, n in self._busy.items() if n >= PER_PEER}

    async def _run(self) -> None:
        while True:
            try:
                # Cleared before looking, so a message queued (or a full peer's
                # slot freed) while we look wakes the next wait.
                self.wake.clear()
                looked = self._ended
                due = await self.store.read(functools.partial(_due, now=self.clock.now(), skip=self._saturated()))
                # Attempts that ended while we looked: what we read of them may be older than their outcome.
                stale = {m for m, at in self._ended_at.items() if at >= looked}
                self._ended_at = {m: self._ended_at[m] for m in stale}
                started = 0
                waiting: dict[str, dict[int, OutboxMessage]] = {}
                for message in due:
                    if (
                        message.id in self._in_flight
                        or message.id in stale
                        or self._resting.get(message.id, 0.0) > time.monotonic()
                    ):
                        continue
                    if self._busy[message.peer] >= PER_PEER:
                        waiting.setdefault(message.peer, {})[message.id] = message
                        continue
                    started += 1
                    self._launch(message)
                for peer in {m.peer for m in due}:  # what this lookup saw replaces what an older one did
                    self._backlog.pop(peer, None)
                self._backlog.update(waiting)
                if due:
                    await asyncio.sleep(0)  # let deliveries start before looking again
                    if not started or len(self._in_flight) >= len(due):
                        await self._sleep(0.05)
                    continue
                full = self._saturated()
                nxt = await self.store.read(functools.partial(_next_attempt, skip=full))
                delay = 5.0 if nxt is None else max(0.0, min(5.0, (nxt - self.clock.now()).total_seconds()))
                if full:  # a busy peer's own attempts start its next messages: look again at most 20 times a second
                    await asyncio.sleep(0.05)
                await self._sleep(max(0.0, delay - 0.05) if full else delay)
            except asyncio.CancelledError:
                for t in list(self._tasks):
                    t.cancel()
                raise
            except Unavailable as exc:  # the outbox cannot be read now: no traceback per second
                self._unavailable.failed(exc)
                await asyncio.sleep(1.0)
            except Exception:
                log.exception("dispatcher loop failed; retrying")
                await asyncio.sleep(1.0)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), timeout=seconds)

    def _launch(self, message: OutboxMessage) -> asyncio.Task[None]:
        """Start an attempt to deliver `message`, counted against its peer's share."""
        self._resting.pop(message.id, None)
        self._in_flight.add(message.id)
        self._busy[message.peer] += 1
        # A context of its own: the trace id its attempt sets is not the next one's (launched from here too).
        task = asyncio.create_task(self._deliver(message), context=contextvars.Context())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _next_waiting(self, peer: str) -> OutboxMessage | None:
        """The oldest backlogged message of `peer` that may start now."""
        waiting = self._backlog.get(peer)
        while waiting:
            message = waiting.pop(next(iter(waiting)))
            if message.id not in self._in_flight and self._resting.get(message.id, 0.0) <= time.monotonic():
                return message
        self._backlog.pop(peer, None)
        return None

    async def _deliver(self, message: OutboxMessage) -> None:
        try:
            await self._attempt(message)
        except Exception as exc:
            # The database failing (down, full, locked) while an outcome is recorded is said in
            # one line now and then, not with two tracebacks per message and attempt.
            if isinstance(exc, Unavailable):
                self._outcome_unavailable.failed(exc, message_id=message.id)
            else:
                log.exception("delivery attempt crashed", extra={"message_id": message.id})
            self._observe(message, "crashed")
            try:  # back off as after any transient failure, so the message is not retried at once
                await self._failed_attempt(
                    message, grpc.StatusCode.UNKNOWN, f"attempt crashed: {type(exc).__name__}", observed=True
                )
            except Exception as again:
                if isinstance(again, Unavailable):
                    self._outcome_unavailable.failed(again, message_id=message.id)
                else:
                    log.exception("cannot record the crashed attempt", extra={"message_id": message.id})
                self._resting[message.id] = time.monotonic() + CRASH_REST_SECONDS
        finally:
            self._in_flight.discard(message.id)
            self._ended_at[message.id] = self._ended
            self._ended += 1
            was_full = self._busy[message.peer] >= PER_PEER
            self._busy[message.peer] -= 1
            if not self._busy[message.peer]:
                del self._busy[message.peer]
            following = None if self._stopping else self._next_waiting(message.peer)
            if following is not None:
                self._launch(following)
            elif was_full:
                self.wake.set()  # the peer's messages may be looked up again

    async def tls_renewed(self) -> None:
        """This node's TLS material was reloaded (PeerLinks.renew): the messages of the peers that refused
        it or could not be reached (a handshake failing on an expired certificate looks like that) are
        due now, not after the backoff they grew."""
        peers = sorted(set(self._refusing) | self._unreachable)
        self._refusing.clear()  # a refusal of the new certificate is said again
        if not peers:
            return
        try:
            await self.store.write(functools.partial(self.federation.due_now, peers=peers))
        except Exception as exc:  # the reload stands; the messages go when their backoff ends
            if isinstance(exc, Unavailable):
                self._unavailable.failed(exc)
            else:
                log.exception("cannot make the waiting messages due after the TLS reload")
            return
        log.info(
            "waiting messages are due now: this node's TLS material was reloaded", extra={"peers": ",".join(peers)}
        )
        self.wake.set()

    async def _attempt(self, message: OutboxMessage) -> None:
        stub = self.links.stub(message.peer)
        generation = self.links.generation  # of the credentials this stub's channel presents
        # Each attempt, however late, continues the trace of the call that wrote the message (a message
        # stored before traces were kept gets a new one), as a span of its own.
        trace = TraceParent(message.trace_id, new_span_id()) if message.trace_id else new_trace()
        current_trace_id.set(trace.trace_id)  # this task's own context: the attempt's log lines carry it
        metadata = ((TRACEPARENT, trace.header()),)
        try:
            if message.kind is MessageKind.OFFER:
                package, seal = split_sealed(message.payload)
                package = faults.maybe_tamper(package)
                response: Any = await stub.OfferTransfer(
                    peers_pb2.OfferTransferRequest(package=package, seal=seal),
                    timeout=ATTEMPT_DEADLINE,
                    metadata=metadata,
                )
            elif message.kind is MessageKind.CANCEL_REQUEST:
                response = await stub.RequestCancellation(
                    peers_pb2.RequestCancellationRequest(transfer_id=message.transfer_id, request=message.payload),
                    timeout=ATTEMPT_DEADLINE,
                    metadata=metadata,
                )
            else:
                response = await stub.ResolveTransfer(
                    peers_pb2.ResolveTransferRequest(transfer_id=message.transfer_id, decision=message.payload),
                    timeout=ATTEMPT_DEADLINE,
                    metadata=metadata,
                )
        except grpc.aio.AioRpcError as err:
            reason = _reason_of(err)
            caller = refuses_caller(err.code(), reason)
            await self._failed_attempt(
                message,
                err.code(),
                f"{reason}: {err.details() or ''}" if reason else err.details() or "",
                peer_down=caller or (err.code() in UNREACHABLE and reason in PEER_WIDE_REASONS),
                reason=reason,
                caller_refused=caller,
                # Refused with credentials a reload has replaced since: the next attempt goes at once.
                at_once=caller and generation != self.links.generation,
            )
            return
        try:
            body = self._check_receipt(message, response.receipt)
        except ValueError as exc:  # a receipt we cannot trust: the peer must answer again
            await self._failed_attempt(message, grpc.StatusCode.UNKNOWN, f"bad receipt: {exc}")
            return
        receipt = response.receipt.SerializeToString()
        # The peer answers again: the first delivery since it could not be reached brings its
        # other waiting messages forward (in the same transaction), and they go at once, as many
        # at a time as PER_PEER allows, instead of each waiting out the backoff it grew meanwhile.
        peer_back = message.peer in self._unreachable
        self._unreachable.discard(message.peer)
        if self._refusing.pop(message.peer, None) is not None:
            log.info("peer takes this node's certificate again", extra={"peer": message.peer})
        witness_bundle = body.logged and self.peers[message.peer].witnessed
        try:
            await self.store.write(
                functools.partial(
                    self.federation.delivered,
                    message=message,
                    receipt=receipt,
                    peer_log_index=body.log_index if body.logged else NO_PEER_ENTRY,
                    peer_back=peer_back,
                    witness_bundle=witness_bundle,
                )
            )
        except BaseException:
            if peer_back:  # not recorded: the next delivery to the peer brings them forward
                self._unreachable.add(message.peer)
            raise
        self._observe(message, "delivered")
        if witness_bundle and self.bundles_due is not None:
            self.bundles_due.set()
        if peer_back:
            log.info("peer answers again: its waiting messages are due now", extra={"peer": message.peer})
            self.wake.set()
        log.info(
            "delivered", extra={"peer": message.peer, "kind": message.kind.name, "transfer_id": message.transfer_id}
        )

    def _check_receipt(self, message: OutboxMessage, receipt: peers_pb2.PeerReceipt) -> peers_pb2.PeerReceiptBody:
        try:
            self.peers[message.peer].seal_key.verify(receipt.seal, receipt_message(receipt.body))
        except InvalidSignature:
            raise ValueError("the seal does not verify with the peer's key") from None
        try:
            body = peers_pb2.PeerReceiptBody.FromString(receipt.body)
        except DecodeError:
            raise ValueError("unreadable body") from None
        if (
            body.transfer_id != message.transfer_id
            or body.kind != int(message.kind)
            or body.receiver_province != message.peer
            or body.message_sha256 != message_digest(message)
        ):
            raise ValueError("it acknowledges another message")
        if (body.leaf or body.inclusion_proof) and not body.logged:
            raise ValueError("it carries an entry or a proof but names no entry")
        if body.logged or body.checkpoint:
            # The receipt's checkpoint must be the peer's log, signed, and hold the entry it names.
            checkpoint = self._checkpoint(message.peer, body.checkpoint)
            if body.logged and body.log_index >= checkpoint.size:
                raise ValueError(f"its checkpoint (size {checkpoint.size}) does not cover entry {body.log_index}")
            # A peer that sends its entry and inclusion proof (this project's nodes do; other
            # implementations may not, docs/federation.md) makes the receipt a proof bundle: it
            # must prove the entry, or the receipt is not taken.
            if body.leaf:
                try:
                    merkle.verify_inclusion(
                        merkle.leaf_hash(body.leaf), body.log_index, checkpoint.size,
                        list(body.inclusion_proof), checkpoint.root,
                    )  # fmt: skip
                except merkle.MerkleError as exc:
                    raise ValueError(f"its entry {body.log_index} is not in its checkpoint's tree: {exc}") from None
            elif body.inclusion_proof:
                raise ValueError("it carries an inclusion proof without the entry")
        return body

    def _checkpoint(self, peer: str, note_text: str) -> Checkpoint:
        """A peer's checkpoint note, once its signature verified.

        Receipts in a burst carry the same few checkpoints: each distinct note
        is verified once (a bounded memory of verified notes)."""
        key = (peer, note_text)
        found = self._verified_checkpoints.get(key)
        if found is not None:
            self._verified_checkpoints.move_to_end(key)
            return found
        try:
            found = open_checkpoint(note_text, self.peers[peer].log_key)
        except NoteError as exc:
            raise ValueError(f"its checkpoint does not verify with the peer's log key: {exc}") from None
        self._verified_checkpoints[key] = found
        if len(self._verified_checkpoints) > VERIFIED_CHECKPOINTS:
            self._verified_checkpoints.popitem(last=False)
        return found

    def _observe(self, message: OutboxMessage, outcome: str) -> None:
        if self.observer is not None:
            self.observer.attempt_ended(message.peer, outcome, message, self.clock.now())

    async def _failed_attempt(
        self,
        message: OutboxMessage,
        code: grpc.StatusCode,
        details: str,
        *,
        peer_down: bool = False,
        observed: bool = False,
        reason: str = "",
        caller_refused: bool = False,
        at_once: bool = False,
    ) -> None:
        """Record a failed attempt; `peer_down`: it failed because the peer could not be reached or
        refused this node as a caller; `observed`: the observer has heard of it already (a crashed
        attempt); `reason`: the ErrorInfo reason the peer gave (unchecked: the domain keeps it only if
        well-formed); `caller_refused`: the peer refused this node's certificate or identity
        (`refuses_caller`): retried, never final; `at_once`: retry without backing off."""
        final = code in PERMANENT and not caller_refused
        if not observed:
            self._observe(message, "auth_refused" if caller_refused else "refused" if final else "retry")
        if peer_down:
            self._unreachable.add(message.peer)
        error = f"{code.name}: {details}"[:500]
        if caller_refused and message.peer not in self._refusing:
            self._refusing[message.peer] = reason
            # The reason code only (a stable UPPER_SNAKE word, or none): the peer's words are not logged.
            log.error(
                "peer refuses this node's certificate: its messages wait and are retried; renew or fix the "
                "certificate (or the peer's configuration of this node), then reload (SIGHUP)",
                extra={"peer": message.peer, "code": code.name, "reason": reason_code(reason) or "UNSPECIFIED"},
            )
        if final:
            log.warning(
                "delivery refused for good", extra={"peer": message.peer, "kind": message.kind.name, "code": code.name}
            )
            await self.store.write(
                functools.partial(
                    self.federation.failed, message=message, error=error, code=reason_code(reason) or code.name
                )
            )
            return
        wait = 0.0 if at_once else BACKOFF(SimpleNamespace(attempt_number=message.attempts + 1))  # type: ignore[arg-type]
        next_at = self.clock.now() + timedelta(seconds=wait)
        log.info("delivery will be retried", extra={"peer": message.peer, "code": code.name, "in_s": round(wait, 2)})
        await self.store.write(functools.partial(self.federation.retry, message=message, error=error, next_at=next_at))


__all__ = [
    "OUTCOMES",
    "DeliveryObserver",
    "DeliveryServicer",
    "Dispatcher",
    "PeerLinks",
    "PeerServicer",
    "Sealer",
    "load_peers",
    "load_seal_key",
    "peer_keys",
    "read_key_file",
]
