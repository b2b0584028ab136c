"""Tidelog's errors: one table maps a broker reason to its gRPC code and SDK exception.

Every broker error carries a ``google.rpc.ErrorInfo`` (domain ``tidelog``) whose
``reason`` is a :class:`tidelog.common.reasons.Reason`. The SDK turns a failed call into the
exception class named there, so callers can catch as broadly or narrowly as they
like::

    try:
        admin.create_topic("orders", partitions=3)
    except TopicExistsError:
        pass
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping

import grpc
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

from tidelog.common.reasons import ERROR_DOMAIN, Reason


class TidelogError(Exception):
    """Base of every error the SDK raises.

    Attributes: ``code`` (the gRPC status code), ``reason`` (the broker's ErrorInfo
    reason, or ``""``), ``message`` (what went wrong, for a person) and
    ``metadata`` (ErrorInfo metadata, e.g. ``log_start_offset``).
    """

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN
    retriable = False

    def __init__(
        self,
        message: str,
        *,
        reason: str = "",
        code: grpc.StatusCode | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        if code is not None:
            self.code = code
        self.metadata = dict(metadata or {})

    def __str__(self) -> str:
        return f"{self.reason or self.code.name}: {self.message}"


class NotFoundError(TidelogError):
    code = grpc.StatusCode.NOT_FOUND


class TopicNotFoundError(NotFoundError):
    pass


class AlreadyExistsError(TidelogError):
    code = grpc.StatusCode.ALREADY_EXISTS


class TopicExistsError(AlreadyExistsError):
    pass


class InvalidArgumentError(TidelogError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class InvalidNameError(InvalidArgumentError):
    pass


class PartitionOutOfRangeError(InvalidArgumentError):
    pass


class RecordTooLargeError(InvalidArgumentError):
    pass


class InvalidConfigError(InvalidArgumentError):
    pass


class OffsetOutOfRangeError(TidelogError):
    code = grpc.StatusCode.OUT_OF_RANGE


class FailedPreconditionError(TidelogError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class OutOfOrderSequenceError(FailedPreconditionError):
    pass


class FencedError(FailedPreconditionError):
    """This consumer is no longer a member of its group (session ended) or used a stale generation; rejoin."""


class NotOwnerError(FailedPreconditionError):
    """The group member does not own the partition it tried to commit."""


class GroupNotEmptyError(FailedPreconditionError):
    """The group has live members; stop them first."""


class GroupNotFoundError(NotFoundError):
    """No such consumer group."""


class ResourceExhaustedError(TidelogError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    retriable = True


class TooManyStreamsError(ResourceExhaustedError):
    """The broker's limit of open streams (in total or per connection) is reached."""


class StorageFullError(ResourceExhaustedError):
    pass


class UnavailableError(TidelogError):
    code = grpc.StatusCode.UNAVAILABLE
    retriable = True


class DeadlineExceededError(TidelogError, builtins.TimeoutError):
    """A call or a delivery did not complete in time (also a builtin TimeoutError)."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED
    retriable = True


class DeliveryTimeoutError(DeadlineExceededError):
    """The producer could not deliver a record within `delivery_timeout_ms`, retries included."""

    retriable = False


class BufferFullError(DeadlineExceededError):
    """`send()` waited `max_block_ms` for room in the producer's `buffer_bytes` and gave up."""


class NotAuthorizedError(TidelogError):
    """The broker did not accept who you are (no or a bad token) or what you may do."""

    code = grpc.StatusCode.PERMISSION_DENIED


class UnauthenticatedError(NotAuthorizedError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDeniedError(NotAuthorizedError):
    code = grpc.StatusCode.PERMISSION_DENIED


class CancelledError(TidelogError):
    code = grpc.StatusCode.CANCELLED


class InternalError(TidelogError):
    """The broker failed while handling the call (a broker bug, reported with its ErrorInfo): not retriable."""

    code = grpc.StatusCode.INTERNAL


class CorruptBatchError(TidelogError):
    """A batch the consumer could not open (a compressed batch that does not decompress): the data
    at that offset is damaged. Not retriable; seek past it to read on."""

    code = grpc.StatusCode.DATA_LOSS


class AbortedError(TidelogError):
    code = grpc.StatusCode.ABORTED
    retriable = True


class NotLeaderError(UnavailableError):
    """Another broker leads the partition: ``metadata`` names it (``leader_id``, ``leader_address``,
    ``leader_epoch``), so a client can send there without asking for metadata first."""


class LeaderNotAvailableError(UnavailableError):
    """The partition has no leader right now (an election is under way, or every in-sync replica is down)."""


class NotCoordinatorError(UnavailableError):
    """Another broker coordinates the consumer group: ``metadata`` names it (``coordinator_id``,
    ``coordinator_address``; empty while the group's coordinator is moving). Retriable."""


class NotEnoughReplicasError(UnavailableError):
    """acks=all and the partition has fewer in-sync replicas than its ``min.insync.replicas``:
    refused before anything was written, or (``metadata["after_append"] == "true"``) written with
    fewer copies than asked for. Retriable: a replica catching up ends it."""


class ReplicationTimeoutError(UnavailableError):
    """The in-sync replicas did not confirm the records within the broker's replication timeout: they
    may be stored. Retriable; the idempotent producer's retry settles it."""


class TransportError(UnavailableError):
    """The connection failed mid-call (grpc's own INTERNAL, UNKNOWN or CANCELLED, with no broker
    ErrorInfo attached): the broker may never have seen the call. Retriable, like UnavailableError;
    ``code`` keeps what grpc said."""


# The names of the SDK's error families, as Kafka and NATS users look for them.
TopicNotFound = TopicNotFoundError
TopicExists = TopicExistsError
InvalidRequest = InvalidArgumentError
OffsetOutOfRange = OffsetOutOfRangeError
NotAuthorized = NotAuthorizedError
BrokerUnavailable = UnavailableError
Timeout = DeadlineExceededError

# reason -> SDK exception (the gRPC code is the reason's own: tidelog.common.reasons).
EXCEPTIONS: dict[Reason, type[TidelogError]] = {
    Reason.TOPIC_NOT_FOUND: TopicNotFoundError,
    Reason.TOPIC_EXISTS: TopicExistsError,
    Reason.INVALID_NAME: InvalidNameError,
    Reason.INVALID_PARTITIONS: InvalidArgumentError,
    Reason.PARTITION_OUT_OF_RANGE: PartitionOutOfRangeError,
    Reason.RECORD_TOO_LARGE: RecordTooLargeError,
    Reason.EMPTY_RECORDS: InvalidArgumentError,
    Reason.KEY_REQUIRED: InvalidArgumentError,
    Reason.UNKNOWN_CONFIG: InvalidConfigError,
    Reason.INVALID_CONFIG: InvalidConfigError,
    Reason.INVALID_REQUEST: InvalidArgumentError,
    Reason.OFFSET_OUT_OF_RANGE: OffsetOutOfRangeError,
    Reason.OUT_OF_ORDER_SEQUENCE: OutOfOrderSequenceError,
    Reason.FENCED: FencedError,
    Reason.NOT_OWNER: NotOwnerError,
    Reason.GROUP_NOT_EMPTY: GroupNotEmptyError,
    Reason.GROUP_NOT_FOUND: GroupNotFoundError,
    Reason.GROUP_PROTOCOL_IN_USE: FailedPreconditionError,
    Reason.PRODUCER_FENCED: FailedPreconditionError,
    Reason.UNKNOWN_PRODUCER: FailedPreconditionError,
    Reason.STORAGE_FULL: StorageFullError,
    Reason.UNAUTHENTICATED: UnauthenticatedError,
    Reason.TOO_MANY_STREAMS: TooManyStreamsError,
    Reason.NOT_AUTHORIZED: PermissionDeniedError,
    Reason.ACLS_OFF: FailedPreconditionError,
    Reason.INVALID_ACL: InvalidArgumentError,
    Reason.SHUTTING_DOWN: UnavailableError,
    Reason.NOT_LEADER: NotLeaderError,
    Reason.LEADER_NOT_AVAILABLE: LeaderNotAvailableError,
    Reason.NOT_COORDINATOR: NotCoordinatorError,
    Reason.REPLICATION_TIMEOUT: ReplicationTimeoutError,
    Reason.NOT_ENOUGH_REPLICAS: NotEnoughReplicasError,
    Reason.CLUSTER_UNAVAILABLE: UnavailableError,
    Reason.UNSUPPORTED_IN_CLUSTER: FailedPreconditionError,
    Reason.INVALID_REPLICATION_FACTOR: InvalidArgumentError,
    Reason.INTERNAL: InternalError,
}

# For errors without a known reason (transport failures, older brokers).
_BY_CODE: dict[grpc.StatusCode, type[TidelogError]] = {
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.OUT_OF_RANGE: OffsetOutOfRangeError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.CANCELLED: CancelledError,
    grpc.StatusCode.INTERNAL: InternalError,
    grpc.StatusCode.ABORTED: AbortedError,
}
# Statuses that, without a broker's ErrorInfo, come from the transport: a broken connection, a call
# the server's transport dropped before the broker saw it (grpc's own wording: "Internal error from
# Core", "Socket closed", "CANCELLED").
_TRANSPORT_CODES = frozenset({grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.CANCELLED})

_CODE_BY_VALUE = {code.value[0]: code for code in grpc.StatusCode}


def code_from_int(value: int) -> grpc.StatusCode:
    return _CODE_BY_VALUE.get(value, grpc.StatusCode.UNKNOWN)


def make_error(
    code: grpc.StatusCode, message: str, reason: str = "", metadata: Mapping[str, str] | None = None
) -> TidelogError:
    """The SDK exception for a status code and (optional) ErrorInfo reason."""
    cls = EXCEPTIONS.get(reason) or _BY_CODE.get(code, TidelogError)  # type: ignore[call-overload]
    return cls(message, reason=reason, code=code, metadata=metadata)


def from_rpc_error(err: grpc.RpcError) -> TidelogError:
    """Translate a grpc error (sync or aio) into the SDK's exception, reading its ErrorInfo."""
    code: grpc.StatusCode = err.code()
    message: str = err.details() or code.name
    reason = ""
    metadata: dict[str, str] = {}
    for key, value in err.trailing_metadata() or ():
        if key != "grpc-status-details-bin":
            continue
        try:
            status = status_pb2.Status.FromString(value)
        except DecodeError:
            break
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info) and info.domain == ERROR_DOMAIN:
                reason = info.reason
                metadata = dict(info.metadata)
    if reason:
        return make_error(code, message, reason, metadata)
    message = _transport_hint(code, message)
    if code in _TRANSPORT_CODES:
        return TransportError(message, code=code)
    error = make_error(code, message)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        error.retriable = False  # grpc's own size limits (a message or its metadata too large): permanent
    return error


def _transport_hint(code: grpc.StatusCode, message: str) -> str:
    """Say what to do about failures that come from the connection rather than the broker."""
    if code == grpc.StatusCode.UNAVAILABLE:
        return f"{message} (is the broker running at that address and reachable?)"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"{message} (the broker did not answer in time: is it overloaded or unreachable?)"
    if code in _TRANSPORT_CODES:
        return f"{message} (the connection to the broker failed mid-call; retrying is safe)"
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return f"{message} (a gRPC size limit of this client or the broker: send less in one message)"
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return f"{message} (the server does not speak this Tidelog API: is that address a Tidelog broker?)"
    return message
