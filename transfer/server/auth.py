"""The caller's identity, from the client certificate TLS verified.

gRPC has already checked the chain against the node's CA (mutual TLS is
mandatory); here the certificate's URI names become an `Actor`. Parsing X.509
costs far more than a call, so results are cached per certificate (until the
node reloads its TLS material: the deny list and the CAs may have changed).
"""

from __future__ import annotations

import collections
from collections.abc import Mapping, Sequence
from typing import Protocol

from cryptography import x509

from transfer.domain.errors import DomainError, Unauthenticated
from transfer.domain.model import Actor
from transfer.domain.signatures import issued_by
from transfer.identity import actor_from_certificate, peer_from_certificate
from transfer.revocation import Revocations


class HasAuthContext(Protocol):
    def auth_context(self) -> collections.abc.Mapping[str, collections.abc.Iterable[bytes]]: ...


class Authenticator:
    """Client certificate -> actor.

    Certificates issued by a peer province's CA (`peer_cas`) can only name
    that peer node; everything else is judged as issued by the node's own CA
    (gRPC already refused certificates from CAs outside the trust bundle).
    """

    def __init__(
        self,
        node_province: str,
        peer_cas: Mapping[str, x509.Certificate | Sequence[x509.Certificate]] | None = None,
        cache_size: int = 4096,
        own_cas: Sequence[x509.Certificate] | None = None,
        revoked: Revocations | None = None,
    ) -> None:
        self.node_province = node_province
        self.cache_size = cache_size
        self._cache: collections.OrderedDict[bytes, Actor | DomainError] = collections.OrderedDict()
        self.trust(peer_cas or {}, own_cas, revoked or Revocations())

    def trust(
        self,
        peer_cas: Mapping[str, x509.Certificate | Sequence[x509.Certificate]],
        own_cas: Sequence[x509.Certificate] | None,
        revoked: Revocations,
    ) -> None:
        """Judge callers by these CAs and this deny list from now on (at start, and on each TLS reload).

        Calls already admitted are not judged again; every later call is, on any connection."""
        self.peer_cas = {p: [c] if isinstance(c, x509.Certificate) else list(c) for p, c in peer_cas.items()}
        # The certificates of the node's CA file. Given, a caller that is not a
        # peer node must hold a certificate issued directly by one of them: the
        # TLS chain check alone would also accept one that a peer's CA issued
        # through an intermediate of its own, naming one of this node's schools.
        self.own_cas = list(own_cas) if own_cas is not None else None
        self.revoked = revoked
        self._cache.clear()

    def actor(self, context: HasAuthContext) -> Actor:
        pems = list(context.auth_context().get("x509_pem_cert", ()))
        if not pems:
            raise Unauthenticated("NO_CLIENT_CERTIFICATE", "a client certificate is required")
        pem = pems[0]
        hit = self._cache.get(pem)
        if hit is None:
            try:
                hit = self._identify(x509.load_pem_x509_certificate(pem))
            except DomainError as exc:
                hit = exc
            except ValueError:
                hit = Unauthenticated("BAD_CLIENT_CERTIFICATE", "the client certificate cannot be read")
            self._cache[pem] = hit
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        if isinstance(hit, DomainError):
            # A fresh exception each time: re-raising one instance would grow its traceback.
            raise type(hit)(hit.reason, hit.message)
        return hit

    def _identify(self, cert: x509.Certificate) -> Actor:
        if self.revoked.revokes(cert):
            raise Unauthenticated(
                "CERTIFICATE_REVOKED", "the client certificate is on this node's deny list (tls.revoked)"
            )
        for province, cas in self.peer_cas.items():
            if any(issued_by(cert, ca) for ca in cas):
                return peer_from_certificate(cert, province)
        if self.own_cas is not None and not any(issued_by(cert, ca) for ca in self.own_cas):
            raise Unauthenticated(
                "UNTRUSTED_CLIENT_CERTIFICATE", "the client certificate was not issued by this node's CA"
            )
        return actor_from_certificate(cert, self.node_province)
