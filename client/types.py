"""Plain data the SDK hands back: record metadata, messages, topic descriptions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from tidelog.v1.records_pb2 import Record


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
    """A consumed record. Fields are read from the parsed batch on access, not copied up front."""

    __slots__ = ("_append_time_ms", "_record", "offset", "partition", "topic")

    def __init__(self, topic: str, partition: int, offset: int, record: Record, append_time_ms: int) -> None:
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self._record = record
        self._append_time_ms = append_time_ms

    @property
    def key(self) -> bytes | None:
        """The record's key, or None for a keyless record."""
        return self._record.key or None

    @property
    def value(self) -> bytes | None:
        """The record's value, or None for a tombstone."""
        return self._record.value if self._record.HasField("value") else None

    @property
    def headers(self) -> list[tuple[str, bytes]]:
        return [(h.key, h.value) for h in self._record.headers]

    @property
    def timestamp_ms(self) -> int:
        """The record's own timestamp, or the batch's append time when it had none."""
        return self._record.timestamp_ms or self._append_time_ms

    def __repr__(self) -> str:
        return (
            f"Message(topic={self.topic!r}, partition={self.partition}, offset={self.offset}, "
            f"key={self.key!r}, value={self.value!r}, timestamp_ms={self.timestamp_ms})"
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
