"""The baseline: a bare gRPC echo (grpc.aio, Python) over the node's own mTLS settings.

`python -m bench.echo --pki DIR --port-file F` serves it; `echo_worker` loads it.
What a node does on top of this (authorization, validation, idempotency,
storage) is what the ratio to this rate measures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc

METHOD = "/bench.Echo/Echo"
PAYLOAD = b"x" * 120  # about the size of an InitiateTransferRequest


async def _echo(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    return request


async def serve(pki: Path, port_file: Path) -> None:
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    handler = grpc.method_handlers_generic_handler("bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(_echo)})
    server.add_generic_rpc_handlers((handler,))
    creds = grpc.ssl_server_credentials(
        [((pki / "node.key").read_bytes(), (pki / "node.pem").read_bytes())],
        root_certificates=(pki / "ca.pem").read_bytes(),
        require_client_auth=True,
    )
    port = server.add_secure_port("127.0.0.1:0", creds)
    await server.start()
    tmp = port_file.with_suffix(".tmp")
    tmp.write_text(str(port))
    os.replace(tmp, port_file)
    await server.wait_for_termination()


async def echo_worker(args: dict[str, Any]) -> Callable[..., Awaitable[None]]:
    pki = Path(args["pki"])
    creds = grpc.ssl_channel_credentials(
        (pki / "ca.pem").read_bytes(), (pki / "school-S1.key").read_bytes(), (pki / "school-S1.pem").read_bytes()
    )
    channel = grpc.aio.secure_channel(args["address"], creds)
    call = channel.unary_unary(METHOD)

    async def run(i: int, end: float, record: Callable[[str, float], None], failed: Callable[[str], None]) -> None:
        while time.time() < end:
            t0 = time.perf_counter()
            try:
                await call(PAYLOAD, timeout=10)
            except grpc.aio.AioRpcError:
                failed("echo")
                continue
            record("echo", time.perf_counter() - t0)

    return run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pki", type=Path, required=True)
    parser.add_argument("--port-file", type=Path, required=True)
    ns = parser.parse_args()
    asyncio.run(serve(ns.pki, ns.port_file))


if __name__ == "__main__":
    main()
