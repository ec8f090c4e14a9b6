"""Use cases: the rules of schools, records and transfers (DESIGN §4-§6).

Each method takes the unit of work of the transaction it runs in and the
authenticated actor. Every refusal is raised before anything is written: the
writer relies on it to batch commands in one transaction (a refused command
leaves no trace and costs its neighbours nothing). Reads and writes both go through the repositories only.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections import Counter
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import TypeVar

from transfer.domain.commands import (
    DecideTransfer,
    InitiateTransfer,
    ListTransfers,
    RegisterRecord,
    RegisterSchool,
    UpdateSchool,
)
from transfer.domain.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    PreconditionViolation,
    Violations,
)
from transfer.domain.federation import Federation
from transfer.domain.leaves import append_entry, transfer_leaf
from transfer.domain.model import (
    Actor,
    Logged,
    LogReceipt,
    Record,
    School,
    StoredResponse,
    Transfer,
    TransferEvent,
    TransferScope,
    TransferState,
)
from transfer.domain.pages import require_here
from transfer.domain.paging import Page, Tokens, bad_cursor, event_mark
from transfer.domain.ports import Clock, IdSource, RandomIds, UnitOfWork
from transfer.domain.validation import lookup_code as check_lookup_code
from transfer.domain.validation import school_code as check_school_code
from transfer.domain.validation import transfer_id as check_transfer_id
from transfer.domain.workdays import deadline_after

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class TransferPolicy:
    """Node configuration the transfer rules depend on."""

    province: str
    deadline_working_days: int = 5
    holidays: Container[date] = ()  # `day in holidays`: a set, or the node's calendar
    utc_offset: timedelta = timedelta(hours=7)


def run_idempotent(
    uow: UnitOfWork,
    actor: Actor,
    request_id: str,
    fingerprint: bytes,
    action: Callable[[], T],
    encode: Callable[[T], bytes],
    clock: Clock,
) -> bytes:
    """Run `action` once per (caller, request_id); repeats get the first answer.

    The encoded answer is stored in the same transaction as the change it
    reports, so a retry after a lost reply finds it. The same request id with a
    different request is refused rather than guessed at.
    """
    stored = uow.idempotency.get(actor.principal, request_id)
    if stored is not None:
        if stored.fingerprint != fingerprint:
            raise InvalidArgument(
                "REQUEST_ID_REUSED",
                "request_id was already used for a different request",
                field_violations=(
                    FieldViolation("request_id", "already used for a different request", "REQUEST_ID_REUSED"),
                ),
            )
        return stored.response
    response = encode(action())
    uow.idempotency.put(actor.principal, request_id, StoredResponse(fingerprint, response), clock.now())
    return response


def _require(condition: bool, reason: str, message: str) -> None:
    if not condition:
        raise PermissionDenied(reason, message)


def _inactive(code: str) -> FailedPrecondition:
    return FailedPrecondition(
        "SCHOOL_INACTIVE",
        f"school {code} is inactive",
        precondition_violations=(PreconditionViolation("SCHOOL_ACTIVE", f"schools/{code}", "school is inactive"),),
    )


def _active_school(uow: UnitOfWork, code: str, field: str) -> School:
    """The named school, which must be registered on this node and active."""
    school = uow.schools.get(code)
    if school is None:
        raise InvalidArgument(
            "UNKNOWN_SCHOOL",
            f"{field}: no school {code} on this node",
            field_violations=(FieldViolation(field, "no such school on this node", "UNKNOWN_SCHOOL"),),
        )
    if not school.active:
        raise _inactive(code)
    return school


def _school_of(actor: Actor, requested: str) -> str:
    """The school a listing is about: the one named, else the caller's own."""
    if requested:
        v = Violations()
        check_school_code(v, requested, "school")
        v.raise_if_any()
        _require(actor.acts_for(requested), "NOT_YOUR_SCHOOL", "you may only see your own school's data")
        return requested
    if actor.school is None:
        raise InvalidArgument(
            "SCHOOL_REQUIRED",
            "school: required for callers not bound to a school",
            field_violations=(
                FieldViolation("school", "required for callers not bound to a school", "SCHOOL_REQUIRED"),
            ),
        )
    _require(actor.acts_for(actor.school), "ROLE_NOT_ALLOWED", f"role {actor.role.value} may not do this")
    return actor.school


class Directory:
    """The node's directory of schools."""

    def __init__(self, province: str, clock: Clock) -> None:
        self.province = province
        self.clock = clock

    def register_school(self, uow: UnitOfWork, actor: Actor, cmd: RegisterSchool) -> School:
        _require(actor.is_province_admin, "PROVINCE_ADMIN_ONLY", "only a province admin registers schools")
        if uow.schools.get(cmd.code) is not None:
            raise AlreadyExists(
                "SCHOOL_EXISTS", f"school {cmd.code} is already registered", resource=("school", cmd.code)
            )
        now = self.clock.now()
        school = School(cmd.code, cmd.name, self.province, True, now, now)
        uow.schools.add(school)
        return school

    def update_school(self, uow: UnitOfWork, actor: Actor, cmd: UpdateSchool) -> School:
        _require(actor.is_province_admin, "PROVINCE_ADMIN_ONLY", "only a province admin updates schools")
        school = uow.schools.get(cmd.code)
        if school is None:
            raise NotFound("SCHOOL_NOT_FOUND", f"no school {cmd.code} on this node", resource=("school", cmd.code))
        updated = replace(
            school,
            name=school.name if cmd.name is None else cmd.name,
            active=school.active if cmd.active is None else cmd.active,
            updated_at=self.clock.now(),
        )
        uow.schools.update(updated)
        return updated

    def get_school(self, uow: UnitOfWork, actor: Actor, code: str) -> School:
        v = Violations()
        check_school_code(v, code, "code")
        v.raise_if_any()
        school = uow.schools.get(code)
        if school is None:
            raise NotFound("SCHOOL_NOT_FOUND", f"no school {code} on this node", resource=("school", code))
        return school

    def list_schools(
        self, uow: UnitOfWork, actor: Actor, page_size: int, page_token: str, tokens: Tokens
    ) -> Page[School]:
        req = tokens.page_request(actor, page_size, page_token, ("schools",))
        after = req.after if isinstance(req.after, str) else None
        rows = uow.schools.page(after, req.size + 1)
        token = tokens.next_token(actor, rows[req.size - 1].code, ("schools",)) if len(rows) > req.size else ""
        return Page(rows[: req.size], token)


# The one answer to a registration that collides with a record the caller may not
# read, whichever key collided (docs/protocol.md, "Who may learn that a pupil has a record").
HELD_ELSEWHERE = (
    "this pupil already has a record on this node, held by another school: it must be transferred "
    "to your school, not registered again (your province admin can find it)"
)


def id_digest(key: bytes, value: str) -> str:
    """A keyed digest of an identifier, for log lines: the same id gives the same digest
    under one key, and without the key the digest names nobody (a plain hash would not
    hide a 12-digit national id: there are only 10^12 of them)."""
    return hmac.new(key, b"hocba:id-digest:v1\0" + value.encode(), hashlib.sha256).hexdigest()[:32]


class Records:
    """Registering and reading records."""

    def __init__(self, clock: Clock, digest_key: bytes | None = None, ids: IdSource | None = None) -> None:
        self.clock = clock
        self.ids = ids if ids is not None else RandomIds()
        # The node passes a key derived from its log key, so digests stay comparable
        # across restarts; without one they are comparable within this process only.
        self.digest_key = digest_key if digest_key is not None else os.urandom(32)
        # Registrations refused for a record held elsewhere, per caller, since start.
        self.held_elsewhere: Counter[str] = Counter()

    def register(self, uow: UnitOfWork, actor: Actor, cmd: RegisterRecord) -> Record:
        custodian = cmd.custodian_school or (actor.school or "")
        if not custodian:
            raise InvalidArgument(
                "SCHOOL_REQUIRED",
                "custodian_school: required for callers not bound to a school",
                field_violations=(FieldViolation("custodian_school", "required", "SCHOOL_REQUIRED"),),
            )
        _require(actor.acts_for(custodian), "NOT_YOUR_SCHOOL", "you may only register records of your own school")
        _active_school(uow, custodian, "custodian_school")
        existing = uow.records.get(cmd.lookup_code)
        if existing is not None:
            raise self._exists(uow, actor, existing, "lookup_code", cmd.lookup_code)
        held = uow.records.student_record(cmd.national_id, cmd.level)
        if held is not None:
            existing = uow.records.get(held)
            assert existing is not None, "a record found by its pupil is found by its lookup code"
            raise self._exists(uow, actor, existing, "national_id", cmd.national_id)
        now = self.clock.now()
        record = Record(
            cmd.lookup_code, cmd.national_id, cmd.level, custodian, None, now, now, page_salts=(new_salt(self.ids),)
        )
        uow.records.add(record)
        return record

    def _exists(self, uow: UnitOfWork, actor: Actor, existing: Record, key: str, value: str) -> AlreadyExists:
        """The refusal of a registration that collides with `existing` on `key`.

        A pupil has one record per level, so the collision must be told; what
        else is told depends on the caller. One who may read the record (its
        custodian, the receiver of its open transfer, a province admin) learns
        which record it is and where. Anyone else gets the same refusal whether
        the lookup code or the national id collided, naming no record and no
        school; it is logged with the caller, a keyed digest of the colliding
        value (never the value) and the caller's count of such refusals. A
        province admin's refusal, which names the school, is logged too."""
        fields: dict[str, str | int] = {
            "caller": actor.principal,
            "conflict": key,
            "id_digest": id_digest(self.digest_key, value),
        }
        if self._may_read(uow, actor, existing):
            resource = ("record", existing.lookup_code)
            where = {"custodian_school": existing.custodian_school}
            logged = fields if actor.is_province_admin else None
            if key == "lookup_code":
                return AlreadyExists(
                    "RECORD_EXISTS", "a record with this lookup code exists", resource=resource, metadata=where,
                    log_fields=logged,
                )  # fmt: skip
            return AlreadyExists(
                "STUDENT_RECORD_EXISTS", "this pupil already has a record of this level", resource=resource,
                metadata=where, log_fields=logged,
            )  # fmt: skip
        self.held_elsewhere[actor.principal] += 1
        fields["held_elsewhere_refusals"] = self.held_elsewhere[actor.principal]
        return AlreadyExists("STUDENT_RECORD_EXISTS", HELD_ELSEWHERE, log_fields=fields)

    def import_batch(self, uow: UnitOfWork, rows: Sequence[tuple[int, RegisterRecord]]) -> ImportOutcome:
        """Register many records at once (an operator's bulk import), with the
        rules of `register`: each row is taken, skipped as already present
        (the same record, so an import can be re-run after an interruption) or
        refused with its reason; refused rows change nothing."""
        outcome = ImportOutcome()
        schools: dict[str, bool] = {}
        seen: set[str] = set()
        students: set[tuple[str, int]] = set()
        now = self.clock.now()
        fresh = []
        for line, cmd in rows:
            school = cmd.custodian_school
            if school not in schools:
                found = uow.schools.get(school)
                schools[school] = found is not None and found.active
            if not schools[school]:
                outcome.refused.append((line, "UNKNOWN_SCHOOL", f"school {school} is not an active school here"))
                continue
            existing = uow.records.get(cmd.lookup_code)
            if existing is not None or cmd.lookup_code in seen:
                same = existing is not None and (existing.national_id, existing.level, existing.custodian_school) == (
                    cmd.national_id, cmd.level, school,
                )  # fmt: skip
                if same:
                    outcome.present += 1
                else:
                    outcome.refused.append((line, "RECORD_EXISTS", "another record has this lookup code"))
                continue
            student = (cmd.national_id, int(cmd.level))
            if student in students or uow.records.student_has_record(cmd.national_id, cmd.level):
                outcome.refused.append((line, "STUDENT_RECORD_EXISTS", "this pupil already has a record of this level"))
                continue
            seen.add(cmd.lookup_code)
            students.add(student)
            fresh.append(
                Record(
                    cmd.lookup_code,
                    cmd.national_id,
                    cmd.level,
                    school,
                    None,
                    now,
                    now,
                    page_salts=(new_salt(self.ids),),
                )
            )
        uow.records.add_many(fresh)
        outcome.added = len(fresh)
        return outcome

    def get(self, uow: UnitOfWork, actor: Actor, lookup_code: str) -> Record:
        v = Violations()
        check_lookup_code(v, lookup_code)
        v.raise_if_any()
        record = uow.records.get(lookup_code)
        if record is None or not self._may_read(uow, actor, record):
            if actor.is_province_admin:
                raise NotFound("RECORD_NOT_FOUND", "no record with this lookup code", resource=("record", lookup_code))
            # Same answer whether or not it exists: nothing leaks (AIP-211).
            raise PermissionDenied("NOT_CUSTODIAN", "your school does not hold this record")
        return visible(actor, record)

    @staticmethod
    def _may_read(uow: UnitOfWork, actor: Actor, record: Record) -> bool:
        if actor.acts_for(record.custodian_school):
            return True
        if record.open_transfer_id is None or actor.school is None:
            return False
        transfer = uow.transfers.get(record.open_transfer_id)
        # School codes are unique within a province only: the receiving school
        # is the one of the transfer's province, not a namesake here.
        return transfer is not None and transfer.to_province == actor.province and actor.acts_for(transfer.to_school)

    def list_records(
        self, uow: UnitOfWork, actor: Actor, school: str, page_size: int, page_token: str, tokens: Tokens
    ) -> Page[Record]:
        school = _school_of(actor, school)
        filters = ("records", school)
        req = tokens.page_request(actor, page_size, page_token, filters)
        after = req.after if isinstance(req.after, str) else None
        rows = uow.records.list_by_custodian(school, after, req.size + 1)
        token = tokens.next_token(actor, rows[req.size - 1].lookup_code, filters) if len(rows) > req.size else ""
        return Page([visible(actor, r) for r in rows[: req.size]], token)


def new_salt(ids: IdSource) -> bytes:
    """16 fresh random bytes (a record's page salt)."""
    return bytes.fromhex(ids.new_id())


def visible(actor: Actor, record: Record) -> Record:
    """The record as `actor` may see it: its page salts only for its custodian (and the province's
    admins). The receiving school of an open transfer reads the record too, but learns its salts
    only if it accepts (with a new one drawn then): a refused transfer leaves it nothing to
    follow the record's later pages with."""
    return record if actor.acts_for(record.custodian_school) else replace(record, page_salts=())


@dataclass
class ImportOutcome:
    """What a bulk import did with its rows (line numbers are the caller's)."""

    added: int = 0
    present: int = 0
    refused: list[tuple[int, str, str]] = field(default_factory=list)


class Transfers:
    """The transfer state machine inside one node (DESIGN §6)."""

    def __init__(
        self, policy: TransferPolicy, clock: Clock, ids: IdSource, federation: Federation | None = None
    ) -> None:
        self.policy = policy
        self.clock = clock
        self.ids = ids
        self.federation = federation

    def _sender(self, actor: Actor, transfer: Transfer) -> bool:
        """Whether the actor may act for the sending school (a school of this node)."""
        return transfer.from_province == self.policy.province and actor.acts_for(transfer.from_school)

    def _receiver(self, actor: Actor, transfer: Transfer) -> bool:
        return transfer.to_province == self.policy.province and actor.acts_for(transfer.to_school)

    # -- commands ---------------------------------------------------------

    def initiate(self, uow: UnitOfWork, actor: Actor, cmd: InitiateTransfer) -> Logged[Transfer]:
        to_province = cmd.to_province or self.policy.province
        record = uow.records.get(cmd.lookup_code)
        if record is None or not actor.acts_for(record.custodian_school):
            if actor.is_province_admin:
                raise NotFound(
                    "RECORD_NOT_FOUND", "no record with this lookup code", resource=("record", cmd.lookup_code)
                )
            raise PermissionDenied("NOT_CUSTODIAN", "only the custodian school may transfer this record")
        require_here(record)
        if record.open_transfer_id is not None:
            raise FailedPrecondition(
                "TRANSFER_ALREADY_OPEN",
                "the record already has an open transfer",
                precondition_violations=(
                    PreconditionViolation(
                        "RECORD_NOT_FROZEN",
                        f"records/{record.lookup_code}",
                        f"open transfer {record.open_transfer_id}",
                    ),
                ),
                metadata={"open_transfer_id": record.open_transfer_id},
            )
        if to_province != self.policy.province:
            if self.federation is None or not self.federation.has_peer(to_province):
                raise FailedPrecondition(
                    "INTER_PROVINCE_UNAVAILABLE",
                    f"this node has no peer for province {to_province}",
                    precondition_violations=(
                        PreconditionViolation("PEER_CONFIGURED", f"provinces/{to_province}", "no peer node configured"),
                    ),
                )
            # The receiving school is on the other node: only its syntax can be checked here.
            return self.federation.offer(
                uow, actor, record, cmd.to_school, to_province, self.ids.new_id(), bytes.fromhex(self.ids.new_id())
            )
        if cmd.to_school == record.custodian_school:
            raise InvalidArgument(
                "SAME_SCHOOL",
                "to_school: the record is already held by this school",
                field_violations=(FieldViolation("to_school", "must differ from the sending school", "SAME_SCHOOL"),),
            )
        _active_school(uow, cmd.to_school, "to_school")
        now = self.clock.now()
        transfer = Transfer(
            id=self.ids.new_id(),
            lookup_code=record.lookup_code,
            from_school=record.custodian_school,
            from_province=self.policy.province,
            to_school=cmd.to_school,
            to_province=to_province,
            scope=TransferScope.INTRA_PROVINCE,
            state=TransferState.REQUESTED,
            reason="",
            created_at=now,
            deadline=deadline_after(
                now,
                self.policy.deadline_working_days,
                utc_offset=self.policy.utc_offset,
                holidays=self.policy.holidays,
            ),
            decided_at=None,
            initiated_by=actor.principal,
            decided_by=None,
            salt=bytes.fromhex(self.ids.new_id()),
        )
        uow.transfers.add(transfer)
        uow.records.update(replace(record, open_transfer_id=transfer.id, updated_at=now))
        return Logged(transfer, self._emit(uow, transfer))

    def decide(self, uow: UnitOfWork, actor: Actor, cmd: DecideTransfer) -> Logged[Transfer]:
        """Accept or reject (receiving school) or cancel (sending school)."""
        transfer = uow.transfers.get(cmd.transfer_id)
        cancelling = cmd.state is TransferState.CANCELLED
        if transfer is None or not (self._sender(actor, transfer) if cancelling else self._receiver(actor, transfer)):
            if actor.is_province_admin:
                raise NotFound("TRANSFER_NOT_FOUND", "no such transfer", resource=("transfer", cmd.transfer_id))
            if cancelling:
                raise PermissionDenied("NOT_SENDING_SCHOOL", "only the sending school may cancel this transfer")
            raise PermissionDenied(
                "NOT_RECEIVING_SCHOOL", f"only the receiving school may {_verb(cmd.state)} this transfer"
            )
        self._require_open(transfer, cmd.state)
        now = self.clock.now()
        if now >= transfer.deadline:
            raise FailedPrecondition(
                "TRANSFER_EXPIRED",
                "the transfer passed its deadline and can no longer be decided",
                precondition_violations=(
                    PreconditionViolation(
                        "TRANSFER_DEADLINE", f"transfers/{transfer.id}", f"deadline {transfer.deadline.isoformat()}"
                    ),
                ),
            )
        if transfer.inter_province:
            return self._decide_inter(uow, actor, transfer, cmd, now)
        record = uow.records.get(transfer.lookup_code)
        if record is None or record.open_transfer_id != transfer.id:
            # The record and the transfer are written together; this is corruption.
            raise RuntimeError(f"record of transfer {transfer.id} is not frozen by it")
        if cmd.state is TransferState.ACCEPTED:
            target = uow.schools.get(transfer.to_school)
            if target is None or not target.active:
                raise _inactive(transfer.to_school)
            # A new page salt with the new custodian: the former one cannot match the pages added from now on.
            record = replace(
                record, custodian_school=transfer.to_school, page_salts=(*record.page_salts, new_salt(self.ids))
            )
        decided = transfer.decided(cmd.state, by=actor.principal, at=now, reason=cmd.reason)
        uow.transfers.update(decided)
        uow.records.update(replace(record, open_transfer_id=None, updated_at=now))
        return Logged(decided, self._emit(uow, decided))

    def _decide_inter(
        self, uow: UnitOfWork, actor: Actor, transfer: Transfer, cmd: DecideTransfer, now: datetime
    ) -> Logged[Transfer]:
        assert self.federation is not None, "an inter-province transfer on a node without peers"
        if cmd.state is TransferState.CANCELLED:  # the sender asks; the receiving node decides
            return self.federation.request_cancel(uow, actor, transfer, cmd.reason)
        if cmd.state is TransferState.ACCEPTED:
            target = uow.schools.get(transfer.to_school)
            if target is None or not target.active:
                raise _inactive(transfer.to_school)
            self.federation.require_importable(uow, transfer)
        decided = transfer.decided(cmd.state, by=actor.principal, at=now, reason=cmd.reason)
        return Logged(decided, self.federation.decided_here(uow, decided, actor.principal))

    def expire_overdue(self, uow: UnitOfWork, limit: int = 500) -> list[Transfer]:
        """Expire open transfers past their deadline; the records unfreeze."""
        now = self.clock.now()
        expired = []
        for transfer in uow.transfers.overdue(now, limit, self.policy.province):
            decided = transfer.decided(TransferState.EXPIRED, by="system", at=now)
            if transfer.inter_province and self.federation is not None:
                self.federation.decided_here(uow, decided, "system")
                expired.append(decided)
                continue
            record = uow.records.get(transfer.lookup_code)
            uow.transfers.update(decided)
            if record is not None and record.open_transfer_id == transfer.id:
                uow.records.update(replace(record, open_transfer_id=None, updated_at=now))
            self._emit(uow, decided)
            expired.append(decided)
        return expired

    # -- queries ----------------------------------------------------------

    def get(self, uow: UnitOfWork, actor: Actor, transfer_id: str) -> Transfer:
        v = Violations()
        check_transfer_id(v, transfer_id)
        v.raise_if_any()
        transfer = uow.transfers.get(transfer_id)
        if transfer is None or not (self._sender(actor, transfer) or self._receiver(actor, transfer)):
            if actor.is_province_admin:
                raise NotFound("TRANSFER_NOT_FOUND", "no such transfer", resource=("transfer", transfer_id))
            raise PermissionDenied("NOT_A_PARTY", "your school neither sends nor receives this transfer")
        return transfer

    def list_transfers(
        self, uow: UnitOfWork, actor: Actor, query: ListTransfers, page_size: int, page_token: str, tokens: Tokens
    ) -> Page[Transfer]:
        school = _school_of(actor, query.school)
        filters = ("transfers", school, int(query.direction), tuple(int(s) for s in query.states))
        req = tokens.page_request(actor, page_size, page_token, filters)
        after = req.after if isinstance(req.after, int) else None
        rows = uow.transfers.page(school, self.policy.province, query.direction, query.states, after, req.size + 1)
        token = tokens.next_token(actor, rows[req.size - 1][0], filters) if len(rows) > req.size else ""
        return Page([t for _, t in rows[: req.size]], token)

    def watch_school(self, actor: Actor, school: str) -> str:
        """The school a watch stream may follow (checks permission only)."""
        return _school_of(actor, school)

    def watch_from(self, uow: UnitOfWork, actor: Actor, school: str, cursor: str, tokens: Tokens) -> int:
        """The sequence number a watch stream of `school` resumes after (0: from the start).

        A cursor must be one this node issued to this caller for this school, and
        name an event this database holds: a cursor ahead of the latest event
        (from a database since restored to an earlier state, whose numbers are
        not yet, or were since, given to other events) would make the stream
        skip, or silently replace, events."""
        position = tokens.parse_cursor(actor, school, cursor)
        if position is None:
            return 0
        held = uow.events.at(position.seq)
        if held is None:
            raise bad_cursor("cursor is ahead of this node's latest event (was its database restored?)")
        if event_mark(*held) != position.mark:
            raise bad_cursor("cursor names an event this node's database no longer holds (was it restored?)")
        return position.seq

    def events_after(self, uow: UnitOfWork, school: str, after_seq: int, limit: int) -> list[TransferEvent]:
        return uow.events.after(school, self.policy.province, after_seq, limit)

    # -- helpers ----------------------------------------------------------

    @staticmethod
    def _require_open(transfer: Transfer, target: TransferState) -> None:
        if not transfer.can_move_to(target):
            raise FailedPrecondition(
                "TRANSFER_NOT_OPEN",
                f"cannot {_verb(target)} a transfer that is {transfer.state.name}",
                precondition_violations=(
                    PreconditionViolation(
                        "TRANSFER_STATE", f"transfers/{transfer.id}", f"transfer is {transfer.state.name}"
                    ),
                ),
                metadata={"state": transfer.state.name},
            )

    @staticmethod
    def _emit(uow: UnitOfWork, transfer: Transfer) -> LogReceipt:
        """Record a change: the watch streams' event and the log's leaf."""
        at = transfer.decided_at or transfer.created_at
        event = TransferEvent(0, transfer, at)
        seq = uow.events.append(event)
        uow.publish(replace(event, seq=seq))
        actor = transfer.decided_by if transfer.decided_by is not None else transfer.initiated_by
        return append_entry(uow.log, transfer_leaf(transfer, actor, at))


def _verb(state: TransferState) -> str:
    return {
        TransferState.ACCEPTED: "accept",
        TransferState.REJECTED: "reject",
        TransferState.CANCELLED: "cancel",
        TransferState.EXPIRED: "expire",
    }.get(state, "change")


__all__ = [
    "Directory",
    "Page",
    "Records",
    "TransferPolicy",
    "Transfers",
    "run_idempotent",
]
