"""The standalone witness (`transfer-witness`): the C2SP tlog-witness add-checkpoint rules one by one,
against a real witness process on 127.0.0.1, with checkpoints signed by our note code over trees
built with transfer/ledger/merkle.py; its state across restarts and races; split-view evidence."""

from __future__ import annotations

import base64
import hashlib
import http.client
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from storage.witness import WitnessState
from transfer.ledger.merkle import EMPTY_ROOT, Frontier, NodeId, consistency_proof, leaf_hash, root_from_nodes
from transfer.ledger.note import (
    Checkpoint,
    CosignatureV1Signer,
    Ed25519Signer,
    cosignature_timestamp,
    generate_key,
    open_note,
    parse_skey,
    parse_vkey,
    sign_note,
)
from transfer.ledger.witness import (
    KIND_BAD_PROOF,
    KIND_SAME_SIZE,
    AddCheckpoint,
    Evidence,
    Refusal,
    Stored,
    check_consistency,
    parse_add_checkpoint,
    verify_evidence,
)
from transfer.witness.__main__ import main as witness_main
from transfer.witness.server import Witness

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
ORIGIN = "hocba.example/log/01"


class TreeLog:
    """A log as the node keeps one: an RFC 9162 tree (merkle.Frontier's rows) and an Ed25519 note key."""

    def __init__(self, skey: str, origin: str = ORIGIN, tag: bytes = b"") -> None:
        signer = parse_skey(skey)
        assert isinstance(signer, Ed25519Signer)
        self.signer = signer
        self.origin = origin
        self.tag = tag  # different tags grow different trees: a fork under one key
        self.frontier = Frontier.empty()
        self.nodes: dict[NodeId, bytes] = {}

    def grow(self, to: int) -> TreeLog:
        while self.frontier.size < to:
            for node, h in self.frontier.append(leaf_hash(self.tag + b"entry %d" % self.frontier.size)):
                self.nodes[node] = h
        return self

    def root(self, size: int) -> bytes:
        return root_from_nodes(size, self.nodes)

    def checkpoint(self, size: int | None = None) -> str:
        size = self.frontier.size if size is None else size
        return sign_note(Checkpoint(self.origin, size, self.root(size)).text(), self.signer)

    def proof(self, old: int, size: int | None = None) -> list[bytes]:
        size = self.frontier.size if size is None else size
        return consistency_proof(old, size, self.nodes) if old else []


def body(old: int, proof: list[bytes], note: str) -> bytes:
    """An add-checkpoint request body."""
    lines = [f"old {old}"] + [base64.b64encode(h).decode() for h in proof]
    return ("\n".join(lines) + "\n\n" + note).encode()


class WitnessProcess:
    """`python -m transfer.witness serve` as a child process."""

    def __init__(self, config: Path, log_path: Path) -> None:
        self.config = config
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.vkey = ""

    def start(self, timeout: float = 30) -> None:
        self.log_path.write_bytes(b"")
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "transfer.witness", "serve", "--config", str(self.config)],
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
            if m := re.search(r"^listening on http://127\.0\.0\.1:(\d+)", text, re.M):
                self.port = int(m.group(1))
                self.vkey = re.search(r"^witness (\S+)", text, re.M).group(1)  # type: ignore[union-attr]
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"witness exited with {self.proc.returncode}: {text[-2000:]}")
            time.sleep(0.05)
        raise TimeoutError(f"witness did not start: {self.log_path.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def post(self, data: bytes, path: str = "/add-checkpoint", method: str = "POST") -> tuple[int, str, str]:
        """(status, content type, body) of one request."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=data or None, headers={"Content-Type": "text/plain"})
            resp = conn.getresponse()
            return resp.status, resp.getheader("Content-Type", ""), resp.read().decode()
        finally:
            conn.close()


@pytest.fixture
def log_key() -> str:
    return generate_key(ORIGIN)[0]


@pytest.fixture
def witness(tmp_path: Path, log_key: str, capsys: pytest.CaptureFixture[str]) -> Iterator[WitnessProcess]:
    assert witness_main(["generate-key", "witness.example/w1", str(tmp_path / "witness.key")]) == 0
    capsys.readouterr()
    log_vkey = parse_skey(log_key)
    assert isinstance(log_vkey, Ed25519Signer)
    (tmp_path / "witness.toml").write_text(
        'listen = "127.0.0.1:0"\nkey_file = "witness.key"\nstate_file = "witness.sqlite"\n\n'
        f'[[log]]\norigin = "{ORIGIN}"\nvkeys = ["{log_vkey.vkey}"]\n',
        encoding="utf-8",
    )
    w = WitnessProcess(tmp_path / "witness.toml", tmp_path / "witness.log")
    w.start()
    yield w
    w.stop()


def cosign_ok(w: WitnessProcess, log: TreeLog, old: int, size: int | None = None) -> int:
    """Submit log's checkpoint at `size` with old and its proof; the answer must be 200 with a valid
    cosignature of exactly that checkpoint. Returns the cosignature's timestamp."""
    note = log.checkpoint(size)
    before = int(time.time())
    status, ctype, text = w.post(body(old, log.proof(old, size), note))
    after = int(time.time())
    assert (status, ctype) == (200, "text/plain; charset=utf-8"), text
    assert text.startswith("\u2014 witness.example/w1 ") and text.endswith("\n") and text.count("\n") == 1
    # As the spec says a log may: append the lines to the checkpoint and open it with the witness key.
    _, verified = open_note(note + text, [parse_vkey(w.vkey)])
    timestamp = cosignature_timestamp(verified[0].data)
    assert before <= timestamp <= after
    return timestamp


# -- the rules, one by one ------------------------------------------------------


def test_first_checkpoint_with_old_zero_is_cosigned(witness: WitnessProcess, log_key: str) -> None:
    """200: a log the witness never saw sends old 0 and no proof; the cosignature verifies with the witness's vkey."""
    assert witness.vkey.startswith("witness.example/w1+")
    assert parse_vkey(witness.vkey).type_byte == 0x04  # type: ignore[attr-defined]
    cosign_ok(witness, TreeLog(log_key).grow(5), old=0)


def test_unknown_origin_is_404(witness: WitnessProcess, log_key: str) -> None:
    """404: a checkpoint of an origin the witness is not configured for, even validly signed."""
    other = TreeLog(generate_key("other.example/log")[0], origin="other.example/log").grow(3)
    status, _, text = witness.post(body(0, [], other.checkpoint()))
    assert status == 404, text


def test_bad_signature_is_403(witness: WitnessProcess, log_key: str) -> None:
    """403: signed by another key of the same name, or by the log's key over other bytes, or with no signature of
    the log's key at all."""
    log = TreeLog(log_key).grow(4)
    impostor = TreeLog(generate_key(ORIGIN)[0]).grow(4)
    status, _, _ = witness.post(body(0, [], impostor.checkpoint()))
    assert status == 403
    # The log's own signature line moved onto another checkpoint: the key matches, the signature fails.
    tampered = log.checkpoint().replace("\n4\n", "\n5\n", 1)
    assert witness.post(body(0, [], tampered))[0] == 403
    # And nothing was stored: the real log's first checkpoint still starts from 0.
    cosign_ok(witness, log, old=0)


def test_malformed_requests_are_400(witness: WitnessProcess, log_key: str) -> None:
    """400: no old line, a bad proof line, 64 proof lines, old above the checkpoint's size; 404 another path."""
    log = TreeLog(log_key).grow(4)
    note = log.checkpoint()
    assert witness.post(note.encode())[0] == 400
    assert witness.post(b"old 01\n\n" + note.encode())[0] == 400
    assert witness.post(b"old 0\nnot-base64\n\n" + note.encode())[0] == 400
    assert witness.post(body(0, [bytes(32)] * 64, note))[0] == 400
    status, _, text = witness.post(body(5, [bytes(32)], note))
    assert status == 400, text
    assert witness.post(body(0, [], note), path="/other")[0] == 404


def test_old_not_the_stored_size_is_409_with_the_size(witness: WitnessProcess, log_key: str) -> None:
    """409: old differs from what the witness cosigned; the body is that size and a newline, as text/x.tlog.size,
    and the log succeeds when it retries from that size."""
    log = TreeLog(log_key).grow(6)
    cosign_ok(witness, log, old=0)
    log.grow(9)
    status, ctype, text = witness.post(body(3, log.proof(3), log.checkpoint()))
    assert (status, ctype, text) == (409, "text/x.tlog.size", "6\n")
    # old 0 also learns the size (the spec's way for a log that does not know it).
    assert witness.post(body(0, [], log.checkpoint()))[:3] == (409, "text/x.tlog.size", "6\n")
    cosign_ok(witness, log, old=6)


def test_bad_consistency_proof_is_422(witness: WitnessProcess, log_key: str) -> None:
    """422: a proof that does not verify (a hash flipped, a proof of other sizes), and old 0 with a proof."""
    log = TreeLog(log_key).grow(5)
    cosign_ok(witness, log, old=0)
    log.grow(13)
    proof = log.proof(5)
    flipped = [proof[0][:-1] + bytes([proof[0][-1] ^ 1]), *proof[1:]]
    assert witness.post(body(5, flipped, log.checkpoint()))[0] == 422
    assert witness.post(body(5, log.proof(4), log.checkpoint()))[0] == 422
    assert witness.post(body(5, [], log.checkpoint()))[0] == 422
    cosign_ok(witness, log, old=5)  # the honest proof still works: nothing was stored


def test_old_zero_with_a_proof_is_422(witness: WitnessProcess, log_key: str) -> None:
    """422: old 0 needs an empty proof, and a size-0 checkpoint must have the empty tree's root."""
    log = TreeLog(log_key).grow(4)
    assert witness.post(body(0, [bytes(32)], log.checkpoint()))[0] == 422
    empty_with_root = sign_note(Checkpoint(ORIGIN, 0, bytes(32)).text(), log.signer)
    assert witness.post(body(0, [], empty_with_root))[0] == 422
    assert witness.post(body(0, [], sign_note(Checkpoint(ORIGIN, 0, EMPTY_ROOT).text(), log.signer)))[0] == 200


def test_same_size_other_root_is_422(witness: WitnessProcess, log_key: str, tmp_path: Path) -> None:
    """422: the size the witness cosigned with another root, signed by the log's key; kept as evidence."""
    honest = TreeLog(log_key).grow(7)
    cosign_ok(witness, honest, old=0)
    fork = TreeLog(log_key, tag=b"fork ").grow(7)
    status, _, text = witness.post(body(7, [], fork.checkpoint()))
    assert status == 422, text
    witness.stop()
    found = _export(tmp_path)
    assert [e.kind for e in found] == [KIND_SAME_SIZE]


def test_repeat_of_the_same_checkpoint_is_cosigned_again(witness: WitnessProcess, log_key: str) -> None:
    """200: the checkpoint already cosigned, sent again with old = its size and no proof, gets a fresh cosignature."""
    log = TreeLog(log_key).grow(8)
    first = cosign_ok(witness, log, old=0)
    assert cosign_ok(witness, log, old=8) >= first


def test_state_survives_a_restart(witness: WitnessProcess, log_key: str) -> None:
    """After a kill and restart the witness still holds the size and root it cosigned: 409 for the old size,
    422 for the same size with another root, 200 from the stored size."""
    log = TreeLog(log_key).grow(10)
    cosign_ok(witness, log, old=0)
    witness.stop()
    witness.start()
    log.grow(12)
    assert witness.post(body(0, [], log.checkpoint()))[:3] == (409, "text/x.tlog.size", "10\n")
    fork = TreeLog(log_key, tag=b"other ").grow(10)
    assert witness.post(body(10, [], fork.checkpoint()))[0] == 422
    cosign_ok(witness, log, old=10)


def test_the_latest_cosigned_checkpoint_is_served(witness: WitnessProcess, log_key: str) -> None:
    """GET /<sha256 hex of the origin>/checkpoint: 404 before any cosignature, then the last cosigned checkpoint
    with the log's signature and the witness's cosignature, both verifying; GET on add-checkpoint is 405."""
    path = f"/{hashlib.sha256(ORIGIN.encode()).hexdigest()}/checkpoint"
    assert witness.post(b"", path, method="GET")[0] == 404
    log = TreeLog(log_key).grow(3)
    cosign_ok(witness, log, old=0)
    cosign_ok(witness, log.grow(5), old=3)
    status, _, text = witness.post(b"", path, method="GET")
    assert status == 200
    assert text.startswith(log.checkpoint(5))
    _, verified = open_note(text, [parse_vkey(log.signer.vkey), parse_vkey(witness.vkey)])
    assert [s.name for s in verified] == [ORIGIN, "witness.example/w1"]
    assert witness.post(b"", f"/{hashlib.sha256(b'x').hexdigest()}/checkpoint", method="GET")[0] == 404
    assert witness.post(b"", "/add-checkpoint", method="GET")[0] == 405


def test_racing_submissions_from_one_old_size_cosign_only_one(witness: WitnessProcess, log_key: str) -> None:
    """Two submissions with old = the stored size, sent at once: one is cosigned, the other gets 409 with the
    size the first stored (the check and the write are one transaction, so neither rolls the other back)."""
    log = TreeLog(log_key).grow(4)
    cosign_ok(witness, log, old=0)
    log.grow(20)
    requests = {n: body(4, log.proof(4, n), log.checkpoint(n)) for n in (11, 20)}
    answers: dict[int, tuple[int, str, str]] = {}
    barrier = threading.Barrier(2)

    def send(n: int) -> None:
        barrier.wait()
        answers[n] = witness.post(requests[n])

    threads = [threading.Thread(target=send, args=(n,)) for n in requests]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(a[0] for a in answers.values()) == [200, 409]
    winner = next(n for n, a in answers.items() if a[0] == 200)
    loser = next(n for n, a in answers.items() if a[0] == 409)
    assert answers[loser][1:] == ("text/x.tlog.size", f"{winner}\n")
    if winner == 11:  # the smaller one won: the larger goes on from it
        cosign_ok(witness, log, old=11, size=20)
    else:
        assert witness.post(body(20, [], log.checkpoint(20)))[0] == 200


# -- a forked log ---------------------------------------------------------------


def _export(tmp_path: Path) -> list[Evidence]:
    out = tmp_path / "evidence"
    assert witness_main(["export-evidence", str(tmp_path / "witness.sqlite"), str(out)]) == 0
    return [Evidence.from_json(p.read_text(encoding="utf-8")) for p in sorted(out.glob("*.json"))]


def test_a_forked_log_is_caught_with_evidence_that_verifies_offline(
    witness: WitnessProcess, log_key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two trees under one log key: the witness cosigns one, refuses the other's larger checkpoint (the proof
    cannot reach its root) and its same-size checkpoint, keeps both pairs, and verify-evidence accepts each with
    the log's vkey and refuses it with another key; an honest pair is not evidence."""
    honest = TreeLog(log_key).grow(6)
    fork = TreeLog(log_key, tag=b"fork ").grow(9)
    cosign_ok(witness, honest, old=0)
    # The fork sends its own (valid for its tree) proof from 6 to 9.
    assert witness.post(body(6, fork.proof(6), fork.checkpoint()))[0] == 422
    assert witness.post(body(6, [], fork.checkpoint(6)))[0] == 422
    cosign_ok(witness, honest.grow(9), old=6)  # the honest log goes on
    witness.stop()

    found = _export(tmp_path)
    assert [e.kind for e in found] == [KIND_BAD_PROOF, KIND_SAME_SIZE]
    assert all(e.cosigned == honest.checkpoint(6) and e.origin == ORIGIN for e in found)
    assert [e.conflicting for e in found] == [fork.checkpoint(9), fork.checkpoint(6)]
    capsys.readouterr()
    log_vkey = TreeLog(log_key).signer.vkey
    for path in sorted((tmp_path / "evidence").glob("*.json")):
        assert witness_main(["verify-evidence", str(path), "--vkey", log_vkey]) == 0
        assert f"split view of {ORIGIN}" in capsys.readouterr().out
        other = generate_key(ORIGIN)[1]
        assert witness_main(["verify-evidence", str(path), "--vkey", other]) == 1
        assert "does not hold" in capsys.readouterr().err

    # Offline rules on hand-made pairs: consistent checkpoints are no evidence.
    keys = [parse_vkey(log_vkey)]
    honest_pair = Evidence(ORIGIN, KIND_BAD_PROOF, honest.checkpoint(6), honest.checkpoint(9), tuple(honest.proof(6)))
    with pytest.raises(ValueError, match="verifies"):
        verify_evidence(honest_pair, keys)
    with pytest.raises(ValueError, match="same root"):
        verify_evidence(Evidence(ORIGIN, KIND_SAME_SIZE, honest.checkpoint(6), honest.checkpoint(6)), keys)
    other_log = TreeLog(log_key, origin="elsewhere.example/log").grow(6)
    with pytest.raises(ValueError, match=r"is for 'elsewhere\.example/log'"):
        verify_evidence(Evidence(ORIGIN, KIND_SAME_SIZE, honest.checkpoint(6), other_log.checkpoint(6)), keys)


# -- the pure rules -------------------------------------------------------------


def test_rules_without_http() -> None:
    """check_consistency in the spec's order: 400 old > size, 409 old not stored, then 422s; evidence only when a
    signed checkpoint contradicts the stored one."""
    log = TreeLog(generate_key(ORIGIN)[0]).grow(8)
    cp = Checkpoint(ORIGIN, 8, log.root(8))
    stored = Stored(5, log.root(5), log.checkpoint(5))
    with pytest.raises(Refusal) as info:
        check_consistency(stored, AddCheckpoint(9, (), log.checkpoint()), cp)
    assert info.value.status == 400
    with pytest.raises(Refusal) as info:
        check_consistency(stored, AddCheckpoint(4, tuple(log.proof(4)), log.checkpoint()), cp)
    assert (info.value.status, info.value.stored_size) == (409, 5)
    check_consistency(stored, AddCheckpoint(5, tuple(log.proof(5)), log.checkpoint()), cp)
    with pytest.raises(Refusal) as info:
        check_consistency(stored, AddCheckpoint(5, tuple(log.proof(5))[1:], log.checkpoint()), cp)
    assert info.value.status == 422 and info.value.evidence is not None
    same = Stored(8, log.root(8), log.checkpoint())
    with pytest.raises(Refusal) as info:
        check_consistency(same, AddCheckpoint(8, (bytes(32),), log.checkpoint()), cp)
    assert info.value.status == 422 and info.value.evidence is None  # same root: no fork, just a bad request
    assert parse_add_checkpoint(body(5, log.proof(5), log.checkpoint())).old == 5
    with pytest.raises(Refusal, match="63"):
        parse_add_checkpoint(body(1, [bytes(32)] * 64, log.checkpoint()))


def test_unusable_configuration_and_keys_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """serve refuses a config without logs, with a bad vkey or a missing key file; generate-key never overwrites a
    key; verify-evidence refuses a file that is not evidence: each exits 2 with one line saying why."""
    key = tmp_path / "w.key"
    assert witness_main(["generate-key", "w.example/w", str(key)]) == 0
    assert capsys.readouterr().out.startswith("w.example/w+")
    assert witness_main(["generate-key", "w.example/w", str(key)]) == 2
    assert "never overwritten" in capsys.readouterr().err
    cases = {
        'key_file = "w.key"\nstate_file = "s.sqlite"\n': "at least one [[log]]",
        'key_file = "w.key"\nstate_file = "s.sqlite"\n[[log]]\norigin = "o"\nvkeys = ["o+00000000+AQ=="]\n': "log 'o'",
        'key_file = "none.key"\nstate_file = "s.sqlite"\n[[log]]\norigin = "o"\n'
        f'vkeys = ["{generate_key("o")[1]}"]\n': "not a witness key",
        'listen = "nowhere"\nkey_file = "w.key"\nstate_file = "s.sqlite"\n': "host:port",
        'key_file = "w.key"\nstate_file = "s.sqlite"\ncolour = "blue"\n': "unknown settings",
    }
    for text, why in cases.items():
        (tmp_path / "w.toml").write_text(text, encoding="utf-8")
        assert witness_main(["serve", "--config", str(tmp_path / "w.toml")]) == 2, text
        err = capsys.readouterr().err
        assert why in err and err.count("\n") == 1, err
    (tmp_path / "e.json").write_text('{"format": "other"}', encoding="utf-8")
    assert witness_main(["verify-evidence", str(tmp_path / "e.json"), "--vkey", generate_key("o")[1]]) == 2
    assert "format" in capsys.readouterr().err


def test_a_locked_state_file_is_503_and_nothing_is_cosigned(tmp_path: Path) -> None:
    """While another process holds the state file's write lock past the busy timeout, add-checkpoint answers 503
    and stores nothing; once the lock is released the same request is cosigned."""
    log = TreeLog(generate_key(ORIGIN)[0]).grow(3)
    state = WitnessState(tmp_path / "w.sqlite", busy_timeout=0.05)
    signer = CosignatureV1Signer("w.example/w", Ed25519PrivateKey.generate())
    witness = Witness(signer, state, {ORIGIN: [parse_vkey(log.signer.vkey)]})
    holder = sqlite3.connect(tmp_path / "w.sqlite", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        answer = witness.add_checkpoint(body(0, [], log.checkpoint()))
        assert (answer.status, answer.body) == (503, b"the witness's state is unavailable\n")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert state.cosigned(ORIGIN) is None
    assert witness.add_checkpoint(body(0, [], log.checkpoint())).status == 200
    assert state.cosigned(ORIGIN) is not None
