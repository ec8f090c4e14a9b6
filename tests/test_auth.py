"""Identity comes from the client certificate, over mutual TLS only."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.support import RunningNode, new_lookup_code, new_national_id, refused
from transfer.client import ClientTls, TransferClient, TransferError
from transfer.devpki import DevCA
from transfer.domain.errors import Unauthenticated
from transfer.domain.model import Role
from transfer.identity import province_uri, role_uri, school_uri
from transfer.server.auth import Authenticator
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


def test_reflection_v1_lists_services(node: RunningNode) -> None:
    """Reflection answers over grpc.reflection.v1 (what grpcurl asks first) as over v1alpha, naming both."""
    with _channel(node, "auditor") as ch:
        info = ch.stream_stream(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        requests = [
            reflection_pb2.ServerReflectionRequest(list_services=""),
            reflection_pb2.ServerReflectionRequest(file_containing_symbol="transfer.v1.StaffService"),
        ]
        listed, described = list(info(iter(requests), timeout=5))
    names = {s.name for s in listed.list_services_response.service}
    assert {
        "transfer.v1.TransferService",
        "transfer.v1.StaffService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= names
    assert described.file_descriptor_response.file_descriptor_proto


class _Presented:
    """What gRPC hands the servicer: the client certificate it verified (the Authenticator's input)."""

    def __init__(self, cert: x509.Certificate) -> None:
        self.pem = cert.public_bytes(serialization.Encoding.PEM)

    def auth_context(self) -> dict[str, list[bytes]]:
        return {"x509_pem_cert": [self.pem]}


def _cert(
    subject: str, issuer: x509.Certificate | None, issuer_key: Any, *, ca: bool, uris: Sequence[str] = ()
) -> tuple[x509.Certificate, Any]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer is not None else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if uris:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in uris]), critical=False
        )
    return builder.sign(issuer_key if issuer is not None else key, hashes.SHA256()), key


def test_a_peer_ca_cannot_vouch_for_this_nodes_schools() -> None:
    """A peer province's CA without a path length limit issues an intermediate, which issues a certificate
    naming one of this node's schools. TLS would accept the chain (the peer's CA is in the trust bundle);
    the node does not: a caller that is not a peer node needs a certificate issued by the node's own CA."""
    own_ca, own_key = _cert("CA 01", None, None, ca=True)
    peer_ca, peer_key = _cert("CA 79", None, None, ca=True)
    middle, middle_key = _cert("not a CA anyone meant", peer_ca, peer_key, ca=True)
    school = [role_uri(Role.SCHOOL), school_uri("S1"), province_uri("01")]
    forged, _ = _cert("school S1", middle, middle_key, ca=False, uris=school)
    genuine, _ = _cert("school S1", own_ca, own_key, ca=False, uris=school)
    auth = Authenticator("01", {"79": peer_ca}, own_cas=[own_ca])
    actor = auth.actor(_Presented(genuine))
    assert (actor.role, actor.school) == (Role.SCHOOL, "S1")
    with pytest.raises(Unauthenticated) as refused_forged:
        auth.actor(_Presented(forged))
    assert refused_forged.value.reason == "UNTRUSTED_CLIENT_CERTIFICATE"
