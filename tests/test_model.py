"""The transfer rules as a small model, checked against a running node.

Hypothesis draws sequences of steps — registering records, initiating,
accepting, rejecting and cancelling transfers as different callers (the right
school, the wrong one, a school admin, the province admin), repeating earlier
calls with their request id, reusing a request id for another request,
deactivating a school, moving the clock and running the sweeper — and sends
them to a real node over mTLS. After every step the node must agree with the
model: who controls each record (exactly one school, the one the model says),
each transfer's state, and the outcome of the call (its status code and
reason). At the end of each sequence the log must hold exactly one entry per
change, in order, and each receipt a caller got must name its entry.
"""

from __future__ import annotations

import dataclasses
import enum
import itertools
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import grpc
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

from tests.staffing import CLASS, HOMEROOM, MATH, PRINCIPAL, duty
from tests.support import FakeClock, RunningNode, model_settings, new_lookup_code, new_national_id
from transfer.client import TransferClient, TransferError
from transfer.client.client import TransferChange, new_request_id
from transfer.client.signing import sign_digest
from transfer.devpki import SigningCA
from transfer.domain.leaves import LeafKind, decode_leaf
from transfer.v1 import common_pb2, pages_pb2, staff_pb2, transfers_pb2

T = TypeVar("T")

SCHOOLS = ("S1", "S2", "S3")
UNREGISTERED = "S9"  # has certificates, but is not a school of the node
# Caller identity -> the school it acts for (None: the province admin, who acts for all).
CALLERS: dict[str, str | None] = {
    "school-S1": "S1",
    "school-S2": "S2",
    "school-S3": "S3",
    "school-admin-S2": "S2",
    "province-admin": None,
}
RETENTION = timedelta(days=30)  # request ids are remembered this long (the node's default)


class State(enum.IntEnum):
    REQUESTED = transfers_pb2.TRANSFER_STATE_REQUESTED
    ACCEPTED = transfers_pb2.TRANSFER_STATE_ACCEPTED
    REJECTED = transfers_pb2.TRANSFER_STATE_REJECTED
    CANCELLED = transfers_pb2.TRANSFER_STATE_CANCELLED
    EXPIRED = transfers_pb2.TRANSFER_STATE_EXPIRED


LEAF_OF = {
    State.REQUESTED: LeafKind.TRANSFER_REQUESTED,
    State.ACCEPTED: LeafKind.TRANSFER_ACCEPTED,
    State.REJECTED: LeafKind.TRANSFER_REJECTED,
    State.CANCELLED: LeafKind.TRANSFER_CANCELLED,
    State.EXPIRED: LeafKind.TRANSFER_EXPIRED,
}
VERBS = {"accept": State.ACCEPTED, "reject": State.REJECTED, "cancel": State.CANCELLED}


@dataclasses.dataclass
class ModelTransfer:
    id: str
    code: str
    from_school: str
    to_school: str
    deadline: datetime
    state: State = State.REQUESTED


@dataclasses.dataclass(frozen=True)
class Sent:
    """A mutating call that succeeded: enough to send it again."""

    caller: str
    request_id: str
    verb: str  # "initiate", "accept", "reject", "cancel"
    target: str  # lookup code (initiate) or transfer id
    to_school: str  # initiate only
    reason: str  # reject and cancel
    answer: TransferChange


def acts_for(caller: str, school: str) -> bool:
    own = CALLERS[caller]
    return own is None or own == school


def _refusal(code: grpc.StatusCode, reason: str) -> tuple[str, str]:
    return (code.name, reason)


def start_on_a_monday(clock: FakeClock) -> None:
    """Each sequence starts on a Monday, 09:00 in Hà Nội, so dates fall alike in every replay."""
    now = clock.now()
    monday = (now + timedelta(days=7 - now.weekday())).replace(hour=2, minute=0, second=0, microsecond=0)
    clock.advance(monday - now)


def run_transfer_model(node: RunningNode, examples: int, steps: int) -> None:
    """Run the state machine below against `node` (schools S1–S3 registered)."""
    assert node.clock is not None
    clock = node.clock
    clients = {name: node.client(name) for name in CALLERS}
    admin = clients["province-admin"]
    log_end = [sum(1 for _ in admin.iter_entries(0, page_size=1000))]  # the log's size between sequences

    class TransferModel(RuleBasedStateMachine):
        records = Bundle("records")
        transfers = Bundle("transfers")

        def __init__(self) -> None:
            super().__init__()
            self.custodian: dict[str, str] = {}
            self.open: dict[str, str | None] = {}
            self.by_id: dict[str, ModelTransfer] = {}
            self.inactive: set[str] = set()
            self.used: dict[tuple[str, str], Sent] = {}  # (caller, request id) -> the call it answered
            self.changes: list[tuple[str, LeafKind] | frozenset[tuple[str, LeafKind]]] = []
            self.receipts: list[tuple[int, bytes]] = []
            self.elapsed = timedelta(0)
            self.log_start = log_end[0]
            start_on_a_monday(clock)
            self.touched: set[str] = set()  # lookup codes whose record the last step may have changed

        # -- set-up ------------------------------------------------------------

        @initialize()
        def all_schools_active(self) -> None:
            for code in SCHOOLS:
                if not admin.get_school(code).active:
                    admin.update_school(code, active=True)

        # -- steps -------------------------------------------------------------

        @rule(target=records, school=st.sampled_from(SCHOOLS))
        def register(self, school: str) -> str:
            code = new_lookup_code()
            caller = f"school-{school}"
            if school in self.inactive:
                self._expect_refusal(
                    lambda: clients[caller].register_record(code, new_national_id(), common_pb2.RECORD_LEVEL_PRIMARY),
                    _refusal(grpc.StatusCode.FAILED_PRECONDITION, "SCHOOL_INACTIVE"),
                )
                return multiple()  # type: ignore[return-value]
            record = clients[caller].register_record(code, new_national_id(), common_pb2.RECORD_LEVEL_PRIMARY)
            assert record.custodian_school == school
            self.custodian[code] = school
            self.open[code] = None
            self.touched = {code}
            return code

        @rule(target=transfers, code=records, data=st.data())
        def initiate(self, code: str, data: st.DataObject) -> str:
            self.touched = {code}
            caller = self._caller(data, self.custodian[code])
            others = [s for s in SCHOOLS if s != self.custodian[code]]
            to_school = data.draw(st.sampled_from(others) | st.sampled_from([*SCHOOLS, UNREGISTERED]))
            expected = self._initiate_refusal(code, caller, to_school)
            rid = new_request_id()
            if expected is not None:
                self._expect_refusal(
                    lambda: clients[caller].initiate_transfer(code, to_school, request_id=rid), expected
                )
                return multiple()  # type: ignore[return-value]
            answer = clients[caller].initiate_transfer(code, to_school, request_id=rid)
            t = answer.transfer
            assert (t.lookup_code, t.from_school, t.to_school, t.state) == (
                code,
                self.custodian[code],
                to_school,
                State.REQUESTED,
            )
            deadline = t.deadline.ToDatetime(tzinfo=UTC)
            assert deadline > clock.now()
            self.by_id[t.id] = ModelTransfer(t.id, code, self.custodian[code], to_school, deadline)
            self.open[code] = t.id
            self._changed(t.id, LeafKind.TRANSFER_REQUESTED, answer)
            self.used[(caller, rid)] = Sent(caller, rid, "initiate", code, to_school, "", answer)
            return t.id

        @rule(tid=transfers, verb=st.sampled_from(sorted(VERBS)), data=st.data())
        def decide(self, tid: str, verb: str, data: st.DataObject) -> None:
            t = self.by_id[tid]
            self._decide(t, self._caller(data, t.from_school if verb == "cancel" else t.to_school), verb)

        def _decide(self, t: ModelTransfer, caller: str, verb: str) -> None:
            tid = t.id
            self.touched = {t.code}
            rid = new_request_id()
            expected = self._decision_refusal(t, caller, verb)
            reason = "" if verb == "accept" else f"{verb} by model"
            if expected is not None:
                self._expect_refusal(lambda: self._send(caller, verb, tid, "", reason, rid), expected)
                return
            answer = self._send(caller, verb, tid, "", reason, rid)
            target = VERBS[verb]
            assert answer.transfer.state == target
            t.state = target
            self.open[t.code] = None
            if target is State.ACCEPTED:
                self.custodian[t.code] = t.to_school
            self._changed(tid, LEAF_OF[target], answer)
            self.used[(caller, rid)] = Sent(caller, rid, verb, tid, "", reason, answer)

        @precondition(lambda self: bool(self.used))
        @rule(data=st.data())
        def repeat(self, data: st.DataObject) -> None:
            """The same call with the same request id gets the first answer, whatever happened since."""
            key = data.draw(st.sampled_from(sorted(self.used)))
            s = self.used[key]
            self.touched = set()
            again = self._send(s.caller, s.verb, s.target, s.to_school, s.reason, s.request_id)
            assert again.transfer.SerializeToString(deterministic=True) == s.answer.transfer.SerializeToString(
                deterministic=True
            )
            assert again.receipt == s.answer.receipt

        @precondition(lambda self: bool(self.used))
        @rule(data=st.data(), code=records)
        def reuse_request_id(self, data: st.DataObject, code: str) -> None:
            """A request id already answered, sent with another request: refused, nothing changes."""
            caller, rid = data.draw(st.sampled_from(sorted(self.used)))
            self.touched = {code}
            self._expect_refusal(
                lambda: clients[caller].initiate_transfer(code, UNREGISTERED, request_id=rid),
                _refusal(grpc.StatusCode.INVALID_ARGUMENT, "REQUEST_ID_REUSED"),
            )

        @rule(school=st.sampled_from(SCHOOLS), active=st.sampled_from([True, True, False]))
        def set_active(self, school: str, active: bool) -> None:
            admin.update_school(school, active=active)
            (self.inactive.discard if active else self.inactive.add)(school)
            self.touched = set()

        @precondition(lambda self: self.elapsed < RETENTION - timedelta(days=4))
        @rule(hours=st.sampled_from([1, 5, 30, 80, 170]), sweep=st.booleans())
        def time_passes(self, hours: int, sweep: bool) -> None:
            clock.advance(timedelta(hours=hours))
            self.elapsed += timedelta(hours=hours)
            self.touched = set()
            if sweep:
                self.sweep()

        @rule()
        def sweep(self) -> None:
            """The sweeper expires every open transfer past its deadline, and only those."""
            now = clock.now()
            expired = node.run(node.node.sweep_once)  # type: ignore[union-attr]
            due = [t for t in self.by_id.values() if t.state is State.REQUESTED and t.deadline <= now]
            assert expired == len(due)
            for t in due:
                t.state = State.EXPIRED
                self.open[t.code] = None
            if due:
                self.changes.append(frozenset((t.id, LeafKind.TRANSFER_EXPIRED) for t in due))
            self.touched = {t.code for t in due}

        # -- checks ------------------------------------------------------------

        @invariant()
        def records_agree(self) -> None:
            for code in self.touched:
                record = admin.get_record(code)
                assert record.custodian_school == self.custodian[code]
                assert record.open_transfer_id == (self.open[code] or "")
                tid = self.open[code]
                if tid is not None:
                    assert admin.get_transfer(tid).state == State.REQUESTED

        def teardown(self) -> None:
            # Close what is open (the next sequence starts with nothing pending), then compare.
            self.sweep()
            for t in list(self.by_id.values()):
                if t.state is State.REQUESTED:
                    self._decide(t, "province-admin", "cancel")
            for code, school in self.custodian.items():
                record = admin.get_record(code)
                assert (record.custodian_school, record.open_transfer_id) == (school, self.open[code] or "")
            for t in self.by_id.values():
                assert admin.get_transfer(t.id).state == t.state, t
            entries = list(admin.iter_entries(self.log_start, page_size=1000))
            log_end[0] = self.log_start + len(entries)
            assert [e.index for e in entries] == list(range(self.log_start, self.log_start + len(entries)))
            got = [(decode_leaf(e.leaf).transfer_id, decode_leaf(e.leaf).kind) for e in entries]
            want: list[tuple[str, LeafKind]] = []
            for change in self.changes:  # a sweep's expiries are logged in an order of its own
                if isinstance(change, frozenset):
                    part = got[len(want) : len(want) + len(change)]
                    assert set(part) == change
                    want.extend(part)
                else:
                    want.append(change)
            assert got == want
            by_index = {e.index: e.leaf for e in entries}
            for index, leaf in self.receipts:
                assert by_index[index] == leaf

        # -- helpers -----------------------------------------------------------

        def _caller(self, data: st.DataObject, school: str) -> str:
            """Mostly a caller acting for `school` (its system, its admin, the province admin), else anyone."""
            rightful = sorted(c for c in CALLERS if acts_for(c, school))
            return data.draw(st.sampled_from(rightful) | st.sampled_from(sorted(CALLERS)))

        def _send(self, caller: str, verb: str, target: str, to_school: str, reason: str, rid: str) -> TransferChange:
            c: TransferClient = clients[caller]
            if verb == "initiate":
                return c.initiate_transfer(target, to_school, request_id=rid)
            if verb == "accept":
                return c.accept_transfer(target, request_id=rid)
            if verb == "reject":
                return c.reject_transfer(target, reason, request_id=rid)
            return c.cancel_transfer(target, reason, request_id=rid)

        def _changed(self, tid: str, kind: LeafKind, answer: TransferChange) -> None:
            assert answer.logged
            self.changes.append((tid, kind))
            self.receipts.append((answer.receipt.index, answer.receipt.leaf))

        def _expect_refusal(self, call: object, expected: tuple[str, str]) -> None:
            try:
                call()  # type: ignore[operator]
            except TransferError as err:
                assert (err.code.name, err.reason) == expected, err
            else:
                raise AssertionError(f"expected {expected}, the call succeeded")

        def _initiate_refusal(self, code: str, caller: str, to_school: str) -> tuple[str, str] | None:
            holder = self.custodian[code]
            if not acts_for(caller, holder):
                return _refusal(grpc.StatusCode.PERMISSION_DENIED, "NOT_CUSTODIAN")
            if self.open[code] is not None:
                return _refusal(grpc.StatusCode.FAILED_PRECONDITION, "TRANSFER_ALREADY_OPEN")
            if to_school == holder:
                return _refusal(grpc.StatusCode.INVALID_ARGUMENT, "SAME_SCHOOL")
            if to_school == UNREGISTERED:
                return _refusal(grpc.StatusCode.INVALID_ARGUMENT, "UNKNOWN_SCHOOL")
            if to_school in self.inactive:
                return _refusal(grpc.StatusCode.FAILED_PRECONDITION, "SCHOOL_INACTIVE")
            return None

        def _decision_refusal(self, t: ModelTransfer, caller: str, verb: str) -> tuple[str, str] | None:
            if verb == "cancel" and not acts_for(caller, t.from_school):
                return _refusal(grpc.StatusCode.PERMISSION_DENIED, "NOT_SENDING_SCHOOL")
            if verb != "cancel" and not acts_for(caller, t.to_school):
                return _refusal(grpc.StatusCode.PERMISSION_DENIED, "NOT_RECEIVING_SCHOOL")
            if t.state is not State.REQUESTED:
                return _refusal(grpc.StatusCode.FAILED_PRECONDITION, "TRANSFER_NOT_OPEN")
            if clock.now() >= t.deadline:
                return _refusal(grpc.StatusCode.FAILED_PRECONDITION, "TRANSFER_EXPIRED")
            if verb == "accept" and t.to_school in self.inactive:
                return _refusal(grpc.StatusCode.FAILED_PRECONDITION, "SCHOOL_INACTIVE")
            return None

    run_state_machine_as_test(
        TransferModel,
        settings=model_settings(examples, steps),
    )


def test_transfers_follow_the_model(node: RunningNode) -> None:
    """Random sequences of transfer calls, repeats and clock moves: the node always agrees with the model."""
    run_transfer_model(node, examples=25, steps=30)


# -- teachers leaving: no signature a record needs is left without an owner ------------------

DUTY_SET = (HOMEROOM, MATH, PRINCIPAL)
REASONS = (
    staff_pb2.DEPARTURE_REASON_RETIREMENT,
    staff_pb2.DEPARTURE_REASON_MATERNITY_LEAVE,
    staff_pb2.DEPARTURE_REASON_TRANSFER,
    staff_pb2.DEPARTURE_REASON_OTHER,
)
TEMPORARY = {staff_pb2.DEPARTURE_REASON_MATERNITY_LEAVE, staff_pb2.DEPARTURE_REASON_OTHER}
BROKEN = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS}
ACTIVE = staff_pb2.TEACHER_STATUS_ACTIVE


def local_day(instant: datetime) -> date:
    return (instant + timedelta(hours=7)).date()  # Hà Nội


def run_handoff_model(node: RunningNode, pki: Path, examples: int, steps: int) -> None:
    """Random staffing histories at a fresh school per sequence; after every step that leaves
    nothing due unapplied, each duty and each pending signature belongs to an active teacher."""
    assert node.clock is not None
    clock = node.clock
    admin = node.client("province-admin")  # acts for every school, so each sequence gets a new one
    ca = SigningCA.load(pki)
    schools = itertools.count(1)

    class Staffing(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            now = clock.now()
            self.school = f"H{next(schools)}-{now:%Y%m%d}"
            admin.register_school(self.school, f"Trường {self.school}")
            first = local_day(now).year if local_day(now).month >= 8 else local_day(now).year - 1
            self.year = f"{first}-{first + 1}"
            self.teachers: list[tuple[str, Any]] = []  # (teacher id, signing key)
            self.pages: list[str] = []
            self.in_step = True  # nothing moved in time since the last sweep
            self.elapsed = 0

        def duty(self, requirement: tuple[int, str]) -> tuple[int, str, str, str]:
            return duty(requirement, self.year, CLASS)

        def today(self, offset: int = 0) -> str:
            return (local_day(clock.now()) + timedelta(days=offset)).isoformat()

        @initialize()
        def staffed(self) -> None:
            """Three teachers hold the three duties, so pages can be added from the start."""
            for requirement in DUTY_SET:
                self.hire()
                admin.assign_duty(self.duty(requirement), self.teachers[-1][0], school=self.school)

        @precondition(lambda self: len(self.teachers) < 6)
        @rule()
        def hire(self) -> None:
            code = f"GV{len(self.teachers)}"
            now = clock.now()
            pem, key = ca.teacher(
                code, "ed25519", not_before=now - timedelta(days=1), not_after=now + timedelta(days=400), write=False
            )
            teacher = admin.register_teacher(code, f"Giáo viên {code}", [pem], school=self.school)
            self.teachers.append((teacher.id, key))

        @precondition(lambda self: bool(self.teachers))
        @rule(which=st.sampled_from(DUTY_SET), who=st.integers(0, 5))
        def assign(self, which: tuple[int, str], who: int) -> None:
            teacher_id, _ = self.teachers[who % len(self.teachers)]
            tolerate(lambda: admin.assign_duty(self.duty(which), teacher_id, school=self.school))

        @rule(needs=st.lists(st.sampled_from(DUTY_SET), min_size=1, max_size=3, unique=True))
        def add_page(self, needs: list[tuple[int, str]]) -> None:
            code = new_lookup_code()
            admin.register_record(code, new_national_id(), common_pb2.RECORD_LEVEL_PRIMARY, self.school)
            added = tolerate(lambda: admin.add_page(code, self.year, 3, CLASS, b"%PDF-1.7 hoc ba", needs))
            if added is not None:
                self.pages.append(added.page.id)

        @precondition(lambda self: bool(self.pages))
        @rule(which=st.integers(0, 50))
        def replace_page(self, which: int) -> None:
            page_id = self.pages[which % len(self.pages)]
            tolerate(lambda: admin.replace_page(page_id, f"%PDF-1.7 sửa {which}".encode()))

        @precondition(lambda self: bool(self.pages))
        @rule(which=st.integers(0, 50), task=st.integers(0, 2))
        def sign(self, which: int, task: int) -> None:
            page = admin.get_page(self.pages[which % len(self.pages)])
            pending = [t for t in page.tasks if not t.signed_by_teacher_id]
            if not pending:
                return
            t = pending[task % len(pending)]
            key = dict(self.teachers).get(t.assignee_teacher_id)
            if key is None:  # not one of ours: cannot happen at a school of its own
                raise AssertionError(f"task owed by a stranger: {t}")
            requirement = (t.requirement.role, t.requirement.subject)
            signature = sign_digest(key, page.digest)
            tolerate(lambda: admin.sign_page(page.id, requirement, t.assignee_teacher_id, page.digest, signature))

        @precondition(lambda self: len(self.teachers) >= 2)
        @rule(
            who=st.integers(0, 5),
            reason=st.sampled_from(REASONS),
            starts=st.integers(-3, 4),
            lasts=st.integers(1, 6),
            to_all=st.one_of(st.none(), st.integers(0, 5)),
            per_duty=st.lists(st.tuples(st.sampled_from(DUTY_SET), st.integers(0, 5)), max_size=2),
        )
        def depart(
            self,
            who: int,
            reason: int,
            starts: int,
            lasts: int,
            to_all: int | None,
            per_duty: list[tuple[tuple[int, str], int]],
        ) -> None:
            n = len(self.teachers)
            teacher_id = self.teachers[who % n][0]
            end = self.today(starts + lasts) if reason in TEMPORARY else ""
            replacement = "" if to_all is None else self.teachers[to_all % n][0]
            named = [(self.duty(d), self.teachers[i % n][0]) for d, i in per_duty]
            tolerate(
                lambda: admin.record_departure(
                    teacher_id,
                    reason,
                    self.today(starts),
                    end_date=end,
                    replacement=replacement,
                    replacements=named,
                )
            )

        @precondition(lambda self: self.elapsed < 10)  # the clock runs on through the sequences: keep each short
        @rule(days=st.integers(1, 3), sweep=st.booleans())
        def time_passes(self, days: int, sweep: bool) -> None:
            clock.advance(timedelta(days=days))
            self.elapsed += days
            self.in_step = False
            if sweep:
                self.sweep()

        @rule()
        def sweep(self) -> None:
            node.run(node.node.sweep_once)  # type: ignore[union-attr]
            self.in_step = True

        @invariant()
        def every_signature_owed_has_an_active_owner(self) -> None:
            if not self.in_step:
                return  # a handoff due today may wait for the sweeper
            status = {t.id: t.status for t in admin.iter_teachers(self.school)}
            for d in admin.list_duties(school=self.school):
                assert status.get(d.holder_teacher_id) == ACTIVE, (d, status)
            for page_id in self.pages:
                page = admin.get_page(page_id)
                if page.state == pages_pb2.PAGE_STATE_LOCKED:
                    continue
                for t in page.tasks:
                    if not t.signed_by_teacher_id:
                        assert status.get(t.assignee_teacher_id) == ACTIVE, (page_id, t, status)
            for teacher_id, teacher_status in status.items():
                if teacher_status != ACTIVE:
                    assert not list(admin.iter_signing_tasks(teacher_id)), teacher_id

        def teardown(self) -> None:
            self.sweep()
            self.every_signature_owed_has_an_active_owner()

    run_state_machine_as_test(
        Staffing,
        settings=model_settings(examples, steps),
    )


def tolerate(call: Callable[[], T]) -> T | None:
    """The call's answer, or None when the node refused it cleanly (a refusal with a reason)."""
    try:
        return call()
    except TransferError as err:
        assert err.code not in BROKEN and err.reason, err
        return None


def test_signing_duties_always_have_an_active_owner(node: RunningNode, pki: Path) -> None:
    """Random hires, duties, pages, signatures, departures and leaves, and days passing: once the sweeper
    has run, every duty and every signature still owed belongs to an active teacher."""
    run_handoff_model(node, pki, examples=25, steps=30)
