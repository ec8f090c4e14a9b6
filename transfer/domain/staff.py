"""Teachers, their signing duties, their pending tasks, and the handoff when
one leaves (DESIGN §7).

Rules of a handoff (bàn giao), enforced here:

1. Every duty the departing teacher holds and every signing task they still
   owe gets a replacement: one teacher for all, or one per duty (tasks follow
   their duty's replacement, else the one for all). A handoff that would leave
   anything uncovered is refused, listing what is uncovered.
2. A replacement is an active teacher of the same school with no open handoff
   of their own; the departing teacher cannot replace themselves.
3. It takes effect at the start of its effective date (at once if that is
   today or past): duties move, pending tasks move, each move is a log entry,
   and from then on the teacher's signatures are refused. Signatures given
   before stay valid; a departure dated in the past cannot precede one the
   teacher gave while it would have been in force. One dated today takes
   effect when it is recorded: signatures given earlier that day stay valid.
4. A temporary absence (with an end date: maternity leave, long illness) ends
   by itself at the end date: the duties it moved return to the teacher from
   whoever holds them then; tasks already moved stay with whoever holds them.
5. A teacher has at most one open handoff. The one exception: a permanent
   departure recorded while a temporary absence is open supersedes it (the
   return is cancelled).
6. A replacement who leaves in turn hands off everything they hold, including
   what they received; a duty assigned to a teacher with an open handoff is
   refused.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta, timezone

from transfer.domain import validation as check
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
from transfer.domain.leaves import (
    NO_ID,
    DepartureLeaf,
    HandoffEndLeaf,
    LeafKind,
    MoveLeaf,
    append_entry,
    departure_reason_digest,
)
from transfer.domain.model import (
    Actor,
    DepartureReason,
    Duty,
    DutyKey,
    Handoff,
    HandoffState,
    Logged,
    LogReceipt,
    Role,
    SignerRole,
    SigningTask,
    Teacher,
    TeacherStatus,
)
from transfer.domain.paging import Page, Tokens
from transfer.domain.ports import Clock, IdSource, UnitOfWork
from transfer.domain.signatures import CertificateInfo, SigningTrust

TEMPORARY_REASONS = frozenset({DepartureReason.MATERNITY_LEAVE, DepartureReason.OTHER})
MAX_CERTIFICATES = 5


def parse_duty(v: Violations, role: int, school_year: str, class_name: str, subject: str, field: str) -> DutyKey | None:
    """A duty named by its parts, or None after adding violations."""
    try:
        kind = SignerRole(role)
    except ValueError:
        v.add(f"{field}.role", "required" if role == 0 else f"unknown value {role}", "INVALID_ENUM")
        return None
    if kind is SignerRole.PRINCIPAL:
        if school_year or class_name or subject:
            v.add(field, "the principal's duty names no year, class or subject", "INVALID_DUTY")
            return None
        return DutyKey(kind)
    n = len(v.items)
    check.school_year(v, school_year, f"{field}.school_year")
    check.class_name(v, class_name, f"{field}.class_name")
    if kind is SignerRole.SUBJECT:
        check.subject(v, subject, f"{field}.subject")
    elif subject:
        v.add(f"{field}.subject", "only subject duties name a subject", "INVALID_SUBJECT")
    return DutyKey(kind, school_year, class_name, subject) if len(v.items) == n else None


@dataclass(frozen=True, slots=True)
class RegisterTeacher:
    school: str
    code: str
    name: str
    certificates: tuple[bytes, ...]

    def __post_init__(self) -> None:
        v = Violations()
        check.school_code(v, self.school, "school", required=False)
        check.school_code(v, self.code, "code")
        check.text(v, self.name, "name", max_len=200, required=True)
        if not self.certificates:
            v.add("certificates", "at least one signing certificate (PEM)", "CERTIFICATE_REQUIRED")
        if len(self.certificates) > MAX_CERTIFICATES:
            v.add("certificates", f"at most {MAX_CERTIFICATES}", "TOO_LONG")
        v.raise_if_any()


@dataclass(frozen=True, slots=True)
class AssignDuty:
    school: str
    duty: DutyKey
    teacher_id: str


@dataclass(frozen=True, slots=True)
class RecordDeparture:
    teacher_id: str
    reason: DepartureReason
    effective_date: date
    end_date: date | None
    replacement: str | None
    duties: tuple[tuple[DutyKey, str], ...]

    @classmethod
    def parse(
        cls, teacher_id: str, reason: int, effective_date: str, end_date: str, replacement: str,
        duties: Sequence[tuple[int, str, str, str, str]],
    ) -> RecordDeparture:  # fmt: skip
        v = Violations()
        check.opaque_id(v, teacher_id, "teacher_id")
        check.enum_value(v, reason, DepartureReason, "reason")
        check.iso_date(v, effective_date, "effective_date")
        check.iso_date(v, end_date, "end_date", required=False)
        if replacement:
            check.opaque_id(v, replacement, "replacement_teacher_id")
        pairs: list[tuple[DutyKey, str]] = []
        for i, (role, year, klass, subject, teacher) in enumerate(duties):
            duty = parse_duty(v, role, year, klass, subject, f"replacements[{i}]")
            check.opaque_id(v, teacher, f"replacements[{i}].teacher_id")
            if duty is not None:
                if any(d == duty for d, _ in pairs):
                    v.add(f"replacements[{i}]", f"{duty} is listed twice", "DUPLICATE_DUTY")
                pairs.append((duty, teacher))
        v.raise_if_any()
        start = date.fromisoformat(effective_date)
        end = date.fromisoformat(end_date) if end_date else None
        why = DepartureReason(reason)
        if end is not None:
            if why not in TEMPORARY_REASONS:
                v.add("end_date", f"a {why.name.lower()} is permanent: no end date", "END_DATE_NOT_ALLOWED")
            elif end <= start:
                v.add("end_date", "must be after effective_date", "INVALID_DATE")
        elif why is DepartureReason.MATERNITY_LEAVE:
            v.add("end_date", "a maternity leave ends: give its end date", "END_DATE_REQUIRED")
        v.raise_if_any()
        return cls(teacher_id, why, start, end, replacement or None, tuple(pairs))


class Staff:
    def __init__(self, trust: SigningTrust, clock: Clock, ids: IdSource, utc_offset: timedelta) -> None:
        self.trust = trust
        self.clock = clock
        self.ids = ids
        self.tz = timezone(utc_offset)

    def today(self) -> date:
        return self.clock.now().astimezone(self.tz).date()

    # -- access ----------------------------------------------------------------

    @staticmethod
    def _admin_of(actor: Actor, school: str) -> None:
        if not (actor.is_province_admin or (actor.role is Role.SCHOOL_ADMIN and actor.school == school)):
            raise PermissionDenied(
                "SCHOOL_ADMIN_ONLY", "only the school's admin (or a province admin) manages its teachers"
            )

    @staticmethod
    def _school_of(actor: Actor, school: str) -> str:
        school = school or (actor.school or "")
        if not school:
            raise InvalidArgument(
                "SCHOOL_REQUIRED",
                "school: required for callers not bound to a school",
                field_violations=(FieldViolation("school", "required", "SCHOOL_REQUIRED"),),
            )
        v = Violations()
        check.school_code(v, school, "school")
        v.raise_if_any()
        return school

    def _teacher(self, uow: UnitOfWork, actor: Actor, teacher_id: str, *, admin: bool) -> Teacher:
        v = Violations()
        check.opaque_id(v, teacher_id, "teacher_id")
        v.raise_if_any()
        teacher = uow.teachers.get(teacher_id)
        if teacher is None or not actor.acts_for(teacher.school):
            if actor.is_province_admin:
                raise NotFound("TEACHER_NOT_FOUND", "no such teacher", resource=("teacher", teacher_id))
            raise PermissionDenied("NOT_YOUR_TEACHER", "the teacher is not of your school")
        if admin:
            self._admin_of(actor, teacher.school)
        return teacher

    # -- teachers ----------------------------------------------------------------

    def register_teacher(self, uow: UnitOfWork, actor: Actor, cmd: RegisterTeacher) -> Teacher:
        school = self._school_of(actor, cmd.school)
        self._admin_of(actor, school)
        if uow.schools.get(school) is None:
            raise InvalidArgument(
                "UNKNOWN_SCHOOL",
                f"school: no school {school} on this node",
                field_violations=(FieldViolation("school", "no such school on this node", "UNKNOWN_SCHOOL"),),
            )
        if uow.teachers.by_code(school, cmd.code) is not None:
            raise AlreadyExists("TEACHER_EXISTS", f"school {school} already has a teacher with code {cmd.code}")
        now = self.clock.now()
        certs = [self.trust.accept(pem, now) for pem in cmd.certificates]
        teacher = Teacher(self.ids.new_id(), school, cmd.code, cmd.name, TeacherStatus.ACTIVE, now, now)
        uow.teachers.add(teacher)
        for cert in {c.sha256: c for c in certs}.values():
            uow.teachers.add_certificate(teacher.id, cert, now)
        return teacher

    def add_certificate(self, uow: UnitOfWork, actor: Actor, teacher_id: str, pem: bytes) -> Teacher:
        teacher = self._teacher(uow, actor, teacher_id, admin=True)
        now = self.clock.now()
        cert = self.trust.accept(pem, now)
        held = uow.teachers.certificates(teacher.id)
        if any(c.sha256 == cert.sha256 for c in held):
            raise AlreadyExists("CERTIFICATE_EXISTS", "this certificate is already registered for the teacher")
        # Expired certificates stay (they verify the signatures made with them) and do not count.
        if sum(c.not_after > now for c in held) >= MAX_CERTIFICATES:
            problem = f"the teacher already has {MAX_CERTIFICATES} certificates that have not expired"
            raise FailedPrecondition(
                "TOO_MANY_CERTIFICATES",
                problem,
                precondition_violations=(
                    PreconditionViolation("CERTIFICATES_BELOW_LIMIT", f"teachers/{teacher.id}", problem),
                ),
            )
        uow.teachers.add_certificate(teacher.id, cert, now)
        return teacher

    def get_teacher(self, uow: UnitOfWork, actor: Actor, teacher_id: str) -> tuple[Teacher, list[CertificateInfo]]:
        teacher = self._teacher(uow, actor, teacher_id, admin=False)
        return teacher, uow.teachers.certificates(teacher.id)

    def list_teachers(
        self, uow: UnitOfWork, actor: Actor, school: str, page_size: int, page_token: str, tokens: Tokens
    ) -> Page[Teacher]:
        school = self._school_of(actor, school)
        if not actor.acts_for(school):
            raise PermissionDenied("NOT_YOUR_SCHOOL", "you may only see your own school's teachers")
        filters = ("teachers", school)
        req = tokens.page_request(actor, page_size, page_token, filters)
        rows = uow.teachers.page(school, req.after if isinstance(req.after, str) else None, req.size + 1)
        token = tokens.next_token(actor, rows[req.size - 1].code, filters) if len(rows) > req.size else ""
        return Page(rows[: req.size], token)

    # -- duties and tasks --------------------------------------------------------

    def _replacement(
        self, uow: UnitOfWork, teacher_id: str, school: str, field: str, leaving: str | None = None
    ) -> Teacher:
        t = uow.teachers.get(teacher_id)
        problem = None
        if t is None or t.school != school:
            problem = f"no teacher {teacher_id} at school {school}"
        elif t.id == leaving:
            problem = "the departing teacher cannot replace themselves"
        elif t.status is not TeacherStatus.ACTIVE or uow.handoffs.open_for(t.id):
            problem = "is not an active teacher (on leave, departed or leaving)"
        if problem:
            raise FailedPrecondition(
                "REPLACEMENT_NOT_ACTIVE",
                f"{field}: {problem}",
                precondition_violations=(PreconditionViolation("TEACHER_ACTIVE", f"teachers/{teacher_id}", problem),),
            )
        assert t is not None
        return t

    def assign_duty(self, uow: UnitOfWork, actor: Actor, cmd: AssignDuty) -> Logged[Duty]:
        school = self._school_of(actor, cmd.school)
        self._admin_of(actor, school)
        self._replacement(uow, cmd.teacher_id, school, "teacher_id")
        now = self.clock.now()
        old = uow.duties.get(school, cmd.duty)
        previous = old.holder if old is not None else None
        duty = Duty(school, cmd.duty, cmd.teacher_id, now)
        uow.duties.put(duty)
        receipt = self._log_move(
            uow, LeafKind.DUTY_REASSIGNED, NO_ID, school, str(cmd.duty), previous, cmd.teacher_id, actor.principal
        )
        pending = [t for t in uow.tasks.pending_of_duty(school, cmd.duty) if t.assignee != cmd.teacher_id]
        self._move_tasks(uow, pending, cmd.teacher_id, NO_ID, actor.principal)
        return Logged(duty, receipt)

    def list_duties(self, uow: UnitOfWork, actor: Actor, school: str, teacher_id: str) -> list[Duty]:
        if teacher_id:
            teacher = self._teacher(uow, actor, teacher_id, admin=False)
            return uow.duties.held_by(teacher.id)
        school = self._school_of(actor, school)
        if not actor.acts_for(school):
            raise PermissionDenied("NOT_YOUR_SCHOOL", "you may only see your own school's duties")
        return uow.duties.of_school(school)

    def list_tasks(
        self, uow: UnitOfWork, actor: Actor, teacher_id: str, page_size: int, page_token: str, tokens: Tokens
    ) -> Page[SigningTask]:
        """The signatures a teacher still owes, by page."""
        teacher = self._teacher(uow, actor, teacher_id, admin=False)
        filters = ("tasks", teacher.id)
        req = tokens.page_request(actor, page_size, page_token, filters)
        after = tuple(req.after.split("/", 1)) if isinstance(req.after, str) else None
        rows = uow.tasks.pending_for(teacher.id, after, req.size + 1)  # type: ignore[arg-type]
        last = rows[req.size - 1] if len(rows) > req.size else None
        token = tokens.next_token(actor, f"{last.page_id}/{last.requirement}", filters) if last else ""
        return Page(rows[: req.size], token)

    # -- handoffs ----------------------------------------------------------------

    def record_departure(self, uow: UnitOfWork, actor: Actor, cmd: RecordDeparture) -> Logged[Handoff]:
        teacher = self._teacher(uow, actor, cmd.teacher_id, admin=True)
        if teacher.status is TeacherStatus.DEPARTED:
            raise FailedPrecondition("TEACHER_DEPARTED", "the teacher has already departed")
        today = self.today()
        if cmd.effective_date < today:
            self._no_signature_since(uow, teacher, cmd)
        superseded = []
        for open_handoff in uow.handoffs.open_for(teacher.id):
            # A permanent departure replaces an absence that has begun, or one that
            # would only begin once the teacher has left anyway. An absence due to
            # begin first still begins: record the departure once it has.
            begins_first = (
                open_handoff.state is HandoffState.SCHEDULED and open_handoff.effective_date < cmd.effective_date
            )
            if open_handoff.temporary and cmd.end_date is None and not begins_first:
                superseded.append(open_handoff)
            else:
                raise FailedPrecondition(
                    "HANDOFF_ALREADY_OPEN",
                    f"the teacher already has an open handoff (from {open_handoff.effective_date.isoformat()}); only a "
                    "permanent departure may supersede a temporary absence, once it has begun or if it begins no earlier",
                    precondition_violations=(
                        PreconditionViolation(
                            "NO_OPEN_HANDOFF", f"handoffs/{open_handoff.id}", open_handoff.state.name
                        ),
                    ),
                )
        for named in uow.handoffs.scheduled_in_school(teacher.school):
            if named.teacher_id != teacher.id and teacher.id in named.stand_ins():
                # Its duties would reach a teacher who is gone, or already leaving.
                raise FailedPrecondition(
                    "TEACHER_NAMED_IN_HANDOFF",
                    f"the teacher takes over duties in handoff {named.id}, which takes effect on "
                    f"{named.effective_date.isoformat()}: record this departure once it has",
                    precondition_violations=(
                        PreconditionViolation(
                            "NOT_A_PENDING_REPLACEMENT", f"handoffs/{named.id}", "names this teacher as replacement"
                        ),
                    ),
                )
        for i, (_, replacement) in enumerate(cmd.duties):
            self._replacement(uow, replacement, teacher.school, f"replacements[{i}].teacher_id", teacher.id)
        if cmd.replacement:
            self._replacement(uow, cmd.replacement, teacher.school, "replacement_teacher_id", teacher.id)
        held = uow.duties.held_by(teacher.id)
        held_keys = {d.key for d in held}
        for i, (duty, _) in enumerate(cmd.duties):
            if duty not in held_keys:
                raise InvalidArgument(
                    "NOT_A_DUTY_OF_TEACHER",
                    f"replacements[{i}]: the teacher does not hold {duty}",
                    field_violations=(
                        FieldViolation(
                            f"replacements[{i}]", f"{duty} is not held by the teacher", "NOT_A_DUTY_OF_TEACHER"
                        ),
                    ),
                )
        handoff = Handoff(
            self.ids.new_id(), teacher.school, teacher.id, cmd.reason, cmd.effective_date, cmd.end_date,
            cmd.replacement, cmd.duties, HandoffState.SCHEDULED, actor.principal, self.clock.now(),
            salt=bytes.fromhex(self.ids.new_id()),
        )  # fmt: skip
        uncovered = self._uncovered(uow, handoff, held)
        if uncovered:
            raise FailedPrecondition(
                "HANDOFF_INCOMPLETE",
                f"{len(uncovered)} duty(ies) or pending signature(s) would be left without an owner",
                precondition_violations=tuple(uncovered),
                metadata={"uncovered": str(len(uncovered))},
            )
        for old in superseded:
            uow.handoffs.update(replace(old, state=HandoffState.SUPERSEDED, ended_at=handoff.created_at))
        uow.handoffs.add(handoff)
        leaf = DepartureLeaf(
            handoff.created_at, handoff.id, teacher.school, teacher.id,
            departure_reason_digest(int(handoff.reason), handoff.salt), cmd.effective_date, cmd.end_date,
            actor.principal,
        )  # fmt: skip
        receipt = append_entry(uow.log, leaf)
        if cmd.effective_date <= today:
            handoff = self._apply(uow, handoff, actor.principal)
            if handoff.end_date is not None and handoff.end_date <= today:  # recorded after it was over
                handoff = self._end(uow, handoff)
        return Logged(handoff, receipt)

    def _no_signature_since(self, uow: UnitOfWork, teacher: Teacher, cmd: RecordDeparture) -> None:
        """A departure dated in the past cannot precede a signature the teacher gave
        while it would have been in force: the log would show a departed teacher signing."""
        since = datetime.combine(cmd.effective_date, time.min, self.tz)
        until = None if cmd.end_date is None else datetime.combine(cmd.end_date, time.min, self.tz)
        last = uow.tasks.last_signed_by(teacher.id, since, until)
        if last is None:
            return
        day = last.astimezone(self.tz).date().isoformat()
        raise FailedPrecondition(
            "SIGNED_AFTER_EFFECTIVE_DATE",
            f"the teacher signed a page on {day}, on or after the effective date "
            f"{cmd.effective_date.isoformat()}: date the departure after {day}, or today",
            precondition_violations=(
                PreconditionViolation(
                    "NO_SIGNATURE_AFTER_EFFECTIVE_DATE", f"teachers/{teacher.id}", f"signed on {day}"
                ),
            ),
        )

    def _uncovered(self, uow: UnitOfWork, handoff: Handoff, held: Sequence[Duty]) -> list[PreconditionViolation]:
        """What the handoff would leave without an active owner: duties and
        pending signatures it names nobody for, or only a teacher who is no
        longer active."""
        active: dict[str, bool] = {}

        def covered(duty: DutyKey) -> bool:
            to = handoff.replacement_for(duty)
            if to is None:
                return False
            if to not in active:
                t = uow.teachers.get(to)
                active[to] = t is not None and t.status is TeacherStatus.ACTIVE
            return active[to]

        out = [
            PreconditionViolation("DUTY_COVERED", f"duties/{d.key}", "no active replacement named for this duty")
            for d in held
            if not covered(d.key)
        ]
        for task in self._all_pending(uow, handoff.teacher_id):
            if not covered(task.duty):
                out.append(
                    PreconditionViolation(
                        "TASK_COVERED", f"pages/{task.page_id}/{task.requirement}", f"pending signature for {task.duty}"
                    )
                )
        return out

    @staticmethod
    def _all_pending(uow: UnitOfWork, teacher_id: str) -> list[SigningTask]:
        tasks: list[SigningTask] = []
        after = None
        while True:
            batch = uow.tasks.pending_for(teacher_id, after, 5000)
            tasks += batch
            if len(batch) < 5000:
                return tasks
            after = (batch[-1].page_id, str(batch[-1].requirement))

    def _apply(self, uow: UnitOfWork, handoff: Handoff, actor: str) -> Handoff:
        """Move the teacher's duties and pending tasks; the teacher leaves."""
        held = uow.duties.held_by(handoff.teacher_id)
        uncovered = self._uncovered(uow, handoff, held)
        if uncovered:  # something was given to the teacher after the handoff was recorded
            raise FailedPrecondition(
                "HANDOFF_INCOMPLETE",
                "the handoff no longer covers everything",
                precondition_violations=tuple(uncovered),
            )
        now = self.clock.now()
        moved_duties: list[tuple[DutyKey, str]] = []
        for duty in held:
            to = handoff.replacement_for(duty.key)
            assert to is not None
            uow.duties.put(replace(duty, holder=to, updated_at=now))
            self._log_move(
                uow, LeafKind.DUTY_REASSIGNED, handoff.id, handoff.school, str(duty.key), handoff.teacher_id, to, actor
            )
            moved_duties.append((duty.key, to))
        by_target: dict[str, list[SigningTask]] = defaultdict(list)
        tasks = self._all_pending(uow, handoff.teacher_id)
        for task in tasks:
            to = handoff.replacement_for(task.duty)
            assert to is not None
            by_target[to].append(task)
        for to, group in by_target.items():
            self._move_tasks(uow, group, to, handoff.id, actor)
        teacher = uow.teachers.get(handoff.teacher_id)
        assert teacher is not None
        status = TeacherStatus.ON_LEAVE if handoff.temporary else TeacherStatus.DEPARTED
        uow.teachers.update(replace(teacher, status=status, updated_at=now))
        applied = replace(
            handoff,
            duties=tuple(moved_duties),
            state=HandoffState.IN_FORCE if handoff.temporary else HandoffState.COMPLETED,
            applied_at=now,
            moved_tasks=len(tasks),
        )
        uow.handoffs.update(applied)
        return applied

    def _end(self, uow: UnitOfWork, handoff: Handoff) -> Handoff:
        """A temporary absence is over: the duties it moved come back; moved tasks stay."""
        now = self.clock.now()
        for key, stand_in in handoff.duties:
            current = uow.duties.get(handoff.school, key)
            previous = current.holder if current is not None else None
            uow.duties.put(Duty(handoff.school, key, handoff.teacher_id, now))
            self._release_stand_ins(uow, key, stand_in)
            self._log_move(
                uow,
                LeafKind.DUTY_REASSIGNED,
                handoff.id,
                handoff.school,
                str(key),
                previous,
                handoff.teacher_id,
                "system",
            )
        teacher = uow.teachers.get(handoff.teacher_id)
        assert teacher is not None
        uow.teachers.update(replace(teacher, status=TeacherStatus.ACTIVE, updated_at=now))
        ended = replace(handoff, state=HandoffState.COMPLETED, ended_at=now)
        uow.handoffs.update(ended)
        append_entry(uow.log, HandoffEndLeaf(now, handoff.id, handoff.school, handoff.teacher_id, "system"))
        return ended

    @staticmethod
    def _release_stand_ins(uow: UnitOfWork, key: DutyKey, stand_in: str) -> None:
        """The duty `key` went back to its holder: the stand-in (and theirs, when
        the stand-in is away too) no longer hold it, so the end of their own
        absence must not take it back."""
        seen: set[str] = set()
        while stand_in not in seen:
            seen.add(stand_in)
            for h in uow.handoffs.open_for(stand_in):
                if h.state is HandoffState.IN_FORCE and any(k == key for k, _ in h.duties):
                    uow.handoffs.update(replace(h, duties=tuple((k, t) for k, t in h.duties if k != key)))
                    stand_in = h.replacement_for(key) or stand_in
                    break
            else:
                return

    def apply_due(
        self, uow: UnitOfWork, limit: int = 100, after: tuple[datetime, str] | None = None
    ) -> tuple[list[Handoff], tuple[datetime, str] | None]:
        """Apply handoffs whose effective date came, end absences whose end date came (the sweeper).

        Looks at up to `limit` due handoffs, those created after `after`, and
        returns what it did, with the place to go on from (None when it saw
        the last). A handoff that no longer covers everything (which the rules
        above prevent) stays SCHEDULED rather than orphaning a task; it is
        returned unchanged so the caller can report it, and the next call goes
        on past it.
        """
        today = self.today()
        done = []
        due = uow.handoffs.due(today, limit, after)
        for handoff in due:
            if handoff.state is HandoffState.SCHEDULED:
                if self._uncovered(uow, handoff, uow.duties.held_by(handoff.teacher_id)):
                    done.append(handoff)
                    continue
                done.append(self._apply(uow, handoff, "system"))
                if handoff.end_date is not None and handoff.end_date <= today:
                    done.append(self._end(uow, done[-1]))
            elif handoff.state is HandoffState.IN_FORCE:
                done.append(self._end(uow, handoff))
        more = (due[-1].created_at, due[-1].id) if len(due) == limit else None
        return done, more

    def get_handoff(self, uow: UnitOfWork, actor: Actor, handoff_id: str) -> Handoff:
        v = Violations()
        check.opaque_id(v, handoff_id, "handoff_id")
        v.raise_if_any()
        handoff = uow.handoffs.get(handoff_id)
        if handoff is None or not actor.acts_for(handoff.school):
            if actor.is_province_admin:
                raise NotFound("HANDOFF_NOT_FOUND", "no such handoff", resource=("handoff", handoff_id))
            raise PermissionDenied("NOT_YOUR_SCHOOL", "the handoff is not of your school")
        return handoff

    def list_handoffs(
        self,
        uow: UnitOfWork,
        actor: Actor,
        school: str,
        teacher_id: str,
        page_size: int,
        page_token: str,
        tokens: Tokens,
    ) -> Page[Handoff]:
        school = self._school_of(actor, school)
        if not actor.acts_for(school):
            raise PermissionDenied("NOT_YOUR_SCHOOL", "you may only see your own school's handoffs")
        if teacher_id:
            v = Violations()
            check.opaque_id(v, teacher_id, "teacher_id")
            v.raise_if_any()
        filters = ("handoffs", school, teacher_id)
        req = tokens.page_request(actor, page_size, page_token, filters)
        rows = uow.handoffs.page(
            school, teacher_id or None, req.after if isinstance(req.after, str) else None, req.size + 1
        )
        token = tokens.next_token(actor, _handoff_key(rows[req.size - 1]), filters) if len(rows) > req.size else ""
        return Page(rows[: req.size], token)

    # -- log -------------------------------------------------------------------

    def _log_move(
        self, uow: UnitOfWork, kind: LeafKind, handoff_id: str, school: str, subject: str,
        from_teacher: str | None, to_teacher: str, actor: str, page_id: str = NO_ID,
    ) -> LogReceipt:  # fmt: skip
        leaf = MoveLeaf(
            kind, self.clock.now(), handoff_id, school, subject, from_teacher or NO_ID, to_teacher, actor, page_id
        )
        return append_entry(uow.log, leaf)

    def _move_tasks(self, uow: UnitOfWork, tasks: Sequence[SigningTask], to: str, handoff_id: str, actor: str) -> None:
        if not tasks:
            return
        uow.tasks.reassign(tasks, to)
        for task in tasks:
            self._log_move(
                uow, LeafKind.TASK_MOVED, handoff_id, "", str(task.requirement), task.assignee, to, actor, task.page_id
            )


def _handoff_key(h: Handoff) -> str:
    """Paging key: creation instant (µs since the epoch) and id, the order handoffs are listed in."""
    us = (h.created_at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    return f"{us}:{h.id}"


__all__ = ["AssignDuty", "RecordDeparture", "RegisterTeacher", "Staff", "parse_duty"]
