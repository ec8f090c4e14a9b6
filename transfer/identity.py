"""Who a certificate says its holder is: the URI names inside X.509 certificates.

Every certificate the node's CA issues carries URI subject alternative names:

    urn:hocba:role:<role>          exactly one: school, school_admin,
                                   province_admin, peer, auditor, node
    urn:hocba:province:<code>      the province the holder belongs to
    urn:hocba:school:<code>        for school and school_admin: the school

The server reads them from the verified client certificate, never from a
request. This module is pure (no grpc): the dev PKI writes these names and the
server's interceptor reads them.
"""

from __future__ import annotations

import hashlib

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

from transfer.domain.errors import PermissionDenied
from transfer.domain.model import Actor, Role
from transfer.domain.provinces import is_province
from transfer.domain.validation import SCHOOL_CODE

PREFIX = "urn:hocba:"


def role_uri(role: Role) -> str:
    return f"{PREFIX}role:{role.value}"


def school_uri(code: str) -> str:
    return f"{PREFIX}school:{code}"


def province_uri(code: str) -> str:
    return f"{PREFIX}province:{code}"


def uris_of(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(u) for u in san.get_values_for_type(x509.UniformResourceIdentifier)]


def common_name(cert: x509.Certificate) -> str:
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else ""


def key_id(cert: x509.Certificate) -> str:
    """An opaque, stable id of the certificate's key: how admins, auditors and
    peer nodes are named in idempotency keys and log entries (never a person's name)."""
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return "k" + hashlib.sha256(spki).hexdigest()[:16]


def actor_from_certificate(cert: x509.Certificate, node_province: str) -> Actor:
    """The actor a (chain-verified) client certificate names, for this node.

    Refuses certificates without exactly one known role, school roles without
    exactly one valid school, and admins of another province.
    """
    values: dict[str, list[str]] = {"role": [], "school": [], "province": []}
    for uri in uris_of(cert):
        if uri.startswith(PREFIX):
            kind, _, value = uri[len(PREFIX) :].partition(":")
            if kind in values:
                values[kind].append(value)
    if len(values["role"]) != 1:
        raise PermissionDenied("NO_ROLE", "the client certificate must name exactly one role")
    try:
        role = Role(values["role"][0])
    except ValueError:
        raise PermissionDenied(
            "UNKNOWN_ROLE", f"unknown role {values['role'][0]!r} in the client certificate"
        ) from None
    provinces = values["province"]
    if len(provinces) > 1 or (provinces and not is_province(provinces[0])):
        raise PermissionDenied("BAD_PROVINCE", "the client certificate must name at most one valid province")
    province = provinces[0] if provinces else node_province
    cn = key_id(cert)
    if role in (Role.SCHOOL, Role.SCHOOL_ADMIN):
        schools = values["school"]
        if len(schools) != 1 or not SCHOOL_CODE.fullmatch(schools[0]):
            raise PermissionDenied("BAD_SCHOOL", "a school certificate must name exactly one valid school")
        if province != node_province:
            raise PermissionDenied("WRONG_PROVINCE", f"this node serves province {node_province} only")
        return Actor(role, province, schools[0], cn)
    if values["school"]:
        raise PermissionDenied("BAD_SCHOOL", f"a {role.value} certificate must not name a school")
    if role is Role.PEER:
        raise PermissionDenied("PEER_IDENTITY", "peer nodes are known by their own CA, not this node's")
    if province != node_province:
        raise PermissionDenied("WRONG_PROVINCE", f"this node serves province {node_province} only")
    return Actor(role, province, None, cn)


def peer_from_certificate(cert: x509.Certificate, province: str) -> Actor:
    """The peer node a certificate issued by province `province`'s CA names.

    It must be that node's own certificate: role node, and that province —
    a peer's CA vouches for its own province and nothing else.
    """
    roles = [u for u in uris_of(cert) if u.startswith(f"{PREFIX}role:")]
    provinces = [u for u in uris_of(cert) if u.startswith(f"{PREFIX}province:")]
    if roles != [role_uri(Role.NODE)] or provinces != [province_uri(province)]:
        raise PermissionDenied(
            "PEER_IDENTITY",
            f"a certificate from province {province}'s CA must be that node's own (role node, province {province})",
        )
    return Actor(Role.PEER, province, None, key_id(cert))
