"""The append-only log through the API: receipts, proofs, checkpoints, verifiers,
the database's refusal to rewrite it, and tampering behind the service's back."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from storage.database import sync_url
from tests.staffing import CLASS, HOMEROOM, MATH, PRINCIPAL, YEAR, duty, hire, new_record, sign, signing_ca
from tests.support import RunningNode, new_lookup_code, new_national_id, refused
from transfer.client import TransferClient
from transfer.client.client import duty_ref
from transfer.client.logverify import (
    EntryMismatch,
    LogForked,
    LogVerificationError,
    LogVerifier,
    verify_receipt_offline,
)
from transfer.domain.leaves import LeafKind, decode_leaf, record_digest, text_digest
from transfer.ledger import merkle
from transfer.ledger.note import parse_vkey
from transfer.server.verify import main as verify_main
from transfer.v1 import common_pb2, staff_pb2


def vkey(node: RunningNode) -> str:
    return (node.pki / "log.vkey").read_text().strip()


def flow(s1: TransferClient, s2: TransferClient, n: int = 3) -> list[object]:
    """n records sent S1 -> S2: even ones accepted, odd ones rejected; returns every change."""
    changes: list[object] = []
    for i in range(n):
        code = new_lookup_code()
        s1.register_record(code, new_national_id(), common_pb2.RECORD_LEVEL_PRIMARY)
        sent = s1.initiate_transfer(code, "S2")
        done = s2.accept_transfer(sent.transfer.id) if i % 2 == 0 else s2.reject_transfer(sent.transfer.id, "đủ sĩ số")
        changes += [sent, done]
    return changes


def test_every_change_is_an_entry_with_a_receipt(node: RunningNode, s1: TransferClient, s2: TransferClient) -> None:
    """Each transfer change returns a receipt whose leaf decodes to that change, with no personal data."""
    code, nid = new_lookup_code(), "079123456789"
    s1.register_record(code, nid, common_pb2.RECORD_LEVEL_PRIMARY)
    sent = s1.initiate_transfer(code, "S2")
    rejected = s2.reject_transfer(sent.transfer.id, "Lớp đã đủ sĩ số")
    assert rejected.receipt.index == sent.receipt.index + 1
    first, second = decode_leaf(sent.receipt.leaf), decode_leaf(rejected.receipt.leaf)
    assert (first.kind, second.kind) == (LeafKind.TRANSFER_REQUESTED, LeafKind.TRANSFER_REJECTED)
    assert first.transfer_id == second.transfer_id == sent.transfer.id
    salt = sent.transfer.log_salt
    assert len(salt) == 16 and first.record == record_digest(code, salt)
    assert (first.from_school, first.to_school) == ("S1", "S2")
    assert (first.actor, second.actor) == ("school:S1", "school:S2")
    assert second.reason == text_digest("Lớp đã đủ sĩ số", salt)
    assert first.deadline is not None and int(first.deadline.timestamp()) == sent.transfer.deadline.seconds
    for leaf in (sent.receipt.leaf, rejected.receipt.leaf):
        assert nid.encode() not in leaf and code.encode() not in leaf and "đủ".encode() not in leaf
    assert sent.receipt.origin == "hocba.invalid/province/01/log"


def test_receipts_verify_online_and_offline(
    node: RunningNode, s1: TransferClient, s2: TransferClient, tmp_path: Path
) -> None:
    """Receipts verify against a signed checkpoint: through the client verifier, and offline from a proof."""
    changes = flow(s1, s2)
    verifier = LogVerifier(s1, vkey(node), tmp_path / "trusted.checkpoint", origin="hocba.invalid/province/01/log")
    for change in changes:
        checkpoint = verifier.verify_receipt(change.receipt)  # type: ignore[attr-defined]
        assert checkpoint.size > change.receipt.index  # type: ignore[attr-defined]
    receipt = changes[-1].receipt  # type: ignore[attr-defined]
    signed = s1.get_checkpoint().checkpoint
    size = int(signed.splitlines()[1])
    proof = s1.inclusion_proof(receipt.index, size)
    checkpoint = verify_receipt_offline(receipt, signed, proof, parse_vkey(vkey(node)))
    assert checkpoint.size == size
    forged = type(receipt)(index=receipt.index, leaf=receipt.leaf + b"x", origin=receipt.origin)
    with pytest.raises(EntryMismatch):
        verify_receipt_offline(forged, signed, proof, parse_vkey(vkey(node)))


def test_entries_proofs_and_checkpoints(node: RunningNode, s1: TransferClient, s2: TransferClient) -> None:
    """Entries come back in order, paged; proofs from the service verify against the signed roots."""
    flow(s1, s2, 4)
    assert node.node is not None
    node.run(node.node.publish_checkpoint)
    latest = s1.get_checkpoint()
    assert latest.tree_size == 8
    leaves = [e.leaf for e in s1.iter_entries(page_size=3)]
    assert len(leaves) == 8 and merkle.root([merkle.leaf_hash(x) for x in leaves]) == latest.root_hash
    assert [e.index for e in s1.iter_entries(2, 5)] == [2, 3, 4]
    for i in range(8):
        merkle.verify_inclusion(merkle.leaf_hash(leaves[i]), i, 8, s1.inclusion_proof(i, 8), latest.root_hash)
    old_root = merkle.root([merkle.leaf_hash(x) for x in leaves[:3]])
    merkle.verify_consistency(3, 8, s1.consistency_proof(3, 8), old_root, latest.root_hash)
    assert s1.get_checkpoint(8).checkpoint == latest.checkpoint


def test_log_service_refusals(node: RunningNode, s1: TransferClient, s2: TransferClient) -> None:
    """Sizes, indices and ranges outside the log are refused with their reasons."""
    flow(s1, s2, 1)
    with refused("INVALID_ARGUMENT", "INVALID_TREE_SIZE"):
        s1.inclusion_proof(0, 0)
    with refused("INVALID_ARGUMENT", "INVALID_INDEX"):
        s1.inclusion_proof(2, 2)
    with refused("OUT_OF_RANGE", "BEYOND_LOG"):
        s1.inclusion_proof(0, 3)
    with refused("INVALID_ARGUMENT", "INVALID_TREE_SIZE"):
        s1.consistency_proof(0, 2)
    with refused("INVALID_ARGUMENT", "INVALID_TREE_SIZE"):
        s1.consistency_proof(2, 1)
    with refused("OUT_OF_RANGE", "BEYOND_LOG"):
        list(s1.iter_entries(0, 5))
    with refused("INVALID_ARGUMENT", "INVALID_RANGE"):
        list(s1.iter_entries(2, 1))
    with refused("NOT_FOUND", "NO_CHECKPOINT"):
        s1.get_checkpoint(1)
    with refused("OUT_OF_RANGE", "BEYOND_LOG"):
        s1.get_checkpoint(2**64 - 1)
    with refused("OUT_OF_RANGE", "BEYOND_LOG"):
        s1.inclusion_proof(0, 2**64 - 1)


def test_paging_entries_up_to_the_current_size_while_the_log_grows(
    node: RunningNode, s1: TransferClient, s2: TransferClient
) -> None:
    """With end 0, the first page fixes the range: the next pages continue it though the
    log grew in between; forged or foreign tokens are refused, not run."""
    import base64
    import hashlib
    import json

    from transfer.v1 import log_pb2

    flow(s1, s2, 3)  # 6 entries
    first = s1.log.ListEntries(log_pb2.ListEntriesRequest(page_size=4), timeout=5)
    assert [e.index for e in first.entries] == [0, 1, 2, 3] and first.next_page_token
    flow(s1, s2, 1)  # 8 entries now
    rest = s1.log.ListEntries(log_pb2.ListEntriesRequest(page_token=first.next_page_token), timeout=5)
    assert [e.index for e in rest.entries] == [4, 5] and not rest.next_page_token
    assert [e.index for e in s1.iter_entries(page_size=3)] == list(range(8))
    # Tokens of the earlier, unsealed form, whose filter digest anyone could compute.
    digest = hashlib.sha256(repr(("entries", 0, 0)).encode()).hexdigest()[:16]
    for key in (2**70, "99999999999999999999999:5", "-5:6", "--5:10", "x:y", "3:6:7", "7:6", "²:5", "1:6"):
        forged = base64.urlsafe_b64encode(json.dumps({"k": key, "f": digest}).encode()).decode().rstrip("=")
        with refused("INVALID_ARGUMENT", "INVALID_PAGE_TOKEN"):
            _entries(s1, log_pb2.ListEntriesRequest(page_token=forged))
    with refused("INVALID_ARGUMENT", "INVALID_PAGE_TOKEN"):  # the token of another range
        _entries(s1, log_pb2.ListEntriesRequest(start=1, page_token=first.next_page_token))


def _entries(client: TransferClient, request: Any) -> Any:
    """A raw ListEntries call, its failure as the client library reports it."""
    import grpc

    from transfer.client.errors import from_rpc_error

    try:
        return client.log.ListEntries(request, timeout=5)
    except grpc.RpcError as err:
        raise from_rpc_error(err) from None


def _engine(url: str):  # type: ignore[no-untyped-def]
    return create_engine(sync_url(url))


def test_database_refuses_to_rewrite_the_log(
    node: RunningNode, s1: TransferClient, s2: TransferClient, database_url: str
) -> None:
    """UPDATE and DELETE on every log table fail in the database itself (triggers)."""
    flow(s1, s2, 1)
    assert node.node is not None
    node.run(node.node.publish_checkpoint)
    engine = _engine(database_url)
    statements = [
        "UPDATE log_leaves SET data = data WHERE idx = 0",
        "DELETE FROM log_leaves WHERE idx = 1",
        "UPDATE log_nodes SET hash = hash WHERE level = 0 AND idx = 0",
        "DELETE FROM log_nodes",
        "UPDATE log_checkpoints SET note = 'x'",
        "DELETE FROM log_checkpoints",
    ]
    for sql in statements:
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text(sql))
    engine.dispose()


def _tamper(database_url: str, sql: str, **params: object) -> None:
    """Go behind the service's back: disable the guard, change a row."""
    engine = _engine(database_url)
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.execute(text("DROP TRIGGER IF EXISTS log_leaves_no_update"))
            conn.execute(text("DROP TRIGGER IF EXISTS log_nodes_no_update"))
        else:
            conn.execute(text("ALTER TABLE log_leaves DISABLE TRIGGER log_leaves_append_only"))
            conn.execute(text("ALTER TABLE log_nodes DISABLE TRIGGER log_nodes_append_only"))
        conn.execute(text(sql), params)
    engine.dispose()


def test_tampered_leaf_is_named(
    node: RunningNode,
    s1: TransferClient,
    s2: TransferClient,
    database_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """One leaf changed in the database: `verify` and the client's audit both fail and name its index."""
    flow(s1, s2, 5)
    assert node.node is not None and node.config_path is not None
    node.run(node.node.publish_checkpoint)
    verifier = LogVerifier(s1, vkey(node), tmp_path / "trusted", origin="hocba.invalid/province/01/log")
    verifier.audit()
    assert verify_main(["--config", str(node.config_path), "--quiet"]) == 0
    assert "log verified: 10 entries" in capsys.readouterr().out

    _tamper(database_url, "UPDATE log_leaves SET data = :data WHERE idx = 6", data=b"\x01forged")
    assert verify_main(["--config", str(node.config_path), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "leaf 6" in out and "first bad index: 6" in out
    with pytest.raises(EntryMismatch) as info:
        verifier.audit()
    assert info.value.index == 6


def test_tampered_subtree_hash_is_named_and_blocks_signing(
    node: RunningNode, s1: TransferClient, s2: TransferClient, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A changed interior hash: `verify` names the leaves it covers, and the node refuses to sign past it
    (and, from then on, any change: UNAVAILABLE LOG_INCONSISTENT)."""
    from transfer.domain.errors import Unavailable

    flow(s1, s2, 4)
    assert node.node is not None and node.config_path is not None
    first = node.run(node.node.publish_checkpoint)
    assert first is not None and first.size == 8
    # The node hash over leaves 4..5 (level 1, index 2) — committed to by checkpoint 8.
    _tamper(database_url, "UPDATE log_nodes SET hash = :h WHERE level = 1 AND idx = 2", h=bytes(32))
    assert verify_main(["--config", str(node.config_path), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "subtree (1, 2) over leaves 4..5" in out and "first bad index: 4" in out
    # A damaged hash on the tree's right edge changes the root the node would sign next.
    _tamper(database_url, "UPDATE log_nodes SET hash = :h WHERE level = 3 AND idx = 0", h=bytes(32))
    flow(s1, s2, 1)  # the log grows past the damage
    with pytest.raises(Unavailable) as info:
        node.run(node.node.publish_checkpoint)
    assert info.value.reason == "LOG_INCONSISTENT"
    assert s1.get_checkpoint().tree_size == 8  # nothing inconsistent was signed


def test_client_refuses_a_rewritten_history(tmp_path: Path, pki: Path, clock: object, database_url: str) -> None:
    """A verifier that trusted one history refuses another signed by the same key, and a shrunken log."""
    from tests.support import load_config, running_node, write_config

    state = tmp_path / "trusted"
    histories = []
    for n, name in ((2, "a"), (3, "b")):
        url = database_url if name == "a" else f"sqlite:///{tmp_path / 'b.db'}"
        path = write_config(tmp_path / f"{name}.toml", pki=pki, database_url=url)
        with running_node(load_config(path), pki, clock) as handle:  # type: ignore[arg-type]
            admin = handle.client("province-admin")
            for code in ("S1", "S2"):
                admin.register_school(code, code)
            s1, s2 = handle.client("school-S1"), handle.client("school-S2")
            flow(s1, s2, n)
            assert handle.node is not None
            handle.run(handle.node.publish_checkpoint)
            verifier = LogVerifier(s1, (pki / "log.vkey").read_text().strip(), state)
            if name == "a":
                assert verifier.refresh().size == 4
                trusted = state.read_text()
            else:
                with pytest.raises(LogForked, match="not consistent"):
                    verifier.refresh()
                assert state.read_text() == trusted  # the evidence is kept
                histories.append(s1.get_checkpoint().checkpoint)
    # Trusting the longer history, the shorter one is a rollback.
    state.write_text(histories[0])
    path = write_config(tmp_path / "a.toml", pki=pki, database_url=database_url)
    with running_node(load_config(path), pki, clock) as handle:  # type: ignore[arg-type]
        verifier = LogVerifier(handle.client("auditor"), (pki / "log.vkey").read_text().strip(), state)
        with pytest.raises(LogForked, match="went back"):
            verifier.refresh()


class _Answer:
    """What a stub's interceptor returns in place of the server's reply (only `result` is used)."""

    def __init__(self, response: Any) -> None:
        self.response = response

    def result(self, timeout: float | None = None) -> Any:
        return self.response


class ForgedLog(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Injected fault: a log that serves entry `bad` changed and inclusion proofs reshaped by `proof`."""

    def __init__(self, bad: int, proof: Any) -> None:
        self.bad, self.proof = bad, proof

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        response = continuation(details, request).result()
        if details.method.endswith("/ListEntries"):
            for entry in response.entries:
                if entry.index == self.bad:
                    entry.leaf += b"forged"
        elif details.method.endswith("/GetInclusionProof"):
            reshaped = self.proof(list(response.proof))
            del response.proof[:]
            response.proof.extend(reshaped)
        return _Answer(response)


@pytest.mark.parametrize(
    "reshape",
    [
        pytest.param(lambda proof: [], id="empty"),
        pytest.param(lambda proof: proof[:1], id="one-hash"),
        pytest.param(lambda proof: [*proof, bytes(32)], id="one-hash-too-many"),
    ],
)
def test_audit_of_a_log_serving_malformed_proofs_fails_cleanly(
    node: RunningNode, s1: TransferClient, s2: TransferClient, tmp_path: Path, reshape: Any
) -> None:
    """A log serving a changed entry and malformed inclusion proofs fails the audit with a LogVerificationError
    saying so (no IndexError, no innocent entry named)."""
    flow(s1, s2, 5)
    assert node.node is not None
    node.run(node.node.publish_checkpoint)
    forged = node.client("auditor", interceptors=[ForgedLog(6, reshape)])
    verifier = LogVerifier(forged, vkey(node), tmp_path / "trusted", origin="hocba.invalid/province/01/log")
    with pytest.raises(LogVerificationError) as info:
        verifier.audit()
    assert not isinstance(info.value, EntryMismatch) or info.value.index == 6, info.value
    assert "proof" in str(info.value)


def test_every_receipt_names_the_log(node: RunningNode, s1: TransferClient, pki: Path) -> None:
    """Receipts of page, duty and departure changes name the log's origin, as transfer receipts do, so a
    verifier can tell which log they belong to."""
    staff = node.client("school-admin-S1")
    ca = signing_ca(pki)
    teachers = [hire(staff, ca, code, "ed25519") for code in ("CN", "TOAN", "HT", "CN2")]
    assigned = staff.staff.AssignDuty(
        staff_pb2.AssignDutyRequest(
            request_id=str(uuid.uuid4()), duty=duty_ref(duty(HOMEROOM)), teacher_id=teachers[0].id
        ),
        timeout=10,
    )
    staff.assign_duty(duty(MATH), teachers[1].id)
    staff.assign_duty(duty(PRINCIPAL), teachers[2].id)
    added = s1.add_page(new_record(s1), YEAR, 3, CLASS, b"%PDF-1.7 hoc ba", [HOMEROOM, MATH, PRINCIPAL])
    replaced = s1.replace_page(added.page.id, b"%PDF-1.7 sua")
    page = replaced.page
    for requirement, teacher in zip((HOMEROOM, MATH, PRINCIPAL), teachers, strict=False):
        page = sign(s1, page, requirement, teacher)
    locked = s1.lock_page(page.id)
    _, departed = staff.record_departure(
        teachers[0].id, staff_pb2.DEPARTURE_REASON_RETIREMENT, "2026-11-23", replacement=teachers[3].id
    )
    receipts = [assigned.receipt, added.receipt, replaced.receipt, locked.receipt, departed]
    assert [r.origin for r in receipts] == ["hocba.invalid/province/01/log"] * len(receipts)
