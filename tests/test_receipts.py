"""Receipts that verify offline: the entry promise every mutation's receipt carries, the proof
bundle GetProofBundle serves, and `transfer-verify-receipt`, which checks either with no network
and says what it verified or which check, key or cosignature failed."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests.support import FakeClock, RunningNode, load_config, new_lookup_code, new_national_id, refused, running_node
from tests.test_federation import (  # noqa: F401  (fixtures)
    StartPair,
    arrived,
    drained,
    offer,
    prepared_record,
    settled,
    start_pair,
)
from tests.test_witnessing import (  # noqa: F401  (the witnesses fixture)
    Witnesses,
    cosigned_note,
    down_witness,
    entry,
    grow,
    node_config,
    publish,
    witness_block,
    witnesses,
)
from transfer.client import TransferClient
from transfer.domain.model import MessageKind, OutboxMessage, OutboxState
from transfer.ledger import merkle
from transfer.ledger.note import (
    Checkpoint,
    CosignatureV1Signer,
    generate_key,
    parse_note,
    parse_skey,
    parse_vkey,
    sign_note,
    signature_line,
)
from transfer.ledger.receipt import (
    ProofBundle,
    ReceiptError,
    parse_bundle,
    parse_promise_text,
    sign_promise,
    verify_bundle,
    verify_promise,
)
from transfer.ledger.witnessed import check_witnessed
from transfer.server.peers import Dispatcher, Peer, Sealer, peer_bundle, receipt_message
from transfer.v1 import common_pb2, peers_pb2, transfers_pb2

ROOT = Path(__file__).resolve().parent.parent
ORIGIN = "hocba.invalid/province/01/log"
NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


def _vkey(node: RunningNode) -> str:
    return (node.pki / "log.vkey").read_text().strip()


def verify_cli(*args: str | Path) -> tuple[int, str, str]:
    """Run transfer-verify-receipt as a process: (exit status, stdout, stderr)."""
    done = subprocess.run(
        [sys.executable, "-m", "transfer.client.verifyreceipt", *map(str, args)],
        capture_output=True, text=True, cwd=ROOT, timeout=60, check=False,
    )  # fmt: skip
    return done.returncode, done.stdout, done.stderr


def _transfer(s1: TransferClient, s2: TransferClient) -> tuple[object, object]:
    code = new_lookup_code()
    s1.register_record(code, new_national_id(), common_pb2.RECORD_LEVEL_PRIMARY)
    sent = s1.initiate_transfer(code, "S2")
    return sent, s2.accept_transfer(sent.transfer.id)


def _receipt_json(receipt: object) -> str:
    from google.protobuf.json_format import MessageToDict

    return json.dumps({"receipt": MessageToDict(receipt, preserving_proto_field_name=True)})  # type: ignore[arg-type]


def test_receipt_carries_a_signed_entry_promise(node: RunningNode, s1: TransferClient, s2: TransferClient) -> None:
    """Every receipt carries the node's signed promise of the entry's position, byte-identical on a repeat."""
    code, rid = new_lookup_code(), str(uuid.uuid4())
    s1.register_record(code, new_national_id(), common_pb2.RECORD_LEVEL_PRIMARY)
    sent = s1.initiate_transfer(code, "S2", request_id=rid)
    again = s1.initiate_transfer(code, "S2", request_id=rid)
    accepted = s2.accept_transfer(sent.transfer.id)
    log_key = parse_vkey(_vkey(node))
    for change in (sent, accepted):
        r = change.receipt
        assert r.signed_entry, "a receipt without a signed promise can only be checked online, later"
        found = verify_promise(r.signed_entry, [log_key], leaf=r.leaf, index=r.index, origin=ORIGIN)
        assert (found.promise.index, found.promise.leaf_hash) == (r.index, merkle.leaf_hash(r.leaf))
        assert found.promise.time_us == int.from_bytes(r.leaf[2:10], "big")
        assert parse_note(r.signed_entry).text.startswith("hocba-entry/v1\n" + ORIGIN + "\n")
    assert again.receipt == sent.receipt


def test_promise_verifies_offline_with_the_cli(
    node: RunningNode, s1: TransferClient, s2: TransferClient, tmp_path: Path
) -> None:
    """transfer-verify-receipt: a receipt verifies with the log key; another key, a tampered entry, another origin fail."""
    _, accepted = _transfer(s1, s2)
    receipt = accepted.receipt  # type: ignore[attr-defined]
    good = tmp_path / "receipt.json"
    good.write_text(_receipt_json(receipt))
    key_file = node.pki / "log.vkey"

    status, out, _ = verify_cli(good, "--log-key", key_file)
    assert status == 0, out
    assert f"VERIFIED entry promise: entry {receipt.index} of log {ORIGIN}" in out
    assert "entry bytes hash to that leaf hash" in out

    _, other = generate_key(ORIGIN)  # a key of the same name that is not the log's
    status, out, _ = verify_cli(good, "--log-key", other)
    assert status == 1 and out.startswith("FAILED (log-key): ") and "carries no signature by the given log key" in out

    tampered = tmp_path / "tampered.json"
    leaf = bytearray(receipt.leaf)
    leaf[-1] ^= 1
    data = json.loads(good.read_text())
    data["receipt"]["leaf"] = base64.b64encode(bytes(leaf)).decode()
    tampered.write_text(json.dumps(data))
    status, out, _ = verify_cli(tampered, "--log-key", key_file)
    assert status == 1 and out.startswith("FAILED (entry): "), out

    status, out, _ = verify_cli(good, "--log-key", key_file, "--origin", "hocba.invalid/province/79/log")
    assert status == 1 and out.startswith("FAILED (origin): "), out

    promise = tmp_path / "promise.note"
    promise.write_text(receipt.signed_entry)
    status, out, _ = verify_cli(promise, "--log-key", key_file, "--index", str(receipt.index))
    assert status == 0 and "VERIFIED entry promise" in out
    w = CosignatureV1Signer("witness.test/w1", ed25519.Ed25519PrivateKey.generate())
    status, out, _ = verify_cli(promise, "--log-key", key_file, "--witness", w.vkey, "--quorum", "1")
    assert status == 3 and "NOT witnessed (0 of 1 needed)" in out

    status, _, err = verify_cli(good, "--log-key", "not-a-key")
    assert status == 2 and "--log-key not-a-key" in err


def test_proof_bundle_is_served_saved_and_verified(
    node: RunningNode, s1: TransferClient, s2: TransferClient, tmp_path: Path, database_url: str
) -> None:
    """GetProofBundle (publishing a checkpoint when none covers the entry), saved by transfer-cli, verifies offline."""
    _, accepted = _transfer(s1, s2)
    index = accepted.receipt.index  # type: ignore[attr-defined]
    out_file = tmp_path / "entry.bundle"
    cli = [sys.executable, "-m", "transfer.client.cli", "--address", node.address, "--pki", str(node.pki)]
    done = subprocess.run(
        [*cli, "--as", "school-S2", "proof-bundle", str(index), "--out", str(out_file)],
        capture_output=True, text=True, cwd=ROOT, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    text = out_file.read_text()
    bundle = parse_bundle(text)
    assert text.startswith("hocba-proof-bundle/v1\norigin " + ORIGIN + f"\nindex {index}\nleaf ")
    assert bundle.leaf == accepted.receipt.leaf  # type: ignore[attr-defined]
    assert bundle.tree_size() > index and bundle.text() == text

    status, out, _ = verify_cli(out_file, "--log-key", node.pki / "log.vkey")
    assert status == 0, out
    assert f"VERIFIED inclusion: entry {index} of log {ORIGIN}" in out

    # A tampered entry: the proof no longer leads to the signed root.
    leaf = bytearray(bundle.leaf)
    leaf[12] ^= 0x40
    tampered = tmp_path / "tampered.bundle"
    tampered.write_text(text.replace(base64.b64encode(bundle.leaf).decode(), base64.b64encode(bytes(leaf)).decode()))
    status, out, _ = verify_cli(tampered, "--log-key", node.pki / "log.vkey")
    assert status == 1 and out.startswith("FAILED (inclusion): "), out

    # A bundle proved in an earlier checkpoint, named by its size.
    size = bundle.tree_size()
    assert s1.get_proof_bundle(index, size) == text
    with refused("OUT_OF_RANGE", "BEYOND_LOG", database_url=database_url):
        s1.get_proof_bundle(size + 100)
    _, later = _transfer(s1, s2)
    with refused("INVALID_ARGUMENT", "INVALID_INDEX"):  # that checkpoint does not cover the later entry
        s1.get_proof_bundle(later.receipt.index, size)  # type: ignore[attr-defined]
    assert parse_bundle(s1.get_proof_bundle(later.receipt.index)).tree_size() > size  # type: ignore[attr-defined]


def _cosigned(note: str, *cosigners: CosignatureV1Signer, at: int) -> str:
    """The checkpoint note with each witness's cosignature/v1 line appended."""
    text = parse_note(note).text
    return note + "".join(signature_line(w.cosign(text, at)) for w in cosigners)


def test_bundle_witnessing_counts_k_of_n(
    node: RunningNode, s1: TransferClient, s2: TransferClient, tmp_path: Path, clock: FakeClock
) -> None:
    """A bundle is 'witnessed' only with k valid cosignatures from the given witnesses; an untrusted key does not count."""
    _, accepted = _transfer(s1, s2)
    text = s1.get_proof_bundle(accepted.receipt.index)  # type: ignore[attr-defined]
    bundle = parse_bundle(text)
    w1, w2, w3 = (CosignatureV1Signer(f"witness.test/w{i}", ed25519.Ed25519PrivateKey.generate()) for i in (1, 2, 3))
    rogue = CosignatureV1Signer("witness.test/w2", ed25519.Ed25519PrivateKey.generate())  # w2's name, not its key
    at = int(clock.now().timestamp())
    head = text[: len(text) - len(bundle.checkpoint)]

    def write(name: str, *cosigners: CosignatureV1Signer) -> Path:
        path = tmp_path / name
        path.write_text(head + _cosigned(bundle.checkpoint, *cosigners, at=at))
        return path

    trusted = ["--witness", w1.vkey, "--witness", w2.vkey, "--witness", w3.vkey]
    log_key = ["--log-key", str(node.pki / "log.vkey")]

    status, out, _ = verify_cli(write("enough.bundle", w1, w3), *log_key, *trusted, "--quorum", "2")
    assert status == 0, out
    assert "WITNESSED: 2 of 2 needed cosignatures verify (witness.test/w1, witness.test/w3)" in out

    status, out, _ = verify_cli(write("few.bundle", w1), *log_key, *trusted, "--quorum", "2")
    assert status == 3, out
    assert "included, NOT witnessed (1 of 2 needed, missing: witness.test/w2, witness.test/w3)" in out
    assert "VERIFIED inclusion" in out  # what was verified is still said

    status, out, _ = verify_cli(write("rogue.bundle", w1, rogue), *log_key, *trusted, "--quorum", "2")
    assert status == 3, out
    assert "1 of 2 needed, missing: witness.test/w2, witness.test/w3" in out

    status, out, _ = verify_cli(write("none-needed.bundle", w2), *log_key, *trusted)
    assert status == 0 and "cosigned by 1 of the 3 given witnesses: witness.test/w2" in out

    status, _, err = verify_cli(write("q.bundle"), *log_key, "--witness", w1.vkey, "--quorum", "2")
    assert status == 2 and "--quorum 2" in err


def test_receipt_formats_are_strict() -> None:
    """The promise and bundle parsers refuse what is not exactly their format; a bad cosignature does not count."""
    for text in ("hocba-entry/v1\no\n1\n", "hocba-entry/v2\no\n1\n" + "A" * 44 + "\n1\n", "x\n"):
        with pytest.raises(ReceiptError):
            parse_promise_text(text)
    with pytest.raises(ReceiptError) as info:
        parse_promise_text("hocba-entry/v1\no\n01\n" + base64.b64encode(bytes(32)).decode() + "\n1\n")
    assert info.value.check == "format"
    for bad in ("hocba-proof-bundle/v1\norigin o\nleaf AA==\nindex 1\ncheckpoint\nx", "nope\ncheckpoint\n"):
        with pytest.raises(ReceiptError):
            parse_bundle(bad)
    skey, vkey = generate_key("log.test")
    note = sign_note(Checkpoint("log.test", 1, merkle.leaf_hash(b"e")).text(), parse_skey(skey))
    w = CosignatureV1Signer("w.test", ed25519.Ed25519PrivateKey.generate())
    good = _cosigned(note, w, at=1)
    broken = good[:-3] + ("A" if good[-3] != "A" else "B") + good[-2:]
    assert check_witnessed(good, [parse_vkey(vkey)], [parse_vkey(w.vkey)], 1).cosigned == ("w.test",)
    assert check_witnessed(broken, [parse_vkey(vkey)], [parse_vkey(w.vkey)], 1).invalid == ("w.test",)
    text = "\n".join(["hocba-proof-bundle/v1", "origin log.test", "index 0", "leaf " + base64.b64encode(b"e").decode()])
    found = verify_bundle(text + "\ncheckpoint\n" + good, [parse_vkey(vkey)], [parse_vkey(w.vkey)])
    assert (found.tree_size, found.cosigned) == (1, ("w.test",))
    with pytest.raises(ReceiptError) as info:
        verify_bundle(text + "\ncheckpoint\n" + good, [parse_vkey(vkey)], origin="log.other")
    assert info.value.check == "origin"
    promise = sign_promise("log.test", 0, b"\x01\x02" + bytes(8) + b"e", 0, parse_skey(skey))
    assert verify_promise(promise, [parse_vkey(vkey)]).promise.index == 0
    sig_start = promise.rindex(" ") + 1
    forged = promise[:sig_start] + ("B" if promise[sig_start + 8] == "A" else "A").join(
        (promise[sig_start : sig_start + 8], promise[sig_start + 9 :])
    )
    for note, check in ((forged, "log-key"), (promise.replace("\n\n", "\n"), "format")):
        with pytest.raises(ReceiptError) as info:
            verify_promise(note, [parse_vkey(vkey)])
        assert info.value.check == check


# -- a peer's receipts: the sender keeps them as proof bundles -------------------------------------


def _peer_receipt(sealer: object, message: object, bundle: object, *, index: int = 0, **fields: object) -> object:
    """A receipt sealed by the peer for `message`, naming entry `index` and carrying `bundle`, with `fields` changed."""
    from transfer.v1 import peers_pb2

    raw = sealer.receipt(  # type: ignore[attr-defined]
        message.transfer_id,
        message.kind,
        hashlib.sha256(message.payload).digest(),
        index,
        bundle,
        2,
        NOW,  # type: ignore[attr-defined]
    )
    if not fields:
        return peers_pb2.PeerReceipt.FromString(raw)
    body = peers_pb2.PeerReceiptBody.FromString(peers_pb2.PeerReceipt.FromString(raw).body)
    for name, value in fields.items():
        if name == "inclusion_proof":
            del body.inclusion_proof[:]
            body.inclusion_proof.extend(value)  # type: ignore[arg-type]
        else:
            setattr(body, name, value)
    data = body.SerializeToString(deterministic=True)
    return peers_pb2.PeerReceipt(body=data, seal=sealer.key.sign(receipt_message(data)))  # type: ignore[attr-defined]


def test_a_peer_receipts_entry_and_proof_are_checked_and_optional() -> None:
    """A peer's receipt with its entry and inclusion proof is a bundle, checked before delivery counts; one
    without them (another implementation) is still taken; a wrong entry or a proof without an entry is not."""
    seal_key = ed25519.Ed25519PrivateKey.generate()
    skey, vkey = generate_key("peer.test/province/79/log")
    leaves = [b"\x01\x07" + bytes(8) + bytes([i]) * 20 for i in range(3)]
    tree = [merkle.leaf_hash(x) for x in leaves]
    note = sign_note(Checkpoint("peer.test/province/79/log", 3, merkle.root(tree)).text(), parse_skey(skey))
    nodes = {(0, i): h for i, h in enumerate(tree)} | {(1, 0): merkle.node_hash(tree[0], tree[1])}
    proof = tuple(merkle.inclusion_proof(1, 3, nodes))
    bundle = ProofBundle("peer.test/province/79/log", 1, leaves[1], proof, note)
    peer = Peer(None, None, seal_key.public_key(), parse_vkey(vkey))  # type: ignore[arg-type]
    dispatcher = Dispatcher(None, None, None, {"79": peer}, None)  # type: ignore[arg-type]
    message = OutboxMessage(1, "a" * 32, "79", MessageKind.RESOLVE, b"{}", OutboxState.PENDING, 0, NOW, "", NOW)
    sealer = Sealer("79", seal_key)

    good = _peer_receipt(sealer, message, bundle, index=1)
    assert dispatcher._check_receipt(message, good).leaf == leaves[1]  # type: ignore[arg-type]
    stored = peer_bundle(good.SerializeToString())  # type: ignore[attr-defined]
    assert stored == bundle.text()
    assert verify_bundle(stored, [parse_vkey(vkey)]).tree_size == 3

    older = _peer_receipt(sealer, message, bundle, index=1, leaf=b"", inclusion_proof=[])
    assert dispatcher._check_receipt(message, older).log_index == 1  # type: ignore[arg-type]
    assert peer_bundle(older.SerializeToString()) == ""  # type: ignore[attr-defined]

    for fields, why in (
        ({"leaf": leaves[2]}, "not in its checkpoint's tree"),
        ({"inclusion_proof": [bytes(32)] * 2}, "not in its checkpoint's tree"),
        ({"leaf": b""}, "inclusion proof without the entry"),
        ({"logged": False, "log_index": 0}, "names no entry"),
    ):
        with pytest.raises(ValueError, match=why):
            dispatcher._check_receipt(message, _peer_receipt(sealer, message, bundle, index=1, **fields))  # type: ignore[arg-type]


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_the_sender_keeps_the_peers_receipts_as_bundles(
    start_pair: StartPair,  # noqa: F811  (the fixture imported above)
    engine: str,
    tmp_path: Path,
) -> None:
    """Between provinces each node keeps the other's receipt as a proof bundle, served to its admins and
    verified offline with the other node's log key (not with its own)."""
    pair = start_pair(engine)
    code, _ = prepared_record(pair.a)
    t = offer(pair, code)
    arrived(pair, t.id)
    pair.b.client("school-D1").accept_transfer(t.id)
    settled(pair, t.id, transfers_pb2.TRANSFER_STATE_ACCEPTED)
    drained(pair.a)
    drained(pair.b)

    offers = pair.a.admin.list_peer_receipts(t.id)  # 01 holds 79's receipt for its offer
    resolves = pair.b.admin.list_peer_receipts(t.id)  # 79 holds 01's receipt for the decision
    assert [(r.kind, r.peer_province) for r in offers] == [(peers_pb2.PEER_MESSAGE_KIND_OFFER, "79")]
    assert [(r.kind, r.peer_province) for r in resolves] == [(peers_pb2.PEER_MESSAGE_KIND_RESOLVE, "01")]
    for held, signer in ((offers[0], pair.b), (resolves[0], pair.a)):
        body = peers_pb2.PeerReceiptBody.FromString(held.receipt.body)
        bundle = parse_bundle(held.bundle)
        assert (bundle.index, bundle.checkpoint) == (body.log_index, body.checkpoint)
        assert bundle.leaf in [e.leaf for e in signer.admin.iter_entries()]

    out_dir = tmp_path / "receipts"
    out_dir.mkdir()
    cli = [sys.executable, "-m", "transfer.client.cli", "--address", pair.a.proc.address, "--pki", str(pair.a.pki)]
    done = subprocess.run(
        [*cli, "--as", "province-admin", "peer-receipts", t.id, "--out-dir", str(out_dir)],
        capture_output=True, text=True, cwd=ROOT, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    saved = out_dir / f"{t.id}-offer-79.bundle"
    assert f"offer to 79: proof bundle written to {saved}" in done.stdout
    status, out, _ = verify_cli(saved, "--log-key", pair.b.pki / "log.vkey")
    assert status == 0 and "VERIFIED inclusion" in out and "/province/79/log" in out, out
    status, out, _ = verify_cli(saved, "--log-key", pair.a.pki / "log.vkey")
    assert status == 1 and out.startswith("FAILED (log-key): "), out
    with refused("PERMISSION_DENIED", "PROVINCE_ADMIN_ONLY"):
        pair.a.client("school-S1").list_peer_receipts(t.id)


def test_the_examples_in_docs_log_md_verify() -> None:
    """docs/log.md's entry promise and proof bundle examples verify with the keys it names (the formats are as shown)."""
    doc = (ROOT / "docs" / "log.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```\n(.*?)```", doc, re.S)
    bundle = next(b for b in blocks if b.startswith("hocba-proof-bundle/v1\n"))
    promise = next(b for b in blocks if b.startswith("hocba-entry/v1"))
    promise = "\n".join(line.split(" <-")[0].rstrip() for line in promise.split("\n"))
    log_key = parse_vkey(re.findall(r"`(hocba\.moet\.gov\.vn/province/01/log\+[0-9a-f]{8}\+[^`]+)`", doc)[0])
    witness = parse_vkey(re.findall(r"`(witness\.example\.org/w1\+[0-9a-f]{8}\+[^`]+)`", doc)[0])
    found = verify_bundle(bundle, [log_key], [witness])
    assert (found.bundle.index, found.tree_size, found.cosigned) == (2, 3, ("witness.example.org/w1",))
    checked = verify_promise(promise, [log_key], leaf=found.bundle.leaf, index=2)
    assert checked.promise.origin == found.bundle.origin


def test_what_transfer_cli_prints_is_a_receipt_the_verifier_reads(node: RunningNode, s1: TransferClient) -> None:
    """`transfer-cli --json initiate` prints the change with its receipt; piped to transfer-verify-receipt it verifies."""
    code = new_lookup_code()
    s1.register_record(code, new_national_id(), common_pb2.RECORD_LEVEL_PRIMARY)
    cli = [sys.executable, "-m", "transfer.client.cli", "--address", node.address, "--pki", str(node.pki)]
    printed = subprocess.run(
        [*cli, "--as", "school-S1", "--json", "initiate", code, "S2"],
        capture_output=True, text=True, cwd=ROOT, timeout=60, check=False,
    )  # fmt: skip
    assert printed.returncode == 0, printed.stderr
    assert json.loads(printed.stdout)["receipt"]["signed_entry"].startswith("hocba-entry/v1\n")
    done = subprocess.run(
        [sys.executable, "-m", "transfer.client.verifyreceipt", "-", "--log-key", str(node.pki / "log.vkey")],
        input=printed.stdout, capture_output=True, text=True, cwd=ROOT, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0 and "VERIFIED entry promise" in done.stdout, done.stdout + done.stderr


@pytest.mark.slow
def test_a_bundle_carries_the_cosignatures_of_the_nodes_witnesses(
    tmp_path: Path,
    pki: Path,
    database_url: str,
    witnesses: Witnesses,  # noqa: F811  (the fixture imported above)
) -> None:
    """With a real witness cosigning the node's checkpoints, GetProofBundle's checkpoint carries its cosignature:
    witnessed with it alone at quorum 1, and 'NOT witnessed' at quorum 2 with a second witness that is down."""
    w1 = witnesses.start("w1.example/w")
    down = down_witness()
    path = node_config(tmp_path, pki, database_url, witness_block([entry(w1), down], quorum=1))
    with running_node(load_config(path), pki, FakeClock(), path) as node:
        grow(node, 2)
        size = publish(node)
        cosigned_note(node, ["w1.example/w"], size)
        bundle = tmp_path / "entry.bundle"
        bundle.write_text(node.client("school-S1").get_proof_bundle(size - 1))
        assert parse_bundle(bundle.read_text()).tree_size() == size
        log_key = ["--log-key", str(pki / "log.vkey")]
        status, out, _ = verify_cli(bundle, *log_key, "--witness", w1.vkey, "--quorum", "1")
        assert status == 0 and "WITNESSED: 1 of 1 needed cosignatures verify (w1.example/w)" in out, out
        status, out, _ = verify_cli(bundle, *log_key, "--witness", w1.vkey, "--witness", down[1], "--quorum", "2")
        assert status == 3 and f"included, NOT witnessed (1 of 2 needed, missing: {down[0]})" in out, out
