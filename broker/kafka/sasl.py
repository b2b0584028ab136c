"""SASL/PLAIN on the Kafka listener (SaslHandshake v1, then SaslAuthenticate): the password is a Tidelog
token, and the principal is the token's, so Kafka clients get the principals, ACLs and quotas gRPC
clients do. The user name must be that principal (what Kafka clients are configured with anyway).

With tokens on, a connection may send only ApiVersions and these two until it has authenticated; a
failed authentication is answered, then the connection is closed. Why it failed is logged, not told.
"""

from __future__ import annotations

from typing import Any

import structlog

from tidelog.broker.kafka import codes
from tidelog.broker.kafka.caller import Caller
from tidelog.broker.security import acls
from tidelog.broker.security.auth import TokenFile, hash_token

log = structlog.get_logger("tidelog.kafka")

PLAIN = "PLAIN"


class KafkaSasl:
    def __init__(self, tokens: TokenFile | None) -> None:
        self._tokens = tokens

    @property
    def required(self) -> bool:
        return self._tokens is not None

    def still_valid(self, caller: Caller) -> bool:
        """Whether the connection's token still names its principal: checked again once the token file
        has been reloaded (SIGHUP) since the last check, not on every request."""
        session, tokens = caller.session, self._tokens
        if tokens is None or session.token_hash is None or session.token_generation == tokens.generation:
            return True
        session.token_generation = tokens.generation
        return tokens.principal_of_hash(session.token_hash) == session.principal

    async def handshake(self, request: dict[str, Any], version: int, caller: Caller) -> dict[str, Any]:
        mechanisms = [PLAIN] if self._tokens is not None else []
        if request["mechanism"] not in mechanisms or caller.session.authenticated:
            return {"error_code": codes.UNSUPPORTED_SASL_MECHANISM, "mechanisms": mechanisms}
        caller.session.mechanism = PLAIN
        return {"error_code": codes.NONE, "mechanisms": mechanisms}

    async def authenticate(self, request: dict[str, Any], version: int, caller: Caller) -> dict[str, Any]:
        session = caller.session
        if self._tokens is None or session.mechanism != PLAIN or session.authenticated:
            session.close = True
            return {"error_code": codes.ILLEGAL_SASL_STATE, "error_message": "send SaslHandshake (PLAIN) first"}
        principal, token_hash = self._principal(request["auth_bytes"], session.host)
        if principal is None:
            session.close = True
            return {"error_code": codes.SASL_AUTHENTICATION_FAILED, "error_message": "authentication failed"}
        session.principal, session.token_hash, session.authenticated = principal, token_hash, True
        session.token_generation = self._tokens.generation
        acls.current_principal.set(principal)  # for the rest of this connection (its task's context)
        structlog.contextvars.bind_contextvars(principal=principal)
        log.info("kafka_authenticated", peer=session.host, principal=principal)
        return {"error_code": codes.NONE, "auth_bytes": b"", "session_lifetime_ms": 0}

    def _principal(self, auth: bytes, peer: str) -> tuple[str | None, str]:
        """The principal and its token's hash from PLAIN's message, [authzid] NUL user NUL password
        (RFC 4616); (None, "") when they do not authenticate, and why is logged."""
        assert self._tokens is not None
        parts = auth.split(b"\0")
        why = "not a SASL/PLAIN message"
        if len(parts) == 3:
            try:
                authzid, user, password = (p.decode() for p in parts)
            except UnicodeDecodeError:
                authzid = user = password = ""
                why = "not UTF-8"
            principal = self._tokens.principal(password) if password else None
            if principal is not None and user == principal and authzid in ("", principal):
                return principal, hash_token(password)
            if password:
                why = "an unknown token" if principal is None else f"{principal}'s token, sent as {user!r}"
        log.warning("kafka_authentication_failed", peer=peer, reason=why)
        return None, ""
