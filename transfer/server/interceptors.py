"""What the node's server interceptors share: each method's handler wrapped once, in its own kind.

`RefuseMalformed` (decoding.py), `CallMetrics` (metrics.py) and `CallLog`
(calllog.py) each put one function around the behaviour gRPC resolved for a
method. `WrappingInterceptor` resolves the handler, wraps it on the method's
first call and keeps the result for as long as gRPC hands back the same handler;
`rewrapped` rebuilds a handler of the same kind around a new behaviour."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

# A handler's behaviour with what it is: (behavior, grpc_type, takes a stream of requests, the maker of its kind).
_Kind = tuple[Callable[..., Any] | None, str, bool, Callable[..., grpc.RpcMethodHandler]]


def _kinds(handler: grpc.RpcMethodHandler) -> tuple[_Kind, ...]:
    return (
        (handler.unary_unary, "unary", False, grpc.unary_unary_rpc_method_handler),
        (handler.unary_stream, "server_stream", False, grpc.unary_stream_rpc_method_handler),
        (handler.stream_unary, "client_stream", True, grpc.stream_unary_rpc_method_handler),
        (handler.stream_stream, "bidi_stream", True, grpc.stream_stream_rpc_method_handler),
    )


def rewrapped(
    handler: grpc.RpcMethodHandler,
    wrap: Callable[[Callable[..., Any], str, bool], Callable[..., Any] | None],
    request_deserializer: Callable[[bytes], Any] | None = None,
) -> grpc.RpcMethodHandler:
    """`handler` with its behaviour replaced by `wrap(behavior, grpc_type, stream_in)`, in the same kind.

    `handler` itself when it has no behaviour or `wrap` gives None (a synchronous behaviour).
    `request_deserializer`: the new handler's, if not the old one's."""
    for behavior, kind, stream_in, make in _kinds(handler):
        if behavior is None:
            continue
        wrapped = wrap(behavior, kind, stream_in)
        if wrapped is None:
            return handler
        deserializer = handler.request_deserializer if request_deserializer is None else request_deserializer
        return make(wrapped, deserializer, handler.response_serializer)
    return handler


class WrappingInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """A server interceptor that wraps each method's handler once (`_wrap`) and serves the wrapped one."""

    def __init__(self) -> None:
        # method -> (the handler gRPC resolved, its wrapped version): wrapped once per method.
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    def _intercepting(self) -> bool:
        """False passes every call through untouched."""
        return True

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        raise NotImplementedError

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(details)
        if handler is None or not self._intercepting():
            return handler
        method: str = details.method
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._wrap(method, handler)
        self._wrapped[method] = (handler, wrapped)
        return wrapped
