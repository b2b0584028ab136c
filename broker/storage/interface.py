"""What the rest of the broker needs of storage: the LogStore and the write transaction it hands out.

A store keeps, per data directory: topics (name, numeric id, partition count, configs), per partition
its log of stored batches keyed by base offset with its stats (next offset, log start, bytes) and,
when replicated, its leader epochs; the producers' idempotence state, committed group offsets, ACL
rules added at run time, and id counters.

Writes happen in one transaction at a time (the writer group-commits many ops into one); each op runs
in a nested transaction of it, so an op that fails leaves nothing behind. Reads see the last committed
transaction and never wait for the writer. Offsets and batches are the store's invariants: a batch is
stored and read whole (a read may re-slice the first batch it returns), offsets within a partition only
grow, and a batch's records carry a CRC32C the store keeps as written.

Two stores implement it (tests/storage runs one contract suite against both): LMDB (lmdb_store.py),
the broker's, and an in-memory one (memory_store.py) for tests and for what needs no durability.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class TopicRecord:
    id: int
    name: str
    partitions: int
    configs: dict[str, str]


@dataclass(frozen=True)
class PartitionStats:
    next_offset: int = 0
    log_start_offset: int = 0
    size_bytes: int = 0


@dataclass(frozen=True)
class ReadResult:
    batches: list[bytes]  # RecordBatch wire bytes, the first re-sliced to start at the offset read
    next_offset: int


@dataclass(frozen=True)
class StoredBatch:
    """A batch as stored: its header fields, and the value (header and RecordBatch bytes, broker.batches)."""

    base_offset: int
    count: int
    max_timestamp_ms: int
    append_time_ms: int
    value: bytes  # b"" from a scan without values
    size: int = -1  # stored bytes (len(value) when it is there)

    @property
    def stored_bytes(self) -> int:
        return self.size if self.size >= 0 else len(self.value)


@dataclass(frozen=True)
class ProducerBatch:
    """One batch an idempotent producer wrote to a partition (the last few are kept), in its epoch (a
    Kafka producer's; gRPC producers have none, 0)."""

    first_sequence: int
    count: int
    base_offset: int
    append_time_ms: int
    epoch: int = 0


class StorageFull(Exception):
    """A write did not fit. `disk`: the disk is full (else the map or memory limit is reached)."""

    def __init__(self, message: str, *, disk: bool, free_bytes: int = 0) -> None:
        super().__init__(message)
        self.disk = disk
        self.free_bytes = free_bytes


class StorageError(Exception):
    """A write failed for another reason than space (logged by the store; the writer answers INTERNAL)."""


class LogWrite(Protocol):
    """A write transaction. Reads through it see its own writes."""

    def nested(self) -> AbstractContextManager[LogWrite]:
        """A child transaction: committed into this one on a normal exit, rolled back on an exception."""
        ...

    # -- topics and ids --
    def topic(self, name: str) -> TopicRecord | None: ...

    def create_topic(self, record: TopicRecord) -> None:
        """Store a new topic with empty partitions."""
        ...

    def put_topic(self, record: TopicRecord) -> None:
        """Replace a topic's record (its configs)."""
        ...

    def delete_topic(self, record: TopicRecord) -> None:
        """Forget the topic at once; its data is purged later (purge_topic), in small steps."""
        ...

    def purge_topic(self, topic_id: int, limit: int) -> bool:
        """Delete up to `limit` entries of a deleted topic's data; True once nothing is left."""
        ...

    def next_id(self, counter: str) -> int:
        """The next value of a named counter (from 1)."""
        ...

    # -- partitions --
    def stats(self, topic_id: int, partition: int) -> PartitionStats | None: ...

    def append(self, topic_id: int, partition: int, batch: StoredBatch, stats: PartitionStats) -> None:
        """Store `batch` at its base offset (the partition's next offset) and the partition's new stats."""
        ...

    def trim_head(self, topic_id: int, partition: int, new_start: int) -> PartitionStats | None:
        """Delete the whole batches below `new_start` and move the log start there (never back);
        the new stats, or None for a partition that does not exist."""
        ...

    def truncate(self, topic_id: int, partition: int, offset: int) -> PartitionStats | None:
        """Cut the log's tail from `offset` on (a batch across it keeps its records below it), the
        leader epochs that start at or past it, and the producers' batches there (a retry of one is
        new again); the new stats, or None for a partition that does not exist. A follower does this
        to match its leader."""
        ...

    def put_leader_epoch(self, topic_id: int, partition: int, epoch: int, start_offset: int) -> None:
        """Note that leader epoch `epoch` writes the partition from `start_offset` on (log.epochs)."""
        ...

    def put_high_watermark(self, topic_id: int, partition: int, offset: int) -> None:
        """Checkpoint a replicated partition's high watermark (what a restart may show at once)."""
        ...

    def replace_batch(
        self, topic_id: int, partition: int, base_offset: int, count: int, batches: list[StoredBatch]
    ) -> int | None:
        """Replace the batch at `base_offset` (if it still holds `count` records) by `batches` (compaction:
        survivors keep their offsets); the change in stored bytes, or None when it was not there."""
        ...

    def set_size(self, topic_id: int, partition: int, size_bytes: int) -> PartitionStats | None: ...

    def producer_batches(self, topic_id: int, partition: int, producer_id: int) -> list[ProducerBatch]: ...

    def put_producer_batches(
        self, topic_id: int, partition: int, producer_id: int, batches: list[ProducerBatch], now_ms: int
    ) -> None: ...

    # -- group offsets --
    def committed_offset(self, group: str, topic_id: int, partition: int) -> int | None: ...

    def commit_offset(self, group: str, topic_id: int, partition: int, offset: int, now_ms: int) -> None: ...

    def delete_group(self, group: str) -> bool:
        """Forget a group's committed offsets; True if it had any."""
        ...

    # -- ACL rules added at run time --
    def add_acl(self, rule: str) -> bool: ...

    def remove_acl(self, rule: str) -> bool: ...

    def acls(self) -> list[str]: ...


class LogStore(Protocol):
    path: Path  # where the data lives (a memory store names a folder it never writes)

    def load(self) -> tuple[list[tuple[TopicRecord, list[PartitionStats]]], list[int]]:
        """Every topic with its partitions' stats, and the ids of deleted topics not purged yet."""
        ...

    def write(self) -> AbstractContextManager[LogWrite]:
        """The one write transaction: committed (durably, as the store was opened) on a normal exit.
        Raises StorageFull or StorageError when the commit fails; nothing of it is applied then."""
        ...

    # -- reads --
    def read(
        self, topic_id: int, partition: int, offset: int, high_watermark: int, max_records: int, max_bytes: int
    ) -> ReadResult:
        """Batches from `offset` below the high watermark: the first re-sliced to start there (and always
        returned, whatever max_bytes), the rest whole while they fit."""
        ...

    def scan(
        self, topic_id: int, partition: int, start: int, end: int, limit: int = 1 << 62, values: bool = True
    ) -> Iterator[StoredBatch]:
        """The stored batches from the one holding `start` on, below `end`, at most `limit` (any thread);
        without `values`, only their headers and sizes."""
        ...

    def offset_for_timestamp(
        self, topic_id: int, partition: int, start: int, high_watermark: int, timestamp_ms: int, append_time: bool
    ) -> tuple[int, int] | None:
        """The first (offset, timestamp) at or after `timestamp_ms` from `start`, or None."""
        ...

    def leader_epochs(self, topic_id: int, partition: int) -> list[tuple[int, int]]:
        """The partition's (leader epoch, start offset) entries, in order."""
        ...

    def high_watermark(self, topic_id: int, partition: int) -> int | None:
        """A replicated partition's last checkpointed high watermark, if any."""
        ...

    def committed(self, group: str) -> dict[tuple[int, int], int]:
        """A group's committed offsets by (topic_id, partition)."""
        ...

    def committed_offset(self, group: str, topic_id: int, partition: int) -> int | None: ...

    def group_names(self) -> list[str]:
        """Groups with a committed offset, in name order."""
        ...

    def stored_acls(self) -> list[str]: ...

    # -- space --
    def grow(self, into_reserve: bool) -> bool:
        """Make room after StorageFull(disk=False) if the store can (no transaction open); False at its limit."""
        ...

    def release_freed_pages(self) -> None:
        """Make space freed by the last commit usable by the next one (LMDB needs a later commit for that)."""
        ...

    def limit_bytes(self) -> int:
        """The most the store may hold (the map's limit)."""
        ...

    def sync(self) -> None: ...

    def close(self) -> None: ...
