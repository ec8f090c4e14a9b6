"""The node's Prometheus metrics (docs/operations.md, Monitoring): scraped from real nodes over HTTP and read
with the Prometheus client's own parser; the alert rules and the Grafana dashboard name only exported metrics."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from prometheus_client.parser import text_string_to_metric_families

from tests.federation import Node, close_all, free_port, make_node, wait_for
from tests.staffing import new_record
from tests.support import ROOT
from transfer.client import NO_RETRY, TransferError
from transfer.devpki import SigningCA, make_dev_pki

ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "hocba-node.json"
TRANSFERS = "transfer.v1.TransferService"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape_text(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        assert resp.status == 200
        return str(resp.read().decode("utf-8"))


def scrape(port: int) -> Samples:
    """Every sample of the endpoint, by (sample name, labels)."""
    out: Samples = {}
    for family in text_string_to_metric_families(scrape_text(port)):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float | None:
    """The sample `name` whose labels include `labels` (the sum when several match), None when none does."""
    found = [v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= ls]
    return sum(found) if found else None


def metrics_section(port: int) -> str:
    return f'\n[metrics]\nlisten = "127.0.0.1:{port}"\n'


@pytest.fixture(scope="module")
def pki79(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pki79")
    make_dev_pki(out, "79", ["D1"])
    SigningCA(out)
    return out


@pytest.fixture
def pair(tmp_path: Path, pki: Path, pki79: Path) -> Iterator[tuple[Node, Node, int, int]]:
    """Nodes 01 and 79 as processes, each with a metrics endpoint; 79 not started yet."""
    port_a, port_b, metrics_a, metrics_b = free_port(), free_port(), free_port(), free_port()
    bundle = tmp_path / "signing-cas.pem"
    bundle.write_bytes((pki / "signing-ca.pem").read_bytes() + (pki79 / "signing-ca.pem").read_bytes())
    a = make_node(tmp_path / "a", pki, "01", f"sqlite:///{tmp_path / 'a' / 'node.db'}", port_a,
                  (pki79, "79", port_b), bundle, more_config=metrics_section(metrics_a))  # fmt: skip
    b = make_node(tmp_path / "b", pki79, "79", f"sqlite:///{tmp_path / 'b' / 'node.db'}", port_b,
                  (pki, "01", port_a), bundle, more_config=metrics_section(metrics_b))  # fmt: skip
    try:
        yield a, b, metrics_a, metrics_b
    finally:
        close_all([a, b])


@pytest.mark.slow
def test_scrape_during_a_transfer_between_two_nodes(pair: tuple[Node, Node, int, int], pki: Path) -> None:
    """Calls are counted with their codes (a refusal's too), an offer waits in the outbox while the peer is
    down and the pending gauge returns to 0 once delivered, the log grows, certificates' expiry is their notAfter."""
    a, b, metrics_a, metrics_b = pair
    a.proc.start()
    a.admin.register_school("S1", "Trường Tiểu học Số 1")
    s1 = a.client("school-S1")
    before = scrape(metrics_a)
    assert value(before, "hocba_node_info", province="01") == 1
    assert value(before, "hocba_peer_messages_pending", peer="79") == 0
    assert value(before, "process_cpu_seconds_total") is not None  # the client library's process collector
    assert value(before, "python_info") is not None  # and its platform collector
    log_before = value(before, "hocba_log_entries")
    assert log_before is not None

    # A refused call is counted with its code.
    with pytest.raises(TransferError) as refused:
        a.client("school-S1", retry=NO_RETRY).get_record("0" * 32)
    assert refused.value.code.name == "PERMISSION_DENIED"  # not its school's record

    # 79 is down: the offer waits in 01's outbox, with its age and its failed attempts.
    record = new_record(s1)
    t = s1.initiate_transfer(record, "D1", "79").transfer
    waiting = wait_for(  # the database's part of a scrape may be up to SNAPSHOT_TTL_SECONDS old
        "a failed attempt to reach 79, and the offer pending",
        lambda: (
            (m := scrape(metrics_a))
            and (value(m, "hocba_peer_delivery_attempts_total", peer="79", outcome="retry") or 0) >= 1
            and value(m, "hocba_peer_messages_pending", peer="79") == 1
            and m
        ),
    )
    queued = value(waiting, "hocba_peer_oldest_pending_timestamp_seconds", peer="79")
    assert queued is not None and queued <= time.time()
    assert (value(waiting, "hocba_peer_pending_max_attempts", peer="79") or 0) >= 1
    assert value(waiting, "hocba_peer_last_delivery_timestamp_seconds", peer="79") is None

    # 79 starts: the offer is delivered, the gauge goes back to 0 and the oldest message's age disappears.
    b.proc.start()
    b.admin.register_school("D1", "Trường Tiểu học Quận 1")
    after = wait_for(
        "01's outbox to drain",
        lambda: (m := scrape(metrics_a)) and value(m, "hocba_peer_messages_pending", peer="79") == 0 and m,
    )
    assert value(after, "hocba_peer_oldest_pending_timestamp_seconds", peer="79") is None
    assert value(after, "hocba_peer_delivery_attempts_total", peer="79", outcome="delivered") == 1
    assert (value(after, "hocba_peer_last_delivery_timestamp_seconds", peer="79") or 0) >= queued
    assert value(after, "hocba_peer_delivery_seconds_count", peer="79") == 1

    # 79 accepts; its decision travels back through 79's outbox.
    b.client("school-D1").accept_transfer(t.id)
    on_b = wait_for(
        "79's outbox to drain",
        lambda: (
            (m := scrape(metrics_b))
            and value(m, "hocba_peer_delivery_attempts_total", peer="01", outcome="delivered")
            and value(m, "hocba_peer_messages_pending", peer="01") == 0
            and m
        ),
    )
    assert value(on_b, "hocba_grpc_server_handled_total", grpc_service="transfer.v1.PeerService",
                 grpc_method="OfferTransfer", grpc_code="OK") == 1  # fmt: skip
    assert value(on_b, "hocba_grpc_server_handled_total", grpc_method="AcceptTransfer", grpc_code="OK") == 1

    final = wait_for(
        "01's log to hold the decision and a checkpoint over it",
        lambda: (m := scrape(metrics_a))
        and value(m, "hocba_grpc_server_handled_total", grpc_service="transfer.v1.PeerService",
                  grpc_method="ResolveTransfer", grpc_code="OK") == 1
        and value(m, "hocba_log_checkpoint_entries") == value(m, "hocba_log_entries")
        and m,
    )  # fmt: skip
    calls = {"grpc_service": TRANSFERS, "grpc_method": "InitiateTransfer", "grpc_type": "unary"}
    assert value(final, "hocba_grpc_server_started_total", **calls) == 1
    assert value(final, "hocba_grpc_server_handled_total", **calls, grpc_code="OK") == 1
    assert value(final, "hocba_grpc_server_handling_seconds_count", **calls) == 1
    assert value(final, "hocba_grpc_server_handled_total", grpc_method="GetRecord", grpc_code="PERMISSION_DENIED") == 1
    assert (value(final, "hocba_log_entries") or 0) > log_before
    assert (value(final, "hocba_log_checkpoint_timestamp_seconds") or 0) > 0
    assert (value(final, "hocba_writer_batch_commands_count") or 0) >= 1
    assert (value(final, "hocba_writer_transaction_seconds_count") or 0) >= 1
    assert value(final, "hocba_writer_commands_waiting") == 0
    assert value(final, "hocba_log_consistent") == 1
    assert (value(final, "hocba_grpc_server_connections") or 0) >= 1  # 79's link to 01 at least

    # Every certificate the node holds or trusts, with its notAfter.
    own = x509.load_pem_x509_certificate((pki / "node.pem").read_bytes())
    assert (
        value(final, "hocba_certificate_expiry_timestamp_seconds", role="node") == own.not_valid_after_utc.timestamp()
    )
    ca = x509.load_pem_x509_certificate((pki / "ca.pem").read_bytes())
    assert value(final, "hocba_certificate_expiry_timestamp_seconds", role="ca") == ca.not_valid_after_utc.timestamp()
    roles = {dict(ls)["role"] for (n, ls) in final if n == "hocba_certificate_expiry_timestamp_seconds"}
    assert roles == {"node", "ca", "peer_ca", "signing_ca"}
    assert value(final, "hocba_certificate_expiry_timestamp_seconds", role="peer_ca", peer="79") is not None

    # What a scrape costs (printed, not asserted: see the report / docs).
    began = time.perf_counter()
    for _ in range(20):
        scrape_text(metrics_a)
    print(f"scrape: {(time.perf_counter() - began) / 20 * 1000:.1f} ms each (20 scrapes)")
