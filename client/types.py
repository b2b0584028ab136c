"""Plain data the SDK hands back: record metadata, messages, topic descriptions."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from tidelog.serde import Deserializer
from tidelog.v1.records_pb2 import Record


class TopicPartition(NamedTuple):
    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class RecordMetadata:
    """Where a produced record landed. In a cluster, `durable_on` is its durability receipt: the
    brokers that held it durably when it was acknowledged (the leader's first), under the partition's
    `leader_epoch`; a single broker answers `(0,)` and epoch 0."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    durable_on: tuple[int, ...] = ()
    leader_epoch: int = -1


class _Origin(NamedTuple):
    """What every Message of one batch shares: kept once per batch, not once per record."""

    topic: str
    partition: int
    append_time_ms: int
    serde: tuple[Deserializer | None, Deserializer | None] | None


class Message:
    """A consumed record. Fields are read from the parsed batch on access, not copied up front.

    With deserializers, ``key`` and ``value`` are deserialized on each access
    (``raw_key``/``raw_value`` give the bytes), so one bad record raises where it is read.
    """

    # Three slots: a Message is made for every record a poll() returns, so each store counts.
    __slots__ = ("_origin", "_record", "offset")

    def __init__(self, origin: _Origin, offset: int, record: Record) -> None:
        self._origin = origin
        self.offset = offset
        self._record = record

    @property
    def topic(self) -> str:
        return self._origin[0]

    @property
    def partition(self) -> int:
        return self._origin[1]

    @property
    def raw_key(self) -> bytes | None:
        """The key's bytes, or None for a keyless record."""
        return self._record.key or None

    @property
    def raw_value(self) -> bytes | None:
        """The value's bytes, or None for a tombstone."""
        value = self._record.value
        if not value and not self._record.HasField("value"):  # only an empty value needs the question
            return None
        return value

    @property
    def key(self) -> Any:
        """The record's key (deserialized if the consumer has a key_deserializer), or None."""
        key = self._record.key or None
        serde = self._origin[3]
        if key is not None and serde is not None and serde[0] is not None:
            return serde[0](key)
        return key

    @property
    def value(self) -> Any:
        """The record's value (deserialized if the consumer has a value_deserializer), or None for a tombstone."""
        value = self._record.value
        if not value and not self._record.HasField("value"):
            return None
        serde = self._origin[3]
        if serde is not None and serde[1] is not None:
            return serde[1](value)
        return value

    @property
    def headers(self) -> list[tuple[str, bytes]]:
        """The record's headers as (name, bytes) pairs, in order."""
        return [(h.key, h.value) for h in self._record.headers]

    @property
    def timestamp_ms(self) -> int:
        """The record's own timestamp, or the batch's append time when it had none."""
        return self._record.timestamp_ms or self._origin[2]

    def __repr__(self) -> str:
        return (
            f"Message(topic={self.topic!r}, partition={self.partition}, offset={self.offset}, "
            f"key={self.raw_key!r}, value={self.raw_value!r}, timestamp_ms={self.timestamp_ms})"
        )


class MessageBatch:
    """Consecutive records of one partition, handed out as they were stored: no object per record.

    For the last bit of speed (``Consumer.poll_batches()``): ``values`` and ``keys`` are plain
    lists of bytes built in one pass; ``messages()`` (or iterating) gives the usual Message views.
    """

    __slots__ = ("_append_time_ms", "_serde", "base_offset", "partition", "records", "topic")

    def __init__(
        self,
        topic: str,
        partition: int,
        base_offset: int,
        records: Sequence[Record],
        append_time_ms: int,
        serde: tuple[Deserializer | None, Deserializer | None] | None = None,
    ) -> None:
        self.topic = topic
        self.partition = partition
        self.base_offset = base_offset
        self.records = records
        self._append_time_ms = append_time_ms
        self._serde = serde

    def __len__(self) -> int:
        return len(self.records)

    @property
    def next_offset(self) -> int:
        """The offset after the batch's last record."""
        return self.base_offset + len(self.records)

    @property
    def values(self) -> list[Any]:
        """Every record's value, in order: bytes (b"" for a tombstone), or deserialized (None for a tombstone)."""
        if self._serde is not None and self._serde[1] is not None:
            return [m.value for m in self.messages()]
        return [r.value for r in self.records]

    @property
    def keys(self) -> list[bytes]:
        """Every record's key as bytes (b"" for a keyless record)."""
        return [r.key for r in self.records]

    def messages(self) -> list[Message]:
        """The records as Message views."""
        origin = _Origin(self.topic, self.partition, self._append_time_ms, self._serde)
        base = self.base_offset
        return [Message(origin, base + i, r) for i, r in enumerate(self.records)]

    def split(self, count: int) -> tuple[MessageBatch, MessageBatch]:
        """The first `count` records and the rest, as two batches."""
        head = MessageBatch(
            self.topic, self.partition, self.base_offset, self.records[:count], self._append_time_ms, self._serde
        )
        tail = MessageBatch(
            self.topic,
            self.partition,
            self.base_offset + count,
            self.records[count:],
            self._append_time_ms,
            self._serde,
        )
        return head, tail

    def __iter__(self) -> Iterator[Message]:
        return iter(self.messages())

    def __repr__(self) -> str:
        return f"MessageBatch({self.topic}/{self.partition}, offsets {self.base_offset}-{self.next_offset - 1})"


@dataclass(frozen=True, slots=True)
class TopicInfo:
    name: str
    partitions: int
    configs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PartitionDescription:
    """A partition's offsets and size (from its leader, in a cluster), and who leads and holds it
    (a cluster's; empty `replicas` on a single broker)."""

    partition: int
    log_start_offset: int
    high_watermark: int
    size_bytes: int
    leader: int = 0
    replicas: tuple[int, ...] = ()
    isr: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class TopicDescription:
    topic: TopicInfo
    partitions: list[PartitionDescription]


@dataclass(frozen=True, slots=True)
class GroupSummary:
    name: str
    members: int
    generation: int
    state: str  # "stable", "rebalancing" or "empty"


@dataclass(frozen=True, slots=True)
class GroupMemberInfo:
    member_id: str
    topics: list[str]
    partitions: list[TopicPartition]
    peer: str
    session_timeout_ms: int


@dataclass(frozen=True, slots=True)
class PartitionLag:
    topic: str
    partition: int
    committed_offset: int  # -1: nothing committed
    end_offset: int
    lag: int
    member_id: str  # "" when no member owns it


@dataclass(frozen=True, slots=True)
class GroupDescription:
    name: str
    generation: int
    state: str
    members: list[GroupMemberInfo]
    partitions: list[PartitionLag]


@dataclass(frozen=True, slots=True)
class ClusterPartition:
    topic: str
    partition: int
    leader: int  # -1: offline
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    target_replicas: tuple[int, ...] = ()  # a reassignment under way: where it goes


@dataclass(frozen=True, slots=True)
class ClusterDescription:
    """The brokers (id -> address), the controller (-1: none now), and the partitions short of
    replicas or without a leader. A single broker is a cluster of one: broker 0, its own controller."""

    brokers: dict[int, str]
    controller_id: int
    under_replicated: list[ClusterPartition]
    offline: list[ClusterPartition]
    reassigning: list[ClusterPartition] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ElectionResult:
    """What a leader election did to one partition: `outcome` is "elected", "not_needed" or
    "not_eligible" (`detail` says why); `leader` and `leader_epoch` are the partition's now."""

    partition: int
    outcome: str
    leader: int
    leader_epoch: int
    detail: str
