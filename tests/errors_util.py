"""Assertions on gRPC statuses and their google.rpc.ErrorInfo."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status


def expect_status(code: grpc.StatusCode, reason: str | None, fn: Callable[[], Any]) -> grpc.RpcError:
    """Call fn, assert it fails with `code` (and ErrorInfo `reason` when given); return the error."""
    with pytest.raises(grpc.RpcError) as caught:
        fn()
    err = caught.value
    assert err.code() == code, f"expected {code}, got {err.code()}: {err.details()}"
    assert "Traceback" not in (err.details() or "")
    if reason is not None:
        assert error_reason(err) == reason
    return err


def error_info(err: grpc.RpcError) -> error_details_pb2.ErrorInfo:
    status = rpc_status.from_call(err)
    assert status is not None, "the error carries no google.rpc.Status details"
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert info.domain == "tidelog"
    return info


def error_reason(err: grpc.RpcError) -> str:
    reason: str = error_info(err).reason
    return reason
