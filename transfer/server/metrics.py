"""The node's Prometheus metrics (`metrics.listen`; docs/operations.md, Monitoring).

Each node has its own `CollectorRegistry` (tests run several nodes in one
process), with the client library's process, platform and garbage-collector
collectors and the node's own metrics, served as Prometheus text by the
client library's WSGI server on a thread of its own, bound to `metrics.listen`.

Where the numbers come from:

* calls: `CallMetrics`, a server interceptor, times every call of every
  service the server resolves (unary and streams) and counts it by its status
  code;
* the writer and the dispatcher tell observers (`storage.writer.WriterObserver`,
  `peers.DeliveryObserver`) of each transaction and delivery attempt: storage
  and the domain know nothing of Prometheus;
* the rest is read when Prometheus scrapes (`_NodeCollector`): counts the
  node's objects keep (open watch streams, witness failures, publication
  failures), the certificates in service (those a SIGHUP reload put in service
  once it did), TCP connections to the gRPC port (Linux `/proc/net/tcp`,
  counted at most every CONNECTIONS_TTL_SECONDS), the node's witness's
  answers and its state file ([witness]: what it cosigned of each peer's log,
  the split-view evidence it kept), and one read transaction of four indexed
  queries (the log's size, its latest checkpoint, the undelivered outbox
  messages by peer, the peers' split views found in their witnessed bundles),
  run on the event loop and shared by the scrapes of SNAPSHOT_TTL_SECONDS.

Labelled counters an alert watches are created at 0 when the node starts, for
every label value the code knows (every configured peer x every delivery
outcome, every writer and publication failure reason, every configured witness
x every failure kind, every configured peer x every answer of the node's
witness and x every source of split-view evidence): a first failure is then an
increase, which a series born at 1 is not (the Prometheus instrumentation
guide, "Avoid missing metrics").
`hocba_health_serving` says what the gRPC health service says, without the
database: it stays in the scrape while the database does not answer.

Instants are exported as Unix timestamps (`..._timestamp_seconds`), never as
ages: Prometheus computes the age (`time() - metric`), and a timestamp stays
right between scrapes (the Prometheus instrumentation guide, "Timestamps, not
time since").
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeAlias
from wsgiref.simple_server import WSGIServer

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from storage.writer import FAILURE_REASONS
from transfer import __version__
from transfer.domain.model import OutboxBacklog, OutboxMessage, StoredCheckpoint
from transfer.domain.ports import UnitOfWork
from transfer.ledger.witness import KIND_BAD_PROOF, KIND_SAME_SIZE
from transfer.server.certs import TlsMaterial
from transfer.server.interceptors import WrappingInterceptor, rewrapped
from transfer.server.peers import OUTCOMES
from transfer.witness.server import OUTCOMES as WITNESS_OUTCOMES

# The witness's evidence kinds as metric label values.
EVIDENCE_KINDS = {KIND_SAME_SIZE: "same_size_different_root", KIND_BAD_PROOF: "proof_fails"}

if TYPE_CHECKING:
    from transfer.server.app import Node

log = logging.getLogger("transfer.node.metrics")

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"

# Shared by the scrapes of this long: one database read per second at most, whoever scrapes.
SNAPSHOT_TTL_SECONDS = 1.0
# A scrape waits this long for the database read, then answers without its metrics.
SNAPSHOT_TIMEOUT_SECONDS = 2.0
FAILURE_LOG_SECONDS = 60.0  # a failing database read is logged at most this often
# Reading /proc/net/tcp costs the kernel a walk of every socket of the host (7 ms per file measured on a
# busy machine with 1,500 sockets): counted at most this often.
CONNECTIONS_TTL_SECONDS = 15.0

# Calls: from a cached read to a watch stream that stays open for hours.
CALL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
TRANSACTION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
# From the outbox to the peer's receipt: milliseconds when the peer answers, days when it does not.
DELIVERY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 86400, 7 * 86400)

_CODES_BY_VALUE = {code.value[0]: code for code in grpc.StatusCode}


class MetricsStartRefused(Exception):
    """The metrics endpoint cannot start: one line saying why."""


def _code_name(code: Any) -> str | None:
    """The status code a context holds (grpc.StatusCode, or its number from the Cython layer), None if unset."""
    if isinstance(code, grpc.StatusCode):
        return str(code.name)
    if isinstance(code, int):
        return str(_CODES_BY_VALUE.get(code, grpc.StatusCode.UNKNOWN).name)
    return None


def _split_method(full: str) -> tuple[str, str]:
    """ "/transfer.v1.TransferService/GetTransfer" -> ("transfer.v1.TransferService", "GetTransfer")."""
    service, _, method = full.lstrip("/").rpartition("/")
    return service or "unknown", method or "unknown"


# -- calls ------------------------------------------------------------------------------------------


class _MethodCounters:
    """The labelled children of one method: resolved once, so a call costs no label lookup."""

    __slots__ = ("_handled", "_labels", "handled", "received", "seconds", "sent", "started")

    def __init__(self, calls: CallMetrics, service: str, method: str, kind: str) -> None:
        labels = (service, method, kind)
        self._labels = labels
        self._handled = calls.handled
        self.started = calls.started.labels(*labels)
        self.seconds = calls.seconds.labels(*labels)
        self.sent = calls.sent.labels(*labels)
        self.received = calls.received.labels(*labels)
        self.handled: dict[str, Any] = {}

    def done(self, code: str, began: float) -> None:
        self.seconds.observe(time.perf_counter() - began)
        child = self.handled.get(code)
        if child is None:
            child = self.handled[code] = self._handled.labels(*self._labels, code)
        child.inc()


class CallMetrics(WrappingInterceptor):
    """Counts and times every call by service, method, kind (grpc_type) and status code.

    A server interceptor apart from the node's others, first in the server's
    list so that it sees what they answer too (a malformed request refused by
    `RefuseMalformed` counts as INVALID_ARGUMENT). The duration of a stream is
    its whole life. Handlers that are not coroutines or async generators (none
    of this server's) are left uncounted."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        names = ["grpc_service", "grpc_method", "grpc_type"]
        self.started = Counter("hocba_grpc_server_started", "Calls started, by method", names, registry=registry)
        self.handled = Counter(
            "hocba_grpc_server_handled",
            "Calls ended, by method and gRPC status code",
            [*names, "grpc_code"],
            registry=registry,
        )
        self.seconds = Histogram(
            "hocba_grpc_server_handling_seconds",
            "Time from a call's start to its end (a stream: its whole life)",
            names,
            buckets=CALL_BUCKETS,
            registry=registry,
        )
        self.sent = Counter(
            "hocba_grpc_server_msg_sent", "Messages sent by the node on streams", names, registry=registry
        )
        self.received = Counter(
            "hocba_grpc_server_msg_received", "Messages received by the node on streams", names, registry=registry
        )

    def _wrap(self, full_method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        service, method = _split_method(full_method)
        return rewrapped(
            handler,
            lambda behavior, kind, stream_in: _timed(behavior, _MethodCounters(self, service, method, kind), stream_in),
        )


def _ended(context: Context, exc: BaseException | None) -> str:
    """The status code a call ended with."""
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        return "CANCELLED"
    try:
        code = _code_name(context.code())
    except (AttributeError, NotImplementedError):
        code = None
    if code is not None:
        return code
    return "OK" if exc is None else "UNKNOWN"


def _timed(behavior: Callable[..., Any], counters: _MethodCounters, stream_in: bool) -> Callable[..., Any] | None:
    """`behavior`, counted, in the same form (coroutine or async generator); None if synchronous.

    `stream_in`: the call takes a stream of requests (each one counted as it is read)."""

    async def counted(requests: AsyncIterable[Any]) -> AsyncIterator[Any]:
        async for request in requests:
            counters.received.inc()
            yield request

    def incoming(request: Any) -> Any:
        return counted(request) if stream_in else request

    if inspect.iscoroutinefunction(behavior):

        async def call(request: Any, context: Context) -> Any:
            counters.started.inc()
            began, failure = time.perf_counter(), None
            try:
                return await behavior(incoming(request), context)
            except BaseException as exc:
                failure = exc
                raise
            finally:
                counters.done(_ended(context, failure), began)

        return call
    if inspect.isasyncgenfunction(behavior):

        async def stream(request: Any, context: Context) -> AsyncIterator[Any]:
            counters.started.inc()
            began, failure = time.perf_counter(), None
            try:
                async for response in behavior(incoming(request), context):
                    counters.sent.inc()
                    yield response
            except BaseException as exc:
                failure = exc
                raise
            finally:
                counters.done(_ended(context, failure), began)

        return stream
    return None


# -- the writer and the dispatcher (observers) -----------------------------------------------------


class WriterMetrics:
    """`storage.writer.WriterObserver`: each group commit's size and duration, each failed transaction's reason."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.batch = Histogram(
            "hocba_writer_batch_commands",
            "Commands per committed write transaction (group commit)",
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.seconds = Histogram(
            "hocba_writer_transaction_seconds",
            "Time of a committed write transaction, from its start to its commit",
            buckets=TRANSACTION_BUCKETS,
            registry=registry,
        )
        self.failures = Counter(
            "hocba_writer_failed_transactions",
            "Write transactions rolled back or failed, by reason",
            ["reason"],
            registry=registry,
        )
        for reason in FAILURE_REASONS:  # every series from 0: a first failure is an increase (alerts.yml)
            self.failures.labels(reason)

    def committed(self, commands: int, seconds: float) -> None:
        self.batch.observe(commands)
        self.seconds.observe(seconds)

    def failed(self, reason: str, commands: int) -> None:
        self.failures.labels(reason).inc()


class DeliveryMetrics:
    """`peers.DeliveryObserver`: attempts by outcome, the time from the outbox to the receipt, the last delivery."""

    def __init__(self, registry: CollectorRegistry, peers: Iterable[str] = ()) -> None:
        self.attempts = Counter(
            "hocba_peer_delivery_attempts",
            "Delivery attempts to a peer, by outcome (delivered, retry, auth_refused, refused, crashed)",
            ["peer", "outcome"],
            registry=registry,
        )
        self.seconds = Histogram(
            "hocba_peer_delivery_seconds",
            "Time from a message's entry in the outbox to the peer's receipt",
            ["peer"],
            buckets=DELIVERY_BUCKETS,
            registry=registry,
        )
        self.last = Gauge(
            "hocba_peer_last_delivery_timestamp_seconds",
            "When a message to the peer was last delivered (since the node started)",
            ["peer"],
            registry=registry,
        )
        for peer in peers:  # every configured peer's series from 0: a first refusal is an increase (alerts.yml)
            for outcome in OUTCOMES:
                self.attempts.labels(peer, outcome)
            self.seconds.labels(peer)

    def attempt_ended(self, peer: str, outcome: str, message: OutboxMessage, at: datetime) -> None:
        self.attempts.labels(peer, outcome).inc()
        if outcome == "delivered":
            self.seconds.labels(peer).observe(max(0.0, (at - message.created_at).total_seconds()))
            self.last.labels(peer).set(at.timestamp())


# -- read at scrape time ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Snapshot:
    """What one read transaction says: the log's size, its latest checkpoint, the outbox's backlog, the peers'
    checkpoints found inconsistent with their receipts' (split views, by peer)."""

    log_size: int
    checkpoint: StoredCheckpoint | None
    backlog: list[OutboxBacklog]
    split_views: dict[str, int]


def _read_snapshot(uow: UnitOfWork) -> _Snapshot:
    return _Snapshot(
        uow.log.committed_size(), uow.log.latest_checkpoint(), uow.outbox.backlog(), uow.peer_bundles.split_views()
    )


@dataclass(frozen=True)
class _Certificate:
    role: str
    peer: str
    subject: str
    sha256: str
    not_after: float


def _described(certificates: Iterable[x509.Certificate], role: str, peer: str = "") -> list[_Certificate]:
    out = []
    for cert in certificates:
        names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        subject = str(names[0].value) if names else ""
        fingerprint = cert.fingerprint(hashes.SHA256()).hex()[:16]
        out.append(_Certificate(role, peer, subject[:64], fingerprint, cert.not_valid_after_utc.timestamp()))
    return out


def tcp_connections(port: int) -> int | None:
    """TCP connections established to local `port` (Linux: /proc/net/tcp and tcp6), None elsewhere."""
    if port <= 0:
        return None
    wanted = f":{port:04X}"
    total, read_any = 0, False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as f:
                next(f, None)  # the header
                for line in f:
                    fields = line.split(None, 4)
                    # sl local_address rem_address st ...; st 01 is ESTABLISHED
                    if len(fields) > 3 and fields[3] == "01" and fields[1].endswith(wanted):
                        total += 1
            read_any = True
        except OSError:
            continue
    return total if read_any else None


class _NodeCollector(Collector):
    """The node's metrics read when Prometheus scrapes (see the module docstring)."""

    def __init__(self, node: Node, loop: asyncio.AbstractEventLoop) -> None:
        self.node = node
        self.loop = loop
        self._lock = threading.Lock()
        self._snapshot: _Snapshot | None = None
        self._snapshot_at = -1e9
        self._certificates: list[_Certificate] = []
        self._material: TlsMaterial | None = None
        self._connections: int | None = None
        self._connections_at = -1e9
        self.snapshot_failures = 0
        self._failure_logged_at = -FAILURE_LOG_SECONDS

    def collect(self) -> Iterable[Any]:
        node = self.node
        info = GaugeMetricFamily(
            "hocba_node_info", "The node: its province and version (always 1)", labels=["province", "version"]
        )
        info.add_metric([node.config.province, __version__], 1)
        yield info
        yield GaugeMetricFamily(
            "hocba_log_consistent",
            "1 while the log agrees with every checkpoint the node signed; 0 once it does not (the node then "
            "refuses every change: docs/operations.md, The log)",
            value=1 if node.gate.broken is None else 0,
        )
        waiting = GaugeMetricFamily("hocba_writer_commands_waiting", "Commands queued for the writer's next batch")
        if node.writer is not None:
            waiting.add_metric([], node.writer.waiting)
        yield waiting
        yield GaugeMetricFamily(
            "hocba_watch_streams_open", "WatchTransfers streams open", value=node.watch_quota.total()
        )
        connections = GaugeMetricFamily(
            "hocba_grpc_server_connections", "TCP connections established to the node's gRPC port (Linux only)"
        )
        with self._lock:
            if time.monotonic() - self._connections_at >= CONNECTIONS_TTL_SECONDS:
                self._connections, self._connections_at = tcp_connections(node.port), time.monotonic()
            established = self._connections
        if established is not None:
            connections.add_metric([], established)
        yield connections
        failures = CounterMetricFamily(
            "hocba_log_publication_failures",
            "Rounds of the checkpoint publisher (every log.checkpoint_interval_seconds) that failed, by reason",
            labels=["reason"],
        )
        for reason, count in sorted(node.publish_failures.items()):
            failures.add_metric([reason], count)
        yield failures
        yield self._health()
        yield from self._witnessing()
        snapshot = self._read()
        yield from self._peer_witness(snapshot)
        yield from self._database(snapshot)
        yield from self._certificate_expiry()

    def _health(self) -> GaugeMetricFamily:
        """What the gRPC health service says, read from the node (no database read: it stays right while the
        database does not answer, when the log and outbox metrics are missing)."""
        health = GaugeMetricFamily(
            "hocba_health_serving",
            "1 while the gRPC health service says SERVING for the name (liveness, readiness, each service), else 0",
            labels=["service"],
        )
        for name, serving in list(self.node.health_serving.items()):
            if name:  # the overall status ("") is liveness's
                health.add_metric([name], 1 if serving else 0)
        return health

    def _witnessing(self) -> Iterator[Any]:
        """Every family is there, without samples when the node has no log.witnesses: the names stay the same."""
        witnessing = self.node.witnessing
        failures = CounterMetricFamily(
            "hocba_witness_submission_failures",
            "Checkpoint submissions to a witness that failed, by witness and kind",
            labels=["witness", "kind"],
        )
        requests = CounterMetricFamily(
            "hocba_witness_requests", "add-checkpoint requests sent to a witness", labels=["witness"]
        )
        cosigned = GaugeMetricFamily(
            "hocba_witness_cosigned_entries",
            "The largest checkpoint (in entries) a witness cosigned since the node started",
            labels=["witness"],
        )
        entries = GaugeMetricFamily(
            "hocba_log_witnessed_checkpoint_entries",
            "Size of the latest checkpoint cosigned by a quorum of log.witnesses (since the node started)",
        )
        signed = GaugeMetricFamily(
            "hocba_log_witnessed_checkpoint_timestamp_seconds",
            "When the node signed the latest checkpoint cosigned by a quorum of log.witnesses",
        )
        if witnessing is not None:
            for link in witnessing.links:
                requests.add_metric([link.name], link.attempts)
                for kind, count in sorted(link.failures.items()):
                    failures.add_metric([link.name, kind.replace(" ", "_")], count)
                if link.cosigned >= 0:
                    cosigned.add_metric([link.name], link.cosigned)
            latest = witnessing.latest_witnessed
            if latest is not None:
                entries.add_metric([], latest[0])
                signed.add_metric([], latest[1].timestamp())
        yield from (failures, requests, cosigned, entries, signed)

    def _read(self) -> _Snapshot | None:
        """The database's part, read at most every SNAPSHOT_TTL_SECONDS (on the event loop: the scrape
        thread never touches the database's connections)."""
        with self._lock:
            if time.monotonic() - self._snapshot_at < SNAPSHOT_TTL_SECONDS:
                return self._snapshot
            store = self.node.store
            snapshot = None
            if store is not None and not self.loop.is_closed():
                future = asyncio.run_coroutine_threadsafe(store.read(_read_snapshot), self.loop)
                try:
                    snapshot = future.result(SNAPSHOT_TIMEOUT_SECONDS)
                except Exception as exc:  # the database is down, slow or closing: the scrape goes on without it
                    future.cancel()
                    self.snapshot_failures += 1
                    if time.monotonic() - self._failure_logged_at >= FAILURE_LOG_SECONDS:  # not one line per scrape
                        self._failure_logged_at = time.monotonic()
                        log.warning(
                            "metrics: the database read failed; the scrape has no log or outbox metrics",
                            extra={"error": type(exc).__name__, "failures": self.snapshot_failures},
                        )
            self._snapshot, self._snapshot_at = snapshot, time.monotonic()
            return snapshot

    def _peer_witness(self, snapshot: _Snapshot | None) -> Iterator[Any]:
        """The node as its peers' witness ([witness]): what it answered, the largest checkpoint of each peer's
        log it cosigned and when, and the split-view evidence kept of each peer, by `source`: `witness` (its
        state file) and `bundle` (a peer's witnessed checkpoint inconsistent with its receipt's, in the
        database). Evidence and cosigned sizes are read from where they are stored: a restart keeps them. Every
        configured peer's series start at 0; a family without samples when its source is not there (no
        [witness]; the state file or the database did not answer)."""
        node = self.node
        peers = sorted(node.peers)
        requests = CounterMetricFamily(
            "hocba_peer_witness_requests",
            "add-checkpoint requests the node's witness answered (since the node started), by peer and outcome: "
            + ", ".join(WITNESS_OUTCOMES),
            labels=["peer", "outcome"],
        )
        cosigned = GaugeMetricFamily(
            "hocba_peer_witness_cosigned_entries",
            "The largest checkpoint (in entries) of the peer's log the node's witness cosigned (0: none yet)",
            labels=["peer"],
        )
        cosigned_at = GaugeMetricFamily(
            "hocba_peer_witness_cosigned_timestamp_seconds",
            "When the node's witness last cosigned a checkpoint of the peer's log (absent: never)",
            labels=["peer"],
        )
        evidence = GaugeMetricFamily(
            "hocba_peer_split_view_evidence",
            "Pieces of evidence kept that the peer's log showed two histories, by source and kind: witness "
            "same_size_different_root (a fork by itself) or proof_fails (a submitted consistency proof failed: "
            "a fork once the log cannot prove consistency), bundle inconsistent_with_receipt (the peer's own "
            "signed checkpoints and proof disagree). docs/operations.md, A peer's log shows two histories",
            labels=["peer", "source", "kind"],
        )
        witness = node.peer_witness.observed() if node.peer_witness is not None else None
        if witness is not None:
            answered = dict(witness.answered)
            for peer in peers:
                for outcome in WITNESS_OUTCOMES:
                    answered.setdefault((peer, outcome), 0)
            for (peer, outcome), count in sorted(answered.items()):
                requests.add_metric([peer, outcome], count)
            if witness.logs is not None:
                for peer in peers:
                    summary = witness.logs.get(peer)
                    cosigned.add_metric([peer], (summary.cosigned_size or 0) if summary is not None else 0)
                    if summary is not None and summary.cosigned_at is not None:
                        cosigned_at.add_metric([peer], summary.cosigned_at)
                    kept = summary.evidence if summary is not None else {}
                    for kind, label in EVIDENCE_KINDS.items():
                        evidence.add_metric([peer, "witness", label], kept.get(kind, 0))
        if snapshot is not None:
            for peer in sorted(set(peers) | set(snapshot.split_views)):
                evidence.add_metric([peer, "bundle", "inconsistent_with_receipt"], snapshot.split_views.get(peer, 0))
        yield from (requests, cosigned, cosigned_at, evidence)

    def _database(self, snapshot: _Snapshot | None) -> Iterator[Any]:
        yield CounterMetricFamily(
            "hocba_metrics_database_read_failures",
            "Scrapes whose database read failed or timed out (their log and outbox metrics are missing)",
            value=self.snapshot_failures,
        )
        size = GaugeMetricFamily("hocba_log_entries", "Entries in the node's log (committed)")
        checkpoint = GaugeMetricFamily("hocba_log_checkpoint_entries", "Size of the latest signed checkpoint")
        signed = GaugeMetricFamily("hocba_log_checkpoint_timestamp_seconds", "When the latest checkpoint was signed")
        pending = GaugeMetricFamily(
            "hocba_peer_messages_pending", "Messages waiting for delivery to a peer", labels=["peer"]
        )
        failed = GaugeMetricFamily(
            "hocba_peer_messages_failed", "Messages a peer refused for good (kept in the outbox)", labels=["peer"]
        )
        oldest = GaugeMetricFamily(
            "hocba_peer_oldest_pending_timestamp_seconds",
            "When the oldest message waiting for a peer entered the outbox (absent: none waiting)",
            labels=["peer"],
        )
        attempts = GaugeMetricFamily(
            "hocba_peer_pending_max_attempts",
            "Most delivery attempts made for one message still waiting for a peer",
            labels=["peer"],
        )
        if snapshot is not None:  # without it (the database did not answer), the families have no samples
            size.add_metric([], snapshot.log_size)
            if snapshot.checkpoint is not None:
                checkpoint.add_metric([], snapshot.checkpoint.size)
                signed.add_metric([], snapshot.checkpoint.created_at.timestamp())
        by_peer = {b.peer: b for b in snapshot.backlog} if snapshot is not None else {}
        for peer in sorted(set(self.node.peers) | set(by_peer)) if snapshot is not None else []:
            b = by_peer.get(peer, OutboxBacklog(peer, 0, 0, None, 0))
            pending.add_metric([peer], b.pending)
            failed.add_metric([peer], b.failed)
            attempts.add_metric([peer], b.max_attempts)
            if b.oldest_pending_at is not None:
                oldest.add_metric([peer], b.oldest_pending_at.timestamp())
        yield from (size, checkpoint, signed, pending, failed, oldest, attempts)

    def _certificate_expiry(self) -> Iterator[Any]:
        """The certificates in service: described again only when a reload (SIGHUP) replaced them."""
        certificates = self.node.certificates
        material = certificates.material if certificates is not None else None
        with self._lock:
            if material is not self._material:
                self._certificates, self._material = self._in_service(material), material
            described = self._certificates
        expiry = GaugeMetricFamily(
            "hocba_certificate_expiry_timestamp_seconds",
            "When a certificate the node holds or trusts expires (notAfter): role node (tls.cert_file), ca "
            "(tls.ca_file), peer_ca (peers[].ca_file), signing_ca (signing.ca_file)",
            labels=["role", "peer", "subject", "sha256"],
        )
        for c in described:
            expiry.add_metric([c.role, c.peer, c.subject, c.sha256], c.not_after)
        yield expiry

    def _in_service(self, material: TlsMaterial | None) -> list[_Certificate]:
        found = []
        if material is not None:
            found += _described(x509.load_pem_x509_certificates(material.cert), "node")
            found += _described(material.own_cas, "ca")
            for province, cas in sorted(material.peer_cas.items()):
                found += _described(cas, "peer_ca", province)
        found += _described(material.signing_cas if material is not None else self.node.signing_trust.anchors,
                             "signing_ca")  # fmt: skip
        unique = {(c.role, c.peer, c.sha256): c for c in found}
        return list(unique.values())


# -- the endpoint ----------------------------------------------------------------------------------


class NodeMetrics:
    """A node's registry, its observers and interceptor, and the HTTP endpoint serving them."""

    def __init__(self, node: Node) -> None:
        assert node.config.metrics is not None
        # No `_created` series: in the text format Prometheus stores each as a series of its own, doubling
        # the samples of every counter and histogram for nothing (a process-wide setting of the library).
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.node = node
        self.listen = node.config.metrics
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.calls = CallMetrics(self.registry)
        self.writer = WriterMetrics(self.registry)
        self.deliveries = DeliveryMetrics(self.registry, sorted(node.peers))
        self.port = 0
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> int:
        """Bind `metrics.listen` and serve on a thread (MetricsStartRefused if it cannot); the bound port."""
        self.registry.register(_NodeCollector(self.node, asyncio.get_running_loop()))
        host, port = self.listen.host, self.listen.port
        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise MetricsStartRefused(
                f"cannot listen on {host}:{port} (metrics.listen): {exc.strerror or exc}"
            ) from None
        self.port = int(self._server.server_port)
        log.info("metrics endpoint started", extra={"metrics_port": self.port})
        return self.port

    def stop(self) -> None:
        """Stop serving (blocks up to half a second: run it on a thread)."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(5)


__all__ = [
    "CallMetrics",
    "DeliveryMetrics",
    "MetricsStartRefused",
    "NodeMetrics",
    "WriterMetrics",
    "tcp_connections",
]
