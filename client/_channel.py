"""Channel creation and error translation shared by every client."""

from __future__ import annotations

import os
import random
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc

from tidelog.common.targets import grpc_target
from tidelog.errors import from_rpc_error

T = TypeVar("T")
DEFAULT_BOOTSTRAP = "127.0.0.1:50051"
_MAX_MESSAGE = 128 << 20


@dataclass(frozen=True)
class Security:
    """How a client connects: TLS (a CA to trust; a certificate and key for mTLS) and a bearer token.

    Every client takes these as keyword arguments: ``tls_ca_file``, ``tls_cert_file``,
    ``tls_key_file`` (paths) and ``token`` (default: the TIDELOG_TOKEN environment variable).
    """

    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    token: str | None = None

    @classmethod
    def take(cls, settings: dict[str, Any]) -> Security:
        """Pop the security keyword arguments out of a client's settings."""
        return cls(
            settings.pop("tls_ca_file", None),
            settings.pop("tls_cert_file", None),
            settings.pop("tls_key_file", None),
            settings.pop("token", None) or os.environ.get("TIDELOG_TOKEN") or None,
        )

    @property
    def tls(self) -> bool:
        return bool(self.tls_ca_file or self.tls_cert_file)

    def credentials(self) -> grpc.ChannelCredentials:
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ValueError("tls_cert_file and tls_key_file go together")
        return grpc.ssl_channel_credentials(
            root_certificates=_read(self.tls_ca_file),
            private_key=_read(self.tls_key_file),
            certificate_chain=_read(self.tls_cert_file),
        )


def _read(path: str | None) -> bytes | None:
    return Path(path).read_bytes() if path else None


def channel_target(bootstrap: str) -> str:
    """A gRPC target for a bootstrap list `"h1:p1,h2:p2"`: one channel over every address, connected to
    the first that answers (grpc's pick_first), so a client starts while any listed broker lives."""
    return grpc_target(bootstrap.split(",")) or bootstrap


def open_channel(bootstrap: str, security: Security | None = None) -> grpc.aio.Channel:
    """A channel to `bootstrap`: one HOST:PORT, or a comma-separated list (plaintext, or TLS; with TLS
    every listed broker's certificate must be valid for the first listed host, as one channel carries
    them all)."""
    security = security or Security()
    interceptors = _token_interceptors(security.token) if security.token else None
    target = channel_target(bootstrap)
    if security.tls:
        options: list[tuple[str, int | str]] = list(_OPTIONS)
        if "," in bootstrap:  # a list's addresses share one channel: check each certificate for the first name
            first = bootstrap.split(",")[0].strip()
            options.append(("grpc.default_authority", first))
        return grpc.aio.secure_channel(target, security.credentials(), options=options, interceptors=interceptors)
    return grpc.aio.insecure_channel(target, options=_OPTIONS, interceptors=interceptors)


_OPTIONS = [
    ("grpc.max_receive_message_length", _MAX_MESSAGE),
    ("grpc.max_send_message_length", _MAX_MESSAGE),
    # A client's own connection: grpc's process-wide subchannel pool would make a new
    # client share (and wait out) another one's reconnect backoff to the same address.
    ("grpc.use_local_subchannel_pool", 1),
    # Find a restarted broker within seconds, not grpc's default of up to two minutes.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
]


class _WithToken:
    def __init__(self, token: str) -> None:
        self._header = ("authorization", f"Bearer {token}")

    def _with_token(self, details: Any) -> Any:
        return details._replace(metadata=[*(details.metadata or ()), self._header])


# grpc.aio files an interceptor under the first kind it matches: one class per kind of call.
class _UnaryUnaryToken(_WithToken, grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._with_token(details), request)


class _UnaryStreamToken(_WithToken, grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._with_token(details), request)


class _StreamUnaryToken(_WithToken, grpc.aio.StreamUnaryClientInterceptor):  # type: ignore[misc]
    async def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(self._with_token(details), requests)


class _StreamStreamToken(_WithToken, grpc.aio.StreamStreamClientInterceptor):  # type: ignore[misc]
    async def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(self._with_token(details), requests)


def _token_interceptors(token: str) -> list[Any]:
    """Add `authorization: Bearer <token>` to every call (plaintext on loopback too, unlike call credentials)."""
    return [kind(token) for kind in (_UnaryUnaryToken, _UnaryStreamToken, _StreamUnaryToken, _StreamStreamToken)]


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
