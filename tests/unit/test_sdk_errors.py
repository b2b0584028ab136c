"""How the SDK reads a failed call (the broker's ErrorInfo decides, else the transport's status), and the
channel it opens to a bootstrap list."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from tidelog.errors import (
    CancelledError,
    InternalError,
    ResourceExhaustedError,
    StorageFullError,
    TransportError,
    UnavailableError,
    from_rpc_error,
)


class FakeRpcError(grpc.RpcError):  # type: ignore[misc]  # grpc has no type information: RpcError is Any
    def __init__(self, code: grpc.StatusCode, details: str, reason: str = "") -> None:
        self._code, self._details = code, details
        self._trailers: tuple[tuple[str, bytes], ...] = ()
        if reason:
            info = any_pb2.Any()
            info.Pack(error_details_pb2.ErrorInfo(reason=reason, domain="tidelog"))
            status = status_pb2.Status(code=code.value[0], message=details, details=[info])
            self._trailers = (("grpc-status-details-bin", status.SerializeToString()),)

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:
        return self._trailers


@pytest.mark.parametrize(
    ("code", "details"),
    [
        (grpc.StatusCode.INTERNAL, "Internal error from Core"),
        (grpc.StatusCode.UNKNOWN, "Stream removed"),
        (grpc.StatusCode.CANCELLED, "CANCELLED"),
    ],
)
def test_a_transport_failure_is_retriable_not_a_broker_bug(code: grpc.StatusCode, details: str) -> None:
    error = from_rpc_error(FakeRpcError(code, details))
    assert isinstance(error, TransportError) and isinstance(error, UnavailableError)
    assert error.retriable and error.code == code
    assert not isinstance(error, InternalError | CancelledError)


def test_the_brokers_own_statuses_keep_their_meaning() -> None:
    bug = from_rpc_error(FakeRpcError(grpc.StatusCode.INTERNAL, "the broker failed", "INTERNAL"))
    assert isinstance(bug, InternalError) and not bug.retriable
    full = from_rpc_error(FakeRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, "disk full", "STORAGE_FULL"))
    assert isinstance(full, StorageFullError) and full.retriable


def test_grpcs_own_size_limit_is_permanent() -> None:
    error = from_rpc_error(FakeRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, "received metadata size exceeds limit"))
    assert isinstance(error, ResourceExhaustedError) and not error.retriable


@pytest.mark.parametrize(
    ("bootstrap", "target"),
    [
        ("127.0.0.1:50051", "127.0.0.1:50051"),
        ("127.0.0.1:1,127.0.0.1:2", "ipv4:127.0.0.1:1,127.0.0.1:2"),
        ("localhost:1, 127.0.0.1:2", "ipv4:127.0.0.1:1,127.0.0.1:2"),
        ("[::1]:1,[::1]:2", "ipv6:[::1]:1,[::1]:2"),
        ("no-such-host.invalid:1,127.0.0.1:3", "ipv4:127.0.0.1:3"),
    ],
)
def test_a_bootstrap_list_is_one_channel_over_every_address(bootstrap: str, target: str) -> None:
    from tidelog._channel import channel_target

    assert channel_target(bootstrap) == target
