"""A hostile peer: province 01 played by a test, with 01's real node certificate and seal key, sending
validly sealed packages (and messages) it builds by hand, each with whatever flaw the test gives it."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from tests.federation import peer_channel, peer_stub
from tests.support import new_national_id
from transfer.client.signing import sign_digest
from transfer.devpki import SigningCA
from transfer.domain.package import FORMAT, seal_message
from transfer.domain.pages import page_digest
from transfer.ledger.note import parse_skey
from transfer.v1 import peers_pb2

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # the FakeClock's start
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# A flaw: changes a valid package document in place, or returns the bytes to send instead.
Flaw = Callable[[dict[str, Any]], "bytes | None"]


def us(t: datetime) -> int:
    return (t - EPOCH) // timedelta(microseconds=1)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def encode(doc: Any) -> bytes:
    """As a sender encodes a package (ASCII escapes, so that lone surrogates can travel too)."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode("utf-8")


def page_document(
    lookup_code: str,
    teacher: tuple[Any, bytes],
    *,
    issuer: tuple[str, str] = ("01", "S1"),
    payload: bytes = b"%PDF-1.7 hoc ba",
    school_year: str = "2026-2027",
    segment: str = "",
    grade: int = 3,
    class_name: str = "3A",
) -> dict[str, Any]:
    """A page signed by its homeroom teacher (with `teacher`: key and DER certificate), the principal's
    signature pending; its digest is that of its content and identity."""
    page_id = uuid.uuid4().hex
    sha = hashlib.sha256(payload).digest()
    digest = page_digest(page_id, 1, sha, "application/pdf", lookup_code, school_year, segment, grade, class_name)
    key, der = teacher
    return {
        "id": page_id,
        "issuing_province": issuer[0],
        "issuing_school": issuer[1],
        "school_year": school_year,
        "segment": segment,
        "grade": grade,
        "class_name": class_name,
        "media_type": "application/pdf",
        "payload": b64(payload),
        "payload_sha256": sha.hex(),
        "version": 1,
        "digest": digest.hex(),
        "state": 2,
        "lock_track": 1,
        "created_us": us(NOW),
        "locked_us": None,
        "signatures": [
            {
                "role": 1,
                "subject": "",
                "teacher_id": uuid.uuid4().hex,
                "signature": b64(sign_digest(key, digest)),
                "certificate": b64(der),
                "chain": [],
                "signed_us": us(NOW),
            }
        ],
        "pending": [{"role": 3, "subject": ""}],
    }


def package_document(teacher: tuple[Any, bytes], *, to_school: str = "D1", **page: Any) -> dict[str, Any]:
    """A valid package from 01/S1 to 79/`to_school`: a new record (fresh ids) with one page."""
    code = uuid.uuid4().hex
    return {
        "format": FORMAT,
        "transfer": {
            "id": uuid.uuid4().hex,
            "from_province": "01",
            "from_school": "S1",
            "to_province": "79",
            "to_school": to_school,
            "created_us": us(NOW),
            "lookup_code": code,
            "salt": uuid.uuid4().hex,
        },
        "record": {"lookup_code": code, "national_id": new_national_id(), "level": 1, "page_salts": [uuid.uuid4().hex]},
        "pages": [page_document(code, teacher, **page)],
    }


def teacher_of(pki: Path) -> tuple[Any, bytes]:
    """A teacher of `pki`'s signing CA, valid for decades: its private key and DER certificate."""
    pem, key = SigningCA.load(pki).teacher(
        "hostile-peer",
        "ecdsa",
        not_before=datetime(2020, 1, 1, tzinfo=UTC),
        not_after=datetime(2100, 1, 1, tzinfo=UTC),
        write=False,
    )
    return key, x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)


class HostilePeer:
    """Node 01 as seen by node 79: real mTLS identity, real seal key, packages built by hand."""

    def __init__(self, pki01: Path, pki79: Path, address: str) -> None:
        self.seal_key = parse_skey((pki01 / "seal.key").read_text().strip())._key  # type: ignore[attr-defined]
        self.channel = peer_channel(pki01, pki79, address)
        self.stub = peer_stub(self.channel)
        self.teacher = teacher_of(pki01)

    def close(self) -> None:
        self.channel.close()

    def package(self, *, to_school: str = "D1", **page: Any) -> dict[str, Any]:
        """A valid package from 01/S1 to 79/`to_school`: a new record (fresh ids) with one page."""
        return package_document(self.teacher, to_school=to_school, **page)

    def sealed(self, doc: dict[str, Any], flaw: Flaw | None = None) -> tuple[bytes, bytes]:
        """The document (after the flaw, if any) as bytes, and 01's valid seal over them."""
        doc = copy.deepcopy(doc)
        raw = flaw(doc) if flaw is not None else None
        data = raw if raw is not None else encode(doc)
        return data, self.seal_key.sign(seal_message(data))

    def offer(self, doc: dict[str, Any] | bytes, flaw: Flaw | None = None) -> peers_pb2.PeerReceiptBody:
        if isinstance(doc, bytes):
            data, seal = doc, self.seal_key.sign(seal_message(doc))
        else:
            data, seal = self.sealed(doc, flaw)
        response = self.stub.OfferTransfer(peers_pb2.OfferTransferRequest(package=data, seal=seal), timeout=30)
        return peers_pb2.PeerReceiptBody.FromString(response.receipt.body)


def refusal(err: grpc.RpcError) -> tuple[grpc.StatusCode, str, list[tuple[str, str]]]:
    """A refusal's code, ErrorInfo reason and BadRequest (field, reason) pairs."""
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None, f"no status details: {err}"
    reason, fields = "", []
    for detail in status.details:
        info, bad = error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest()
        if detail.Unpack(info):
            reason = info.reason
        elif detail.Unpack(bad):
            fields += [(v.field, v.reason) for v in bad.field_violations]
    return err.code(), reason, fields  # type: ignore[attr-defined]
