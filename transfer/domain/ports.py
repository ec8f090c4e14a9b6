"""What the use cases need from the outside world, as protocols.

`storage` implements the repositories over SQL; tests and the server supply
clocks and id sources. Repositories never commit: the caller of a use case
owns the transaction (one unit of work per batch of commands).
"""

from __future__ import annotations

import secrets
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from typing import Protocol

from transfer.domain.model import (
    Record,
    School,
    StoredCheckpoint,
    StoredResponse,
    Transfer,
    TransferDirection,
    TransferEvent,
    TransferState,
)


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
    def add(self, record: Record) -> None: ...
    def update(self, record: Record) -> None: ...
    def list_by_custodian(self, school: str, after_lookup_code: str | None, limit: int) -> list[Record]: ...


class TransferRepository(Protocol):
    def get(self, transfer_id: str) -> Transfer | None: ...
    def add(self, transfer: Transfer) -> None: ...
    def update(self, transfer: Transfer) -> None: ...
    def page(
        self,
        school: str,
        direction: TransferDirection,
        states: Sequence[TransferState],
        after_key: int | None,
        limit: int,
    ) -> list[tuple[int, Transfer]]:
        """Transfers of `school` in creation order, each with its paging key."""
        ...

    def overdue(self, now: datetime, limit: int) -> list[Transfer]:
        """Open transfers whose deadline is at or before `now`."""
        ...


class EventRepository(Protocol):
    def append(self, event: TransferEvent) -> int:
        """Stores the event; returns its sequence number."""
        ...

    def after(self, school: str, after_seq: int, limit: int) -> list[TransferEvent]:
        """Events of transfers `school` sends or receives, after `after_seq`."""
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

    def size(self) -> int:
        """Leaves committed so far (plus those staged by this unit of work)."""
        ...

    def leaves(self, start: int, end: int) -> list[bytes]: ...

    def nodes(self, ids: Collection[NodeId]) -> dict[NodeId, bytes]:
        """Stored complete-subtree hashes: (level, index) -> hash."""
        ...

    def latest_checkpoint(self) -> StoredCheckpoint | None: ...
    def checkpoint(self, size: int) -> StoredCheckpoint | None: ...
    def add_checkpoint(self, checkpoint: StoredCheckpoint) -> None: ...


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

    def publish(self, item: object) -> None:
        """Queue `item` for the after-commit listeners (dropped on rollback)."""
        ...
