"""What the use cases need from the outside world, as protocols.

`storage` implements the repositories over SQL; tests and the server supply
clocks and id sources. Repositories never commit: the caller of a use case
owns the transaction (one unit of work per batch of commands).
"""

from __future__ import annotations

import secrets
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Protocol

from transfer.domain.model import (
    DeliveryStats,
    Duty,
    DutyKey,
    Handoff,
    InboundMessage,
    MessageKind,
    OutboxBacklog,
    OutboxMessage,
    Page,
    PeerBundle,
    Record,
    School,
    SigningTask,
    StoredCheckpoint,
    StoredResponse,
    Teacher,
    Transfer,
    TransferDirection,
    TransferEvent,
    TransferState,
)
from transfer.domain.signatures import CertificateInfo


@dataclass(frozen=True, slots=True)
class ReadAhead:
    """The rows a command is about to read, named before it runs.

    A hint for the store: the single writer reads the rows of a whole batch
    of commands in a few statements (on PostgreSQL, a few round trips instead
    of one per read). It changes no answer: a row not named is read when
    asked for, a row named but never asked for costs nothing more.
    """

    records: tuple[str, ...] = ()  # lookup codes
    schools: tuple[str, ...] = ()  # school codes
    transfers: tuple[str, ...] = ()  # transfer ids; each brings its record and both schools


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware UTC."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class IdSource(Protocol):
    def new_id(self) -> str:
        """A fresh opaque id: 32 lowercase hex characters."""
        ...


class RandomIds:
    """128-bit random ids, as UUID4 without dashes would be."""

    def new_id(self) -> str:
        return secrets.token_hex(16)


class SchoolRepository(Protocol):
    def get(self, code: str) -> School | None: ...
    def add(self, school: School) -> None: ...
    def update(self, school: School) -> None: ...
    def page(self, after_code: str | None, limit: int) -> list[School]: ...


class RecordRepository(Protocol):
    def get(self, lookup_code: str) -> Record | None: ...
    def student_has_record(self, national_id: str, level: int) -> bool: ...
    def student_record(self, national_id: str, level: int) -> str | None:
        """The lookup code of the pupil's record of that level on this node, if there is one."""
        ...

    def add(self, record: Record) -> None: ...
    def add_many(self, records: list[Record]) -> None:
        """Insert many new records at once (a bulk import)."""
        ...

    def update(self, record: Record) -> None: ...
    def list_by_custodian(self, school: str, after_lookup_code: str | None, limit: int) -> list[Record]: ...


class TransferRepository(Protocol):
    def get(self, transfer_id: str) -> Transfer | None: ...
    def open_of_record(self, lookup_code: str) -> Transfer | None:
        """The record's open (REQUESTED) transfer, outgoing or incoming, if it has one."""
        ...

    def add(self, transfer: Transfer) -> None: ...
    def update(self, transfer: Transfer) -> None: ...
    def page(
        self,
        school: str,
        province: str,
        direction: TransferDirection,
        states: Sequence[TransferState],
        after_key: int | None,
        limit: int,
    ) -> list[tuple[int, Transfer]]:
        """Transfers of `school` in creation order, each with its paging key."""
        ...

    def overdue(self, now: datetime, limit: int, province: str) -> list[Transfer]:
        """Open transfers whose deadline is at or before `now` and whose decision
        belongs to this node (those received by `province`)."""
        ...


class EventRepository(Protocol):
    def append(self, event: TransferEvent) -> int:
        """Stores the event; returns its sequence number."""
        ...

    def after(self, school: str, province: str, after_seq: int, limit: int) -> list[TransferEvent]:
        """Events of transfers `school` (of `province`) sends or receives, after `after_seq`."""
        ...

    def at(self, seq: int) -> tuple[str, TransferState, datetime] | None:
        """The transfer id, state and instant of event `seq`; None if there is no such event."""
        ...


class IdempotencyRepository(Protocol):
    def get(self, principal: str, request_id: str) -> StoredResponse | None: ...
    def put(
        self,
        principal: str,
        request_id: str,
        stored: StoredResponse,
        created_at: datetime,
    ) -> None: ...
    def prune(self, older_than: datetime, limit: int) -> int: ...


NodeId = tuple[int, int]


class LogRepository(Protocol):
    """The append-only log: leaves, the hashes of its complete subtrees, checkpoints."""

    def append(self, leaf: bytes) -> int:
        """Stage `leaf` for this transaction; returns the index it will have."""
        ...

    def last_leaf(self) -> bytes | None:
        """The log's last entry (staged by this unit of work, else committed); None when empty."""
        ...

    def size(self) -> int:
        """Leaves committed so far (plus those staged by this unit of work)."""
        ...

    def committed_size(self) -> int:
        """Leaves committed by earlier transactions: those whose subtree hashes are stored."""
        ...

    def leaves(self, start: int, end: int) -> list[bytes]: ...

    def nodes(self, ids: Collection[NodeId]) -> dict[NodeId, bytes]:
        """Stored complete-subtree hashes: (level, index) -> hash."""
        ...

    def latest_checkpoint(self) -> StoredCheckpoint | None: ...
    def checkpoint(self, size: int) -> StoredCheckpoint | None: ...
    def checkpoint_covering(self, index: int) -> StoredCheckpoint | None:
        """The first (smallest) checkpoint whose tree holds entry `index`."""
        ...

    def add_checkpoint(self, checkpoint: StoredCheckpoint) -> None: ...
    def cosignatures(self, size: int) -> list[str]:
        """The witnesses' cosignature lines stored for the checkpoint of `size` (each ending in a newline)."""
        ...

    def cosigned_sizes(self, limit: int) -> list[int]:
        """The sizes of the `limit` largest checkpoints with a stored cosignature, largest first."""
        ...

    def add_cosignature(self, size: int, witness: str, key_id: bytes, line: str, received_at: datetime) -> bool:
        """Store a witness's cosignature line of the checkpoint of `size`; False when that key's is stored already."""
        ...


class TeacherRepository(Protocol):
    def get(self, teacher_id: str) -> Teacher | None: ...
    def by_code(self, school: str, code: str) -> Teacher | None: ...
    def add(self, teacher: Teacher) -> None: ...
    def update(self, teacher: Teacher) -> None: ...
    def page(self, school: str, after_code: str | None, limit: int) -> list[Teacher]: ...
    def certificates(self, teacher_id: str) -> list[CertificateInfo]: ...
    def add_certificate(self, teacher_id: str, certificate: CertificateInfo, added_at: datetime) -> None: ...


class DutyRepository(Protocol):
    def get(self, school: str, key: DutyKey) -> Duty | None: ...
    def put(self, duty: Duty) -> None:
        """Insert or replace the duty (school, key)."""
        ...

    def held_by(self, teacher_id: str) -> list[Duty]: ...
    def of_school(self, school: str) -> list[Duty]: ...


class PageRepository(Protocol):
    def get(self, page_id: str) -> Page | None: ...
    def find(self, lookup_code: str, school_year: str, segment: str) -> Page | None: ...
    def add(self, page: Page, payload: bytes, lock_due: datetime) -> None: ...
    def update(self, page: Page, payload: bytes | None = None) -> None: ...
    def payload(self, page_id: str) -> bytes: ...
    def of_record(
        self, lookup_code: str, issuer: tuple[str, str] | None, after_id: str | None, limit: int
    ) -> list[Page]:
        """A record's pages, ordered by id; only those issued by (province, school) if given."""
        ...

    def upsert(self, page: Page, payload: bytes, lock_due: datetime) -> None:
        """Insert, or overwrite every field of, the page (imported from another node)."""
        ...

    def due_for_lock(self, now: datetime, limit: int) -> list[Page]:
        """SIGNED pages whose lock date has passed."""
        ...

    def lock_due(self, page_id: str) -> datetime: ...


class TaskRepository(Protocol):
    def of_page(self, page_id: str) -> list[SigningTask]: ...
    def add(self, school: str, tasks: Sequence[SigningTask]) -> None: ...
    def update(self, task: SigningTask) -> None: ...
    def replace_all(self, page_id: str, school: str, tasks: Sequence[SigningTask]) -> None: ...
    def pending_for(self, teacher_id: str, after: tuple[str, str] | None, limit: int) -> list[SigningTask]:
        """Unsigned tasks assigned to the teacher, ordered by (page id, requirement)."""
        ...

    def pending_of_duty(self, school: str, duty: DutyKey) -> list[SigningTask]: ...
    def last_signed_by(self, teacher_id: str, since: datetime, until: datetime | None) -> datetime | None:
        """When the teacher last signed a page in [since, until) (None: not then)."""
        ...

    def reassign(self, tasks: Sequence[SigningTask], assignee: str) -> None: ...


class HandoffRepository(Protocol):
    def get(self, handoff_id: str) -> Handoff | None: ...
    def add(self, handoff: Handoff) -> None: ...
    def update(self, handoff: Handoff) -> None: ...
    def open_for(self, teacher_id: str) -> list[Handoff]:
        """SCHEDULED or IN_FORCE handoffs of the teacher."""
        ...

    def scheduled_in_school(self, school: str) -> list[Handoff]:
        """The school's SCHEDULED handoffs (not yet in effect)."""
        ...

    def due(self, today: date, limit: int, after: tuple[datetime, str] | None = None) -> list[Handoff]:
        """SCHEDULED ones effective by `today`, and IN_FORCE temporary ones ending by `today`,
        in order of creation (then id), those after `after` (a creation instant and id)."""
        ...

    def page(self, school: str, teacher_id: str | None, after_key: str | None, limit: int) -> list[Handoff]: ...


class OutboxRepository(Protocol):
    def add(self, message: OutboxMessage) -> None: ...
    def get(self, message_id: int) -> OutboxMessage | None: ...
    def due(self, now: datetime, limit: int, skip_peers: Collection[str] = ()) -> list[OutboxMessage]:
        """PENDING messages whose time has come, oldest first, at most one per
        transfer (a later message waits for the earlier one to be delivered),
        none for the peers in `skip_peers`."""
        ...

    def update(self, message: OutboxMessage) -> None: ...
    def pending_of(self, transfer_id: str) -> list[OutboxMessage]:
        """The transfer's messages still waiting to be delivered, oldest first."""
        ...

    def delivered_of(self, transfer_id: str) -> list[OutboxMessage]:
        """The transfer's DELIVERED messages (with the peer's receipts), oldest first."""
        ...

    def next_attempt(self, skip_peers: Collection[str] = ()) -> datetime | None:
        """When the earliest PENDING message (not for `skip_peers`) is due (None: nothing pending)."""
        ...

    def bring_forward(self, peer: str, now: datetime) -> None:
        """Make the PENDING messages to `peer` that wait past `now` due at `now` (one statement)."""
        ...

    def stats(self) -> list[DeliveryStats]: ...

    def backlog(self) -> list[OutboxBacklog]:
        """Per peer, the messages still pending or refused for good: reads those rows only, never the delivered."""
        ...


class PeerBundleRepository(Protocol):
    def add(self, bundle: PeerBundle) -> None: ...
    def update(self, bundle: PeerBundle) -> None: ...
    def due(self, now: datetime, limit: int) -> list[tuple[PeerBundle, bytes]]:
        """WAITING bundles whose time has come, oldest first, each with its message's sealed receipt."""
        ...

    def next_attempt(self) -> datetime | None:
        """When the earliest WAITING bundle is due (None: none waits)."""
        ...

    def of_transfer(self, transfer_id: str) -> dict[int, PeerBundle]:
        """The transfer's bundles, by outbox message id."""
        ...

    def split_views(self) -> dict[str, int]:
        """Per peer, the rows in SPLIT_VIEW: the peer's checkpoints found inconsistent, each kept as evidence."""
        ...


class InboundRepository(Protocol):
    def get(self, peer: str, transfer_id: str, kind: MessageKind) -> InboundMessage | None: ...
    def add(self, message: InboundMessage) -> None: ...
    def add_package(self, transfer_id: str, peer: str, package: bytes, seal: bytes) -> None: ...
    def package(self, transfer_id: str) -> bytes | None: ...
    def refusal(self, peer: str, digest: bytes, reason: str) -> int | None:
        """The log index of the entry for this peer's package refused for this reason, if logged."""
        ...

    def add_refusal(self, peer: str, digest: bytes, reason: str, log_index: int, at: datetime) -> None: ...
    def import_certificate(self, certificate: CertificateInfo) -> None: ...
    def certificate(self, sha256: str) -> CertificateInfo | None:
        """A certificate imported with another node's pages."""
        ...


class UnitOfWork(Protocol):
    """The repositories of one transaction, plus what to announce after commit."""

    @property
    def schools(self) -> SchoolRepository: ...
    @property
    def records(self) -> RecordRepository: ...
    @property
    def transfers(self) -> TransferRepository: ...
    @property
    def events(self) -> EventRepository: ...
    @property
    def idempotency(self) -> IdempotencyRepository: ...
    @property
    def log(self) -> LogRepository: ...
    @property
    def teachers(self) -> TeacherRepository: ...
    @property
    def duties(self) -> DutyRepository: ...
    @property
    def pages(self) -> PageRepository: ...
    @property
    def tasks(self) -> TaskRepository: ...
    @property
    def handoffs(self) -> HandoffRepository: ...
    @property
    def outbox(self) -> OutboxRepository: ...
    @property
    def peer_bundles(self) -> PeerBundleRepository: ...
    @property
    def inbound(self) -> InboundRepository: ...

    def publish(self, item: object) -> None:
        """Queue `item` for the after-commit listeners (dropped on rollback)."""
        ...
