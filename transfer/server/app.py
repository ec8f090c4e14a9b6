"""Wiring of one node: database, writer, use cases, servicers, gRPC server.

`Node` is what `python -m transfer.server` runs, and what tests start
in-process with a fake clock.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import errno
import functools
import hashlib
import logging
import os
import tempfile
import threading
from datetime import datetime, timedelta
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from storage import migrate
from storage.database import UNAVAILABLE_REASONS, Database, DatabaseUnreachable, describe, open_database
from storage.store import Store
from storage.writer import Writer, WriterStopped
from transfer import __version__
from transfer.domain.errors import DataLoss, NotFound, Unavailable
from transfer.domain.federation import Federation
from transfer.domain.logbook import Logbook, LogGate, LogInconsistent, LogInfo, Witness
from transfer.domain.model import HandoffState, StoredCheckpoint
from transfer.domain.pages import PagePolicy, Pages
from transfer.domain.paging import Tokens
from transfer.domain.ports import Clock, IdSource, RandomIds, SystemClock, UnitOfWork
from transfer.domain.services import Directory, Records, TransferPolicy, Transfers
from transfer.domain.signatures import SigningTrust
from transfer.domain.staff import Staff
from transfer.domain.validation import MAX_MESSAGE
from transfer.ledger.merkle import EMPTY_ROOT
from transfer.ledger.note import (
    Checkpoint,
    Ed25519Signer,
    NoteError,
    Verifier,
    parse_note,
    parse_skey,
    parse_vkey,
    sign_note,
)
from transfer.ledger.receipt import ProofBundle
from transfer.server import faults
from transfer.server.auth import Authenticator
from transfer.server.calllog import CallLog
from transfer.server.certs import ServerCertificates, TlsMaterial, TlsRefused, load_tls
from transfer.server.config import Config
from transfer.server.decoding import RefuseMalformed
from transfer.server.limits import StreamQuota, grpc_options, raise_open_file_limit
from transfer.server.metrics import MetricsStartRefused, NodeMetrics
from transfer.server.notify import Notifier
from transfer.server.peer_bundles import BundleRefresher
from transfer.server.peer_witness import PeerWitness, WitnessStartRefused
from transfer.server.peers import (
    DeliveryServicer,
    Dispatcher,
    PeerLinks,
    PeerServicer,
    Sealer,
    load_peers,
    load_seal_signer,
    peer_keys,
    read_key_file,
)
from transfer.server.reflection import enable_reflection
from transfer.server.servicers import (
    LogServicer,
    PageServicer,
    RecordServicer,
    SchoolDirectoryServicer,
    StaffServicer,
    TransferServicer,
)
from transfer.server.witnessing import WitnessAhead, Witnessing
from transfer.server.workcalendar import WorkCalendar
from transfer.unavailable import UnavailableLog
from transfer.v1 import (
    log_pb2,
    log_pb2_grpc,
    pages_pb2,
    pages_pb2_grpc,
    peers_pb2,
    peers_pb2_grpc,
    records_pb2,
    records_pb2_grpc,
    schools_pb2,
    schools_pb2_grpc,
    staff_pb2,
    staff_pb2_grpc,
    transfers_pb2,
    transfers_pb2_grpc,
)

log = logging.getLogger("transfer.node")
health_log = logging.getLogger("transfer.health")

SERVICE_NAMES = (
    schools_pb2.DESCRIPTOR.services_by_name["SchoolDirectoryService"].full_name,
    records_pb2.DESCRIPTOR.services_by_name["RecordService"].full_name,
    transfers_pb2.DESCRIPTOR.services_by_name["TransferService"].full_name,
    log_pb2.DESCRIPTOR.services_by_name["LogService"].full_name,
    pages_pb2.DESCRIPTOR.services_by_name["PageService"].full_name,
    peers_pb2.DESCRIPTOR.services_by_name["PeerService"].full_name,
    peers_pb2.DESCRIPTOR.services_by_name["DeliveryService"].full_name,
    staff_pb2.DESCRIPTOR.services_by_name["StaffService"].full_name,
)
# The services whose calls change something: NOT_SERVING in gRPC health once the
# log is found inconsistent with a signed checkpoint (the node then refuses every change).
_READ_ONLY_SERVICE_NAMES = (
    log_pb2.DESCRIPTOR.services_by_name["LogService"].full_name,
    peers_pb2.DESCRIPTOR.services_by_name["DeliveryService"].full_name,
)
WRITE_SERVICE_NAMES = tuple(name for name in SERVICE_NAMES if name not in _READ_ONLY_SERVICE_NAMES)
# Health service names for an orchestrator's probes (docs/operations.md, Health). LIVENESS: the process
# serves (SERVING until it shuts down). READINESS: it can do its work: its database answers the periodic
# probe, the log is consistent with what it signed, and the latest checkpoint publication did not fail.
LIVENESS = "liveness"
READINESS = "readiness"
# The reasons a round of the checkpoint publisher fails with (hocba_log_publication_failures_total, each from 0).
PUBLICATION_FAILURE_REASONS = (*UNAVAILABLE_REASONS, "LATEST_CHECKPOINT_UNWRITABLE", "LOG_INCONSISTENT", "UNEXPECTED")


def server_tls(config: Config) -> TlsMaterial:
    """The node's certificate, key, trusted CAs and deny list, each file checked (one line naming a bad one).

    Mutual TLS: clients must present a certificate from the node's CA, or (peer nodes) from their own
    province's CA; `Authenticator` tells them apart."""
    try:
        return load_tls(config)
    except TlsRefused as exc:
        raise StartRefused(str(exc)) from None


def _tls_part(running: Config, read: Config) -> Config:
    """`running` with the reloadable part of `read`: [tls], signing.ca_file, and the ca_file of each peer
    both name."""
    ca_files = {p.province: p.ca_file for p in read.peers}
    return dataclasses.replace(
        running,
        ca_file=read.ca_file,
        cert_file=read.cert_file,
        key_file=read.key_file,
        tls_revoked=read.tls_revoked,
        tls_revoked_file=read.tls_revoked_file,
        signing_ca_file=read.signing_ca_file,
        peers=tuple(dataclasses.replace(p, ca_file=ca_files.get(p.province, p.ca_file)) for p in running.peers),
    )


SWEEP_BATCH = 500
# A receipt for a peer needs a signed checkpoint covering its entry. The first
# caller without one waits this long before the publication starts, so that the
# entries committed meanwhile share it: one checkpoint (a signature, a
# consistency check, a writer command) per handful of offers, not per offer.
RECEIPT_LINGER_SECONDS = 0.005
PRUNE_BATCH = 5_000
# Due handoffs looked at per write transaction of the sweeper.
HANDOFF_BATCH = 100
# The node secret (in its database) that seals page tokens and watch cursors.
TOKEN_SECRET = "page_tokens"


def _prune(uow: UnitOfWork, older_than: datetime) -> int:
    return uow.idempotency.prune(older_than, PRUNE_BATCH)


def load_signing_trust(config: Config) -> SigningTrust:
    """The CAs teachers' certificates must chain to (none configured: nobody can sign)."""
    if config.signing_ca_file is None:
        return SigningTrust([])
    try:
        return SigningTrust.from_pem(config.signing_ca_file.read_bytes())
    except ValueError:
        raise OSError(f"{config.signing_ca_file}: no PEM certificate in it") from None


# Signed with the log key and never published: it ends without a newline, so it is
# never the text of a note (a checkpoint, a cosignature) the node signs and shows.
_DIGEST_KEY_TEXT = b"hocba:log-line-id-digest-key:v1"


def digest_key(logbook: Logbook) -> bytes:
    """The key of the digests of ids in log lines (docs/protocol.md), derived from the
    node's log signing key (Ed25519 signatures are deterministic): secret, the same
    after a restart, and nothing more to configure. It changes with the log key."""
    assert logbook.signer is not None, "a serving node signs its log"
    return hashlib.sha256(logbook.signer.sign(_DIGEST_KEY_TEXT)).digest()


def load_log_signer(config: Config, path: Path | None = None, what: str = "log.key_file") -> Ed25519Signer:
    """The log key (log.key_file), or the key at `path` (`what`: log.next_key_file)."""
    path = path or config.log_key_file
    try:
        signer = parse_skey(read_key_file(path, what))
        if not isinstance(signer, Ed25519Signer):
            raise NoteError("the log key must be an Ed25519 key")
        return signer
    except NoteError as exc:
        raise OSError(f"{what} {path}: not a signed-note private key: {exc}") from None


def load_log_keys(config: Config) -> tuple[Ed25519Signer, Ed25519Signer | None, list[str]]:
    """The log key, the next key (during a rotation) and the previous keys' vkeys (after one)."""
    signer = load_log_signer(config)
    following = None
    if config.log_next_key_file:
        following = load_log_signer(config, config.log_next_key_file, "log.next_key_file")
    if following is not None and following.vkey == signer.vkey:
        raise OSError(f"log.next_key_file {config.log_next_key_file}: is the log key itself")
    previous = []
    for path in config.log_previous_vkey_files:
        vkey = read_key_file(path, "log.previous_vkey_files")
        try:
            parse_vkey(vkey)
        except NoteError as exc:
            raise OSError(f"log.previous_vkey_files {path}: not a signed-note verifier key: {exc}") from None
        if vkey in (signer.vkey, following.vkey if following else ""):
            raise OSError(f"log.previous_vkey_files {path}: names a key the log signs with")
        previous.append(vkey)
    return signer, following, previous


def check_key_roles(config: Config, seal: Ed25519Signer | None) -> None:
    """Refuse a log key (or next log key) that is the seal key: each role needs a key of its own (a seal
    signature must never pass for a checkpoint signature, nor the other way round)."""
    if seal is None:
        return
    own, following, _ = load_log_keys(config)
    for what, path, key in (
        ("log.key_file", config.log_key_file, own),
        ("log.next_key_file", config.log_next_key_file, following),
    ):
        if key is not None and key.public_key == seal.public_key:
            raise StartRefused(
                f"{what} {path} and seal.key_file {config.seal_key_file} hold the same key: the log and the "
                "seal each need a key of their own (docs/operations.md, Log keys)"
            )


def checkpoint_file_problem(path: Path, *, make: bool) -> str | None:
    """Whether the node can write log.latest_checkpoint_file `path`: a file of a name of its own is made
    and removed in its directory (`make`: the directory is made first, as the start does; otherwise, while
    it does not exist, a directory is made and removed in the nearest parent that does). The file itself
    is never written. One line naming the file when it cannot be, the same at --check-config and at start."""
    directory = existing = path.parent
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(existing))
        if make:
            directory.mkdir(parents=True, exist_ok=True)
            existing = directory
        if existing == directory:
            fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=directory)
            os.close(fd)
            os.unlink(probe)
        else:  # --check-config before the first start: the start makes the directory here
            os.rmdir(tempfile.mkdtemp(prefix=".hocba-", suffix=".probe", dir=existing))
    except OSError as exc:
        return f"log.latest_checkpoint_file {path}: cannot be written: {exc.strerror or exc} (in {existing})"
    return None


def log_verifiers(config: Config) -> list[Verifier]:
    """Every key a checkpoint of this log may be signed with: the current, the next and the previous ones."""
    signer, following, previous = load_log_keys(config)
    return [parse_vkey(v) for v in (signer.vkey, *([following.vkey] if following else []), *previous)]


def _key_name(vkey: str) -> str:
    """`<name>+<key hash>` of a vkey: how an operator tells keys apart (the start of its vkey file)."""
    return "+".join(vkey.split("+")[:2])


def _unknown_signers(note: str, verifiers: list[Verifier]) -> list[str]:
    """The keys (`<name>+<key hash>`) that signed `note` when none of them is one of `verifiers`; [] when
    one is, or the note does not parse."""
    try:
        signatures = parse_note(note).signatures
    except NoteError:
        return []
    known = {(v.name, bytes(v.key_id)) for v in verifiers}
    if any((sig.name, sig.key_id) in known for sig in signatures):
        return []
    return [f"{sig.name}+{sig.key_id.hex()}" for sig in signatures]


_RECOVERY = (
    "recover the entries since the backup (restore the newest backup and roll it forward, e.g. PostgreSQL "
    "point-in-time recovery, to at least the checkpoint's size); if they are lost for good, this log cannot go on "
    "without a fork: it continues under a new log.origin and log.key, announced to peers and auditors as such. "
    "See docs/operations.md, Backups and restores"
)


class StartRefused(Exception):
    """The node will not start: the reason says what to do."""


def _write_synced(path: Path, text: str) -> None:
    """Replace `path` with `text`, so that a crash leaves the old or the new file, whole and on disk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Node:
    def __init__(
        self,
        config: Config,
        *,
        clock: Clock | None = None,
        ids: IdSource | None = None,
        accept_missing_checkpoint_file: bool = False,
    ) -> None:
        self.config = config
        # The operator's word, for this start only, that a database with signed checkpoints may
        # start without its log.latest_checkpoint_file (transfer-server --accept-missing-checkpoint-file).
        self.accept_missing_checkpoint_file = accept_missing_checkpoint_file
        self.gate = LogGate()
        self.gate.on_break(self._log_broke)
        self.clock = clock or SystemClock()
        self.ids = ids or RandomIds()
        self.port = 0
        self.witness_port = 0  # the [witness] endpoint's bound port, once started
        self._server: grpc.aio.Server | None = None
        self._health: health.aio.HealthServicer | None = None
        # What the health statuses are made of (_update_health): the database answered the last probe,
        # the last checkpoint publication did not fail.
        self._database_answers = True
        self._log_signs = True
        self._probe: asyncio.Future[int] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.db: Database | None = None
        self.writer: Writer | None = None
        self.store: Store | None = None
        self.notifier = Notifier()
        self.watch_quota = StreamQuota(config.limits.max_watch_streams_per_caller)
        # Public holidays (Tết included) with the configured days added and taken out (docs/operations.md, Calendar).
        self.calendar = WorkCalendar(config.public_holidays, config.holidays, config.not_holidays)
        self.policy = TransferPolicy(
            province=config.province,
            deadline_working_days=config.deadline_working_days,
            holidays=self.calendar,
            utc_offset=config.utc_offset,
        )
        self.signing_trust = trust = load_signing_trust(config)
        page_policy = PagePolicy(config.lock_completed, config.lock_supplementary, config.utc_offset)
        self.peers = load_peers(config)
        seal = load_seal_signer(config)
        check_key_roles(config, seal)
        self.seal_key = None if seal is None else seal._key
        self.seal_vkey = "" if seal is None else seal.vkey
        # [witness]: the node cosigns its peers' checkpoints on an HTTP endpoint of its own (peer_witness.py).
        self.peer_witness: PeerWitness | None = None
        if config.witness is not None:
            own, following, _ = load_log_keys(config)
            node_keys = [k.public_key for k in (own, following, seal) if k is not None]
            try:
                self.peer_witness = PeerWitness.load(config.witness, self.peers, node_keys)
            except WitnessStartRefused as exc:
                raise StartRefused(str(exc)) from None
        self.federation = Federation(
            config.province, peer_keys(self.peers), self.seal_key, trust, page_policy,
            config.inter_province_deadline_working_days, self.clock, holidays=self.calendar, ids=self.ids,
        )  # fmt: skip
        self.transfers = Transfers(self.policy, self.clock, self.ids, self.federation)
        self.pages = Pages(page_policy, trust, self.clock, self.ids, config.province)
        self.dispatcher: Dispatcher | None = None
        self.peer_bundles: BundleRefresher | None = None  # witnessed bundles of the peers' receipts
        self._publishing: asyncio.Task[StoredCheckpoint | None] | None = None
        self.links: PeerLinks | None = None
        self.staff = Staff(trust, self.clock, self.ids, config.utc_offset)
        self.logbook: Logbook | None = None
        self.tokens: Tokens | None = None
        self.stopped = asyncio.Event()
        self._publish_lock = asyncio.Lock()  # one publication at a time
        self._stopping: asyncio.Future[None] | None = None
        self._saved_size = -1  # the size of the checkpoint in log.latest_checkpoint_file
        self._save_lock = threading.Lock()
        self._sweep_unavailable = UnavailableLog(log, "sweep stage failed: database unavailable")
        self._publish_unavailable = UnavailableLog(
            log, "checkpoint publication failed: database unavailable; will retry"
        )
        # The file and the OS error in the line itself: the one thing the operator has to fix.
        self._publish_unwritable = UnavailableLog(log, "checkpoint publication failed; will retry", detailed=True)
        self.witnessing: Witnessing | None = None
        self.auth: Authenticator | None = None
        self.certificates: ServerCertificates | None = None
        self._reload_lock = asyncio.Lock()
        # [metrics]: Prometheus metrics on an HTTP endpoint of their own (metrics.py); None when off.
        self.publish_failures: collections.Counter[str] = collections.Counter(
            dict.fromkeys(PUBLICATION_FAILURE_REASONS, 0)
        )  # by reason
        # What the gRPC health service says of each name (LIVENESS, READINESS, SERVICE_NAMES), for the metrics.
        self.health_serving = dict.fromkeys((LIVENESS, READINESS, *SERVICE_NAMES), False)
        self.metrics = NodeMetrics(self) if config.metrics is not None else None
        self.metrics_port = 0

    async def start(self) -> int:
        cfg = self.config
        tls = server_tls(cfg)  # fail early on unreadable keys
        self.signing_trust.replace_anchors(tls.signing_cas)  # the bundle as this material read it
        files_problem = raise_open_file_limit(cfg.limits)
        if files_problem is not None:
            raise StartRefused(files_problem)
        signer, following, previous = load_log_keys(cfg)
        self.log_vkey = signer.vkey
        self.next_log_vkey = following.vkey if following else ""
        self.previous_log_vkeys = tuple(previous)
        self.logbook = logbook = Logbook(cfg.log_origin, signer, self.clock, also=[following] if following else [])
        try:
            migrate.prepare(cfg.database_url, upgrade_schema=cfg.auto_migrate)
        except (migrate.SchemaMismatch, DatabaseUnreachable) as exc:
            raise StartRefused(str(exc)) from None
        self.db = open_database(
            cfg.database_url,
            sqlite_synchronous=cfg.sqlite_synchronous,
            unavailable_after=cfg.database_unavailable_after_seconds,
        )
        self.writer = Writer(
            self.db,
            max_batch=cfg.max_batch,
            after_commit=self._after_commit,
            after_uncertain=self._after_uncertain,
            gate=self.gate,
            observer=self.metrics.writer if self.metrics is not None else None,
        )
        store = self.store = Store(self.db, self.writer)
        try:
            await self._check_origin(store, logbook)
            verifiers = [parse_vkey(v) for v in (signer.vkey, self.next_log_vkey, *previous) if v]
            await self._check_witnesses(store, logbook, signer, verifiers)
            await self._check_signed_before(store, logbook, verifiers)
            self.tokens = Tokens(await store.node_secret(TOKEN_SECRET))
        except BaseException:
            await self.db.close()
            self.db = self.writer = self.store = None
            raise
        self.writer.start()
        try:
            await self._serve(cfg, store, logbook, tls, self.tokens)
        except BaseException:  # e.g. the port is taken: leave nothing running or open
            await self._abandon_start()
            raise
        log.info(
            "node started",
            extra={
                "version": __version__,
                "province": cfg.province,
                "listen": cfg.listen,
                "port": self.port,
                "database": describe(cfg.database_url),
                "witness_port": self.witness_port,
                "metrics_port": self.metrics_port,
            },
        )
        return self.port

    async def _abandon_start(self) -> None:
        if self._server is not None:
            await self._server.stop(None)
            self._server = None
        if self.metrics is not None:
            await asyncio.to_thread(self.metrics.stop)
        if self.peer_witness is not None:
            await asyncio.to_thread(self.peer_witness.stop)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.witnessing is not None:
            await self.witnessing.stop()
        if self.peer_bundles is not None:
            await self.peer_bundles.stop()
        if self.dispatcher is not None:
            await self.dispatcher.stop()
        if self.links is not None:
            await self.links.close()
        if self.writer is not None:
            await self.writer.stop()
        if self.db is not None:
            await self.db.close()
        self.db = self.writer = self.store = None

    async def _serve(self, cfg: Config, store: Store, logbook: Logbook, tls: TlsMaterial, tokens: Tokens) -> None:
        self.auth = auth = Authenticator(cfg.province, tls.peer_cas, own_cas=tls.own_cas, revoked=tls.revoked)
        self.certificates = ServerCertificates(tls)
        creds = self.certificates.credentials()
        if self.peers:
            self.links = PeerLinks(self.peers, tls)
            self.dispatcher = Dispatcher(store, self.federation, self.links, self.peers, self.clock)
            if self.metrics is not None:
                self.dispatcher.observer = self.metrics.deliveries
            if any(peer.witnessed for peer in self.peers.values()):
                self.peer_bundles = BundleRefresher(store, self.links, self.peers, self.clock)
                self.dispatcher.bundles_due = self.peer_bundles.wake

        interceptors: list[grpc.aio.ServerInterceptor] = []
        if self.metrics is not None:  # first: it sees what the others answer too
            interceptors.append(self.metrics.calls)
        interceptors.append(RefuseMalformed(self.clock))
        interceptors.append(CallLog(auth, cfg.log_reads))
        server = grpc.aio.server(
            interceptors=interceptors,
            options=[
                ("grpc.so_reuseport", 0),
                ("grpc.max_receive_message_length", MAX_MESSAGE),
                ("grpc.max_send_message_length", MAX_MESSAGE),
                *grpc_options(cfg.limits),
            ],
        )
        schools_pb2_grpc.add_SchoolDirectoryServiceServicer_to_server(
            SchoolDirectoryServicer(store, auth, self.clock, tokens, Directory(cfg.province, self.clock)), server
        )
        records_pb2_grpc.add_RecordServiceServicer_to_server(
            RecordServicer(store, auth, self.clock, tokens, Records(self.clock, digest_key(logbook), self.ids)), server
        )
        transfers_pb2_grpc.add_TransferServiceServicer_to_server(
            TransferServicer(store, auth, self.clock, tokens, self.transfers, self.notifier, logbook, self.watch_quota),
            server,
        )
        log_pb2_grpc.add_LogServiceServicer_to_server(
            LogServicer(store, auth, self.clock, tokens, logbook, self.log_info(logbook), self.proof_bundle), server
        )
        pages_pb2_grpc.add_PageServiceServicer_to_server(
            PageServicer(store, auth, self.clock, tokens, self.pages, logbook), server
        )
        sealer = Sealer(cfg.province, self.seal_key)
        peers_pb2_grpc.add_PeerServiceServicer_to_server(
            PeerServicer(store, auth, self.clock, self.federation, sealer, self.receipt_bundle), server
        )
        peers_pb2_grpc.add_DeliveryServiceServicer_to_server(DeliveryServicer(store, auth, self.clock), server)
        staff_pb2_grpc.add_StaffServiceServicer_to_server(
            StaffServicer(store, auth, self.clock, tokens, self.staff, logbook), server
        )
        self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        enable_reflection((*SERVICE_NAMES, health.SERVICE_NAME), server)
        try:
            self.port = server.add_secure_port(cfg.listen, creds)
        except RuntimeError:  # grpc's "Failed to bind to address"
            self.port = 0
        if self.port == 0:
            raise StartRefused(
                f"cannot listen on {cfg.listen} (node.listen): the port is in use, or not an address of this host"
            )
        if self.peer_witness is not None:
            try:
                self.witness_port = self.peer_witness.start(lambda: self.clock.now().timestamp())
            except WitnessStartRefused as exc:
                raise StartRefused(str(exc)) from None
        if self.metrics is not None:
            try:
                self.metrics_port = self.metrics.start()
            except MetricsStartRefused as exc:
                raise StartRefused(str(exc)) from None
        await server.start()
        self._server = server
        for name in ("", LIVENESS, READINESS, *SERVICE_NAMES):
            await self._set_health(name, True)
        self._tasks.append(asyncio.create_task(self._sweep_forever(), name="expiry-sweeper"))
        self._tasks.append(asyncio.create_task(self._probe_forever(), name="database-probe"))
        self._tasks.append(asyncio.create_task(self._publish_forever(), name="checkpoint-publisher"))
        if self.witnessing is not None:
            self.witnessing.start(await store.read(lambda uow: uow.log.latest_checkpoint()))
        if self.dispatcher is not None:
            self.dispatcher.start()
        if self.peer_bundles is not None:
            self.peer_bundles.start()
        if faults.active():
            log.warning("injected faults are active (TRANSFER_FAULTS): test use only")
        if cfg.port_file is not None:
            tmp = cfg.port_file.with_suffix(".tmp")
            tmp.write_text(f"{self.port}\n")
            os.replace(tmp, cfg.port_file)

    async def reload_tls(self, config: Config | None = None) -> bool:
        """SIGHUP: read the TLS material again and use it for every new connection and call.

        `config` is the configuration file read again (None: the files this node was started with): of it,
        [tls] (the certificate, key, CA file and deny list), `signing.ca_file` (the teachers' signing CAs)
        and each configured peer's `ca_file` are taken; anything else needs a restart (the seal and log
        keys among it: docs/operations.md, Renewal), and a line says so. Connections already open keep their handshake
        and their calls run on; every later call is judged by the new CAs and deny list; the peer links
        make new calls with the new certificate. Material that cannot be used whole keeps the old one in
        service, with one error line saying why. Returns whether the new material is in service."""
        assert self.certificates is not None and self.auth is not None, "node not started"
        async with self._reload_lock:  # two SIGHUPs in a row: the later file contents win
            return await self._reload_tls(config)

    async def _reload_tls(self, config: Config | None) -> bool:
        assert self.certificates is not None and self.auth is not None
        wanted = _tls_part(self.config, config or self.config)
        try:
            material = await asyncio.to_thread(load_tls, wanted)
        except TlsRefused as exc:
            log.error(
                "TLS reload refused, still serving with the certificates loaded before: %s",
                exc,
                extra={"reason": "TLS_RELOAD_REFUSED"},
            )
            return False
        if config is not None:
            ignored = [f.name for f in dataclasses.fields(Config) if getattr(config, f.name) != getattr(wanted, f.name)]
            if ignored:
                log.warning(
                    "configuration changes outside [tls], signing.ca_file and the peers' ca_file take effect at "
                    "the next start",
                    extra={"fields": ignored},
                )
        self.config = wanted
        self.certificates.replace(material)
        self.auth.trust(material.peer_cas, material.own_cas, material.revoked)
        self.signing_trust.replace_anchors(material.signing_cas)
        if self.links is not None:
            self.links.renew(material)
        log.info("TLS material reloaded", extra=material.describe())
        if self.dispatcher is not None:  # peers that refused the old certificate may take the new one
            await self.dispatcher.tls_renewed()
        return True

    async def sweep_once(self) -> int:
        """Expire overdue transfers, apply due handoffs (and end absences), lock
        pages whose lock date passed, and forget request ids past retention.

        Returns how many transfers expired. Runs through the writer, so it is
        serial with every other change. A stage that fails does not keep the
        others from running; the first failure is raised once all have run.
        """
        assert self.store is not None, "node not started"
        self.gate.check()
        done: dict[str, int] = {}
        failure: Exception | None = None
        for stage in (self._expire_overdue, self._apply_handoffs, self._lock_pages, self._forget_request_ids):
            try:
                done[stage.__name__] = await stage()
            except Unavailable as exc:
                if exc.reason == "LOG_INCONSISTENT":  # said once, by _log_broke
                    raise
                self._sweep_unavailable.failed(exc, stage=stage.__name__)
                failure = failure or exc
            except Exception as exc:
                log.exception("sweep stage failed", extra={"stage": stage.__name__})
                failure = failure or exc
        if failure is not None:
            raise failure
        return done["_expire_overdue"]

    async def _expire_overdue(self) -> int:
        assert self.store is not None
        total = 0
        while True:
            expired = await self.store.write(functools.partial(self.transfers.expire_overdue, limit=SWEEP_BATCH))
            for t in expired:
                log.info("transfer expired", extra={"transfer_id": t.id})
            total += len(expired)
            if len(expired) < SWEEP_BATCH:
                return total

    async def _apply_handoffs(self) -> int:
        assert self.store is not None
        total = 0
        after: tuple[datetime, str] | None = None
        while True:  # pages through the due handoffs: one that cannot take effect is passed, not retried
            handoffs, after = await self.store.write(
                functools.partial(self.staff.apply_due, limit=HANDOFF_BATCH, after=after)
            )
            for h in handoffs:
                if h.state is HandoffState.SCHEDULED:
                    log.error("handoff cannot take effect: it no longer covers every duty", extra={"handoff_id": h.id})
                else:
                    total += 1
                    log.info("handoff applied", extra={"handoff_id": h.id, "state": h.state.name})
            if after is None:
                return total

    async def _lock_pages(self) -> int:
        assert self.store is not None
        total = 0
        while locked := await self.store.write(functools.partial(self.pages.lock_due, limit=SWEEP_BATCH)):
            log.info("pages locked at their lock date", extra={"count": len(locked)})
            total += len(locked)
            if len(locked) < SWEEP_BATCH:
                break
        return total

    async def _forget_request_ids(self) -> int:
        assert self.store is not None
        cutoff = self.clock.now() - timedelta(days=self.config.idempotency_retention_days)
        total = 0
        while True:
            pruned = await self.store.write(functools.partial(_prune, older_than=cutoff))
            total += pruned
            if pruned < PRUNE_BATCH:
                return total

    async def _sweep_forever(self) -> None:
        while self.gate.broken is None:
            try:
                await self.sweep_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # each failed stage was logged by sweep_once
                if isinstance(exc, Unavailable) and exc.reason == "LOG_INCONSISTENT":
                    return  # said once, by _log_broke
                log.warning("sweep incomplete; will retry", extra={"in_s": self.config.expiry_sweep_seconds})
            await asyncio.sleep(self.config.expiry_sweep_seconds)

    async def publish_checkpoint(self) -> StoredCheckpoint | None:
        """Sign a checkpoint of the log if it grew since the last one (stored through the writer).

        The checkpoint is signed on a read, written to `log.latest_checkpoint_file`,
        and only then stored, where receipts and GetCheckpoint find it: nothing
        this node hands out is missing from the file. The entries it covers were
        committed before it was signed, so a file ahead of the database's
        checkpoints still matches its tree. A log inconsistent with the latest
        checkpoint closes the node's gate (`_log_broke`) and signs nothing."""
        assert self.store is not None and self.logbook is not None, "node not started"
        logbook, path = self.logbook, self.config.latest_checkpoint_file
        async with self._publish_lock:
            self.gate.check()  # nothing is signed over a log found inconsistent
            try:
                signed = await self.store.read(logbook.prepare)
            except LogInconsistent as exc:
                self.gate.trip(exc)
                raise self.gate.refusal() from None
            if signed is None:
                return None
            try:
                await asyncio.to_thread(self._save_synced, path, signed)
            except OSError as exc:  # e.g. a directory in its place, a read-only or full disk
                raise Unavailable(
                    "LATEST_CHECKPOINT_UNWRITABLE",
                    f"log.latest_checkpoint_file {path}: cannot be written: {exc.strerror or exc}",
                ) from None
            checkpoint = await self.store.write(lambda uow: logbook.store(uow, signed))
        if checkpoint is not None:
            log.info("checkpoint published", extra={"tree_size": checkpoint.size, "root": checkpoint.root.hex()})
            if self.witnessing is not None:
                self.witnessing.published(checkpoint)
        return checkpoint

    def log_info(self, logbook: Logbook) -> LogInfo:
        """What GetLogInfo serves: the origin, the keys verifiers pin, and the witness policy."""
        return LogInfo(
            origin=logbook.origin,
            log_vkey=self.log_vkey,
            seal_vkey=self.seal_vkey,
            next_log_vkey=self.next_log_vkey,
            previous_log_vkeys=self.previous_log_vkeys,
            witnesses=tuple(Witness(w.name, w.vkey, w.url) for w in self.config.witnesses),
            witness_quorum=self.config.witness_quorum,
            own_witness_vkey=self.peer_witness.vkey if self.peer_witness is not None else "",
        )

    async def _check_witnesses(
        self, store: Store, logbook: Logbook, signer: Ed25519Signer, log_keys: list[Verifier]
    ) -> None:
        """Refuse to start on a database behind a checkpoint a witness cosigned (log.witnesses).

        The latest stored checkpoint (a signed size-0 one when there is none: it is
        consistent with every tree) goes to every witness with `old 0`; a 409 answer
        names the size the witness cosigned. Witnesses that do not answer within
        log.witness_startup_seconds do not hold the start (a warning names them)."""
        cfg = self.config
        if not cfg.witnesses:
            return
        self.witnessing = witnessing = Witnessing(
            [(w.name, w.vkey, w.url) for w in cfg.witnesses], cfg.witness_quorum, logbook, store
        )
        # The latest checkpoint a quorum cosigned, from the database: a restart during a witness outage keeps it.
        witnessing.latest_witnessed = await store.read(lambda uow: witnessing.recall(uow, log_keys))
        latest, size = await store.read(lambda uow: (uow.log.latest_checkpoint(), uow.log.committed_size()))
        probe = latest or StoredCheckpoint(
            0, EMPTY_ROOT, sign_note(Checkpoint(logbook.origin, 0, EMPTY_ROOT).text(), signer), self.clock.now()
        )
        try:
            await self.witnessing.check_at_start(probe, latest is not None, size, cfg.witness_startup_seconds)
        except WitnessAhead as exc:
            raise StartRefused(
                f"LOG_BEHIND_SIGNED_CHECKPOINT: the database holds {exc.log_size} log entries, but witness "
                f"{exc.name} has cosigned a checkpoint of this log of {exc.size}: it was restored from an older "
                f"backup, or it is not this node's database; signing now would fork the log. {_RECOVERY}"
            ) from None

    async def _check_origin(self, store: Store, logbook: Logbook) -> None:
        """Refuse to start when log.origin is not the origin of the checkpoints already signed."""
        try:
            await store.read(logbook.check_origin)
        except DataLoss as exc:
            raise StartRefused(f"{exc.reason}: {exc.message} (see docs/operations.md, Log keys)") from None

    async def _check_signed_before(self, store: Store, logbook: Logbook, verifier: list[Verifier]) -> None:
        """Refuse to start on a database that no longer holds the latest tree this
        node signed (`log.latest_checkpoint_file`, kept outside the database)."""
        path = self.config.latest_checkpoint_file
        latest = await store.read(lambda uow: uow.log.latest_checkpoint())
        try:
            saved = path.read_text(encoding="utf-8")
        except (FileNotFoundError, NotADirectoryError):  # the first start, or the file was lost
            saved = None
        except (OSError, UnicodeDecodeError) as exc:
            raise StartRefused(f"log.latest_checkpoint_file {path}: cannot be read: {exc}") from None
        if saved is None:  # a file the node will have to write at its first checkpoint: refused now if it cannot
            unwritable = checkpoint_file_problem(path, make=True)
            if unwritable is not None:
                raise StartRefused(unwritable)
            if latest is not None:
                if not self.accept_missing_checkpoint_file:
                    missing = DataLoss(
                        "LATEST_CHECKPOINT_MISSING",
                        f"log.latest_checkpoint_file {path} does not exist, but the database holds checkpoints "
                        f"this node signed (up to {latest.size} entries): the database cannot be checked against "
                        "the latest one. If the file was lost, check the database with transfer-verify-log "
                        "--checkpoint (the latest checkpoints peers and auditors hold), then start once with "
                        "--accept-missing-checkpoint-file; see docs/operations.md, Backups and restores",
                    )
                    raise StartRefused(f"{missing.reason}: {missing.message}")
                log.warning(
                    "log.latest_checkpoint_file is missing: started without checking the database against it "
                    "(--accept-missing-checkpoint-file)",
                    extra={"path": str(path), "tree_size": latest.size},
                )
                self._remember_signed(latest)
                await asyncio.to_thread(self._save_synced, path, latest)
            return
        try:
            signed = await store.read(lambda uow: logbook.check_signed_before(uow, saved, verifier))
        except DataLoss as exc:
            signers = _unknown_signers(saved, verifier)
            if exc.reason == "LATEST_CHECKPOINT_UNREADABLE" and signers:
                raise StartRefused(f"{exc.reason}: {self._other_key_advice(path, signers)}; {_RECOVERY}") from None
            raise StartRefused(
                f"{exc.reason}: {exc.message} (log.latest_checkpoint_file {path}); {_RECOVERY}"
            ) from None
        log.info("log matches the latest signed checkpoint", extra={"tree_size": signed.size})
        self._saved_size = signed.size  # the file never goes back to a smaller tree
        self._remember_signed(StoredCheckpoint(signed.size, signed.root, saved, self.clock.now()))
        if latest is not None:
            self._remember_signed(latest)
            await asyncio.to_thread(self._save_synced, path, latest)

    def _other_key_advice(self, path: Path, signers: list[str]) -> str:
        """LATEST_CHECKPOINT_UNREADABLE for a file signed by none of the configured keys: most often a key
        configuration mistake (another key file, a rotation without log.previous_vkey_files), so what to
        check comes before the restore advice."""
        cfg = self.config
        configured = [f"log.key_file {cfg.log_key_file} ({_key_name(self.log_vkey)})"]
        if self.next_log_vkey:
            configured.append(f"log.next_key_file {cfg.log_next_key_file} ({_key_name(self.next_log_vkey)})")
        previous = ", ".join(_key_name(v) for v in self.previous_log_vkeys) or "none"
        configured.append(f"log.previous_vkey_files: {previous}")
        by = f"the key {signers[0]}" if len(signers) == 1 else f"the keys {', '.join(signers)}"
        return (
            f"log.latest_checkpoint_file {path} is signed by {by}, none of the keys configured for the log "
            f"({'; '.join(configured)}): first check log.key_file and log.previous_vkey_files against the log's "
            "published vkey (log_vkey in GetLogInfo, the log.vkey given to peers and auditors; after a log key "
            "rotation the retired key's vkey goes in log.previous_vkey_files: docs/operations.md, Log keys). "
            "If they are right, the file is not this log's checkpoint"
        )

    def _remember_signed(self, checkpoint: StoredCheckpoint) -> None:
        """The writer refuses to append below a tree this node signed (storage.repositories.LogState)."""
        assert self.writer is not None
        self.writer.log_state.signed_at_least(checkpoint)

    def _log_broke(self, cause: LogInconsistent) -> None:
        """The gate closed (once): one line with the sizes and roots, the write services NOT_SERVING,
        and nothing more sent to peers or swept (it would all be changes the node now refuses)."""
        log.error(
            "LOG_INCONSISTENT: the log contradicts a checkpoint this node signed; it signs nothing more and "
            "accepts no changes until an operator repairs it (docs/operations.md, The log)",
            extra={"reason": "LOG_INCONSISTENT", **cause.log_extra()},
        )
        if self._stopping is None:  # a node stopping says NOT_SERVING and stops its tasks anyway
            self._tasks.append(asyncio.get_running_loop().create_task(self._stop_changing(), name="log-broke"))

    async def _stop_changing(self) -> None:
        await self._update_health()
        for task in self._tasks:
            if task.get_name() == "expiry-sweeper":
                task.cancel()
        if self.dispatcher is not None:
            await self.dispatcher.stop()

    async def _update_health(self) -> None:
        """Set the write services and `readiness` from what the node knows: NOT_SERVING while the log is
        found inconsistent or the database does not answer; `readiness` also while publications fail.
        A node stopping leaves them as its graceful shutdown set them (NOT_SERVING)."""
        if self._health is None or self._stopping is not None:
            return
        writes = self.gate.broken is None and self._database_answers
        for name in WRITE_SERVICE_NAMES:
            await self._set_health(name, writes)
        await self._set_health(READINESS, writes and self._log_signs)

    async def _set_health(self, name: str, serving: bool) -> None:
        assert self._health is not None
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        await self._health.set(name, status)
        self.health_serving[name] = serving

    async def _probe_forever(self) -> None:
        """Every server.health_probe_seconds, one write transaction through the writer that reads the log's
        size (the write lock, a read, a commit: what every change needs), bounded by twice
        database.unavailable_after_seconds. The statuses change on a change of outcome only, each with one line."""
        bound = 2 * self.config.database_unavailable_after_seconds
        while self.gate.broken is None and self._stopping is None:
            answers, reason = await self._probe_database(bound)
            if answers != self._database_answers:
                self._database_answers = answers
                if answers:
                    health_log.info("database answers again: readiness and the write services SERVING")
                else:
                    health_log.warning(
                        "database unavailable: readiness and the write services NOT_SERVING until it answers",
                        extra={"reason": reason},
                    )
                await self._update_health()
            await asyncio.sleep(self.config.health_probe_seconds)

    async def _probe_database(self, bound: float) -> tuple[bool, str]:
        assert self.store is not None
        if self._probe is None or self._probe.done():  # never more than one probe waiting in the writer
            self._probe = asyncio.ensure_future(self.store.write(lambda uow: uow.log.committed_size()))
            # a probe that outlived its bound ends unawaited: its outcome is taken here, not reported as lost
            self._probe.add_done_callback(lambda done: done.cancelled() or done.exception())
        # asyncio.wait, not wait_for: it leaves the probe running past the bound, and (Python 3.11's
        # wait_for does not) never swallows this task's cancellation when the probe ends at that moment.
        done, _ = await asyncio.wait({self._probe}, timeout=bound)
        if not done:
            return False, "DATABASE_UNAVAILABLE"
        try:
            self._probe.result()
        except Unavailable as exc:
            if exc.reason == "LOG_INCONSISTENT":  # not the database: the gate says it, and ends the loop
                return self._database_answers, ""
            return False, exc.reason
        except WriterStopped:
            return self._database_answers, ""
        except Exception as exc:
            health_log.exception("database probe failed")
            return False, type(exc).__name__
        return True, ""

    async def _log_signed(self, signs: bool) -> None:
        """The checkpoint publisher's outcome: `readiness` follows whether the log can be signed."""
        if signs != self._log_signs:
            self._log_signs = signs
            if signs:
                health_log.info("checkpoints are published again: readiness SERVING")
            else:
                health_log.warning("checkpoint publication failed: readiness NOT_SERVING until one succeeds")
            await self._update_health()

    def _save_synced(self, path: Path, checkpoint: StoredCheckpoint) -> None:
        # On a thread, which runs on even when its caller is cancelled (at stop):
        # the lock keeps two writes apart and the file never goes back to a smaller tree.
        with self._save_lock:
            if checkpoint.size > self._saved_size:
                _write_synced(path, checkpoint.note)
                self._saved_size = checkpoint.size

    def _after_commit(self, items: list[object]) -> None:
        self.notifier.publish(items)
        if self.dispatcher is not None:
            self.dispatcher.notify(items)

    def _after_uncertain(self) -> None:
        # A batch may have committed without our knowing (the database link broke
        # during COMMIT): watchers and the dispatcher re-read rather than miss it.
        self.notifier.wake_all()
        if self.dispatcher is not None:
            self.dispatcher.wake.set()

    async def checkpoint_covering(self, index: int) -> str:
        """The first signed checkpoint whose tree holds entry `index` (publishing one if needed)."""
        assert self.store is not None and self.logbook is not None
        logbook = self.logbook
        for _ in range(4):
            found = await self.store.read(lambda uow: logbook.first_covering(uow, index))
            if found is not None:
                return found.note
            # Concurrent callers share one publication, which lingers a moment
            # first: checkpoints are signed per group of entries, not per entry.
            # One that started before our entry committed may not cover it; the
            # loop then starts the next.
            if self._publishing is None or self._publishing.done():
                self._publishing = asyncio.get_running_loop().create_task(self._publish_soon())
            await asyncio.shield(self._publishing)
        raise Unavailable("NO_CHECKPOINT_YET", "no checkpoint covers the entry yet; retry")

    async def proof_bundle(self, index: int, size: int) -> ProofBundle:
        """GetProofBundle: entry `index` proved in the checkpoint of `size` (0: the latest, one
        being published first when none covers the entry yet, as for a peer's receipt)."""
        assert self.store is not None and self.logbook is not None
        logbook = self.logbook
        try:
            return await self.store.read(lambda uow: logbook.proof_bundle(uow, index, size))
        except (Unavailable, NotFound) as exc:
            if size or exc.reason not in ("NO_CHECKPOINT_YET", "NO_CHECKPOINT"):
                raise
        await self.checkpoint_covering(index)
        return await self.store.read(lambda uow: logbook.proof_bundle(uow, index, 0))

    async def receipt_bundle(self, index: int) -> ProofBundle:
        """Entry `index` proved in the first checkpoint signed over it (publishing one if needed):
        what a sealed receipt to a peer carries (docs/federation.md, Receipts)."""
        assert self.store is not None and self.logbook is not None
        logbook = self.logbook
        bundle = await self.store.read(lambda uow: logbook.receipt_bundle(uow, index))
        if bundle is None:  # no checkpoint covers it yet: publish one (shared by the receipts of a burst)
            await self.checkpoint_covering(index)
            bundle = await self.store.read(lambda uow: logbook.receipt_bundle(uow, index))
        if bundle is None:  # not reached: the checkpoint found above is never removed
            raise Unavailable("NO_CHECKPOINT_YET", "no checkpoint covers the entry yet; retry")
        return bundle

    async def _publish_soon(self) -> StoredCheckpoint | None:
        await asyncio.sleep(RECEIPT_LINGER_SECONDS)  # let the entries committing now share it
        return await self.publish_checkpoint()

    async def _publish_forever(self) -> None:
        while self.gate.broken is None:  # once it closed, there is nothing the node may sign
            try:
                await self.publish_checkpoint()
                await self._log_signed(True)
            except asyncio.CancelledError:
                raise
            except Unavailable as exc:  # the database is down, locked or full: one line, not one per round
                self.publish_failures[exc.reason] += 1
                if exc.reason == "LOG_INCONSISTENT":  # said once, by _log_broke
                    return
                if exc.reason == "LATEST_CHECKPOINT_UNWRITABLE":
                    self._publish_unwritable.failed(exc)
                else:
                    self._publish_unavailable.failed(exc)
                await self._log_signed(False)
            except Exception:
                self.publish_failures["UNEXPECTED"] += 1
                log.exception("checkpoint publication failed; will retry")
                await self._log_signed(False)
            await asyncio.sleep(self.config.checkpoint_interval_seconds)

    async def stop(self, grace: float | None = None) -> None:
        """Refuse new calls, let in-flight ones finish, then close the database.

        A second call (a signal during shutdown, a test's teardown) waits for the first."""
        if self._stopping is not None:
            await asyncio.shield(self._stopping)
            return
        self._stopping = asyncio.get_running_loop().create_future()
        try:
            await self._stop(grace)
        finally:
            self._stopping.set_result(None)

    async def _stop(self, grace: float | None) -> None:
        grace = self.config.shutdown_grace_seconds if grace is None else grace
        log.info("node stopping", extra={"grace_seconds": grace})
        if self._health is not None:
            await self._health.enter_graceful_shutdown()
            self.health_serving = dict.fromkeys(self.health_serving, False)
        self.notifier.close()
        if self._server is not None:
            await self._server.stop(grace)
        if self.metrics is not None:
            await asyncio.to_thread(self.metrics.stop)
        if self.peer_witness is not None:
            await asyncio.to_thread(self.peer_witness.stop)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.witnessing is not None:
            await self.witnessing.stop()
        if self.peer_bundles is not None:
            await self.peer_bundles.stop()
        if self.dispatcher is not None:
            await self.dispatcher.stop()
        if self.links is not None:
            await self.links.close()
        if self.store is not None and self.gate.broken is None:
            try:  # leave a checkpoint covering everything this node wrote
                await self.publish_checkpoint()
            except Unavailable as exc:
                if exc.reason != "LOG_INCONSISTENT":  # that one was said once, by _log_broke
                    log.error(
                        "final checkpoint failed; the next start publishes it: %s: %s", exc.reason, exc.message,
                        extra={"reason": exc.reason},
                    )  # fmt: skip
            except Exception:
                log.exception("final checkpoint failed; the next start publishes it")
        if self.writer is not None:
            await self.writer.stop()
            w = self.writer
            log.info(
                "writer stopped",
                extra={
                    "commands": w.commands,
                    "batches": w.batches,
                    "mean_batch": round(w.commands / max(w.batches, 1), 1),
                },
            )
        if self.db is not None:
            await self.db.close()
        log.info("node stopped")
        self.stopped.set()
