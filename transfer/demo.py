"""`make demo`: one node, two schools, one transfer accepted and one rejected,
a homeroom teacher retiring mid-year with her class's pages half signed, then
the node's signed log checkpoint and one receipt verified offline.

Generates a throwaway development PKI, starts a real node process on a free
loopback port over mutual TLS, and drives it with the client library exactly
as school systems would, while a third client watches the receiving school's
event stream and prints each event as it arrives. Everything lives in a
temporary directory that is removed at the end (pass --keep to keep it).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
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
from transfer.client.cli import LOCAL, fmt_record, fmt_transfer
from transfer.client.logverify import verify_receipt_offline
from transfer.client.signing import sign_digest
from transfer.devpki import SigningCA, make_dev_pki
from transfer.domain.leaves import decode_leaf
from transfer.domain.signatures import verify_signature
from transfer.ledger.note import parse_vkey
from transfer.v1 import common_pb2, transfers_pb2

SENDER, RECEIVER = "HN-TH-0001", "HN-TH-0002"


def say(text: str) -> None:
    print(text, flush=True)


def start_node(work: Path) -> tuple[subprocess.Popen[bytes], str]:
    config = work / "node.toml"
    config.write_text(
        """
[node]
province = "01"
name = "hocba-node-01"
listen = "127.0.0.1:0"
port_file = "node.port"
[tls]
ca_file = "pki/ca.pem"
cert_file = "pki/node.pem"
key_file = "pki/node.key"
[database]
url = "sqlite:///node.db"
[log]
key_file = "pki/log.key"
[signing]
ca_file = "pki/signing-ca.pem"
[logging]
format = "json"
""",
        encoding="utf-8",
    )
    log = (work / "node.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "transfer.server", "--config", str(config)], stdout=log, stderr=subprocess.STDOUT
    )
    port_file = work / "node.port"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if port_file.exists():
            return proc, f"127.0.0.1:{port_file.read_text().strip()}"
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"the node did not start; see {work / 'node.log'}")


def watch(client: TransferClient, stop: threading.Event, seen: list[str]) -> None:
    stream = client.watch_transfers()
    for event in stream:
        say(f"    [watch {RECEIVER}] {fmt_transfer(event.transfer)}")
        seen.append(event.cursor)
        if stop.is_set() and len(seen) >= 4:
            break
    stream.close()


def run(work: Path) -> None:
    say("1. A development PKI: a CA, the node, a province admin and two schools' systems")
    make_dev_pki(work / "pki", "01", [SENDER, RECEIVER])
    say(f"   written to {work / 'pki'}")
    say("2. Start a node for Hà Nội (province 01) over mutual TLS, SQLite database")
    proc, address = start_node(work)
    say(f"   listening on {address} (logs: {work / 'node.log'})")
    tls = {
        name: ClientTls.from_pki(work / "pki", name)
        for name in ("province-admin", f"school-{SENDER}", f"school-{RECEIVER}")
    }
    admin = TransferClient(address, tls["province-admin"])
    sender = TransferClient(address, tls[f"school-{SENDER}"])
    receiver = TransferClient(address, tls[f"school-{RECEIVER}"])
    watcher = TransferClient(address, tls[f"school-{RECEIVER}"])
    try:
        say("3. The province admin registers both schools")
        admin.register_school(SENDER, "Trường Tiểu học Kim Liên")
        admin.register_school(RECEIVER, "Trường Tiểu học Dịch Vọng")
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
        vkey = (work / "pki" / "log.vkey").read_text().strip()
        checkpoint = verify_receipt_offline(accepted.receipt, signed, proof, parse_vkey(vkey))
        event = decode_leaf(accepted.receipt.leaf)
        say(
            f"   verified: {event.kind.name.lower()} of transfer {event.transfer_id} by {event.actor} is in "
            f"the tree of {checkpoint.size} entries signed by {vkey.split('+')[0]} ({len(proof)} proof hashes)"
        )
    finally:
        for c in (admin, sender, receiver, watcher):
            c.close()
        proc.send_signal(signal.SIGTERM)
        status = proc.wait(30)
        say(f"11. Node stopped with SIGTERM (exit status {status}); the operator verifies the whole log:")
    verified = subprocess.run(
        [sys.executable, "-m", "transfer.server.verify", "--config", str(work / "node.toml"), "--quiet"],
        capture_output=True,
        text=True,
        check=False,
    )
    say("   " + (verified.stdout.strip() or verified.stderr.strip()))
    if verified.returncode != 0:
        raise SystemExit("the log did not verify")


def retire_homeroom_teacher(work: Path, address: str, school: TransferClient, first_record: str) -> int:
    """Part two: a class's homeroom teacher retires mid-year with pages half signed.

    Returns the index of the last log entry it made.
    """
    say(f"9. Mid-year at {RECEIVER}: class 3A's homeroom teacher retires with the class's pages half signed")
    admin = TransferClient(address, ClientTls.from_pki(work / "pki", f"school-admin-{RECEIVER}"))
    ca = SigningCA.load(work / "pki")
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
