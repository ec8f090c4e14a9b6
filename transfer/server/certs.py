"""The node's TLS material, read at start and again on SIGHUP: its certificate and key, the CAs
whose certificates it accepts (its own `tls.ca_file`, each peer's `ca_file`) and the deny list of
client certificates (`tls.revoked`, `tls.revoked_file`); with them, the CAs of teachers' signing
certificates (`signing.ca_file`), a trust the node reloads at the same moment.

The server's credentials are gRPC's dynamic SSL credentials: gRPC asks `ServerCertificates` for a
new configuration before every new connection's handshake, and gets one once after each reload.
Connections already open keep the handshake they made, so calls in flight are not touched; new
connections get the new certificate and trust. Material that cannot be read whole (a missing file,
no PEM certificate, a key that is not the certificate's, a bad deny-list entry) is refused as a
whole: at start the node does not start, on a reload it keeps what it has.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import grpc
from cryptography import x509

from transfer.revocation import Revocations
from transfer.server.config import Config
from transfer.tlsfiles import tls_files_problem


class TlsRefused(Exception):
    """TLS material the node cannot use; the message names the file and says why, in one line."""


@dataclass(frozen=True)
class TlsMaterial:
    cert: bytes  # the node's certificate chain (PEM), leaf first
    key: bytes
    own_ca: bytes  # tls.ca_file
    own_cas: tuple[x509.Certificate, ...]
    peer_ca: dict[str, bytes] = field(default_factory=dict)  # province -> its ca_file
    peer_cas: dict[str, tuple[x509.Certificate, ...]] = field(default_factory=dict)
    revoked: Revocations = field(default_factory=Revocations)
    signing_cas: tuple[x509.Certificate, ...] = ()  # signing.ca_file: not TLS, but reloaded with it

    @property
    def leaf(self) -> x509.Certificate:
        return x509.load_pem_x509_certificates(self.cert)[0]

    def roots(self) -> bytes:
        """Every CA a client certificate may chain to: the node's and each peer's."""
        return b"\n".join([self.own_ca, *self.peer_ca.values()])

    def server_configuration(self) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration([(self.key, self.cert)], root_certificates=self.roots())

    def describe(self) -> dict[str, object]:
        """What a log line says of it: the certificate's serial and expiry, counts of the rest."""
        leaf = self.leaf
        return {
            "serial": format(leaf.serial_number, "x"),
            "not_after": leaf.not_valid_after_utc.isoformat(),
            "own_cas": len(self.own_cas),
            "peer_cas": sum(len(c) for c in self.peer_cas.values()),
            "revoked": len(self.revoked),
            "signing_cas": len(self.signing_cas),
        }


def _read(path: object, what: str) -> bytes:
    try:
        with open(str(path), "rb") as f:
            return f.read()
    except OSError as exc:
        raise TlsRefused(f"{what} {path}: cannot be read: {exc.strerror or exc}") from None


def _certificates(pem: bytes, what: str, path: object) -> tuple[x509.Certificate, ...]:
    try:
        return tuple(x509.load_pem_x509_certificates(pem))
    except ValueError:
        raise TlsRefused(f"{what} {path}: no PEM certificate in it") from None


def load_tls(config: Config) -> TlsMaterial:
    """Read and check every file of the node's TLS material (`TlsRefused` naming the first bad one)."""
    own_ca = _read(config.ca_file, "tls.ca_file")
    cert = _read(config.cert_file, "tls.cert_file")
    key = _read(config.key_file, "tls.key_file")
    messages = {
        "ca": f"tls.ca_file {config.ca_file}: no PEM certificate in it",
        "cert": f"tls.cert_file {config.cert_file}: no PEM certificate in it",
        "key": f"tls.key_file {config.key_file}: not an unencrypted PEM private key",
        "mismatch": f"tls.key_file {config.key_file} is not the key of tls.cert_file {config.cert_file}",
    }
    problem = tls_files_problem(own_ca, cert, key)
    if problem is not None:
        raise TlsRefused(messages[problem])
    peer_ca, peer_cas = {}, {}
    for peer in config.peers:
        what = f"the ca_file of peer {peer.province}"
        pem = _read(peer.ca_file, what)
        peer_cas[peer.province] = _certificates(pem, what, peer.ca_file)
        peer_ca[peer.province] = pem
    try:
        revoked = Revocations.parse(config.tls_revoked)
    except ValueError as exc:
        raise TlsRefused(f"tls.revoked: {exc}") from None
    if config.tls_revoked_file is not None:
        text = _read(config.tls_revoked_file, "tls.revoked_file")
        try:
            revoked |= Revocations.parse_file(text.decode("utf-8"))
        except UnicodeDecodeError:
            raise TlsRefused(f"tls.revoked_file {config.tls_revoked_file}: not UTF-8 text") from None
        except ValueError as exc:
            raise TlsRefused(f"tls.revoked_file {config.tls_revoked_file}: {exc}") from None
    signing_cas: tuple[x509.Certificate, ...] = ()
    if config.signing_ca_file is not None:
        pem = _read(config.signing_ca_file, "signing.ca_file")
        # An empty bundle is allowed (nobody can sign), as at start; a bundle without a certificate is not.
        signing_cas = _certificates(pem, "signing.ca_file", config.signing_ca_file) if pem.strip() else ()
    return TlsMaterial(
        cert, key, own_ca, _certificates(own_ca, "tls.ca_file", config.ca_file), peer_ca, peer_cas, revoked,
        signing_cas,
    )  # fmt: skip


class ServerCertificates:
    """The server's dynamic credentials and the material they serve.

    gRPC calls `_fetch` on one of its own threads before each new connection's handshake; it returns
    the configuration of the last reload once (gRPC then keeps it), and None (no change) otherwise, so
    that a handshake costs no new SSL context. One listening port per node: a fetched configuration
    is taken by that port's listener.
    """

    def __init__(self, material: TlsMaterial) -> None:
        self.material = material
        self._lock = threading.Lock()
        self._pending: grpc.ServerCertificateConfiguration | None = None

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            self.material.server_configuration(), self._fetch, require_client_authentication=True
        )

    def replace(self, material: TlsMaterial) -> None:
        configuration = material.server_configuration()
        with self._lock:
            self.material = material
            self._pending = configuration

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        with self._lock:
            pending, self._pending = self._pending, None
        return pending
