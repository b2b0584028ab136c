"""The log as the API layer sees it: the topics in memory, writes through the writer (one group commit
for everything pending), reads straight from the store, in the reader's protocol (log.formats). The
API never touches storage itself."""

from __future__ import annotations

import asyncio
from typing import Any

from tidelog.broker.log.formats import Conversions
from tidelog.broker.log.topics import PartitionState, TopicRegistry, TopicState
from tidelog.broker.storage.interface import LogStore, ReadResult
from tidelog.broker.storage.writer import WriteOp, Writer


class Log:
    def __init__(self, registry: TopicRegistry, store: LogStore, writer: Writer) -> None:
        self.registry = registry
        self._store = store
        self._writer = writer
        self.conversions = Conversions()

    def submit(self, op: WriteOp) -> asyncio.Future[Any]:
        """Queue a write op (log.ops, groups.offsets); the future resolves once it is durable."""
        return self._writer.submit(op)

    def read(
        self, topic: TopicState, partition: PartitionState, offset: int, max_records: int, max_bytes: int
    ) -> ReadResult:
        """gRPC batches from `offset` below the partition's high watermark (at least one record, if any)."""
        result = self._store.read(
            topic.id, partition.partition, offset, partition.high_watermark, max_records, max_bytes
        )
        batches = self.conversions.as_grpc(topic.id, partition.partition, result.batches)
        return result if batches is result.batches else ReadResult(batches, result.next_offset)

    def read_kafka(self, topic: TopicState, partition: PartitionState, offset: int, max_bytes: int) -> ReadResult:
        """Kafka batches from the one holding `offset`, below the high watermark (at least one, if any)."""
        result = self._store.read(topic.id, partition.partition, offset, partition.high_watermark, 1 << 62, max_bytes)
        batches = self.conversions.as_kafka(topic.id, partition.partition, result.batches, topic.log_append_time)
        return ReadResult(batches, result.next_offset)

    def offset_for_time(self, topic: TopicState, partition: PartitionState, timestamp_ms: int) -> tuple[int, int]:
        """The first (offset, timestamp) at or after `timestamp_ms`; (high watermark, -1) when none is."""
        found = self._store.offset_for_timestamp(
            topic.id,
            partition.partition,
            partition.log_start_offset,
            partition.high_watermark,
            timestamp_ms,
            topic.log_append_time,
        )
        return found if found is not None else (partition.high_watermark, -1)

    def leader_epochs(self, topic: TopicState, partition: PartitionState) -> list[tuple[int, int]]:
        """The partition's stored leader epochs (read once, when it becomes replicated)."""
        return self._store.leader_epochs(topic.id, partition.partition)

    def high_watermark_checkpoint(self, topic: TopicState, partition: PartitionState) -> int | None:
        return self._store.high_watermark(topic.id, partition.partition)

    def stored_values(self, topic: TopicState, partition: PartitionState, offset: int, max_bytes: int) -> list[bytes]:
        """The stored batches from the one holding `offset` up to the log's end (past the high watermark:
        what a follower replicates), whole, at least one, then while they fit in `max_bytes`."""
        values: list[bytes] = []
        total = 0
        for batch in self._store.scan(topic.id, partition.partition, offset, partition.log_end):
            if values and total + batch.stored_bytes > max_bytes:
                break
            values.append(batch.value)
            total += batch.stored_bytes
        return values
