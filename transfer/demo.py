"""`make demo`: two nodes (Hà Nội and Hồ Chí Minh City); in Hà Nội one transfer
accepted and one rejected, a homeroom teacher retiring mid-year with her
class's pages half signed, the node's signed log checkpoint and one receipt
verified offline; then a record moved from Hà Nội's node to Hồ Chí Minh City's,
and each node's checkpoint cosigned by the other node's witness and by a
standalone witness (`transfer-witness`), verified with their keys;
and an auditor checking both logs and the promises between them (`transfer-audit`).

Generates throwaway development PKIs, starts real node processes on free
loopback ports over mutual TLS, and drives them with the client library exactly
as school systems would, while a third client watches the receiving school's
event stream and prints each event as it arrives. Everything lives in a
temporary directory that is removed at the end (pass --keep to keep it).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from transfer.client import ClientTls, TransferClient, TransferError
from transfer.client.cli import LOCAL, fmt_deliveries, fmt_record, fmt_transfer
from transfer.client.logverify import verify_receipt_offline
from transfer.client.signing import sign_digest
from transfer.devpki import SigningCA, dev_witness_name, make_dev_pki, make_dev_witness
from transfer.domain.leaves import decode_leaf
from transfer.domain.signatures import verify_signature
from transfer.ledger.note import Verifier, parse_vkey
from transfer.ledger.receipt import verify_bundle, verify_promise
from transfer.ledger.witnessed import Witnessed, check_witnessed, cosignature_verifier
from transfer.server.config import DEFAULT_DOMAIN, default_origin
from transfer.v1 import common_pb2, transfers_pb2

SENDER, RECEIVER = "HN-TH-0001", "HN-TH-0002"
FAR = "HCM-TH-0001"  # a school of Hồ Chí Minh City, on the other node
STANDALONE = "hocba.invalid/witness"  # the standalone witness (a ministry's, say), witnessing both logs
DELIVERED = transfers_pb2.DELIVERY_STATE_DELIVERED


def say(text: str) -> None:
    print(text, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_witness(work: Path, port: int) -> subprocess.Popen[bytes]:
    """Start the standalone witness (witness/witness.toml, from make_dev_witness) on `port`."""
    log_path = work / "witness.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "transfer.witness", "serve", "--config", str(work / "witness" / "witness.toml")],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if re.search(r"^listening on ", log_path.read_text(encoding="utf-8", errors="replace"), re.M):
            return proc
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"the witness did not start; see {log_path}")


def start_node(
    work: Path, province: str, port: int, peer: str, peer_port: int, witness_ports: dict[str, int]
) -> tuple[subprocess.Popen[bytes], str]:
    """Start the node of `province` (PKI in pki<province>/), with the other province as its peer, a witness of
    the peer's log on its own port, and its checkpoints submitted to the peer's witness and the standalone one
    (`witness_ports`: each province's witness port, and the standalone witness's under "standalone")."""
    own, other = f"pki{province}", f"pki{peer}"
    config = work / f"node{province}.toml"
    config.write_text(
        f"""
[node]
province = "{province}"
name = "hocba-node-{province}"
listen = "127.0.0.1:{port}"
port_file = "node{province}.port"
[tls]
ca_file = "{own}/ca.pem"
cert_file = "{own}/node.pem"
key_file = "{own}/node.key"
[database]
url = "sqlite:///node{province}.db"
[log]
key_file = "{own}/log.key"
latest_checkpoint_file = "node{province}.latest-checkpoint"
witness_quorum = 2
[signing]
ca_file = "signing-cas.pem"
[seal]
key_file = "{own}/seal.key"
[logging]
format = "json"
[[peers]]
province = "{peer}"
address = "127.0.0.1:{peer_port}"
server_name = "localhost"
ca_file = "{other}/ca.pem"
seal_vkey_file = "{other}/seal.vkey"
log_vkey_file = "{other}/log.vkey"
{witnessing_config(province, peer, witness_ports)}""",
        encoding="utf-8",
    )
    log = (work / f"node{province}.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "transfer.server", "--config", str(config)], stdout=log, stderr=subprocess.STDOUT
    )
    port_file = work / f"node{province}.port"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if port_file.exists() and port_file.read_text().strip():
            return proc, f"127.0.0.1:{port_file.read_text().strip()}"
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"the node did not start; see {work / f'node{province}.log'}")


def witnessing_config(province: str, peer: str, witness_ports: dict[str, int]) -> str:
    """The node's witnessing, as docs/operations.md ("Witnessing in a federation") writes it: its own witness
    of its peer's log ([witness]), and the two witnesses of its own log (the peer's and the standalone one,
    both required: quorum 2). TOML tables of their own, after [[peers]]."""
    return f"""
[witness]
listen = "127.0.0.1:{witness_ports[province]}"
key_file = "pki{province}/witness.key"

[[log.witnesses]]
name = "{dev_witness_name(peer)}"
vkey_file = "pki{peer}/witness.vkey"
url = "http://127.0.0.1:{witness_ports[peer]}"

[[log.witnesses]]
name = "{STANDALONE}"
vkey_file = "witness/witness.vkey"
url = "http://127.0.0.1:{witness_ports["standalone"]}"
"""


def watch(client: TransferClient, stop: threading.Event, seen: list[str]) -> None:
    stream = client.watch_transfers()
    for event in stream:
        say(f"    [watch {RECEIVER}] {fmt_transfer(event.transfer)}")
        seen.append(event.cursor)
        if stop.is_set() and len(seen) >= 4:
            break
    stream.close()


def run(work: Path) -> None:
    say("1. Development PKIs for two provinces: a CA, the node, admins and schools' systems each")
    make_dev_pki(work / "pki01", "01", [SENDER, RECEIVER])
    make_dev_pki(work / "pki79", "79", [FAR])
    # Each node trusts both provinces' teacher CAs: signatures travel with the pages.
    (work / "signing-cas.pem").write_bytes(
        (work / "pki01" / "signing-ca.pem").read_bytes() + (work / "pki79" / "signing-ca.pem").read_bytes()
    )
    say(f"   written to {work / 'pki01'} and {work / 'pki79'}")
    logs = [(work / f"pki{p}" / "log.vkey").read_text() for p in ("01", "79")]
    witness_ports = {"01": free_port(), "79": free_port(), "standalone": free_port()}
    make_dev_witness(work / "witness", STANDALONE, logs, listen=f"127.0.0.1:{witness_ports['standalone']}")
    say(f"   and a standalone witness of both logs, {STANDALONE}, in {work / 'witness'}")
    say("2. Start two nodes over mutual TLS, each with its SQLite database, each the other's peer:")
    port01, port79 = free_port(), free_port()
    procs = [start_witness(work, witness_ports["standalone"])]
    say(f"   the standalone witness on http://127.0.0.1:{witness_ports['standalone']} (log: {work}/witness.log)")
    try:
        proc, address = start_node(work, "01", port01, "79", port79, witness_ports)
        procs.append(proc)
        say(f"   Hà Nội (01) on {address}")
        proc79, address79 = start_node(work, "79", port79, "01", port01, witness_ports)
        procs.append(proc79)
    except BaseException:  # a node that did not start: stop what did, then say why
        for p in procs:
            p.kill()
            p.wait(30)
        raise
    say(f"   Hồ Chí Minh City (79) on {address79} (logs: {work}/node01.log, node79.log)")
    say(f"   each a witness of the other's log (01's on port {witness_ports['01']}, 79's on {witness_ports['79']}),")
    say("   each asking the other's witness and the standalone one to cosign its checkpoints (quorum 2)")
    pki = work / "pki01"
    tls = {name: ClientTls.from_pki(pki, name) for name in ("province-admin", f"school-{SENDER}", f"school-{RECEIVER}")}
    admin = TransferClient(address, tls["province-admin"])
    sender = TransferClient(address, tls[f"school-{SENDER}"])
    receiver = TransferClient(address, tls[f"school-{RECEIVER}"])
    watcher = TransferClient(address, tls[f"school-{RECEIVER}"])
    admin79 = TransferClient(address79, ClientTls.from_pki(work / "pki79", "province-admin"))
    far = TransferClient(address79, ClientTls.from_pki(work / "pki79", f"school-{FAR}"))
    try:
        say("3. The province admins register their schools")
        admin.register_school(SENDER, "Trường Tiểu học Kim Liên")
        admin.register_school(RECEIVER, "Trường Tiểu học Dịch Vọng")
        admin79.register_school(FAR, "Trường Tiểu học Lê Ngọc Hân")
        say(f"4. {SENDER} registers two pupils' records (synthetic ids)")
        codes = [uuid.uuid4().hex, uuid.uuid4().hex]
        for i, code in enumerate(codes):
            say("   " + fmt_record(sender.register_record(code, f"00120000000{i}", common_pb2.RECORD_LEVEL_PRIMARY)))
        say(f"5. {RECEIVER} opens a watch stream on its transfers")
        stop, seen = threading.Event(), list[str]()
        thread = threading.Thread(target=watch, args=(watcher, stop, seen), daemon=True)
        thread.start()
        time.sleep(0.3)

        say(f"6. {SENDER} sends the first record to {RECEIVER}; {RECEIVER} accepts")
        first = sender.initiate_transfer(codes[0], RECEIVER).transfer
        say("   " + fmt_transfer(first))
        time.sleep(0.3)
        accepted = receiver.accept_transfer(first.id)
        say("   " + fmt_transfer(accepted.transfer) + f"  [log entry {accepted.receipt.index}]")
        time.sleep(0.3)

        say(f"7. {SENDER} sends the second record; {RECEIVER} rejects it with a reason")
        second = sender.initiate_transfer(codes[1], RECEIVER).transfer
        say("   " + fmt_transfer(second))
        time.sleep(0.3)
        incoming = list(
            receiver.iter_transfers(
                transfers_pb2.TRANSFER_DIRECTION_INCOMING, states=[transfers_pb2.TRANSFER_STATE_REQUESTED]
            )
        )
        say(f"   {RECEIVER} has {len(incoming)} transfer(s) waiting for its decision")
        say("   " + fmt_transfer(receiver.reject_transfer(second.id, "Lớp 3 đã đủ sĩ số").transfer))
        stop.set()
        thread.join(10)

        say("8. Where the records are now")
        say("   " + fmt_record(receiver.get_record(codes[0])))
        say("   " + fmt_record(sender.get_record(codes[1])))
        if len(seen) != 4:
            raise SystemExit(f"the watch stream saw {len(seen)} events, expected 4")

        last_entry = retire_homeroom_teacher(work, address, receiver, codes[0])

        say("10. The node's log: its latest signed checkpoint")
        signed = wait_for_checkpoint(receiver, covering=last_entry + 1)
        for line in signed.splitlines():
            say("   | " + line)
        size = int(signed.splitlines()[1])
        proof = receiver.inclusion_proof(accepted.receipt.index, size)
        say(f"   {RECEIVER} checks its acceptance receipt (entry {accepted.receipt.index}) offline:")
        vkey = (pki / "log.vkey").read_text().strip()
        checkpoint = verify_receipt_offline(accepted.receipt, signed, proof, parse_vkey(vkey))
        event = decode_leaf(accepted.receipt.leaf)
        say(
            f"   verified: {event.kind.name.lower()} of transfer {event.transfer_id} by {event.actor} is in "
            f"the tree of {checkpoint.size} entries signed by {vkey.split('+')[0]} ({len(proof)} proof hashes)"
        )
        log_key = [parse_vkey(vkey)]
        promised = verify_promise(
            accepted.receipt.signed_entry, log_key, leaf=accepted.receipt.leaf, index=accepted.receipt.index
        ).promise
        say(
            f"   at once, from the receipt alone: the node's signed promise that entry {promised.index} of "
            f"{promised.origin} has leaf hash {promised.leaf_hash.hex()[:16]}… (transfer-verify-receipt)"
        )
        bundle = receiver.get_proof_bundle(accepted.receipt.index)
        proved = verify_bundle(bundle, log_key)
        say(
            f"   and its proof bundle, {len(bundle.splitlines())} lines to keep with the record "
            f"(transfer-cli proof-bundle), verifies with the log key alone: in the tree of {proved.tree_size}"
        )

        move_to_another_province(receiver, far, admin, codes[0])

        show_witnessed_checkpoints(work, receiver, far, admin79)
        verify_witnessed_bundle(work, receiver, accepted.receipt.index)
        audit_federation({"01": (address, admin), "79": (address79, admin79)})
    finally:
        for c in (admin, sender, receiver, watcher, admin79, far):
            c.close()
        statuses = []
        witness_proc, *node_procs = procs
        for p in node_procs:
            p.send_signal(signal.SIGTERM)
            statuses.append(p.wait(30))
        witness_proc.terminate()
        witness_proc.wait(30)
        say(f"15. Both nodes stopped with SIGTERM (exit status {statuses}); the operators verify their logs:")
    for province in ("01", "79"):
        verified = subprocess.run(
            [sys.executable, "-m", "transfer.server.verify", "--config", str(work / f"node{province}.toml"), "--quiet"],
            capture_output=True,
            text=True,
            check=False,
        )
        say(f"   {province}: " + (verified.stdout.strip() or verified.stderr.strip()))
        if verified.returncode != 0:
            raise SystemExit(f"the log of {province} did not verify")


def move_to_another_province(
    holder: TransferClient, far: TransferClient, admin: TransferClient, lookup_code: str
) -> None:
    """Part three: the pupil moves to Hồ Chí Minh City, whose node is another one."""
    say(f"11. The pupil moves to Hồ Chí Minh City: {RECEIVER} (node 01) sends the record to {FAR} (node 79)")
    sent = holder.initiate_transfer(lookup_code, FAR, "79").transfer
    say("   " + fmt_transfer(sent))
    offered = _until(lambda: next(iter(far.iter_transfers(transfers_pb2.TRANSFER_DIRECTION_INCOMING)), None))
    say(f"   node 79 verified the sealed package (record, 1 page, 3 teacher signatures) and shows {FAR}:")
    say("   " + fmt_transfer(offered))
    acked = _until(lambda: (t := holder.get_transfer(sent.id)).delivery_state == DELIVERED and t)
    say(f"   node 01 holds node 79's sealed receipt: {fmt_transfer(acked)}")
    say("   " + fmt_transfer(far.accept_transfer(sent.id).transfer))
    say("   " + fmt_record(far.get_record(lookup_code)))
    pages = list(far.iter_pages(lookup_code))
    signed = sum(1 for p in pages for t in far.get_page(p.id).tasks if t.signed_by_teacher_id)
    say(f"   {len(pages)} page(s) arrived with {signed} signature(s), still verifiable at node 79")
    done = _until(lambda: (t := holder.get_transfer(sent.id)).state == transfers_pb2.TRANSFER_STATE_ACCEPTED and t)
    say(f"   node 01 learned the decision: {fmt_transfer(done)}")
    say("   " + fmt_record(holder.get_record(lookup_code)))
    for peer in admin.list_deliveries():
        say(f"   node 01 deliveries: {fmt_deliveries(peer)}")


def show_witnessed_checkpoints(
    work: Path, client01: TransferClient, client79: TransferClient, admin79: TransferClient
) -> None:
    """Part four: each node's latest checkpoint, cosigned by the other node's witness and the standalone one,
    checked with keys the verifier pinned (the dev PKIs' files), the peer's also compared with its GetLogInfo."""
    say("12. Witnesses: node 01's latest checkpoint, cosigned by node 79's witness and the standalone witness")
    pinned = {name: (work / name).read_text().strip() for name in
              ("pki01/log.vkey", "pki79/log.vkey", "pki01/witness.vkey", "pki79/witness.vkey", "witness/witness.vkey")}  # fmt: skip
    if admin79.get_log_info().own_witness_vkey != pinned["pki79/witness.vkey"]:
        raise SystemExit("node 79's GetLogInfo serves another witness key than pki79/witness.vkey")
    standalone = cosignature_verifier(pinned["witness/witness.vkey"])
    log01 = parse_vkey(pinned["pki01/log.vkey"])
    note, result = wait_for_witnessed(client01, log01, [cosignature_verifier(pinned["pki79/witness.vkey"]), standalone])
    for line in note.splitlines():
        say("   | " + line)
    cp = result.checkpoint
    say(f"   check_witnessed: the checkpoint of {cp.size} entries verifies with the log key pki01/log.vkey")
    say(f"   ({log01.name}) and is witnessed, {_count(result)}:")
    say(f"     {result.cosigned[0]} with pki79/witness.vkey (node 79's own_witness_vkey in GetLogInfo too)")
    say(f"     {result.cosigned[1]} with witness/witness.vkey (the standalone witness)")
    _, result79 = wait_for_witnessed(
        client79,
        parse_vkey(pinned["pki79/log.vkey"]),
        [cosignature_verifier(pinned["pki01/witness.vkey"]), standalone],
    )
    say(
        f"   node 79's latest checkpoint ({result79.checkpoint.size} entries) likewise, {_count(result79)}: "
        + " and ".join(result79.cosigned)
    )


def _count(result: Witnessed) -> str:
    total = len(result.cosigned) + len(result.missing)
    return f"{len(result.cosigned)} of {total} cosignatures verifying (quorum {result.quorum})"


def wait_for_witnessed(
    client: TransferClient, log: Verifier, witnesses: list[Verifier], timeout: float = 60.0
) -> tuple[str, Witnessed]:
    """The node's latest checkpoint once it covers the whole log and check_witnessed counts every one of
    `witnesses`' cosignatures (each node submits its checkpoints as it publishes them, off the write path)."""
    size = sum(1 for _ in client.iter_entries())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cp = client.get_checkpoint()
        if cp.tree_size >= size:
            result = check_witnessed(cp.checkpoint, log, witnesses, len(witnesses), origin=log.name)
            if result.witnessed:
                return cp.checkpoint, result
        time.sleep(0.2)
    raise SystemExit(f"no checkpoint of {log.name} cosigned by every witness in {timeout:.0f} s; see the logs")


def verify_witnessed_bundle(work: Path, client: TransferClient, index: int) -> None:
    """Part five: the receipt's proof bundle, fetched now that the checkpoint is cosigned, checked offline by
    transfer-verify-receipt against a witness policy: the log key and both witnesses' keys, quorum 2."""
    say(f"13. {RECEIVER} refreshes its acceptance receipt's proof bundle (entry {index}), now witnessed, and checks it")
    bundle = work / "receipt-bundle.txt"
    bundle.write_text(client.get_proof_bundle(index), encoding="utf-8")
    policy = ["--log-key", "pki01/log.vkey", "--witness", "pki79/witness.vkey", "--witness", "witness/witness.vkey"]
    say("   $ transfer-verify-receipt receipt-bundle.txt " + " ".join(policy) + " --quorum 2")
    done = subprocess.run(
        [sys.executable, "-m", "transfer.client.verifyreceipt", str(bundle), *policy, "--quorum", "2"],
        cwd=work,
        capture_output=True,
        text=True,
        check=False,
    )
    for line in (done.stdout + done.stderr).splitlines():
        say("   | " + line)
    if done.returncode != 0:
        raise SystemExit(f"transfer-verify-receipt exited with {done.returncode}")


def audit_federation(nodes: dict[str, tuple[str, TransferClient]]) -> None:
    """Part four: an auditor checks both logs, and the promises between them, through LogService only."""
    say("14. An auditor reads both logs and checks each transfer between them (transfer-audit, docs/audit.md):")
    args = []
    for province, (address, admin) in nodes.items():
        _until(lambda admin=admin: all(d.pending == 0 for d in admin.list_deliveries()))  # the last receipt logged
        wait_for_checkpoint(admin, covering=sum(1 for _ in admin.iter_entries()))
        pins = f"origin={default_origin(DEFAULT_DOMAIN, province)},vkey_file=pki{province}/log.vkey"
        args += ["--node", f"province={province},address={address},server_name=localhost,{pins},pki=pki{province}"]
    done = subprocess.run(
        [sys.executable, "-m", "transfer.auditor", "--quiet", *args], capture_output=True, text=True, check=False
    )
    for line in (done.stdout + done.stderr).splitlines():
        say("   | " + line)
    if done.returncode != 0:
        raise SystemExit(f"transfer-audit exited with {done.returncode}")


def _until(fn: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = fn()
        if found:
            return found
        time.sleep(0.1)
    raise SystemExit("the nodes did not finish the transfer in time; see node01.log and node79.log")


def retire_homeroom_teacher(work: Path, address: str, school: TransferClient, first_record: str) -> int:
    """Part two: a class's homeroom teacher retires mid-year with pages half signed.

    Returns the index of the last log entry it made.
    """
    say(f"9. Mid-year at {RECEIVER}: class 3A's homeroom teacher retires with the class's pages half signed")
    admin = TransferClient(address, ClientTls.from_pki(work / "pki01", f"school-admin-{RECEIVER}"))
    ca = SigningCA.load(work / "pki01")
    staff = {}
    for code, key_type, role in (
        ("GV-LAN", "ecdsa", "homeroom teacher"),
        ("GV-MINH", "rsa", "maths teacher"),
        ("HT-HOA", "ed25519", "principal"),
        ("GV-MAI", "ecdsa", "replacement"),
    ):
        pem, key = ca.teacher(code, key_type, write=False)
        teacher = admin.register_teacher(code, code.split("-")[1].title(), [pem])
        staff[code] = (teacher.id, key)
        say(f"   registered {code} ({role}, {key_type} certificate) as {teacher.id}")
    year, homeroom, maths, principal = "2026-2027", (1, ""), (2, "toan"), (3, "")
    admin.assign_duty((1, year, "3A", ""), staff["GV-LAN"][0])
    admin.assign_duty((2, year, "3A", "toan"), staff["GV-MINH"][0])
    admin.assign_duty((3, "", "", ""), staff["HT-HOA"][0])
    records = [first_record]
    for i in range(3):
        code = uuid.uuid4().hex
        school.register_record(code, f"00130000000{i}", common_pb2.RECORD_LEVEL_PRIMARY)
        records.append(code)
    pages = [
        school.add_page(code, year, 3, "3A", f"%PDF hoc ba lop 3A #{i}".encode(), [homeroom, maths, principal]).page
        for i, code in enumerate(records)
    ]

    def sign(page: Any, req: tuple[int, str], code: str) -> Any:
        teacher_id, key = staff[code]
        return school.sign_page(page.id, req, teacher_id, page.digest, sign_digest(key, page.digest))

    pages = [sign(p, maths, "GV-MINH") for p in pages]
    pages[:2] = [sign(p, homeroom, "GV-LAN") for p in pages[:2]]
    owed = list(school.iter_signing_tasks(staff["GV-LAN"][0]))
    say(f"   4 pages; GV-LAN has signed 2 and still owes {len(owed)} homeroom signature(s)")
    handoff, receipt = admin.record_departure(
        staff["GV-LAN"][0], 1, datetime.now(UTC).astimezone(LOCAL).date().isoformat(), replacement=staff["GV-MAI"][0]
    )
    say(
        f"   retirement recorded: handoff {handoff.id}, {handoff.moved_tasks} task(s) moved to GV-MAI [log entry {receipt.index}]"
    )
    try:
        sign(pages[3], homeroom, "GV-LAN")
    except TransferError as err:
        say(f"   a late signature by GV-LAN is refused: {err.code.name} {err.reason}")
    pages[2:] = [sign(p, homeroom, "GV-MAI") for p in pages[2:]]
    pages = [sign(p, principal, "HT-HOA") for p in pages]
    last_entry = max(school.lock_page(p.id).receipt.index for p in pages)
    lan_cert = school.get_teacher(staff["GV-LAN"][0]).certificates[0].der
    kept = [
        verify_signature(lan_cert, p.digest, t.signature)
        for p in (school.get_page(p.id) for p in pages[:2])
        for t in p.tasks
        if t.signed_by_teacher_id == staff["GV-LAN"][0]
    ]
    say(f"   all 4 pages signed and LOCKED; GV-LAN's {sum(kept)} earlier signature(s) still verify")
    admin.close()
    return last_entry


def wait_for_checkpoint(client: TransferClient, covering: int, timeout: float = 10.0) -> str:
    """The latest checkpoint once it covers `covering` entries (the node publishes every second)."""
    deadline = time.monotonic() + timeout
    while True:
        checkpoint = client.get_checkpoint()
        if checkpoint.tree_size >= covering or time.monotonic() > deadline:
            return checkpoint.checkpoint
        time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="transfer-demo", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    ns = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="hocba-demo-"))
    os.chdir(work)
    try:
        run(work)
    finally:
        if ns.keep:
            say(f"working directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    say("Demo finished.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
