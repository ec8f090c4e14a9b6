"""Command-line client: `transfer-cli` (or `python -m transfer.client`).

    transfer-cli --address 127.0.0.1:50051 --pki pki --as school-S1 \
        initiate 0123456789abcdef0123456789abcdef S2

Credentials come from --ca/--cert/--key, or --pki DIR --as NAME (a dev PKI
directory and the certificate stem inside it), or the environment variables
TRANSFER_ADDRESS, TRANSFER_CA, TRANSFER_CERT, TRANSFER_KEY. Output is one
readable line per object, or JSON with --json. On failure the exit status is
1 (refused), 3 (unavailable or timed out) or 2 (usage), with a one-line reason
on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from transfer.client.client import ClientTls, TransferChange, TransferClient
from transfer.client.errors import TransferError
from transfer.client.retry import RetryPolicy
from transfer.v1 import common_pb2, records_pb2, schools_pb2, transfers_pb2

LOCAL = timezone(timedelta(hours=7))

LEVELS = {
    "primary": common_pb2.RECORD_LEVEL_PRIMARY,
    "lower-secondary": common_pb2.RECORD_LEVEL_LOWER_SECONDARY,
    "upper-secondary": common_pb2.RECORD_LEVEL_UPPER_SECONDARY,
}
STATES = {name.removeprefix("TRANSFER_STATE_").lower(): num for name, num in transfers_pb2.TransferState.items() if num}


def _when(ts: Timestamp) -> str:
    if not ts.seconds and not ts.nanos:
        return "-"
    return datetime.fromtimestamp(ts.seconds, UTC).astimezone(LOCAL).strftime("%Y-%m-%d %H:%M")


def _enum(msg: Message, field: str, prefix: str) -> str:
    value = getattr(msg, field)
    desc = msg.DESCRIPTOR.fields_by_name[field].enum_type
    assert desc is not None
    v = desc.values_by_number.get(value)
    return v.name.removeprefix(prefix) if v else str(value)


def fmt_school(s: schools_pb2.School) -> str:
    return f"school {s.code:<20} {'active' if s.active else 'INACTIVE':<8} province {s.province}  {s.name}"


def fmt_record(r: records_pb2.Record) -> str:
    extra = f" open transfer {r.open_transfer_id}" if r.open_transfer_id else ""
    return (
        f"record {r.lookup_code} {_enum(r, 'level', 'RECORD_LEVEL_').lower():<15} "
        f"custodian {r.custodian_school:<12} {_enum(r, 'status', 'RECORD_STATUS_')}{extra}"
    )


def fmt_transfer(t: transfers_pb2.Transfer) -> str:
    line = (
        f"transfer {t.id} {_enum(t, 'state', 'TRANSFER_STATE_'):<9} record {t.lookup_code} "
        f"{t.from_school} -> {t.to_school}"
    )
    if t.state == transfers_pb2.TRANSFER_STATE_REQUESTED:
        line += f"  deadline {_when(t.deadline)}"
    else:
        line += f"  decided {_when(t.decide_time)}"
    if t.reason:
        line += f"  reason: {t.reason}"
    return line


class Output:
    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json

    def change(self, change: TransferChange) -> None:
        """A transfer mutation: the transfer, and where the log recorded it."""
        if self.as_json:
            d = MessageToDict(change.transfer, preserving_proto_field_name=True)
            d["receipt"] = MessageToDict(change.receipt, preserving_proto_field_name=True)
            print(json.dumps(d, ensure_ascii=False), flush=True)
        else:
            print(f"{fmt_transfer(change.transfer)}  [log entry {change.receipt.index}]", flush=True)

    def show(self, msg: Message, fmt: Callable[[Any], str]) -> None:
        if self.as_json:
            print(json.dumps(MessageToDict(msg, preserving_proto_field_name=True), ensure_ascii=False), flush=True)
        else:
            print(fmt(msg), flush=True)


def _client(ns: argparse.Namespace) -> TransferClient:
    if ns.pki and ns.identity:
        tls = ClientTls.from_pki(ns.pki, ns.identity)
    elif ns.ca and ns.cert and ns.key:
        tls = ClientTls.from_files(ns.ca, ns.cert, ns.key)
    else:
        raise SystemExit("transfer-cli: give --pki DIR --as NAME, or --ca, --cert and --key (or TRANSFER_CA/CERT/KEY)")
    if not ns.address:
        raise SystemExit("transfer-cli: give --address HOST:PORT (or TRANSFER_ADDRESS)")
    return TransferClient(ns.address, tls, timeout=ns.timeout, retry=RetryPolicy(attempts=ns.attempts))


def build_parser() -> argparse.ArgumentParser:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="transfer-cli", description="School-record transfer service client.")
    p.add_argument("--address", default=env("TRANSFER_ADDRESS"), help="node address host:port")
    p.add_argument("--ca", default=env("TRANSFER_CA"), help="CA certificate (PEM)")
    p.add_argument("--cert", default=env("TRANSFER_CERT"), help="client certificate (PEM)")
    p.add_argument("--key", default=env("TRANSFER_KEY"), help="client private key (PEM)")
    p.add_argument("--pki", default=env("TRANSFER_PKI"), help="dev PKI directory (with --as)")
    p.add_argument(
        "--as", dest="identity", default=env("TRANSFER_AS"), help="certificate stem in --pki, e.g. school-S1"
    )
    p.add_argument("--timeout", type=float, default=10.0, help="deadline of each attempt, seconds")
    p.add_argument("--attempts", type=int, default=5, help="attempts for transient failures")
    p.add_argument("--json", action="store_true", help="print JSON objects, one per line")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def cmd(name: str, help_: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_, description=help_)

    s = cmd("initiate", "send a record your school holds to another school")
    s.add_argument("lookup_code")
    s.add_argument("to_school")
    s.add_argument("--to-province", default="")
    s.add_argument("--request-id")
    s = cmd("accept", "accept an incoming transfer")
    s.add_argument("transfer_id")
    s.add_argument("--request-id")
    s = cmd("reject", "reject an incoming transfer, with a reason")
    s.add_argument("transfer_id")
    s.add_argument("--reason", required=True)
    s.add_argument("--request-id")
    s = cmd("cancel", "withdraw an outgoing transfer before it is decided")
    s.add_argument("transfer_id")
    s.add_argument("--reason", default="")
    s.add_argument("--request-id")
    s = cmd("get", "show one transfer")
    s.add_argument("transfer_id")
    s = cmd("list", "list incoming or outgoing transfers")
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--incoming", action="store_true")
    g.add_argument("--outgoing", action="store_true")
    s.add_argument("--state", action="append", choices=sorted(STATES), default=[])
    s.add_argument("--school", default="", help="school code (province admins)")
    s = cmd("watch", "print transfer events as they happen (Ctrl-C to stop)")
    s.add_argument("--school", default="")
    s.add_argument("--cursor", default="", help="resume after this cursor")
    s.add_argument("--count", type=int, default=0, help="stop after this many events")

    s = cmd("record-register", "register a record held by your school")
    s.add_argument("lookup_code")
    s.add_argument("national_id")
    s.add_argument("level", choices=sorted(LEVELS))
    s.add_argument("--school", default="", help="custodian school (province admins)")
    s.add_argument("--request-id")
    s = cmd("record-get", "show one record")
    s.add_argument("lookup_code")
    s = cmd("record-list", "list the records a school holds")
    s.add_argument("--school", default="")

    s = cmd("school-register", "register a school (province admin)")
    s.add_argument("code")
    s.add_argument("name")
    s.add_argument("--request-id")
    s = cmd("school-update", "rename, deactivate or reactivate a school (province admin)")
    s.add_argument("code")
    s.add_argument("--name")
    a = s.add_mutually_exclusive_group()
    a.add_argument("--active", dest="active", action="store_true", default=None)
    a.add_argument("--inactive", dest="active", action="store_false")
    s.add_argument("--request-id")
    s = cmd("school-get", "show one school")
    s.add_argument("code")
    cmd("school-list", "list the node's schools")
    return p


def run(ns: argparse.Namespace, out: Output) -> None:
    c = _client(ns)
    with c:
        match ns.command:
            case "initiate":
                out.change(c.initiate_transfer(ns.lookup_code, ns.to_school, ns.to_province, request_id=ns.request_id))
            case "accept":
                out.change(c.accept_transfer(ns.transfer_id, request_id=ns.request_id))
            case "reject":
                out.change(c.reject_transfer(ns.transfer_id, ns.reason, request_id=ns.request_id))
            case "cancel":
                out.change(c.cancel_transfer(ns.transfer_id, ns.reason, request_id=ns.request_id))
            case "get":
                out.show(c.get_transfer(ns.transfer_id), fmt_transfer)
            case "list":
                direction = (
                    transfers_pb2.TRANSFER_DIRECTION_INCOMING
                    if ns.incoming
                    else transfers_pb2.TRANSFER_DIRECTION_OUTGOING
                )
                for t in c.iter_transfers(direction, school=ns.school, states=[STATES[s] for s in ns.state]):
                    out.show(t, fmt_transfer)
            case "watch":
                for seen, ev in enumerate(c.watch_transfers(ns.school, ns.cursor), start=1):
                    if out.as_json:
                        out.show(ev, str)
                    else:
                        print(f"{_when(ev.event_time)}  {fmt_transfer(ev.transfer)}  [cursor {ev.cursor}]", flush=True)
                    if ns.count and seen >= ns.count:
                        break
            case "record-register":
                out.show(
                    c.register_record(
                        ns.lookup_code, ns.national_id, LEVELS[ns.level], ns.school, request_id=ns.request_id
                    ),
                    fmt_record,
                )
            case "record-get":
                out.show(c.get_record(ns.lookup_code), fmt_record)
            case "record-list":
                for r in c.iter_records(ns.school):
                    out.show(r, fmt_record)
            case "school-register":
                out.show(c.register_school(ns.code, ns.name, request_id=ns.request_id), fmt_school)
            case "school-update":
                out.show(c.update_school(ns.code, name=ns.name, active=ns.active, request_id=ns.request_id), fmt_school)
            case "school-get":
                out.show(c.get_school(ns.code), fmt_school)
            case "school-list":
                for school in c.iter_schools():
                    out.show(school, fmt_school)


def main(argv: Sequence[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    try:
        run(ns, Output(ns.json))
    except TransferError as err:
        where = "; ".join(f"{v.field}: {v.description}" for v in err.violations)
        line = f"transfer-cli: {err.code.name} {err.reason or ''}: {err.message}".replace("  ", " ")
        if where and where not in err.message:
            line += f" ({where})"
        print(line, file=sys.stderr)
        return 3 if err.transient else 1
    except OSError as err:
        print(f"transfer-cli: {err.strerror or err}: {getattr(err, 'filename', '') or ''}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
