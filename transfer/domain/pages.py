"""Pages of a record, their required signatures, signing, and the lock (DESIGN §5).

A page is one school year (or segment) of a record, issued by the school that
held the record then. Its content is an opaque payload (the service never
parses it) with a media type and SHA-256. Each required signature (homeroom
teacher, a subject teacher, the principal) becomes a signing task owned by
whoever holds the matching duty when the page is added — a page whose duties
have no holder is refused, so no signature is ever left without an owner.

Rules:
* only the custodian school adds pages; only the issuing school replaces a
  page, signs its tasks (through its system) or locks it — also after the
  record moved on: the old school still answers for the years it issued;
* replacing a page (before the lock) voids the signatures already collected;
* a page locks (chốt dữ liệu) only with every signature; the school locks it,
  or the node does at its lock date (30 June, or 15 August for pupils needing
  supplementary assessment, by configuration); a locked page never changes;
* while the record has an open transfer, nothing about its pages changes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta, timezone

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
from transfer.domain.leaves import SALTED_PAGE_KIND, LeafKind, PageLeaf, append_entry, page_record_digest, record_digest
from transfer.domain.model import (
    Actor,
    DutyKey,
    LockTrack,
    Logged,
    LogReceipt,
    Page,
    PageState,
    Record,
    RecordLevel,
    Requirement,
    SignerRole,
    SigningTask,
    TeacherStatus,
)
from transfer.domain.paging import Page as ListPage
from transfer.domain.paging import Tokens
from transfer.domain.ports import Clock, IdSource, UnitOfWork
from transfer.domain.signatures import SigningTrust, load_certificate, verify_signature

GRADES = {
    RecordLevel.PRIMARY: range(1, 6),
    RecordLevel.LOWER_SECONDARY: range(6, 10),
    RecordLevel.UPPER_SECONDARY: range(10, 13),
}
MAX_REQUIREMENTS = 40


@dataclass(frozen=True, slots=True)
class PagePolicy:
    """Lock dates (month, day) of each track, and the node's local time."""

    lock_completed: tuple[int, int] = (6, 30)
    lock_supplementary: tuple[int, int] = (8, 15)
    utc_offset: timedelta = timedelta(hours=7)

    def lock_date(self, school_year: str, track: LockTrack) -> date:
        month, day = self.lock_completed if track is LockTrack.COMPLETED else self.lock_supplementary
        return date(int(school_year[5:]), month, day)

    def lock_due(self, school_year: str, track: LockTrack) -> datetime:
        """The instant the lock date ends (local midnight after it)."""
        end = self.lock_date(school_year, track) + timedelta(days=1)
        return datetime.combine(end, time(0), tzinfo=timezone(self.utc_offset))


@dataclass(frozen=True, slots=True)
class PageView:
    page: Page
    tasks: tuple[SigningTask, ...]
    payload: bytes | None = None


def page_digest(page_id: str, version: int, payload_sha256: bytes, media_type: str, lookup_code: str,
                school_year: str, segment: str, grade: int, class_name: str) -> bytes:  # fmt: skip
    """What teachers sign: SHA-256 over the page's identity, version and content digest.

    Binding the id and version means a signature can never be replayed onto
    another page, nor onto a replaced version of the same page.
    """
    fields = [
        "hocba:page:v1", page_id, str(version), payload_sha256.hex(), media_type,
        record_digest(lookup_code).hex(), school_year, segment, str(grade), class_name,
    ]  # fmt: skip
    return hashlib.sha256(("\n".join(fields) + "\n").encode("utf-8")).digest()


def _violations(field: str, message: str, reason: str) -> tuple[FieldViolation, ...]:
    return (FieldViolation(field, message, reason),)


def active_holder(uow: UnitOfWork, school: str, duty: DutyKey) -> str | None:
    """The active teacher who holds `duty` at `school`, if there is one."""
    held = uow.duties.get(school, duty)
    holder = uow.teachers.get(held.holder) if held is not None and held.holder else None
    return holder.id if holder is not None and holder.status is TeacherStatus.ACTIVE else None


def _unassigned(duty: DutyKey) -> PreconditionViolation:
    return PreconditionViolation("DUTY_ASSIGNED", f"duties/{duty}", f"no active teacher holds {duty}")


def _duties_unassigned(missing: Sequence[PreconditionViolation]) -> FailedPrecondition:
    return FailedPrecondition(
        "DUTY_UNASSIGNED",
        f"{len(missing)} required signature(s) have no teacher to owe them: assign the duties first",
        precondition_violations=tuple(missing),
    )


@dataclass(frozen=True, slots=True)
class AddPage:
    lookup_code: str
    school_year: str
    segment: str
    grade: int
    class_name: str
    media_type: str
    payload: bytes
    payload_sha256: bytes
    lock_track: LockTrack
    requirements: tuple[Requirement, ...]

    @classmethod
    def parse(
        cls, lookup_code: str, school_year: str, segment: str, grade: int, class_name: str, media_type: str,
        payload: bytes, payload_sha256: bytes, lock_track: int, requirements: Sequence[tuple[int, str]],
    ) -> AddPage:  # fmt: skip
        v = Violations()
        check.lookup_code(v, lookup_code)
        check.school_year(v, school_year)
        check_segment(v, segment)
        if not 1 <= grade <= 12:
            v.add("grade", "must be 1 to 12", "INVALID_GRADE")
        check.class_name(v, class_name)
        _check_content(v, media_type, payload, payload_sha256)
        check.enum_value(v, lock_track, LockTrack, "lock_track")
        reqs = _parse_requirements(v, requirements)
        v.raise_if_any()
        return cls(
            lookup_code, school_year, segment, grade, class_name, media_type, payload, payload_sha256,
            LockTrack(lock_track), reqs,
        )  # fmt: skip


def check_segment(v: Violations, segment: str, field: str = "segment") -> None:
    """A page's segment: empty for a whole school year (a school's request and a peer's package alike)."""
    if not check.SEGMENT.fullmatch(segment):
        v.add(field, "at most 20 lowercase letters, digits or '-'", "INVALID_SEGMENT")


def check_media_type(v: Violations, media_type: str, field: str = "media_type") -> None:
    if len(media_type) > 100 or not check.MEDIA_TYPE.fullmatch(media_type):
        v.add(field, "a media type like application/pdf", "INVALID_MEDIA_TYPE")


def _check_content(v: Violations, media_type: str, payload: bytes, payload_sha256: bytes) -> None:
    check_media_type(v, media_type)
    if not payload:
        v.add("payload", "required", "PAYLOAD_REQUIRED")
    elif len(payload) > check.MAX_PAYLOAD:
        v.add("payload", f"at most {check.MAX_PAYLOAD} bytes", "TOO_LONG")
    elif hashlib.sha256(payload).digest() != payload_sha256:
        v.add("payload_sha256", "is not the SHA-256 of payload", "DIGEST_MISMATCH")


def _parse_requirements(v: Violations, items: Sequence[tuple[int, str]]) -> tuple[Requirement, ...]:
    out: list[Requirement] = []
    if not items:
        v.add("required_signatures", "at least one signature is required", "REQUIREMENTS_REQUIRED")
    if len(items) > MAX_REQUIREMENTS:
        v.add("required_signatures", f"at most {MAX_REQUIREMENTS}", "TOO_LONG")
    for i, (role_value, subject) in enumerate(items):
        field = f"required_signatures[{i}]"
        try:
            role = SignerRole(role_value)
        except ValueError:
            v.add(f"{field}.role", "required" if role_value == 0 else f"unknown value {role_value}", "INVALID_ENUM")
            continue
        if role is SignerRole.SUBJECT:
            check.subject(v, subject, f"{field}.subject")
        elif subject:
            v.add(f"{field}.subject", "only subject teachers' signatures name a subject", "INVALID_SUBJECT")
        req = Requirement(role, subject)
        if req in out:
            v.add(field, f"{req} is listed twice", "DUPLICATE_REQUIREMENT")
        out.append(req)
    return tuple(out)


@dataclass(frozen=True, slots=True)
class ReplacePage:
    page_id: str
    media_type: str
    payload: bytes
    payload_sha256: bytes

    def __post_init__(self) -> None:
        v = Violations()
        check.opaque_id(v, self.page_id, "page_id")
        _check_content(v, self.media_type, self.payload, self.payload_sha256)
        v.raise_if_any()


@dataclass(frozen=True, slots=True)
class SignPage:
    page_id: str
    requirement: Requirement
    teacher_id: str
    digest: bytes
    signature: bytes
    certificate_sha256: str

    @classmethod
    def parse(cls, page_id: str, role: int, subject: str, teacher_id: str, digest: bytes, signature: bytes,
              certificate_sha256: str) -> SignPage:  # fmt: skip
        v = Violations()
        check.opaque_id(v, page_id, "page_id")
        (req,) = _parse_requirements(v, [(role, subject)]) or (Requirement(SignerRole.HOMEROOM),)
        check.opaque_id(v, teacher_id, "teacher_id")
        if len(digest) != 32:
            v.add("digest", "must be the page's 32-byte digest", "INVALID_DIGEST")
        if not 1 <= len(signature) <= 1024:
            v.add("signature", "required, at most 1024 bytes", "INVALID_SIGNATURE")
        if certificate_sha256 and not (len(certificate_sha256) == 64 and _is_hex(certificate_sha256)):
            v.add("certificate_sha256", "64 lowercase hexadecimal characters", "INVALID_FINGERPRINT")
        v.raise_if_any()
        return cls(page_id, req, teacher_id, digest, signature, certificate_sha256)


def _is_hex(s: str) -> bool:
    return all(c in "0123456789abcdef" for c in s)


def require_here(record: Record) -> None:
    """Refuse changes to a record that moved to another province's node (its copy here is read-only)."""
    if record.transferred_out:
        raise FailedPrecondition(
            "RECORD_TRANSFERRED_OUT",
            "the record now lives on another province's node; its copy here is read-only",
            precondition_violations=(
                PreconditionViolation("RECORD_HERE", f"records/{record.lookup_code}", "transferred out"),
            ),
        )


class Pages:
    def __init__(
        self, policy: PagePolicy, trust: SigningTrust, clock: Clock, ids: IdSource, province: str = ""
    ) -> None:
        self.province = province
        self.policy = policy
        self.trust = trust
        self.clock = clock
        self.ids = ids

    # -- helpers ---------------------------------------------------------------

    @staticmethod
    def _record_for_change(uow: UnitOfWork, lookup_code: str) -> Record:
        record = uow.records.get(lookup_code)
        if record is None:
            raise RuntimeError(f"page of unknown record {lookup_code}")
        require_here(record)
        if record.open_transfer_id is not None:
            raise FailedPrecondition(
                "RECORD_FROZEN",
                "the record has an open transfer: its pages cannot change until it is decided",
                precondition_violations=(
                    PreconditionViolation(
                        "RECORD_NOT_FROZEN", f"records/{lookup_code}", f"open transfer {record.open_transfer_id}"
                    ),
                ),
            )
        return record

    def _page_for(self, uow: UnitOfWork, actor: Actor, page_id: str, *, issuer_only: bool) -> Page:
        page = uow.pages.get(page_id)
        ours = page is not None and page.issuing_province in ("", self.province)
        allowed = page is not None and (
            (ours and actor.acts_for(page.issuing_school))
            or (
                not issuer_only
                and (record := uow.records.get(page.lookup_code)) is not None
                and actor.acts_for(record.custodian_school)
            )
        )
        if page is None or not allowed:
            if actor.is_province_admin:
                raise NotFound("PAGE_NOT_FOUND", "no such page", resource=("page", page_id))
            raise PermissionDenied(
                "NOT_ISSUING_SCHOOL" if issuer_only else "NOT_YOUR_PAGE",
                "only the school that issued this page may change it"
                if issuer_only
                else "your school neither holds nor issued this page",
            )
        return page

    @staticmethod
    def _not_locked(page: Page) -> None:
        if page.state is PageState.LOCKED:
            raise FailedPrecondition(
                "PAGE_LOCKED",
                "the page is locked (chốt dữ liệu) and can no longer change",
                precondition_violations=(PreconditionViolation("PAGE_STATE", f"pages/{page.id}", "page is LOCKED"),),
            )

    def _log(self, uow: UnitOfWork, kind: LeafKind, page: Page, actor: str, count: int = 0) -> LogReceipt:
        """A page entry (kinds 19-21), naming the record by its current page salt."""
        record = uow.records.get(page.lookup_code)
        if record is None:
            raise RuntimeError(f"page of unknown record {page.lookup_code}")
        leaf = PageLeaf(
            SALTED_PAGE_KIND[kind], self.clock.now(), page.id,
            page_record_digest(record.page_salt, page.id, page.lookup_code), page.issuing_school,
            page.school_year, page.version, page.digest, actor, count,
        )  # fmt: skip
        return append_entry(uow.log, leaf)

    # -- commands --------------------------------------------------------------

    def add(self, uow: UnitOfWork, actor: Actor, cmd: AddPage) -> Logged[PageView]:
        record = uow.records.get(cmd.lookup_code)
        if record is None or not actor.acts_for(record.custodian_school):
            if actor.is_province_admin:
                raise NotFound(
                    "RECORD_NOT_FOUND", "no record with this lookup code", resource=("record", cmd.lookup_code)
                )
            raise PermissionDenied("NOT_CUSTODIAN", "only the custodian school adds pages to a record")
        self._record_for_change(uow, cmd.lookup_code)
        if cmd.grade not in GRADES[record.level]:
            raise InvalidArgument(
                "GRADE_LEVEL_MISMATCH",
                f"grade: {cmd.grade} is not a grade of a {record.level.name.lower()} record",
                field_violations=_violations(
                    "grade", f"not a grade of a {record.level.name.lower()} record", "GRADE_LEVEL_MISMATCH"
                ),
            )
        if uow.pages.find(cmd.lookup_code, cmd.school_year, cmd.segment) is not None:
            raise AlreadyExists("PAGE_EXISTS", "the record already has a page for this school year and segment")
        school = record.custodian_school
        owners: list[tuple[Requirement, str]] = []
        missing: list[PreconditionViolation] = []
        for req in cmd.requirements:
            duty = req.duty(cmd.school_year, cmd.class_name)
            holder = active_holder(uow, school, duty)
            if holder is None:
                missing.append(_unassigned(duty))
            else:
                owners.append((req, holder))
        if missing:
            raise _duties_unassigned(missing)
        now = self.clock.now()
        page_id = self.ids.new_id()
        sha = cmd.payload_sha256
        page = Page(
            page_id, cmd.lookup_code, school, cmd.school_year, cmd.segment, cmd.grade, cmd.class_name,
            cmd.media_type, sha, len(cmd.payload), 1,
            page_digest(page_id, 1, sha, cmd.media_type, cmd.lookup_code, cmd.school_year, cmd.segment, cmd.grade, cmd.class_name),
            PageState.DRAFT, cmd.lock_track, now, now, None, self.province,
        )  # fmt: skip
        tasks = tuple(
            SigningTask(page_id, req, req.duty(cmd.school_year, cmd.class_name), owner) for req, owner in owners
        )
        uow.pages.add(page, cmd.payload, self.policy.lock_due(cmd.school_year, cmd.lock_track))
        uow.tasks.add(school, tasks)
        return Logged(PageView(page, tasks), self._log(uow, LeafKind.PAGE_ADDED, page, actor.principal))

    def replace(self, uow: UnitOfWork, actor: Actor, cmd: ReplacePage) -> Logged[PageView]:
        page = self._page_for(uow, actor, cmd.page_id, issuer_only=True)
        self._not_locked(page)
        self._record_for_change(uow, page.lookup_code)
        version = page.version + 1
        digest = page_digest(
            page.id, version, cmd.payload_sha256, cmd.media_type, page.lookup_code, page.school_year,
            page.segment, page.grade, page.class_name,
        )  # fmt: skip
        now = self.clock.now()
        new = replace(
            page, media_type=cmd.media_type, payload_sha256=cmd.payload_sha256, payload_size=len(cmd.payload),
            version=version, digest=digest, state=PageState.DRAFT, updated_at=now,
        )  # fmt: skip
        # A voided signature is owed again by whoever holds its duty now: the
        # signer may have left since, and the duty moved on with their handoff.
        tasks = []
        cleared = []
        missing: list[PreconditionViolation] = []
        for task in uow.tasks.of_page(page.id):
            if task.pending:
                tasks.append(task)
                continue
            holder = active_holder(uow, page.issuing_school, task.duty)
            if holder is None:
                missing.append(_unassigned(task.duty))
                continue
            owed = replace(
                task, assignee=holder, signed_by=None, signature=None, certificate_sha256=None, signed_at=None
            )
            cleared.append(owed)
            tasks.append(owed)
        if missing:  # refused before anything is written
            raise _duties_unassigned(missing)
        for task in cleared:
            uow.tasks.update(task)
        voided = len(cleared)
        uow.pages.update(new, cmd.payload)
        return Logged(PageView(new, tuple(tasks)), self._log(uow, LeafKind.PAGE_REPLACED, new, actor.principal, voided))

    def sign(self, uow: UnitOfWork, actor: Actor, cmd: SignPage) -> PageView:
        page = self._page_for(uow, actor, cmd.page_id, issuer_only=True)
        self._not_locked(page)
        self._record_for_change(uow, page.lookup_code)
        tasks = uow.tasks.of_page(page.id)
        task = next((t for t in tasks if t.requirement == cmd.requirement), None)
        if task is None:
            raise InvalidArgument(
                "UNKNOWN_REQUIREMENT",
                f"requirement: the page does not require a {cmd.requirement} signature",
                field_violations=_violations("requirement", "not required by this page", "UNKNOWN_REQUIREMENT"),
            )
        if not task.pending:
            raise FailedPrecondition(
                "ALREADY_SIGNED",
                f"the {cmd.requirement} signature was already given",
                precondition_violations=(
                    PreconditionViolation("TASK_PENDING", f"pages/{page.id}/{cmd.requirement}", "already signed"),
                ),
            )
        if task.assignee != cmd.teacher_id:
            raise PermissionDenied("NOT_YOUR_TASK", f"this {cmd.requirement} signature is owed by another teacher")
        teacher = uow.teachers.get(cmd.teacher_id)
        today = self.clock.now().astimezone(timezone(self.policy.utc_offset)).date()
        leaving = [h for h in uow.handoffs.open_for(cmd.teacher_id) if h.effective_date <= today]
        if teacher is None or teacher.status is not TeacherStatus.ACTIVE or leaving:
            raise FailedPrecondition(
                "TEACHER_NOT_ACTIVE",
                "the teacher has left (or is on leave) since the effective date of their departure",
                precondition_violations=(
                    PreconditionViolation("TEACHER_ACTIVE", f"teachers/{cmd.teacher_id}", "not active"),
                ),
            )
        if cmd.digest != page.digest:
            raise FailedPrecondition(
                "STALE_DIGEST",
                f"the signature is over another digest than version {page.version} of the page",
                precondition_violations=(
                    PreconditionViolation("PAGE_DIGEST", f"pages/{page.id}", f"current version {page.version}"),
                ),
            )
        now = self.clock.now()
        cert = self._verify(uow, cmd, now)
        signed = replace(
            task, signed_by=cmd.teacher_id, signature=cmd.signature, certificate_sha256=cert, signed_at=now
        )
        uow.tasks.update(signed)
        tasks = [signed if t.requirement == task.requirement else t for t in tasks]
        state = PageState.SIGNED if all(not t.pending for t in tasks) else PageState.SIGNING
        new = replace(page, state=state, updated_at=now)
        uow.pages.update(new)
        return PageView(new, tuple(tasks))

    def _verify(self, uow: UnitOfWork, cmd: SignPage, now: datetime) -> str:
        """The fingerprint of the teacher's certificate that verifies the signature now."""
        certs = [
            c
            for c in uow.teachers.certificates(cmd.teacher_id)
            if not cmd.certificate_sha256 or c.sha256 == cmd.certificate_sha256
        ]
        if not certs:
            raise FailedPrecondition(
                "NO_CERTIFICATE",
                "the teacher has no registered certificate"
                + (" with that fingerprint" if cmd.certificate_sha256 else ""),
                precondition_violations=(
                    PreconditionViolation("CERTIFICATE_REGISTERED", f"teachers/{cmd.teacher_id}", "none"),
                ),
            )
        verified = [c for c in certs if verify_signature(c.der, cmd.digest, cmd.signature)]
        if not verified:
            raise InvalidArgument(
                "BAD_SIGNATURE",
                "signature: does not verify with the teacher's certificate(s) over the page digest",
                field_violations=_violations("signature", "does not verify with the teacher's key", "BAD_SIGNATURE"),
            )
        last_error: FailedPrecondition | None = None
        for c in verified:
            try:
                self.trust.check_chain(load_certificate(c.der), [load_certificate(d) for d in c.chain], now)
            except FailedPrecondition as exc:
                last_error = exc
                continue
            return c.sha256
        assert last_error is not None
        raise last_error

    def lock(self, uow: UnitOfWork, actor: Actor, page_id: str) -> Logged[PageView]:
        v = Violations()
        check.opaque_id(v, page_id, "page_id")
        v.raise_if_any()
        page = self._page_for(uow, actor, page_id, issuer_only=True)
        self._not_locked(page)
        self._record_for_change(uow, page.lookup_code)
        return self._lock(uow, page, actor.principal)

    def _lock(self, uow: UnitOfWork, page: Page, actor: str) -> Logged[PageView]:
        tasks = uow.tasks.of_page(page.id)
        missing = [t for t in tasks if t.pending]
        if missing:
            raise FailedPrecondition(
                "PAGE_NOT_FULLY_SIGNED",
                f"{len(missing)} required signature(s) are missing; a locked page needs all of them",
                precondition_violations=tuple(
                    PreconditionViolation(
                        "SIGNATURE_GIVEN", f"pages/{page.id}/{t.requirement}", f"owed by teacher {t.assignee}"
                    )
                    for t in missing
                ),
            )
        now = self.clock.now()
        locked = replace(page, state=PageState.LOCKED, locked_at=now, updated_at=now)
        uow.pages.update(locked)
        return Logged(PageView(locked, tuple(tasks)), self._log(uow, LeafKind.PAGE_LOCKED, locked, actor, len(tasks)))

    def lock_due(self, uow: UnitOfWork, limit: int = 500) -> list[Page]:
        """Lock every fully signed page whose lock date has passed (the node's sweeper)."""
        locked = []
        for page in uow.pages.due_for_lock(self.clock.now(), limit):
            record = uow.records.get(page.lookup_code)
            if record is not None and record.open_transfer_id is not None:
                continue  # frozen: it locks once the transfer is decided
            locked.append(self._lock(uow, page, "system").value.page)
        return locked

    # -- queries ---------------------------------------------------------------

    def get(self, uow: UnitOfWork, actor: Actor, page_id: str, *, include_payload: bool = False) -> PageView:
        v = Violations()
        check.opaque_id(v, page_id, "page_id")
        v.raise_if_any()
        page = self._page_for(uow, actor, page_id, issuer_only=False)
        payload = uow.pages.payload(page.id) if include_payload else None
        return PageView(page, tuple(uow.tasks.of_page(page.id)), payload)

    def list_pages(
        self, uow: UnitOfWork, actor: Actor, lookup_code: str, page_size: int, page_token: str, tokens: Tokens
    ) -> ListPage[PageView]:
        v = Violations()
        check.lookup_code(v, lookup_code)
        v.raise_if_any()
        record = uow.records.get(lookup_code)
        filters = ("pages", lookup_code)
        req = tokens.page_request(actor, page_size, page_token, filters)
        after = req.after if isinstance(req.after, str) else None
        # Other schools see only the pages they issued (read-only, DESIGN §5). A school
        # that issued none gets the refusal an absent record gets, whatever page token it
        # sends (tokens are not secret: one it made up must not tell the two apart).
        issuer: tuple[str, str] | None = None
        if record is None or not actor.acts_for(record.custodian_school):
            if record is not None and actor.school is not None and actor.acts_for(actor.school):
                issuer = (self.province, actor.school)
            if issuer is None or not uow.pages.of_record(lookup_code, issuer, None, 1):
                if actor.is_province_admin:
                    raise NotFound(
                        "RECORD_NOT_FOUND", "no record with this lookup code", resource=("record", lookup_code)
                    )
                raise PermissionDenied("NOT_CUSTODIAN", "your school neither holds this record nor issued a page of it")
        pages = uow.pages.of_record(lookup_code, issuer, after, req.size + 1)
        token = tokens.next_token(actor, pages[req.size - 1].id, filters) if len(pages) > req.size else ""
        visible = pages[: req.size]
        return ListPage([PageView(p, tuple(uow.tasks.of_page(p.id))) for p in visible], token)
