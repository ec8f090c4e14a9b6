"""Transfers between provinces: the node-to-node protocol (DESIGN §6).

The sending node writes the transfer, its log entries and an outbox message
(the sealed package) in one transaction; its dispatcher delivers the message
with retries. The receiving node verifies the package, records the transfer
as REQUESTED and acknowledges with a sealed receipt. The receiving school
decides on its own node; the decision travels back the same way. On
acceptance the receiving node becomes the record's home; the sending node
marks its copy transferred out (read-only) when the decision reaches it.

A cancellation from the sender is a request: the receiving node decides it
atomically against a concurrent acceptance, and whatever it decided comes back
as the decision. Every message is idempotent by (transfer, kind): a repeat
returns the stored receipt.

Exactly one school may change the record at every moment: the sender's copy is
frozen from the offer until the decision arrives, and the receiver's copy only
exists once accepted.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime

from cryptography.hazmat.primitives.asymmetric import ed25519

from transfer.domain import package as pkg
from transfer.domain.errors import (
    FailedPrecondition,
    FieldViolation,
    PermissionDenied,
    PreconditionViolation,
    Unavailable,
)
from transfer.domain.leaves import (
    NO_ID,
    NO_PEER_ENTRY,
    LeafKind,
    LogLeaf,
    MoveLeaf,
    PeerLeaf,
    append_entry,
    reason_code,
    text_digest,
    transfer_leaf,
)
from transfer.domain.model import (
    Actor,
    DeliveryState,
    InboundMessage,
    Logged,
    LogReceipt,
    MessageKind,
    OutboxMessage,
    OutboxState,
    Page,
    PeerBundle,
    PeerBundleState,
    Record,
    Requirement,
    SigningTask,
    TeacherStatus,
    Transfer,
    TransferEvent,
    TransferScope,
    TransferState,
)
from transfer.domain.pages import PagePolicy, active_holder
from transfer.domain.ports import Clock, IdSource, RandomIds, UnitOfWork
from transfer.domain.signatures import CertificateInfo, SigningTrust
from transfer.domain.validation import MAX_PACKAGE
from transfer.domain.workdays import deadline_after
from transfer.tracecontext import current_trace_id

_CLAIMED_ID = re.compile(rb'"transfer":\{[^{}]*?"id":"([0-9a-f]{32})"')


@dataclass(frozen=True, slots=True)
class PeerKeys:
    """What this node knows of a peer node: its province and its seal key."""

    province: str
    seal_key: ed25519.Ed25519PublicKey


# The RESOLVE message's document; its schema lives with the package's.
Decision = pkg.Decision


def split_sealed(payload: bytes) -> tuple[bytes, bytes]:
    """An OFFER payload is the 64-byte seal followed by the package bytes."""
    return payload[64:], payload[:64]


def message_digest(message: OutboxMessage) -> bytes:
    """What the peer's receipt and our log name a message by: the package's
    SHA-256 for an offer, else the payload's."""
    if message.kind is MessageKind.OFFER:
        return pkg.digest_of(split_sealed(message.payload)[0])
    return _digest(message.payload)


def _digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


class Federation:
    def __init__(
        self,
        province: str,
        peers: Mapping[str, PeerKeys],
        seal_key: ed25519.Ed25519PrivateKey | None,
        trust: SigningTrust,
        page_policy: PagePolicy,
        deadline_days: int,
        clock: Clock,
        holidays: Container[date] = (),
        ids: IdSource | None = None,
    ) -> None:
        self.ids = ids if ids is not None else RandomIds()
        self.province = province
        self.peers = dict(peers)
        self.seal_key = seal_key
        self.trust = trust
        self.page_policy = page_policy
        self.deadline_days = deadline_days
        self.clock = clock
        self.holidays = holidays

    def _deadline(self, now: datetime) -> datetime:
        """The end of the decision period: working days (holidays skipped) in this node's time zone."""
        return deadline_after(now, self.deadline_days, utc_offset=self.page_policy.utc_offset, holidays=self.holidays)

    def has_peer(self, province: str) -> bool:
        return province in self.peers and self.seal_key is not None

    def _peer_of(self, actor: Actor) -> str:
        if actor.role.value != "peer" or actor.province not in self.peers:
            raise PermissionDenied("PEERS_ONLY", "only a configured peer node may send this")
        return actor.province

    # -- helpers ---------------------------------------------------------------

    @staticmethod
    def _log(uow: UnitOfWork, leaf: LogLeaf) -> LogReceipt:
        return append_entry(uow.log, leaf)

    def _emit(self, uow: UnitOfWork, transfer: Transfer, actor: str, logged_at: datetime | None = None) -> LogReceipt:
        """`logged_at`: the entry's time when the change's own time is not this node's (a peer's
        decision keeps the peer's time as the transfer's decide_time, never as an entry time)."""
        at = transfer.decided_at or transfer.created_at
        seq = uow.events.append(TransferEvent(0, transfer, at))
        uow.publish(TransferEvent(seq, transfer, at))
        return self._log(uow, transfer_leaf(transfer, actor, logged_at or at))

    def _enqueue(self, uow: UnitOfWork, transfer: Transfer, peer: str, kind: MessageKind, payload: bytes) -> None:
        now = self.clock.now()
        trace_id = current_trace_id.get()  # the call's, so the deliveries can be followed to the peer's log
        uow.outbox.add(
            OutboxMessage(0, transfer.id, peer, kind, payload, OutboxState.PENDING, 0, now, "", now, trace_id=trace_id)
        )
        uow.publish(OutboxWake())

    def _certificate(self, uow: UnitOfWork, task: SigningTask) -> CertificateInfo:
        assert task.signed_by and task.certificate_sha256
        for cert in uow.teachers.certificates(task.signed_by):
            if cert.sha256 == task.certificate_sha256:
                return cert
        found = uow.inbound.certificate(task.certificate_sha256)
        if found is None:
            raise RuntimeError(f"certificate {task.certificate_sha256} of a stored signature is missing")
        return found

    # -- sender ----------------------------------------------------------------

    def offer(
        self,
        uow: UnitOfWork,
        actor: Actor,
        record: Record,
        to_school: str,
        to_province: str,
        transfer_id: str,
        salt: bytes,
    ) -> Logged[Transfer]:
        """Open an inter-province transfer: freeze the record, seal its package, queue the offer."""
        assert self.seal_key is not None
        now = self.clock.now()
        transfer = Transfer(
            id=transfer_id, lookup_code=record.lookup_code, from_school=record.custodian_school,
            from_province=self.province, to_school=to_school, to_province=to_province,
            scope=TransferScope.INTER_PROVINCE, state=TransferState.REQUESTED, reason="", created_at=now,
            deadline=self._deadline(now),
            decided_at=None, initiated_by=actor.principal, decided_by=None, salt=salt,
            delivery=DeliveryState.PENDING,
        )  # fmt: skip
        pages = []
        after = None
        while True:
            batch = uow.pages.of_record(record.lookup_code, None, after, 200)
            for page in batch:
                tasks = uow.tasks.of_page(page.id)
                certs = {
                    t.certificate_sha256: self._certificate(uow, t)
                    for t in tasks
                    if not t.pending and t.certificate_sha256
                }
                pages.append(
                    pkg.build_page(
                        page, page.issuing_province or self.province, uow.pages.payload(page.id), tasks, certs
                    )
                )
            if len(batch) < 200:
                break
            after = batch[-1].id
        package = pkg.Package(
            transfer.id, self.province, record.custodian_school, to_province, to_school, now, record, tuple(pages), salt
        ).encode()
        if len(package) > MAX_PACKAGE or len(pages) > pkg.MAX_PAGES:
            raise FailedPrecondition(
                "PACKAGE_TOO_LARGE",
                f"the record's {len(pages)} pages make a {len(package)}-byte package; at most {MAX_PACKAGE} "
                f"bytes and {pkg.MAX_PAGES} pages can travel",
                precondition_violations=(
                    PreconditionViolation("PACKAGE_SIZE", f"records/{record.lookup_code}", f"{len(package)} bytes"),
                ),
            )
        seal = self.seal_key.sign(pkg.seal_message(package))
        uow.transfers.add(transfer)
        # The package hands the record's page salts to the receiving node, which keeps them even if the
        # record never comes: the pages added here after this offer (should it fail) take a new one.
        salts = (*record.page_salts, bytes.fromhex(self.ids.new_id()))
        uow.records.update(replace(record, open_transfer_id=transfer.id, updated_at=now, page_salts=salts))
        receipt = self._emit(uow, transfer, actor.principal)
        self._log(
            uow,
            PeerLeaf(LeafKind.TRANSFER_OFFERED, now, transfer.id, to_province, pkg.digest_of(package), actor.principal),
        )
        self._enqueue(uow, transfer, to_province, MessageKind.OFFER, seal + package)
        return Logged(transfer, receipt)

    def request_cancel(self, uow: UnitOfWork, actor: Actor, transfer: Transfer, reason: str) -> Logged[Transfer]:
        """The sender asks the receiving node to cancel; its decision comes back as RESOLVE."""
        if transfer.cancel_requested:
            raise FailedPrecondition(
                "CANCEL_ALREADY_REQUESTED",
                "a cancellation was already requested; the receiving node's decision will follow",
                precondition_violations=(
                    PreconditionViolation("TRANSFER_STATE", f"transfers/{transfer.id}", "cancel requested"),
                ),
            )
        updated = replace(transfer, cancel_requested=True, reason=reason)
        uow.transfers.update(updated)
        self._enqueue(uow, updated, transfer.to_province, MessageKind.CANCEL_REQUEST, pkg.encode_cancel_request(reason))
        # The request is not a decision: no log entry until the decision comes back.
        return Logged(updated, LogReceipt(-1, b""))

    @staticmethod
    def _still_pending(uow: UnitOfWork, message: OutboxMessage) -> OutboxMessage | None:
        """The message as stored now, if it still waits for delivery.

        The dispatcher works from a read taken before it sent: by the time an
        outcome is recorded, an attempt that overlapped this one (a read that
        began before the other's commit) may already have recorded its own.
        Each outcome is recorded once, against the stored row."""
        current = uow.outbox.get(message.id)
        return current if current is not None and current.state is OutboxState.PENDING else None

    def delivered(
        self,
        uow: UnitOfWork,
        message: OutboxMessage,
        receipt: bytes,
        peer_log_index: int,
        *,
        peer_back: bool = False,
        witness_bundle: bool = False,
    ) -> None:
        """Record the peer's receipt. `peer_back`: the peer could not be reached before this delivery, so
        its other waiting messages backed off for its sake, not their own: they are due now.
        `witness_bundle`: the receipt names the peer's entry and the peer has a witness policy, so a
        witnessed bundle of that entry is to be fetched later (its schedule starts now)."""
        if peer_back:
            uow.outbox.bring_forward(message.peer, self.clock.now())
        pending = self._still_pending(uow, message)
        if pending is None:
            return  # already recorded (the peer answered both attempts with the same receipt)
        message = pending
        now = self.clock.now()
        uow.outbox.update(
            replace(message, state=OutboxState.DELIVERED, delivered_at=now, receipt=receipt, last_error="")
        )
        if witness_bundle and peer_log_index != NO_PEER_ENTRY:
            uow.peer_bundles.add(PeerBundle(message.id, message.peer, PeerBundleState.WAITING, 0, now, now))
        transfer = uow.transfers.get(message.transfer_id)
        if message.kind is MessageKind.OFFER and transfer is not None and transfer.delivery is DeliveryState.PENDING:
            uow.transfers.update(replace(transfer, delivery=DeliveryState.DELIVERED, delivery_error=""))
        self._log(
            uow,
            PeerLeaf(
                LeafKind.MESSAGE_ACKNOWLEDGED,
                now,
                message.transfer_id,
                message.peer,
                message_digest(message),
                "",
                int(message.kind),
                peer_log_index,
            ),
        )

    def due_now(self, uow: UnitOfWork, peers: Sequence[str]) -> None:
        """The pending messages to `peers` are due now: what held them back (this node's credentials, the
        peer unreachable) may have been put right, so they do not wait out the backoff they grew."""
        now = self.clock.now()
        for peer in peers:
            uow.outbox.bring_forward(peer, now)

    def retry(self, uow: UnitOfWork, message: OutboxMessage, error: str, next_at: datetime) -> None:
        pending = self._still_pending(uow, message)
        if pending is None:
            return  # another attempt has delivered it (or it failed for good) meanwhile
        message = pending
        uow.outbox.update(replace(message, attempts=message.attempts + 1, next_attempt_at=next_at, last_error=error))

    def failed(self, uow: UnitOfWork, message: OutboxMessage, error: str, code: str = "") -> None:
        """A peer refused a message for good: record it where both schools can see it.

        `error` is the refusal as text (the peer's words among them); `code` its reason code (the
        ErrorInfo reason the peer gave, or the gRPC status's name): only a well-formed code enters
        the log, the text only as a salted digest."""
        pending = self._still_pending(uow, message)
        if pending is None:
            return
        message = pending
        now = self.clock.now()
        uow.outbox.update(replace(message, state=OutboxState.FAILED, attempts=message.attempts + 1, last_error=error))
        transfer = uow.transfers.get(message.transfer_id)
        if transfer is None:
            return
        if message.kind is MessageKind.OFFER and transfer.state is TransferState.REQUESTED:
            refused = replace(
                transfer.decided(
                    TransferState.REJECTED,
                    by=f"node:{message.peer}",
                    at=now,
                    reason=f"refused by province {message.peer}: {error}"[:500],
                ),
                delivery=DeliveryState.FAILED,
                delivery_error=error[:500],
            )
            uow.transfers.update(refused)
            record = uow.records.get(transfer.lookup_code)
            if record is not None and record.open_transfer_id == transfer.id:
                uow.records.update(replace(record, open_transfer_id=None, updated_at=now))
            self._emit(uow, refused, f"node:{message.peer}")
            # A cancellation requested meanwhile has nothing left to cancel: it is not sent.
            for later in uow.outbox.pending_of(transfer.id):
                if later.id != message.id:
                    uow.outbox.update(
                        replace(later, state=OutboxState.FAILED, last_error="not sent: the offer was refused")
                    )
            package = split_sealed(message.payload)[0]
            # No text from the peer enters the log: its reason code, and the refusal's text (as the
            # transfer's delivery_error shows it to both schools) as a digest salted per transfer.
            self._log(
                uow,
                PeerLeaf(
                    LeafKind.OFFER_REFUSED_CODED, now, transfer.id, message.peer, pkg.digest_of(package),
                    reason_code(code) or "UNSPECIFIED", details=text_digest(refused.delivery_error, refused.salt),
                ),
            )  # fmt: skip
        else:
            uow.transfers.update(
                replace(transfer, delivery_error=f"{message.kind.name.lower()} refused: {error}"[:500])
            )

    def receive_decision(self, uow: UnitOfWork, actor: Actor, transfer_id: str, payload: bytes) -> InboundMessage:
        """RESOLVE at the sender: apply the receiving node's decision (idempotent)."""
        peer = self._peer_of(actor)
        pkg.transfer_id_of(transfer_id)
        stored = uow.inbound.get(peer, transfer_id, MessageKind.RESOLVE)
        transfer = uow.transfers.get(transfer_id)
        if transfer is None or transfer.from_province != self.province or transfer.to_province != peer:
            raise PermissionDenied("NOT_YOUR_TRANSFER", "this transfer was not offered to your province by this node")
        if stored is not None:
            if stored.digest != _digest(payload):
                raise FailedPrecondition(
                    "CONFLICTING_MESSAGE", "a different decision for this transfer was already received"
                )
            return stored
        decision = Decision.decode(payload)
        if transfer.state is not TransferState.REQUESTED:
            if transfer.state is decision.state:
                index = -1  # e.g. a repeat after our own receipt was lost before storing: keep the first
            else:
                raise FailedPrecondition(
                    "CONFLICTING_MESSAGE", f"the transfer is already {transfer.state.name}, not {decision.state.name}"
                )
        else:
            now = self.clock.now()
            decided = replace(
                transfer.decided(
                    decision.state, by=decision.decided_by, at=decision.decided_at, reason=decision.reason
                ),
                cancel_requested=False,
            )
            uow.transfers.update(decided)
            record = uow.records.get(transfer.lookup_code)
            if record is not None and record.open_transfer_id == transfer.id:
                moved = decision.state is TransferState.ACCEPTED
                uow.records.update(replace(record, open_transfer_id=None, transferred_out=moved, updated_at=now))
            index = self._emit(uow, decided, f"peer:{peer}", logged_at=now).index
            transfer = decided
        message = InboundMessage(
            peer, transfer_id, MessageKind.RESOLVE, _digest(payload), index, self.clock.now(), transfer.state
        )
        uow.inbound.add(message)
        return message

    # -- receiver --------------------------------------------------------------

    def open_offer(self, actor: Actor, package_bytes: bytes, seal: bytes) -> pkg.Package:
        """An offer's package once its seal verified and its content reads, sent by its sender to us."""
        peer = self._peer_of(actor)
        # The seal first: nothing unauthenticated is parsed.
        pkg.verify_seal(package_bytes, seal, self.peers[peer].seal_key)
        package = pkg.decode(package_bytes)
        pkg.check_content(package)
        if package.from_province != peer or package.to_province != self.province:
            raise PermissionDenied(
                "NOT_YOUR_TRANSFER",
                f"a package from {package.from_province} to {package.to_province} is not yours to offer here",
            )
        return package

    def check_signatures(self, package: pkg.Package) -> None:
        """The pages' signatures verify and chain to the signing CAs this node trusts (a new offer only)."""
        pkg.verify_signatures(package, self.trust)

    def stored_inbound(
        self, uow: UnitOfWork, actor: Actor, transfer_id: str, kind: MessageKind, digest: bytes
    ) -> InboundMessage | None:
        """The earlier delivery of the same message (a repeat), or None; a different message is refused."""
        peer = self._peer_of(actor)
        stored = uow.inbound.get(peer, transfer_id, kind)
        if stored is not None and stored.digest != digest:
            raise FailedPrecondition(
                "CONFLICTING_MESSAGE",
                f"a different {kind.name.lower()} for transfer {transfer_id} was already received",
            )
        return stored

    def receive_offer(
        self, uow: UnitOfWork, actor: Actor, package: pkg.Package, package_bytes: bytes, seal: bytes
    ) -> InboundMessage:
        """OFFER at the receiver, after `open_offer` (and, for a new one, `check_signatures`): record the incoming transfer (idempotent)."""
        peer = self._peer_of(actor)
        digest = pkg.digest_of(package_bytes)
        stored = self.stored_inbound(uow, actor, package.transfer_id, MessageKind.OFFER, digest)
        if stored is not None:
            return stored
        if uow.transfers.get(package.transfer_id) is not None:
            raise FailedPrecondition("CONFLICTING_MESSAGE", "a transfer with this id already exists here")
        school = uow.schools.get(package.to_school)
        if school is None or not school.active:
            raise FailedPrecondition(
                "UNKNOWN_SCHOOL" if school is None else "SCHOOL_INACTIVE",
                f"school {package.to_school} does not receive transfers on this node",
                precondition_violations=(
                    PreconditionViolation("SCHOOL_ACTIVE", f"schools/{package.to_school}", "unknown or inactive"),
                ),
            )
        local = uow.records.get(package.record.lookup_code)
        self._require_provenance(uow, package, returning=local is not None)
        if local is None:
            _require_new_pupil(uow, package.record)
        if local is not None and not local.transferred_out and local.open_transfer_id is not None:
            sent = uow.transfers.get(local.open_transfer_id)
            if sent is not None and sent.to_province == peer and sent.state is TransferState.REQUESTED:
                # We sent the record to this peer and its answer has not arrived:
                # the peer accepted it and is sending it straight back. Not a
                # refusal: the sender retries, and the answer arrives meanwhile.
                raise Unavailable(
                    "RESOLUTION_PENDING",
                    f"transfer {sent.id} of this record to {peer} is not resolved here yet; retry",
                )
        if local is not None and not local.transferred_out:
            raise FailedPrecondition(
                "RECORD_ALREADY_HERE",
                "this node already holds the record: it cannot arrive twice",
                precondition_violations=(
                    PreconditionViolation("RECORD_ELSEWHERE", f"records/{package.record.lookup_code}", "held here"),
                ),
            )
        pending = uow.transfers.open_of_record(package.record.lookup_code)
        if pending is not None:  # a sender keeps a record frozen while it is offered: never two offers at once
            raise FailedPrecondition(
                "TRANSFER_ALREADY_OPEN",
                f"transfer {pending.id} of this record is already open here",
                precondition_violations=(
                    PreconditionViolation(
                        "RECORD_NOT_FROZEN", f"records/{package.record.lookup_code}", f"open transfer {pending.id}"
                    ),
                ),
                metadata={"open_transfer_id": pending.id},
            )
        now = self.clock.now()
        transfer = Transfer(
            id=package.transfer_id, lookup_code=package.record.lookup_code, from_school=package.from_school,
            from_province=peer, to_school=package.to_school, to_province=self.province,
            scope=TransferScope.INTER_PROVINCE, state=TransferState.REQUESTED, reason="", created_at=now,
            deadline=self._deadline(now),
            decided_at=None, initiated_by=f"peer:{peer}", decided_by=None, salt=package.salt,
        )  # fmt: skip
        uow.transfers.add(transfer)
        uow.inbound.add_package(transfer.id, peer, package_bytes, seal)
        index = self._emit(uow, transfer, f"peer:{peer}").index
        message = InboundMessage(peer, transfer.id, MessageKind.OFFER, digest, index, now, transfer.state)
        uow.inbound.add(message)
        return message

    def _require_provenance(self, uow: UnitOfWork, package: pkg.Package, *, returning: bool) -> None:
        """Each page may land here only as what this node knows of it.

        Page ids and issuers come from the sender, and no signature covers the
        issuer. A page of another record here would be overwritten on acceptance
        (`MALFORMED_PACKAGE`). A page that names one of this node's schools as
        its issuer gives that school the rights of an issuer here (replace, sign,
        lock): it must be a page this node issued to this record, with the same
        issuer and digest (`BAD_PAGE_ISSUER`); a page this node holds keeps the
        issuer and the identity (school year, segment, grade, class) it has. A
        returning record's new page may not take the year of one held here.
        Issuers in other provinces are the sender's word: no school of this
        node acts on their pages as an issuer."""
        code = package.record.lookup_code
        for i, p in enumerate(package.pages):
            page, where = p.page, f"package.pages[{i}]"
            here = uow.pages.get(page.id)
            if here is not None and here.lookup_code != code:
                raise pkg.PackageError(
                    "MALFORMED_PACKAGE",
                    f"page {page.id} is a page of another record on this node",
                    (FieldViolation(f"{where}.id", "names a page of another record here", "MALFORMED_PACKAGE"),),
                )
            claimed = (p.issuing_province, page.issuing_school)
            held = None if here is None else (here.issuing_province or self.province, here.issuing_school)
            if held is not None and held != claimed:
                raise _bad_issuer(where, f"page {page.id} was issued by {held[1]} of {held[0]}, not {claimed[1]}")
            if here is not None and _identity(here) != _identity(page):
                # A page's school year, segment, grade and class never change (a correction replaces its content).
                raise pkg.PackageError(
                    "MALFORMED_PACKAGE",
                    f"page {page.id} names another school year, segment, grade or class than this node's copy",
                    (FieldViolation(where, "its identity differs from this node's copy", "INCONSISTENT"),),
                )
            if p.issuing_province == self.province and (here is None or here.digest != page.digest):
                raise _bad_issuer(
                    where,
                    f"page {page.id} names school {page.issuing_school} of this province as its issuer, but this "
                    + ("node never issued it" if here is None else "node issued other content under its id"),
                )
            if returning and here is None:
                taken = uow.pages.find(code, page.school_year, page.segment)
                if taken is not None:
                    why = "its school year and segment are another page's here"
                    raise pkg.PackageError(
                        "MALFORMED_PACKAGE",
                        f"page {page.id} takes the school year and segment of page {taken.id} of the record here",
                        (FieldViolation(where, why, "DUPLICATE_PAGE"),),
                    )

    def refused_offer(self, uow: UnitOfWork, actor: Actor, package_bytes: bytes, reason: str) -> None:
        """Log a package this node refused (tampered, unverifiable): it never becomes a record.

        Logged once per peer, package and reason: the same package arriving again
        (overlapping attempts, an answer lost on the way) is refused again, not
        logged again."""
        digest, reason, now = pkg.digest_of(package_bytes), reason[:255], self.clock.now()
        if uow.inbound.refusal(actor.province, digest, reason) is not None:
            return
        # The transfer id the package claims (it may not parse: it was refused), for the log only.
        found = _CLAIMED_ID.search(package_bytes)
        transfer_id = found.group(1).decode("ascii") if found else "0" * 32
        # The node's own reason code (a PackageError's), and no text: kind 9 with the digest of "".
        leaf = PeerLeaf(
            LeafKind.OFFER_REFUSED_CODED,
            now,
            transfer_id,
            actor.province,
            digest,
            reason_code(reason) or "UNSPECIFIED",
            details=text_digest(""),
        )
        uow.inbound.add_refusal(actor.province, digest, reason, self._log(uow, leaf).index, now)

    def receive_cancel(self, uow: UnitOfWork, actor: Actor, transfer_id: str, payload: bytes) -> InboundMessage:
        """CANCEL_REQUEST at the receiver: cancel if still undecided, atomically with any acceptance."""
        peer = self._peer_of(actor)
        pkg.transfer_id_of(transfer_id)
        digest = _digest(payload)
        transfer = uow.transfers.get(transfer_id)
        if transfer is None or transfer.from_province != peer or transfer.to_province != self.province:
            raise PermissionDenied("NOT_YOUR_TRANSFER", "no transfer from your province has this id here")
        stored = self.stored_inbound(uow, actor, transfer_id, MessageKind.CANCEL_REQUEST, digest)
        if stored is not None:
            return stored
        reason = pkg.decode_cancel_request(payload)
        index = -1
        if transfer.state is TransferState.REQUESTED:
            cancelled = transfer.decided(TransferState.CANCELLED, by=f"peer:{peer}", at=self.clock.now(), reason=reason)
            index = self.decided_here(uow, cancelled, f"peer:{peer}").index
            transfer = cancelled
        message = InboundMessage(
            peer, transfer_id, MessageKind.CANCEL_REQUEST, digest, index, self.clock.now(), transfer.state
        )
        uow.inbound.add(message)
        return message

    def decided_here(self, uow: UnitOfWork, decided: Transfer, actor: str) -> LogReceipt:
        """An incoming transfer was decided on this node: store it, and on
        acceptance make this node the record's home; queue the decision back."""
        uow.transfers.update(decided)
        if decided.state is TransferState.ACCEPTED:
            self._import(uow, decided)
        receipt = self._emit(uow, decided, actor)
        decision = Decision(
            decided.state, decided.reason, decided.decided_at or self.clock.now(), decided.decided_by or actor
        )
        self._enqueue(uow, decided, decided.from_province, MessageKind.RESOLVE, decision.encode())
        return receipt

    def require_importable(self, uow: UnitOfWork, transfer: Transfer) -> None:
        """Refuse, before anything is written, to accept a record this node cannot hold: another
        record of the same pupil and level was registered here since the offer arrived, or a
        signature still owed on a page this node issued would have no active teacher to owe it."""
        package = self._package(uow, transfer)
        if uow.records.get(package.record.lookup_code) is None:
            _require_new_pupil(uow, package.record)
        self._owners(uow, package)

    @staticmethod
    def _package(uow: UnitOfWork, transfer: Transfer) -> pkg.Package:
        data = uow.inbound.package(transfer.id)
        if data is None:
            raise RuntimeError(f"the package of transfer {transfer.id} is missing")
        return pkg.decode(data)

    def _owners(self, uow: UnitOfWork, package: pkg.Package) -> dict[tuple[str, Requirement], str]:
        """Who owes each signature still owed on the pages this node issued, once the record is back here.

        Signatures are given on the issuing node only (`Pages.sign`), so this
        node's copy of a page it issued is the truth about its signatures:
        what the package says of them is not taken (a peer could move one
        signature into another's place). A signature owed here stays with
        the teacher who owes it while they are an active teacher of the
        issuing school (handoffs and duty assignments went on moving it while
        the record was away); else it goes to the active holder of its duty.
        With neither, the record cannot come back: `DUTY_UNASSIGNED`, until
        the issuing school assigns the duty. A page this node issued but does
        not hold (never the case for pages it made) is owed as the package says,
        by the holders of the duties."""
        owners: dict[tuple[str, Requirement], str] = {}
        missing: list[PreconditionViolation] = []
        for p in package.pages:
            if p.issuing_province != self.province:
                continue  # owed on its own node, by its own teachers
            local = uow.pages.get(p.page.id)
            page = local or p.page
            owed: list[tuple[Requirement, str | None]] = (
                [(req, None) for req in p.pending]
                if local is None
                else [(t.requirement, t.assignee) for t in uow.tasks.of_page(page.id) if t.pending]
            )
            for req, assignee in owed:
                duty = req.duty(page.school_year, page.class_name)
                owner = assignee if _active_teacher(uow, assignee, page.issuing_school) else None
                owner = owner or active_holder(uow, page.issuing_school, duty)
                if owner is None:
                    missing.append(
                        PreconditionViolation(
                            "DUTY_ASSIGNED",
                            f"schools/{page.issuing_school}/duties/{duty}",
                            f"page {page.id} owes a {req} signature; no active teacher holds {duty}",
                        )
                    )
                else:
                    owners[(page.id, req)] = owner
        if missing:
            raise FailedPrecondition(
                "DUTY_UNASSIGNED",
                f"{len(missing)} signature(s) still owed on pages this node issued would have no teacher to owe "
                "them: the issuing school must assign the duties before the record can come back",
                precondition_violations=tuple(missing),
            )
        return owners

    def _import(self, uow: UnitOfWork, transfer: Transfer) -> None:
        package = self._package(uow, transfer)
        owners = self._owners(uow, package)
        now = self.clock.now()
        existing = uow.records.get(package.record.lookup_code)
        # The page salts the record had (this node's own, if it held the record before, then
        # the sender's), and a new one for the new custodian: the sending school, and its node,
        # cannot match the entries of the pages added here from now on.
        held = () if existing is None else existing.page_salts
        salts = (*held, *(x for x in package.record.page_salts if x not in held), bytes.fromhex(self.ids.new_id()))
        record = replace(
            package.record, custodian_school=transfer.to_school, created_at=now, updated_at=now, page_salts=salts
        )
        if existing is None:
            uow.records.add(record)
        else:  # the record comes back to a node that held it before
            uow.records.update(replace(existing, custodian_school=transfer.to_school, open_transfer_id=None,
                                       transferred_out=False, updated_at=now, page_salts=salts))  # fmt: skip
        for p in package.pages:
            if p.issuing_province == self.province and uow.pages.get(p.page.id) is not None:
                self._keep_owed(uow, p.page.id, owners)  # our own page, back: our copy stands
                continue
            page = replace(p.page, issuing_province=p.issuing_province)
            uow.pages.upsert(page, p.payload, self.page_policy.lock_due(page.school_year, page.lock_track))
            signed = {s.requirement: s for s in p.signatures}
            tasks = []
            for req in [*signed, *p.pending]:
                s = signed.get(req)
                duty = req.duty(page.school_year, page.class_name)
                if s is None:
                    tasks.append(SigningTask(page.id, req, duty, owners.get((page.id, req))))
                    continue
                cert = pkg.certificate_of(s)
                uow.inbound.import_certificate(cert)
                tasks.append(SigningTask(page.id, req, duty, None, s.teacher_id, s.signature, cert.sha256, s.signed_at))
            uow.tasks.replace_all(page.id, page.issuing_school, tasks)

    def _keep_owed(self, uow: UnitOfWork, page_id: str, owners: Mapping[tuple[str, Requirement], str]) -> None:
        """A page this node issued is back: its owed signatures go to the owners `_owners` found, each
        move logged as a handoff's are (none when the teacher who owed it still does)."""
        for task in uow.tasks.of_page(page_id):
            owner = owners.get((page_id, task.requirement))
            if not task.pending or owner is None or owner == task.assignee:
                continue
            uow.tasks.reassign([task], owner)
            leaf = MoveLeaf(
                LeafKind.TASK_MOVED, self.clock.now(), NO_ID, "", str(task.requirement), task.assignee or NO_ID,
                owner, "system", page_id,
            )  # fmt: skip
            self._log(uow, leaf)


def _active_teacher(uow: UnitOfWork, teacher_id: str | None, school: str) -> bool:
    teacher = uow.teachers.get(teacher_id) if teacher_id else None
    return teacher is not None and teacher.school == school and teacher.status is TeacherStatus.ACTIVE


def _identity(page: Page) -> tuple[str, str, int, str]:
    return page.school_year, page.segment, page.grade, page.class_name


def _bad_issuer(where: str, message: str) -> pkg.PackageError:
    return pkg.PackageError(
        "BAD_PAGE_ISSUER",
        message,
        (FieldViolation(f"{where}.issuing_school", "not an issuer this node can accept for it", "BAD_PAGE_ISSUER"),),
    )


def _require_new_pupil(uow: UnitOfWork, record: Record) -> None:
    """A node holds one record per pupil and level (as RegisterRecord requires)."""
    if uow.records.student_has_record(record.national_id, record.level):
        raise FailedPrecondition(
            "STUDENT_RECORD_EXISTS",
            "this node already holds another record of this pupil at this level",
            precondition_violations=(
                PreconditionViolation("ONE_RECORD_PER_PUPIL_AND_LEVEL", f"records/{record.lookup_code}", "held here"),
            ),
        )


class OutboxWake:
    """Published after a commit that queued an outbox message: wakes the dispatcher."""


__all__ = ["Decision", "Federation", "OutboxWake", "PeerKeys", "message_digest", "split_sealed"]
