"""The caller's identity, from the client certificate TLS verified.

gRPC has already checked the chain against the node's CA (mutual TLS is
mandatory); here the certificate's URI names become an `Actor`. Parsing X.509
costs far more than a call, so results are cached per certificate.
"""

from __future__ import annotations

import collections
from typing import Protocol

from cryptography import x509

from transfer.domain.errors import DomainError, Unauthenticated
from transfer.domain.model import Actor
from transfer.identity import actor_from_certificate


class HasAuthContext(Protocol):
    def auth_context(self) -> collections.abc.Mapping[str, collections.abc.Iterable[bytes]]: ...


class Authenticator:
    def __init__(self, node_province: str, cache_size: int = 4096) -> None:
        self.node_province = node_province
        self.cache_size = cache_size
        self._cache: collections.OrderedDict[bytes, Actor | DomainError] = collections.OrderedDict()

    def actor(self, context: HasAuthContext) -> Actor:
        pems = list(context.auth_context().get("x509_pem_cert", ()))
        if not pems:
            raise Unauthenticated("NO_CLIENT_CERTIFICATE", "a client certificate is required")
        pem = pems[0]
        hit = self._cache.get(pem)
        if hit is None:
            try:
                hit = actor_from_certificate(x509.load_pem_x509_certificate(pem), self.node_province)
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
