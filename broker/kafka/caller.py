"""Who sent a Kafka request: its connection's session and the request header's client id."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Session:
    """One Kafka connection: who is on it once known, and what the listener does after an answer."""

    host: str  # the peer's address
    principal: str | None = None  # from SASL/PLAIN (a token) or the client certificate's CN
    token_hash: str | None = None  # the token SASL/PLAIN authenticated with (a revoked one ends the connection)
    token_generation: int = 0  # the token file's reload it was last checked against
    mechanism: str | None = None  # chosen by SaslHandshake
    authenticated: bool = False
    mute_s: float = 0.0  # throttled: the next request is read this much later (KIP-219)
    close: bool = False  # answer, then close the connection (a failed authentication)


@dataclass(frozen=True)
class Caller:
    client_id: str  # the request header's (may be empty)
    session: Session

    @property
    def host(self) -> str:
        return self.session.host
