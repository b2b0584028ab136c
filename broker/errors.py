"""The broker's error: a reason from the shared table plus a message for a person."""

from __future__ import annotations

import grpc

from tidelog.common.reasons import Reason

# A status travels in HTTP/2 trailers, which clients cap (grpc: 8 KiB by default); messages and
# metadata echo what the client sent, so both are cut to fit whatever the client sent.
MAX_MESSAGE_CHARS = 1000
MAX_METADATA_VALUE_CHARS = 200


def clip(text: str, limit: int) -> str:
    """`text`, or its start and how much was cut."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text) - limit} more characters)"


class BrokerError(Exception):
    """Raised anywhere in the broker; the service layer turns it into a gRPC status."""

    def __init__(self, reason: Reason, message: str, **metadata: object) -> None:
        message = clip(message, MAX_MESSAGE_CHARS)
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.metadata = {k: clip(str(v), MAX_METADATA_VALUE_CHARS) for k, v in metadata.items()}

    @property
    def code(self) -> grpc.StatusCode:
        return self.reason.code


def topic_not_found(name: str) -> BrokerError:
    return BrokerError(Reason.TOPIC_NOT_FOUND, f"topic {name!r} does not exist", topic=name)


def invalid_request(message: str) -> BrokerError:
    return BrokerError(Reason.INVALID_REQUEST, message)
