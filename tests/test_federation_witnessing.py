"""Witnessing in a federation, out of the box: two real node processes (01 and 79), each a witness of the
other's log ([witness] with its dev PKI's witness.key), each submitting its checkpoints to the other's
witness and to a standalone `transfer-witness` process (log.witnesses, quorum 2), as `make demo` runs them
and docs/operations.md ("Witnessing in a federation") configures them."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.federation import Node, free_port, make_node, wait_for
from tests.support import create_pg_database, drop_pg_database, new_lookup_code, new_national_id
from tests.test_witness import WitnessProcess
from transfer.client import TransferClient
from transfer.devpki import SigningCA, dev_witness_name, make_dev_pki, make_dev_witness
from transfer.ledger.note import Verifier, parse_vkey
from transfer.ledger.witnessed import Witnessed, check_witnessed, cosignature_verifier
from transfer.v1 import common_pb2, transfers_pb2

pytestmark = pytest.mark.slow

STANDALONE = "hocba.invalid/witness"
INCOMING = transfers_pb2.TRANSFER_DIRECTION_INCOMING
ACCEPTED = transfers_pb2.TRANSFER_STATE_ACCEPTED


@pytest.fixture(scope="session")
def pki79(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pki79")
    make_dev_pki(out, "79", ["D1"])
    SigningCA(out, not_before=datetime(2020, 1, 1, tzinfo=UTC), not_after=datetime(2040, 1, 1, tzinfo=UTC))
    return out


@pytest.fixture(scope="session")
def signing_bundle(tmp_path_factory: pytest.TempPathFactory, pki: Path, pki79: Path) -> Path:
    out = tmp_path_factory.mktemp("bundle") / "signing-cas.pem"
    out.write_bytes((pki / "signing-ca.pem").read_bytes() + (pki79 / "signing-ca.pem").read_bytes())
    return out


def witnessing_config(
    own_pki: Path, witness_port: int, state_file: Path | None, peer: tuple[Path, str, int], standalone: Path, url: str
) -> str:
    """The node's [witness] section (its dev PKI's witness key) and its two log.witnesses: the peer's witness
    (`peer`: its PKI, province and witness port) and the standalone one (its directory and URL)."""
    peer_pki, peer_province, peer_witness_port = peer
    state = f'state_file = "{state_file}"\n' if state_file is not None else ""
    return f"""
[witness]
listen = "127.0.0.1:{witness_port}"
key_file = "{own_pki / "witness.key"}"
{state}
[[log.witnesses]]
name = "{dev_witness_name(peer_province)}"
vkey_file = "{peer_pki / "witness.vkey"}"
url = "http://127.0.0.1:{peer_witness_port}"

[[log.witnesses]]
name = "{STANDALONE}"
vkey_file = "{standalone / "witness.vkey"}"
url = "{url}"
"""


@dataclass
class Federation:
    a: Node  # 01
    b: Node  # 79
    standalone: WitnessProcess


StartFederation = Callable[[str], Federation]


@pytest.fixture
def start_federation(
    request: pytest.FixtureRequest, tmp_path: Path, pki: Path, pki79: Path, signing_bundle: Path
) -> Iterator[StartFederation]:
    """A standalone witness of both logs, then nodes 01 and 79, each the other's peer and witness."""
    nodes: list[Node] = []
    witnesses: list[WitnessProcess] = []
    pg_urls: list[str] = []
    base = os.environ.get("TRANSFER_TEST_PG", "")

    def database(name: str, engine: str) -> str:
        if engine == "sqlite":
            return f"sqlite:///{tmp_path / name / 'node.db'}"
        if not base:
            if request.config.getoption("--require-postgres"):
                pytest.fail("TRANSFER_TEST_PG is not set but --require-postgres was given")
            pytest.skip("PostgreSQL not configured (set TRANSFER_TEST_PG, or run `make test`)")
        pg_urls.append(create_pg_database(base))
        return pg_urls[-1]

    def start(engine: str) -> Federation:
        standalone_dir = tmp_path / "standalone"
        standalone_url = f"http://127.0.0.1:{free_port()}"
        make_dev_witness(
            standalone_dir,
            STANDALONE,
            [(pki / "log.vkey").read_text(), (pki79 / "log.vkey").read_text()],
            listen=standalone_url.removeprefix("http://"),
        )
        standalone = WitnessProcess(standalone_dir / "witness.toml", tmp_path / "standalone.log")
        witnesses.append(standalone)
        standalone.start()
        port_a, port_b, witness_a, witness_b = free_port(), free_port(), free_port(), free_port()
        started = []
        for name, own, province, port, witness_port, peer, peer_witness in (
            ("a", pki, "01", port_a, witness_a, (pki79, "79", port_b), (pki79, "79", witness_b)),
            ("b", pki79, "79", port_b, witness_b, (pki, "01", port_a), (pki, "01", witness_a)),
        ):
            (tmp_path / name).mkdir(parents=True, exist_ok=True)
            url = database(name, engine)
            state = tmp_path / name / "node.witness.sqlite" if engine != "sqlite" else None
            section = witnessing_config(own, witness_port, state, peer_witness, standalone_dir, standalone_url)
            node = make_node(tmp_path / name, own, province, url, port, peer, signing_bundle, more_config=section)
            # Quorum 2 (also the default with two witnesses), and a short start-up check: 01 starts before
            # 79's witness listens, and must not wait the default 10 s for it.
            text = node.config.read_text(encoding="utf-8")
            node.config.write_text(
                text.replace(
                    "checkpoint_interval_seconds = 0.2\n",
                    "checkpoint_interval_seconds = 0.2\nwitness_quorum = 2\nwitness_startup_seconds = 1\n",
                ),
                encoding="utf-8",
            )
            nodes.append(node)
            node.proc.start()
            started.append(node)
        a, b = started
        a.admin.register_school("S1", "Trường Tiểu học Số 1 (Hà Nội)")
        b.admin.register_school("D1", "Trường Tiểu học Quận 1")
        return Federation(a, b, standalone)

    try:
        yield start
    finally:
        for n in nodes:
            n.close()
        for w in witnesses:
            w.stop()
        for url in pg_urls:
            drop_pg_database(base, url)


@dataclass
class Policy:
    """What a verifier of one node's checkpoints pins: its log key and the keys of its two witnesses."""

    log: Verifier
    peer: Verifier  # the other node's witness, from the other node's GetLogInfo (own_witness_vkey)
    standalone: Verifier

    def check(self, note: str, quorum: int = 2) -> Witnessed:
        return check_witnessed(note, self.log, [self.peer, self.standalone], quorum, origin=self.log.name)


def policy(here: Node, there: Node, standalone: WitnessProcess) -> Policy:
    """`here`'s policy, the peer witness key read from `there`'s GetLogInfo and checked against its dev PKI."""
    own_witness_vkey = there.admin.get_log_info().own_witness_vkey
    assert own_witness_vkey == (there.pki / "witness.vkey").read_text().strip()
    assert parse_vkey(own_witness_vkey).name == dev_witness_name(there.province)
    assert standalone.vkey == (standalone.config.parent / "witness.vkey").read_text().strip()
    log_vkey = (here.pki / "log.vkey").read_text().strip()
    assert here.admin.get_log_info().log_vkey == log_vkey
    return Policy(parse_vkey(log_vkey), cosignature_verifier(own_witness_vkey), cosignature_verifier(standalone.vkey))


def checkpoint_where(
    client: TransferClient, pol: Policy, size: int, ready: Callable[[Witnessed], bool], what: str
) -> tuple[str, Witnessed]:
    """The node's latest checkpoint once it is of `size` entries and `ready` holds for it (polled, bounded)."""

    def found() -> tuple[str, Witnessed] | None:
        cp = client.get_checkpoint()
        if cp.tree_size != size:
            assert cp.tree_size < size, f"checkpoint of {cp.tree_size} entries, expected {size}"
            return None
        result = pol.check(cp.checkpoint)
        return (cp.checkpoint, result) if ready(result) else None

    return wait_for(what, found, timeout=60)


def log_size(node: Node) -> int:
    return len(list(node.admin.iter_entries()))


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_each_node_is_witnessed_by_its_peer_and_a_standalone_witness(
    start_federation: StartFederation, engine: str
) -> None:
    """After an inter-province transfer each node serves a checkpoint cosigned by the other node's witness and
    the standalone witness, both verifying with the keys pinned from the peer's GetLogInfo and the standalone
    witness (witnessed at quorum 2); with the standalone witness down, mutations go on and the next checkpoint
    carries only the peer's cosignature (1 of 2: not witnessed) until the standalone witness is back."""
    fed = start_federation(engine)
    a, b = fed.a, fed.b
    s1, d1 = a.client("school-S1"), b.client("school-D1")
    code = new_lookup_code()
    s1.register_record(code, new_national_id(), common_pb2.RECORD_LEVEL_PRIMARY)
    sent = s1.initiate_transfer(code, "D1", "79").transfer
    wait_for("the offer to arrive at 79", lambda: any(t.id == sent.id for t in d1.iter_transfers(INCOMING)))
    d1.accept_transfer(sent.id)
    wait_for("the decision to reach 01", lambda: s1.get_transfer(sent.id).state == ACCEPTED)
    for admin in (a.admin, b.admin):
        wait_for("the outbox to drain", lambda c=admin: all(d.pending == 0 for d in c.list_deliveries()))

    policies = {"01": policy(a, b, fed.standalone), "79": policy(b, a, fed.standalone)}
    names = {p: (pol.peer.name, STANDALONE) for p, pol in policies.items()}
    assert names == {"01": (dev_witness_name("79"), STANDALONE), "79": (dev_witness_name("01"), STANDALONE)}
    auditors = {node.province: node.client("auditor") for node in (a, b)}
    for node in (a, b):
        pol, size = policies[node.province], log_size(node)
        note, result = checkpoint_where(
            auditors[node.province], pol, size, lambda r: r.witnessed, f"{node.province}'s checkpoint witnessed"
        )
        assert result.cosigned == names[node.province] and result.missing == () and result.invalid == ()
        assert result.checkpoint.size == size and result.checkpoint.origin == pol.log.name

    fed.standalone.stop()
    for node, client, local in ((a, s1, "S2"), (b, d1, "D2")):
        # A mutation never waits for a witness: it succeeds with the standalone witness down.
        node.admin.register_school(local, "Trường Tiểu học Số 2")
        code = new_lookup_code()
        client.register_record(code, new_national_id(), common_pb2.RECORD_LEVEL_PRIMARY)
        before = log_size(node)
        client.initiate_transfer(code, local)
        pol, size = policies[node.province], log_size(node)
        assert size > before
        note, result = checkpoint_where(
            auditors[node.province], pol, size, lambda r: r.cosigned != (), f"{node.province}'s peer cosignature"
        )
        assert result.cosigned == (pol.peer.name,) and result.missing == (STANDALONE,) and result.invalid == ()
        assert not result.witnessed and pol.check(note, quorum=1).witnessed

    fed.standalone.start()
    for node in (a, b):
        pol, size = policies[node.province], log_size(node)
        # The same checkpoint, no new entry: the node submits it again once the witness answers.
        note, result = checkpoint_where(
            auditors[node.province], pol, size, lambda r: r.witnessed, f"{node.province} witnessed again"
        )
        assert result.cosigned == names[node.province] and result.checkpoint.size == size
