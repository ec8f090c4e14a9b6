"""gRPC servicers: convert the request, call one use case, convert back.

Every method runs under `_guard`, which authenticates the caller from its
certificate first, then turns domain refusals into statuses with details and
anything unexpected into INTERNAL (logged with its stack, never shown to the
caller). Mutations go through `_mutate`: idempotent by
request_id, executed by the node's single writer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from storage.store import Store
from storage.writer import WriterStopped
from transfer.domain import commands
from transfer.domain.errors import (
    DomainError,
    FieldViolation,
    InvalidArgument,
    PermissionDenied,
    Unavailable,
    Violations,
)
from transfer.domain.logbook import Logbook, LogInfo
from transfer.domain.model import Actor, Logged, Role, Transfer, TransferState
from transfer.domain.pages import AddPage, Pages, PageView, ReplacePage, SignPage
from transfer.domain.paging import Tokens
from transfer.domain.ports import Clock, ReadAhead, UnitOfWork
from transfer.domain.services import Directory, Records, Transfers, run_idempotent
from transfer.domain.staff import AssignDuty, RecordDeparture, RegisterTeacher, Staff, parse_duty
from transfer.domain.validation import canonical_request_id
from transfer.domain.validation import opaque_id as check_opaque_id
from transfer.domain.validation import request_id as check_request_id
from transfer.domain.validation import school_code as check_school_code
from transfer.ledger.receipt import ProofBundle
from transfer.server import convert, faults
from transfer.server.auth import Authenticator
from transfer.server.calllog import traced
from transfer.server.errors import code_of, quote, to_status
from transfer.server.limits import StreamQuota
from transfer.server.notify import Notifier
from transfer.v1 import (
    log_pb2,
    log_pb2_grpc,
    pages_pb2,
    pages_pb2_grpc,
    records_pb2,
    records_pb2_grpc,
    schools_pb2,
    schools_pb2_grpc,
    staff_pb2,
    staff_pb2_grpc,
    transfers_pb2,
    transfers_pb2_grpc,
)

log = logging.getLogger("transfer.rpc")
M = TypeVar("M", bound=Message)
R = TypeVar("R")
C = TypeVar("C")

WATCH_BATCH = 200


async def _refuse(context: grpc.aio.ServicerContext[Any, Any], method: str, exc: BaseException) -> None:
    if isinstance(exc, WriterStopped):
        exc = Unavailable("SHUTTING_DOWN", "the node is shutting down; retry")
    if isinstance(exc, DomainError):
        log.info(
            "refused",
            extra={**exc.log_fields, "method": method, "code": code_of(exc).name, "reason": exc.reason},
        )
        await context.abort_with_status(traced(to_status(exc)))
    ref = secrets.token_hex(6)
    log.error("internal error", exc_info=exc, extra={"method": method, "ref": ref})
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error (ref {ref})")


def _parsed(request_id: str, build: Callable[[Violations], C]) -> C:
    """A mutation's command, built and checked together with its request_id: a
    request with several bad fields is refused once, naming all of them.

    `build` adds what it checks itself to the collector it is given and
    constructs the command (commands raise InvalidArgument on construction)."""
    v = Violations()
    check_request_id(v, request_id)
    own = Violations()
    try:
        cmd = build(own)
        own.raise_if_any()
    except InvalidArgument as exc:
        v.items.extend(exc.field_violations or (FieldViolation("", exc.message, exc.reason),))
        v.raise_if_any()
        raise  # not reached: v holds at least exc's violation
    v.raise_if_any()
    return cmd


def _guard(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Authenticate the caller, run the method as that actor, map failures to statuses."""

    @functools.wraps(fn)
    async def unary(self: _Base, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            return await fn(self, request, self._caller(context))
        except (asyncio.CancelledError, grpc.aio.AbortError):
            raise
        except Exception as exc:
            await _refuse(context, fn.__name__, exc)

    return unary


def _guard_stream(fn: Callable[..., AsyncIterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
    @functools.wraps(fn)
    async def stream(self: _Base, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        try:
            async for item in fn(self, request, self._caller(context)):
                yield item
        except (asyncio.CancelledError, grpc.aio.AbortError):
            raise
        except Exception as exc:
            await _refuse(context, fn.__name__, exc)

    return stream


class _Base:
    # Peer nodes may call PeerService, and read the log (LogService): nothing else.
    peers_allowed = False
    # Signs the entry promise of each receipt a mutation returns (None: this service returns none).
    receipts: Logbook | None = None

    def __init__(self, store: Store, auth: Authenticator, clock: Clock) -> None:
        self.store = store
        self.auth = auth
        self.clock = clock

    def _caller(self, context: grpc.aio.ServicerContext[Any, Any]) -> Actor:
        actor = self.auth.actor(context)
        if actor.role is Role.PEER and not self.peers_allowed:
            raise PermissionDenied("ROLE_NOT_ALLOWED", "peer nodes may call only PeerService and LogService")
        return actor

    async def _mutate(
        self,
        actor: Actor,
        method: str,
        request: Message,
        request_id: str,
        action: Callable[[UnitOfWork, Actor], Any],
        encode: Callable[[Any], Message],
        response_type: type[M],
        reads: ReadAhead | None = None,
    ) -> M:
        """Run `action` once per request_id through the single writer.

        `reads` names rows the action will read, for the writer to fetch with
        the rest of its batch."""
        v = Violations()
        check_request_id(v, request_id)
        v.raise_if_any()
        key = canonical_request_id(request_id)
        if key != request_id:  # fingerprint the request as if spelled canonically
            canonical = type(request)()
            canonical.CopyFrom(request)
            canonical.request_id = key  # type: ignore[attr-defined]
            request = canonical
        fingerprint = hashlib.sha256(method.encode() + b"\0" + request.SerializeToString(deterministic=True)).digest()
        built: list[Message] = []  # the answer as made, when this call ran the action

        def answer(result: Any) -> bytes:
            message = encode(result)
            built.append(message)
            return message.SerializeToString()

        blob = await self.store.write(
            lambda uow: run_idempotent(uow, actor, key, fingerprint, lambda: action(uow, actor), answer, self.clock),
            (actor.principal, key),
            reads,
        )
        # The writer may have run the command twice (a batch undone, then the
        # command alone): the last answer made is the committed one. A repeat
        # of an earlier request made none and gets the stored bytes.
        response = built[-1] if built else response_type.FromString(blob)
        # The receipt's entry promise is signed here, after the commit, off the writer's critical
        # section; it is deterministic, so a repeat answered from the stored bytes gets the same one.
        return convert.with_promise(response, self.receipts)  # type: ignore[return-value]


class SchoolDirectoryServicer(_Base, schools_pb2_grpc.SchoolDirectoryServiceServicer):
    def __init__(self, store: Store, auth: Authenticator, clock: Clock, tokens: Tokens, directory: Directory) -> None:
        super().__init__(store, auth, clock)
        self.tokens = tokens
        self.directory = directory

    @_guard
    async def RegisterSchool(self, request: schools_pb2.RegisterSchoolRequest, actor: Actor) -> Any:
        cmd = _parsed(request.request_id, lambda v: commands.RegisterSchool(request.code, request.name))
        return await self._mutate(
            actor,
            "RegisterSchool",
            request,
            request.request_id,
            lambda uow, actor: self.directory.register_school(uow, actor, cmd),
            lambda s: schools_pb2.RegisterSchoolResponse(school=convert.school_pb(s)),
            schools_pb2.RegisterSchoolResponse,
        )

    @_guard
    async def UpdateSchool(self, request: schools_pb2.UpdateSchoolRequest, actor: Actor) -> Any:
        paths = set(request.update_mask.paths)

        def build(v: Violations) -> commands.UpdateSchool:
            for p in sorted(paths - {"name", "active"}):
                v.add("update_mask", f"unknown or immutable field {quote(p)} (use name, active)", "INVALID_UPDATE_MASK")
            v.raise_if_any()
            return commands.UpdateSchool(
                request.school.code,
                request.school.name if "name" in paths else None,
                request.school.active if "active" in paths else None,
            )

        cmd = _parsed(request.request_id, build)
        if list(request.update_mask.paths) != sorted(paths):  # the same update, however its mask is spelled
            canonical = schools_pb2.UpdateSchoolRequest()
            canonical.CopyFrom(request)
            canonical.update_mask.paths[:] = sorted(paths)
            request = canonical
        return await self._mutate(
            actor,
            "UpdateSchool",
            request,
            request.request_id,
            lambda uow, actor: self.directory.update_school(uow, actor, cmd),
            lambda s: schools_pb2.UpdateSchoolResponse(school=convert.school_pb(s)),
            schools_pb2.UpdateSchoolResponse,
        )

    @_guard
    async def GetSchool(self, request: schools_pb2.GetSchoolRequest, actor: Actor) -> Any:
        school = await self.store.read(lambda uow: self.directory.get_school(uow, actor, request.code))
        return schools_pb2.GetSchoolResponse(school=convert.school_pb(school))

    @_guard
    async def ListSchools(self, request: schools_pb2.ListSchoolsRequest, actor: Actor) -> Any:
        page = await self.store.read(
            lambda uow: self.directory.list_schools(uow, actor, request.page_size, request.page_token, self.tokens)
        )
        return schools_pb2.ListSchoolsResponse(
            schools=[convert.school_pb(s) for s in page.items], next_page_token=page.next_page_token
        )


class RecordServicer(_Base, records_pb2_grpc.RecordServiceServicer):
    def __init__(self, store: Store, auth: Authenticator, clock: Clock, tokens: Tokens, records: Records) -> None:
        super().__init__(store, auth, clock)
        self.tokens = tokens
        self.records = records

    @_guard
    async def RegisterRecord(self, request: records_pb2.RegisterRecordRequest, actor: Actor) -> Any:
        cmd = _parsed(
            request.request_id,
            lambda v: commands.RegisterRecord.parse(
                request.lookup_code, request.national_id, request.level, request.custodian_school
            ),
        )
        return await self._mutate(
            actor,
            "RegisterRecord",
            request,
            request.request_id,
            lambda uow, actor: self.records.register(uow, actor, cmd),
            lambda r: records_pb2.RegisterRecordResponse(record=convert.record_pb(r)),
            records_pb2.RegisterRecordResponse,
        )

    @_guard
    async def GetRecord(self, request: records_pb2.GetRecordRequest, actor: Actor) -> Any:
        record = await self.store.read(lambda uow: self.records.get(uow, actor, request.lookup_code))
        return records_pb2.GetRecordResponse(record=convert.record_pb(record))

    @_guard
    async def ListRecords(self, request: records_pb2.ListRecordsRequest, actor: Actor) -> Any:
        page = await self.store.read(
            lambda uow: self.records.list_records(
                uow, actor, request.school, request.page_size, request.page_token, self.tokens
            )
        )
        return records_pb2.ListRecordsResponse(
            records=[convert.record_pb(r) for r in page.items], next_page_token=page.next_page_token
        )


class TransferServicer(_Base, transfers_pb2_grpc.TransferServiceServicer):
    def __init__(
        self,
        store: Store,
        auth: Authenticator,
        clock: Clock,
        tokens: Tokens,
        transfers: Transfers,
        notifier: Notifier,
        logbook: Logbook,
        watch_quota: StreamQuota,
    ) -> None:
        super().__init__(store, auth, clock)
        self.tokens = tokens
        self.transfers = transfers
        self.notifier = notifier
        self.receipts = logbook
        self.origin = logbook.origin
        self.watch_quota = watch_quota

    def _logged(self, response_type: type[M]) -> Callable[[Logged[Transfer]], M]:
        def encode(logged: Logged[Transfer]) -> M:
            return response_type(
                transfer=convert.transfer_pb(logged.value), receipt=convert.receipt_pb(logged.receipt, self.origin)
            )

        return encode

    @_guard
    async def InitiateTransfer(self, request: transfers_pb2.InitiateTransferRequest, actor: Actor) -> Any:
        cmd = _parsed(
            request.request_id,
            lambda v: commands.InitiateTransfer(request.lookup_code, request.to_school, request.to_province),
        )
        return await self._mutate(
            actor,
            "InitiateTransfer",
            request,
            request.request_id,
            lambda uow, actor: self.transfers.initiate(uow, actor, cmd),
            self._logged(transfers_pb2.InitiateTransferResponse),
            transfers_pb2.InitiateTransferResponse,
            cmd.reads(),
        )

    async def _decide(self, actor: Actor, method: str, request: Any, state: TransferState, response_type: type[M]) -> M:
        reason = getattr(request, "reason", "")
        cmd = _parsed(request.request_id, lambda v: commands.DecideTransfer(request.transfer_id, state, reason))
        return await self._mutate(
            actor,
            method,
            request,
            request.request_id,
            lambda uow, actor: self.transfers.decide(uow, actor, cmd),
            self._logged(response_type),
            response_type,
            cmd.reads(),
        )

    @_guard
    async def AcceptTransfer(self, request: transfers_pb2.AcceptTransferRequest, actor: Actor) -> Any:
        return await self._decide(
            actor, "AcceptTransfer", request, TransferState.ACCEPTED, transfers_pb2.AcceptTransferResponse
        )

    @_guard
    async def RejectTransfer(self, request: transfers_pb2.RejectTransferRequest, actor: Actor) -> Any:
        return await self._decide(
            actor, "RejectTransfer", request, TransferState.REJECTED, transfers_pb2.RejectTransferResponse
        )

    @_guard
    async def CancelTransfer(self, request: transfers_pb2.CancelTransferRequest, actor: Actor) -> Any:
        return await self._decide(
            actor, "CancelTransfer", request, TransferState.CANCELLED, transfers_pb2.CancelTransferResponse
        )

    @_guard
    async def GetTransfer(self, request: transfers_pb2.GetTransferRequest, actor: Actor) -> Any:
        transfer = await self.store.read(lambda uow: self.transfers.get(uow, actor, request.transfer_id))
        return transfers_pb2.GetTransferResponse(transfer=convert.transfer_pb(transfer))

    @_guard
    async def ListTransfers(self, request: transfers_pb2.ListTransfersRequest, actor: Actor) -> Any:
        query = commands.ListTransfers.parse(request.school, request.direction, list(request.states))
        page = await self.store.read(
            lambda uow: self.transfers.list_transfers(
                uow, actor, query, request.page_size, request.page_token, self.tokens
            )
        )
        return transfers_pb2.ListTransfersResponse(
            transfers=[convert.transfer_pb(t) for t in page.items], next_page_token=page.next_page_token
        )

    @_guard_stream
    async def WatchTransfers(
        self, request: transfers_pb2.WatchTransfersRequest, actor: Actor
    ) -> AsyncIterator[transfers_pb2.WatchTransfersResponse]:
        school = self.transfers.watch_school(actor, request.school)
        with self.watch_quota.hold(actor.principal), self.notifier.subscribe(school) as changes:
            after = await self.store.read(
                lambda uow: self.transfers.watch_from(uow, actor, school, request.cursor, self.tokens)
            )
            while True:
                changes.clear()
                events = await self.store.read(
                    functools.partial(self.transfers.events_after, school=school, after_seq=after, limit=WATCH_BATCH)
                )
                for event in events:
                    yield convert.event_pb(event, self.tokens.cursor(actor, school, event))
                    after = event.seq
                if len(events) == WATCH_BATCH:
                    continue
                if not await changes.wait():
                    raise Unavailable("SHUTTING_DOWN", "the node is shutting down; resume from your last cursor")


class LogServicer(_Base, log_pb2_grpc.LogServiceServicer):
    """Read-only access to the log for every authenticated caller, peer nodes included (they check
    the receipts and checkpoints this node gives them)."""

    peers_allowed = True

    def __init__(
        self,
        store: Store,
        auth: Authenticator,
        clock: Clock,
        tokens: Tokens,
        logbook: Logbook,
        info: LogInfo,
        bundle: Callable[[int, int], Awaitable[ProofBundle]],
    ) -> None:
        super().__init__(store, auth, clock)
        self.tokens = tokens
        self.logbook = logbook
        self.info = info
        self.bundle = bundle  # async (index, tree_size) -> the entry's proof bundle

    @_guard
    async def GetProofBundle(self, request: log_pb2.GetProofBundleRequest, actor: Actor) -> Any:
        bundle = await self.bundle(request.index, request.tree_size)
        bundle = dataclasses.replace(bundle, leaf=faults.maybe_other_leaf(bundle.leaf))
        return log_pb2.GetProofBundleResponse(bundle=bundle.text(), tree_size=bundle.tree_size())

    @_guard
    async def GetLogInfo(self, request: log_pb2.GetLogInfoRequest, actor: Actor) -> Any:
        return convert.log_info_pb(self.info)

    @_guard
    async def GetCheckpoint(self, request: log_pb2.GetCheckpointRequest, actor: Actor) -> Any:
        checkpoint = await self.store.read(lambda uow: self.logbook.checkpoint(uow, request.tree_size))
        return convert.checkpoint_pb(checkpoint)

    @_guard
    async def ListEntries(self, request: log_pb2.ListEntriesRequest, actor: Actor) -> Any:
        page = await self.store.read(
            lambda uow: self.logbook.entries(
                uow, actor, request.start, request.end, request.page_size, request.page_token, self.tokens
            )
        )
        return log_pb2.ListEntriesResponse(
            entries=[log_pb2.LogEntry(index=i, leaf=leaf) for i, leaf in page.items],
            next_page_token=page.next_page_token,
        )

    @_guard
    async def GetInclusionProof(self, request: log_pb2.GetInclusionProofRequest, actor: Actor) -> Any:
        proof = await self.store.read(lambda uow: self.logbook.inclusion_proof(uow, request.index, request.tree_size))
        return log_pb2.GetInclusionProofResponse(index=request.index, tree_size=request.tree_size, proof=proof)

    @_guard
    async def GetConsistencyProof(self, request: log_pb2.GetConsistencyProofRequest, actor: Actor) -> Any:
        proof = await self.store.read(
            lambda uow: self.logbook.consistency_proof(uow, request.first_size, request.second_size)
        )
        return log_pb2.GetConsistencyProofResponse(
            first_size=request.first_size, second_size=request.second_size, proof=faults.maybe_break_consistency(proof)
        )


def _logged_page(response_type: type[M], origin: str) -> Callable[[Logged[PageView]], M]:
    def encode(logged: Logged[PageView]) -> M:
        return response_type(page=convert.page_pb(logged.value), receipt=convert.receipt_pb(logged.receipt, origin))

    return encode


class PageServicer(_Base, pages_pb2_grpc.PageServiceServicer):
    def __init__(
        self, store: Store, auth: Authenticator, clock: Clock, tokens: Tokens, pages: Pages, logbook: Logbook
    ) -> None:
        super().__init__(store, auth, clock)
        self.tokens = tokens
        self.pages = pages
        self.receipts = logbook
        self.origin = logbook.origin  # the log's, named in each receipt

    @_guard
    async def AddPage(self, request: pages_pb2.AddPageRequest, actor: Actor) -> Any:
        cmd = _parsed(request.request_id, lambda v: AddPage.parse(
            request.lookup_code, request.school_year, request.segment, request.grade, request.class_name,
            request.media_type, request.payload, request.payload_sha256, request.lock_track,
            [(r.role, r.subject) for r in request.required_signatures],
        ))  # fmt: skip
        return await self._mutate(
            actor, "AddPage", request, request.request_id,
            lambda uow, actor: self.pages.add(uow, actor, cmd),
            _logged_page(pages_pb2.AddPageResponse, self.origin), pages_pb2.AddPageResponse,
        )  # fmt: skip

    @_guard
    async def ReplacePage(self, request: pages_pb2.ReplacePageRequest, actor: Actor) -> Any:
        cmd = _parsed(
            request.request_id,
            lambda v: ReplacePage(request.page_id, request.media_type, request.payload, request.payload_sha256),
        )
        return await self._mutate(
            actor, "ReplacePage", request, request.request_id,
            lambda uow, actor: self.pages.replace(uow, actor, cmd),
            _logged_page(pages_pb2.ReplacePageResponse, self.origin), pages_pb2.ReplacePageResponse,
        )  # fmt: skip

    @_guard
    async def SignPage(self, request: pages_pb2.SignPageRequest, actor: Actor) -> Any:
        cmd = _parsed(request.request_id, lambda v: SignPage.parse(
            request.page_id, request.requirement.role, request.requirement.subject, request.teacher_id,
            request.digest, request.signature, request.certificate_sha256,
        ))  # fmt: skip
        return await self._mutate(
            actor, "SignPage", request, request.request_id,
            lambda uow, actor: self.pages.sign(uow, actor, cmd),
            lambda view: pages_pb2.SignPageResponse(page=convert.page_pb(view)), pages_pb2.SignPageResponse,
        )  # fmt: skip

    @_guard
    async def LockPage(self, request: pages_pb2.LockPageRequest, actor: Actor) -> Any:
        _parsed(request.request_id, lambda v: check_opaque_id(v, request.page_id, "page_id"))
        return await self._mutate(
            actor, "LockPage", request, request.request_id,
            lambda uow, actor: self.pages.lock(uow, actor, request.page_id),
            _logged_page(pages_pb2.LockPageResponse, self.origin), pages_pb2.LockPageResponse,
        )  # fmt: skip

    @_guard
    async def GetPage(self, request: pages_pb2.GetPageRequest, actor: Actor) -> Any:
        view = await self.store.read(
            lambda uow: self.pages.get(uow, actor, request.page_id, include_payload=request.include_payload)
        )
        return pages_pb2.GetPageResponse(page=convert.page_pb(view))

    @_guard
    async def ListPages(self, request: pages_pb2.ListPagesRequest, actor: Actor) -> Any:
        page = await self.store.read(
            lambda uow: self.pages.list_pages(
                uow, actor, request.lookup_code, request.page_size, request.page_token, self.tokens
            )
        )
        return pages_pb2.ListPagesResponse(
            pages=[convert.page_pb(v) for v in page.items], next_page_token=page.next_page_token
        )


class StaffServicer(_Base, staff_pb2_grpc.StaffServiceServicer):
    def __init__(
        self, store: Store, auth: Authenticator, clock: Clock, tokens: Tokens, staff: Staff, logbook: Logbook
    ) -> None:
        super().__init__(store, auth, clock)
        self.tokens = tokens
        self.staff = staff
        self.receipts = logbook
        self.origin = logbook.origin  # the log's, named in each receipt

    @_guard
    async def RegisterTeacher(self, request: staff_pb2.RegisterTeacherRequest, actor: Actor) -> Any:
        cmd = _parsed(
            request.request_id,
            lambda v: RegisterTeacher(request.school, request.code, request.name, tuple(request.certificates)),
        )
        return await self._mutate(
            actor, "RegisterTeacher", request, request.request_id,
            lambda uow, actor: (t := self.staff.register_teacher(uow, actor, cmd), uow.teachers.certificates(t.id)),
            lambda r: staff_pb2.RegisterTeacherResponse(teacher=convert.teacher_pb(*r)),
            staff_pb2.RegisterTeacherResponse,
        )  # fmt: skip

    @_guard
    async def AddTeacherCertificate(self, request: staff_pb2.AddTeacherCertificateRequest, actor: Actor) -> Any:
        _parsed(request.request_id, lambda v: check_opaque_id(v, request.teacher_id, "teacher_id"))
        return await self._mutate(
            actor, "AddTeacherCertificate", request, request.request_id,
            lambda uow, actor: (
                t := self.staff.add_certificate(uow, actor, request.teacher_id, request.certificate),
                uow.teachers.certificates(t.id),
            ),
            lambda r: staff_pb2.AddTeacherCertificateResponse(teacher=convert.teacher_pb(*r)),
            staff_pb2.AddTeacherCertificateResponse,
        )  # fmt: skip

    @_guard
    async def GetTeacher(self, request: staff_pb2.GetTeacherRequest, actor: Actor) -> Any:
        teacher, certs = await self.store.read(lambda uow: self.staff.get_teacher(uow, actor, request.teacher_id))
        return staff_pb2.GetTeacherResponse(teacher=convert.teacher_pb(teacher, certs))

    @_guard
    async def ListTeachers(self, request: staff_pb2.ListTeachersRequest, actor: Actor) -> Any:
        page = await self.store.read(
            lambda uow: self.staff.list_teachers(
                uow, actor, request.school, request.page_size, request.page_token, self.tokens
            )
        )
        return staff_pb2.ListTeachersResponse(
            teachers=[convert.teacher_pb(t) for t in page.items], next_page_token=page.next_page_token
        )

    @_guard
    async def AssignDuty(self, request: staff_pb2.AssignDutyRequest, actor: Actor) -> Any:
        def build(v: Violations) -> AssignDuty:
            check_school_code(v, request.school, "school", required=False)
            check_opaque_id(v, request.teacher_id, "teacher_id")
            d = request.duty
            duty = parse_duty(v, d.role, d.school_year, d.class_name, d.subject, "duty")
            v.raise_if_any()
            assert duty is not None
            return AssignDuty(request.school, duty, request.teacher_id)

        cmd = _parsed(request.request_id, build)
        return await self._mutate(
            actor, "AssignDuty", request, request.request_id,
            lambda uow, actor: self.staff.assign_duty(uow, actor, cmd),
            lambda r: staff_pb2.AssignDutyResponse(duty=convert.duty_pb(r.value), receipt=convert.receipt_pb(r.receipt, self.origin)),
            staff_pb2.AssignDutyResponse,
        )  # fmt: skip

    @_guard
    async def ListDuties(self, request: staff_pb2.ListDutiesRequest, actor: Actor) -> Any:
        duties = await self.store.read(
            lambda uow: self.staff.list_duties(uow, actor, request.school, request.teacher_id)
        )
        return staff_pb2.ListDutiesResponse(duties=[convert.duty_pb(d) for d in duties])

    @_guard
    async def ListSigningTasks(self, request: staff_pb2.ListSigningTasksRequest, actor: Actor) -> Any:
        def read(uow: UnitOfWork) -> tuple[Any, dict[str, bytes]]:
            page = self.staff.list_tasks(
                uow, actor, request.teacher_id, request.page_size, request.page_token, self.tokens
            )
            digests = {}
            for task in page.items:
                found = uow.pages.get(task.page_id)
                digests[task.page_id] = found.digest if found is not None else b""
            return page, digests

        page, digests = await self.store.read(read)
        return staff_pb2.ListSigningTasksResponse(
            tasks=[convert.task_pb(t, digests[t.page_id]) for t in page.items], next_page_token=page.next_page_token
        )

    @_guard
    async def RecordDeparture(self, request: staff_pb2.RecordDepartureRequest, actor: Actor) -> Any:
        cmd = _parsed(request.request_id, lambda v: RecordDeparture.parse(
            request.teacher_id, request.reason, request.effective_date, request.end_date,
            request.replacement_teacher_id,
            [(r.duty.role, r.duty.school_year, r.duty.class_name, r.duty.subject, r.teacher_id) for r in request.replacements],
        ))  # fmt: skip
        return await self._mutate(
            actor, "RecordDeparture", request, request.request_id,
            lambda uow, actor: self.staff.record_departure(uow, actor, cmd),
            lambda r: staff_pb2.RecordDepartureResponse(
                handoff=convert.handoff_pb(r.value), receipt=convert.receipt_pb(r.receipt, self.origin)
            ),
            staff_pb2.RecordDepartureResponse,
        )  # fmt: skip

    @_guard
    async def GetHandoff(self, request: staff_pb2.GetHandoffRequest, actor: Actor) -> Any:
        handoff = await self.store.read(lambda uow: self.staff.get_handoff(uow, actor, request.handoff_id))
        return staff_pb2.GetHandoffResponse(handoff=convert.handoff_pb(handoff))

    @_guard
    async def ListHandoffs(self, request: staff_pb2.ListHandoffsRequest, actor: Actor) -> Any:
        page = await self.store.read(
            lambda uow: self.staff.list_handoffs(
                uow, actor, request.school, request.teacher_id, request.page_size, request.page_token, self.tokens
            )
        )
        return staff_pb2.ListHandoffsResponse(
            handoffs=[convert.handoff_pb(h) for h in page.items], next_page_token=page.next_page_token
        )
