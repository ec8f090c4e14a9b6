"""Witnessing in a federation, out of the box: two real node processes (01 and 79), each a witness of the
other's log ([witness] with its dev PKI's witness.key), each submitting its checkpoints to the other's
witness and to a standalone `transfer-witness` process (log.witnesses, quorum 2), as `make demo` runs them
and docs/operations.md ("Witnessing in a federation") configures them."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest

from tests.federation import Node, NodeDatabases, free_port, make_node, wait_for
from tests.support import new_lookup_code, new_national_id
from tests.test_witness import WitnessProcess
from transfer.client import TransferClient
from transfer.devpki import dev_witness_name, make_dev_witness
from transfer.ledger.note import Verifier, open_checkpoint, parse_vkey
from transfer.ledger.receipt import parse_bundle
from transfer.ledger.witnessed import Witnessed, check_witnessed, cosignature_verifier
from transfer.server.peers import peer_bundle
from transfer.v1 import common_pb2, peers_pb2, transfers_pb2

pytestmark = pytest.mark.slow

STANDALONE = "hocba.invalid/witness"
INCOMING = transfers_pb2.TRANSFER_DIRECTION_INCOMING
ACCEPTED = transfers_pb2.TRANSFER_STATE_ACCEPTED


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
    metrics: dict[str, int]  # province -> its metrics port (with `metrics=True`)


class StartFederation(Protocol):
    def __call__(
        self, engine: str, *, peer_policy: bool = False, env_b: dict[str, str] | None = None, metrics: bool = False
    ) -> Federation: ...


@pytest.fixture
def start_federation(
    request: pytest.FixtureRequest, tmp_path: Path, pki: Path, pki79: Path, signing_bundle: Path
) -> Iterator[StartFederation]:
    """A standalone witness of both logs, then nodes 01 and 79, each the other's peer and witness."""
    nodes: list[Node] = []
    witnesses: list[WitnessProcess] = []
    databases = NodeDatabases(request, tmp_path)

    def start(
        engine: str, *, peer_policy: bool = False, env_b: dict[str, str] | None = None, metrics: bool = False
    ) -> Federation:
        """`peer_policy`: each node pins its peer's witnesses (its own witness and the standalone one,
        quorum 2) in its [[peers]] table; `env_b`: 79's environment (injected faults); `metrics`: each node
        serves /metrics on a port of its own."""
        metrics_ports: dict[str, int] = {}
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
            url = databases.url(name, engine)
            state = tmp_path / name / "node.witness.sqlite" if engine != "sqlite" else None
            section = witnessing_config(own, witness_port, state, peer_witness, standalone_dir, standalone_url)
            if metrics:
                metrics_ports[province] = free_port()
                section += f'\n[metrics]\nlisten = "127.0.0.1:{metrics_ports[province]}"\n'
            env = env_b if name == "b" else None
            node = make_node(
                tmp_path / name, own, province, url, port, peer, signing_bundle, env=env, more_config=section
            )
            if peer_policy:  # the peer's [[peers]] table is the last one in the file
                files = f'["{own / "witness.vkey"}", "{standalone_dir / "witness.vkey"}"]'
                with node.config.open("a", encoding="utf-8") as f:
                    f.write(f"witness_vkey_files = {files}\nwitness_quorum = 2\n")
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
        return Federation(a, b, standalone, metrics_ports)

    try:
        yield start
    finally:
        for n in nodes:
            n.close()
        for w in witnesses:
            w.stop()
        databases.drop()


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


def _transfer(fed: Federation) -> str:
    """An inter-province transfer 01 -> 79, accepted, both outboxes drained: its id. The standalone witness is
    down from the offer until 01 holds 79's receipt, not witnessed, so that 79's log has grown (the decision)
    before its witnesses can cosign: the witnessed checkpoint is then a later one than the receipt's, and 01
    checks the consistency between the two."""
    a, b = fed.a, fed.b
    fed.standalone.stop()
    s1, d1 = a.client("school-S1"), b.client("school-D1")
    code = new_lookup_code()
    s1.register_record(code, new_national_id(), common_pb2.RECORD_LEVEL_PRIMARY)
    sent = s1.initiate_transfer(code, "D1", "79").transfer
    wait_for("the offer to arrive at 79", lambda: any(t.id == sent.id for t in d1.iter_transfers(INCOMING)))
    held_receipt(a, sent.id, peers_pb2.PEER_BUNDLE_STATE_WAITING)
    d1.accept_transfer(sent.id)
    wait_for("the decision to reach 01", lambda: s1.get_transfer(sent.id).state == ACCEPTED)
    for admin in (a.admin, b.admin):
        wait_for("the outbox to drain", lambda c=admin: all(d.pending == 0 for d in c.list_deliveries()))
    fed.standalone.start()
    return str(sent.id)


def verify_receipt(bundle: Path, log_key: Path, *witnesses: Path, quorum: int) -> subprocess.CompletedProcess[str]:
    """`transfer-verify-receipt BUNDLE --log-key … --witness … --quorum K` as a process."""
    args = [sys.executable, "-m", "transfer.client.verifyreceipt", str(bundle), "--log-key", str(log_key)]
    for w in witnesses:
        args += ["--witness", str(w)]
    return subprocess.run(
        [*args, "--quorum", str(quorum)], capture_output=True, text=True, timeout=60, check=False
    )  # fmt: skip


def held_receipt(node: Node, transfer_id: str, state: int) -> peers_pb2.DeliveredReceipt:
    """The node's one kept peer receipt for the transfer, once its witnessed bundle is in `state` (polled)."""

    def found() -> peers_pb2.DeliveredReceipt | None:
        kept = node.admin.list_peer_receipts(transfer_id)  # none until the delivery is recorded
        assert len(kept) <= 1
        return kept[0] if kept and kept[0].bundle_state == state else None

    return wait_for(f"{node.province}'s peer bundle {peers_pb2.PeerBundleState.Name(state)}", found, timeout=90)


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_the_sender_keeps_a_witnessed_bundle_of_each_peer_receipt(
    start_federation: StartFederation, engine: str, tmp_path: Path
) -> None:
    """With the peer's witnesses pinned ([[peers]] witness_vkey_files, quorum 2), the sending node replaces the
    bundle its peer's sealed receipt makes (uncosigned: `transfer-verify-receipt --quorum 2` says NOT witnessed,
    exit 3) by one of the same entry in a checkpoint both of the peer's witnesses cosigned, which ListPeerReceipts
    and `transfer-cli peer-receipts` serve and `transfer-verify-receipt --quorum 2` passes; the sealed receipt
    is unchanged. Both directions: 01's offer to 79 and 79's decision to 01."""
    fed = start_federation(engine, peer_policy=True)
    transfer_id = _transfer(fed)
    standalone_vkey = fed.standalone.config.parent / "witness.vkey"
    for sender, receiver in ((fed.a, fed.b), (fed.a, fed.b)[::-1]):
        held = held_receipt(sender, transfer_id, peers_pb2.PEER_BUNDLE_STATE_WITNESSED)
        body = peers_pb2.PeerReceiptBody.FromString(held.receipt.body)
        kept, sealed = parse_bundle(held.bundle), peer_bundle(held.receipt.SerializeToString())
        assert (kept.index, kept.leaf, kept.origin) == (
            body.log_index,
            body.leaf,
            f"hocba.invalid/province/{receiver.province}/log",
        )
        assert kept.tree_size() >= parse_bundle(sealed).tree_size() and held.bundle_error == ""
        if sender is fed.a:  # 79 logged its decision after the receipt, before its checkpoints were witnessed
            assert kept.tree_size() > parse_bundle(sealed).tree_size()
        witnesses = (
            sender.pki / "witness.vkey",
            standalone_vkey,
        )  # the receiver's: the sender's own and the standalone
        (tmp_path / "sealed.bundle").write_text(sealed, encoding="utf-8")
        done = verify_receipt(tmp_path / "sealed.bundle", receiver.pki / "log.vkey", *witnesses, quorum=2)
        assert done.returncode == 3 and "NOT witnessed" in done.stdout, done.stdout + done.stderr

    out_dir = tmp_path / "receipts"
    out_dir.mkdir()
    cli = [sys.executable, "-m", "transfer.client.cli", "--address", fed.a.proc.address, "--pki", str(fed.a.pki)]
    done = subprocess.run(
        [*cli, "--as", "province-admin", "peer-receipts", transfer_id, "--out-dir", str(out_dir)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    saved = out_dir / f"{transfer_id}-offer-79.bundle"
    assert f"offer to 79: witnessed proof bundle written to {saved}" in done.stdout, done.stdout
    done = verify_receipt(saved, fed.b.pki / "log.vkey", fed.a.pki / "witness.vkey", standalone_vkey, quorum=2)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "VERIFIED inclusion" in done.stdout and STANDALONE in done.stdout, done.stdout


@pytest.mark.parametrize(
    ("fault", "state", "why"),
    [
        ("other_bundle_leaf", peers_pb2.PEER_BUNDLE_STATE_WAITING, "bundle refused: entry: "),
        ("bad_consistency", peers_pb2.PEER_BUNDLE_STATE_SPLIT_VIEW, "no consistency between the peer's checkpoints"),
    ],
)
def test_a_peer_bundle_of_another_leaf_or_an_inconsistent_checkpoint_is_refused(
    start_federation: StartFederation, fault: str, state: int, why: str
) -> None:
    """A peer (79, with an injected fault) serving a bundle whose entry is not its receipt's, or a consistency proof
    that does not lead from its receipt's checkpoint to the one served, gets no bundle stored: 01 keeps serving the
    sealed receipt's bundle and says why; the inconsistent checkpoint is a split view, logged at ERROR with both
    sizes and roots, its note kept beside the receipt, and no longer asked for."""
    fed = start_federation("sqlite", peer_policy=True, env_b={"TRANSFER_FAULTS": fault})
    transfer_id = _transfer(fed)

    def refused() -> peers_pb2.DeliveredReceipt | None:
        (held,) = fed.a.admin.list_peer_receipts(transfer_id)  # delivered: _transfer drained the outboxes
        return held if held.bundle_state == state and why in held.bundle_error else None

    held = wait_for("01 to refuse 79's bundle", refused, timeout=90)
    assert held.bundle == peer_bundle(held.receipt.SerializeToString())  # the sealed receipt's, not the peer's
    if state == peers_pb2.PEER_BUNDLE_STATE_SPLIT_VIEW:
        body = peers_pb2.PeerReceiptBody.FromString(held.receipt.body)
        key = parse_vkey((fed.b.pki / "log.vkey").read_text().strip())
        old, new = open_checkpoint(body.checkpoint, key), open_checkpoint(held.conflicting_checkpoint, key)
        assert new.size > old.size
        assert f"size {old.size} root {old.root.hex()}" in held.bundle_error
        line = next(
            entry
            for entry in (
                json.loads(text)
                for text in fed.a.proc.log_path.read_text(encoding="utf-8").splitlines()
                if text.startswith("{")
            )
            if entry["msg"].startswith("split view")
        )
        assert line["level"] == "ERROR" and (line["receipt_size"], line["served_size"]) == (old.size, new.size)
        assert (line["receipt_root"], line["served_root"]) == (old.root.hex(), new.root.hex())
    else:
        assert held.conflicting_checkpoint == ""


def audit_cli(fed: Federation) -> subprocess.CompletedProcess[str]:
    """`transfer-audit` over both nodes as a process, each with its witness policy pinned: the other node's
    witness and the standalone one, quorum 2."""
    standalone = fed.standalone.config.parent / "witness.vkey"
    args = [sys.executable, "-m", "transfer.auditor", "--quiet"]
    for node, other in ((fed.a, fed.b), (fed.b, fed.a)):
        args += [
            "--node",
            f"province={node.province},address={node.proc.address},server_name=localhost,pki={node.pki},"
            f"vkey_file={node.pki / 'log.vkey'},origin=hocba.invalid/province/{node.province}/log,"
            f"witness_vkey_file={other.pki / 'witness.vkey'},witness_vkey_file={standalone},witness_quorum=2",
        ]
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)


def test_transfer_audit_checks_each_nodes_witness_policy(start_federation: StartFederation) -> None:
    """transfer-audit with a witness policy per node (--node witness_vkey_file=…, witness_quorum=2) passes when
    both nodes' checkpoints are cosigned by both of their witnesses, and names each; with the standalone witness
    down and 01's log grown, 01's checkpoint has 1 of 2: a break (exit 1) naming the missing witness, 79 still
    witnessed."""
    fed = start_federation("sqlite", peer_policy=True)
    _transfer(fed)
    policies = {"01": policy(fed.a, fed.b, fed.standalone), "79": policy(fed.b, fed.a, fed.standalone)}
    for node in (fed.a, fed.b):
        checkpoint_where(node.admin, policies[node.province], log_size(node), lambda r: r.witnessed, "witnessed")
    done = audit_cli(fed)
    assert done.returncode == 0, done.stdout + done.stderr
    for node, other in ((fed.a, fed.b), (fed.b, fed.a)):
        line = next(x for x in done.stdout.splitlines() if x.startswith(f"node {node.province} "))
        assert f"witnessed by {dev_witness_name(other.province)}, {STANDALONE} (2 of quorum 2)" in line, line
    assert "RESULT: PASSED" in done.stdout

    fed.standalone.stop()
    fed.a.admin.register_school("S2", "Trường Tiểu học Số 2")
    before = log_size(fed.a)
    code = new_lookup_code()
    s1 = fed.a.client("school-S1")
    s1.register_record(code, new_national_id(), common_pb2.RECORD_LEVEL_PRIMARY)
    s1.initiate_transfer(code, "S2")
    size = log_size(fed.a)
    assert size > before
    checkpoint_where(fed.a.admin, policies["01"], size, lambda r: r.cosigned != (), "01's peer cosignature")
    done = audit_cli(fed)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"BROKEN [witnessed] node 01 checkpoint {size}: missing the cosignatures of {STANDALONE}" in done.stdout
    assert f"NOT WITNESSED: cosigned by 1 of 2 needed, missing: {STANDALONE}" in done.stdout
    line = next(x for x in done.stdout.splitlines() if x.startswith("node 79 "))
    assert "(2 of quorum 2)" in line and "RESULT: BROKEN" in done.stdout


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_witnessing_and_split_views_are_in_the_metrics_and_survive_a_restart(
    start_federation: StartFederation, tmp_path: Path, pki: Path, signing_bundle: Path, engine: str
) -> None:
    """79's witness cosigning 01's checkpoints moves 79's cosigned-entries gauge (01's log size) and cosigned
    answers; a split view seen by 01 in 79's witnessed bundle (injected fault) and one seen by 79's witness (a
    forked 01's checkpoint whose proof does not join the cosigned one, logged at ERROR) are each 1 in a scrape, by
    source, and still 1 after both nodes restart (read from the stored evidence; the answers count from 0 again)."""
    import tomllib

    from tests.test_metrics import scrape, value
    from tests.test_peer_witness import body, grow

    fed = start_federation(engine, peer_policy=True, env_b={"TRANSFER_FAULTS": "bad_consistency"}, metrics=True)
    m01, m79 = fed.metrics["01"], fed.metrics["79"]
    before = scrape(m79)
    assert value(before, "hocba_peer_split_view_evidence", peer="01", source="witness") == 0
    assert value(before, "hocba_peer_split_view_evidence", peer="01", source="bundle") == 0
    transfer_id = _transfer(fed)
    size = log_size(fed.a)

    def cosigned() -> bool:
        m = scrape(m79)
        return value(m, "hocba_peer_witness_cosigned_entries", peer="01") == size

    wait_for(f"79's witness to cosign 01's checkpoint of {size}", cosigned, timeout=60)
    m = scrape(m79)
    assert (value(m, "hocba_peer_witness_requests_total", peer="01", outcome="cosigned") or 0) >= 1
    assert value(m, "hocba_peer_witness_cosigned_timestamp_seconds", peer="01") is not None
    assert value(m, "hocba_peer_witness_requests_total", peer="01", outcome="split_view") == 0

    def held_split_view() -> bool:
        (held,) = fed.a.admin.list_peer_receipts(transfer_id)
        return held.bundle_state == peers_pb2.PEER_BUNDLE_STATE_SPLIT_VIEW

    wait_for("01 to find a split view in 79's bundle", held_split_view, timeout=90)
    wait_for(
        "01's scrape to count it",
        lambda: value(scrape(m01), "hocba_peer_split_view_evidence", peer="79", source="bundle") == 1,
    )
    assert value(scrape(m01), "hocba_peer_split_view_evidence", peer="79", source="witness") == 0

    # A forked 01 (another database under 01's log key) shows 79's witness a tree that does not extend the one
    # it cosigned. 01 is stopped first: nothing else submits to 79's witness meanwhile.
    assert fed.a.proc.terminate() == 0
    witness_port = int(tomllib.loads(fed.b.config.read_text())["witness"]["listen"].rsplit(":", 1)[1])

    def post(data: bytes) -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", witness_port, timeout=30)
        try:
            conn.request("POST", "/add-checkpoint", body=data)
            resp = conn.getresponse()
            return resp.status, resp.read().decode()
        finally:
            conn.close()

    fork = make_node(tmp_path / "fork", pki, "01", f"sqlite:///{tmp_path / 'fork' / 'node.db'}", free_port(), None,
                     signing_bundle)  # fmt: skip
    try:
        fork.proc.start()
        fork.admin.register_school("S1", "Trường Tiểu học Số 1 (Hà Nội)")
        larger = grow(fork, size + 1)
        status, stored = post(body(0, [], larger))
        assert (status, stored) == (409, f"{size}\n")
        fork_size = fork.admin.get_checkpoint().tree_size
        status, reason = post(body(size, fork.admin.consistency_proof(size, fork_size), larger))
        assert status == 422 and "does not verify" in reason, reason
    finally:
        fork.close()
    logged = [
        json.loads(text)
        for text in fed.b.proc.log_path.read_text(encoding="utf-8").splitlines()
        if text.startswith("{")
    ]
    (line,) = [entry for entry in logged if entry["msg"].startswith("split view kept as evidence for")]
    assert line["level"] == "ERROR" and "does not verify" in line["msg"], line
    m = scrape(m79)
    # A fork at a larger size: the witness sees a proof that fails, which it cannot tell from a garbled one.
    assert value(m, "hocba_peer_split_view_evidence", peer="01", source="witness", kind="proof_fails") == 1
    assert value(m, "hocba_peer_split_view_evidence", peer="01", source="witness", kind="same_size_different_root") == 0
    assert value(m, "hocba_peer_witness_requests_total", peer="01", outcome="proof_fails") == 1
    assert (value(m, "hocba_peer_witness_requests_total", peer="01", outcome="conflict") or 0) >= 1

    assert fed.b.proc.terminate() == 0
    fed.b.proc.start()
    fed.a.proc.start()
    m = scrape(m79)
    assert value(m, "hocba_peer_split_view_evidence", peer="01", source="witness", kind="proof_fails") == 1
    assert value(m, "hocba_peer_witness_requests_total", peer="01", outcome="proof_fails") == 0
    assert value(m, "hocba_peer_witness_cosigned_entries", peer="01") == size
    assert value(scrape(m01), "hocba_peer_split_view_evidence", peer="79", source="bundle") == 1
