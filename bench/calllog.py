"""What the call log costs per call: the same server with `CallLog` on and off, in one run.

    python -m bench.calllog [--calls 2000] [--rounds 5]

One grpc.aio server over mTLS (a dev PKI made in a temporary directory) serves
a trivial handler under two of the node's method names: `RegisterRecord` (a
mutation: a JSON line at INFO for every call, written to /dev/null through the
node's formatter and trace filter) and `GetRecord` (a read at DEBUG: no line).
Rounds alternate on and off so drift in the machine's load falls on both.
Prints the mean time per call of each and the difference; asserts nothing.

On a loaded machine the end-to-end difference drowns in gRPC's own jitter,
so the interceptor's own work per call (trace id, timing, the line) is also
timed alone: the wrapped handler called directly with a stand-in context.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509

from transfer.devpki import make_dev_pki
from transfer.server.auth import Authenticator
from transfer.server.calllog import CallLog
from transfer.server.logs import JsonFormatter, TraceIdFilter
from transfer.tracecontext import TRACEPARENT, new_trace
from transfer.v1 import records_pb2


async def _register(request: Any, context: Any) -> records_pb2.RegisterRecordResponse:
    return records_pb2.RegisterRecordResponse()


async def _get(request: Any, context: Any) -> records_pb2.GetRecordResponse:
    return records_pb2.GetRecordResponse()


def _log_to_devnull() -> None:
    handler = logging.StreamHandler(open(os.devnull, "w", encoding="utf-8"))  # noqa: SIM115 (lives as long as the run)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(TraceIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


async def _main(calls: int, rounds: int) -> None:
    _log_to_devnull()
    with tempfile.TemporaryDirectory() as tmp:
        pki = Path(tmp)
        make_dev_pki(pki, "01", ["S1"])
        auth = Authenticator("01", own_cas=x509.load_pem_x509_certificates((pki / "ca.pem").read_bytes()))
        calllog = CallLog(auth, 0.0)
        server = grpc.aio.server(interceptors=[calllog])
        handlers = {
            "RegisterRecord": grpc.unary_unary_rpc_method_handler(
                _register,
                records_pb2.RegisterRecordRequest.FromString,
                records_pb2.RegisterRecordResponse.SerializeToString,
            ),
            "GetRecord": grpc.unary_unary_rpc_method_handler(
                _get, records_pb2.GetRecordRequest.FromString, records_pb2.GetRecordResponse.SerializeToString
            ),
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("transfer.v1.RecordService", handlers),))
        creds = grpc.ssl_server_credentials(
            [((pki / "node.key").read_bytes(), (pki / "node.pem").read_bytes())],
            root_certificates=(pki / "ca.pem").read_bytes(),
            require_client_auth=True,
        )
        port = server.add_secure_port("127.0.0.1:0", creds)
        await server.start()
        channel = grpc.aio.secure_channel(
            f"127.0.0.1:{port}",
            grpc.ssl_channel_credentials(
                (pki / "ca.pem").read_bytes(),
                (pki / "school-S1.key").read_bytes(),
                (pki / "school-S1.pem").read_bytes(),
            ),
            options=[("grpc.ssl_target_name_override", "localhost")],
        )
        register = channel.unary_unary(
            "/transfer.v1.RecordService/RegisterRecord",
            request_serializer=records_pb2.RegisterRecordRequest.SerializeToString,
            response_deserializer=records_pb2.RegisterRecordResponse.FromString,
        )
        get = channel.unary_unary(
            "/transfer.v1.RecordService/GetRecord",
            request_serializer=records_pb2.GetRecordRequest.SerializeToString,
            response_deserializer=records_pb2.GetRecordResponse.FromString,
        )
        mutation = records_pb2.RegisterRecordRequest(request_id="4b1c7f0e-3a52-4d8e-9a43-2f0b8e6d1c55", lookup_code="X")
        read = records_pb2.GetRecordRequest(lookup_code="X")
        results: dict[tuple[str, bool], list[float]] = {}
        for name, call, request in (("mutation (INFO line)", register, mutation), ("read (DEBUG, dropped)", get, read)):
            for _ in range(200):  # warm up: connection, handler caches
                await call(request, timeout=10)
            for _ in range(rounds):
                for enabled in (False, True):
                    calllog.enabled = enabled
                    metadata = ((TRACEPARENT, new_trace().header()),)
                    t0 = time.perf_counter()
                    for _ in range(calls):
                        await call(request, timeout=10, metadata=metadata)
                    results.setdefault((name, enabled), []).append((time.perf_counter() - t0) / calls * 1e6)
        await channel.close()
        await server.stop(None)
    print(f"{calls} sequential unary calls per round, {rounds} rounds each way (mean of the rounds, µs per call)")
    for name in ("mutation (INFO line)", "read (DEBUG, dropped)"):
        off, on = statistics.mean(results[(name, False)]), statistics.mean(results[(name, True)])
        print(
            f"  {name:<22} off {off:8.1f}   on {on:8.1f}   difference {on - off:+7.1f} µs ({(on / off - 1) * 100:+.1f}%)"
        )


class _Context:
    """The few ServicerContext methods the call log uses."""

    def __init__(self, pem: bytes, metadata: tuple[tuple[str, str], ...]) -> None:
        self._auth = {"x509_pem_cert": [pem]}
        self._metadata = metadata

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def set_trailing_metadata(self, metadata: Any) -> None:
        pass

    def trailing_metadata(self) -> tuple[()]:
        return ()

    def code(self) -> None:
        return None

    def auth_context(self) -> dict[str, list[bytes]]:
        return self._auth


async def _alone(calls: int) -> None:
    """The interceptor's own work per call, without gRPC: wrapped handler minus bare handler."""
    _log_to_devnull()
    with tempfile.TemporaryDirectory() as tmp:
        pki = Path(tmp)
        make_dev_pki(pki, "01", ["S1"])
        auth = Authenticator("01", own_cas=x509.load_pem_x509_certificates((pki / "ca.pem").read_bytes()))
        context = _Context((pki / "school-S1.pem").read_bytes(), ((TRACEPARENT, new_trace().header()),))
    calllog = CallLog(auth, 0.0)
    print(f"the interceptor alone, {calls} calls (µs per call):")
    for name, method, request, bare in (
        ("mutation (INFO line)", "RegisterRecord", records_pb2.RegisterRecordRequest(request_id="r" * 36), _register),
        ("read (DEBUG, dropped)", "GetRecord", records_pb2.GetRecordRequest(lookup_code="X"), _get),
    ):
        kind = records_pb2.RegisterRecordRequest if method == "RegisterRecord" else records_pb2.GetRecordRequest
        handler = grpc.unary_unary_rpc_method_handler(bare, kind.FromString)
        wrapped = calllog._wrap(f"/transfer.v1.RecordService/{method}", handler).unary_unary
        timings = {}
        for label, fn in (("bare", bare), ("wrapped", wrapped)):
            t0 = time.perf_counter()
            for _ in range(calls):
                await fn(request, context)
            timings[label] = (time.perf_counter() - t0) / calls * 1e6
        print(f"  {name:<22} {timings['wrapped'] - timings['bare']:7.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    ns = parser.parse_args()
    asyncio.run(_main(ns.calls, ns.rounds))
    asyncio.run(_alone(ns.calls * 10))


if __name__ == "__main__":
    main()
