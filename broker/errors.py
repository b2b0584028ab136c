"""The broker's error: a reason from the shared table plus a message for a person."""

from __future__ import annotations

import grpc

from client.errors import REASONS


class BrokerError(Exception):
    """Raised anywhere in the broker; the service layer turns it into a gRPC status."""

    def __init__(self, reason: str, message: str, **metadata: object) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.metadata = {k: str(v) for k, v in metadata.items()}

    @property
    def code(self) -> grpc.StatusCode:
        return REASONS[self.reason][0]


def topic_not_found(name: str) -> BrokerError:
    return BrokerError("TOPIC_NOT_FOUND", f"topic {name!r} does not exist", topic=name)


def invalid_request(message: str) -> BrokerError:
    return BrokerError("INVALID_REQUEST", message)
