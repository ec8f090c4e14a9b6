"""Every call is traceable: one log line per call with its trace id, W3C traceparent in and out, across nodes."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.federation import wait_for
from tests.staffing import new_record
from tests.support import ServerProcess, new_lookup_code, new_national_id, with_schools, write_config
from tests.support import process_client as _client
from tests.test_federation import StartPair, start_pair  # noqa: F401 (fixtures)
from transfer.client import NO_RETRY, ClientTls, TransferError
from transfer.client.cli import main as cli_main
from transfer.server.config import ConfigError, load
from transfer.tracecontext import TraceParent, parse
from transfer.v1 import common_pb2, schools_pb2, transfers_pb2

pytestmark = pytest.mark.slow

SENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def _node(tmp_path: Path, pki: Path, logging_extra: str = "", level: str = "INFO") -> ServerProcess:
    """A node process on SQLite; `logging_extra` goes into its [logging] section."""
    cfg = write_config(tmp_path / "node.toml", pki=pki, database_url=f"sqlite:///{tmp_path / 'node.db'}",
                       extra=logging_extra)  # fmt: skip
    cfg.write_text(cfg.read_text().replace('level = "INFO"', f'level = "{level}"'))
    proc = ServerProcess(cfg, tmp_path / "server.log")
    proc.start()
    return proc


@pytest.fixture
def server(tmp_path: Path, pki: Path) -> Iterator[ServerProcess]:
    with with_schools(_node(tmp_path, pki), pki) as proc:
        yield proc


def _lines(log_path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log_path.read_text(encoding="utf-8").splitlines() if line.startswith("{")]


def _calls(log_path: Path, method_suffix: str = "") -> list[dict[str, Any]]:
    return [
        e
        for e in _lines(log_path)
        if e["msg"] == "call" and e["logger"] == "transfer.call" and e["method"].endswith(method_suffix)
    ]


def _call_line(log_path: Path, trace_id: str) -> dict[str, Any]:
    """The call line with `trace_id`; waits for it (the node writes it as the call ends)."""
    return wait_for(
        f"the call line of trace {trace_id}",
        lambda: next((e for e in _calls(log_path) if e["trace_id"] == trace_id), None),
        timeout=10,
    )


def test_a_refused_call_is_logged_with_caller_request_id_status_duration_and_trace(
    server: ServerProcess, pki: Path
) -> None:
    """A refused mutation's line names method, principal, request_id, code, reason, duration and the trace id."""
    request_id, lookup_code = str(uuid.uuid4()), new_lookup_code()
    with _client(server, pki, "school-S1", NO_RETRY) as s1, pytest.raises(TransferError) as refused:
        s1.initiate_transfer(lookup_code, "S2", request_id=request_id)
    err = refused.value
    assert err.reason == "NOT_CUSTODIAN" and len(err.trace_id) == 32
    line = _call_line(server.log_path, err.trace_id)
    assert line["level"] == "INFO"
    assert line["method"] == "/transfer.v1.TransferService/InitiateTransfer"
    assert line["principal"] == "school:S1"
    assert line["request_id"] == request_id
    assert (line["code"], line["reason"]) == (err.code.name, "NOT_CUSTODIAN")
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    assert len(line["span_id"]) == 16
    # the domain's own line for the refusal carries the same trace id
    assert any(e["msg"] == "refused" and e.get("trace_id") == err.trace_id for e in _lines(server.log_path))
    text = server.log_path.read_text(encoding="utf-8")
    assert lookup_code not in text and "Trường" not in text


def test_a_stream_is_logged_once_when_it_ends_with_the_messages_it_sent(tmp_path: Path, pki: Path) -> None:
    """A WatchTransfers stream the caller closes makes one line, when it ends, counting the events it sent."""
    proc = _node(tmp_path, pki, 'reads = "info"')
    try:
        with _client(proc, pki, "province-admin") as admin:
            for code in ("S1", "S2"):
                admin.register_school(code, f"Trường {code}")
        with _client(proc, pki, "school-S1") as s1:
            for _ in range(2):
                s1.initiate_transfer(new_record(s1), "S2")
            events = s1.watch_transfers("S1", resume=False)
            seen = [next(events), next(events)]
            events.close()
        assert len(seen) == 2
        lines = wait_for("the WatchTransfers line", lambda: _calls(proc.log_path, "/WatchTransfers"))
        assert len(lines) == 1
        assert lines[0]["messages"] >= 2 and lines[0]["code"] in ("CANCELLED", "OK")
        assert lines[0]["principal"] == "school:S1" and lines[0]["level"] == "INFO"
    finally:
        proc.stop()


def test_a_successful_mutation_is_logged_at_info_and_a_read_at_debug_by_default(
    server: ServerProcess, pki: Path
) -> None:
    """A mutation that succeeds makes an INFO line with code OK; a read makes none at INFO (logging.reads = debug)."""
    with _client(server, pki, "school-S1") as s1:
        code = new_lookup_code()
        s1.register_record(code, new_national_id(), common_pb2.RECORD_LEVEL_PRIMARY)
        s1.get_record(code)
    registered = wait_for("the RegisterRecord line", lambda: _calls(server.log_path, "/RegisterRecord"))
    assert [(e["level"], e["code"], e["reason"], e["principal"]) for e in registered] == [
        ("INFO", "OK", "", "school:S1")
    ]
    assert registered[0]["request_id"]
    assert _calls(server.log_path, "/GetRecord") == []


@pytest.mark.parametrize(("reads", "level"), [("info", "INFO"), ("debug", "DEBUG")])
def test_reads_are_logged_as_logging_reads_says(tmp_path: Path, pki: Path, reads: str, level: str) -> None:
    """logging.reads = "info" logs every read at INFO; "debug" at DEBUG, shown when logging.level is DEBUG."""
    proc = _node(tmp_path, pki, f'reads = "{reads}"', level="DEBUG" if reads == "debug" else "INFO")
    try:
        with _client(proc, pki, "province-admin") as admin:
            admin.list_schools()
        lines = wait_for("the ListSchools line", lambda: _calls(proc.log_path, "/ListSchools"))
        assert [(e["level"], e["code"], e["principal"][:17]) for e in lines] == [(level, "OK", "province_admin:01")]
        assert "request_id" not in lines[0]
    finally:
        proc.stop()


def test_sampled_reads_log_some_and_not_all(tmp_path: Path, pki: Path) -> None:
    """logging.reads = "sample:0.5": of 80 reads, some are at INFO and some are not (each missed with odds 2^-80)."""
    proc = _node(tmp_path, pki, 'reads = "sample:0.5"')
    try:
        with _client(proc, pki, "province-admin") as admin:
            for _ in range(80):
                admin.list_schools()
            admin.register_school("S3", "Trường S3")  # the last line: every read's line is written before it
        wait_for("the RegisterSchool line", lambda: _calls(proc.log_path, "/RegisterSchool"))
        logged = len(_calls(proc.log_path, "/ListSchools"))
        assert 0 < logged < 80
    finally:
        proc.stop()


def test_logging_reads_is_validated_strictly(tmp_path: Path) -> None:
    """debug, info and sample:<share in (0, 1]> are accepted; anything else is a configuration error."""
    base = '[node]\nprovince = "01"\n[database]\nurl = "sqlite:///x.db"\n[log]\nkey_file = "log.key"\n'
    base += '[tls]\nca_file = "ca.pem"\ncert_file = "n.pem"\nkey_file = "n.key"\n[logging]\n'
    path = tmp_path / "node.toml"
    for good, share in (("debug", 0.0), ("info", 1.0), ("sample:0.01", 0.01), ("sample:1", 1.0), ("sample:.5", 0.5)):
        path.write_text(base + f'reads = "{good}"\n')
        assert load(path).log_reads == share
    for bad in ("DEBUG", "sample:0", "sample:1.5", "sample:-0.1", "sample:nan", "sample:1e-2", "sample:", "all", ""):
        path.write_text(base + f'reads = "{bad}"\n')
        with pytest.raises(ConfigError, match=r"logging\.reads"):
            load(path)


def _get_school(server: ServerProcess, pki: Path, metadata: tuple[tuple[str, str], ...]) -> tuple[Any, Any]:
    tls = ClientTls.from_pki(pki, "province-admin")
    with grpc.secure_channel(server.address, tls.credentials()) as channel:
        stub = schools_pb2.DESCRIPTOR.services_by_name["SchoolDirectoryService"]
        method = channel.unary_unary(
            f"/{stub.full_name}/GetSchool",
            request_serializer=schools_pb2.GetSchoolRequest.SerializeToString,
            response_deserializer=schools_pb2.GetSchoolResponse.FromString,
        )
        try:
            _, call = method.with_call(schools_pb2.GetSchoolRequest(code="S1"), timeout=5, metadata=metadata)
        except grpc.RpcError as err:  # a refusal: its call is the error
            call = err
        return call.code(), dict(call.trailing_metadata())


def test_a_client_sent_traceparent_is_logged_and_returned(tmp_path: Path, pki: Path) -> None:
    """The trace id of a valid traceparent is the call line's, and comes back in a traceparent trailer with the node's span."""
    proc = _node(tmp_path, pki, 'reads = "info"')
    try:
        with _client(proc, pki, "province-admin") as admin:
            admin.register_school("S1", "Trường S1")
        code, trailing = _get_school(proc, pki, (("traceparent", SENT),))
        assert code is grpc.StatusCode.OK
        back = parse(trailing["traceparent"])
        assert back is not None and back.trace_id == SENT[3:35] and back.span_id != SENT[36:52]
        line = _call_line(proc.log_path, SENT[3:35])
        assert line["method"].endswith("/GetSchool") and line["span_id"] == back.span_id
        # a refusal's trailers hold the trace too, beside the status details
        refused_code, refused_trailing = _refused_get(proc, pki)
        assert refused_code is grpc.StatusCode.NOT_FOUND
        assert "grpc-status-details-bin" in refused_trailing
        refused_trace = parse(refused_trailing["traceparent"])
        assert refused_trace is not None and refused_trace.trace_id == "5" * 32
    finally:
        proc.stop()


def _refused_get(server: ServerProcess, pki: Path) -> tuple[Any, Any]:
    tls = ClientTls.from_pki(pki, "province-admin")
    with grpc.secure_channel(server.address, tls.credentials()) as channel:
        method = channel.unary_unary(
            "/transfer.v1.SchoolDirectoryService/GetSchool",
            request_serializer=schools_pb2.GetSchoolRequest.SerializeToString,
            response_deserializer=schools_pb2.GetSchoolResponse.FromString,
        )
        with pytest.raises(grpc.RpcError) as refused:
            method(
                schools_pb2.GetSchoolRequest(code="S7"),
                timeout=5,
                metadata=(("traceparent", TraceParent("5" * 32, "6" * 16).header()),),
            )
        return refused.value.code(), dict(refused.value.trailing_metadata())  # type: ignore[attr-defined]


INVALID = [
    "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",  # upper-case hex
    "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # all-zero trace id
    "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # all-zero parent id
    "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # version ff
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",  # version 00 with more
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",  # short
    "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",  # separators
    "",
]


def test_traceparent_parsing_follows_the_w3c_rules() -> None:
    """Version 00 exactly; a later version by its first fields; invalid values give None."""
    assert parse(SENT) == TraceParent("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "01")
    later = parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09-whatever")
    assert later is not None and later.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736" and later.flags == "09"
    assert parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09x") is None
    for value in INVALID:
        assert parse(value) is None, value


def test_an_invalid_traceparent_is_replaced_not_refused(tmp_path: Path, pki: Path) -> None:
    """Each invalid traceparent is ignored: the call succeeds under a new trace id, in the line and the trailer."""
    proc = _node(tmp_path, pki, 'reads = "info"')
    try:
        with _client(proc, pki, "province-admin") as admin:
            admin.register_school("S1", "Trường S1")
        for metadata in [(("traceparent", v),) for v in INVALID]:
            code, trailing = _get_school(proc, pki, metadata)
            assert code is grpc.StatusCode.OK, metadata
            made = parse(trailing["traceparent"])
            assert made is not None and made.trace_id != SENT[3:35], metadata
            _call_line(proc.log_path, made.trace_id)
    finally:
        proc.stop()


def test_the_cli_prints_the_trace_id_with_a_refusal(
    server: ServerProcess, pki: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """transfer-cli's refusal line ends with (trace <id>), and the node's line for the call has that id."""
    args = ["--address", server.address, "--pki", str(pki), "--as", "school-S1", "--attempts", "1"]
    assert cli_main([*args, "initiate", new_lookup_code(), "S2"]) == 1
    err = capsys.readouterr().err.strip()
    assert "NOT_CUSTODIAN" in err and "(trace " in err, err
    trace_id = err.rsplit("(trace ", 1)[1].rstrip(")")
    assert len(trace_id) == 32
    line = _call_line(server.log_path, trace_id)
    assert line["reason"] == "NOT_CUSTODIAN" and line["principal"] == "school:S1"


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_a_transfer_is_followed_across_both_nodes_by_its_trace_id(start_pair: StartPair, engine: str) -> None:  # noqa: F811
    """The trace id a client sends with an inter-province offer is on the offer's outbox row, on the sending node's
    call and delivery lines and on the receiving node's PeerService line; no lookup code or school name is logged."""
    pair = start_pair(engine)
    s1 = pair.a.client("school-S1")
    code = new_record(s1)
    trace = TraceParent("a1" * 16, "b2" * 8)
    request = transfers_pb2.InitiateTransferRequest(
        request_id=str(uuid.uuid4()), lookup_code=code, to_school="D1", to_province="79"
    )
    response = s1.transfers.InitiateTransfer(request, timeout=10, metadata=(("traceparent", trace.header()),))
    transfer_id = response.transfer.id
    d1 = pair.b.client("school-D1")
    wait_for(
        "the offer at 79",
        lambda: any(t.id == transfer_id for t in d1.iter_transfers(transfers_pb2.TRANSFER_DIRECTION_INCOMING)),
    )
    sent = _call_line(pair.a.proc.log_path, trace.trace_id)
    assert sent["method"].endswith("/InitiateTransfer") and sent["principal"] == "school:S1"
    assert [row[-1] for row in pair.a.rows("outbox")] == [trace.trace_id]
    delivered = wait_for(
        "the delivery line at 01",
        lambda: [e for e in _lines(pair.a.proc.log_path) if e["msg"] == "delivered"],
    )
    assert [e.get("trace_id") for e in delivered] == [trace.trace_id]
    offered = wait_for(
        "the OfferTransfer line at 79",
        lambda: [e for e in _calls(pair.b.proc.log_path, "/OfferTransfer") if e["code"] == "OK"],
    )
    assert offered[0]["trace_id"] == trace.trace_id and offered[0]["principal"].startswith("peer:01")
    assert offered[0]["level"] == "INFO"
    for node in (pair.a, pair.b):
        text = node.proc.log_path.read_text(encoding="utf-8")
        assert code not in text
        assert "Trường" not in text and "Hà Nội" not in text and "Quận" not in text
