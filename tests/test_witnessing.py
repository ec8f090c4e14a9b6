"""The node's side of witnessing (log.witnesses): checkpoints submitted to real `transfer-witness`
processes and cosigned, GetCheckpoint serving the cosigned note, the quorum rule, the 409 path,
the start-up check against a witness that holds more than the database, a forked node caught
with evidence, and witnesses that are down or silent costing mutations nothing."""

from __future__ import annotations

import logging
import os
import shutil
import socket
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from tests.federation import free_port, wait_for
from tests.support import (
    FakeClock,
    RunningNode,
    create_pg_database,
    drop_pg_database,
    load_config,
    new_lookup_code,
    new_national_id,
    running_node,
    write_config,
)
from tests.test_witness import WitnessProcess
from transfer.domain.model import StoredCheckpoint
from transfer.ledger.note import NoteError, generate_key, open_note, parse_note, parse_vkey, signature_line
from transfer.ledger.witnessed import check_witnessed
from transfer.server.app import StartRefused
from transfer.server.config import ConfigError
from transfer.server.witnessing import Witnessing
from transfer.v1 import common_pb2
from transfer.witness.__main__ import main as witness_main

pytestmark = pytest.mark.slow

ORIGIN = "hocba.invalid/province/01/log"


class Witnesses:
    """Standalone witness processes, each with its own key and state file, trusting the node's log key."""

    def __init__(self, root: Path, pki: Path) -> None:
        self.root = root
        self.log_vkey = (pki / "log.vkey").read_text().strip()
        self.running: dict[str, WitnessProcess] = {}

    def start(self, name: str) -> WitnessProcess:
        where = self.root / name.replace("/", "_")
        where.mkdir(parents=True)
        assert witness_main(["generate-key", name, str(where / "witness.key")]) == 0
        (where / "witness.toml").write_text(
            'listen = "127.0.0.1:0"\nkey_file = "witness.key"\nstate_file = "witness.sqlite"\n\n'
            f'[[log]]\norigin = "{ORIGIN}"\nvkeys = ["{self.log_vkey}"]\n',
            encoding="utf-8",
        )
        w = WitnessProcess(where / "witness.toml", where / "witness.log")
        w.start()
        self.running[name] = w
        return w

    def stop(self) -> None:
        for w in self.running.values():
            w.stop()


@pytest.fixture
def witnesses(tmp_path: Path, pki: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[Witnesses]:
    ws = Witnesses(tmp_path / "witnesses", pki)
    yield ws
    ws.stop()


def witness_block(entries: list[tuple[str, str, str]], quorum: int | None = None, startup: float = 5) -> str:
    """[log] keys and [[log.witnesses]] tables for (name, vkey, url) each."""
    head = f"witness_startup_seconds = {startup}\n"
    if quorum is not None:
        head += f"witness_quorum = {quorum}\n"
    tables = "".join(f'\n[[log.witnesses]]\nname = "{n}"\nvkey = "{v}"\nurl = "{u}"\n' for n, v, u in entries)
    return head + "\x00" + tables


def node_config(tmp_path: Path, pki: Path, database_url: str, block: str, name: str = "node") -> Path:
    """A node's configuration with `block` (from witness_block) in its [log] table."""
    head, _, tables = block.partition("\x00")
    path = write_config(tmp_path / f"{name}.toml", pki=pki, database_url=database_url, extra=tables)
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("checkpoint_interval_seconds = 0.2\n", f"checkpoint_interval_seconds = 0.2\n{head}"))
    return path


def entry(w: WitnessProcess) -> tuple[str, str, str]:
    return (parse_vkey(w.vkey).name, w.vkey, f"http://127.0.0.1:{w.port}")


def down_witness(name: str = "down.example/w9") -> tuple[str, str, str]:
    """A witness nobody runs: a configured key, and a port nothing listens on."""
    vkey = _cosigner_vkey(name)
    return (name, vkey, f"http://127.0.0.1:{free_port()}")


def _cosigner_vkey(name: str) -> str:
    from transfer.ledger.note import cosignature_signer

    return cosignature_signer(generate_key(name)[0]).vkey


def grow(node: RunningNode, n: int = 1) -> None:
    """`n` log entries: schools registered (once) and records offered from S1 to S2."""
    admin = node.client("province-admin")
    s1 = node.client("school-S1")
    try:
        admin.register_school("S1", "Trường S1")
        admin.register_school("S2", "Trường S2")
    except Exception:  # registered already
        pass
    for _ in range(n):
        code = new_lookup_code()
        s1.register_record(code, new_national_id(), common_pb2.RECORD_LEVEL_PRIMARY)
        s1.initiate_transfer(code, "S2")


def publish(node: RunningNode) -> int:
    assert node.node is not None
    node.run(node.node.publish_checkpoint)
    return int(node.client("auditor").get_checkpoint().tree_size)


def cosigned_note(node: RunningNode, names: list[str], size: int | None = None) -> str:
    """The latest checkpoint's note once it carries a cosignature of each of `names` (polled, bounded)."""
    auditor = node.client("auditor")

    def ready() -> str | None:
        cp = auditor.get_checkpoint()
        if size is not None and cp.tree_size < size:
            return None
        signers = {s.name for s in parse_note(cp.checkpoint).signatures}
        return cp.checkpoint if set(names) <= signers else None

    return wait_for(f"cosignatures by {names}", ready, timeout=60)


def test_checkpoints_are_cosigned_and_served_with_the_cosignatures(
    tmp_path: Path, pki: Path, database_url: str, witnesses: Witnesses
) -> None:
    """Two running witnesses and one down, quorum 2: each new checkpoint is cosigned by both running ones,
    GetCheckpoint serves the note with their lines appended, which opens with the log key and with each
    witness key and counts as witnessed (the down one missing); GetLogInfo serves the three and the quorum."""
    w1, w2 = witnesses.start("w1.example/w"), witnesses.start("w2.example/w")
    configured = [entry(w1), entry(w2), down_witness()]
    path = node_config(tmp_path, pki, database_url, witness_block(configured, quorum=2))
    with running_node(load_config(path), pki, FakeClock(), path) as node:
        info = node.client("school-S1").get_log_info()
        assert [(w.name, w.vkey, w.url) for w in info.witnesses] == configured and info.witness_quorum == 2
        log_vkey = parse_vkey(info.log_vkey)
        keys = [parse_vkey(w.vkey) for w in info.witnesses]
        for _ in range(2):
            grow(node, 2)
            size = publish(node)
            note = cosigned_note(node, ["w1.example/w", "w2.example/w"], size)
            _, verified = open_note(note, [log_vkey, *keys])
            assert sorted(s.name for s in verified) == sorted([ORIGIN, "w1.example/w", "w2.example/w"])
            result = check_witnessed(note, log_vkey, keys, 2, origin=ORIGIN)
            assert result.witnessed and result.checkpoint.size == size
            assert result.cosigned == ("w1.example/w", "w2.example/w") and result.missing == ("down.example/w9",)
            assert not check_witnessed(note, log_vkey, keys, 3).witnessed
            # The same checkpoint asked for by size carries them too.
            assert node.client("auditor").get_checkpoint(size).checkpoint == note
        # A tampered cosignature line makes that witness invalid (and missing), not cosigned.
        lines = note.split("\n")
        bad = next(i for i, line in enumerate(lines) if line.startswith("\u2014 w1.example/w "))
        sig = next(s for s in parse_note(note).signatures if s.name == "w1.example/w")
        flipped = bytes([sig.data[-1] ^ 1])
        tampered = type(sig)(sig.name, sig.key_id, sig.data[:-1] + flipped)
        lines[bad] = signature_line(tampered).rstrip("\n")
        result = check_witnessed("\n".join(lines), log_vkey, keys, 2)
        assert result.invalid == ("w1.example/w",) and not result.witnessed
        with pytest.raises(NoteError):  # a note the log did not sign is no checkpoint at all
            check_witnessed(note, parse_vkey(generate_key(ORIGIN)[1]), keys, 1)


def test_the_node_learns_the_witness_size_from_a_409(
    tmp_path: Path, pki: Path, database_url: str, witnesses: Witnesses
) -> None:
    """A restarted node knows nothing of its witness: it sends old 0, learns the witness's size from the 409
    (text/x.tlog.size) and goes on from it with a consistency proof; a stale `old` (another submission moved
    the witness on meanwhile) is the same 409, then a cosignature."""
    w = witnesses.start("w1.example/w")
    path = node_config(tmp_path, pki, database_url, witness_block([entry(w)]))
    clock = FakeClock()
    with running_node(load_config(path), pki, clock, path) as node:
        grow(node, 2)
        first = publish(node)
        cosigned_note(node, ["w1.example/w"], first)
    with running_node(load_config(path), pki, clock, path) as node:
        assert node.node is not None and node.node.witnessing is not None
        link = node.node.witnessing.links[0]
        assert link.old >= first  # learnt at start, from the 409 to "old 0"
        grow(node, 3)
        second = publish(node)
        cosigned_note(node, ["w1.example/w"], second)
        assert link.old == second

        async def make_stale() -> None:
            link.old = 1  # as if the node had missed the witness's moves since

        node.run(make_stale)
        grow(node, 1)
        third = publish(node)
        cosigned_note(node, ["w1.example/w"], third)
        assert link.old == third
    log = (w.log_path).read_text()
    assert log.count("refused: 409") >= 2  # the start-up probe and the stale old


def test_two_submitters_of_one_log_meet_409s_and_both_go_on(tmp_path: Path, pki: Path, witnesses: Witnesses) -> None:
    """Two node processes on one database submit the same log to one witness: each time one has moved the
    witness on, the other's `old` is stale, its submission gets a 409 with the new size and its next one is
    cosigned; the witness only ever goes forward and both serve the cosigned checkpoint."""
    w = witnesses.start("w1.example/w")
    url = f"sqlite:///{tmp_path / 'node.db'}"
    a = node_config(tmp_path, pki, url, witness_block([entry(w)]), name="a")
    b = node_config(tmp_path, pki, url, witness_block([entry(w)]), name="b")
    clock = FakeClock()
    with running_node(load_config(a), pki, clock, a) as na:
        grow(na, 1)
        cosigned_note(na, ["w1.example/w"], publish(na))
        with running_node(load_config(b), pki, clock, b) as nb:
            assert nb.node is not None and nb.node.witnessing is not None
            b_link = nb.node.witnessing.links[0]
            for _ in range(3):
                grow(na, 1)
                size = publish(na)
                cosigned_note(na, ["w1.example/w"], size)  # a moved the witness on
                before = b_link.attempts
                nb.node.witnessing.published(nb.run(_latest(nb)))  # b submits what a stored, from its old size
                wait_for("b's cosignature", lambda: b_link.cosigned >= size or None, timeout=60)  # noqa: B023
                assert b_link.attempts == before + 2  # a 409, then the cosignature
                assert (
                    nb.client("auditor").get_checkpoint().checkpoint == na.client("auditor").get_checkpoint().checkpoint
                )
    assert w.log_path.read_text().count("refused: 409") >= 4  # b's start-up probe, then one per round


def _latest(node: RunningNode) -> Callable[[], Awaitable[StoredCheckpoint]]:
    async def latest() -> StoredCheckpoint:
        assert node.node is not None and node.node.store is not None
        found = await node.node.store.read(lambda uow: uow.log.latest_checkpoint())
        assert found is not None
        return found

    return latest


def _other_database(database_url: str, tmp_path: Path, name: str) -> str:
    if database_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / (name + '.db')}"
    return create_pg_database(os.environ["TRANSFER_TEST_PG"])


def test_a_database_behind_what_a_witness_cosigned_is_refused_at_start(
    tmp_path: Path, pki: Path, database_url: str, witnesses: Witnesses
) -> None:
    """With log.latest_checkpoint_file gone, a database behind what the witness cosigned — an older backup
    (SQLite: a copy of the file taken earlier) or an empty one — is refused at start with
    LOG_BEHIND_SIGNED_CHECKPOINT, naming the witness and the recovery section; the node's own database starts."""
    w = witnesses.start("w1.example/w")
    block = witness_block([entry(w)])
    path = node_config(tmp_path, pki, database_url, block)
    clock = FakeClock()
    backup = tmp_path / "backup.db"
    with running_node(load_config(path), pki, clock, path) as node:
        grow(node, 1)
        publish(node)
    if database_url.startswith("sqlite"):
        shutil.copyfile(database_url.removeprefix("sqlite:///"), backup)
    with running_node(load_config(path), pki, clock, path) as node:
        grow(node, 3)
        cosigned_note(node, ["w1.example/w"], publish(node))
    latest_file = load_config(path).latest_checkpoint_file

    candidates = [_other_database(database_url, tmp_path, "empty")]
    if database_url.startswith("sqlite"):
        candidates.append(f"sqlite:///{backup}")
    try:
        for other in candidates:
            latest_file.unlink(missing_ok=True)
            restored = node_config(tmp_path, pki, other, block, name="restored")
            with pytest.raises(StartRefused) as refused, running_node(load_config(restored), pki, clock):
                pass
            message = str(refused.value)
            assert message.startswith("LOG_BEHIND_SIGNED_CHECKPOINT") and "witness w1.example/w" in message
            assert "docs/operations.md, Backups and restores" in message
    finally:
        if not candidates[0].startswith("sqlite"):
            drop_pg_database(os.environ["TRANSFER_TEST_PG"], candidates[0])
    with running_node(load_config(path), pki, clock, path, accept_missing_checkpoint_file=True) as node:
        grow(node, 1)
        cosigned_note(node, ["w1.example/w"], publish(node))


def test_a_forked_node_is_refused_by_the_witness_with_evidence_that_verifies(
    tmp_path: Path, pki: Path, database_url: str, witnesses: Witnesses, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two databases under one log key and origin (a forked node), one witness: the first node's checkpoint is
    cosigned; the second's, larger but not an extension of it, is refused (422) and never served as cosigned;
    the witness's evidence verifies offline with `transfer-witness verify-evidence` and the log's vkey."""
    w = witnesses.start("w1.example/w")
    clock = FakeClock()
    fork_url = f"sqlite:///{tmp_path / 'fork.db'}"
    plain = node_config(tmp_path, pki, fork_url, witness_block([]), name="fork")
    with running_node(load_config(plain), pki, clock, plain) as fork:
        grow(fork, 4)  # its own history, signed before any witness saw either
        fork_size = publish(fork)
    honest_path = node_config(tmp_path, pki, database_url, witness_block([entry(w)]), name="honest")
    with running_node(load_config(honest_path), pki, clock, honest_path) as honest:
        grow(honest, 2)
        honest_size = publish(honest)
        cosigned_note(honest, ["w1.example/w"], honest_size)
    assert fork_size > honest_size
    forked = node_config(tmp_path, pki, fork_url, witness_block([entry(w)]), name="fork")
    with running_node(load_config(forked), pki, clock, forked) as fork:
        assert fork.node is not None and fork.node.witnessing is not None
        link = fork.node.witnessing.links[0]
        wait_for("the witness's refusal", lambda: link.failing == "http 422" or None, timeout=60)
        served = fork.client("auditor").get_checkpoint().checkpoint
        assert [s.name for s in parse_note(served).signatures] == [ORIGIN]
    w.stop()
    out = tmp_path / "evidence"
    assert witness_main(["export-evidence", str(w.config.parent / "witness.sqlite"), str(out)]) == 0
    files = sorted(out.glob("*.json"))
    assert files
    capsys.readouterr()
    log_vkey = (pki / "log.vkey").read_text().strip()
    for f in files:
        assert witness_main(["verify-evidence", str(f), "--vkey", log_vkey]) == 0
        assert f"split view of {ORIGIN}" in capsys.readouterr().out


def test_a_witness_that_is_down_costs_mutations_nothing_and_is_logged_once(
    tmp_path: Path, pki: Path, database_url: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With its only witness down, the node starts (a warning names it), takes every mutation, publishes
    checkpoints, and retries the witness with backoff: one log line for the failure, however many attempts."""
    monkeypatch.setattr(Witnessing, "max_backoff_seconds", 0.3)
    down = down_witness()
    path = node_config(tmp_path, pki, database_url, witness_block([down]))
    caplog.set_level(logging.INFO, logger="transfer.node")
    with running_node(load_config(path), pki, FakeClock(), path) as node:
        assert node.node is not None and node.node.witnessing is not None
        link = node.node.witnessing.links[0]
        grow(node, 3)
        publish(node)
        wait_for("several attempts", lambda: link.attempts >= 5 or None, timeout=60)
        grow(node, 2)
        assert publish(node) > 0
    failures = [r for r in caplog.records if r.getMessage() == "witness failed: unreachable"]
    assert len(failures) == 1 and failures[0].witness == down[0]
    assert any("witnesses did not say what they cosigned" in r.getMessage() for r in caplog.records)


def test_a_silent_witness_holds_the_start_only_for_the_configured_wait(
    tmp_path: Path, pki: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A witness that accepts connections and never answers: the start-up check gives up after
    log.witness_startup_seconds with a warning naming it, and mutations do not wait for it."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        name = "silent.example/w"
        configured = [(name, _cosigner_vkey(name), f"http://127.0.0.1:{silent.getsockname()[1]}")]
        url = f"sqlite:///{tmp_path / 'node.db'}"
        path = node_config(tmp_path, pki, url, witness_block(configured, startup=0.5))
        caplog.set_level(logging.INFO, logger="transfer.node")
        with running_node(load_config(path), pki, FakeClock(), path) as node:
            warned = [r for r in caplog.records if "witnesses did not say" in r.getMessage()]
            assert len(warned) == 1 and warned[0].witnesses == name
            grow(node, 2)
            assert publish(node) > 0


def test_witness_configuration_is_checked_strictly(tmp_path: Path, pki: Path) -> None:
    """[[log.witnesses]]: unknown keys, a missing or doubled key source, a name not the key's, a note key
    (type 0x01) instead of a cosignature key, duplicate names or URLs, a non-http(s) URL, a quorum above the
    number of witnesses or 0 with some, or non-zero without any, are one-line ConfigErrors; vkey_file works and
    the quorum defaults to all of them."""
    url = f"sqlite:///{tmp_path / 'node.db'}"
    a = ("a.example/w", _cosigner_vkey("a.example/w"), "http://127.0.0.1:1")
    b = ("b.example/w", _cosigner_vkey("b.example/w"), "https://witness.example/prefix/")
    cfg = load_config(node_config(tmp_path, pki, url, witness_block([a, b])))
    assert [(w.name, w.url) for w in cfg.witnesses] == [(a[0], a[2]), (b[0], "https://witness.example/prefix")]
    assert cfg.witness_quorum == 2
    (tmp_path / "a.vkey").write_text(a[1] + "\n")
    path = node_config(tmp_path, pki, url, witness_block([a], quorum=1))
    path.write_text(path.read_text().replace(f'vkey = "{a[1]}"', 'vkey_file = "a.vkey"'))
    assert load_config(path).witnesses[0].vkey == a[1]
    assert load_config(node_config(tmp_path, pki, url, witness_block([]))).witness_quorum == 0

    log_key = generate_key("a.example/w")[1]
    bad: list[tuple[str, str]] = [
        (witness_block([a], quorum=2), r"log\.witness_quorum: between 1 and 1"),
        (witness_block([a], quorum=0), r"log\.witness_quorum: between 1 and 1"),
        (witness_block([], quorum=1), r"log\.witness_quorum: 0 without"),
        (witness_block([a, (a[0], a[1], "http://127.0.0.1:2")]), r"configured twice"),
        (witness_block([a, (b[0], b[1], a[2])]), r"url: .* configured twice"),
        (witness_block([(a[0], a[1], "ftp://x.example")]), r"log\.witnesses\[0\]\.url"),
        (witness_block([(a[0], a[1], "http://x.example/?q=1")]), r"log\.witnesses\[0\]\.url"),
        (witness_block([("other.example/w", a[1], a[2])]), r"not the name of its key"),
        (witness_block([(a[0], log_key, a[2])]), r"cosignature/v1 key"),
        (witness_block([(a[0], "a.example/w+00+AAAA", a[2])]), r"log\.witnesses\[0\]\.vkey"),
    ]
    for block, error in bad:
        with pytest.raises(ConfigError, match=error):
            load_config(node_config(tmp_path, pki, url, block, name="bad"))
    extra = node_config(tmp_path, pki, url, witness_block([a]), name="bad")
    extra.write_text(extra.read_text().replace('url = "http://127.0.0.1:1"', 'url = "http://127.0.0.1:1"\nkey = "x"'))
    with pytest.raises(ConfigError, match=r"unknown key log\.witnesses\[0\]\.key"):
        load_config(extra)
    both = node_config(tmp_path, pki, url, witness_block([a]), name="bad")
    both.write_text(both.read_text().replace('url = "http', 'vkey_file = "a.vkey"\nurl = "http'))
    with pytest.raises(ConfigError, match="one of vkey and vkey_file"):
        load_config(both)
    missing = node_config(tmp_path, pki, url, witness_block([a]), name="bad")
    missing.write_text(missing.read_text().replace(f'vkey = "{a[1]}"', 'vkey_file = "nowhere.vkey"'))
    with pytest.raises(ConfigError, match=r"vkey_file: cannot be read"):
        load_config(missing)


def test_a_cosignature_that_does_not_verify_is_not_stored(
    tmp_path: Path, pki: Path, witnesses: Witnesses, caplog: pytest.LogCaptureFixture
) -> None:
    """A witness configured with another key than the one it cosigns with: its answers are checked before they
    are stored, so no line of it is ever served, and the node says so once (`bad cosignature`)."""
    w = witnesses.start("w1.example/w")
    name, _, url_ = entry(w)
    wrong = (name, _cosigner_vkey(name), url_)
    path = node_config(tmp_path, pki, f"sqlite:///{tmp_path / 'node.db'}", witness_block([wrong]))
    caplog.set_level(logging.INFO, logger="transfer.node")
    with running_node(load_config(path), pki, FakeClock(), path) as node:
        assert node.node is not None and node.node.witnessing is not None
        link = node.node.witnessing.links[0]
        grow(node, 2)
        publish(node)
        wait_for("the refusal of its answer", lambda: link.failing == "bad cosignature" or None, timeout=60)
        served = node.client("auditor").get_checkpoint().checkpoint
        assert [s.name for s in parse_note(served).signatures] == [ORIGIN]
    assert "cosigned" in w.log_path.read_text()  # the witness did cosign: the node refused its line
    assert len([r for r in caplog.records if r.getMessage() == "witness failed: bad cosignature"]) == 1


def test_the_witnessed_rule_counts_each_trusted_witness_once() -> None:
    """check_witnessed: k of n distinct trusted witnesses with verifying cosignatures; a repeated line counts
    once, a cosigner nobody trusts counts for nothing, a type 0x01 note signature by a witness's name is no
    cosignature, and a quorum outside [0, n] is a ValueError."""
    from transfer.ledger.merkle import EMPTY_ROOT
    from transfer.ledger.note import Checkpoint, cosignature_signer, parse_skey, sign_note

    log_skey, log_vkey = generate_key(ORIGIN)
    text = Checkpoint(ORIGIN, 0, EMPTY_ROOT).text()
    note = sign_note(text, parse_skey(log_skey))
    signers = [cosignature_signer(generate_key(f"w{i}.example/w")[0]) for i in range(3)]
    keys = [parse_vkey(s.vkey) for s in signers[:2]]  # the third is nobody's trusted witness
    lines = [signature_line(s.cosign(text, 1_700_000_000 + i)) for i, s in enumerate(signers)]
    impostor_skey = generate_key("w1.example/w")[0]  # a note key under a witness's name
    impostor = sign_note(text, parse_skey(impostor_skey)).split("\n\n", 1)[1]

    one = check_witnessed(note + lines[0] + lines[0] + lines[2] + impostor, parse_vkey(log_vkey), keys, 2)
    assert one.cosigned == ("w0.example/w",) and one.missing == ("w1.example/w",) and not one.witnessed
    both = check_witnessed(note + lines[1] + lines[0], parse_vkey(log_vkey), keys, 2)
    assert both.cosigned == ("w0.example/w", "w1.example/w") and both.witnessed and both.missing == ()
    assert check_witnessed(note, parse_vkey(log_vkey), keys, 0).witnessed
    for quorum in (-1, 3):
        with pytest.raises(ValueError, match="quorum"):
            check_witnessed(note, parse_vkey(log_vkey), keys, quorum)
