"""Retention: which head batches of a partition may go (pure), the op that lets them go, and the
cleaner that runs it — and compaction (broker.compaction) — every --cleaner-interval-ms.

As in Kafka, whole batches leave from the head only: a batch goes when its newest timestamp is
older than retention.ms, or while the partition without it still holds at least retention.bytes.
The log start then moves to the first batch kept, and never back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import structlog

from tidelog.broker.background import Background
from tidelog.broker.errors import BrokerError, topic_not_found
from tidelog.broker.log import compaction
from tidelog.broker.log.topics import PartitionState, TopicRegistry, TopicState
from tidelog.broker.storage.interface import LogStore, LogWrite, PartitionStats
from tidelog.broker.storage.writer import Writer

log = structlog.get_logger("tidelog.retention")

# Batches looked at per partition and pass: bounds the time one pass keeps the loop.
HEADS_PER_PASS = 2000
# A compacted partition with no new records is looked at again after this long (tombstones age).
RECOMPACT_AFTER_S = 60.0


@dataclass(frozen=True)
class BatchHead:
    base_offset: int
    count: int
    timestamp_ms: int  # the newest record's (the append time on a LogAppendTime topic)
    size: int  # stored bytes


def retention_cut(
    heads: Iterable[BatchHead], *, now_ms: int, retention_ms: int, retention_bytes: int, total_bytes: int
) -> int | None:
    """The new log start, if retention lets head batches go (-1 disables a limit)."""
    new_start = None
    kept_bytes = total_bytes
    for head in heads:
        expired = retention_ms >= 0 and head.timestamp_ms < now_ms - retention_ms
        oversize = retention_bytes >= 0 and kept_bytes - head.size >= retention_bytes
        if not (expired or oversize):
            break
        kept_bytes -= head.size
        new_start = head.base_offset + head.count
    return new_start


def head_batches(
    store: LogStore, topic: TopicState, partition: int, start: int, end: int, limit: int
) -> list[BatchHead]:
    """The headers of the first `limit` batches from `start`, below `end`; no record is parsed."""
    return [
        BatchHead(
            b.base_offset, b.count, b.append_time_ms if topic.log_append_time else b.max_timestamp_ms, b.stored_bytes
        )
        for b in store.scan(topic.id, partition, start, end, limit, values=False)
    ]


@dataclass
class TrimHeadOp:
    """Deletes a partition's batches below `new_start` and moves its log start there."""

    topic: TopicState
    partition: int
    new_start: int
    write_bytes = 1 << 30  # many deletes: on the writer thread
    frees_space = True  # may use the map's reserve when it is full

    def apply(self, txn: LogWrite, now_ms: int) -> PartitionStats:
        trimmed = txn.trim_head(self.topic.id, self.partition, self.new_start)
        if trimmed is None:
            raise topic_not_found(self.topic.name)
        return trimmed

    def publish(self, result: PartitionStats) -> None:
        partition = self.topic.partitions[self.partition]
        if result.log_start_offset > partition.log_start_offset:
            partition.log_start_offset = result.log_start_offset
            partition.size_bytes = result.size_bytes
            partition.wake()  # readers below the new start learn it now


class Cleaner:
    """Applies retention to every partition every `interval_s`, one partition at a time."""

    def __init__(
        self,
        registry: TopicRegistry,
        store: LogStore,
        writer: Writer,
        interval_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._registry = registry
        self._store = store
        self._writer = writer
        self._interval_s = interval_s
        self._clock = clock
        self._background = Background()
        self._compacted: dict[tuple[int, int], tuple[int, float]] = {}  # (high watermark, when) last compacted

    def start(self) -> None:
        self._background.start(self._run())

    async def stop(self) -> None:
        await self._background.stop()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.run_once()
            except Exception:  # a failed pass must not stop retention for good
                log.exception("retention_pass_failed")

    async def run_once(self) -> int:
        """One pass over every partition (retention, then compaction); how many were changed."""
        changed = await self._apply_retention()
        for topic in self._registry.sorted():
            if topic.compacted and not topic.deleted:
                for partition in topic.partitions:
                    changed += await self._compact(topic, partition)
        return changed

    async def _compact(self, topic: TopicState, partition: PartitionState) -> int:
        """Compact a partition that has new records, or has not been looked at for a minute."""
        key = (topic.id, partition.partition)
        now = self._clock()
        end = partition.high_watermark
        last = self._compacted.get(key)
        if last is not None and last[0] == end and now - last[1] < RECOMPACT_AFTER_S:
            return 0
        self._compacted[key] = (end, now)
        rewrites = await asyncio.to_thread(
            compaction.plan, self._store, topic, partition.partition, end, int(now * 1000)
        )
        for start in range(0, len(rewrites), compaction.BATCHES_PER_OP):
            chunk = rewrites[start : start + compaction.BATCHES_PER_OP]
            await self._writer.submit(compaction.CompactOp(topic, partition.partition, chunk))
        if rewrites:
            log.info("compacted", topic=topic.name, partition=partition.partition, batches_rewritten=len(rewrites))
        return 1 if rewrites else 0

    async def _apply_retention(self) -> int:
        trimmed = 0
        for topic in self._registry.sorted():
            if not topic.deletes or (topic.retention_ms < 0 and topic.retention_bytes < 0):
                continue
            for partition in topic.partitions:
                start, end = partition.log_start_offset, partition.high_watermark
                if start >= end or topic.deleted:
                    continue
                heads = head_batches(self._store, topic, partition.partition, start, end, HEADS_PER_PASS)
                new_start = retention_cut(
                    heads,
                    now_ms=int(self._clock() * 1000),
                    retention_ms=topic.retention_ms,
                    retention_bytes=topic.retention_bytes,
                    total_bytes=partition.size_bytes,
                )
                if new_start is None or new_start <= start:
                    continue
                try:
                    stats = await self._writer.submit(TrimHeadOp(topic, partition.partition, new_start))
                except BrokerError as err:
                    log.info("retention_skipped", topic=topic.name, partition=partition.partition, error=str(err))
                    continue
                trimmed += 1
                log.info(
                    "retention_trimmed",
                    topic=topic.name,
                    partition=partition.partition,
                    log_start_offset=stats.log_start_offset,
                    size_bytes=stats.size_bytes,
                )
        return trimmed
