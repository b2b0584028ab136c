"""The broker's error: a reason from the shared table plus a message for a person."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

from tidelog.common.reasons import ERROR_DOMAIN, Reason

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


# Refusals that waiting cures: their status also carries a google.rpc.RetryInfo.
_RETRY_AFTER_S = {Reason.TOO_MANY_STREAMS: 1, Reason.STORAGE_FULL: 5, Reason.SHUTTING_DOWN: 1}


def status_metadata(err: BrokerError) -> tuple[tuple[str, bytes], ...]:
    """The trailing metadata of `err`'s status: a google.rpc.Status with its ErrorInfo (and RetryInfo)."""
    info = error_details_pb2.ErrorInfo(reason=err.reason, domain=ERROR_DOMAIN, metadata=err.metadata)
    detail = any_pb2.Any()
    detail.Pack(info)
    details = [detail]
    if err.reason in _RETRY_AFTER_S:
        retry = any_pb2.Any()
        retry.Pack(error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=_RETRY_AFTER_S[err.reason])))
        details.append(retry)
    status = status_pb2.Status(code=err.code.value[0], message=err.message, details=details)
    return (("grpc-status-details-bin", status.SerializeToString()),)
