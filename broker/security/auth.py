"""Transport security and authentication: TLS/mTLS server credentials, the loopback rule for
plaintext, and bearer tokens checked by a server interceptor on every RPC kind.

Token file (--auth-tokens): one `principal sha256-hex-of-token` per line, `#` comments; the
broker never sees a token in clear at rest. `tidelog token hash TOKEN` prints the line's hash.
Reloaded on SIGHUP. With mTLS the client certificate's subject CN is the principal.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import structlog

from tidelog.broker.errors import BrokerError, status_metadata
from tidelog.broker.security import acls
from tidelog.broker.security.access import Access
from tidelog.common.reasons import Reason

log = structlog.get_logger("tidelog.security")

# Probes and API discovery answer without a token (they reveal no data).
OPEN_METHODS = frozenset(
    {
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    }
)


def is_loopback(listen: str) -> bool:
    host = listen.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def server_credentials(cert: Path, key: Path, client_ca: Path | None) -> grpc.ServerCredentials:
    """TLS with this certificate; with `client_ca`, clients must present a certificate it signed (mTLS)."""
    return grpc.ssl_server_credentials(
        [(key.read_bytes(), cert.read_bytes())],
        root_certificates=client_ca.read_bytes() if client_ca else None,
        require_client_auth=client_ca is not None,
    )


def server_tls(cert: Path, key: Path, client_ca: Path | None) -> ssl.SSLContext:
    """The same TLS for a listener outside gRPC (the Kafka one): with `client_ca`, clients must present
    a certificate it signed (mTLS), whose CN is then their principal."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    if client_ca is not None:
        context.load_verify_locations(client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenFile:
    """principal -> sha256(token), from a file; `reload()` reads it again (SIGHUP)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._by_hash: dict[str, str] = {}
        self.generation = 0  # counts reloads: what was checked against an older one is checked again
        self.reload()

    def reload(self) -> None:
        by_hash: dict[str, str] = {}
        for number, line in enumerate(self.path.read_text().splitlines(), start=1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            if len(parts) != 2 or len(parts[1]) != 64:
                raise ValueError(f"{self.path}:{number}: expected `principal sha256-hex-of-token`")
            by_hash[parts[1].lower()] = parts[0]
        self._by_hash = by_hash
        self.generation += 1
        log.info("tokens_loaded", path=str(self.path), principals=len(by_hash))

    def principal(self, token: str) -> str | None:
        return self.principal_of_hash(hash_token(token))

    def principal_of_hash(self, digest: str) -> str | None:
        for known, principal in self._by_hash.items():
            if hmac.compare_digest(known, digest):
                return principal
        return None


def _unauthenticated(message: str) -> BrokerError:
    return BrokerError(Reason.UNAUTHENTICATED, message)


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Finds each call's principal and runs its handler with it (broker.acls.current_principal).

    With tokens, every RPC but probes needs `authorization: Bearer <token>` naming a known principal;
    without, the principal is the client certificate's CN (mTLS).
    """

    def __init__(self, tokens: TokenFile | None) -> None:
        self._tokens = tokens

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or details.method in OPEN_METHODS:
            return handler
        principal = None
        if self._tokens is not None:
            metadata = dict(details.invocation_metadata or ())
            header = metadata.get("authorization", "")
            scheme, _, token = header.partition(" ")
            if not header:
                missing = _unauthenticated("this broker needs a token: send `authorization: Bearer <token>`")
                return _refusing(handler, missing)
            principal = self._tokens.principal(token.strip()) if scheme.lower() == "bearer" else None
            if principal is None:
                return _refusing(handler, _unauthenticated("the token is not valid for this broker"))
            return _as_principal(handler, principal, hash_token(token.strip()))
        return _as_principal(handler, None, None)


def _set_principal(principal: str | None, token_hash: str | None) -> None:
    acls.current_principal.set(principal)
    acls.current_grants.set(acls.CallGrants(principal, token_hash))
    if principal is not None:
        structlog.contextvars.bind_contextvars(principal=principal)  # on this call's log lines


def _certificate_principal(context: grpc.aio.ServicerContext) -> str | None:
    names = context.auth_context().get("x509_common_name")
    return names[0].decode() if names else None


def _as_principal(
    handler: grpc.RpcMethodHandler, token_principal: str | None, token_hash: str | None
) -> grpc.RpcMethodHandler:
    """The same handler, run with the call's principal (and the token's hash) set for broker.acls."""

    def principal_of(context: grpc.aio.ServicerContext) -> str | None:
        return token_principal or _certificate_principal(context)

    if handler.unary_unary:
        behaviour = handler.unary_unary

        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            _set_principal(principal_of(context), token_hash)
            return await behaviour(request, context)

        return handler._replace(unary_unary=unary)
    streaming = handler.unary_stream or handler.stream_stream

    async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        _set_principal(principal_of(context), token_hash)
        async for response in streaming(request, context):
            yield response

    if handler.unary_stream:
        return handler._replace(unary_stream=stream)
    if handler.stream_stream:
        return handler._replace(stream_stream=stream)
    return handler


def _refusing(handler: grpc.RpcMethodHandler, err: BrokerError) -> grpc.RpcMethodHandler:
    """A handler of the same kind as `handler` that only aborts with `err`."""

    async def abort(request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(err.code, err.message, trailing_metadata=status_metadata(err))

    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(abort)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(abort)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(abort)
    return grpc.stream_stream_rpc_method_handler(abort)


def revoked(grants: acls.CallGrants, tokens: TokenFile | None, access: Access) -> BrokerError | None:
    """Why a call opened with these grants may go on no longer (its token or its rights are gone), or None."""
    token_hash = grants.token_hash
    if tokens is not None and token_hash is not None and tokens.principal_of_hash(token_hash) != grants.principal:
        return _unauthenticated("the token this stream was opened with is no longer valid (revoked on reload)")
    if not access.still_allowed(grants.checks, grants.principal):
        return BrokerError(
            Reason.NOT_AUTHORIZED,
            f"principal {grants.principal or 'anonymous'!r} lost a right this stream needs (ACLs reloaded)",
            principal=grants.principal or "anonymous",
        )
    return None
