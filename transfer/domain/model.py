"""Domain objects: frozen dataclasses, valid by construction of the use cases.

Enum values equal the numbers of the matching `transfer.v1` proto enums so
conversion is a lookup; a unit test pins the correspondence by name.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from datetime import date, datetime
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
    TRANSFERRED_OUT = 3  # its home is now another province's node: read-only here


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


class DeliveryState(enum.IntEnum):
    """Where an inter-province transfer's offer is on its way to the receiving node."""

    PENDING = 1
    DELIVERED = 2
    FAILED = 3


class MessageKind(enum.IntEnum):
    """Node-to-node messages (PeerService), each idempotent by (transfer, kind)."""

    OFFER = 1  # sender -> receiver: the sealed package
    CANCEL_REQUEST = 2  # sender -> receiver: please cancel, if not yet decided
    RESOLVE = 3  # receiver -> sender: the decision


class OutboxState(enum.IntEnum):
    PENDING = 1
    DELIVERED = 2
    FAILED = 3


class PeerBundleState(enum.IntEnum):
    """Where the sender stands in getting a witnessed proof bundle of a peer's receipt."""

    WAITING = 1  # asked for again until the peer's witnesses cosigned a checkpoint covering the entry
    WITNESSED = 2  # held: `bundle` is proved in a checkpoint the peer's witness quorum cosigned
    SPLIT_VIEW = 3  # the peer showed a checkpoint inconsistent with its receipt's: both kept, no more asked
    GAVE_UP = 4  # past the horizon without a witnessed checkpoint: no more asked


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
    transferred_out: bool = False
    # 16 random bytes each, oldest first: the salts the record's page entries
    # (log kinds 19-21) name it with. The last is the current one; a new one is
    # drawn each time the record changes custodian (and when it is offered to
    # another province, whose node learns the salts), so a former custodian (who
    # knows the lookup code and the salts of its time) cannot match the
    # entries of pages added after it let the record go. Shown only to the
    # custodian (and the province's admins), and carried in a transfer package.
    page_salts: tuple[bytes, ...] = ()

    @property
    def page_salt(self) -> bytes:
        """The salt of the record's new page entries."""
        if not self.page_salts:
            raise ValueError(f"record {self.lookup_code} has no page salt")
        return self.page_salts[-1]

    @property
    def status(self) -> RecordStatus:
        if self.transferred_out:
            return RecordStatus.TRANSFERRED_OUT
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
    cancel_requested: bool = False
    delivery: DeliveryState | None = None  # inter-province offers sent from this node
    delivery_error: str = ""
    # Random per transfer: the log's digests of the record and the reason are
    # salted with it, so only the two schools (who can see the transfer) can
    # link its entries to a record or test a guessed reason.
    salt: bytes = b""

    @property
    def inter_province(self) -> bool:
        return self.scope is TransferScope.INTER_PROVINCE

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


# -- teachers, duties, pages (DESIGN §5, §7) -----------------------------------


class TeacherStatus(enum.IntEnum):
    ACTIVE = 1
    ON_LEAVE = 2
    DEPARTED = 3


class SignerRole(enum.IntEnum):
    """Who signs what on a page, and the kind of duty that names the signer."""

    HOMEROOM = 1  # giáo viên chủ nhiệm of the class in the school year
    SUBJECT = 2  # giáo viên bộ môn of one subject of the class in the school year
    PRINCIPAL = 3  # hiệu trưởng of the school


class PageState(enum.IntEnum):
    DRAFT = 1  # no signature yet
    SIGNING = 2  # some signatures
    SIGNED = 3  # every required signature
    LOCKED = 4  # chốt dữ liệu: immutable


class LockTrack(enum.IntEnum):
    COMPLETED = 1  # pupils who completed the year: locked by 30 June
    SUPPLEMENTARY = 2  # pupils needing supplementary assessment: by 15 August


class DepartureReason(enum.IntEnum):
    RETIREMENT = 1
    MATERNITY_LEAVE = 2
    TRANSFER = 3
    RESIGNATION = 4
    OTHER = 5


class HandoffState(enum.IntEnum):
    SCHEDULED = 1  # recorded; takes effect at its effective date
    IN_FORCE = 2  # applied; a temporary absence waiting for its end date
    COMPLETED = 3  # a permanent departure applied, or a temporary one ended
    SUPERSEDED = 4  # a temporary absence overtaken by a permanent departure


@dataclass(frozen=True, slots=True)
class DutyKey:
    """Names a duty: (role, school year, class, subject); the school is the duty's."""

    role: SignerRole
    school_year: str = ""
    class_name: str = ""
    subject: str = ""

    @classmethod
    def parse(cls, key: str) -> DutyKey:
        """The inverse of str(): "principal", "homeroom/<year>/<class>", "subject/<year>/<class>/<subject>"."""
        parts = key.split("/")
        if parts == ["principal"]:
            return cls(SignerRole.PRINCIPAL)
        if parts[0] == "homeroom" and len(parts) == 3:
            return cls(SignerRole.HOMEROOM, parts[1], parts[2])
        if parts[0] == "subject" and len(parts) == 4:
            return cls(SignerRole.SUBJECT, parts[1], parts[2], parts[3])
        raise ValueError(f"not a duty key: {key!r}")

    def __str__(self) -> str:
        if self.role is SignerRole.PRINCIPAL:
            return "principal"
        if self.role is SignerRole.HOMEROOM:
            return f"homeroom/{self.school_year}/{self.class_name}"
        return f"subject/{self.school_year}/{self.class_name}/{self.subject}"


@dataclass(frozen=True, slots=True)
class Requirement:
    """One signature a page needs: a role, and for subject teachers the subject."""

    role: SignerRole
    subject: str = ""

    def __str__(self) -> str:
        return f"subject:{self.subject}" if self.role is SignerRole.SUBJECT else self.role.name.lower()

    def duty(self, school_year: str, class_name: str) -> DutyKey:
        if self.role is SignerRole.PRINCIPAL:
            return DutyKey(SignerRole.PRINCIPAL)
        return DutyKey(self.role, school_year, class_name, self.subject)


@dataclass(frozen=True, slots=True)
class Teacher:
    id: str
    school: str
    code: str  # the school's own staff code
    name: str  # personal data: never logged
    status: TeacherStatus
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Duty:
    school: str
    key: DutyKey
    holder: str | None  # teacher id
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Page:
    """One school year (or segment) of a record, issued by one school."""

    id: str
    lookup_code: str
    issuing_school: str
    school_year: str
    segment: str
    grade: int
    class_name: str
    media_type: str
    payload_sha256: bytes
    payload_size: int
    version: int
    digest: bytes  # what teachers sign (see pages.page_digest)
    state: PageState
    lock_track: LockTrack
    created_at: datetime
    updated_at: datetime
    locked_at: datetime | None
    issuing_province: str = ""  # the issuing school's province (another one for imported pages)


@dataclass(frozen=True, slots=True)
class SigningTask:
    """A signature a page needs, who owes it, and (once given) the signature."""

    page_id: str
    requirement: Requirement
    duty: DutyKey
    assignee: str | None
    signed_by: str | None = None
    signature: bytes | None = None
    certificate_sha256: str | None = None
    signed_at: datetime | None = None

    @property
    def pending(self) -> bool:
        return self.signed_by is None


@dataclass(frozen=True, slots=True)
class Handoff:
    id: str
    school: str
    teacher_id: str
    reason: DepartureReason
    effective_date: date
    end_date: date | None
    replacement: str | None  # for every duty and task not named in `duties`
    duties: tuple[tuple[DutyKey, str], ...]  # (duty, replacement teacher)
    state: HandoffState
    created_by: str
    created_at: datetime
    applied_at: datetime | None = None
    ended_at: datetime | None = None
    moved_tasks: int = 0
    # 16 random bytes: the departure's log entry holds its reason as
    # SHA-256 over this salt (b"" for handoffs older than the salt).
    salt: bytes = b""

    @property
    def temporary(self) -> bool:
        return self.end_date is not None

    def replacement_for(self, duty: DutyKey) -> str | None:
        return next((t for d, t in self.duties if d == duty), self.replacement)

    def stand_ins(self) -> set[str]:
        """Every teacher the handoff names to take something over."""
        named = {t for _, t in self.duties}
        if self.replacement is not None:
            named.add(self.replacement)
        return named


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """A message to a peer node, written with the change that causes it and
    delivered (with retries) by the node's dispatcher."""

    id: int  # 0 until stored
    transfer_id: str
    peer: str  # province code
    kind: MessageKind
    payload: bytes
    state: OutboxState
    attempts: int
    next_attempt_at: datetime
    last_error: str
    created_at: datetime
    delivered_at: datetime | None = None
    receipt: bytes | None = None
    trace_id: str = ""  # of the call that wrote it (32 hex digits), "" when unknown


@dataclass(frozen=True, slots=True)
class PeerBundle:
    """The witnessed proof bundle of a peer's receipt, kept beside the delivered outbox message
    `outbox_id` whose sealed receipt names the peer's entry (docs/federation.md, Receipts)."""

    outbox_id: int
    peer: str
    state: PeerBundleState
    attempts: int
    next_attempt_at: datetime
    delivered_at: datetime
    last_error: str = ""
    bundle: str = ""  # the witnessed bundle text (state WITNESSED)
    conflicting_checkpoint: str = ""  # the peer's checkpoint inconsistent with its receipt's (SPLIT_VIEW)


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A message a peer delivered here: what it was, where it was logged
    (-1: it made no entry), and the transfer's state after it. Its receipt is
    built from these alone, so a repeat gets the very same one."""

    peer: str
    transfer_id: str
    kind: MessageKind
    digest: bytes
    log_index: int
    received_at: datetime
    state: TransferState


@dataclass(frozen=True)
class OutboxBacklog:
    """The undelivered messages to one peer, for monitoring: those waiting and those refused for good."""

    peer: str
    pending: int
    failed: int
    oldest_pending_at: datetime | None
    max_attempts: int  # of a pending message


@dataclass(frozen=True, slots=True)
class DeliveryStats:
    """Deliveries to one peer, for operators."""

    peer: str
    pending: int
    failed: int
    delivered: int
    oldest_pending_at: datetime | None
    max_attempts: int
    last_error: str
