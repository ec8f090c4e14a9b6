"""The node's bounds on connections and streams (docs/operations.md, Limits).

gRPC enforces those of connections and HTTP/2 (`grpc_options`); the number of
watch streams a caller holds open is counted here (`StreamQuota`), since only
the service knows who the caller is.
"""

from __future__ import annotations

import contextlib
import resource
from collections import Counter
from collections.abc import Iterator
from typing import Any

from transfer.domain.errors import ResourceExhausted
from transfer.server.config import ServerLimits

# Open files the node needs besides its connections: database files and
# connections, the listening socket, logs, gRPC's own descriptors.
RESERVED_FILES = 256


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def grpc_options(limits: ServerLimits) -> list[tuple[str, Any]]:
    """The gRPC server arguments (grpc/impl/channel_arg_names.h) that apply `limits`."""
    return [
        # Counted from the accept: TLS, then the client's HTTP/2 preface and settings.
        ("grpc.server_handshake_timeout_ms", _ms(limits.handshake_timeout_seconds)),
        # Counts connections still in their handshake too; one over is closed at once.
        ("grpc.max_allowed_incoming_connections", limits.max_connections),
        ("grpc.max_concurrent_streams", limits.max_concurrent_streams),
        ("grpc.max_connection_idle_ms", _ms(limits.max_connection_idle_seconds)),
        ("grpc.max_connection_age_ms", _ms(limits.max_connection_age_seconds)),
        ("grpc.max_connection_age_grace_ms", round(limits.max_connection_age_grace_seconds * 1000)),
        ("grpc.keepalive_time_ms", _ms(limits.keepalive_time_seconds)),
        ("grpc.keepalive_timeout_ms", _ms(limits.keepalive_timeout_seconds)),
        # What gRPC 1.85 waits for the answer to a ping it sent, keepalive pings included: without it a client
        # that stopped answering keeps its connection and streams for a minute whatever keepalive_timeout_ms
        # says (measured). Not in the public header (chttp2's internal.h): check it when upgrading grpcio.
        ("grpc.http2.ping_timeout_ms", _ms(limits.keepalive_timeout_seconds)),
        # Connections without calls are not pinged (max_connection_idle closes them), and a client's pings
        # on one are strikes unless two hours apart: keeping it open that way would defeat the idle limit.
        ("grpc.keepalive_permit_without_calls", 0),
        ("grpc.http2.min_ping_interval_without_data_ms", _ms(limits.min_client_ping_interval_seconds)),
        ("grpc.http2.max_ping_strikes", limits.max_ping_strikes),
    ]


def raise_open_file_limit(limits: ServerLimits) -> str | None:
    """Raise this process's open-file limit to what `max_connections` needs, or say why it cannot be.

    Past the limit, the node could neither accept a connection nor open a
    database file: the connection cap is what must give first."""
    needed = limits.max_connections + RESERVED_FILES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return None
    if hard != resource.RLIM_INFINITY and hard < needed:
        return (
            f"server.max_connections = {limits.max_connections} needs {needed} open files, but this process may "
            f"open at most {hard} (ulimit -n; LimitNOFILE= under systemd): raise that limit or lower "
            "server.max_connections"
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    return None


class StreamQuota:
    """How many streams each caller has open, refusing one past the limit (RESOURCE_EXHAUSTED).

    Lives on the event loop: no locking."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: Counter[str] = Counter()

    @contextlib.contextmanager
    def hold(self, principal: str) -> Iterator[None]:
        if self._open[principal] >= self.limit:
            raise ResourceExhausted(
                "TOO_MANY_STREAMS",
                f"you already have {self.limit} watch streams open on this node, its limit per caller; "
                "close one (or let it end) before opening another",
                metadata={"limit": str(self.limit)},
            )
        self._open[principal] += 1
        try:
            yield
        finally:
            self._open[principal] -= 1
            if not self._open[principal]:
                del self._open[principal]

    def held(self, principal: str) -> int:
        """How many streams `principal` holds open."""
        return self._open[principal]

    def total(self) -> int:
        """How many streams are open, all callers together (read by the metrics' thread: a copy of the counts)."""
        return sum(list(self._open.values()))
