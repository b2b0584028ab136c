"""Channel creation and error translation shared by every client."""

from __future__ import annotations

import random
from collections.abc import Awaitable
from typing import TypeVar

import grpc

from client.errors import from_rpc_error

T = TypeVar("T")
DEFAULT_BOOTSTRAP = "127.0.0.1:50051"
_MAX_MESSAGE = 128 << 20


def open_channel(bootstrap: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(
        bootstrap,
        options=[
            ("grpc.max_receive_message_length", _MAX_MESSAGE),
            ("grpc.max_send_message_length", _MAX_MESSAGE),
            # A client's own connection: grpc's process-wide subchannel pool would make a new
            # client share (and wait out) another one's reconnect backoff to the same address.
            ("grpc.use_local_subchannel_pool", 1),
            # Find a restarted broker within seconds, not grpc's default of up to two minutes.
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 2000),
        ],
    )


async def call(awaitable: Awaitable[T]) -> T:
    """Await a gRPC call, raising the SDK's exception instead of grpc's."""
    try:
        return await awaitable
    except grpc.aio.AioRpcError as err:
        raise from_rpc_error(err) from None


def backoff_delay(attempt: int, base_ms: float, max_ms: float) -> float:
    """Seconds to wait before retry number `attempt`: exponential from `base_ms`, capped at `max_ms`,
    jittered over the upper half so that clients that failed together do not retry together."""
    ceiling = min(max_ms, base_ms * 2 ** min(attempt, 16))
    return random.uniform(ceiling / 2, ceiling) / 1000
