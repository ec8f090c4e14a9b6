"""Ask a node whether it is serving, over its own mTLS, via the gRPC health service.

    python -m transfer.server.healthcheck --config /etc/hocba/node.toml [--service readiness]

Reads the node's configuration to find its port (or port file), CA and
certificate, connects to the address it listens on (loopback when it listens on
all addresses) presenting the node's own certificate, and
exits 0 when the health status asked for is SERVING, 1 otherwise. `--service`
names it: `liveness` (the process serves), `readiness` (it can do its work: its
database answers, its log can be signed), a service's full name
(`transfer.v1.TransferService`), or nothing for the overall status, which is
the liveness's. This is the Docker image's HEALTHCHECK and an orchestrator's
probe command (docs/operations.md, Health).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from transfer.server.config import ConfigError, load


def target(listen: str, port_file: Path | None) -> str:
    """Where to reach the node from its own host: the address it listens on, or loopback when it
    listens on every address (IPv4 or IPv6 alike)."""
    host, _, port = listen.rpartition(":")
    if port == "0" and port_file is not None and port_file.exists():
        port = port_file.read_text().strip()
    if host in ("", "0.0.0.0", "*"):
        host = "127.0.0.1"
    elif host == "[::]":
        host = "[::1]"
    return f"{host}:{port}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="transfer-healthcheck", description="Check a node's gRPC health.")
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--server-name", default="localhost", help="a DNS name in the node's certificate")
    parser.add_argument("--timeout", type=float, default=3.0)
    parser.add_argument(
        "--service",
        default="",
        help="liveness, readiness, or a service's full name (default: the overall status, as liveness)",
    )
    ns = parser.parse_args(argv)
    try:
        cfg = load(ns.config)
        creds = grpc.ssl_channel_credentials(
            root_certificates=cfg.ca_file.read_bytes(),
            private_key=cfg.key_file.read_bytes(),
            certificate_chain=cfg.cert_file.read_bytes(),
        )
    except (ConfigError, OSError) as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    options = [("grpc.ssl_target_name_override", ns.server_name)]
    with grpc.secure_channel(target(cfg.listen, cfg.port_file), creds, options=options) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=ns.service), timeout=ns.timeout
            )
        except grpc.RpcError as err:
            print(f"unhealthy: {err.code().name} {err.details()}", file=sys.stderr)
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(status)
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1


if __name__ == "__main__":
    sys.exit(main())
