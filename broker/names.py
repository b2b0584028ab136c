"""Validation of names and numbers that arrive in requests."""

from __future__ import annotations

import re

from tidelog.broker.errors import BrokerError, clip
from tidelog.common.reasons import Reason

_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")


def _check_name(kind: str, name: str) -> None:
    """Topic and group names follow Kafka's rule."""
    if name in (".", "..") or not _NAME.fullmatch(name):
        raise BrokerError(
            Reason.INVALID_NAME,
            f"invalid {kind} name {clip(repr(name), 60)} ({len(name)} characters): use 1-249 characters of "
            "A-Z a-z 0-9 . _ - (not '.' or '..')",
            **{kind: name},
        )


def check_topic_name(name: str) -> None:
    _check_name("topic", name)


def check_group_name(name: str) -> None:
    _check_name("group", name)


def check_limit(field: str, value: int, default: int, maximum: int) -> int:
    """0 means the default; negatives are refused; values above the bound are clamped to it."""
    if value < 0:
        raise BrokerError(Reason.INVALID_REQUEST, f"{field} must be >= 0 (0 = default {default}), got {value}")
    if value == 0:
        return default
    return min(value, maximum)
