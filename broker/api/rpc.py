"""Method handlers that take raw request bytes and may answer raw bytes.

Requests are parsed here, not by grpcio, so an undecodable request is an
INVALID_ARGUMENT with a message rather than grpcio's bare INTERNAL; responses may
be pre-encoded bytes (stored batches framed with no parse). Every BrokerError
becomes a status with a google.rpc.ErrorInfo; anything unexpected is logged and
answered INTERNAL without leaking a traceback.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Protocol, TypeAlias, TypeVar

import grpc
import structlog
from google.protobuf.message import DecodeError, Message

from tidelog.broker.errors import BrokerError, invalid_request, status_metadata
from tidelog.broker.security.acls import CallGrants, current_grants
from tidelog.common.reasons import Reason

log = structlog.get_logger("tidelog.rpc")

Req = TypeVar("Req", bound=Message)
# grpc ships no type information; this names what handlers receive.
Context: TypeAlias = grpc.aio.ServicerContext
Response = Message | bytes


def serialize(response: Response) -> bytes:
    return response if isinstance(response, bytes) else response.SerializeToString()


def parse(cls: type[Req], raw: bytes) -> Req:
    try:
        return cls.FromString(raw)
    except DecodeError as err:
        raise invalid_request(f"the request is not a valid {cls.DESCRIPTOR.full_name}: {err}") from None


def as_broker_error(exc: Exception, method: str) -> BrokerError:
    if isinstance(exc, BrokerError):
        return exc
    log.error("handler_failed", method=method, exc_info=exc)
    return BrokerError(Reason.INTERNAL, f"the broker failed while handling {method}; see its log")


async def abort(context: Context, err: BrokerError) -> None:
    await context.abort(err.code, err.message, trailing_metadata=status_metadata(err))


class Observer(Protocol):
    def observe(self, method: str, seconds: float) -> None: ...

    def stream_opened(self, method: str, delta: int) -> None: ...


class NoObserver:
    def observe(self, method: str, seconds: float) -> None:
        pass

    def stream_opened(self, method: str, delta: int) -> None:
        pass


class OpenStream:
    """A streaming call in progress: its task, and why it was ended from outside (if it was)."""

    __slots__ = ("ended", "task")

    def __init__(self, task: asyncio.Task[Any] | None) -> None:
        self.task = task
        self.ended: BrokerError | None = None

    def end(self, err: BrokerError) -> None:
        """End the call with `err` (its handler sees a cancellation and answers with the status)."""
        if self.ended is None and self.task is not None:
            self.ended = err
            self.task.cancel()


class StreamLimits:
    """At most `total` open streams, and `per_connection` from one client connection (its peer);
    keeps the open streams, so a reload can end those whose principal lost its token or rights."""

    def __init__(self, total: int, per_connection: int) -> None:
        self.total = total
        self.per_connection = per_connection
        self._open = 0
        self._by_peer: dict[str, int] = {}
        self.streams: dict[OpenStream, CallGrants | None] = {}

    def end_where(self, judge: Callable[[CallGrants], BrokerError | None]) -> int:
        """End every open stream whose grants `judge` refuses now; how many were ended."""
        ended = 0
        for stream, grants in list(self.streams.items()):
            err = judge(grants) if grants is not None else None
            if err is not None:
                stream.end(err)
                ended += 1
        return ended

    def end_all(self, err: BrokerError) -> int:
        """End every open stream with `err`; how many were ended."""
        for stream in list(self.streams):
            stream.end(err)
        return len(self.streams)

    def acquire(self, peer: str) -> None:
        if self._open >= self.total:
            raise BrokerError(
                Reason.TOO_MANY_STREAMS,
                f"the broker has {self._open} streams open, its limit (--max-streams); close some or retry later",
                limit=self.total,
            )
        held = self._by_peer.get(peer, 0)
        if held >= self.per_connection:
            raise BrokerError(
                Reason.TOO_MANY_STREAMS,
                f"this connection has {held} streams open, the broker's limit per connection "
                "(--max-streams-per-connection); close some, or spread them over more connections",
                limit=self.per_connection,
            )
        self._open += 1
        self._by_peer[peer] = held + 1

    def release(self, peer: str) -> None:
        self._open -= 1
        left = self._by_peer[peer] - 1
        if left:
            self._by_peer[peer] = left
        else:
            del self._by_peer[peer]


UnaryFn = Callable[[Any, Context], Awaitable[Response]]
StreamFn = Callable[[Any, Context], AsyncIterator[Response]]
BidiFn = Callable[[AsyncIterator[bytes], Context], AsyncIterator[Response]]


class Rpc:
    """Makes a service's method handlers: each call timed for the metrics, given a request id for its
    log lines, its errors turned into statuses; streams counted against the limits (and kept, so that
    a reload can end those whose grants were revoked)."""

    def __init__(self, observer: Observer | None = None, limits: StreamLimits | None = None) -> None:
        self.observer: Observer = observer or NoObserver()
        self.limits = limits or StreamLimits(total=1 << 62, per_connection=1 << 62)
        self._request_ids = itertools.count(1)

    def _start_request(self, method: str) -> None:
        """Every log line of this call (its own asyncio task) carries the method and a request id."""
        structlog.contextvars.bind_contextvars(request_id=f"{next(self._request_ids):x}", method=method)

    def unary(self, method: str, request_cls: type[Message], fn: UnaryFn) -> grpc.RpcMethodHandler:
        async def handle(raw: bytes, context: Context) -> Response:
            self._start_request(method)
            began = time.perf_counter()
            try:
                return await fn(parse(request_cls, raw), context)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                err = as_broker_error(exc, method)
            finally:
                self.observer.observe(method, time.perf_counter() - began)
            await abort(context, err)
            raise AssertionError("unreachable: abort raises")

        return grpc.unary_unary_rpc_method_handler(handle, request_deserializer=None, response_serializer=serialize)

    def server_stream(self, method: str, request_cls: type[Message], fn: StreamFn) -> grpc.RpcMethodHandler:
        async def handle(raw: bytes, context: Context) -> AsyncIterator[Response]:
            async for response in self._stream(method, context, lambda: fn(parse(request_cls, raw), context)):
                yield response

        return grpc.unary_stream_rpc_method_handler(handle, request_deserializer=None, response_serializer=serialize)

    def bidi_stream(self, method: str, fn: BidiFn) -> grpc.RpcMethodHandler:
        async def handle(requests: AsyncIterator[bytes], context: Context) -> AsyncIterator[Response]:
            async for response in self._stream(method, context, lambda: fn(requests, context)):
                yield response

        return grpc.stream_stream_rpc_method_handler(handle, request_deserializer=None, response_serializer=serialize)

    async def _stream(
        self, method: str, context: Context, responses: Callable[[], AsyncIterator[Response]]
    ) -> AsyncIterator[Response]:
        """A streaming call: counted against the stream limits and in the metrics, its errors as statuses."""
        self._start_request(method)
        peer = context.peer()
        limits = self.limits
        try:
            limits.acquire(peer)
        except BrokerError as refused:
            await abort(context, refused)
        self.observer.stream_opened(method, 1)
        stream = OpenStream(asyncio.current_task())
        limits.streams[stream] = current_grants.get()
        try:
            async for response in responses():  # a bad request raises here, inside the try
                yield response
            return
        except asyncio.CancelledError:
            if stream.ended is None:
                raise
            err = stream.ended  # ended by the broker (a revoked token), not by the client
        except Exception as exc:
            err = as_broker_error(exc, method)
        finally:
            del limits.streams[stream]
            self.observer.stream_opened(method, -1)
            limits.release(peer)
        await abort(context, err)


def register(server: grpc.aio.Server, service: str, handlers: Mapping[str, grpc.RpcMethodHandler]) -> None:
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, dict(handlers)),))
    server.add_registered_method_handlers(service, dict(handlers))
