"""Teachers who leave: the handoff moves every duty and pending signature to a
living owner, refuses to orphan any, and brings duties back after a leave."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.staffing import CLASS, HOMEROOM, MATH, PRINCIPAL, YEAR, add_page, duty, hire, new_record, sign, signing_ca
from tests.support import RunningNode, refused
from transfer.client import TransferClient
from transfer.domain.leaves import DepartureLeaf, LeafKind, decode_any, departure_reason_digest
from transfer.domain.signatures import verify_signature
from transfer.v1 import pages_pb2, staff_pb2

TODAY = "2026-11-23"  # the fake clock's date in Hà Nội


@pytest.fixture
def admin(node: RunningNode) -> TransferClient:
    return node.client("school-admin-S1")


@pytest.fixture
def system(node: RunningNode) -> TransferClient:
    return node.client("school-S1")


def test_homeroom_teacher_retires_with_a_class_half_signed(
    node: RunningNode, pki: Path, admin: TransferClient, system: TransferClient
) -> None:
    """40 pupils, homeroom signatures half given: after the retirement the replacement signs the rest and
    all 40 lock; the retired teacher's signatures still verify; a late one of theirs is refused."""
    ca = signing_ca(pki)
    home, math, head, new = (
        hire(admin, ca, c, k) for c, k in [("CN", "ecdsa"), ("TOAN", "rsa"), ("HT", "ed25519"), ("CN2", "rsa")]
    )
    admin.assign_duty(duty(HOMEROOM), home.id)
    admin.assign_duty(duty(MATH), math.id)
    admin.assign_duty(duty(PRINCIPAL), head.id)
    pages = [add_page(system, new_record(system)) for _ in range(40)]
    pages = [sign(system, p, MATH, math) for p in pages]
    pages = [sign(system, p, HOMEROOM, home) if i < 20 else p for i, p in enumerate(pages)]
    owed = list(system.iter_signing_tasks(home.id))
    assert len(owed) == 20 and all(t.digest for t in owed)

    handoff, receipt = admin.record_departure(home.id, staff_pb2.DEPARTURE_REASON_RETIREMENT, TODAY, replacement=new.id)
    assert handoff.state == staff_pb2.HANDOFF_STATE_COMPLETED and handoff.moved_tasks == 20
    entry = decode_any(receipt.leaf)
    assert isinstance(entry, DepartureLeaf) and entry.kind is LeafKind.TEACHER_LEFT
    # The reason is in the log only as a digest over the handoff's salt, which the school's admins see.
    assert len(handoff.log_salt) == 16
    assert entry.reason == departure_reason_digest(staff_pb2.DEPARTURE_REASON_RETIREMENT, handoff.log_salt)
    assert entry.reason != departure_reason_digest(staff_pb2.DEPARTURE_REASON_MATERNITY_LEAVE, handoff.log_salt)
    assert system.get_teacher(home.id).status == staff_pb2.TEACHER_STATUS_DEPARTED
    assert list(system.iter_signing_tasks(home.id)) == []
    assert len(list(system.iter_signing_tasks(new.id))) == 20
    assert [d.key for d in system.list_duties(teacher_id=new.id)] == [f"homeroom/{YEAR}/{CLASS}"]

    with refused("PERMISSION_DENIED", "NOT_YOUR_TASK"):
        sign(system, pages[30], HOMEROOM, home)  # a late signature by the retired teacher
    for i in range(20, 40):
        pages[i] = sign(system, pages[i], HOMEROOM, new)
    pages = [sign(system, p, PRINCIPAL, head) for p in pages]
    for p in pages:
        assert system.lock_page(p.id).page.state == pages_pb2.PAGE_STATE_LOCKED
    retired_cert = system.get_teacher(home.id).certificates[0].der
    for p in pages[:20]:
        locked = system.get_page(p.id)
        task = next(t for t in locked.tasks if t.requirement.role == HOMEROOM[0])
        assert task.signed_by_teacher_id == home.id
        assert verify_signature(retired_cert, locked.digest, task.signature)
    kinds = [decode_any(e.leaf).kind for e in system.iter_entries()]
    assert kinds.count(LeafKind.TASK_MOVED) == 20 and kinds.count(LeafKind.DUTY_REASSIGNED) >= 4
    assert kinds.count(LeafKind.PAGE_LOCKED_SALTED) == 40


def test_signatures_refused_from_the_effective_date(
    node: RunningNode, pki: Path, admin: TransferClient, system: TransferClient
) -> None:
    """A departure dated in the future: signatures are fine before it, refused from its first day,
    and the node moves the duties and tasks at that date."""
    ca = signing_ca(pki)
    home, sub = hire(admin, ca, "CN"), hire(admin, ca, "CN2")
    admin.assign_duty(duty(HOMEROOM), home.id)
    a, b = (add_page(system, new_record(system), requirements=[HOMEROOM]) for _ in range(2))
    handoff, _ = admin.record_departure(home.id, staff_pb2.DEPARTURE_REASON_TRANSFER, "2026-11-30", replacement=sub.id)
    assert handoff.state == staff_pb2.HANDOFF_STATE_SCHEDULED
    sign(system, a, HOMEROOM, home)  # before the date
    assert node.clock is not None and node.node is not None
    node.clock.advance(timedelta(days=6, hours=22))  # 30 November, 07:00 in Hà Nội; sweeper not run yet
    with refused("FAILED_PRECONDITION", "TEACHER_NOT_ACTIVE"):
        sign(system, b, HOMEROOM, home)
    node.run(node.node.sweep_once)
    assert system.get_handoff(handoff.id).state == staff_pb2.HANDOFF_STATE_COMPLETED
    assert sign(system, b, HOMEROOM, sub).state == pages_pb2.PAGE_STATE_SIGNED
    assert system.get_page(a.id).tasks[0].signed_by_teacher_id == home.id  # stays valid


def test_a_departure_cannot_be_dated_before_the_teachers_signatures(
    node: RunningNode, pki: Path, admin: TransferClient, system: TransferClient, database_url: str
) -> None:
    """Recorded late, a departure dated back to before a signature the teacher gave would show a departed
    teacher signing: refused, saying when they signed. A date after it, or a leave over before it, is taken."""
    ca = signing_ca(pki)
    t, r = hire(admin, ca, "T"), hire(admin, ca, "R")
    admin.assign_duty(duty(HOMEROOM), t.id)
    page = sign(system, add_page(system, new_record(system), requirements=[HOMEROOM]), HOMEROOM, t)  # 23 Nov
    assert node.clock is not None
    node.clock.advance(timedelta(days=3))  # 26 November
    for effective, end in [("2026-11-20", ""), ("2026-11-23", ""), ("2026-11-20", "2026-11-24")]:
        with refused("FAILED_PRECONDITION", "SIGNED_AFTER_EFFECTIVE_DATE", database_url=database_url) as caught:
            why = staff_pb2.DEPARTURE_REASON_MATERNITY_LEAVE if end else staff_pb2.DEPARTURE_REASON_RETIREMENT
            admin.record_departure(t.id, why, effective, end_date=end, replacement=r.id)
        assert "2026-11-23" in caught[0].message
        assert [v.subject for v in caught[0].preconditions] == [f"teachers/{t.id}"]
    # A leave over before the signature's day, then a retirement dated after it.
    leave, _ = admin.record_departure(
        t.id, staff_pb2.DEPARTURE_REASON_OTHER, "2026-11-16", end_date="2026-11-23", replacement=r.id
    )
    assert leave.state == staff_pb2.HANDOFF_STATE_COMPLETED
    gone, _ = admin.record_departure(t.id, staff_pb2.DEPARTURE_REASON_RETIREMENT, "2026-11-24", replacement=r.id)
    assert gone.state == staff_pb2.HANDOFF_STATE_COMPLETED
    assert system.get_page(page.id).tasks[0].signed_by_teacher_id == t.id  # given before: stays valid


def test_maternity_leave_ends_and_duties_come_back(
    node: RunningNode, pki: Path, admin: TransferClient, system: TransferClient
) -> None:
    """During a leave new pages go to the replacement; at its end the duty returns, moved tasks stay."""
    ca = signing_ca(pki)
    home, sub = hire(admin, ca, "CN"), hire(admin, ca, "CN2")
    admin.assign_duty(duty(HOMEROOM), home.id)
    before = add_page(system, new_record(system), requirements=[HOMEROOM])
    handoff, _ = admin.record_departure(
        home.id, staff_pb2.DEPARTURE_REASON_MATERNITY_LEAVE, TODAY, end_date="2027-05-24", replacement=sub.id
    )
    assert handoff.state == staff_pb2.HANDOFF_STATE_IN_FORCE
    assert system.get_teacher(home.id).status == staff_pb2.TEACHER_STATUS_ON_LEAVE
    during = add_page(system, new_record(system), requirements=[HOMEROOM])
    assert during.tasks[0].assignee_teacher_id == sub.id
    assert node.clock is not None and node.node is not None
    node.clock.advance(datetime(2027, 5, 24, 1, tzinfo=UTC) - node.clock.now())
    node.run(node.node.sweep_once)
    assert system.get_handoff(handoff.id).state == staff_pb2.HANDOFF_STATE_COMPLETED
    assert system.get_teacher(home.id).status == staff_pb2.TEACHER_STATUS_ACTIVE
    assert [d.holder_teacher_id for d in system.list_duties()] == [home.id]
    after = add_page(system, new_record(system), requirements=[HOMEROOM])
    assert after.tasks[0].assignee_teacher_id == home.id  # new duties go back to the returning teacher
    assert system.get_page(before.id).tasks[0].assignee_teacher_id == sub.id  # moved tasks stay
    assert system.get_page(during.id).tasks[0].assignee_teacher_id == sub.id
    kinds = [decode_any(e.leaf).kind for e in system.iter_entries()]
    assert LeafKind.HANDOFF_ENDED in kinds


def test_handoff_that_would_orphan_tasks_is_refused(
    pki: Path, admin: TransferClient, system: TransferClient, database_url: str
) -> None:
    """A replacement for only some duties: refused, listing each uncovered duty and pending signature."""
    ca = signing_ca(pki)
    teacher, sub = hire(admin, ca, "GV"), hire(admin, ca, "GV2")
    admin.assign_duty(duty(HOMEROOM), teacher.id)
    admin.assign_duty(duty(MATH), teacher.id)
    page = add_page(system, new_record(system), requirements=[HOMEROOM, MATH])
    with refused("FAILED_PRECONDITION", "HANDOFF_INCOMPLETE", database_url=database_url) as caught:
        admin.record_departure(
            teacher.id, staff_pb2.DEPARTURE_REASON_RESIGNATION, TODAY, replacements=[(duty(HOMEROOM), sub.id)]
        )
    subjects = {v.subject for v in caught[0].preconditions}
    assert subjects == {f"duties/subject/{YEAR}/{CLASS}/toan", f"pages/{page.id}/subject:toan"}
    assert caught[0].metadata["uncovered"] == "2"
    handoff, _ = admin.record_departure(
        teacher.id, staff_pb2.DEPARTURE_REASON_RESIGNATION, TODAY,
        replacements=[(duty(HOMEROOM), sub.id), (duty(MATH), sub.id)],
    )  # fmt: skip
    assert handoff.moved_tasks == 2


def test_handoff_rules(
    node: RunningNode, pki: Path, admin: TransferClient, system: TransferClient, database_url: str
) -> None:
    """Replacements must be active teachers of the same school; one open handoff per teacher, except that a
    permanent departure supersedes a leave; only admins record departures; a replacement may leave in turn."""
    ca = signing_ca(pki)
    a, b, c = (hire(admin, ca, code) for code in ("A", "B", "C"))
    other = hire(node.client("school-admin-S2"), ca, "Z")
    admin.assign_duty(duty(HOMEROOM), a.id)
    reason = staff_pb2.DEPARTURE_REASON_RETIREMENT
    with refused("FAILED_PRECONDITION", "REPLACEMENT_NOT_ACTIVE", database_url=database_url):
        admin.record_departure(a.id, reason, TODAY, replacement=other.id)
    with refused("FAILED_PRECONDITION", "REPLACEMENT_NOT_ACTIVE", database_url=database_url):
        admin.record_departure(a.id, reason, TODAY, replacement=a.id)
    with refused("PERMISSION_DENIED", "SCHOOL_ADMIN_ONLY", database_url=database_url):
        system.record_departure(a.id, reason, TODAY, replacement=b.id)
    with refused("INVALID_ARGUMENT", "END_DATE_NOT_ALLOWED", database_url=database_url):
        admin.record_departure(a.id, reason, TODAY, end_date="2027-01-01", replacement=b.id)
    with refused("INVALID_ARGUMENT", "END_DATE_REQUIRED", database_url=database_url):
        admin.record_departure(a.id, staff_pb2.DEPARTURE_REASON_MATERNITY_LEAVE, TODAY, replacement=b.id)
    with refused("INVALID_ARGUMENT", "INVALID_DATE", database_url=database_url):
        admin.record_departure(a.id, reason, "23/11/2026", replacement=b.id)
    for out_of_range in ("1969-12-31", "1970-01-01", "3000-01-01"):  # the log counts days from 1970, 0 is "none"
        with refused("INVALID_ARGUMENT", "INVALID_DATE", database_url=database_url):
            admin.record_departure(a.id, reason, out_of_range, replacement=b.id)
    with refused("INVALID_ARGUMENT", "NOT_A_DUTY_OF_TEACHER", database_url=database_url):
        admin.record_departure(a.id, reason, TODAY, replacements=[(duty(MATH), b.id)])

    leave, _ = admin.record_departure(
        a.id, staff_pb2.DEPARTURE_REASON_OTHER, TODAY, end_date="2027-02-01", replacement=b.id
    )
    with refused("FAILED_PRECONDITION", "HANDOFF_ALREADY_OPEN", database_url=database_url):
        admin.record_departure(a.id, staff_pb2.DEPARTURE_REASON_OTHER, TODAY, end_date="2027-03-01", replacement=c.id)
    with refused(
        "FAILED_PRECONDITION", "TEACHER_LEAVING" if False else "REPLACEMENT_NOT_ACTIVE", database_url=database_url
    ):
        admin.assign_duty(duty(MATH), a.id)  # a teacher on leave gets no new duty
    # The replacement leaves in turn: everything they hold (what they received too) moves on.
    page = add_page(system, new_record(system), requirements=[HOMEROOM])
    moved, _ = admin.record_departure(b.id, staff_pb2.DEPARTURE_REASON_TRANSFER, TODAY, replacement=c.id)
    assert moved.moved_tasks == 1 and system.get_page(page.id).tasks[0].assignee_teacher_id == c.id
    # A permanent departure supersedes the open leave: the duty will not come back to A.
    final, _ = admin.record_departure(a.id, reason, TODAY)
    assert final.state == staff_pb2.HANDOFF_STATE_COMPLETED
    assert system.get_handoff(leave.id).state == staff_pb2.HANDOFF_STATE_SUPERSEDED
    assert node.clock is not None and node.node is not None
    node.clock.advance(timedelta(days=90))
    node.run(node.node.sweep_once)
    assert [d.holder_teacher_id for d in system.list_duties()] == [c.id]
    assert {h.id for h in system.iter_handoffs(teacher_id=a.id)} == {leave.id, final.id}


def test_handoff_is_idempotent(pki: Path, admin: TransferClient, system: TransferClient) -> None:
    """The same RecordDeparture sent twice hands off once and answers the same."""
    ca = signing_ca(pki)
    a, b = hire(admin, ca, "A"), hire(admin, ca, "B")
    admin.assign_duty(duty(HOMEROOM), a.id)
    add_page(system, new_record(system), requirements=[HOMEROOM])
    rid = "3f5e2a0c-7d1b-4c8e-9a6f-2b1c0d9e8f7a"
    first = admin.record_departure(a.id, staff_pb2.DEPARTURE_REASON_RETIREMENT, TODAY, replacement=b.id, request_id=rid)
    again = admin.record_departure(a.id, staff_pb2.DEPARTURE_REASON_RETIREMENT, TODAY, replacement=b.id, request_id=rid)
    assert first == again
    assert len(list(system.iter_handoffs())) == 1


def test_a_replaced_page_owes_its_voided_signatures_to_whoever_holds_the_duty_now(
    node: RunningNode, pki: Path, admin: TransferClient, system: TransferClient
) -> None:
    """The homeroom teacher signs, retires; the page is then replaced: the voided signature is owed by the
    teacher who took the duty over, not by the one who left (who could never sign it again)."""
    ca = signing_ca(pki)
    home, successor = hire(admin, ca, "CN"), hire(admin, ca, "CN2")
    admin.assign_duty(duty(HOMEROOM), home.id)
    page = add_page(system, new_record(system), requirements=[HOMEROOM])
    sign(system, page, HOMEROOM, home)
    handoff, _ = admin.record_departure(home.id, staff_pb2.DEPARTURE_REASON_RETIREMENT, TODAY, replacement=successor.id)
    assert handoff.state == staff_pb2.HANDOFF_STATE_COMPLETED
    replaced = system.replace_page(page.id, b"%PDF-1.7 corrected").page
    assert replaced.version == 2
    assert [t.assignee_teacher_id for t in replaced.tasks] == [successor.id]
    assert [t.page_id for t in system.iter_signing_tasks(successor.id)] == [page.id]
    signed = sign(system, replaced, HOMEROOM, successor)
    assert signed.state == pages_pb2.PAGE_STATE_SIGNED


def test_a_named_replacement_cannot_leave_before_the_handoff_naming_them_takes_effect(
    node: RunningNode, pki: Path, admin: TransferClient, system: TransferClient, database_url: str
) -> None:
    """T retires on the 30th and hands over to R. R may not record a departure (now, or the same day, whether R
    names a replacement or not) until T's handoff has taken effect: else the duty would reach a teacher who is
    gone. Once it has, R's departure moves it on."""
    ca = signing_ca(pki)
    t, r, s = hire(admin, ca, "T"), hire(admin, ca, "R"), hire(admin, ca, "S")
    admin.assign_duty(duty(HOMEROOM), t.id)
    retire = staff_pb2.DEPARTURE_REASON_RETIREMENT
    scheduled, _ = admin.record_departure(t.id, retire, "2026-11-30", replacement=r.id)
    assert scheduled.state == staff_pb2.HANDOFF_STATE_SCHEDULED
    for when, replacement in ((TODAY, s.id), ("2026-11-30", None), ("2026-12-15", s.id)):
        with refused("FAILED_PRECONDITION", "TEACHER_NAMED_IN_HANDOFF", database_url=database_url) as caught:
            admin.record_departure(r.id, staff_pb2.DEPARTURE_REASON_TRANSFER, when, replacement=replacement)
        assert scheduled.id in caught[0].message
    # Named for one duty only (not as the blanket replacement) counts the same.
    u = hire(admin, ca, "U")
    admin.assign_duty(duty(MATH), u.id)
    admin.record_departure(u.id, retire, "2026-12-01", replacements=[(duty(MATH), s.id)])
    with refused("FAILED_PRECONDITION", "TEACHER_NAMED_IN_HANDOFF", database_url=database_url):
        admin.record_departure(s.id, retire, TODAY)
    assert node.clock is not None and node.node is not None
    node.clock.advance(timedelta(days=7))  # 2026-11-30
    node.run(node.node.sweep_once)
    assert system.get_handoff(scheduled.id).state == staff_pb2.HANDOFF_STATE_COMPLETED
    moved, _ = admin.record_departure(r.id, staff_pb2.DEPARTURE_REASON_TRANSFER, "2026-11-30", replacement=s.id)
    assert moved.state == staff_pb2.HANDOFF_STATE_COMPLETED
    holders = {d.key: d.holder_teacher_id for d in system.list_duties()}
    assert holders[f"homeroom/{YEAR}/{CLASS}"] == s.id


@pytest.mark.parametrize("first_back", ["holder", "stand-in"])
def test_nested_leaves_give_each_duty_back_to_its_own_holder(
    node: RunningNode, pki: Path, admin: TransferClient, system: TransferClient, first_back: str
) -> None:
    """T goes on maternity leave and R stands in; R then takes a leave too and S stands in for both. Whoever
    comes back first, T ends up with T's duty: R's return does not take it from T."""
    ca = signing_ca(pki)
    t, r, s = hire(admin, ca, "T"), hire(admin, ca, "R"), hire(admin, ca, "S")
    admin.assign_duty(duty(HOMEROOM), t.id)
    admin.assign_duty(duty(MATH), r.id)
    t_end, r_end = ("2027-01-10", "2027-02-10") if first_back == "holder" else ("2027-02-10", "2027-01-10")
    admin.record_departure(t.id, staff_pb2.DEPARTURE_REASON_MATERNITY_LEAVE, TODAY, end_date=t_end, replacement=r.id)
    admin.record_departure(r.id, staff_pb2.DEPARTURE_REASON_OTHER, TODAY, end_date=r_end, replacement=s.id)

    def holders() -> dict[str, str]:
        return {d.key.split("/")[0]: d.holder_teacher_id for d in system.list_duties()}

    assert holders() == {"homeroom": s.id, "subject": s.id}
    assert node.clock is not None and node.node is not None
    node.clock.advance(datetime(2027, 1, 10, 1, tzinfo=UTC) - node.clock.now())
    node.run(node.node.sweep_once)
    if first_back == "holder":
        assert holders() == {"homeroom": t.id, "subject": s.id}
    else:  # R is back and stands in for T again
        assert holders() == {"homeroom": r.id, "subject": r.id}
    node.clock.advance(datetime(2027, 2, 10, 1, tzinfo=UTC) - node.clock.now())
    node.run(node.node.sweep_once)
    assert holders() == {"homeroom": t.id, "subject": r.id}
    assert {h.state for h in system.iter_handoffs()} == {staff_pb2.HANDOFF_STATE_COMPLETED}


def test_the_sweeper_passes_handoffs_it_cannot_apply(
    node: RunningNode, pki: Path, admin: TransferClient, system: TransferClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Handoffs that can no longer take effect (here: their replacement was made inactive behind the rules'
    back, an injected fault) stay SCHEDULED and are reported; the sweep still ends, and a handoff due behind
    a full page of them is applied."""
    from transfer.domain.model import TeacherStatus
    from transfer.server import app

    monkeypatch.setattr(app, "HANDOFF_BATCH", 2)
    ca = signing_ca(pki)
    stuck = []
    for i in range(5):
        t, r = hire(admin, ca, f"T{i}"), hire(admin, ca, f"R{i}")
        admin.assign_duty((HOMEROOM[0], YEAR, f"{CLASS}{i}", ""), t.id)
        handoff, _ = admin.record_departure(t.id, staff_pb2.DEPARTURE_REASON_RETIREMENT, "2026-11-30", replacement=r.id)
        stuck.append((handoff.id, r.id))
    t, r = hire(admin, ca, "T9"), hire(admin, ca, "R9")
    admin.assign_duty((HOMEROOM[0], YEAR, f"{CLASS}9", ""), t.id)
    good, _ = admin.record_departure(t.id, staff_pb2.DEPARTURE_REASON_RETIREMENT, "2026-11-30", replacement=r.id)
    assert node.node is not None and node.node.store is not None and node.clock is not None
    store = node.node.store

    def deactivate(uow: Any) -> None:
        for _, replacement in stuck:
            teacher = uow.teachers.get(replacement)
            uow.teachers.update(replace(teacher, status=TeacherStatus.DEPARTED))

    node.run(lambda: store.write(deactivate))
    node.clock.advance(timedelta(days=7))
    node.run(node.node.sweep_once, timeout=20)
    assert system.get_handoff(good.id).state == staff_pb2.HANDOFF_STATE_COMPLETED
    for handoff_id, _ in stuck:
        assert system.get_handoff(handoff_id).state == staff_pb2.HANDOFF_STATE_SCHEDULED
    node.run(node.node.sweep_once, timeout=20)  # and again: the stuck ones do not stop it


def test_a_permanent_departure_does_not_cancel_a_leave_that_begins_first(
    node: RunningNode, pki: Path, admin: TransferClient, system: TransferClient, database_url: str
) -> None:
    """A maternity leave is scheduled from 1 December. A retirement dated after that would cancel the leave
    and leave the teacher signing while away: it is refused until the leave has begun, then supersedes it.
    A retirement dated no later than the leave's start supersedes it at once (the leave would never begin)."""
    ca = signing_ca(pki)
    t, r = hire(admin, ca, "T"), hire(admin, ca, "R")
    admin.assign_duty(duty(HOMEROOM), t.id)
    leave, _ = admin.record_departure(
        t.id, staff_pb2.DEPARTURE_REASON_MATERNITY_LEAVE, "2026-12-01", end_date="2027-05-31", replacement=r.id
    )
    retire = staff_pb2.DEPARTURE_REASON_RETIREMENT
    with refused("FAILED_PRECONDITION", "HANDOFF_ALREADY_OPEN", database_url=database_url):
        admin.record_departure(t.id, retire, "2027-01-15", replacement=r.id)
    assert node.clock is not None and node.node is not None
    node.clock.advance(timedelta(days=8))  # 1 December: the leave begins
    node.run(node.node.sweep_once)
    assert system.get_teacher(t.id).status == staff_pb2.TEACHER_STATUS_ON_LEAVE
    final, _ = admin.record_departure(t.id, retire, "2027-01-15")
    assert final.state == staff_pb2.HANDOFF_STATE_SCHEDULED
    assert system.get_handoff(leave.id).state == staff_pb2.HANDOFF_STATE_SUPERSEDED

    u = hire(admin, ca, "U")
    admin.record_departure(
        u.id, staff_pb2.DEPARTURE_REASON_MATERNITY_LEAVE, "2027-02-01", end_date="2027-07-31", replacement=r.id
    )
    now_retired, _ = admin.record_departure(u.id, retire, "2026-12-01")  # before the leave would begin
    assert now_retired.state == staff_pb2.HANDOFF_STATE_COMPLETED
    assert system.get_teacher(u.id).status == staff_pb2.TEACHER_STATUS_DEPARTED


def test_a_leave_recorded_after_it_ended_is_over_at_once(
    node: RunningNode, pki: Path, admin: TransferClient, system: TransferClient
) -> None:
    """A short leave recorded late, when its end date has passed: the teacher is active again at once, with
    their duties, rather than on leave until the next sweep."""
    ca = signing_ca(pki)
    t, r = hire(admin, ca, "T"), hire(admin, ca, "R")
    admin.assign_duty(duty(HOMEROOM), t.id)
    handoff, _ = admin.record_departure(
        t.id, staff_pb2.DEPARTURE_REASON_OTHER, "2026-11-16", end_date="2026-11-20", replacement=r.id
    )
    assert handoff.state == staff_pb2.HANDOFF_STATE_COMPLETED
    assert system.get_teacher(t.id).status == staff_pb2.TEACHER_STATUS_ACTIVE
    assert [d.holder_teacher_id for d in system.list_duties()] == [t.id]


def test_a_failing_sweep_stage_does_not_stop_the_handoffs(
    node: RunningNode, pki: Path, admin: TransferClient, system: TransferClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sweeper's stages are independent: when expiring transfers fails (an injected fault), the due
    handoffs are still applied, and the sweep then reports the failure."""
    ca = signing_ca(pki)
    t, r = hire(admin, ca, "T"), hire(admin, ca, "R")
    admin.assign_duty(duty(HOMEROOM), t.id)
    handoff, _ = admin.record_departure(t.id, staff_pb2.DEPARTURE_REASON_RETIREMENT, "2026-11-30", replacement=r.id)
    assert node.node is not None and node.clock is not None

    def broken(uow: Any, limit: int = 0) -> list[Any]:
        raise RuntimeError("injected: expiry fails")

    monkeypatch.setattr(node.node.transfers, "expire_overdue", broken)
    node.clock.advance(timedelta(days=7))
    with pytest.raises(RuntimeError, match="injected"):
        node.run(node.node.sweep_once)
    assert system.get_handoff(handoff.id).state == staff_pb2.HANDOFF_STATE_COMPLETED
