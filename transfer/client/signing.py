"""Signing a page digest with a teacher's key, as a school system does it.

The node accepts RSA (PKCS#1 v1.5, SHA-256), ECDSA P-256 (SHA-256, DER
signature) and Ed25519 signatures over the page's 32-byte digest (the `digest`
field of a page or of a signing task). In production the key lives in the
teacher's token (USB or remote signing service); this helper is for keys in
PEM files: development, tests, and systems that hold keys in an HSM-backed
file.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes


def load_key(pem: bytes, password: bytes | None = None) -> PrivateKeyTypes:
    return serialization.load_pem_private_key(pem, password)


def sign_digest(key: PrivateKeyTypes, digest: bytes) -> bytes:
    """The signature the node expects for `digest` with this key."""
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(digest, padding.PKCS1v15(), hashes.SHA256())
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(digest, ec.ECDSA(hashes.SHA256()))
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(digest)
    raise TypeError(f"unsupported key type {type(key).__name__}")
