"""A typed Python client for school systems and admins.

    tls = ClientTls.from_files("pki/ca.pem", "pki/school-S1.pem", "pki/school-S1.key")
    with TransferClient("127.0.0.1:50051", tls) as c:
        t = c.initiate_transfer(lookup_code, to_school="S2")

Every call has a deadline (`timeout`, per attempt). Transient failures are
retried by the policy of `transfer.client.retry`; a mutating call picks one
request_id up front and sends it on every attempt, so the server applies it
once and replays its first answer. Failures raise `TransferError` subclasses.

Each logical call sends a W3C `traceparent` metadata entry: one new trace id per
call, the same on all its attempts (each attempt a span of its own). A failure's
`trace_id` names it: the node's log line for the call carries the same id.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.protobuf import field_mask_pb2

from transfer.client.errors import InvalidArgument, TransferError, from_rpc_error
from transfer.client.retry import RetryPolicy
from transfer.tlsfiles import tls_files_problem
from transfer.tracecontext import TRACEPARENT, new_trace
from transfer.v1 import (
    log_pb2,
    log_pb2_grpc,
    pages_pb2,
    pages_pb2_grpc,
    peers_pb2,
    peers_pb2_grpc,
    records_pb2,
    records_pb2_grpc,
    schools_pb2,
    schools_pb2_grpc,
    staff_pb2,
    staff_pb2_grpc,
    transfers_pb2,
    transfers_pb2_grpc,
)
from transfer.v1.records_pb2 import Record
from transfer.v1.schools_pb2 import School
from transfer.v1.transfers_pb2 import Transfer, WatchTransfersResponse

T = TypeVar("T")
# The node's message limit (a 4 MiB page with its envelope fits).
MAX_MESSAGE = 64 * 1024 * 1024
# A watch call is reopened (from its cursor) after this long, so that none can hang for ever.
WATCH_REOPEN_SECONDS = 300.0
# A watch call reopened after failures counts as back once it is still open this long after its connection was made.
WATCH_SETTLE_SECONDS = 1.0
log = logging.getLogger("transfer.client")


class ClientTlsError(ValueError):
    """A CA, certificate or key file that gRPC could not use; the message names the file."""


@dataclass(frozen=True)
class ClientTls:
    """The CA that signed the node's certificate, and the caller's own pair."""

    ca: bytes
    cert: bytes
    key: bytes

    @classmethod
    def from_files(cls, ca: str | Path, cert: str | Path, key: str | Path) -> ClientTls:
        """Read and check the three PEM files (`ClientTlsError` naming the file when one is unusable).

        gRPC itself would only fail each call's TLS handshake, as UNAVAILABLE, as if the node were down.
        """
        tls = cls(Path(ca).read_bytes(), Path(cert).read_bytes(), Path(key).read_bytes())
        tls._check(str(ca), str(cert), str(key))
        return tls

    def _check(self, ca: str, cert: str, key: str) -> None:
        messages = {
            "ca": f"{ca}: not a PEM certificate",
            "cert": f"{cert}: not a PEM certificate",
            "key": f"{key}: not an unencrypted PEM private key",
            "mismatch": f"{key}: not the private key of the certificate in {cert}",
        }
        problem = tls_files_problem(self.ca, self.cert, self.key)
        if problem is not None:
            raise ClientTlsError(messages[problem])

    @classmethod
    def from_pki(cls, directory: str | Path, name: str) -> ClientTls:
        """From a dev PKI directory: `name` is e.g. ``school-S1`` or ``province-admin``."""
        d = Path(directory)
        return cls.from_files(d / "ca.pem", d / f"{name}.pem", d / f"{name}.key")

    def credentials(self) -> grpc.ChannelCredentials:
        """The gRPC channel credentials of the three PEM values."""
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca, private_key=self.key, certificate_chain=self.cert
        )


@dataclass(frozen=True)
class TransferChange:
    """What a transfer mutation returns: the transfer as it now is, and the
    receipt of the log entry that records the change. A cancellation request
    sent to another province's node makes no entry (its decision will): then
    the receipt is empty and `logged` is False."""

    transfer: Transfer
    receipt: log_pb2.LogReceipt

    @property
    def logged(self) -> bool:
        return bool(self.receipt.leaf)


@dataclass(frozen=True)
class PageChange:
    """A page mutation's result: the page now, and the receipt of its log entry."""

    page: pages_pb2.Page
    receipt: log_pb2.LogReceipt


Duty = tuple[int, str, str, str]  # (SignerRole, school year, class, subject)


def duty_ref(duty: Duty) -> staff_pb2.DutyRef:
    """A duty (SignerRole, school year, class, subject) as its DutyRef message."""
    role, year, klass, subject = duty
    return staff_pb2.DutyRef(role=role, school_year=year, class_name=klass, subject=subject)  # type: ignore[arg-type]


def new_request_id() -> str:
    """A new request_id (a random UUID) for one logical mutation."""
    return str(uuid.uuid4())


class TransferClient:
    """A client of one node: each method one logical call with deadline, retries and traceparent (docs/client.md)."""

    def __init__(
        self,
        address: str,
        tls: ClientTls,
        *,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        server_name: str | None = None,
        interceptors: Sequence[grpc.UnaryUnaryClientInterceptor] = (),
    ) -> None:
        self.retry = retry or RetryPolicy()
        # While a node is down gRPC waits longer and longer between its attempts to connect (up to 2 minutes),
        # failing calls at once meanwhile. Bounded by the retry policy's backoff, a retry (or a watch's
        # reconnection) reaches a node that is back when the policy says, not up to 2 minutes later.
        options: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.max_send_message_length", MAX_MESSAGE),
            ("grpc.initial_reconnect_backoff_ms", _ms(min(self.retry.initial_backoff, self.retry.max_backoff))),
            ("grpc.max_reconnect_backoff_ms", _ms(self.retry.max_backoff)),
        ]
        if server_name:
            options.append(("grpc.ssl_target_name_override", server_name))
        self.address = address
        self.timeout = timeout
        self._options = options
        self._interceptors = tuple(interceptors)
        self._connect(tls)

    def _connect(self, tls: ClientTls) -> None:
        self._channel = grpc.secure_channel(self.address, tls.credentials(), options=self._options)
        channel = grpc.intercept_channel(self._channel, *self._interceptors) if self._interceptors else self._channel
        self.schools = schools_pb2_grpc.SchoolDirectoryServiceStub(channel)
        self.records = records_pb2_grpc.RecordServiceStub(channel)
        self.transfers = transfers_pb2_grpc.TransferServiceStub(channel)
        self.log = log_pb2_grpc.LogServiceStub(channel)
        self.pages = pages_pb2_grpc.PageServiceStub(channel)
        self.staff = staff_pb2_grpc.StaffServiceStub(channel)
        self.deliveries = peers_pb2_grpc.DeliveryServiceStub(channel)
        # A watch call and the channel it runs on, read together (a reload between two reads would mix them).
        self._watch_link = (self._channel, self.transfers)

    def reload_tls(self, tls: ClientTls) -> None:
        """Present `tls` (a renewed certificate and key, a new CA bundle) from now on, in this process.

        Calls started after this go on a new channel (a new connection, a new handshake). Calls in flight
        keep the channel they started on and finish there: the old channel is not closed but let go, and
        gRPC releases it once no call or stub uses it any more (a watch started before keeps it until it
        ends or reopens; a logical call retried meanwhile retries there too). Thread-safe against calls
        made from other threads; `ClientTls.from_files` checks the files first."""
        self._connect(tls)

    def close(self) -> None:
        """Close the current channel; calls still in flight on it are cancelled."""
        self._channel.close()

    def __enter__(self) -> TransferClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: Callable[..., Any], request: Any) -> Any:
        """One logical call: attempts with a deadline each, transient ones retried."""
        size = request.ByteSize()
        if size > MAX_MESSAGE:
            # gRPC would refuse it on every attempt with RESOURCE_EXHAUSTED, a code retried as transient.
            raise InvalidArgument(
                grpc.StatusCode.INVALID_ARGUMENT,
                "MESSAGE_TOO_LARGE",
                f"the request is {size} bytes, over the {MAX_MESSAGE}-byte message limit; nothing was sent",
            )
        trace = new_trace()  # one trace per logical call, each attempt a span of its own
        for attempt in self.retry.retrying():
            with attempt:
                try:
                    return method(request, timeout=self.timeout, metadata=((TRACEPARENT, trace.child().header()),))
                except grpc.RpcError as err:
                    raise from_rpc_error(err, trace.trace_id) from None
        raise AssertionError("unreachable")  # pragma: no cover

    # -- schools ------------------------------------------------------------

    def register_school(self, code: str, name: str, *, request_id: str | None = None) -> School:
        """RegisterSchool (province admins): the new school, active."""
        req = schools_pb2.RegisterSchoolRequest(request_id=request_id or new_request_id(), code=code, name=name)
        resp: schools_pb2.RegisterSchoolResponse = self._call(self.schools.RegisterSchool, req)
        return resp.school

    def update_school(
        self, code: str, *, name: str | None = None, active: bool | None = None, request_id: str | None = None
    ) -> School:
        """UpdateSchool (province admins): change the name and/or active flag given; the school as it now is."""
        paths = [p for p, v in (("name", name), ("active", active)) if v is not None]
        req = schools_pb2.UpdateSchoolRequest(
            request_id=request_id or new_request_id(),
            school=schools_pb2.School(code=code, name=name or "", active=bool(active)),
            update_mask=field_mask_pb2.FieldMask(paths=paths),
        )
        resp: schools_pb2.UpdateSchoolResponse = self._call(self.schools.UpdateSchool, req)
        return resp.school

    def get_school(self, code: str) -> School:
        """GetSchool: the school with this code (SCHOOL_NOT_FOUND otherwise)."""
        resp: schools_pb2.GetSchoolResponse = self._call(
            self.schools.GetSchool, schools_pb2.GetSchoolRequest(code=code)
        )
        return resp.school

    def list_schools(self, *, page_size: int = 0, page_token: str = "") -> schools_pb2.ListSchoolsResponse:
        """ListSchools: one page of the directory, by code, with next_page_token."""
        resp: schools_pb2.ListSchoolsResponse = self._call(
            self.schools.ListSchools, schools_pb2.ListSchoolsRequest(page_size=page_size, page_token=page_token)
        )
        return resp

    def iter_schools(self, *, page_size: int = 0) -> Iterator[School]:
        """Every school of the directory, by code, page after page (ListSchools)."""
        return _pages(lambda tok: self.list_schools(page_size=page_size, page_token=tok), "schools")

    # -- records ------------------------------------------------------------

    def register_record(
        self,
        lookup_code: str,
        national_id: str,
        level: int,
        custodian_school: str = "",
        *,
        request_id: str | None = None,
    ) -> Record:
        """RegisterRecord: a new record held by `custodian_school` (empty: the caller's school)."""
        req = records_pb2.RegisterRecordRequest(
            request_id=request_id or new_request_id(),
            lookup_code=lookup_code,
            national_id=national_id,
            level=level,  # type: ignore[arg-type]
            custodian_school=custodian_school,
        )
        resp: records_pb2.RegisterRecordResponse = self._call(self.records.RegisterRecord, req)
        return resp.record

    def get_record(self, lookup_code: str) -> Record:
        """GetRecord: the record, for its custodian, the receiver of its open transfer or a province admin."""
        resp: records_pb2.GetRecordResponse = self._call(
            self.records.GetRecord, records_pb2.GetRecordRequest(lookup_code=lookup_code)
        )
        return resp.record

    def list_records(
        self, school: str = "", *, page_size: int = 0, page_token: str = ""
    ) -> records_pb2.ListRecordsResponse:
        """ListRecords: one page of the school's records, by lookup code, with next_page_token."""
        req = records_pb2.ListRecordsRequest(school=school, page_size=page_size, page_token=page_token)
        resp: records_pb2.ListRecordsResponse = self._call(self.records.ListRecords, req)
        return resp

    def iter_records(self, school: str = "", *, page_size: int = 0) -> Iterator[Record]:
        """Every record the school holds, by lookup code, page after page (ListRecords)."""
        return _pages(lambda tok: self.list_records(school, page_size=page_size, page_token=tok), "records")

    # -- deliveries to peer nodes ---------------------------------------------

    def list_peer_receipts(self, transfer_id: str) -> list[peers_pb2.DeliveredReceipt]:
        """ListPeerReceipts: the receipts peers sealed for the transfer's delivered messages, each with its proof
        bundle when the peer sent one (province admins). Not verified here: transfer-verify-receipt
        checks a bundle with the peer's log key."""
        resp: peers_pb2.ListPeerReceiptsResponse = self._call(
            self.deliveries.ListPeerReceipts, peers_pb2.ListPeerReceiptsRequest(transfer_id=transfer_id)
        )
        return list(resp.receipts)

    def list_deliveries(self) -> list[peers_pb2.PeerDeliveries]:
        """ListDeliveries: the node's outgoing messages to other provinces' nodes, per peer (province admins)."""
        resp: peers_pb2.ListDeliveriesResponse = self._call(
            self.deliveries.ListDeliveries, peers_pb2.ListDeliveriesRequest()
        )
        return list(resp.peers)

    # -- transfers ----------------------------------------------------------

    def initiate_transfer(
        self, lookup_code: str, to_school: str, to_province: str = "", *, request_id: str | None = None
    ) -> TransferChange:
        """InitiateTransfer: send the record to `to_school` (in `to_province` when another); the transfer and its receipt."""
        req = transfers_pb2.InitiateTransferRequest(
            request_id=request_id or new_request_id(),
            lookup_code=lookup_code,
            to_school=to_school,
            to_province=to_province,
        )
        resp: transfers_pb2.InitiateTransferResponse = self._call(self.transfers.InitiateTransfer, req)
        return TransferChange(resp.transfer, resp.receipt)

    def get_transfer(self, transfer_id: str) -> Transfer:
        """GetTransfer: the transfer, for its sending or receiving school or a province admin."""
        req = transfers_pb2.GetTransferRequest(transfer_id=transfer_id)
        resp: transfers_pb2.GetTransferResponse = self._call(self.transfers.GetTransfer, req)
        return resp.transfer

    def list_transfers(
        self,
        direction: int,
        *,
        school: str = "",
        states: Iterable[int] = (),
        page_size: int = 0,
        page_token: str = "",
    ) -> transfers_pb2.ListTransfersResponse:
        """ListTransfers: one page of the school's incoming or outgoing transfers (`states` filters), with next_page_token."""
        req = transfers_pb2.ListTransfersRequest(
            school=school,
            direction=direction,  # type: ignore[arg-type]
            states=list(states),  # type: ignore[arg-type]
            page_size=page_size,
            page_token=page_token,
        )
        resp: transfers_pb2.ListTransfersResponse = self._call(self.transfers.ListTransfers, req)
        return resp

    def iter_transfers(
        self, direction: int, *, school: str = "", states: Iterable[int] = (), page_size: int = 0
    ) -> Iterator[Transfer]:
        """Every incoming or outgoing transfer of the school, in order of creation, page after page (ListTransfers)."""
        states = list(states)
        return _pages(
            lambda tok: self.list_transfers(
                direction, school=school, states=states, page_size=page_size, page_token=tok
            ),
            "transfers",
        )

    def accept_transfer(self, transfer_id: str, *, request_id: str | None = None) -> TransferChange:
        """AcceptTransfer (the receiving school): custody moves to it; the transfer and its receipt."""
        req = transfers_pb2.AcceptTransferRequest(request_id=request_id or new_request_id(), transfer_id=transfer_id)
        resp: transfers_pb2.AcceptTransferResponse = self._call(self.transfers.AcceptTransfer, req)
        return TransferChange(resp.transfer, resp.receipt)

    def reject_transfer(self, transfer_id: str, reason: str, *, request_id: str | None = None) -> TransferChange:
        """RejectTransfer (the receiving school), with a reason of 1-500 characters; the transfer and its receipt."""
        req = transfers_pb2.RejectTransferRequest(
            request_id=request_id or new_request_id(), transfer_id=transfer_id, reason=reason
        )
        resp: transfers_pb2.RejectTransferResponse = self._call(self.transfers.RejectTransfer, req)
        return TransferChange(resp.transfer, resp.receipt)

    def cancel_transfer(self, transfer_id: str, reason: str = "", *, request_id: str | None = None) -> TransferChange:
        """CancelTransfer (the sending school), while open; between provinces only a request (no receipt)."""
        req = transfers_pb2.CancelTransferRequest(
            request_id=request_id or new_request_id(), transfer_id=transfer_id, reason=reason
        )
        resp: transfers_pb2.CancelTransferResponse = self._call(self.transfers.CancelTransfer, req)
        return TransferChange(resp.transfer, resp.receipt)

    # -- pages ----------------------------------------------------------------

    def add_page(
        self,
        lookup_code: str,
        school_year: str,
        grade: int,
        class_name: str,
        payload: bytes,
        required_signatures: Iterable[tuple[int, str]],
        *,
        media_type: str = "application/pdf",
        segment: str = "",
        lock_track: int = pages_pb2.LOCK_TRACK_COMPLETED,
        request_id: str | None = None,
    ) -> PageChange:
        """AddPage (the custodian school); `required_signatures` are (SignerRole, subject) pairs."""
        req = pages_pb2.AddPageRequest(
            request_id=request_id or new_request_id(),
            lookup_code=lookup_code,
            school_year=school_year,
            segment=segment,
            grade=grade,
            class_name=class_name,
            media_type=media_type,
            payload=payload,
            payload_sha256=hashlib.sha256(payload).digest(),
            lock_track=lock_track,  # type: ignore[arg-type]
            required_signatures=[
                pages_pb2.RequiredSignature(role=r, subject=s)  # type: ignore[arg-type]
                for r, s in required_signatures
            ],
        )
        resp: pages_pb2.AddPageResponse = self._call(self.pages.AddPage, req)
        return PageChange(resp.page, resp.receipt)

    def replace_page(
        self, page_id: str, payload: bytes, *, media_type: str = "application/pdf", request_id: str | None = None
    ) -> PageChange:
        """ReplacePage (the issuing school): a new version; signatures given are voided and owed again."""
        req = pages_pb2.ReplacePageRequest(
            request_id=request_id or new_request_id(),
            page_id=page_id,
            media_type=media_type,
            payload=payload,
            payload_sha256=hashlib.sha256(payload).digest(),
        )
        resp: pages_pb2.ReplacePageResponse = self._call(self.pages.ReplacePage, req)
        return PageChange(resp.page, resp.receipt)

    def get_page(self, page_id: str, *, include_payload: bool = False) -> pages_pb2.Page:
        """GetPage: the page and its signing tasks (its payload with `include_payload`)."""
        req = pages_pb2.GetPageRequest(page_id=page_id, include_payload=include_payload)
        resp: pages_pb2.GetPageResponse = self._call(self.pages.GetPage, req)
        return resp.page

    def iter_pages(self, lookup_code: str, *, page_size: int = 0) -> Iterator[pages_pb2.Page]:
        """Every page of the record the caller may see, by id, page after page (ListPages)."""
        return _pages(
            lambda tok: self._call(
                self.pages.ListPages,
                pages_pb2.ListPagesRequest(lookup_code=lookup_code, page_size=page_size, page_token=tok),
            ),
            "pages",
        )

    def sign_page(
        self,
        page_id: str,
        requirement: tuple[int, str],
        teacher_id: str,
        digest: bytes,
        signature: bytes,
        *,
        certificate_sha256: str = "",
        request_id: str | None = None,
    ) -> pages_pb2.Page:
        """SignPage (the issuing school): a teacher's signature over the page's digest; no log entry."""
        role, subject = requirement
        req = pages_pb2.SignPageRequest(
            request_id=request_id or new_request_id(),
            page_id=page_id,
            requirement=pages_pb2.RequiredSignature(role=role, subject=subject),  # type: ignore[arg-type]
            teacher_id=teacher_id,
            digest=digest,
            signature=signature,
            certificate_sha256=certificate_sha256,
        )
        resp: pages_pb2.SignPageResponse = self._call(self.pages.SignPage, req)
        return resp.page

    def lock_page(self, page_id: str, *, request_id: str | None = None) -> PageChange:
        """LockPage (the issuing school), once every required signature is given; the page and its receipt."""
        req = pages_pb2.LockPageRequest(request_id=request_id or new_request_id(), page_id=page_id)
        resp: pages_pb2.LockPageResponse = self._call(self.pages.LockPage, req)
        return PageChange(resp.page, resp.receipt)

    # -- staff ----------------------------------------------------------------

    def register_teacher(
        self, code: str, name: str, certificates: Iterable[bytes], *, school: str = "", request_id: str | None = None
    ) -> staff_pb2.Teacher:
        """RegisterTeacher (school admins): a teacher with staff code `code` and 1-5 PEM signing certificates."""
        req = staff_pb2.RegisterTeacherRequest(
            request_id=request_id or new_request_id(),
            school=school,
            code=code,
            name=name,
            certificates=list(certificates),
        )
        resp: staff_pb2.RegisterTeacherResponse = self._call(self.staff.RegisterTeacher, req)
        return resp.teacher

    def add_teacher_certificate(
        self, teacher_id: str, certificate: bytes, *, request_id: str | None = None
    ) -> staff_pb2.Teacher:
        """AddTeacherCertificate (school admins): one more PEM signing certificate for the teacher."""
        req = staff_pb2.AddTeacherCertificateRequest(
            request_id=request_id or new_request_id(), teacher_id=teacher_id, certificate=certificate
        )
        resp: staff_pb2.AddTeacherCertificateResponse = self._call(self.staff.AddTeacherCertificate, req)
        return resp.teacher

    def get_teacher(self, teacher_id: str) -> staff_pb2.Teacher:
        """GetTeacher: the teacher and its certificates."""
        resp: staff_pb2.GetTeacherResponse = self._call(
            self.staff.GetTeacher, staff_pb2.GetTeacherRequest(teacher_id=teacher_id)
        )
        return resp.teacher

    def iter_teachers(self, school: str = "", *, page_size: int = 0) -> Iterator[staff_pb2.Teacher]:
        """Every teacher of the school, by code, page after page (ListTeachers)."""
        return _pages(
            lambda tok: self._call(
                self.staff.ListTeachers,
                staff_pb2.ListTeachersRequest(school=school, page_size=page_size, page_token=tok),
            ),
            "teachers",
        )

    def assign_duty(
        self, duty: Duty, teacher_id: str, *, school: str = "", request_id: str | None = None
    ) -> staff_pb2.Duty:
        """AssignDuty (school admins): give a duty, (SignerRole, school year, class, subject), to a teacher."""
        req = staff_pb2.AssignDutyRequest(
            request_id=request_id or new_request_id(), school=school, duty=duty_ref(duty), teacher_id=teacher_id
        )
        resp: staff_pb2.AssignDutyResponse = self._call(self.staff.AssignDuty, req)
        return resp.duty

    def list_duties(self, *, school: str = "", teacher_id: str = "") -> list[staff_pb2.Duty]:
        """ListDuties (not paged): the duties `teacher_id` holds, or all of the school's."""
        req = staff_pb2.ListDutiesRequest(school=school, teacher_id=teacher_id)
        resp: staff_pb2.ListDutiesResponse = self._call(self.staff.ListDuties, req)
        return list(resp.duties)

    def iter_signing_tasks(self, teacher_id: str, *, page_size: int = 0) -> Iterator[pages_pb2.SigningTask]:
        """Every signature the teacher still owes, with the digest to sign, page after page (ListSigningTasks)."""
        return _pages(
            lambda tok: self._call(
                self.staff.ListSigningTasks,
                staff_pb2.ListSigningTasksRequest(teacher_id=teacher_id, page_size=page_size, page_token=tok),
            ),
            "tasks",
        )

    def record_departure(
        self,
        teacher_id: str,
        reason: int,
        effective_date: str,
        *,
        end_date: str = "",
        replacement: str = "",
        replacements: Iterable[tuple[Duty, str]] = (),
        request_id: str | None = None,
    ) -> tuple[staff_pb2.Handoff, log_pb2.LogReceipt]:
        """RecordDeparture (school admins): `replacement` takes every duty not named in `replacements` ((duty, teacher))."""
        req = staff_pb2.RecordDepartureRequest(
            request_id=request_id or new_request_id(),
            teacher_id=teacher_id,
            reason=reason,  # type: ignore[arg-type]
            effective_date=effective_date,
            end_date=end_date,
            replacement_teacher_id=replacement,
            replacements=[staff_pb2.DutyReplacement(duty=duty_ref(d), teacher_id=t) for d, t in replacements],
        )
        resp: staff_pb2.RecordDepartureResponse = self._call(self.staff.RecordDeparture, req)
        return resp.handoff, resp.receipt

    def get_handoff(self, handoff_id: str) -> staff_pb2.Handoff:
        """GetHandoff: the handoff, for its school or a province admin."""
        resp: staff_pb2.GetHandoffResponse = self._call(
            self.staff.GetHandoff, staff_pb2.GetHandoffRequest(handoff_id=handoff_id)
        )
        return resp.handoff

    def iter_handoffs(
        self, school: str = "", *, teacher_id: str = "", page_size: int = 0
    ) -> Iterator[staff_pb2.Handoff]:
        """Every handoff of the school (of `teacher_id` when given), page after page (ListHandoffs)."""
        return _pages(
            lambda tok: self._call(
                self.staff.ListHandoffs,
                staff_pb2.ListHandoffsRequest(
                    school=school, teacher_id=teacher_id, page_size=page_size, page_token=tok
                ),
            ),
            "handoffs",
        )

    # -- the log --------------------------------------------------------------

    def get_log_info(self) -> log_pb2.GetLogInfoResponse:
        """GetLogInfo: the log's origin, verifier keys and witness policy, as the node serves them (not verified:
        compare them with values obtained out of band, see LogVerifier.check_log_info)."""
        resp: log_pb2.GetLogInfoResponse = self._call(self.log.GetLogInfo, log_pb2.GetLogInfoRequest())
        return resp

    def get_checkpoint(self, tree_size: int = 0) -> log_pb2.GetCheckpointResponse:
        """GetCheckpoint: the latest signed checkpoint, or the one signed at `tree_size` (not verified here)."""
        resp: log_pb2.GetCheckpointResponse = self._call(
            self.log.GetCheckpoint, log_pb2.GetCheckpointRequest(tree_size=tree_size)
        )
        return resp

    def get_proof_bundle(self, index: int, tree_size: int = 0) -> str:
        """GetProofBundle: entry `index`'s proof bundle (docs/log.md): in the latest checkpoint (tree_size 0) or the
        one signed at `tree_size`. Not verified here: `transfer-verify-receipt` checks it offline."""
        resp: log_pb2.GetProofBundleResponse = self._call(
            self.log.GetProofBundle, log_pb2.GetProofBundleRequest(index=index, tree_size=tree_size)
        )
        return resp.bundle

    def iter_entries(self, start: int = 0, end: int = 0, *, page_size: int = 0) -> Iterator[log_pb2.LogEntry]:
        """Log entries [start, end) in order (end 0: up to the log's current size), page after page (ListEntries)."""
        return _pages(
            lambda tok: self._call(
                self.log.ListEntries,
                log_pb2.ListEntriesRequest(start=start, end=end, page_size=page_size, page_token=tok),
            ),
            "entries",
        )

    def inclusion_proof(self, index: int, tree_size: int) -> list[bytes]:
        """GetInclusionProof: entry `index`'s audit path in the tree of `tree_size` (not verified here)."""
        req = log_pb2.GetInclusionProofRequest(index=index, tree_size=tree_size)
        resp: log_pb2.GetInclusionProofResponse = self._call(self.log.GetInclusionProof, req)
        return list(resp.proof)

    def consistency_proof(self, first_size: int, second_size: int) -> list[bytes]:
        """GetConsistencyProof: the tree of `first_size` is a prefix of that of `second_size` (not verified here)."""
        req = log_pb2.GetConsistencyProofRequest(first_size=first_size, second_size=second_size)
        resp: log_pb2.GetConsistencyProofResponse = self._call(self.log.GetConsistencyProof, req)
        return list(resp.proof)

    def watch_transfers(
        self,
        school: str = "",
        cursor: str = "",
        *,
        resume: bool = True,
        max_reconnects: int | None = 20,
        reopen_after: float = WATCH_REOPEN_SECONDS,
        on_drop: Callable[[TransferError, int, float], None] | None = None,
        on_resume: Callable[[str, int], None] | None = None,
    ) -> Generator[WatchTransfersResponse, None, None]:
        """WatchTransfers: events of the school's transfers, in commit order, as they happen.

        With `resume`, a dropped stream (node restart, network failure) is
        reopened from the last cursor received, after a pause that doubles
        from the retry policy's `initial_backoff` up to its `max_backoff`;
        after `max_reconnects` failed reconnections in a row it ends with the
        last error (None: it never gives up on a transient error). A
        permanent error (PERMISSION_DENIED, INVALID_ARGUMENT, ...) ends it at
        once. Each call also has a deadline of `reopen_after` seconds, at
        which it is reopened at once: a call lost in transit (gRPC can leave
        one waiting forever when the server goes away as it starts) ends
        there instead of never. Events are neither lost nor repeated across
        reconnects. Closing the iterator cancels the stream.

        The default bound (20, about 33 s of downtime with the default
        policy) is kept for programs: the error hands control back to one
        that passes no callbacks, with its last cursor to resume from,
        rather than blocking silently for as long as a node is down. A
        long-running follower (as `transfer-cli watch`) passes None and
        reports progress through the callbacks: `on_drop(error, failures,
        delay)` before each pause (`failures` in a row so far, `delay` in
        seconds), and `on_resume(cursor, failures)` once a reopened call is
        back: it delivered an event, or is still open `WATCH_SETTLE_SECONDS`
        after its connection was made (its first events wait that long), so
        that a quiet school is told apart from a node still down. A node that
        is up but cannot serve the call mostly refuses it sooner; one that
        fails it later is reported back, then dropped again. Both callbacks
        run in the iterating thread.
        """
        failures = 0  # in a row
        delay = self.retry.initial_backoff

        def back() -> None:
            nonlocal failures, delay
            log.info("watch stream resumed", extra={"cursor": cursor, "failures": failures})
            if on_resume is not None:
                on_resume(cursor, failures)
            failures, delay = 0, self.retry.initial_backoff

        trace = new_trace()  # the watch's, across its reopenings
        while True:
            channel, stub = self._watch_link  # each reopening on the client's current channel
            call = stub.WatchTransfers(
                transfers_pb2.WatchTransfersRequest(school=school, cursor=cursor),
                timeout=reopen_after if resume else None,
                metadata=((TRACEPARENT, trace.child().header()),),
            )
            try:
                if failures and self._settled(channel, call, min(WATCH_SETTLE_SECONDS, reopen_after / 2), reopen_after):
                    back()
                for event in call:
                    if failures:  # an event came before the call could settle
                        back()
                    cursor = event.cursor
                    yield event
                return
            except grpc.RpcError as err:
                if resume and err.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                    continue  # the call's own deadline: reopen from the cursor
                error = from_rpc_error(err, trace.trace_id)
                if not (resume and error.transient) or (max_reconnects is not None and failures >= max_reconnects):
                    raise error from None
                failures += 1
                pause = min(self.retry.max_backoff, delay)
                delay = pause * 2  # doubled, not recomputed: no power of 2 overflows a float after days down
                log.info("watch stream dropped; resuming", extra={"code": error.code.name, "delay": pause})
                if on_drop is not None:
                    on_drop(error, failures, pause)
                time.sleep(pause)
            finally:
                call.cancel()

    @staticmethod
    def _settled(channel: grpc.Channel, call: Any, settle: float, limit: float) -> bool:
        """Whether a watch call is under way: still open `settle` seconds after the channel connected.

        A call made while the node is down either fails at once or waits for the connection attempt;
        the server refuses one it cannot serve within moments of receiving it.
        """
        ended, connected = threading.Event(), threading.Event()

        def state(now: grpc.ChannelConnectivity) -> None:
            if now == grpc.ChannelConnectivity.READY:
                connected.set()

        def done(_call: Any) -> None:
            ended.set()
            connected.set()  # no longer waiting for a connection either

        call.add_done_callback(done)
        channel.subscribe(state)
        try:
            connected.wait(limit)  # the call's deadline (`limit`) ends it by then anyway
            return connected.is_set() and not ended.wait(settle)
        finally:
            channel.unsubscribe(state)


def _ms(seconds: float) -> int:
    """Seconds as a gRPC channel option in milliseconds (a 32-bit int, at least 1)."""
    return max(1, min(int(seconds * 1000), 2**31 - 1))


def _pages(fetch: Callable[[str], Any], field: str) -> Iterator[Any]:
    token = ""
    while True:
        page = fetch(token)
        yield from getattr(page, field)
        token = page.next_page_token
        if not token:
            return


__all__ = ["ClientTls", "ClientTlsError", "TransferChange", "TransferClient", "TransferError", "new_request_id"]
