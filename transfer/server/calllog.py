"""One log line per call, with its trace id: `CallLog`, a server interceptor.

Each call the node serves ends with one line (`msg` "call", logger
`transfer.call`): the method, the caller's principal (as `Actor.principal`
names it: a role with a school code or a key digest, never a person), the
`request_id` of a mutation, the status code and ErrorInfo reason, the
duration in milliseconds, the number of messages a stream sent, and the
call's `trace_id` and `span_id`.

Mutations (a request with a `request_id` field, and PeerService's deliveries)
and refusals (any status but OK, except a read stream its caller cancelled) are
logged at INFO; successful reads at DEBUG, or a share of them at INFO
(`logging.reads`). A line at a level the logger drops costs nothing more than
the timing.

The trace id comes from the caller's `traceparent` metadata entry when it is a
valid W3C one (exactly one entry), and is made otherwise: an invalid value is
ignored, never refused. The node answers with a `traceparent` trailing
metadata entry naming the trace and the node's own span for the call. While the
call runs, `transfer.tracecontext.current_trace_id` holds the trace id, so every
log line made meanwhile (the domain's, storage's) carries it, and the outbox
messages the call writes keep it for the deliveries to peers.

An undecodable request of a unary-request method never reaches this
interceptor: `RefuseMalformed`, before it, refuses it with its own throttled
line (a flood of garbage must not make a line per call). On a client-streaming
method (reflection) the refusal comes mid-stream and the call's line names it.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar
from typing import Any, TypeAlias

import grpc

from transfer.domain.errors import DomainError
from transfer.server.auth import Authenticator
from transfer.server.errors import reason_in
from transfer.server.interceptors import WrappingInterceptor, rewrapped
from transfer.tracecontext import TRACEPARENT, TraceParent, current_trace_id, new_trace, parse

log = logging.getLogger("transfer.call")

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"

# Services whose every call changes something although their requests carry no request_id.
_MUTATING_SERVICES = ("/transfer.v1.PeerService/",)
REQUEST_ID_CHARS = 100  # a request_id longer than this (refused anyway) is clipped in the line


# The trailing metadata entry of the call under way (empty outside one): what `traced` adds to a status.
_trailer: ContextVar[tuple[tuple[str, str], ...]] = ContextVar("call_trailer", default=())


def traced(status: grpc.Status) -> grpc.Status:
    """`status` with the call's `traceparent` trailer added: aborting with a status sends the status's
    trailing metadata instead of what the call had set, so refusals must carry it themselves."""
    extra = _trailer.get()
    if not extra:
        return status
    return _Status(status.code, status.details, (*(status.trailing_metadata or ()), *extra))


class _Status(grpc.Status):  # type: ignore[misc]
    def __init__(self, code: grpc.StatusCode, details: str, trailing_metadata: tuple[tuple[str, Any], ...]) -> None:
        self.code = code
        self.details = details
        self.trailing_metadata = trailing_metadata


def _trace_of(context: Context) -> TraceParent:
    """The caller's trace with a new span of ours, or a new trace."""
    found: TraceParent | None = None
    seen = 0
    for key, value in context.invocation_metadata() or ():
        if key == TRACEPARENT:
            seen += 1
            found = parse(value) if isinstance(value, str) else None
    if seen == 1 and found is not None:
        return found.child()
    return new_trace()


def _request_type(deserializer: Callable[[bytes], Any] | None) -> Any:
    return getattr(getattr(deserializer, "__self__", None), "DESCRIPTOR", None)


class _Method:
    """What the call log knows of a method before any call: its name and whether it changes something."""

    __slots__ = ("has_request_id", "mutation", "name")

    def __init__(self, name: str, handler: grpc.RpcMethodHandler) -> None:
        descriptor = _request_type(handler.request_deserializer)
        self.name = name
        self.has_request_id = descriptor is not None and "request_id" in descriptor.fields_by_name
        self.mutation = self.has_request_id or name.startswith(_MUTATING_SERVICES)


class CallLog(WrappingInterceptor):
    """Logs every call once, when it ends, and gives it a trace id (see the module's docstring).

    `read_share`: the share of successful reads logged at INFO (0: all at DEBUG), drawn at
    random per read. `enabled` set False passes calls through untouched (for benchmarks)."""

    def __init__(self, auth: Authenticator | None, read_share: float = 0.0) -> None:
        super().__init__()
        self.auth = auth
        self.read_share = read_share
        self.enabled = True

    def _intercepting(self) -> bool:
        return self.enabled

    # -- one call ------------------------------------------------------------

    def _begin(self, context: Context) -> tuple[TraceParent, Any, Any]:
        trace = _trace_of(context)
        trailer = ((TRACEPARENT, trace.header()),)
        context.set_trailing_metadata(trailer)
        return trace, current_trace_id.set(trace.trace_id), _trailer.set(trailer)

    def _end(
        self,
        method: _Method,
        context: Context,
        trace: TraceParent,
        started: float,
        request: Any,
        error: BaseException | None,
        messages: int | None,
    ) -> None:
        duration_ms = (time.perf_counter() - started) * 1000
        reason = ""
        if error is None:
            code = context.code() or grpc.StatusCode.OK
        elif isinstance(error, grpc.aio.AbortError):
            code = context.code() or grpc.StatusCode.UNKNOWN
            trailing = tuple(context.trailing_metadata() or ())
            reason = reason_in(trailing)
        elif isinstance(error, asyncio.CancelledError):
            code = grpc.StatusCode.CANCELLED
        else:
            code = grpc.StatusCode.UNKNOWN
        if isinstance(code, int):  # set_code was given a number
            code = next((c for c in grpc.StatusCode if c.value[0] == code), grpc.StatusCode.UNKNOWN)
        refused = not (code is grpc.StatusCode.OK or code is grpc.StatusCode.CANCELLED)
        level = logging.INFO if method.mutation or refused or self._sampled() else logging.DEBUG
        if not log.isEnabledFor(level):
            return
        fields: dict[str, object] = {
            "method": method.name,
            "principal": self._principal(context),
            "code": code.name,
            "reason": reason,
            "duration_ms": round(duration_ms, 3),
            "trace_id": trace.trace_id,
            "span_id": trace.span_id,
        }
        if method.has_request_id and request is not None:
            fields["request_id"] = str(getattr(request, "request_id", ""))[:REQUEST_ID_CHARS]
        if messages is not None:
            fields["messages"] = messages
        log.log(level, "call", extra=fields)

    def _sampled(self) -> bool:
        return self.read_share > 0 and (self.read_share >= 1 or random.random() < self.read_share)

    def _principal(self, context: Context) -> str:
        """The caller as the servicers know it; "" when its certificate names nobody this node accepts."""
        if self.auth is None:
            return ""
        try:
            return self.auth.actor(context).principal
        except DomainError:
            return ""

    # -- wrapping ------------------------------------------------------------

    def _guarded(self, method: _Method, behavior: Callable[..., Any], stream_in: bool) -> Callable[..., Any] | None:
        """`behavior` timed and logged, in the same form (coroutine or async generator); None if synchronous."""
        begin, end = self._begin, self._end

        if inspect.iscoroutinefunction(behavior):

            async def call(request: Any, context: Context) -> Any:
                started = time.perf_counter()
                trace, token, trailer = begin(context)
                error: BaseException | None = None
                try:
                    return await behavior(request, context)
                except BaseException as exc:
                    error = exc
                    raise
                finally:
                    end(method, context, trace, started, None if stream_in else request, error, None)
                    current_trace_id.reset(token)
                    _trailer.reset(trailer)

            return call
        if inspect.isasyncgenfunction(behavior):

            async def stream(request: Any, context: Context) -> AsyncIterator[Any]:
                started = time.perf_counter()
                trace, token, trailer = begin(context)
                sent, logged = 0, False
                first = None if stream_in else request

                def finish(error: BaseException | None) -> None:
                    nonlocal logged
                    if not logged:
                        logged = True
                        end(method, context, trace, started, first, error, sent)

                # A stream cancelled while gRPC itself was sending leaves this generator suspended, to be
                # closed whenever it is collected: the call's end logs it then, once.
                context.add_done_callback(lambda _: finish(asyncio.CancelledError()))
                try:
                    async for response in behavior(request, context):
                        sent += 1
                        yield response
                except BaseException as exc:
                    finish(exc)
                    raise
                finally:
                    finish(None)
                    with contextlib.suppress(ValueError):  # finalised from another context, which never had it set
                        current_trace_id.reset(token)
                        _trailer.reset(trailer)

            return stream
        return None

    def _wrap(self, name: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        method = _Method(name, handler)
        return rewrapped(handler, lambda behavior, _kind, stream_in: self._guarded(method, behavior, stream_in))
