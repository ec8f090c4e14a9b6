"""Every node a witness for its peers: two real node processes, 01 and 79, each with a [witness] section;
node 01's real checkpoints (and a forked 01's) submitted over HTTP to 79's embedded C2SP witness."""

from __future__ import annotations

import base64
import hashlib
import http.client
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.federation import Node, NodeDatabases, free_port, make_node, peer_block, wait_for
from tests.support import (
    ROOT,
    new_lookup_code,
    new_national_id,
    run_module,
    write_config,
)
from transfer.ledger.merkle import EMPTY_ROOT
from transfer.ledger.note import (
    Checkpoint,
    generate_key,
    open_note,
    parse_checkpoint,
    parse_skey,
    parse_vkey,
    sign_note,
)
from transfer.server.config import ConfigError, load
from transfer.server.peer_witness import WitnessStartRefused, peer_logs
from transfer.server.peers import load_peers
from transfer.v1 import common_pb2

pytestmark = pytest.mark.slow

SIZE = "text/x.tlog.size"


def witness_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """`transfer-witness ARGS` as a process."""
    return run_module("transfer.witness", *args, timeout=60)


def generate_witness_key(name: str, path: Path, *, keygen: bool = False) -> str:
    """A witness key made with `transfer-witness generate-key` (or `python -m transfer.keygen --stem witness`,
    which writes it as <dir>/witness.key); returns the vkey it printed."""
    if keygen:
        assert path.name == "witness.key"
        command = ["-m", "transfer.keygen", "--name", name, "--out", str(path.parent), "--stem", "witness"]
        done = subprocess.run([sys.executable, *command], cwd=ROOT, capture_output=True, text=True, check=False)
        assert (path.parent / "witness.vkey").read_text().strip() == done.stdout.strip()
    else:
        done = witness_cli("generate-key", name, str(path))
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def witness_section(port: int, key_file: Path, state_file: Path | None = None, name: str = "") -> str:
    lines = ["[witness]", f'listen = "127.0.0.1:{port}"', f'key_file = "{key_file}"']
    lines += [f'state_file = "{state_file}"'] * (state_file is not None)
    lines += [f'name = "{name}"'] * bool(name)
    return "\n".join(lines) + "\n"


@dataclass
class WitnessingNode:
    """A node process and its embedded witness's endpoint and verifier key."""

    node: Node
    witness_port: int
    witness_vkey: str
    state_file: Path
    metrics_port: int = 0  # its /metrics (0: none)

    def post(self, data: bytes, path: str = "/add-checkpoint") -> tuple[int, str, str]:
        """(status, content type, body) of one request to the node's witness."""
        conn = http.client.HTTPConnection("127.0.0.1", self.witness_port, timeout=30)
        try:
            conn.request("POST" if data else "GET", path, body=data or None)
            resp = conn.getresponse()
            return resp.status, resp.getheader("Content-Type", ""), resp.read().decode()
        finally:
            conn.close()


def body(old: int, proof: list[bytes], note: str) -> bytes:
    """A C2SP add-checkpoint body: `old`, the consistency proof, a blank line, the signed checkpoint."""
    lines = [f"old {old}"] + [base64.b64encode(h).decode() for h in proof]
    return ("\n".join(lines) + "\n\n" + note).encode()


def grow(node: Node, entries: int) -> str:
    """Add `entries` log entries (a local transfer each) and return the signed checkpoint that covers them."""
    admin = node.admin
    if not node.teachers.get("S2"):
        admin.register_school("S2", "Trường Tiểu học Số 2")
        node.teachers["S2"] = True
    s1 = node.client("school-S1")
    before = admin.get_checkpoint().tree_size
    for _ in range(entries):
        code = new_lookup_code()
        s1.register_record(code, new_national_id(), common_pb2.RECORD_LEVEL_PRIMARY)
        s1.initiate_transfer(code, "S2")
    wanted = before + entries
    got = wait_for(f"a checkpoint of size {wanted}", lambda: admin.get_checkpoint().tree_size >= wanted)
    assert got
    checkpoint = admin.get_checkpoint()
    assert checkpoint.tree_size == wanted
    return str(checkpoint.checkpoint)


def cosignature_verifies(note: str, line: str, vkey: str) -> None:
    """The witness's answer is a cosignature of `note`'s checkpoint by the key `vkey` (C2SP: append the line to
    the note and open it with the witness's key)."""
    _, sigs = open_note(note + line, [parse_vkey(vkey)])
    assert [s.name for s in sigs] == [parse_vkey(vkey).name]


StartNodes = Callable[..., tuple[WitnessingNode, WitnessingNode]]


@pytest.fixture
def start_nodes(
    request: pytest.FixtureRequest, tmp_path: Path, pki: Path, pki79: Path, signing_bundle: Path
) -> Iterator[StartNodes]:
    """Nodes 01 (A) and 79 (B), each the other's peer and each with a [witness] with a key of its own."""
    nodes: list[Node] = []
    databases = NodeDatabases(request, tmp_path)

    def start(engine: str = "sqlite", metrics: bool = False) -> tuple[WitnessingNode, WitnessingNode]:
        started = []
        port_a, port_b = free_port(), free_port()
        for name, own, province, port, peer in (
            ("a", pki, "01", port_a, (pki79, "79", port_b)),
            ("b", pki79, "79", port_b, (pki, "01", port_a)),
        ):
            (tmp_path / name).mkdir(parents=True, exist_ok=True)
            key = tmp_path / name / "witness.key"
            vkey = generate_witness_key(f"hocba.invalid/province/{province}/witness", key, keygen=name == "a")
            url = databases.url(name, engine)
            # Beside the SQLite database by default; PostgreSQL needs it named.
            state = tmp_path / name / "node.witness.sqlite"
            witness_port = free_port()
            section = witness_section(witness_port, key, state if engine != "sqlite" else None)
            metrics_port = free_port() if metrics else 0
            if metrics:
                section += f'\n[metrics]\nlisten = "127.0.0.1:{metrics_port}"\n'
            node = make_node(tmp_path / name, own, province, url, port, peer, signing_bundle, more_config=section)
            nodes.append(node)
            node.proc.start()
            started.append(WitnessingNode(node, witness_port, vkey, state, metrics_port))
        a, b = started
        a.node.admin.register_school("S1", "Trường Tiểu học Số 1 (Hà Nội)")
        return a, b

    try:
        yield start
    finally:
        for n in nodes:
            n.close()
        databases.drop()


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_a_peer_cosigns_the_nodes_real_checkpoints(start_nodes: StartNodes, engine: str) -> None:
    """B's embedded witness cosigns A's real checkpoints (old 0, then old n with A's consistency proof), each
    cosignature verifies with B's witness vkey (also served by B's GetLogInfo), and B serves the last one."""
    a, b = start_nodes(engine)
    info = b.node.admin.get_log_info()
    assert info.own_witness_vkey == b.witness_vkey
    assert a.node.admin.get_log_info().own_witness_vkey == a.witness_vkey != b.witness_vkey

    first = grow(a.node, 2)
    status, _, line = b.post(body(0, [], first))
    assert status == 200, line
    cosignature_verifies(first, line, b.witness_vkey)

    second = grow(a.node, 3)
    proof = a.node.admin.consistency_proof(2, 5)
    status, _, line = b.post(body(2, proof, second))
    assert status == 200, line
    cosignature_verifies(second, line, b.witness_vkey)

    origin = second.split("\n", 1)[0]
    status, _, latest = b.post(b"", f"/{hashlib.sha256(origin.encode()).hexdigest()}/checkpoint")
    assert status == 200 and latest == second + line
    # The witness keeps its own file, apart from the node's database.
    assert b.state_file.exists()
    if engine == "sqlite":
        assert b.state_file != Path(b.node.database_url.removeprefix("sqlite:///"))

    # It stops with the node (a clean exit, the port closed) and remembers what it cosigned when it comes back.
    assert b.node.proc.terminate() == 0
    with pytest.raises(ConnectionRefusedError):
        b.post(body(5, [], second))
    b.node.proc.start()
    status, content_type, stored = b.post(body(0, [], first))
    assert (status, content_type, stored) == (409, SIZE, "5\n")


def test_the_c2sp_answers_one_by_one(start_nodes: StartNodes) -> None:
    """B's witness answers as C2SP tlog-witness says: 400 malformed, 404 an origin it does not witness (B's own
    log), 403 A's checkpoint signed by another key, 200, 409 with the stored size, 422 a bad proof, 200, and
    503 when its state file cannot be used; B's scrape counts each answer by peer and outcome."""
    from tests.test_metrics import scrape, value

    a, b = start_nodes(metrics=True)
    first = grow(a.node, 2)

    status, _, reason = b.post(b"no blank line")
    assert status == 400, reason

    # B's own log: a node is not a witness of itself.
    own_key = parse_skey((b.node.pki / "log.key").read_text().strip())
    status, _, reason = b.post(body(0, [], sign_note(Checkpoint(own_key.name, 0, EMPTY_ROOT).text(), own_key)))
    assert (status, reason) == (404, "unknown origin\n")

    a_key = parse_skey((a.node.pki / "log.key").read_text().strip())
    impostor = parse_skey(generate_key(a_key.name)[0])  # A's key name, another key
    text = first[: first.index("\n\n") + 1]
    status, _, reason = b.post(body(0, [], sign_note(text, impostor)))
    assert status == 403, reason

    status, _, line = b.post(body(0, [], first))
    assert status == 200, line
    cosignature_verifies(first, line, b.witness_vkey)

    status, content_type, stored = b.post(body(0, [], first))
    assert (status, content_type, stored) == (409, SIZE, "2\n")

    second = grow(a.node, 2)
    proof = a.node.admin.consistency_proof(2, 4)
    bad = [proof[0][::-1], *proof[1:]]
    status, _, reason = b.post(body(2, bad, second))
    assert status == 422, reason

    status, _, reason = b.post(body(5, proof, second))
    assert status == 400 and "larger than the checkpoint's size" in reason, reason
    status, content_type, stored = b.post(body(3, proof, second))
    assert (status, content_type, stored) == (409, SIZE, "2\n")

    status, _, line = b.post(body(2, proof, second))
    assert status == 200, line
    cosignature_verifies(second, line, b.witness_vkey)

    # A state file that cannot be opened: nothing is cosigned, 503, the log may retry.
    for suffix in ("", "-wal", "-shm"):
        Path(f"{b.state_file}{suffix}").unlink(missing_ok=True)
    b.state_file.mkdir()
    status, _, reason = b.post(body(4, [], second))
    assert status == 503, reason

    m = scrape(b.metrics_port)
    answered = {
        (peer, outcome): value(m, "hocba_peer_witness_requests_total", peer=peer, outcome=outcome)
        for peer in ("01", "unknown")
        for outcome in ("cosigned", "malformed", "bad_signature", "unknown_origin", "conflict", "split_view",
                        "proof_fails", "inconsistent", "unavailable")
    }  # fmt: skip
    # The 422 was a bad proof: evidence kept, but counted apart from a split view (anyone can send one).
    assert {k: v for k, v in answered.items() if v} == {
        ("unknown", "malformed"): 1, ("unknown", "unknown_origin"): 1, ("01", "bad_signature"): 1,
        ("01", "cosigned"): 2, ("01", "conflict"): 2, ("01", "proof_fails"): 1, ("01", "malformed"): 1,
        ("01", "unavailable"): 1,
    }  # fmt: skip
    # The state file is a directory: what the witness cosigned and kept cannot be read, and is not exported.
    assert value(m, "hocba_peer_witness_cosigned_entries", peer="01") is None
    shutil.rmtree(b.state_file)


def test_a_forked_node_is_refused_with_evidence_that_verifies_offline(
    start_nodes: StartNodes, tmp_path: Path, pki: Path, pki79: Path, signing_bundle: Path
) -> None:
    """A second database under A's log key and origin (a forked A) is refused by B's witness with 422, for the
    same size with another root and for a larger tree whose proof does not join B's cosigned one; both are kept
    as evidence that `transfer-witness export-evidence` takes from B's state file and `verify-evidence` proves
    with A's log vkey alone (and not with another key)."""
    a, b = start_nodes()
    honest = grow(a.node, 3)
    status, _, line = b.post(body(0, [], honest))
    assert status == 200, line

    fork = make_node(
        tmp_path / "fork", pki, "01", f"sqlite:///{tmp_path / 'fork' / 'node.db'}", free_port(), None, signing_bundle
    )
    try:
        fork.proc.start()
        fork.admin.register_school("S1", "Trường Tiểu học Số 1 (Hà Nội)")
        same_size = grow(fork, 3)
        assert parse_checkpoint(same_size[: same_size.index("\n\n") + 1]).root != (
            parse_checkpoint(honest[: honest.index("\n\n") + 1]).root
        )
        status, _, reason = b.post(body(3, [], same_size))
        assert status == 422 and "another root" in reason, reason

        larger = grow(fork, 2)
        status, _, reason = b.post(body(3, fork.admin.consistency_proof(3, 5), larger))
        assert status == 422 and "does not verify" in reason, reason
    finally:
        fork.close()

    # A's honest next checkpoint is still cosigned: the fork changed nothing B stored.
    following = grow(a.node, 1)
    status, _, line = b.post(body(3, a.node.admin.consistency_proof(3, 4), following))
    assert status == 200, line

    out = tmp_path / "evidence"
    done = witness_cli("export-evidence", str(b.state_file), str(out))
    assert done.returncode == 0, done.stderr
    files = sorted(out.iterdir())
    assert len(files) == 2
    a_vkey = (a.node.pki / "log.vkey").read_text().strip()
    kinds = []
    for file in files:
        done = witness_cli("verify-evidence", str(file), "--vkey", a_vkey)
        assert done.returncode == 0, done.stderr
        kinds.append(done.stdout.split("(")[1].split(")")[0])
        other = witness_cli("verify-evidence", str(file), "--vkey", (pki79 / "log.vkey").read_text().strip())
        assert other.returncode == 1, other.stdout
    assert kinds == ["same-size-different-root", "consistency-proof-fails"]


def start_refusal(config: Path, *args: str) -> tuple[int, list[str]]:
    """Run `transfer-server --config CONFIG ARGS` until it exits; its exit status and output lines."""
    done = subprocess.run(
        [sys.executable, "-m", "transfer.server", "--config", str(config), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done.returncode, [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]


def test_a_bad_witness_configuration_is_refused_in_one_line(tmp_path: Path, pki: Path, pki79: Path) -> None:
    """A [witness] that cannot work stops the node before it serves, with one line naming the setting: an
    empty section, a bad listen, no peers, PostgreSQL without a state file, the node's log key as the witness
    key, a name that is not the key's, an unreadable key, a port already taken, the node's database as the state
    file, and a state file that cannot be opened."""
    key = tmp_path / "witness.key"
    generate_witness_key("hocba.invalid/province/01/witness", key)
    peers = f'\n[seal]\nkey_file = "{pki / "seal.key"}"\n' + peer_block(pki79, "79", 1)
    sqlite = f"sqlite:///{tmp_path / 'node.db'}"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        cases = [
            (sqlite, "[witness]\n" + peers, "--check-config", 2, "witness.listen is required"),
            (sqlite, witness_section(0, key).replace("127.0.0.1:0", "localhost") + peers, "--check-config", 2,
             "witness.listen: 'localhost' is not host:port"),
            (sqlite, witness_section(0, key), "--check-config", 2, "there are no [[peers]] to witness"),
            ("postgresql://u@127.0.0.1:1/db", witness_section(0, key) + peers, "--check-config", 2,
             "witness.state_file is required with a PostgreSQL database"),
            (sqlite, witness_section(0, pki / "log.key") + peers, "--check-config", 1,
             "holds the node's log or seal key"),
            (sqlite, witness_section(0, key, name="w1") + peers, "--check-config", 1,
             "witness.name: 'w1', but the key in"),
            (sqlite, witness_section(0, tmp_path / "none.key") + peers, "--check-config", 1,
             "witness.key_file:"),
            (sqlite, witness_section(busy, key) + peers, "", 1, f"cannot listen on 127.0.0.1:{busy} (witness.listen)"),
            (sqlite, witness_section(0, key, state_file=tmp_path / "node.db") + peers, "--check-config", 2,
             "is the node's database or its latest checkpoint file"),
            (sqlite, witness_section(0, key, state_file=tmp_path) + peers, "", 1, "witness.state_file: cannot open"),
        ]  # fmt: skip
        for i, (url, section, flag, status, message) in enumerate(cases):
            config = write_config(tmp_path / f"node{i}.toml", pki=pki, database_url=url, extra=section)
            code, lines = start_refusal(config, *([flag] if flag else []))
            assert code == status, (message, lines)
            # --check-config says only that; a start's JSON log has one "cannot start" line, which says it.
            said = lines if flag else [line for line in lines if "cannot start" in line]
            assert len(said) == 1 and message in said[0], (message, lines)
    # The refused start left the node's own port free and nothing running: a good config starts and stops.
    config = write_config(tmp_path / "good.toml", pki=pki, database_url=sqlite, extra=witness_section(0, key) + peers)
    code, lines = start_refusal(config, "--check-config")
    assert (code, lines) == (0, ["configuration is valid"])


def test_a_peers_origin_is_its_log_keys_name_unless_configured(tmp_path: Path, pki: Path, pki79: Path) -> None:
    """The node witnesses each peer's log under the name of the peer's log key (C2SP: a log key is named after
    its origin), or under peers[].log_origin when that is set; a log_origin that is no origin, or one origin for
    two peers, is refused."""
    key = tmp_path / "witness.key"
    generate_witness_key("hocba.invalid/province/01/witness", key)
    peer = f'\n[seal]\nkey_file = "{pki / "seal.key"}"\n' + peer_block(pki79, "79", 1)
    url = f"sqlite:///{tmp_path / 'node.db'}"
    config = load(write_config(tmp_path / "a.toml", pki=pki, database_url=url, extra=witness_section(0, key) + peer))
    assert config.witness is not None and config.witness.state_file == tmp_path / "node.witness.sqlite"
    assert list(peer_logs(load_peers(config))) == ["hocba.invalid/province/79/log"]
    named = peer + 'log_origin = "hcm.example.vn/hocba/log"\n'
    config = load(write_config(tmp_path / "b.toml", pki=pki, database_url=url, extra=witness_section(0, key) + named))
    assert list(peer_logs(load_peers(config))) == ["hcm.example.vn/hocba/log"]
    second = named[named.index("[[peers]]") :].replace('"79"', '"48"')
    twice = named + second  # two peers, one origin: which log would a checkpoint be?
    config = load(write_config(tmp_path / "d.toml", pki=pki, database_url=url, extra=witness_section(0, key) + twice))
    with pytest.raises(WitnessStartRefused, match=r"the same log origin 'hcm\.example\.vn/hocba/log'"):
        peer_logs(load_peers(config))
    with pytest.raises(ConfigError, match=r"peers\[0\]\.log_origin: 'a b'"):
        load(write_config(tmp_path / "c.toml", pki=pki, database_url=url, extra=peer + 'log_origin = "a b"\n'))
