"""Requests that cannot be decoded: INVALID_ARGUMENT `MALFORMED_REQUEST`, never UNKNOWN.

gRPC decodes a request with the method's deserializer (`FromString`) before
any code of ours runs. Bytes that are not the method's message, or a string
field that is not UTF-8, raised a DecodeError there: the caller got UNKNOWN
with the exception's class and text as the message, and the node's log a
traceback per call. `RefuseMalformed`, a server interceptor, gives every
method the server resolves (ours, health, reflection, any added later) a
deserializer that hands over a `Malformed` marker instead of raising, and a
handler that answers the marker with an ordinary refusal (through
`errors.to_status`) before the method's own handler sees anything. The node
says so in one line without a traceback, at most every MALFORMED_LOG_SECONDS
(by the node's clock) with the count of those it did not log: a client that
sends nothing but garbage makes no more than that.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterable, AsyncIterator, Callable
from datetime import datetime
from typing import Any, TypeAlias

import grpc
from google.protobuf.message import DecodeError

from transfer.domain.errors import InvalidArgument
from transfer.domain.ports import Clock
from transfer.server.calllog import traced
from transfer.server.errors import to_status
from transfer.server.interceptors import WrappingInterceptor, rewrapped

log = logging.getLogger("transfer.rpc")

MALFORMED_LOG_SECONDS = 60.0

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"


class Malformed:
    """What the deserializer hands over instead of a request it could not decode."""

    __slots__ = ("message_type",)

    def __init__(self, message_type: str) -> None:
        self.message_type = message_type


class _Throttled:
    """One log line per MALFORMED_LOG_SECONDS, with the count of the refusals it did not log."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock  # called on the event loop only: no lock
        self._logged_at: datetime | None = None
        self._unlogged = 0

    def refused(self, method: str) -> None:
        now, last = self._clock.now(), self._logged_at
        if last is not None and 0 <= (now - last).total_seconds() < MALFORMED_LOG_SECONDS:
            self._unlogged += 1
            return
        unlogged, self._logged_at, self._unlogged = self._unlogged, now, 0
        log.warning(
            "undecodable request refused",
            extra={"method": method, "reason": "MALFORMED_REQUEST", "not_logged": unlogged},
        )


def _message_type(deserializer: Callable[[bytes], Any]) -> str:
    descriptor = getattr(getattr(deserializer, "__self__", None), "DESCRIPTOR", None)
    return str(getattr(descriptor, "full_name", ""))


def _lenient(deserializer: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    malformed = Malformed(_message_type(deserializer))

    def decode(data: bytes) -> Any:
        try:
            return deserializer(data)
        except DecodeError:
            return malformed

    return decode


class RefuseMalformed(WrappingInterceptor):
    """Answers undecodable requests of every method with INVALID_ARGUMENT MALFORMED_REQUEST.

    Handlers written as coroutines or async generators (all of this server's)
    are covered; a synchronous one is left as gRPC made it."""

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self._log = _Throttled(clock)

    async def _refuse(self, method: str, context: Context, malformed: Malformed) -> None:
        self._log.refused(method)
        metadata = {"message_type": malformed.message_type} if malformed.message_type else {}
        await context.abort_with_status(
            traced(
                to_status(
                    InvalidArgument(
                        "MALFORMED_REQUEST",
                        "the request cannot be decoded: it is not this method's protobuf message, "
                        "or one of its strings is not UTF-8",
                        metadata=metadata,
                    )
                )
            )
        )

    def _guarded(self, method: str, behavior: Callable[..., Any], stream_in: bool) -> Callable[..., Any] | None:
        """`behavior` behind the check, in the same form (coroutine or async generator); None if synchronous."""
        refuse = self._refuse

        async def checked(requests: AsyncIterable[Any], context: Context) -> AsyncIterator[Any]:
            async for request in requests:
                if isinstance(request, Malformed):
                    await refuse(method, context, request)
                yield request

        if inspect.iscoroutinefunction(behavior):
            if stream_in:

                async def call_with_stream(requests: AsyncIterable[Any], context: Context) -> Any:
                    return await behavior(checked(requests, context), context)

                return call_with_stream

            async def call(request: Any, context: Context) -> Any:
                if isinstance(request, Malformed):
                    await refuse(method, context, request)
                return await behavior(request, context)

            return call
        if inspect.isasyncgenfunction(behavior):
            if stream_in:

                async def stream_with_stream(requests: AsyncIterable[Any], context: Context) -> AsyncIterator[Any]:
                    async for response in behavior(checked(requests, context), context):
                        yield response

                return stream_with_stream

            async def stream(request: Any, context: Context) -> AsyncIterator[Any]:
                if isinstance(request, Malformed):
                    await refuse(method, context, request)
                async for response in behavior(request, context):
                    yield response

            return stream
        return None

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        if handler.request_deserializer is None:  # raw bytes: nothing to decode
            return handler
        return rewrapped(
            handler,
            lambda behavior, _kind, stream_in: self._guarded(method, behavior, stream_in),
            _lenient(handler.request_deserializer),
        )
