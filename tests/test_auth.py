"""Identity comes from the client certificate, over mutual TLS only."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.support import RunningNode, new_lookup_code, new_national_id, refused
from transfer.client import ClientTls, TransferClient, TransferError
from transfer.devpki import DevCA
from transfer.domain.model import Role
from transfer.identity import province_uri, role_uri, school_uri
from transfer.v1 import common_pb2


def test_certificate_not_request_decides_the_school(s1: TransferClient, database_url: str) -> None:
    """S1's certificate naming S2 in a request acts as S1: refused, nothing written."""
    with refused("PERMISSION_DENIED", "NOT_YOUR_SCHOOL", database_url=database_url):
        s1.register_record(new_lookup_code(), new_national_id(), common_pb2.RECORD_LEVEL_PRIMARY, custodian_school="S2")
    with refused("PERMISSION_DENIED", "NOT_YOUR_SCHOOL"):
        s1.list_records(school="S2")


def test_unknown_ca_is_refused_at_handshake(node: RunningNode, rogue_pki: Path) -> None:
    """A client certificate from a CA the node does not trust never gets a call through."""
    rogue = TransferClient(node.address, ClientTls.from_pki(rogue_pki, "school-S1"), timeout=5, retry=None)
    try:
        with pytest.raises(TransferError) as info:
            rogue.list_records()
        assert info.value.code == grpc.StatusCode.UNAVAILABLE
    finally:
        rogue.close()


def test_client_refuses_a_node_from_another_ca(node: RunningNode, pki: Path, rogue_pki: Path) -> None:
    """A client that trusts another CA refuses to talk to the node (no call is made)."""
    tls = ClientTls(
        (rogue_pki / "ca.pem").read_bytes(), (pki / "school-S1.pem").read_bytes(), (pki / "school-S1.key").read_bytes()
    )
    c = TransferClient(node.address, tls, timeout=5)
    try:
        with pytest.raises(TransferError) as info:
            c.list_records()
        assert info.value.code == grpc.StatusCode.UNAVAILABLE
    finally:
        c.close()


def _issue(pki: Path, tmp_path: Path, stem: str, uris: list[str]) -> ClientTls:
    """A certificate from the node's own CA with arbitrary URI names."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    ca = DevCA.__new__(DevCA)
    ca.out, ca.days = tmp_path, 1
    ca.key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), None)  # type: ignore[assignment]
    ca.cert = x509.load_pem_x509_certificate((pki / "ca.pem").read_bytes())
    ca.name = ca.cert.subject
    cred = ca.issue(stem, stem, uris)
    return ClientTls((pki / "ca.pem").read_bytes(), cred.cert.read_bytes(), cred.key.read_bytes())


@pytest.mark.parametrize(
    ("uris", "reason"),
    [
        ([], "NO_ROLE"),
        ([role_uri(Role.SCHOOL), role_uri(Role.PROVINCE_ADMIN), school_uri("S1")], "NO_ROLE"),
        (["urn:hocba:role:janitor", school_uri("S1")], "UNKNOWN_ROLE"),
        ([role_uri(Role.SCHOOL)], "BAD_SCHOOL"),
        ([role_uri(Role.SCHOOL), school_uri("S1"), school_uri("S2")], "BAD_SCHOOL"),
        ([role_uri(Role.SCHOOL), school_uri("S1"), province_uri("79")], "WRONG_PROVINCE"),
        ([role_uri(Role.PROVINCE_ADMIN), province_uri("79")], "WRONG_PROVINCE"),
    ],
)
def test_certificates_without_a_valid_identity(
    node: RunningNode, pki: Path, tmp_path: Path, uris: list[str], reason: str
) -> None:
    """Chain-valid certificates whose names do not make one valid identity for this node are refused."""
    c = TransferClient(node.address, _issue(pki, tmp_path, "odd", uris), timeout=5)
    try:
        with refused("PERMISSION_DENIED", reason):
            c.list_records(school="S1")
    finally:
        c.close()


def test_auditor_cannot_touch_records(node: RunningNode) -> None:
    """A role without school rights (auditor) cannot list or register records."""
    c = node.client("auditor")
    with refused("PERMISSION_DENIED", "NOT_YOUR_SCHOOL"):
        c.list_records(school="S1")


def _channel(node: RunningNode, identity: str) -> grpc.Channel:
    return grpc.secure_channel(node.address, ClientTls.from_pki(node.pki, identity).credentials())


def test_health_and_reflection_over_mtls(node: RunningNode) -> None:
    """The health service reports SERVING and reflection lists the transfer.v1 services."""
    with _channel(node, "auditor") as ch:
        resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
        resp = health_pb2_grpc.HealthStub(ch).Check(
            health_pb2.HealthCheckRequest(service="transfer.v1.TransferService"), timeout=5
        )
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        replies = list(
            stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
        )
        names = {s.name for s in replies[0].list_services_response.service}
        assert {
            "transfer.v1.TransferService",
            "transfer.v1.RecordService",
            "transfer.v1.SchoolDirectoryService",
        } <= names
