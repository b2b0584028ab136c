"""What the `tidelog` client commands share: exit codes, errors and the admin connection."""

from __future__ import annotations

import argparse
from enum import IntEnum
from typing import Any

import grpc

from tidelog import AdminClient
from tidelog.errors import TidelogError

Args = argparse.Namespace


class Exit(IntEnum):
    OK = 0
    ERROR = 1
    USAGE = 2
    NOT_FOUND = 3
    EXISTS = 4
    UNREACHABLE = 5
    INTERRUPTED = 130


EXIT_BY_CODE = {
    grpc.StatusCode.NOT_FOUND: Exit.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS: Exit.EXISTS,
    grpc.StatusCode.UNAVAILABLE: Exit.UNREACHABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: Exit.UNREACHABLE,
}


class CliError(Exception):
    def __init__(self, message: str, code: Exit = Exit.ERROR) -> None:
        super().__init__(message)
        self.code = code


def exit_code(err: TidelogError) -> Exit:
    return EXIT_BY_CODE.get(err.code, Exit.ERROR)


def security(args: Args) -> dict[str, Any]:
    """The client security settings of --token (or TIDELOG_TOKEN) and --tls-* for any client."""
    return {
        "token": args.token,
        "tls_ca_file": args.tls_ca,
        "tls_cert_file": args.tls_cert,
        "tls_key_file": args.tls_key,
    }


def open_admin(args: Args) -> AdminClient:
    return AdminClient(args.bootstrap, timeout=args.timeout, **security(args))


def partitions(admin: AdminClient, topic: str, only: int | None) -> list[int]:
    """The partitions to read or write: `only`, checked against the topic, or all of them."""
    count = admin.partitions_for(topic)
    if only is None:
        return list(range(count))
    if only >= count:
        raise CliError(f"topic {topic!r} has {count} partition(s): there is no partition {only}")
    return [only]
