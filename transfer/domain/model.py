"""Domain objects: frozen dataclasses, valid by construction of the use cases.

Enum values equal the numbers of the matching `transfer.v1` proto enums so
conversion is a lookup; a unit test pins the correspondence by name.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Generic, TypeVar

T = TypeVar("T")


class Role(enum.Enum):
    """What a certificate lets its holder do (DESIGN §4)."""

    SCHOOL = "school"
    SCHOOL_ADMIN = "school_admin"
    PROVINCE_ADMIN = "province_admin"
    PEER = "peer"
    AUDITOR = "auditor"
    NODE = "node"


@dataclass(frozen=True, slots=True)
class Actor:
    """The authenticated caller, as its certificate says: never from a request."""

    role: Role
    province: str
    school: str | None = None
    name: str = ""

    @property
    def principal(self) -> str:
        """Stable id of the caller for idempotency keys and audit columns.

        School systems share one principal per school, so a retry from a
        rotated certificate still finds its first answer.
        """
        if self.school is not None:
            return f"{self.role.value}:{self.school}"
        return f"{self.role.value}:{self.province}:{self.name}"

    @property
    def is_province_admin(self) -> bool:
        return self.role is Role.PROVINCE_ADMIN

    def acts_for(self, school: str) -> bool:
        """Whether the caller may act on behalf of `school`."""
        if self.role is Role.PROVINCE_ADMIN:
            return True
        return self.role in (Role.SCHOOL, Role.SCHOOL_ADMIN) and self.school == school


class RecordLevel(enum.IntEnum):
    PRIMARY = 1
    LOWER_SECONDARY = 2
    UPPER_SECONDARY = 3


class RecordStatus(enum.IntEnum):
    ACTIVE = 1
    FROZEN = 2


class TransferState(enum.IntEnum):
    REQUESTED = 1
    ACCEPTED = 2
    REJECTED = 3
    CANCELLED = 4
    EXPIRED = 5

    @property
    def is_open(self) -> bool:
        return self is TransferState.REQUESTED


class TransferScope(enum.IntEnum):
    INTRA_PROVINCE = 1
    INTER_PROVINCE = 2


class TransferDirection(enum.IntEnum):
    INCOMING = 1
    OUTGOING = 2


@dataclass(frozen=True, slots=True)
class School:
    code: str
    name: str
    province: str
    active: bool
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Record:
    lookup_code: str
    national_id: str
    level: RecordLevel
    custodian_school: str
    open_transfer_id: str | None
    created_at: datetime
    updated_at: datetime

    @property
    def status(self) -> RecordStatus:
        return RecordStatus.FROZEN if self.open_transfer_id else RecordStatus.ACTIVE


# Which states a transfer may move to from REQUESTED; every other move is
# illegal. Terminal states have no exits.
TRANSITIONS: dict[TransferState, frozenset[TransferState]] = {
    TransferState.REQUESTED: frozenset(
        {
            TransferState.ACCEPTED,
            TransferState.REJECTED,
            TransferState.CANCELLED,
            TransferState.EXPIRED,
        }
    ),
    TransferState.ACCEPTED: frozenset(),
    TransferState.REJECTED: frozenset(),
    TransferState.CANCELLED: frozenset(),
    TransferState.EXPIRED: frozenset(),
}


@dataclass(frozen=True, slots=True)
class Transfer:
    id: str
    lookup_code: str
    from_school: str
    from_province: str
    to_school: str
    to_province: str
    scope: TransferScope
    state: TransferState
    reason: str
    created_at: datetime
    deadline: datetime
    decided_at: datetime | None
    initiated_by: str
    decided_by: str | None

    def can_move_to(self, state: TransferState) -> bool:
        return state in TRANSITIONS[self.state]

    def decided(self, state: TransferState, *, by: str, at: datetime, reason: str = "") -> Transfer:
        """The transfer after a decision; the caller has checked `can_move_to`."""
        if not self.can_move_to(state):
            raise ValueError(f"illegal transition {self.state.name} -> {state.name}")
        return replace(self, state=state, decided_by=by, decided_at=at, reason=reason)


@dataclass(frozen=True, slots=True)
class TransferEvent:
    """One committed change of a transfer, as the watch stream delivers it.

    `seq` orders events in commit order on this node; it is 0 until stored.
    """

    seq: int
    transfer: Transfer
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """What an idempotency key remembers: the request's digest and the answer."""

    fingerprint: bytes
    response: bytes


@dataclass(frozen=True, slots=True)
class LogReceipt:
    """Where a change was recorded: its log index and the leaf's bytes.

    With a signed checkpoint of a larger tree and an inclusion proof (both
    from the LogService), anyone can check offline that the log holds it.
    """

    index: int
    leaf: bytes


@dataclass(frozen=True, slots=True)
class Logged(Generic[T]):
    """A use case's result together with the receipt of its log entry."""

    value: T
    receipt: LogReceipt


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    """A checkpoint the node signed: tree size, root hash, and the signed note."""

    size: int
    root: bytes
    note: str
    created_at: datetime
