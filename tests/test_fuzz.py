"""Fuzz every RPC of the contract against a real node: requests built by Hypothesis from the proto
descriptors (so a new RPC or field is covered without editing this file), and raw bytes that are
not a request at all.

What must hold for every call, whoever makes it: never INTERNAL or UNKNOWN; a refusal carries an
ErrorInfo reason and its status (message and details) stays under STATUS_BOUND bytes. Afterwards the
log verifies and holds exactly the entries the successful calls were given receipts for, and the
records are exactly those that successful registrations created.

`make test` runs a short search (FUZZ_EXAMPLES, default 60 per engine and test); `make fuzz` runs
a longer one.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor as desc
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import transfer.v1
from tests.support import RunningNode, assert_log_verifies
from transfer.client import ClientTls
from transfer.v1 import common_pb2

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "60"))
# A refusal's message plus its encoded details: well under gRPC's default 8 KiB metadata limit.
STATUS_BOUND = 4096
CALLERS = ["school-S1", "school-admin-S1", "school-S2", "province-admin", "auditor", "node"]
SCHOOLS = ["", "S1", "S1", "S2", "S2", "S3", "S9", "01", "79"]
# Small pools, so that generated calls meet each other: a record registered by one call is the
# subject of the next, a request id is repeated with another body.
LOOKUP_CODES = [uuid.UUID(int=i * 7919 + 1).hex for i in range(6)]
NATIONAL_IDS = [f"{i:012d}" for i in (*range(1, 12), 1000000000001)]
REQUEST_IDS = [str(uuid.UUID(int=i + 1)) for i in range(8)]
ODD_TEXT = [
    "",
    " ",
    "2026-2027",
    "２０２６-２０２７",
    "٢٠٢٦-٢٠٢٧",
    "2026-x",
    "9998-10000",
    "\x00",
    "a\u202eb",
    "e\u0301",
    "x" * 300,
    "'; DROP TABLE records; --",
    "../../etc/passwd",
    "\U0001f600",
]


def _modules() -> list[Any]:
    """Every generated `_pb2` module of the contract."""
    names = [m.name for m in pkgutil.iter_modules(transfer.v1.__path__) if m.name.endswith("_pb2")]
    return [importlib.import_module(f"transfer.v1.{name}") for name in sorted(names)]


def _methods() -> list[desc.MethodDescriptor]:
    found = []
    for module in _modules():
        for service in module.DESCRIPTOR.services_by_name.values():
            found.extend(service.methods)
    return found


METHODS = _methods()
BY_PATH = {f"/{m.containing_service.full_name}/{m.name}": m for m in METHODS}


def _path(method: desc.MethodDescriptor) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


# Ids the node handed out (transfer, page, teacher, handoff ids), so later calls can name real things.
LEARNED_IDS: list[str] = []


def _learned_id() -> st.SearchStrategy[str]:
    return st.integers(0, 10_000).map(lambda i: LEARNED_IDS[i % len(LEARNED_IDS)] if LEARNED_IDS else "")


def _plausible_text(name: str) -> st.SearchStrategy[str]:
    """Values a real caller would send in a field of this name."""
    if name == "request_id":
        return st.one_of(st.sampled_from(REQUEST_IDS), st.uuids().map(str))
    if "lookup_code" in name:
        return st.sampled_from(LOOKUP_CODES)
    if "national_id" in name:
        return st.sampled_from(NATIONAL_IDS)
    if "province" in name:
        return st.sampled_from(["", "01", "79"])
    if "school" in name or name == "code":
        return st.sampled_from(SCHOOLS)
    if "year" in name:
        return st.sampled_from(["2026-2027", "2025-2026", "2027-2028"])
    if name.endswith("_id") or name == "id":
        return st.one_of(_learned_id(), st.sampled_from(["", uuid.UUID(int=5).hex]))
    if name.endswith("class_name") or name == "klass":
        return st.sampled_from(["3A", "3B"])
    return st.sampled_from(["", "a", "3A", "toan", "S1", "Trường Tiểu học Kim Liên", "chuyển nhà"])


_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}


def _integer(low: int, high: int) -> st.SearchStrategy[int]:
    edges = [v for v in (0, 1, 2, 5, 50, 1000, 1001, -1, low, high, 2**31 - 1, 2**53 + 1) if low <= v <= high]
    return st.one_of(st.sampled_from(edges), st.integers(low, high))


def _scalar(f: FieldDescriptor, depth: int, plausible: bool) -> st.SearchStrategy[Any]:
    """Values of one field: what a real caller sends (`plausible`) or anything its type can hold."""
    t = f.type
    if t == FieldDescriptor.TYPE_STRING:
        if plausible:
            return _plausible_text(f.name)
        return st.one_of(st.sampled_from(ODD_TEXT), st.text(max_size=24), _plausible_text(f.name))
    if t == FieldDescriptor.TYPE_BYTES:
        if plausible:
            return st.just(b"%PDF-1.7 hoc ba")
        return st.one_of(st.binary(max_size=48), st.sampled_from([b"", b"-----BEGIN CERTIFICATE-----\n"]))
    if t == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        return st.floats(allow_nan=True, allow_infinity=True, width=32 if t == FieldDescriptor.TYPE_FLOAT else 64)
    if t == FieldDescriptor.TYPE_ENUM:
        known = [v.number for v in f.enum_type.values]
        if plausible:
            return st.sampled_from([n for n in known if n] or known)
        return st.one_of(st.sampled_from(known), st.integers(-3, 1000))
    if t in _INT_RANGES:
        return st.integers(0, 5) if plausible else _integer(*_INT_RANGES[t])
    assert t == FieldDescriptor.TYPE_MESSAGE, f"unhandled field type {t} of {f.full_name}"
    return _message(f.message_type, depth + 1)


def _message(d: desc.Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    """Messages of type `d`: half of them with every field set as a real caller would, the others with
    any subset of fields holding anything their type allows; nested at most three deep."""
    return st.sampled_from([True, True, False]).flatmap(lambda plausible: _message_of(d, depth, plausible))


def _message_of(d: desc.Descriptor, depth: int, plausible: bool) -> st.SearchStrategy[Message]:
    cls = GetMessageClass(d)
    if depth > 3:
        return st.just(cls())
    parts: dict[str, st.SearchStrategy[Any]] = {}
    for f in d.fields:
        if f.type == FieldDescriptor.TYPE_MESSAGE and f.message_type.GetOptions().map_entry:
            key, value = f.message_type.fields_by_name["key"], f.message_type.fields_by_name["value"]
            parts[f.name] = st.dictionaries(
                _scalar(key, depth, plausible), _scalar(value, depth, plausible), max_size=3
            )
        elif f.is_repeated:
            parts[f.name] = st.lists(_scalar(f, depth, plausible), min_size=int(plausible), max_size=3)
        elif plausible:
            parts[f.name] = _scalar(f, depth, plausible)
        else:
            parts[f.name] = st.one_of(st.none(), _scalar(f, depth, plausible))

    def build(values: dict[str, Any]) -> Message:
        m = cls()
        for f in d.fields:
            v = values[f.name]
            if v is None:
                continue
            target = getattr(m, f.name)
            if f.type == FieldDescriptor.TYPE_MESSAGE and f.message_type.GetOptions().map_entry:
                message_values = f.message_type.fields_by_name["value"].type == FieldDescriptor.TYPE_MESSAGE
                for k, item in v.items():
                    if message_values:
                        target[k].CopyFrom(item)
                    else:
                        target[k] = item
            elif f.is_repeated:
                if f.type == FieldDescriptor.TYPE_MESSAGE:
                    for item in v:
                        target.add().CopyFrom(item)
                else:
                    target.extend(v)
            elif f.type == FieldDescriptor.TYPE_MESSAGE:
                target.CopyFrom(v)
            else:
                setattr(m, f.name, v)
        return m

    return st.fixed_dictionaries(parts).map(build)


def _learn(m: Message) -> None:
    """Keep the ids a response names, for later calls to use."""
    for f, value in m.ListFields():
        if f.type == FieldDescriptor.TYPE_STRING and (f.name == "id" or f.name.endswith("_id")):
            for item in value if f.is_repeated else [value]:
                if item and item not in LEARNED_IDS and len(LEARNED_IDS) < 200:
                    LEARNED_IDS.append(item)
        elif f.type == FieldDescriptor.TYPE_MESSAGE and not f.message_type.GetOptions().map_entry:
            for item in value if f.is_repeated else [value]:
                _learn(item)


@dataclass
class Outcome:
    """What the node answered, across a whole search."""

    receipts: set[tuple[int, bytes]] = field(default_factory=set)
    registered: set[str] = field(default_factory=set)
    codes: dict[str, int] = field(default_factory=dict)


def _receipts(m: Message) -> Iterator[Message]:
    """Every LogReceipt anywhere in a response."""
    for f, value in m.ListFields():
        if f.type != FieldDescriptor.TYPE_MESSAGE:
            continue
        items = value if f.is_repeated else [value]
        for item in items:
            if not isinstance(item, Message):
                continue
            if item.DESCRIPTOR.full_name == "transfer.v1.LogReceipt":
                yield item
            else:
                yield from _receipts(item)


def _check_refusal(err: grpc.RpcError, method: str) -> None:
    code = err.code()
    assert code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), f"{method}: {code.name} {err.details()}"
    trailing = dict(err.trailing_metadata() or ())
    raw = trailing.get("grpc-status-details-bin", b"")
    size = len((err.details() or "").encode()) + len(raw)
    assert size <= STATUS_BOUND, f"{method}: a {size}-byte status"
    status = rpc_status.from_call(err)
    assert status is not None, f"{method}: {code.name} without details: {err.details()}"
    reasons = []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reasons.append(info.reason)
    assert reasons and all(reasons), f"{method}: {code.name} without an ErrorInfo reason: {err.details()}"
    assert err.details(), f"{method}: a refusal must say why"


class Caller:
    """One channel per identity to the node under test."""

    def __init__(self, node: RunningNode) -> None:
        self.node = node
        self.channels = {
            who: grpc.secure_channel(node.address, ClientTls.from_pki(node.pki, who).credentials()) for who in CALLERS
        }

    def close(self) -> None:
        for channel in self.channels.values():
            channel.close()

    def call(self, who: str, method: desc.MethodDescriptor, request: Message, outcome: Outcome) -> None:
        channel = self.channels[who]
        response_type = GetMessageClass(method.output_type)
        path = _path(method)
        try:
            if method.server_streaming:
                stream = channel.unary_stream(path, response_deserializer=response_type.FromString)(
                    request.SerializeToString(), timeout=0.3
                )
                for _ in zip(range(3), stream, strict=False):
                    pass
                stream.cancel()
                outcome.codes["OK"] = outcome.codes.get("OK", 0) + 1
                return
            response = channel.unary_unary(path, response_deserializer=response_type.FromString)(
                request.SerializeToString(), timeout=10
            )
        except grpc.RpcError as err:
            code = err.code()
            outcome.codes[code.name] = outcome.codes.get(code.name, 0) + 1
            if method.server_streaming and code in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
                return  # the caller's own deadline or cancellation ended a stream that had nothing to say
            _check_refusal(err, path)
            return
        outcome.codes["OK"] = outcome.codes.get("OK", 0) + 1
        outcome.receipts.update((r.index, r.leaf) for r in _receipts(response))
        _learn(response)
        if method.name == "RegisterRecord":
            outcome.registered.add(request.lookup_code)


def _calls() -> st.SearchStrategy[tuple[str, desc.MethodDescriptor, Message]]:
    return st.sampled_from(sorted(BY_PATH)).flatmap(
        lambda path: st.tuples(st.sampled_from(CALLERS), st.just(BY_PATH[path]), _message(BY_PATH[path].input_type))
    )


def _log_entries(node: RunningNode) -> set[tuple[int, bytes]]:
    return {(e.index, e.leaf) for e in node.client("auditor").iter_entries(page_size=1000)}


def _registered_records(node: RunningNode) -> set[str]:
    admin = node.client("province-admin")
    return {r.lookup_code for school in ("S1", "S2", "S3") for r in admin.iter_records(school, page_size=1000)}


def _explained(node: RunningNode, outcome: Outcome, before: set[tuple[int, bytes]], records: set[str]) -> None:
    """The log holds exactly the entries successful calls got receipts for; the records are those registered."""
    assert node.config_path is not None
    assert_log_verifies(node.config_path)
    new_entries = _log_entries(node) - before
    assert new_entries == outcome.receipts - before, "log entries that no successful call was given a receipt for"
    assert _registered_records(node) - records == outcome.registered - records


def test_the_fuzz_covers_every_rpc_of_the_contract() -> None:
    """The fuzz's list of RPCs is read from the descriptors: every service of every proto file is in it."""
    services = {m.containing_service.full_name for m in METHODS}
    assert {
        "transfer.v1.RecordService",
        "transfer.v1.TransferService",
        "transfer.v1.SchoolDirectoryService",
        "transfer.v1.StaffService",
        "transfer.v1.PageService",
        "transfer.v1.LogService",
        "transfer.v1.PeerService",
        "transfer.v1.DeliveryService",
    } <= services
    assert len(METHODS) >= 35


def test_generated_requests_never_answer_internal_or_unknown(node: RunningNode) -> None:
    """Hypothesis requests of every RPC, from every kind of caller: each answer is a result or a bounded
    refusal with a reason, never INTERNAL or UNKNOWN; the log and the records are exactly what the
    successful calls explain."""
    # Something for the calls to be about: records at S1 and S2, and transfers between them.
    s1, s2 = node.client("school-S1"), node.client("school-S2")
    for i, (client, to) in enumerate([(s1, "S2"), (s1, "S3"), (s2, "S1")]):
        client.register_record(LOOKUP_CODES[i], NATIONAL_IDS[i], common_pb2.RECORD_LEVEL_PRIMARY)
        LEARNED_IDS.append(client.initiate_transfer(LOOKUP_CODES[i], to).transfer.id)
    caller = Caller(node)
    outcome = Outcome()
    before = _log_entries(node)
    records = _registered_records(node)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
    )
    @given(st.lists(_calls(), min_size=1, max_size=8))
    def run(calls: list[tuple[str, desc.MethodDescriptor, Message]]) -> None:
        for who, method, request in calls:
            caller.call(who, method, request, outcome)

    try:
        run()
    finally:
        caller.close()
    _explained(node, outcome, before, records)
    assert outcome.codes.get("OK", 0) > 0, f"no call succeeded: {outcome.codes}"


@pytest.mark.parametrize("garbage", ["random", "bad-utf8"])
def test_bytes_that_are_not_a_request_are_refused_as_invalid_argument(node: RunningNode, garbage: str) -> None:
    """Raw bytes sent to every RPC, garbage or a string field holding invalid UTF-8: each answers
    INVALID_ARGUMENT (or a refusal of the caller), with a reason, never INTERNAL or UNKNOWN."""
    caller = Caller(node)
    outcome = Outcome()

    def bad_utf8(method: desc.MethodDescriptor) -> bytes:
        strings = [f for f in method.input_type.fields if f.type == FieldDescriptor.TYPE_STRING]
        if not strings:
            return b"\xff\xff\xff"
        tag = (strings[0].number << 3) | 2
        key = bytes([tag]) if tag < 128 else bytes([(tag & 0x7F) | 0x80, tag >> 7])
        return key + b"\x02\xc3\x28"

    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(sorted(BY_PATH)), st.sampled_from(CALLERS), st.binary(min_size=1, max_size=64))
    def run(path: str, who: str, data: bytes) -> None:
        method = BY_PATH[path]
        payload = data if garbage == "random" else bad_utf8(method)
        channel = caller.channels[who]
        try:
            if method.server_streaming:
                stream = channel.unary_stream(path)(payload, timeout=0.3)
                for _ in zip(range(3), stream, strict=False):
                    pass
                stream.cancel()
            else:
                channel.unary_unary(path)(payload, timeout=10)
        except grpc.RpcError as err:
            if method.server_streaming and err.code() in (
                grpc.StatusCode.DEADLINE_EXCEEDED,
                grpc.StatusCode.CANCELLED,
            ):
                return
            _check_refusal(err, path)
            if garbage == "bad-utf8":
                assert err.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED), (
                    f"{path}: {err.code().name} {err.details()}"
                )
            outcome.codes[err.code().name] = outcome.codes.get(err.code().name, 0) + 1

    try:
        run()
    finally:
        caller.close()
