"""The console's way into the broker: its own gRPC API, called with the viewer's token.

Every page's data comes through the same services any client calls, so the broker's authentication
and ACLs judge the console's viewer exactly as they judge a producer or a consumer: the console can
never show or do what its viewer's token may not. (It is not the SDK: the broker never imports it.)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.rpc import error_details_pb2, status_pb2

from tidelog.common.reasons import ERROR_DOMAIN
from tidelog.v1 import admin_pb2_grpc, broker_pb2_grpc, groups_pb2_grpc

CALL_TIMEOUT_S = 10.0
T = TypeVar("T")


@dataclass(frozen=True)
class CallFailed(Exception):
    """A call the broker refused: its status code name, the broker's message and ErrorInfo reason."""

    code: str
    message: str
    reason: str = ""

    def __str__(self) -> str:
        return self.message


def call_failed(err: grpc.aio.AioRpcError) -> CallFailed:
    reason = ""
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            for detail in status_pb2.Status.FromString(value).details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info) and info.domain == ERROR_DOMAIN:
                    reason = info.reason
    return CallFailed(err.code().name, err.details() or err.code().name, reason)


class Gateway:
    """One channel to the broker's own listener; stubs that take the viewer's credentials per call."""

    def __init__(self, address: str, tls_root: Path | None = None) -> None:
        if tls_root is not None:
            credentials = grpc.ssl_channel_credentials(root_certificates=tls_root.read_bytes())
            self.channel = grpc.aio.secure_channel(address, credentials)
        else:
            self.channel = grpc.aio.insecure_channel(address)
        self.admin = admin_pb2_grpc.AdminStub(self.channel)
        self.broker = broker_pb2_grpc.BrokerStub(self.channel)
        self.groups = groups_pb2_grpc.GroupsStub(self.channel)

    async def call(self, rpc: Callable[..., Awaitable[T]], request: Any, token: str | None) -> T:
        """`rpc(request)` with the viewer's token; a refusal raises CallFailed."""
        try:
            return await rpc(request, metadata=metadata(token), timeout=CALL_TIMEOUT_S)
        except grpc.aio.AioRpcError as err:
            raise call_failed(err) from None

    async def close(self) -> None:
        await self.channel.close()


def metadata(token: str | None) -> Sequence[tuple[str, str]]:
    """The call metadata that carries a viewer's token (none without tokens)."""
    return (("authorization", f"Bearer {token}"),) if token else ()
