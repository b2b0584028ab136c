"""The topic config table: Kafka's key names, defaults and validation in one place."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from tidelog.broker.errors import BrokerError
from tidelog.common.reasons import Reason


def _int_at_least(minimum: int) -> Callable[[str], bool]:
    def check(value: str) -> bool:
        try:
            return int(value) >= minimum
        except ValueError:
            return False

    return check


def _one_of(*choices: str) -> Callable[[str], bool]:
    return lambda value: value in choices


@dataclass(frozen=True)
class ConfigKey:
    default: str
    valid: Callable[[str], bool]
    expected: str


TOPIC_CONFIGS: dict[str, ConfigKey] = {
    "retention.ms": ConfigKey("604800000", _int_at_least(-1), "an integer >= -1 (-1 = forever)"),
    "retention.bytes": ConfigKey("-1", _int_at_least(-1), "an integer >= -1 (-1 = no limit)"),
    "cleanup.policy": ConfigKey(
        "delete",
        _one_of("delete", "compact", "compact,delete", "delete,compact"),
        "delete, compact or compact,delete",
    ),
    "delete.retention.ms": ConfigKey("86400000", _int_at_least(0), "an integer >= 0"),
    "min.compaction.lag.ms": ConfigKey("0", _int_at_least(0), "an integer >= 0"),
    "max.message.bytes": ConfigKey(
        "1048576",
        lambda v: _int_at_least(1)(v) and int(v) <= 64 << 20,
        "an integer from 1 to 67108864",
    ),
    # In a cluster the default is min(2, replication factor), written into the topic's configs at creation.
    "min.insync.replicas": ConfigKey("1", _int_at_least(1), "an integer >= 1"),
    "message.timestamp.type": ConfigKey(
        "CreateTime", _one_of("CreateTime", "LogAppendTime"), "CreateTime or LogAppendTime"
    ),
}


def validate(configs: Mapping[str, str]) -> dict[str, str]:
    """Check every key and value; return them as a plain dict."""
    for key, value in configs.items():
        spec = TOPIC_CONFIGS.get(key)
        if spec is None:
            known = ", ".join(sorted(TOPIC_CONFIGS))
            raise BrokerError(Reason.UNKNOWN_CONFIG, f"unknown topic config {key!r}; known keys: {known}", key=key)
        if not spec.valid(value):
            raise BrokerError(
                Reason.INVALID_CONFIG, f"config {key}={value!r} is invalid: expected {spec.expected}", key=key
            )
    return dict(configs)


def effective(overrides: Mapping[str, str], broker_defaults: Mapping[str, str] | None = None) -> dict[str, str]:
    """The table's defaults, then the broker's (its --retention-* flags), then the topic's own values."""
    base = broker_defaults or {}
    return {key: overrides.get(key, base.get(key, spec.default)) for key, spec in TOPIC_CONFIGS.items()}


def with_min_insync_replicas(configs: Mapping[str, str], replication_factor: int) -> dict[str, str]:
    """The configs with `min.insync.replicas` filled in (default min(2, factor)); INVALID_CONFIG when
    it asks for more in-sync replicas than the topic has replicas, which no produce could satisfy."""
    key = "min.insync.replicas"
    if key not in configs and replication_factor == 1:
        return dict(configs)  # the table's default, 1, is right: leave the topic's overrides as given
    wanted = int(configs.get(key, min(2, replication_factor)))
    if wanted > replication_factor:
        raise BrokerError(
            Reason.INVALID_CONFIG,
            f"config {key}={wanted} is invalid: the topic has {replication_factor} replica(s), so at most "
            f"{replication_factor} can be in sync",
            key=key,
        )
    return {**configs, key: str(wanted)}
