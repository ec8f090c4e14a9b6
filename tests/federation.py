"""Two real nodes, 01 (Hà Nội) and 79 (Hồ Chí Minh City), as processes on
loopback, each with its own PKI and database, configured as each other's peer."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support import (
    PATIENT,
    ROOT,
    ServerProcess,
    create_pg_database,
    db_snapshot,
    drop_pg_database,
    postgres_base,
    write_config,
)
from transfer.auditor import pins_from, read_node
from transfer.client import ClientTls, RetryPolicy, TransferClient, TransferError
from transfer.domain.custody import check_federation
from transfer.domain.leaves import NO_PEER_ENTRY, LeafKind, decode_any
from transfer.domain.model import Role
from transfer.identity import province_uri, role_uri
from transfer.v1 import peers_pb2_grpc, records_pb2

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, fn: Callable[[], T | None], timeout: float = 40.0, interval: float = 0.1) -> T:
    """Poll `fn` until it returns something truthy; bounded in time."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except TransferError as err:
            if not err.transient:
                raise
            last = err
        if last:
            return last  # type: ignore[no-any-return]
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def peer_block(pki: Path, province: str, port: int) -> str:
    return f"""
[[peers]]
province = "{province}"
address = "127.0.0.1:{port}"
server_name = "localhost"
ca_file = "{pki / "ca.pem"}"
seal_vkey_file = "{pki / "seal.vkey"}"
log_vkey_file = "{pki / "log.vkey"}"
"""


class NodeDatabases:
    """The nodes' databases in a federation fixture: a SQLite file under tmp_path/NAME, or a fresh PostgreSQL
    database (the test skipped without TRANSFER_TEST_PG), dropped by drop()."""

    def __init__(self, request: pytest.FixtureRequest, tmp_path: Path) -> None:
        self.request, self.tmp_path = request, tmp_path
        self.base = os.environ.get("TRANSFER_TEST_PG", "")
        self.pg_urls: list[str] = []

    def url(self, name: str, engine: str) -> str:
        if engine == "sqlite":
            return f"sqlite:///{self.tmp_path / name / 'node.db'}"
        self.pg_urls.append(create_pg_database(postgres_base(self.request)))
        return self.pg_urls[-1]

    def drop(self) -> None:
        for url in self.pg_urls:
            drop_pg_database(self.base, url)


@dataclass
class Node:
    province: str
    pki: Path
    proc: ServerProcess
    config: Path
    database_url: str
    clients: list[TransferClient] = field(default_factory=list)
    teachers: dict[str, Any] = field(default_factory=dict)  # tests' own bookkeeping

    def client(self, identity: str, retry: RetryPolicy = PATIENT) -> TransferClient:
        c = TransferClient(self.proc.address, ClientTls.from_pki(self.pki, identity), timeout=5, retry=retry)
        self.clients.append(c)
        return c

    @property
    def admin(self) -> TransferClient:
        return self.client("province-admin")

    def verify_log(self) -> str:
        """Run `transfer-verify-log` on this node's database; return its output (fails the test if it fails)."""
        done = subprocess.run(
            [sys.executable, "-m", "transfer.server.verify", "--config", str(self.config)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, f"log of {self.province} does not verify: {done.stdout}{done.stderr}"
        return done.stdout

    def leaves(self) -> list[Any]:
        return [decode_any(e.leaf) for e in self.admin.iter_entries()]

    def rows(self, table: str) -> list[tuple[Any, ...]]:
        return db_snapshot(self.database_url)[table]

    def unowned_signatures(self) -> list[str]:
        """Signatures still owed on pages this node issued that no active teacher of the issuing school owes."""
        return unowned_signatures(self.database_url, self.province)

    def close(self) -> None:
        for c in self.clients:
            c.close()
        self.clients.clear()
        self.proc.stop()


@dataclass
class Pair:
    a: Node  # 01, the sending province in most tests
    b: Node  # 79

    def holders(self, lookup_code: str) -> list[tuple[str, str]]:
        """Where the record is held (not transferred out): (province, school) on each node."""
        found = []
        for node in (self.a, self.b):
            try:
                r = node.admin.get_record(lookup_code)
            except TransferError as err:
                if err.reason == "RECORD_NOT_FOUND":
                    continue
                raise
            if r.status != records_pb2.RECORD_STATUS_TRANSFERRED_OUT:
                found.append((node.province, r.custodian_school))
        return found

    def assert_consistent(self, *lookup_codes: str) -> None:
        """Exactly one custodian across both nodes for each record, both logs verify, every signature
        owed on a node's own pages has an active owner there, each acknowledgement in one log
        names the other log's entry for that transfer (or none), and `transfer-audit`'s rules hold."""
        for code in lookup_codes:
            holders = self.holders(code)
            assert len(holders) == 1, f"record {code} held by {holders}"
        self.a.verify_log()
        self.b.verify_log()
        for node in (self.a, self.b):
            assert node.unowned_signatures() == [], f"signatures owed at {node.province} without an active owner"
        for here, there in ((self.a, self.b), (self.b, self.a)):
            theirs = there.leaves()
            for ack in here.leaves():
                if ack.kind is LeafKind.MESSAGE_ACKNOWLEDGED and ack.peer_log_index != NO_PEER_ENTRY:
                    assert theirs[ack.peer_log_index].transfer_id == ack.transfer_id, (here.province, ack)
        self.audit()

    def audit(self) -> None:
        """What `transfer-audit` checks, through LogService as an auditor of each node: both logs verify
        against their pinned keys and every promise between them holds (what is still in flight may be)."""
        specs = [
            f"province={n.province},address={n.proc.address},server_name=localhost,pki={n.pki},"
            f"vkey_file={n.pki / 'log.vkey'},origin=hocba.invalid/province/{n.province}/log"
            for n in (self.a, self.b)
        ]
        results = [read_node(pin, 10.0, lambda *_: None) for pin in pins_from(None, specs)[0]]
        assert all(r.verified for r in results), [(r.problem, r.unreachable) for r in results]
        report = check_federation([r.entries for r in results])
        assert report.ok, [str(f) for f in report.findings]


def unowned_signatures(database_url: str, province: str) -> list[str]:
    """The signatures still owed on pages the node of `province` issued (read-only from its database) whose
    owner is nobody, or not an active teacher of the page's issuing school: "page/requirement: why" each.

    Pages issued by another province are left out: their signatures are owed on their own node."""
    from sqlalchemy import create_engine, or_, select

    from storage.database import sync_url
    from storage.schema import pages, signing_tasks, teachers
    from transfer.domain.model import TeacherStatus

    query = (
        select(signing_tasks.c.page_id, signing_tasks.c.requirement, signing_tasks.c.assignee, pages.c.issuing_school,
               teachers.c.school, teachers.c.status)
        .join(pages, pages.c.id == signing_tasks.c.page_id)
        .outerjoin(teachers, teachers.c.id == signing_tasks.c.assignee)
        .where(signing_tasks.c.signed_by.is_(None), or_(pages.c.issuing_province == province,
                                                         pages.c.issuing_province == ""))
    )  # fmt: skip
    engine = create_engine(sync_url(database_url))
    try:
        with engine.connect() as conn:
            rows = conn.execute(query).all()
    finally:
        engine.dispose()
    found = []
    for page_id, requirement, assignee, issuer, school, status in rows:
        if assignee is None:
            found.append(f"{page_id}/{requirement}: owed by nobody")
        elif school is None or school != issuer:
            found.append(f"{page_id}/{requirement}: owed by {assignee}, not a teacher of {issuer}")
        elif status != TeacherStatus.ACTIVE:
            found.append(f"{page_id}/{requirement}: owed by {assignee}, {TeacherStatus(status).name}")
    return sorted(found)


def make_node(
    tmp: Path,
    pki: Path,
    province: str,
    database_url: str,
    port: int,
    peer: tuple[Path, str, int] | None,
    signing_bundle: Path,
    env: dict[str, str] | None = None,
    more_peers: Sequence[tuple[Path, str, int]] = (),
    more_config: str = "",
) -> Node:
    """A node's process (not started). `more_config`: TOML appended to its configuration."""
    tmp.mkdir(parents=True, exist_ok=True)
    extra = f'\n[seal]\nkey_file = "{pki / "seal.key"}"\n{more_config}'
    for p in ([peer] if peer is not None else []) + list(more_peers):
        extra += peer_block(*p)
    cfg = write_config(
        tmp / "node.toml",
        pki=pki,
        database_url=database_url,
        province=province,
        listen=f"127.0.0.1:{port}",
        extra=extra,
        signing_ca=signing_bundle,
    )
    proc = ServerProcess(cfg, tmp / "server.log", env=env)
    proc.port = port
    return Node(province, pki, proc, cfg, database_url)


def peer_channel(own_pki: Path, target_pki: Path, address: str) -> grpc.Channel:
    """A channel as a node calls its peer: its own node certificate, the peer's CA."""
    creds = grpc.ssl_channel_credentials(
        root_certificates=(target_pki / "ca.pem").read_bytes(),
        private_key=(own_pki / "node.key").read_bytes(),
        certificate_chain=(own_pki / "node.pem").read_bytes(),
    )
    return grpc.secure_channel(address, creds, options=[("grpc.ssl_target_name_override", "localhost")])


def peer_stub(channel: grpc.Channel) -> peers_pb2_grpc.PeerServiceStub:
    return peers_pb2_grpc.PeerServiceStub(channel)


def issue_from_ca(ca_dir: Path, out: Path, stem: str, uris: list[str]) -> None:
    """A client certificate issued by the CA in `ca_dir` (for certificates a dev PKI would not make)."""
    ca_key = serialization.load_pem_private_key((ca_dir / "ca.key").read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, stem)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in uris]), critical=False)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    (out / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (out / f"{stem}.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


def node_uris(province: str, role: Role = Role.NODE) -> list[str]:
    return [role_uri(role), province_uri(province)]


def close_all(nodes: Iterator[Node] | list[Node]) -> None:
    for n in nodes:
        n.close()
