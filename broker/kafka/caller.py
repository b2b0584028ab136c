"""Who sent a Kafka request: what a handler may need beyond the request itself."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Caller:
    client_id: str  # the request header's (may be empty)
    host: str  # the connection's peer address
