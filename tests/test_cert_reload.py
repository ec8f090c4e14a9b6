"""Certificates without downtime: a node process reloads its certificate, key, CAs and deny list on
SIGHUP while it serves; a client takes new credentials without a new process."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import shutil
import signal
import socket
import ssl
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from prometheus_client.parser import text_string_to_metric_families

from tests.federation import NodeDatabases, Pair, close_all, free_port, make_node, peer_block
from tests.federation import wait_for as wait_until
from tests.staffing import new_record, teacher_certificate
from tests.support import (
    FakeClock,
    ServerProcess,
    load_config,
    new_lookup_code,
    new_national_id,
    running_node,
    with_schools,
    write_config,
)
from tests.support import process_client as client
from transfer.client import NO_RETRY, ClientTls, TransferClient, TransferError
from transfer.devpki import DevCA, SigningCA
from transfer.revocation import Revocations
from transfer.server.config import ConfigError, load
from transfer.server.peers import PERMANENT, refuses_caller
from transfer.v1 import common_pb2, records_pb2, transfers_pb2

pytestmark = pytest.mark.slow

INCOMING = transfers_pb2.TRANSFER_DIRECTION_INCOMING
RELOADED = '"TLS material reloaded"'
REFUSED = "TLS reload refused"
AUTH_REFUSED = "peer refuses this node's certificate"
DUE_AFTER_RELOAD = "waiting messages are due now: this node's TLS material was reloaded"
ACCEPTED = transfers_pb2.TRANSFER_STATE_ACCEPTED


@pytest.fixture
def own_pki(tmp_path: Path, pki: Path) -> Path:
    """A copy of the dev PKI that this test may renew and overwrite."""
    return Path(shutil.copytree(pki, tmp_path / "pki"))


@pytest.fixture
def server(tmp_path: Path, own_pki: Path) -> Iterator[ServerProcess]:
    """A node process with schools S1 and S2, and an empty tls.revoked_file."""
    (tmp_path / "revoked.txt").write_text("# serial:0x... or sha256:...\n")
    cfg = write_config(tmp_path / "node.toml", pki=own_pki, database_url=f"sqlite:///{tmp_path / 'node.db'}")
    proc = ServerProcess(cfg, tmp_path / "server.log", env={"TRANSFER_TLS_REVOKED_FILE": str(tmp_path / "revoked.txt")})
    proc.start()
    with with_schools(proc, own_pki):
        yield proc


def served_serial(server: ServerProcess, pki: Path) -> int:
    """The serial of the certificate the node shows a new connection (a TLS handshake on 127.0.0.1)."""
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    context.load_cert_chain(pki / "auditor.pem", pki / "auditor.key")
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def scrape_metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        return str(resp.read().decode("utf-8"))


def serial_of(path: Path) -> int:
    return x509.load_pem_x509_certificate(path.read_bytes()).serial_number


def log_count(server: ServerProcess, text: str) -> int:
    return sum(text in line for line in server.log_path.read_text(encoding="utf-8").splitlines())


def hang_up(server: ServerProcess, *, reloaded: int | None = None, refused: int | None = None) -> None:
    """SIGHUP, then wait (bounded) until the node has logged that many reloads / refusals in all."""
    assert server.proc is not None
    server.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if (reloaded is None or log_count(server, RELOADED) >= reloaded) and (
            refused is None or log_count(server, REFUSED) >= refused
        ):
            return
        time.sleep(0.05)
    raise AssertionError(f"no reload line after SIGHUP: {server.log_path.read_text()[-2000:]}")


def install(renewed: Path, pki: Path, stem: str) -> None:
    """Put a renewed pair in place as an operator (or certbot, step) would: each file replaced whole."""
    os.replace(renewed / f"{stem}.key", pki / f"{stem}.key")
    os.replace(renewed / f"{stem}.pem", pki / f"{stem}.pem")


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_renewal_under_load_drops_no_call(server: ServerProcess, own_pki: Path, tmp_path: Path) -> None:
    """The node's certificate and key are replaced and SIGHUP sent while a client calls without pause (new
    connections included): no call fails, and new connections are shown the renewed certificate."""
    old_serial = served_serial(server, own_pki)
    assert old_serial == serial_of(own_pki / "node.pem")
    calls: list[str] = []
    failures: list[TransferError] = []
    stop = threading.Event()

    def load() -> None:
        c: TransferClient | None = None
        for i in range(5000):  # bounded, whatever happens
            if stop.is_set():
                break
            if i % 20 == 0:  # a new connection, hence a new handshake, every 20 calls
                if c is not None:
                    c.close()
                c = client(server, own_pki, "school-S1", retry=NO_RETRY)
            try:
                if i % 4 == 0:
                    c.register_record(new_lookup_code(), new_national_id(), common_pb2.RECORD_LEVEL_PRIMARY)
                else:
                    c.get_school("S1")
                calls.append("ok")
            except TransferError as err:
                failures.append(err)
        if c is not None:
            c.close()

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    try:
        wait_for(lambda: len(calls) >= 60, "calls before the renewal")
        renewed = DevCA.load(own_pki).renew("node", into=tmp_path / "renewed")
        new_serial = serial_of(renewed.cert)
        install(tmp_path / "renewed", own_pki, "node")
        before = len(calls)
        hang_up(server, reloaded=1)
        assert served_serial(server, own_pki) == new_serial != old_serial
        wait_for(lambda: len(calls) >= before + 150 or not worker.is_alive(), "calls after the renewal")
    finally:
        stop.set()
        worker.join(60)
    assert failures == []
    assert len(calls) >= before + 150  # several new connections made after the reload, all served
    assert log_count(server, REFUSED) == 0


def test_revoked_client_certificates_are_refused(server: ServerProcess, own_pki: Path, tmp_path: Path) -> None:
    """A certificate put on the deny list (tls.revoked by serial in the configuration file, tls.revoked_file
    by SHA-256) is refused UNAUTHENTICATED CERTIFICATE_REVOKED after SIGHUP, even on a connection opened
    before; the same school's renewed certificate and other callers are served."""
    renewed = DevCA.load(own_pki).renew("school-S1", into=tmp_path / "s1-renewed")
    old_s1 = client(server, own_pki, "school-S1", retry=NO_RETRY)
    new_s1 = TransferClient(
        server.address, ClientTls.from_files(own_pki / "ca.pem", renewed.cert, renewed.key), timeout=5, retry=NO_RETRY
    )
    auditor = client(server, own_pki, "auditor", retry=NO_RETRY)
    admin = client(server, own_pki, "province-admin", retry=NO_RETRY)
    assert old_s1.get_school("S1").code == "S1"  # its connection is open before the reload
    assert auditor.get_log_info().origin

    config = server.config_path.read_text(encoding="utf-8")
    serial = f"serial:0x{serial_of(own_pki / 'school-S1.pem'):x}"
    server.config_path.write_text(config.replace("[tls]\n", f'[tls]\nrevoked = ["{serial}"]\n', 1), encoding="utf-8")
    der = x509.load_pem_x509_certificate((own_pki / "auditor.pem").read_bytes()).public_bytes(Encoding.DER)
    fingerprint = ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())  # as openssl prints it
    (tmp_path / "revoked.txt").write_text(f"# the auditor's laptop was stolen\nsha256:{fingerprint}\n")
    hang_up(server, reloaded=1)

    for revoked, call in ((old_s1, lambda: old_s1.get_school("S1")), (auditor, auditor.get_log_info)):
        with pytest.raises(TransferError) as refusal:
            call()
        assert (refusal.value.code.name, refusal.value.reason) == ("UNAUTHENTICATED", "CERTIFICATE_REVOKED")
        revoked.close()
    assert new_s1.get_school("S1").code == "S1"
    assert admin.get_school("S2").code == "S2"

    server.config_path.write_text(config, encoding="utf-8")  # taken off the list again
    (tmp_path / "revoked.txt").write_text("")
    hang_up(server, reloaded=2)
    with client(server, own_pki, "school-S1", retry=NO_RETRY) as again:
        assert again.get_school("S1").code == "S1"
    for c in (new_s1, admin):
        c.close()


def test_broken_reload_keeps_serving_with_the_old_certificate(
    server: ServerProcess, own_pki: Path, tmp_path: Path
) -> None:
    """A key that is not the certificate's, a certificate file without PEM, a missing file, a bad deny-list
    entry: each SIGHUP logs one line and the node serves on with its old certificate; a good pair then loads."""
    old_serial = served_serial(server, own_pki)
    good_key, good_cert = (own_pki / "node.key").read_bytes(), (own_pki / "node.pem").read_bytes()
    breakages: list[Callable[[], None]] = [
        lambda: shutil.copyfile(own_pki / "school-S1.key", own_pki / "node.key"),
        lambda: (own_pki / "node.pem").write_text("not a certificate\n"),
        (own_pki / "node.pem").unlink,
        lambda: (tmp_path / "revoked.txt").write_text("serial:twelve\n"),
    ]
    with client(server, own_pki, "school-S1", retry=NO_RETRY) as s1:
        for n, breakage in enumerate(breakages, 1):
            breakage()
            hang_up(server, refused=n)
            assert log_count(server, REFUSED) == n  # one line per failed reload
            assert s1.get_school("S1").code == "S1"
            with client(server, own_pki, "school-S2", retry=NO_RETRY) as fresh:  # a new connection
                assert fresh.get_school("S2").code == "S2"
            assert served_serial(server, own_pki) == old_serial
            (own_pki / "node.key").write_bytes(good_key)
            (own_pki / "node.pem").write_bytes(good_cert)
            (tmp_path / "revoked.txt").write_text("")
        assert log_count(server, RELOADED) == 0
        new_serial = serial_of(DevCA.load(own_pki).renew("node", into=tmp_path / "renewed").cert)
        install(tmp_path / "renewed", own_pki, "node")
        hang_up(server, reloaded=1)
        assert served_serial(server, own_pki) == new_serial != old_serial
        assert s1.get_school("S1").code == "S1"


def test_client_reload_tls(server: ServerProcess, own_pki: Path, tmp_path: Path) -> None:
    """`TransferClient.reload_tls` puts later calls on the renewed certificate, in the same process, while a
    watch stream opened before goes on on the old connection; the old certificate is then revoked."""
    s1 = client(server, own_pki, "school-S1", retry=NO_RETRY)
    code = new_lookup_code()
    s1.register_record(code, new_national_id(), common_pb2.RECORD_LEVEL_PRIMARY)
    stream = s1.transfers.WatchTransfers(transfers_pb2.WatchTransfersRequest(), timeout=60)
    renewed = DevCA.load(own_pki).renew("school-S1", into=tmp_path / "s1-renewed")
    s1.reload_tls(ClientTls.from_files(own_pki / "ca.pem", renewed.cert, renewed.key))
    (tmp_path / "revoked.txt").write_text(f"serial:{serial_of(own_pki / 'school-S1.pem')}\n")
    hang_up(server, reloaded=1)

    t = s1.initiate_transfer(code, "S2").transfer  # refused CERTIFICATE_REVOKED on the old certificate
    assert s1.get_transfer(t.id).state == transfers_pb2.TRANSFER_STATE_REQUESTED
    event = next(stream)  # the stream opened before the reload still delivers
    assert (event.transfer.id, event.transfer.state) == (t.id, transfers_pb2.TRANSFER_STATE_REQUESTED)
    stream.cancel()
    with client(server, own_pki, "school-S1", retry=NO_RETRY) as old, pytest.raises(TransferError) as refusal:
        old.get_school("S1")
    assert refusal.value.reason == "CERTIFICATE_REVOKED"
    s1.close()


def test_deny_list_entries() -> None:
    """Deny-list entries name a certificate by serial (hex with 0x, or decimal) or SHA-256; anything else
    is refused at load, naming the entry (the configuration) or the line (the file)."""
    parsed = Revocations.parse(["serial:0x0A:1b", "serial:42", "SHA256:" + "Ab" * 32])
    assert parsed.serials == {0x0A1B, 42}
    assert parsed.fingerprints == {bytes.fromhex("ab" * 32)}
    assert Revocations.parse_file("# none\n\nserial:7  # a comment\n").serials == {7}
    for bad in ["0x0a1b", "serial:", "serial:0x", "serial:1.5", "sha256:abcd", "sha1:" + "00" * 20, "serial:٣"]:
        with pytest.raises(ValueError, match="write serial:0x"):
            Revocations.parse([bad])
    with pytest.raises(ValueError, match="line 2"):
        Revocations.parse_file("serial:1\nserial:x\n")


def test_config_refuses_a_bad_revoked_entry(tmp_path: Path, pki: Path) -> None:
    """tls.revoked with an entry that names no certificate is a configuration error, not a silent no-op."""
    path = write_config(tmp_path / "node.toml", pki=pki, database_url=f"sqlite:///{tmp_path / 'node.db'}")
    with pytest.raises(ConfigError, match=r"tls\.revoked: 'serial:x'"):
        load(path, env={"TRANSFER_TLS_REVOKED": "serial:x"})
    assert load(path, env={"TRANSFER_TLS_REVOKED": "serial:0x1f, serial:3"}).tls_revoked == ("serial:0x1f", "serial:3")


def test_peer_links_present_the_renewed_certificate(
    tmp_path: Path, own_pki: Path, pki79: Path, signing_bundle: Path
) -> None:
    """After 01 renews its node certificate (SIGHUP) and 79 revokes the old one (SIGHUP), 01's next offer
    reaches 79: the link 01 had open to 79 was rebuilt with the new certificate."""
    (tmp_path / "revoked79.txt").write_text("")
    port_a, port_b = free_port(), free_port()
    a = make_node(
        tmp_path / "a", own_pki, "01", f"sqlite:///{tmp_path / 'a.db'}", port_a, (pki79, "79", port_b), signing_bundle
    )
    b = make_node(tmp_path / "b", pki79, "79", f"sqlite:///{tmp_path / 'b.db'}", port_b, (own_pki, "01", port_a),
                  signing_bundle, env={"TRANSFER_TLS_REVOKED_FILE": str(tmp_path / "revoked79.txt")})  # fmt: skip
    try:
        a.proc.start()
        b.proc.start()
        a.admin.register_school("S1", "Trường Tiểu học Số 1 (Hà Nội)")
        b.admin.register_school("D1", "Trường Tiểu học Quận 1")
        s1, d1 = a.client("school-S1"), b.client("school-D1")

        def offered() -> str:
            t = s1.initiate_transfer(new_record(s1), "D1", "79").transfer
            wait_until("the offer to arrive at 79", lambda: any(x.id == t.id for x in d1.iter_transfers(INCOMING)))
            return t.id

        offered()  # 01's link to 79 is open, with the first certificate
        old_serial = serial_of(own_pki / "node.pem")
        DevCA.load(own_pki).renew("node", into=tmp_path / "renewed")
        install(tmp_path / "renewed", own_pki, "node")
        hang_up(a.proc, reloaded=1)
        (tmp_path / "revoked79.txt").write_text(f"serial:0x{old_serial:x}\n")
        hang_up(b.proc, reloaded=1)
        second = offered()
        assert s1.get_transfer(second).delivery_state == transfers_pb2.DELIVERY_STATE_DELIVERED
    finally:
        close_all([a, b])


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_offer_waits_while_the_peer_refuses_our_certificate(
    request: pytest.FixtureRequest, tmp_path: Path, own_pki: Path, pki79: Path, signing_bundle: Path, engine: str
) -> None:
    """79 puts 01's node certificate on its deny list: 01's offer is not ended (no refusal for good) but waits,
    retried, with one ERROR line naming CERTIFICATE_REVOKED and its attempts counted as auth_refused; 01 renews
    its certificate and reloads (SIGHUP): its waiting messages to 79 are due at once, the offer is delivered,
    79 accepts, and both logs agree."""
    databases = NodeDatabases(request, tmp_path)
    (tmp_path / "revoked79.txt").write_text("")
    port_a, port_b, metrics_a = free_port(), free_port(), free_port()
    a = make_node(tmp_path / "a", own_pki, "01", databases.url("a", engine), port_a, (pki79, "79", port_b),
                  signing_bundle, more_config=f'\n[metrics]\nlisten = "127.0.0.1:{metrics_a}"\n')  # fmt: skip
    b = make_node(tmp_path / "b", pki79, "79", databases.url("b", engine), port_b, (own_pki, "01", port_a),
                  signing_bundle, env={"TRANSFER_TLS_REVOKED_FILE": str(tmp_path / "revoked79.txt")})  # fmt: skip
    try:
        a.proc.start()
        b.proc.start()
        a.admin.register_school("S1", "Trường Tiểu học Số 1 (Hà Nội)")
        b.admin.register_school("D1", "Trường Tiểu học Quận 1")
        s1, d1, admin = a.client("school-S1"), b.client("school-D1"), a.admin
        (tmp_path / "revoked79.txt").write_text(f"serial:0x{serial_of(own_pki / 'node.pem'):x}\n")
        hang_up(b.proc, reloaded=1)

        code = new_record(s1)
        t = s1.initiate_transfer(code, "D1", "79").transfer
        wait_until(
            "79 to refuse 01's first attempt",
            lambda: (
                s1.get_transfer(t.id).state != transfers_pb2.TRANSFER_STATE_REQUESTED
                or any("CERTIFICATE_REVOKED" in d.last_error for d in admin.list_deliveries())
            ),
        )
        waiting = s1.get_transfer(t.id)  # not ended: nothing is wrong with the message
        assert (waiting.state, waiting.delivery_state) == (
            transfers_pb2.TRANSFER_STATE_REQUESTED,
            transfers_pb2.DELIVERY_STATE_PENDING,
        ), waiting.delivery_error
        wait_until(
            "01 to try the offer three times",
            lambda: any(d.peer_province == "79" and d.max_attempts >= 3 for d in admin.list_deliveries()),
        )
        (to79,) = [d for d in admin.list_deliveries() if d.peer_province == "79"]
        assert "CERTIFICATE_REVOKED" in to79.last_error
        assert (to79.pending, to79.failed) == (1, 0)
        assert s1.get_transfer(t.id).state == transfers_pb2.TRANSFER_STATE_REQUESTED
        assert s1.get_record(code).status == records_pb2.RECORD_STATUS_FROZEN
        assert log_count(a.proc, AUTH_REFUSED) == 1  # once per streak, not per attempt
        assert "CERTIFICATE_REVOKED" in next(
            line for line in a.proc.log_path.read_text(encoding="utf-8").splitlines() if AUTH_REFUSED in line
        )
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(scrape_metrics(metrics_a))
            for s in family.samples
        }
        assert samples[("hocba_peer_delivery_attempts_total", (("outcome", "auth_refused"), ("peer", "79")))] >= 3
        assert samples.get(("hocba_peer_delivery_attempts_total", (("outcome", "refused"), ("peer", "79"))), 0) == 0
        assert samples[("hocba_peer_messages_pending", (("peer", "79"),))] == 1

        DevCA.load(own_pki).renew("node", into=tmp_path / "renewed")
        install(tmp_path / "renewed", own_pki, "node")
        hang_up(a.proc, reloaded=1)
        assert log_count(a.proc, DUE_AFTER_RELOAD) == 1
        wait_until("the offer to arrive at 79", lambda: any(x.id == t.id for x in d1.iter_transfers(INCOMING)))
        d1.accept_transfer(t.id)
        wait_until("79's decision to reach 01", lambda: s1.get_transfer(t.id).state == ACCEPTED)
        delivered = s1.get_transfer(t.id)
        assert delivered.delivery_state == transfers_pb2.DELIVERY_STATE_DELIVERED
        Pair(a, b).assert_consistent(code)
    finally:
        close_all([a, b])
        databases.drop()


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_reload_makes_messages_refused_for_our_certificate_due_at_once(
    request: pytest.FixtureRequest, tmp_path: Path, own_pki: Path, pki79: Path, signing_bundle: Path, engine: str
) -> None:
    """In-process nodes on a fake clock that does not move: after 79 refused 01's certificate, 01's offer waits
    for a retry time that never comes; 01's TLS reload with a renewed certificate makes it due, and it arrives."""
    clock = FakeClock()
    databases = NodeDatabases(request, tmp_path)
    ports = {"01": free_port(), "79": free_port()}
    nodes = {}
    try:
        with contextlib.ExitStack() as stack:
            for province, own, other, peer in (("01", own_pki, pki79, "79"), ("79", pki79, own_pki, "01")):
                (tmp_path / province).mkdir()
                path = write_config(
                    tmp_path / province / "node.toml", pki=own, database_url=databases.url(province, engine),
                    province=province, listen=f"127.0.0.1:{ports[province]}",
                    extra=f'\n[seal]\nkey_file = "{own / "seal.key"}"\n' + peer_block(other, peer, ports[peer]),
                    signing_ca=signing_bundle,
                )  # fmt: skip
                nodes[province] = stack.enter_context(running_node(load_config(path), own, clock, path))
            a, b = nodes["01"], nodes["79"]
            assert a.node is not None and b.node is not None
            a.client("province-admin").register_school("S1", "Trường Số 1")
            b.client("province-admin").register_school("D1", "Trường Quận 1")
            revoked = dataclasses.replace(b.node.config, tls_revoked=(f"serial:{serial_of(own_pki / 'node.pem')}",))
            assert b.run(lambda: b.node.reload_tls(revoked))  # type: ignore[union-attr]
            s1, admin = a.client("school-S1"), a.client("province-admin")
            t = s1.initiate_transfer(new_record(s1), "D1", "79").transfer
            wait_until(
                "79 to refuse 01's certificate",
                lambda: any("CERTIFICATE_REVOKED" in d.last_error for d in admin.list_deliveries()),
            )
            (to79,) = admin.list_deliveries()
            assert (to79.pending, to79.failed, to79.max_attempts) == (1, 0, 1)  # its retry is in the fake future

            DevCA.load(own_pki).renew("node", into=tmp_path / "renewed")
            install(tmp_path / "renewed", own_pki, "node")
            assert a.run(a.node.reload_tls)
            d1 = b.client("school-D1")
            wait_until("the offer to arrive at 79", lambda: any(x.id == t.id for x in d1.iter_transfers(INCOMING)))
            wait_until(
                "01 to record the receipt",
                lambda: s1.get_transfer(t.id).delivery_state == transfers_pb2.DELIVERY_STATE_DELIVERED,
            )
    finally:
        databases.drop()


def test_which_refusals_of_a_delivery_are_about_the_caller() -> None:
    """UNAUTHENTICATED, and PERMISSION_DENIED for any reason but NOT_YOUR_TRANSFER (the one PeerService gives
    about a message), refuse this node as a caller: retried. Other refusals are final or transient as before."""
    assert refuses_caller(grpc.StatusCode.UNAUTHENTICATED, "CERTIFICATE_REVOKED")
    assert refuses_caller(grpc.StatusCode.UNAUTHENTICATED, "")
    for reason in ("PEER_IDENTITY", "PEERS_ONLY", "WRONG_PROVINCE", "ROLE_NOT_ALLOWED", "", "SOMETHING_NEW"):
        assert refuses_caller(grpc.StatusCode.PERMISSION_DENIED, reason), reason
    assert not refuses_caller(grpc.StatusCode.PERMISSION_DENIED, "NOT_YOUR_TRANSFER")
    assert grpc.StatusCode.PERMISSION_DENIED in PERMANENT and grpc.StatusCode.UNAUTHENTICATED not in PERMANENT
    for code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.UNAVAILABLE):
        assert not refuses_caller(code, "")


def signing_cas_exported(port: int) -> set[str]:
    """The fingerprints (first 16 hex digits) of the signing CAs the node's expiry metrics list."""
    return {
        s.labels["sha256"]
        for family in text_string_to_metric_families(scrape_metrics(port))
        for s in family.samples
        if s.name == "hocba_certificate_expiry_timestamp_seconds" and s.labels["role"] == "signing_ca"
    }


def test_signing_ca_bundle_reloads_on_sighup(tmp_path: Path, own_pki: Path) -> None:
    """A teacher certificate from a new signing CA is refused (UNTRUSTED_CERTIFICATE) until that CA is added to
    signing.ca_file and SIGHUP sent, then accepted, and the expiry metrics list the new CA; a bundle without a
    certificate is refused on the next SIGHUP as a whole: the trust in service, and its metrics, stay."""
    metrics = free_port()
    cfg = write_config(tmp_path / "node.toml", pki=own_pki, database_url=f"sqlite:///{tmp_path / 'node.db'}",
                       extra=f'\n[metrics]\nlisten = "127.0.0.1:{metrics}"\n')  # fmt: skip
    proc = ServerProcess(cfg, tmp_path / "server.log")
    proc.start()
    with with_schools(proc, own_pki), client(proc, own_pki, "school-admin-S1", retry=NO_RETRY) as admin:
        bundle = own_pki / "signing-ca.pem"
        first = x509.load_pem_x509_certificate(bundle.read_bytes()).fingerprint(hashes.SHA256()).hex()[:16]
        second = SigningCA(tmp_path / "second-ca", common_name="second signing CA")
        added = second.cert.fingerprint(hashes.SHA256()).hex()[:16]
        pem, _ = teacher_certificate(second, "GV-NEW")
        with pytest.raises(TransferError) as refused:
            admin.register_teacher("GV-NEW", "Giáo viên mới", [pem])
        assert refused.value.reason == "UNTRUSTED_CERTIFICATE"
        assert signing_cas_exported(metrics) == {first}

        (tmp_path / "bundle.pem").write_bytes(
            bundle.read_bytes() + (tmp_path / "second-ca" / "signing-ca.pem").read_bytes()
        )
        os.replace(tmp_path / "bundle.pem", bundle)
        hang_up(proc, reloaded=1)
        assert admin.register_teacher("GV-NEW", "Giáo viên mới", [pem]).code == "GV-NEW"
        assert signing_cas_exported(metrics) == {first, added}

        bundle.write_text("not a certificate\n")
        hang_up(proc, refused=1)
        line = next(x for x in proc.log_path.read_text(encoding="utf-8").splitlines() if REFUSED in x)
        assert "signing.ca_file" in line
        later, _ = teacher_certificate(second, "GV-LATER")  # the trust in service still holds the second CA
        assert admin.register_teacher("GV-LATER", "Giáo viên sau", [later]).code == "GV-LATER"
        assert signing_cas_exported(metrics) == {first, added}
        assert log_count(proc, RELOADED) == 1
