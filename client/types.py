"""Plain data the SDK hands back: record metadata, messages, topic descriptions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from tidelog.v1.records_pb2 import Record

from client.serde import Deserializer


class TopicPartition(NamedTuple):
    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class RecordMetadata:
    """Where a produced record landed."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int


class Message:
    """A consumed record. Fields are read from the parsed batch on access, not copied up front.

    With deserializers, ``key`` and ``value`` are deserialized on each access
    (``raw_key``/``raw_value`` give the bytes), so one bad record raises where it is read.
    """

    __slots__ = ("_append_time_ms", "_record", "_serde", "offset", "partition", "topic")

    def __init__(
        self,
        topic: str,
        partition: int,
        offset: int,
        record: Record,
        append_time_ms: int,
        serde: tuple[Deserializer | None, Deserializer | None] | None = None,
    ) -> None:
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self._record = record
        self._append_time_ms = append_time_ms
        self._serde = serde

    @property
    def raw_key(self) -> bytes | None:
        """The key's bytes, or None for a keyless record."""
        return self._record.key or None

    @property
    def raw_value(self) -> bytes | None:
        """The value's bytes, or None for a tombstone."""
        return self._record.value if self._record.HasField("value") else None

    @property
    def key(self) -> Any:
        """The record's key (deserialized if the consumer has a key_deserializer), or None."""
        key = self._record.key or None
        if key is not None and self._serde is not None and self._serde[0] is not None:
            return self._serde[0](key)
        return key

    @property
    def value(self) -> Any:
        """The record's value (deserialized if the consumer has a value_deserializer), or None for a tombstone."""
        if not self._record.HasField("value"):
            return None
        value = self._record.value
        if self._serde is not None and self._serde[1] is not None:
            return self._serde[1](value)
        return value

    @property
    def headers(self) -> list[tuple[str, bytes]]:
        """The record's headers as (name, bytes) pairs, in order."""
        return [(h.key, h.value) for h in self._record.headers]

    @property
    def timestamp_ms(self) -> int:
        """The record's own timestamp, or the batch's append time when it had none."""
        return self._record.timestamp_ms or self._append_time_ms

    def __repr__(self) -> str:
        return (
            f"Message(topic={self.topic!r}, partition={self.partition}, offset={self.offset}, "
            f"key={self.raw_key!r}, value={self.raw_value!r}, timestamp_ms={self.timestamp_ms})"
        )


@dataclass(frozen=True, slots=True)
class TopicInfo:
    name: str
    partitions: int
    configs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PartitionDescription:
    partition: int
    log_start_offset: int
    high_watermark: int
    size_bytes: int


@dataclass(frozen=True, slots=True)
class TopicDescription:
    topic: TopicInfo
    partitions: list[PartitionDescription]
