"""Command-line client: `transfer-cli` (or `python -m transfer.client`).

    transfer-cli --address 127.0.0.1:50051 --pki pki --as school-S1 \
        initiate 0123456789abcdef0123456789abcdef S2

Credentials come from --ca/--cert/--key, or --pki DIR --as NAME (a dev PKI
directory and the certificate stem inside it), or the environment variables
TRANSFER_ADDRESS, TRANSFER_CA, TRANSFER_CERT, TRANSFER_KEY. Output is one
readable line per object, or JSON with --json (before or after the command).
On failure the exit status is 1 (refused), 3 (unavailable or timed out) or 2
(usage), with a one-line reason on stderr, or one JSON object there with --json.
`transfer-cli completion bash|zsh|fish` prints a shell completion script.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.metadata
import json
import math
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import grpc
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from transfer.client import completion
from transfer.client.client import ClientTls, ClientTlsError, TransferChange, TransferClient, new_request_id
from transfer.client.errors import TransferError
from transfer.client.retry import RetryPolicy
from transfer.client.signing import load_key, sign_digest
from transfer.v1 import common_pb2, log_pb2, pages_pb2, peers_pb2, records_pb2, schools_pb2, staff_pb2, transfers_pb2

LOCAL = timezone(timedelta(hours=7))

LEVELS = {
    "primary": common_pb2.RECORD_LEVEL_PRIMARY,
    "lower-secondary": common_pb2.RECORD_LEVEL_LOWER_SECONDARY,
    "upper-secondary": common_pb2.RECORD_LEVEL_UPPER_SECONDARY,
}
STATES = {name.removeprefix("TRANSFER_STATE_").lower(): num for name, num in transfers_pb2.TransferState.items() if num}


DEFAULT_LIMIT = 100  # what a list command prints unless given --limit or --all
PAGE_SIZE_ALL = 500  # the most a node returns per page (it clamps larger requests)
T = TypeVar("T")


class UsageError(Exception):
    """A command line the parser accepted but that cannot be run (exit status 2)."""


class BadCommandLine(Exception):
    """A command line the parser refused; main() prints it as argparse does, or as JSON with --json."""

    def __init__(self, parser: argparse.ArgumentParser, message: str) -> None:
        super().__init__(message)
        self.parser = parser
        self.message = message


class Parser(argparse.ArgumentParser):
    """argparse's parser (and its commands' parsers), raising what it refuses to main() instead of exiting."""

    def error(self, message: str) -> NoReturn:
        raise BadCommandLine(self, message)


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


def _word(msg: Message, field: str, prefix: str) -> str:
    """An enum value as the command line spells it on input: lower case, words joined by '-'."""
    return _enum(msg, field, prefix).lower().replace("_", "-")


def fmt_school(s: schools_pb2.School) -> str:
    return f"school {s.code:<20} {'active' if s.active else 'INACTIVE':<8} province {s.province}  {s.name}"


def fmt_record(r: records_pb2.Record) -> str:
    extra = f" open transfer {r.open_transfer_id}" if r.open_transfer_id else ""
    return (
        f"record {r.lookup_code} {_word(r, 'level', 'RECORD_LEVEL_'):<15} "
        f"custodian {r.custodian_school:<12} {_enum(r, 'status', 'RECORD_STATUS_')}{extra}"
    )


def fmt_transfer(t: transfers_pb2.Transfer) -> str:
    inter = t.from_province != t.to_province
    src = f"{t.from_province}/{t.from_school}" if inter else t.from_school
    dst = f"{t.to_province}/{t.to_school}" if inter else t.to_school
    line = f"transfer {t.id} {_enum(t, 'state', 'TRANSFER_STATE_'):<9} record {t.lookup_code} {src} -> {dst}"
    if t.state == transfers_pb2.TRANSFER_STATE_REQUESTED:
        line += f"  deadline {_when(t.deadline)}"
    else:
        line += f"  decided {_when(t.decide_time)}"
    if t.delivery_state:
        line += f"  delivery {_word(t, 'delivery_state', 'DELIVERY_STATE_')}"
    if t.cancel_requested:
        line += "  cancellation requested"
    if t.reason:
        line += f"  reason: {t.reason}"
    if t.delivery_error:
        line += f"  delivery error: {t.delivery_error}"
    return line


def save_peer_bundle(r: peers_pb2.DeliveredReceipt, transfer_id: str, out_dir: Path | None) -> Path | None:
    """Write a peer receipt's bundle to OUT_DIR/<transfer>-<kind>-<peer>.bundle (None: nothing written)."""
    if not r.bundle or out_dir is None:
        return None
    kind = peers_pb2.PeerMessageKind.Name(r.kind).removeprefix("PEER_MESSAGE_KIND_").lower()
    path = out_dir / f"{transfer_id}-{kind}-{r.peer_province}.bundle"
    path.write_text(r.bundle, encoding="utf-8")
    return path


def fmt_peer_receipt(r: peers_pb2.DeliveredReceipt, *, saved: Path | None) -> str:
    """One line per receipt a peer gave; its bundle follows unless it was written to a file."""
    kind = peers_pb2.PeerMessageKind.Name(r.kind).removeprefix("PEER_MESSAGE_KIND_").lower()
    what = "witnessed proof bundle" if r.bundle_state == peers_pb2.PEER_BUNDLE_STATE_WITNESSED else "proof bundle"
    line = f"{kind} to {r.peer_province}: " + (what if r.bundle else "no bundle (the peer sent none)")
    if r.bundle_state == peers_pb2.PEER_BUNDLE_STATE_SPLIT_VIEW:
        line += f" (SPLIT VIEW: {r.bundle_error})"
    if saved is not None:
        return f"{line} written to {saved}"
    return f"{line}\n{r.bundle.rstrip()}" if r.bundle else line


def fmt_deliveries(d: peers_pb2.PeerDeliveries) -> str:
    line = (
        f"peer {d.peer_province}  pending {d.pending}  failed {d.failed}  delivered {d.delivered}"
        f"  oldest pending {d.oldest_pending_seconds}s  max attempts {d.max_attempts}"
    )
    if d.last_error:
        line += f"  last error: {d.last_error}"
    return line


def fmt_log_info(info: log_pb2.GetLogInfoResponse) -> str:
    lines = [f"origin     {info.origin}", f"log vkey   {info.log_vkey}", f"seal vkey  {info.seal_vkey or '-'}"]
    lines += [f"next vkey  {info.next_log_vkey}"] * bool(info.next_log_vkey)
    lines += [f"old vkey   {v}" for v in info.previous_log_vkeys]
    lines += [f"witness    {w.name} {w.vkey} {w.url}".rstrip() for w in info.witnesses]
    lines.append(f"quorum     {info.witness_quorum}")
    lines += [f"witnesses peers as {info.own_witness_vkey}"] * bool(info.own_witness_vkey)
    return "\n".join(lines)


class Output:
    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json

    def change(self, change: TransferChange) -> None:
        """A transfer mutation: the transfer, and where the log recorded it."""
        if self.as_json:
            d = MessageToDict(change.transfer, preserving_proto_field_name=True)
            if change.logged:
                d["receipt"] = MessageToDict(change.receipt, preserving_proto_field_name=True)
            print(json.dumps(d, ensure_ascii=False), flush=True)
        else:
            where = (
                f"[log entry {change.receipt.index}]"
                if change.logged
                else "[not logged yet: the receiving node decides]"
            )
            print(f"{fmt_transfer(change.transfer)}  {where}", flush=True)

    def show(self, msg: Message, fmt: Callable[[Any], str]) -> None:
        if self.as_json:
            print(json.dumps(MessageToDict(msg, preserving_proto_field_name=True), ensure_ascii=False), flush=True)
        else:
            print(fmt(msg), flush=True)


def _describe(err: TransferError) -> str:
    """Code, reason (when the node gave one) and message, as the CLI prints a failure."""
    return f"{err.code.name} {err.reason}".rstrip() + f": {err.message}"


def _version() -> str:
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


DISTRIBUTION = "hocba-transfer"
JSON_HELP = "print JSON objects, one per line (and a refusal as one JSON object on stderr)"


def refusal_json(err: TransferError, request_id: str | None) -> dict[str, Any]:
    """A refusal as --json prints it: what a script needs to decide, with the names the node uses."""
    out: dict[str, Any] = {
        "code": err.code.name,
        "reason": err.reason,
        "message": err.message,
        "field_violations": [
            {"field": v.field, "description": v.description, "reason": v.reason} for v in err.violations
        ],
        "precondition_violations": [
            {"type": v.type, "subject": v.subject, "description": v.description} for v in err.preconditions
        ],
        "trace_id": err.trace_id,
        "transient": err.transient,
    }
    if err.transient and request_id:
        out["request_id"] = request_id  # run the command again with it: it is done at most once
    return out


def _progress(line: str) -> None:
    """A line for the person watching, on stderr: stdout holds only the command's output."""
    print(f"transfer-cli: {line}", file=sys.stderr, flush=True)


def _page_size(ns: argparse.Namespace) -> int:
    """Ask for one more than the limit, so the first page alone tells whether more exist."""
    return PAGE_SIZE_ALL if ns.all else min(ns.limit + 1, PAGE_SIZE_ALL)


def _shown(items: Iterable[T], ns: argparse.Namespace) -> Iterator[T]:
    """The first --limit items (all with --all), and a note on stderr when more exist."""
    for n, item in enumerate(items):
        if not ns.all and n >= ns.limit:
            _progress(f"showing the first {ns.limit}; more exist (--limit N to show more, --all for every one)")
            return
        yield item


TEACHER_ID = re.compile(r"[0-9a-f]{32}")  # the node's ids; staff codes are at most 20 characters
TEACHER_HELP = "the teacher's staff code (e.g. GV-LAN) or id"
CODE_SCHOOL_HELP = "the school whose staff codes are meant (province admins; default: your own)"


class Teachers:
    """Turns what the user typed for a teacher (a staff code, or the node's id) into the id the node takes."""

    def __init__(self, client: TransferClient, school: str) -> None:
        self.client = client
        self.school = school
        self.by_code: dict[str, str] | None = None

    def __call__(self, text: str) -> str:
        if not text or TEACHER_ID.fullmatch(text):
            return text
        if self.by_code is None:  # one listing of the school, for every code on the line
            self.by_code = {t.code: t.id for t in self.client.iter_teachers(self.school, page_size=PAGE_SIZE_ALL)}
        found = self.by_code.get(text)
        if found is None:
            where = f"school {self.school}" if self.school else "your school"
            raise TransferError(
                grpc.StatusCode.NOT_FOUND, "TEACHER_NOT_FOUND", f"{where} has no teacher with staff code {text!r}"
            )
        return found


def _watch_dropped(limit: int | None) -> Callable[[TransferError, int, float], None]:
    def dropped(err: TransferError, failures: int, delay: float) -> None:
        of = f" of {limit}" if limit else ""
        _progress(f"watch dropped ({_describe(err)}); reconnect {failures}{of} in {delay:.2g} s")

    return dropped


def _watch_resumed(cursor: str, failures: int) -> None:
    where = f"from cursor {cursor}" if cursor else "from the start"
    _progress(f"watch resumed {where} at reconnect {failures}")


def _client(ns: argparse.Namespace) -> TransferClient:
    if ns.pki and ns.identity:
        tls = ClientTls.from_pki(ns.pki, ns.identity)
    elif ns.ca and ns.cert and ns.key:
        tls = ClientTls.from_files(ns.ca, ns.cert, ns.key)
    else:
        raise UsageError("give --pki DIR --as NAME, or --ca, --cert and --key (or TRANSFER_CA/CERT/KEY)")
    if not ns.address:
        raise UsageError("give --address HOST:PORT (or TRANSFER_ADDRESS)")
    backoff = {"max_backoff": ns.max_backoff} if "max_backoff" in ns else {}
    return TransferClient(ns.address, tls, timeout=ns.timeout, retry=RetryPolicy(attempts=ns.attempts, **backoff))


def build_parser() -> argparse.ArgumentParser:
    env = os.environ.get
    p = Parser(prog="transfer-cli", description="School-record transfer service client.")
    p.add_argument("--address", default=env("TRANSFER_ADDRESS"), help="node address host:port")
    # metavar FILE and DIR: what shell completion offers for them (transfer/client/completion.py)
    p.add_argument("--ca", metavar="FILE", default=env("TRANSFER_CA"), help="CA certificate (PEM)")
    p.add_argument("--cert", metavar="FILE", default=env("TRANSFER_CERT"), help="client certificate (PEM)")
    p.add_argument("--key", metavar="FILE", default=env("TRANSFER_KEY"), help="client private key (PEM)")
    p.add_argument("--pki", metavar="DIR", default=env("TRANSFER_PKI"), help="dev PKI directory (with --as)")
    p.add_argument(
        "--as", dest="identity", default=env("TRANSFER_AS"), help="certificate stem in --pki, e.g. school-S1"
    )
    p.add_argument("--timeout", type=_positive(float), default=10.0, help="deadline of each attempt, seconds")
    p.add_argument("--attempts", type=_positive(int), default=5, help="attempts for transient failures")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def cmd(name: str, help_: str) -> argparse.ArgumentParser:
        s = sub.add_parser(name, help=help_, description=help_)
        # SUPPRESS: absent after the command, it leaves what the main parser set (--json before the command)
        s.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help=JSON_HELP)
        return s

    def listing(name: str, help_: str) -> argparse.ArgumentParser:
        """A list command: it pages, printing the first --limit objects unless given --all."""
        s = cmd(name, help_)
        g = s.add_mutually_exclusive_group()
        g.add_argument(
            "--limit",
            type=_positive(int),
            default=DEFAULT_LIMIT,
            help=f"print at most this many (default {DEFAULT_LIMIT}); a note on stderr says when more exist",
        )
        g.add_argument("--all", action="store_true", help="print every one")
        return s

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
    s = listing("list", "list incoming or outgoing transfers")
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--incoming", action="store_true")
    g.add_argument("--outgoing", action="store_true")
    s.add_argument(
        "--state",
        action="append",
        type=str.lower,  # as a transfer's line prints it (ACCEPTED) or in lower case
        choices=sorted(STATES),
        default=[],
        help="only transfers in this state (repeatable)",
    )
    s.add_argument("--school", default="", help="school code (province admins)")
    s = cmd("watch", "print transfer events as they happen (Ctrl-C to stop)")
    s.add_argument("--school", default="")
    s.add_argument("--cursor", default="", help="resume after this cursor")
    s.add_argument("--count", type=int, default=0, help="stop after this many events")
    s.add_argument(
        "--max-reconnects",
        type=_positive(int, zero=True),
        default=0,
        help="give up after this many failed reconnections in a row (default 0: never, while failures are transient)",
    )
    s.add_argument(
        "--max-backoff",
        type=_positive(float),
        default=RetryPolicy.max_backoff,
        help=f"longest wait between reconnections, seconds (default {RetryPolicy.max_backoff:g})",
    )

    cmd("deliveries", "messages to other provinces' nodes, per peer (province admin)")
    s = cmd("peer-receipts", "the receipts peers gave for a transfer's messages, as proof bundles (province admin)")
    s.add_argument("transfer_id")
    s.add_argument(
        "--out-dir", type=Path, metavar="DIR", help="write each bundle to DIR/<transfer>-<kind>-<peer>.bundle"
    )
    cmd("log-info", "the log's origin, verifier keys and witnesses (compare them with the values you pinned)")
    s = cmd("proof-bundle", "save a log entry's proof bundle, to verify offline with transfer-verify-receipt")
    s.add_argument("index", type=_positive(int, zero=True), help="the entry's index (a receipt's log entry)")
    s.add_argument("--tree-size", type=_positive(int, zero=True), default=0, help="checkpoint size (default: latest)")
    s.add_argument("--out", type=Path, required=True, help="file to write the bundle to (- for standard output)")

    s = cmd("record-register", "register a record held by your school")
    s.add_argument("lookup_code")
    s.add_argument("national_id")
    s.add_argument("level", choices=sorted(LEVELS))
    s.add_argument("--school", default="", help="custodian school (province admins)")
    s.add_argument("--request-id")
    s = cmd("record-get", "show one record")
    s.add_argument("lookup_code")
    s = listing("record-list", "list the records a school holds")
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
    listing("school-list", "list the node's schools")

    s = cmd("teacher-register", "register a teacher with signing certificate(s) (school admin)")
    s.add_argument("code", help="the school's staff code")
    s.add_argument("name")
    s.add_argument("--cert", action="append", required=True, type=Path, help="PEM certificate file (repeatable)")
    s.add_argument("--school", default="")
    s.add_argument("--request-id")
    s = listing("teacher-list", "list a school's teachers")
    s.add_argument("--school", default="")
    s = cmd("teacher-get", "show a teacher and their certificates")
    s.add_argument("teacher", help=TEACHER_HELP)
    s.add_argument("--school", default="", help=CODE_SCHOOL_HELP)
    s = cmd("duty-assign", "give a duty to a teacher (school admin)")
    s.add_argument("duty", help="principal | homeroom/<year>/<class> | subject/<year>/<class>/<subject>")
    s.add_argument("teacher", help=TEACHER_HELP)
    s.add_argument("--school", default="")
    s.add_argument("--request-id")
    s = cmd("duty-list", "list a school's duties, or those a teacher holds")
    s.add_argument("--school", default="")
    s.add_argument("--teacher", default="", help=TEACHER_HELP)
    s = listing("task-list", "list the signatures a teacher still owes")
    s.add_argument("teacher", help=TEACHER_HELP)
    s.add_argument("--school", default="", help=CODE_SCHOOL_HELP)
    s = cmd("depart", "record a teacher's departure and hand off their duties (school admin)")
    s.add_argument("teacher", help=TEACHER_HELP)
    s.add_argument("--school", default="", help=CODE_SCHOOL_HELP)
    s.add_argument("--reason", required=True, choices=sorted(REASONS))
    s.add_argument("--effective", required=True, help="YYYY-MM-DD: from this day their signatures are refused")
    s.add_argument("--until", default="", help="YYYY-MM-DD: end of a temporary absence")
    s.add_argument("--replacement", default="", help="teacher (staff code or id) taking every duty not named by --duty")
    s.add_argument("--duty", action="append", default=[], help="DUTY_KEY=TEACHER (staff code or id; repeatable)")
    s.add_argument("--request-id")
    s = listing("handoff-list", "list a school's handoffs")
    s.add_argument("--school", default="")
    s.add_argument("--teacher", default="", help=TEACHER_HELP)

    s = cmd("page-add", "add a page (one school year) to a record your school holds")
    s.add_argument("lookup_code")
    s.add_argument("school_year", help="e.g. 2026-2027")
    s.add_argument("grade", type=int)
    s.add_argument("class_name")
    s.add_argument("payload", type=Path, help="the page's content (a file)")
    s.add_argument("--media-type", default="application/pdf")
    s.add_argument("--segment", default="")
    s.add_argument("--supplementary", action="store_true", help="locks at the supplementary date (15 August)")
    s.add_argument("--require", action="append", required=True, help="homeroom | principal | subject:<code>")
    s.add_argument("--request-id")
    s = listing("page-list", "list a record's pages")
    s.add_argument("lookup_code")
    s = cmd("page-get", "show a page and its signatures")
    s.add_argument("page_id")
    s = cmd("page-sign", "sign a page's digest with a teacher's key file and submit it")
    s.add_argument("page_id")
    s.add_argument("requirement", help="homeroom | principal | subject:<code>")
    s.add_argument("teacher", help=TEACHER_HELP)
    s.add_argument("--school", default="", help=CODE_SCHOOL_HELP)
    s.add_argument("--key", required=True, type=Path, help="the teacher's private key (PEM)")
    s.add_argument("--request-id")
    s = cmd("page-lock", "lock a fully signed page")
    s.add_argument("page_id")
    s.add_argument("--request-id")

    help_ = "print transfer-cli's completion script for a shell (how to install it: README, Shell completion)"
    s = sub.add_parser("completion", help=help_, description=help_)
    s.add_argument("shell", choices=completion.SHELLS)
    return p


REASONS = {
    name.removeprefix("DEPARTURE_REASON_").lower().replace("_", "-"): num
    for name, num in staff_pb2.DepartureReason.items()
    if num
}
ROLES = {"homeroom": pages_pb2.SIGNER_ROLE_HOMEROOM, "principal": pages_pb2.SIGNER_ROLE_PRINCIPAL}


def parse_requirement(text: str) -> tuple[int, str]:
    if text.startswith("subject:"):
        return pages_pb2.SIGNER_ROLE_SUBJECT, text.removeprefix("subject:")
    if text in ROLES:
        return ROLES[text], ""
    raise UsageError(f"{text!r} is not homeroom, principal or subject:<code>")


def parse_duty_key(text: str) -> tuple[int, str, str, str]:
    parts = text.split("/")
    if parts == ["principal"]:
        return pages_pb2.SIGNER_ROLE_PRINCIPAL, "", "", ""
    if parts[0] == "homeroom" and len(parts) == 3:
        return pages_pb2.SIGNER_ROLE_HOMEROOM, parts[1], parts[2], ""
    if parts[0] == "subject" and len(parts) == 4:
        return pages_pb2.SIGNER_ROLE_SUBJECT, parts[1], parts[2], parts[3]
    raise UsageError(f"{text!r} is not principal, homeroom/<year>/<class> or subject/<year>/<class>/<subject>")


def fmt_teacher(t: staff_pb2.Teacher) -> str:
    certs = ", ".join(f"{c.key_type} until {_when(c.not_after)[:10]}" for c in t.certificates)
    return f"teacher {t.id} {t.code:<12} {_enum(t, 'status', 'TEACHER_STATUS_'):<9} {t.name}" + (
        f"  [{certs}]" if certs else ""
    )


def fmt_duty(d: staff_pb2.Duty) -> str:
    return f"duty {d.key:<40} held by {d.holder_teacher_id or '-'}"


def _req(r: pages_pb2.RequiredSignature) -> str:
    return (
        f"subject:{r.subject}" if r.role == pages_pb2.SIGNER_ROLE_SUBJECT else _enum(r, "role", "SIGNER_ROLE_").lower()
    )


def fmt_task(t: pages_pb2.SigningTask) -> str:
    done = f"signed by {t.signed_by_teacher_id}" if t.signed_by_teacher_id else f"owed by {t.assignee_teacher_id}"
    return f"task page {t.page_id} {_req(t.requirement):<16} {done}  digest {t.digest.hex()[:16]}"


def fmt_page(p: pages_pb2.Page) -> str:
    signed = sum(1 for t in p.tasks if t.signed_by_teacher_id)
    return (
        f"page {p.id} {p.school_year}{'/' + p.segment if p.segment else ''} grade {p.grade} class {p.class_name} "
        f"v{p.version} {_enum(p, 'state', 'PAGE_STATE_'):<8} {signed}/{len(p.tasks)} signed  issued by {p.issuing_school}"
    )


def fmt_handoff(h: staff_pb2.Handoff) -> str:
    until = f" until {h.end_date}" if h.end_date else ""
    return (
        f"handoff {h.id} teacher {h.teacher_id} {_word(h, 'reason', 'DEPARTURE_REASON_'):<15} "
        f"from {h.effective_date}{until} {_enum(h, 'state', 'HANDOFF_STATE_'):<10} moved {h.moved_tasks} task(s)"
        + (f" -> {h.replacement_teacher_id}" if h.replacement_teacher_id else "")
    )


def run(ns: argparse.Namespace, out: Output) -> None:
    if "request_id" in ns and not ns.request_id:
        # Drawn here, so that a failure can name it: running the command again with it is safe.
        ns.request_id = new_request_id()
    c = _client(ns)
    teacher_ref = Teachers(c, getattr(ns, "school", ""))
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
                transfers = c.iter_transfers(
                    direction, school=ns.school, states=[STATES[s] for s in ns.state], page_size=_page_size(ns)
                )
                for t in _shown(transfers, ns):
                    out.show(t, fmt_transfer)
            case "watch":
                limit = ns.max_reconnects or None
                events = c.watch_transfers(
                    ns.school, ns.cursor, max_reconnects=limit, on_drop=_watch_dropped(limit), on_resume=_watch_resumed
                )
                for seen, ev in enumerate(events, start=1):
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
                for r in _shown(c.iter_records(ns.school, page_size=_page_size(ns)), ns):
                    out.show(r, fmt_record)
            case "school-register":
                out.show(c.register_school(ns.code, ns.name, request_id=ns.request_id), fmt_school)
            case "school-update":
                out.show(c.update_school(ns.code, name=ns.name, active=ns.active, request_id=ns.request_id), fmt_school)
            case "school-get":
                out.show(c.get_school(ns.code), fmt_school)
            case "log-info":
                out.show(c.get_log_info(), fmt_log_info)
            case "proof-bundle":
                bundle = c.get_proof_bundle(ns.index, ns.tree_size)
                if str(ns.out) == "-":
                    sys.stdout.write(bundle)
                else:
                    tmp = ns.out.with_name(ns.out.name + ".tmp")
                    tmp.write_text(bundle, encoding="utf-8")
                    tmp.replace(ns.out)
                    print(f"proof bundle of entry {ns.index} written to {ns.out}", file=sys.stderr)
            case "school-list":
                for school in _shown(c.iter_schools(page_size=_page_size(ns)), ns):
                    out.show(school, fmt_school)
            case "teacher-register":
                certs = [path.read_bytes() for path in ns.cert]
                out.show(
                    c.register_teacher(ns.code, ns.name, certs, school=ns.school, request_id=ns.request_id), fmt_teacher
                )
            case "teacher-list":
                for teacher in _shown(c.iter_teachers(ns.school, page_size=_page_size(ns)), ns):
                    out.show(teacher, fmt_teacher)
            case "teacher-get":
                out.show(c.get_teacher(teacher_ref(ns.teacher)), fmt_teacher)
            case "duty-assign":
                duty = c.assign_duty(
                    parse_duty_key(ns.duty), teacher_ref(ns.teacher), school=ns.school, request_id=ns.request_id
                )
                out.show(duty, fmt_duty)
            case "duty-list":
                for d in c.list_duties(school=ns.school, teacher_id=teacher_ref(ns.teacher)):
                    out.show(d, fmt_duty)
            case "task-list":
                for task in _shown(c.iter_signing_tasks(teacher_ref(ns.teacher), page_size=_page_size(ns)), ns):
                    out.show(task, fmt_task)
            case "depart":
                pairs = []
                for item in ns.duty:
                    key, sep, who = item.partition("=")
                    if not sep:
                        raise UsageError(f"--duty wants DUTY_KEY=TEACHER, not {item!r}")
                    pairs.append((parse_duty_key(key), teacher_ref(who)))
                handoff, receipt = c.record_departure(
                    teacher_ref(ns.teacher), REASONS[ns.reason], ns.effective, end_date=ns.until,
                    replacement=teacher_ref(ns.replacement), replacements=pairs, request_id=ns.request_id,
                )  # fmt: skip
                out.show(handoff, lambda h: f"{fmt_handoff(h)}  [log entry {receipt.index}]")
            case "peer-receipts":
                for held in c.list_peer_receipts(ns.transfer_id):
                    saved = save_peer_bundle(held, ns.transfer_id, ns.out_dir)
                    out.show(held, functools.partial(fmt_peer_receipt, saved=saved))
            case "deliveries":
                for peer in c.list_deliveries():
                    out.show(peer, fmt_deliveries)
            case "handoff-list":
                for h in _shown(
                    c.iter_handoffs(ns.school, teacher_id=teacher_ref(ns.teacher), page_size=_page_size(ns)), ns
                ):
                    out.show(h, fmt_handoff)
            case "page-add":
                track = pages_pb2.LOCK_TRACK_SUPPLEMENTARY if ns.supplementary else pages_pb2.LOCK_TRACK_COMPLETED
                added = c.add_page(
                    ns.lookup_code, ns.school_year, ns.grade, ns.class_name, ns.payload.read_bytes(),
                    [parse_requirement(r) for r in ns.require], media_type=ns.media_type, segment=ns.segment,
                    lock_track=track, request_id=ns.request_id,
                )  # fmt: skip
                out.show(added.page, fmt_page)
            case "page-list":
                for page in _shown(c.iter_pages(ns.lookup_code, page_size=_page_size(ns)), ns):
                    out.show(page, fmt_page)
            case "page-get":
                page = c.get_page(ns.page_id)
                out.show(page, fmt_page)
                if not out.as_json:
                    for task in page.tasks:
                        print("  " + fmt_task(task))
            case "page-sign":
                page = c.get_page(ns.page_id)
                try:
                    signature = sign_digest(load_key(ns.key.read_bytes()), page.digest)
                except (ValueError, TypeError) as exc:  # not PEM, encrypted, or a key type the node does not take
                    raise UsageError(f"--key {ns.key}: cannot sign with this key: {exc}") from None
                signed = c.sign_page(
                    ns.page_id, parse_requirement(ns.requirement), teacher_ref(ns.teacher), page.digest, signature,
                    request_id=ns.request_id,
                )  # fmt: skip
                out.show(signed, fmt_page)
            case "page-lock":
                out.show(c.lock_page(ns.page_id, request_id=ns.request_id).page, fmt_page)


def _positive(kind: Callable[[str], float], *, zero: bool = False) -> Callable[[str], float]:
    """An option's parser: a finite number above 0 (or 0 and above, with `zero`)."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        if value < 0 or (value == 0 and not zero):
            raise argparse.ArgumentTypeError(f"must be {'0 or above' if zero else 'above 0'}, not {text}")
        return value

    return parse


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    try:
        ns = parser.parse_args(args)
    except BadCommandLine as bad:
        if "--json" not in args:
            argparse.ArgumentParser.error(bad.parser, bad.message)  # usage and message on stderr, exit status 2
        message = f"{bad.parser.prog}: {bad.message}"
        print(json.dumps({"code": "USAGE", "message": message}, ensure_ascii=False), file=sys.stderr)
        return 2
    if ns.command == "completion":
        sys.stdout.write(completion.script(ns.shell, parser))
        return 0
    as_json = bool(ns.json)

    def local_failure(message: str) -> None:
        if as_json:
            print(json.dumps({"code": "USAGE", "message": message}, ensure_ascii=False), file=sys.stderr)
        else:
            print(f"transfer-cli: {message}", file=sys.stderr)

    try:
        run(ns, Output(as_json))
    except TransferError as err:
        request_id = getattr(ns, "request_id", None)
        if as_json:
            print(json.dumps(refusal_json(err, request_id), ensure_ascii=False), file=sys.stderr)
            return 3 if err.transient else 1
        where = "; ".join(f"{v.field}: {v.description}" for v in err.violations)
        line = f"transfer-cli: {_describe(err)}"
        if where and where not in err.message:
            line += f" ({where})"
        if err.transient and request_id:
            line += f"; it may have been done: to retry safely, run it again with --request-id {request_id}"
        if err.trace_id:  # what the node's operator greps its log for
            line += f" (trace {err.trace_id})"
        print(line, file=sys.stderr)
        return 3 if err.transient else 1
    except (UsageError, ClientTlsError) as err:
        local_failure(str(err))
        return 2
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as other tools do
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as err:
        local_failure(f"{err.strerror or err}: {getattr(err, 'filename', '') or ''}")
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
