"""The node's Prometheus metrics (docs/operations.md, Monitoring): scraped from real nodes over HTTP and read
with the Prometheus client's own parser; the alert rules and the Grafana dashboard name only exported metrics."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from prometheus_client.parser import text_string_to_metric_families

from tests.federation import Node, close_all, free_port, make_node, wait_for
from tests.staffing import new_record
from tests.support import ROOT, FakeClock, load_config, running_node, schools_and_a_transfer, write_config
from transfer.client import NO_RETRY, TransferError
from transfer.devpki import DevCA, SigningCA, make_dev_pki
from transfer.server.config import ConfigError, load
from transfer.v1 import schools_pb2, transfers_pb2

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


def test_metrics_are_off_by_default(tmp_path: Path, pki: Path, clock: FakeClock) -> None:
    """Without [metrics] (or with an empty metrics.listen) the node opens no metrics endpoint and adds no interceptor."""
    path = write_config(tmp_path / "node.toml", pki=pki, database_url=f"sqlite:///{tmp_path / 'node.db'}")
    assert load_config(path).metrics is None
    assert load(path, env={"TRANSFER_METRICS_LISTEN": ""}).metrics is None
    with running_node(load_config(path), pki, clock, path) as handle:
        assert handle.node is not None
        assert handle.node.metrics is None and handle.node.metrics_port == 0
        assert handle.node.writer is not None and handle.node.writer.observer is None


@pytest.mark.parametrize("listen", ["9464", "localhost", "127.0.0.1:http", "127.0.0.1:70000", ":9464"])
def test_a_malformed_metrics_listen_is_refused(tmp_path: Path, pki: Path, listen: str) -> None:
    """metrics.listen that is not host:port is a configuration error naming the key."""
    path = write_config(tmp_path / "node.toml", pki=pki, database_url=f"sqlite:///{tmp_path / 'node.db'}",
                        extra=f'\n[metrics]\nlisten = "{listen}"\n')  # fmt: skip
    with pytest.raises(ConfigError, match=r"^metrics\.listen: .* is not host:port"):
        load_config(path)


@pytest.mark.slow
@pytest.mark.parametrize("problem", ["malformed", "taken"])
def test_a_bad_metrics_listen_refuses_the_start_in_one_line(tmp_path: Path, pki: Path, problem: str) -> None:
    """A node process whose metrics.listen is malformed, or whose port is taken, exits non-zero with one line."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        listen = "nowhere" if problem == "malformed" else f"127.0.0.1:{taken.getsockname()[1]}"
        path = write_config(tmp_path / "node.toml", pki=pki, database_url=f"sqlite:///{tmp_path / 'node.db'}",
                            extra=f'\n[metrics]\nlisten = "{listen}"\n')  # fmt: skip
        done = subprocess.run(
            [sys.executable, "-m", "transfer.server", "--config", str(path)],
            cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    if problem == "malformed":  # before logging is set up: the only line
        assert lines == ["transfer-server: configuration error: metrics.listen: 'nowhere' is not host:port "
                         "(like 127.0.0.1:9464; empty: no metrics)"], lines  # fmt: skip
    else:  # the JSON log's one error line, the last
        errors = [json.loads(line) for line in lines if '"level": "ERROR"' in line]
        assert len(errors) == 1 and json.loads(lines[-1]) == errors[0], lines
        assert errors[0]["msg"] == f"cannot start: cannot listen on {listen} (metrics.listen): Address already in use"


@pytest.fixture
def exported(tmp_path: Path, pki: Path, clock: FakeClock) -> Iterator[set[str]]:
    """The sample names a node's endpoint exports (an in-process node, metrics on a free port)."""
    path = write_config(tmp_path / "node.toml", pki=pki, database_url=f"sqlite:///{tmp_path / 'node.db'}",
                        extra=metrics_section(0))  # fmt: skip
    with running_node(load_config(path), pki, clock, path) as handle:
        assert handle.node is not None and handle.node.metrics_port
        handle.client("province-admin").register_school("S1", "Trường S1")
        names = set()
        for family in text_string_to_metric_families(scrape_text(handle.node.metrics_port)):
            names.add(family.name)
            suffixes = {"counter": ["_total", "_created"], "histogram": ["_bucket", "_count", "_sum", "_created"]}
            names.update(family.name + s for s in suffixes.get(family.type, []))
        yield names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression uses (identifiers that are neither functions, keywords nor labels)."""
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    without_labels = re.sub(r"\{[^}]*\}", "", without_strings)
    without_grouping = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", without_labels)
    return set(re.findall(r"\b(?:hocba|process|python)_[a-z0-9_]+\b", without_grouping))


def test_alert_rules_name_only_exported_metrics(exported: set[str]) -> None:
    """Every expression of deploy/prometheus/alerts.yml names metrics the node exports; the rules cover the issue's list."""
    rules = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"]}
    for name, rule in alerts.items():
        used = metric_names(rule["expr"])
        assert used, name
        assert used <= exported, (name, used - exported)
        assert rule["annotations"]["summary"] and rule["labels"]["severity"] in ("warning", "critical"), name
    assert {
        "HocbaDeliveriesStuck", "HocbaCheckpointStale", "HocbaWitnessedCheckpointStale",
        "HocbaCertificateExpiresSoon", "HocbaCallErrorRateHigh", "HocbaNodeDown", "HocbaNotReady",
        "HocbaPeerSplitView", "HocbaPeerCheckpointsNotWitnessed",
    } <= set(alerts)  # fmt: skip


PROMTOOL = os.environ.get("PROMTOOL") or shutil.which("promtool")


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian package prometheus; or set PROMTOOL)")
def test_alert_rules_pass_promtool() -> None:
    """promtool accepts deploy/prometheus/alerts.yml, and its unit tests pass: deliveries stuck past 15 min fire,
    an idle log's old checkpoint does not, one with entries waiting does, a certificate 20 days from expiry warns,
    a peer's first refusal and a first publication failure (series from 0) fire, the witnessed checkpoint's
    staleness fires after a restart and when none was ever witnessed, a node down and a node not ready fire, a
    peer's split-view evidence fires at once (a second piece as a new alert, again after a restart), and a peer
    whose checkpoints this node's witness stopped cosigning fires (deliveries going on, or one 40 min after the
    last cosignature) while a busy one, two quiet ones and one that never submitted here do not."""
    assert PROMTOOL is not None
    for args in (["check", "rules", str(ALERTS)], ["test", "rules", str(ALERTS.with_name("alerts_test.yml"))]):
        done = subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0 and "SUCCESS" in done.stdout, done.stdout + done.stderr


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian package prometheus; or set PROMTOOL)")
def test_dashboard_queries_are_promql(tmp_path: Path) -> None:
    """Every query of the Grafana dashboard parses as PromQL (promtool, as recording rules, Grafana's variables
    replaced by values)."""
    assert PROMTOOL is not None
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    rules = [
        {"record": f"dashboard:query_{i}", "expr": e.replace("$__rate_interval", "5m").replace("$instance", ".*")}
        for i, e in enumerate(exprs)
    ]
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}), encoding="utf-8")
    done = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True, timeout=60,
                          check=False)  # fmt: skip
    assert done.returncode == 0 and f"SUCCESS: {len(rules)} rules found" in done.stdout, done.stdout + done.stderr


def test_dashboard_queries_name_only_exported_metrics(exported: set[str]) -> None:
    """Every query of deploy/grafana/hocba-node.json names metrics the node exports."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 10
    for expr in exprs:
        used = metric_names(expr)
        assert used and used <= exported, (expr, used - exported)


def test_witnessing_metrics(tmp_path: Path, pki: Path) -> None:
    """With one running witness and one down (quorum 1): the latest witnessed checkpoint is the one just cosigned,
    and the down witness's failed submissions are counted as unreachable."""
    from tests.test_witnessing import (
        Witnesses,
        cosigned_note,
        down_witness,
        entry,
        grow,
        node_config,
        publish,
        witness_block,
    )

    ws = Witnesses(tmp_path / "witnesses", pki)
    try:
        w1 = ws.start("w1.example/w")
        block = witness_block([entry(w1), down_witness()], quorum=1)
        path = node_config(tmp_path, pki, f"sqlite:///{tmp_path / 'node.db'}", block)
        path.write_text(path.read_text(encoding="utf-8") + metrics_section(0), encoding="utf-8")
        with running_node(load_config(path), pki, FakeClock(), path) as node:
            assert node.node is not None
            grow(node, 2)
            size = publish(node)
            cosigned_note(node, ["w1.example/w"], size)
            port = node.node.metrics_port
            found = wait_for(
                "the witnessed checkpoint and the down witness's failures",
                lambda: (m := scrape(port))
                and value(m, "hocba_log_witnessed_checkpoint_entries") == size
                and (value(m, "hocba_witness_submission_failures_total", witness="down.example/w9",
                           kind="unreachable") or 0) >= 1
                and m,
            )  # fmt: skip
            assert value(found, "hocba_witness_cosigned_entries", witness="w1.example/w") == size
            signed = value(found, "hocba_log_witnessed_checkpoint_timestamp_seconds")
            assert signed is not None and signed <= (value(found, "hocba_log_checkpoint_timestamp_seconds") or 0)
    finally:
        ws.stop()


def test_streams_and_malformed_calls_are_counted(
    tmp_path: Path, pki: Path, database_url: str, clock: FakeClock
) -> None:
    """On both engines: an open watch stream is counted open with the events it sent, and once the client cancels
    it ends CANCELLED; an undecodable request counts as INVALID_ARGUMENT; the log's size and checkpoint are read;
    the endpoint stops with the node."""
    path = write_config(tmp_path / "node.toml", pki=pki, database_url=database_url, extra=metrics_section(0))
    with running_node(load_config(path), pki, clock, path) as node:
        assert node.node is not None
        port = node.node.metrics_port
        schools_and_a_transfer(node)
        node.run(node.node.publish_checkpoint)
        s1 = node.client("school-S1")
        stream = s1.transfers.WatchTransfers(transfers_pb2.WatchTransfersRequest(), timeout=60)
        next(stream)
        watch = {"grpc_service": TRANSFERS, "grpc_method": "WatchTransfers", "grpc_type": "server_stream"}
        open_ = wait_for(
            "the stream counted open",
            lambda: (m := scrape(port)) and value(m, "hocba_watch_streams_open") == 1 and m,
        )
        assert value(open_, "hocba_grpc_server_started_total", **watch) == 1
        assert (value(open_, "hocba_grpc_server_msg_sent_total", **watch) or 0) >= 1
        assert value(open_, "hocba_grpc_server_handled_total", **watch) is None  # not ended yet
        assert (value(open_, "hocba_log_entries") or 0) >= 1  # the offer
        assert value(open_, "hocba_log_checkpoint_entries") == value(open_, "hocba_log_entries")
        stream.cancel()
        ended = wait_for(
            "the stream counted ended",
            lambda: (m := scrape(port)) and value(m, "hocba_watch_streams_open") == 0
            and value(m, "hocba_grpc_server_handled_total", **watch, grpc_code="CANCELLED") == 1 and m,
        )  # fmt: skip
        assert value(ended, "hocba_grpc_server_handling_seconds_count", **watch) == 1

        garbling = s1._channel.unary_unary(
            "/transfer.v1.SchoolDirectoryService/GetSchool",
            request_serializer=lambda _: b"\xff\xff\xff",
            response_deserializer=schools_pb2.GetSchoolResponse.FromString,
        )
        with pytest.raises(grpc.RpcError) as malformed:
            garbling(schools_pb2.GetSchoolRequest(code="S1"), timeout=10)
        assert malformed.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
        counted = scrape(port)
        assert value(counted, "hocba_grpc_server_handled_total", grpc_method="GetSchool",
                     grpc_code="INVALID_ARGUMENT") == 1  # fmt: skip
    with pytest.raises(OSError):  # the endpoint stopped with the node
        scrape_text(port)


def test_certificate_expiry_follows_a_reload(tmp_path: Path, pki: Path, clock: FakeClock) -> None:
    """After the node's certificate is renewed and reloaded (SIGHUP's reload_tls), the expiry exported is the
    renewed certificate's (its fingerprint and notAfter), not the one the node started with."""
    own = Path(shutil.copytree(pki, tmp_path / "pki"))
    path = write_config(tmp_path / "node.toml", pki=own, database_url=f"sqlite:///{tmp_path / 'node.db'}",
                        extra=metrics_section(0))  # fmt: skip
    with running_node(load_config(path), own, clock, path) as node:
        assert node.node is not None
        port = node.node.metrics_port

        def node_certificate() -> tuple[str, float]:
            ((labels, expiry),) = [
                (dict(ls), v) for (n, ls), v in scrape(port).items()
                if n == "hocba_certificate_expiry_timestamp_seconds" and ("role", "node") in ls
            ]  # fmt: skip
            return labels["sha256"], expiry

        def fingerprint(pem: Path) -> tuple[str, float]:
            cert = x509.load_pem_x509_certificate(pem.read_bytes())
            return cert.fingerprint(hashes.SHA256()).hex()[:16], cert.not_valid_after_utc.timestamp()

        assert node_certificate() == fingerprint(own / "node.pem")
        renewed = DevCA.load(own).renew("node", into=tmp_path / "renewed")
        os.replace(renewed.key, own / "node.key")
        os.replace(renewed.cert, own / "node.pem")
        assert node.run(node.node.reload_tls)
        assert node_certificate() == fingerprint(own / "node.pem")


@pytest.mark.slow
def test_labelled_counters_start_at_zero(tmp_path: Path, pki: Path, pki79: Path) -> None:
    """A node process with a peer, a witness and a [witness] of its own exports, from its first scrape, each
    labelled series an alert watches at 0: every peer x every delivery outcome, every publication and writer
    failure reason, every witness x every failure kind, every peer x every answer of its own witness and x every
    source of split-view evidence, and the peer's cosigned entries (so a first refusal, failure or piece of
    evidence is an increase); no witnessed checkpoint while none in its database is, no cosignature time of a
    peer never cosigned; health SERVING."""
    from storage.writer import FAILURE_REASONS
    from tests.test_peer_witness import generate_witness_key, witness_section
    from tests.test_witnessing import down_witness, witness_block
    from transfer.server.app import PUBLICATION_FAILURE_REASONS
    from transfer.server.peers import OUTCOMES
    from transfer.server.witnessing import FAILURE_KINDS
    from transfer.witness.server import OUTCOMES as WITNESS_OUTCOMES

    port, metrics_port = free_port(), free_port()
    bundle = tmp_path / "signing-cas.pem"
    bundle.write_bytes((pki / "signing-ca.pem").read_bytes() + (pki79 / "signing-ca.pem").read_bytes())
    witness = down_witness()
    head, _, tables = witness_block([witness], quorum=1, startup=0.5).partition("\x00")
    (tmp_path / "a").mkdir()
    generate_witness_key("hocba.invalid/province/01/witness", tmp_path / "a" / "witness.key")
    own = witness_section(free_port(), tmp_path / "a" / "witness.key")
    node = make_node(tmp_path / "a", pki, "01", f"sqlite:///{tmp_path / 'a' / 'node.db'}", port,
                     (pki79, "79", free_port()), bundle,
                     more_config=metrics_section(metrics_port) + tables + own)  # fmt: skip
    text = node.config.read_text(encoding="utf-8")
    assert "checkpoint_interval_seconds = 0.2\n" in text
    node.config.write_text(text.replace("checkpoint_interval_seconds = 0.2\n",
                                        f"checkpoint_interval_seconds = 0.2\n{head}"), encoding="utf-8")  # fmt: skip
    try:
        node.proc.start()
        m = scrape(metrics_port)
    finally:
        close_all([node])
    for outcome in OUTCOMES:
        assert value(m, "hocba_peer_delivery_attempts_total", peer="79", outcome=outcome) == 0, outcome
    assert value(m, "hocba_peer_delivery_seconds_count", peer="79") == 0
    for reason in PUBLICATION_FAILURE_REASONS:
        assert value(m, "hocba_log_publication_failures_total", reason=reason) == 0, reason
    for reason in FAILURE_REASONS:
        assert value(m, "hocba_writer_failed_transactions_total", reason=reason) == 0, reason
    for kind in FAILURE_KINDS:
        found = value(m, "hocba_witness_submission_failures_total", witness=witness[0], kind=kind.replace(" ", "_"))
        # nothing listens at the witness's address: its submissions fail as unreachable from the start
        assert found is not None and (found >= 1 if kind == "unreachable" else found == 0), (kind, found)
    for outcome in WITNESS_OUTCOMES:
        assert value(m, "hocba_peer_witness_requests_total", peer="79", outcome=outcome) == 0, outcome
    assert value(m, "hocba_peer_witness_cosigned_entries", peer="79") == 0
    assert value(m, "hocba_peer_witness_cosigned_timestamp_seconds", peer="79") is None
    for source in ("witness", "bundle"):
        assert value(m, "hocba_peer_split_view_evidence", peer="79", source=source) == 0, source
    assert value(m, "hocba_log_witnessed_checkpoint_entries") is None
    assert value(m, "hocba_log_witnessed_checkpoint_timestamp_seconds") is None
    for service in ("liveness", "readiness", TRANSFERS, "transfer.v1.LogService"):
        assert value(m, "hocba_health_serving", service=service) == 1, service


def test_every_database_refusal_reason_is_known() -> None:
    """storage.database.UNAVAILABLE_REASONS, from which the failure series are created at 0, names every reason of
    the UNAVAILABLE refusals the storage package gives."""
    from storage.database import UNAVAILABLE_REASONS

    given = set()
    for source in (ROOT / "storage").glob("*.py"):
        given |= set(re.findall(r'Unavailable\(\s*"([A-Z_]+)"', source.read_text(encoding="utf-8")))
    assert given and given <= set(UNAVAILABLE_REASONS), given - set(UNAVAILABLE_REASONS)


def test_the_witnessed_checkpoint_survives_a_restart_during_a_witness_outage(
    tmp_path: Path, pki: Path, database_url: str
) -> None:
    """On both engines: a checkpoint cosigned by the quorum, then the node restarted while its witness is down:
    from the first scrape, the witnessed checkpoint is that one (its size and signing time), read from the
    database's cosignatures, not forgotten until the witness answers again. Restarted with another witness
    configured instead, the stored cosignatures make no quorum of it: no witnessed checkpoint is exported."""
    from tests.test_witnessing import (
        Witnesses,
        cosigned_note,
        down_witness,
        entry,
        grow,
        node_config,
        publish,
        witness_block,
    )

    ws = Witnesses(tmp_path / "witnesses", pki)
    try:
        w1 = ws.start("w1.example/w")
        path = node_config(tmp_path, pki, database_url, witness_block([entry(w1)], quorum=1, startup=0.5))
        path.write_text(path.read_text(encoding="utf-8") + metrics_section(0), encoding="utf-8")
        clock = FakeClock()
        with running_node(load_config(path), pki, clock, path) as node:
            assert node.node is not None
            grow(node, 2)
            size = publish(node)
            cosigned_note(node, ["w1.example/w"], size)
            signed = wait_for(
                "the checkpoint witnessed",
                lambda: (
                    (m := scrape(node.node.metrics_port))  # type: ignore[union-attr]
                    and value(m, "hocba_log_witnessed_checkpoint_entries") == size
                    and value(m, "hocba_log_witnessed_checkpoint_timestamp_seconds")
                ),
            )
        ws.stop()
        clock.advance(timedelta(hours=1))
        with running_node(load_config(path), pki, clock, path) as node:
            assert node.node is not None
            m = scrape(node.node.metrics_port)
            assert value(m, "hocba_log_witnessed_checkpoint_entries") == size
            assert value(m, "hocba_log_witnessed_checkpoint_timestamp_seconds") == signed
            assert value(m, "hocba_log_checkpoint_timestamp_seconds") == signed  # the latest is the witnessed one
        other = node_config(tmp_path, pki, database_url, witness_block([down_witness()], quorum=1, startup=0.5),
                            name="other")  # fmt: skip
        other.write_text(other.read_text(encoding="utf-8") + metrics_section(0), encoding="utf-8")
        with running_node(load_config(other), pki, clock, other) as node:
            assert node.node is not None
            m = scrape(node.node.metrics_port)
            assert value(m, "hocba_log_checkpoint_entries") == size
            assert value(m, "hocba_log_witnessed_checkpoint_entries") is None
            assert value(m, "hocba_log_witnessed_checkpoint_timestamp_seconds") is None
    finally:
        ws.stop()


def test_health_serving_follows_the_database(
    tmp_path: Path, pki: Path, database_url: str, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On both engines: hocba_health_serving{service="readiness"} and the write services' turn 0 while the database
    does not answer (SQLite: another process holds the write lock; PostgreSQL: the link to the server is cut),
    while liveness stays 1 and the log's metrics leave the scrape; back to 1 once it answers again."""
    from tests.test_database_faults import _link_down, _switchable, write_lock_held

    monkeypatch.setattr("storage.database.BUSY_TIMEOUT_MS", 100)  # the fault is real; the wait for it shorter
    switch, url = _switchable(database_url)
    path = write_config(tmp_path / "node.toml", pki=pki, database_url=url, extra=metrics_section(0))
    config = load(path, env={"TRANSFER_SERVER_HEALTH_PROBE_SECONDS": "0.2"})
    try:
        with running_node(config, pki, clock, path) as node:
            assert node.node is not None
            port = node.node.metrics_port
            node.client("province-admin").register_school("S1", "Trường S1")
            m = scrape(port)
            assert value(m, "hocba_health_serving", service="readiness") == 1
            assert value(m, "hocba_health_serving", service=TRANSFERS) == 1
            assert value(m, "hocba_log_entries") is not None
            with write_lock_held(database_url) if switch is None else _link_down(switch):
                # A failed checkpoint publication can turn readiness alone to 0 before the probe turns the writes.
                down = wait_for(
                    "readiness and the writes 0 in the scrape",
                    lambda: (
                        (m := scrape(port))
                        and value(m, "hocba_health_serving", service="readiness") == 0
                        and value(m, "hocba_health_serving", service=TRANSFERS) == 0
                        and m
                    ),
                    timeout=30,
                )
                assert value(down, "hocba_health_serving", service="liveness") == 1
                if switch is not None:  # SQLite's readers are not held by a write lock: the log's metrics stay
                    gone = wait_for(
                        "the log's metrics gone from the scrape",
                        lambda: (m := scrape(port)) and value(m, "hocba_log_entries") is None and m,
                        timeout=30,
                    )
                    assert (value(gone, "hocba_metrics_database_read_failures_total") or 0) >= 1
            up = wait_for(
                "readiness 1 again",
                lambda: (m := scrape(port)) and value(m, "hocba_health_serving", service="readiness") == 1 and m,
                timeout=30,
            )
            assert value(up, "hocba_health_serving", service=TRANSFERS) == 1
    finally:
        if switch is not None:
            switch.close()
