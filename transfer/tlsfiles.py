"""Checks of the PEM files a TLS end point is given (CA, certificate, private key).

gRPC reads them only when it binds a port or makes a handshake, and then says
neither which file is wrong nor why; the node and the client check them first
and name the file. Pure: no gRPC, no domain.
"""

from __future__ import annotations

from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization

Problem = Literal["ca", "cert", "key", "mismatch"]


def tls_files_problem(ca: bytes, cert: bytes, key: bytes) -> Problem | None:
    """Which of the three is unusable: a CA or certificate file with no PEM certificate, a key that is
    not an unencrypted PEM private key, or a key that is not the certificate's ("mismatch"); else None."""
    try:
        x509.load_pem_x509_certificates(ca)
    except ValueError:
        return "ca"
    try:
        leaf = x509.load_pem_x509_certificates(cert)[0]
    except ValueError:
        return "cert"
    try:
        private = serialization.load_pem_private_key(key, password=None)
    except (ValueError, TypeError):
        return "key"
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if private.public_key().public_bytes(*spki) != leaf.public_key().public_bytes(*spki):
        return "mismatch"
    return None
