"""Teachers' certificates and signatures: what the node accepts and why.

A teacher signs a page's digest with the personal key of a certificate
(chứng thư số) that must chain to one of the CAs the node trusts for signing
and be valid at signing time. Three key types are accepted, the ones Vietnamese
signing CAs issue and `cryptography` verifies:

* RSA (2048 bits or more), PKCS#1 v1.5 with SHA-256;
* ECDSA on P-256 with SHA-256 (DER-encoded signature);
* Ed25519.

The message signed is the page's 32-byte digest itself (see `pages.page_digest`).
Chains are checked certificate by certificate (`verify_directly_issued_by`),
each issuer being a CA certificate (basic constraints) valid at the time in
question, up to a configured anchor.
"""

from __future__ import annotations

import collections
import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from transfer.domain.errors import FailedPrecondition, FieldViolation, InvalidArgument, PreconditionViolation

MAX_CHAIN = 4


@dataclass(frozen=True, slots=True)
class CertificateInfo:
    """What the node keeps of a teacher's certificate."""

    sha256: str  # hex fingerprint of the DER encoding
    der: bytes
    key_type: str  # "rsa-2048", "ecdsa-p256", "ed25519"
    not_before: datetime
    not_after: datetime
    chain: tuple[bytes, ...] = ()  # DER of intermediates, leaf's issuer first


def fingerprint(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def _bad_cert(reason: str, message: str, field: str = "certificates") -> InvalidArgument:
    return InvalidArgument(reason, f"{field}: {message}", field_violations=(FieldViolation(field, message, reason),))


def key_type(cert: x509.Certificate) -> str:
    try:
        key = cert.public_key()
    except (UnsupportedAlgorithm, ValueError):  # a key algorithm the library cannot read
        raise _bad_cert("UNSUPPORTED_KEY", "the certificate's key algorithm is not supported") from None
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise _bad_cert("UNSUPPORTED_KEY", f"RSA keys must have at least 2048 bits, not {key.key_size}")
        return f"rsa-{key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise _bad_cert("UNSUPPORTED_KEY", f"ECDSA keys must be on P-256, not {key.curve.name}")
        return "ecdsa-p256"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "ed25519"
    raise _bad_cert("UNSUPPORTED_KEY", f"unsupported key type {type(key).__name__}")


def parse_chain(pem: bytes) -> list[x509.Certificate]:
    """The certificates of a PEM bundle, leaf first."""
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise _bad_cert("BAD_CERTIFICATE", "not a PEM certificate (chain)") from None
    if not 1 <= len(certs) <= MAX_CHAIN:
        raise _bad_cert("BAD_CERTIFICATE", f"give the certificate and at most {MAX_CHAIN - 1} intermediates")
    for position, cert in enumerate(certs):
        # The library reads names and extensions only when asked: ask now, so that
        # a malformed one is this refusal, not an exception deep in the chain check.
        try:
            cert.subject, cert.issuer, cert.extensions  # noqa: B018
        except ValueError:
            which = "the certificate" if position == 0 else f"intermediate {position}"
            raise _bad_cert("BAD_CERTIFICATE", f"{which} has a malformed name or extension") from None
    return certs


def _valid_at(cert: x509.Certificate, at: datetime) -> bool:
    return cert.not_valid_before_utc <= at <= cert.not_valid_after_utc


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except (x509.ExtensionNotFound, ValueError):  # none, or unreadable (from a peer's package): not a CA
        return False


class SigningTrust:
    """The CAs whose certificates the node accepts for teachers' signatures.

    A teacher signs many pages with one certificate, and a package carries
    the same few certificates again and again: each "issued by" link whose
    signature verified is remembered (a bounded set of certificate pairs,
    compared by their full DER encoding), so a chain costs one signature
    check per distinct link, not per page. Validity dates are checked every
    time, against the time of the signature.
    """

    def __init__(self, anchors: Sequence[x509.Certificate], *, remember: int = 4096) -> None:
        self.anchors = list(anchors)
        self._remember = remember
        self._verified: collections.OrderedDict[tuple[x509.Certificate, x509.Certificate], None] = (
            collections.OrderedDict()
        )

    def _issued_by(self, cert: x509.Certificate, issuer: x509.Certificate) -> bool:
        link = (cert, issuer)
        if link in self._verified:
            self._verified.move_to_end(link)
            return True
        if not issued_by(cert, issuer):
            return False
        self._verified[link] = None
        if len(self._verified) > self._remember:
            self._verified.popitem(last=False)
        return True

    def replace_anchors(self, anchors: Sequence[x509.Certificate]) -> None:
        """Trust these CAs from now on (a reload of `signing.ca_file`): every later check uses them.

        The remembered links stay: a link says that a signature verified, whatever is trusted."""
        self.anchors = list(anchors)

    @classmethod
    def from_pem(cls, pem: bytes) -> SigningTrust:
        return cls(x509.load_pem_x509_certificates(pem) if pem.strip() else [])

    def check_chain(self, leaf: x509.Certificate, intermediates: Sequence[x509.Certificate], at: datetime) -> None:
        """Raise unless leaf -> intermediates -> an anchor, each signed by the next and valid at `at`."""
        if not _valid_at(leaf, at):
            raise FailedPrecondition(
                "CERTIFICATE_NOT_VALID",
                f"the certificate is valid from {leaf.not_valid_before_utc:%Y-%m-%d} "
                f"to {leaf.not_valid_after_utc:%Y-%m-%d}, not at {at:%Y-%m-%d %H:%M} UTC",
                precondition_violations=(
                    PreconditionViolation(
                        "CERTIFICATE_VALIDITY", f"certificates/{fingerprint(_der(leaf))}", "expired or not yet valid"
                    ),
                ),
            )
        current = leaf
        pool = list(intermediates)
        for _ in range(MAX_CHAIN + 1):
            for anchor in self.anchors:
                if self._issued_by(current, anchor) and _valid_at(anchor, at):
                    return
            issuer = next((c for c in pool if self._issued_by(current, c) and _is_ca(c) and _valid_at(c, at)), None)
            if issuer is None:
                break
            pool.remove(issuer)
            current = issuer
        raise FailedPrecondition(
            "UNTRUSTED_CERTIFICATE",
            "the certificate does not chain to a CA this node trusts for signatures",
            precondition_violations=(
                PreconditionViolation("CERTIFICATE_TRUST", f"certificates/{fingerprint(_der(leaf))}", "unknown CA"),
            ),
        )

    def accept(self, pem: bytes, at: datetime) -> CertificateInfo:
        """Validate a teacher's certificate (with its intermediates) for registration."""
        leaf, *intermediates = parse_chain(pem)
        kind = key_type(leaf)
        try:
            self.check_chain(leaf, intermediates, at)
        except FailedPrecondition as exc:
            # At registration the certificate is the request's input.
            raise _bad_cert(exc.reason, exc.message) from None
        return CertificateInfo(
            fingerprint(_der(leaf)),
            _der(leaf),
            kind,
            leaf.not_valid_before_utc,
            leaf.not_valid_after_utc,
            tuple(_der(c) for c in intermediates),
        )


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """`issuer` signed `cert` directly (names match and the signature verifies)."""
    try:
        if cert.issuer != issuer.subject:
            return False
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


@functools.lru_cache(maxsize=1024)
def _public_key(cert_der: bytes) -> CertificatePublicKeyTypes:
    """The key of a certificate (a teacher signs many pages with one: parse it once)."""
    return x509.load_der_x509_certificate(cert_der).public_key()


def verify_signature(cert_der: bytes, message: bytes, signature: bytes) -> bool:
    """Whether `signature` over `message` verifies with the certificate's key."""
    key = _public_key(cert_der)
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, message)
        else:
            return False
    except (InvalidSignature, ValueError):
        return False
    return True


def load_certificate(der: bytes) -> x509.Certificate:
    return x509.load_der_x509_certificate(der)
