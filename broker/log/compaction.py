"""Log compaction (`cleanup.policy` compact): keep the latest record of each key, offsets unchanged.

A pass over a partition reads its log up to the high watermark in one read transaction and maps
each key to its latest offset. Batches old enough to clean (appended before min.compaction.lag.ms
ago) that hold superseded records — or tombstones older than delete.retention.ms — are rewritten:
each run of consecutive survivors becomes a stored batch of its own, keyed by its first offset, so
every survivor keeps its offset and readers only see gaps where records were removed. The rewrite
is one writer op (one transaction): a reader sees a batch before or after, never half of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tidelog.broker.batches import HEADER_SIZE, VALUE_HEADER, build_stored, records_crc
from tidelog.broker.log.topics import TopicRegistry, TopicState
from tidelog.broker.storage.lmdb_store import LOG_KEY, PARTITION_KEY, PartitionStats, Store
from tidelog.v1.records_pb2 import Record, RecordBatch

# Batches rewritten per writer op: bounds the time one op holds the writer.
BATCHES_PER_OP = 500


@dataclass(frozen=True)
class Rewrite:
    """Replace the stored batch at `base` (with `count` records) by `batches` (base offset, stored value)."""

    base: int
    count: int
    batches: tuple[tuple[int, bytes], ...]


def _is_tombstone(record: Record) -> bool:
    return not record.HasField("value")


def plan(store: Store, topic: TopicState, partition: int, end: int, now_ms: int) -> list[Rewrite]:
    """What a compaction pass would rewrite in a partition, below offset `end` (the high watermark).

    Parses the partition's whole log: the cleaner runs it on a worker thread."""
    prefix = PARTITION_KEY.pack(topic.id, partition)
    batches: list[tuple[int, int, int, RecordBatch]] = []  # (base, count, append_ms, batch)
    latest: dict[bytes, int] = {}
    with store.reading(), store.env.begin(db=store.log) as txn:
        cursor = txn.cursor()
        found = cursor.set_range(prefix)
        while found and cursor.key()[:8] == prefix:
            base = LOG_KEY.unpack(cursor.key())[2]
            if base >= end:
                break
            value = cursor.value()
            count, _, append_ms = VALUE_HEADER.unpack_from(value)
            batch = RecordBatch.FromString(value[HEADER_SIZE:])
            batches.append((base, count, append_ms, batch))
            for i, record in enumerate(batch.records):
                latest[record.key] = base + i
            found = cursor.next()
    clean_before = now_ms - int(topic.configs["min.compaction.lag.ms"])
    forget_tombstones_before = now_ms - int(topic.configs["delete.retention.ms"])
    rewrites: list[Rewrite] = []
    for base, count, append_ms, batch in batches:
        if append_ms > clean_before:
            break  # this batch and all after it are too recent to clean
        keep = [
            not record.key  # a keyless record (written before the topic became compacted) stays
            or (latest[record.key] == base + i and not (_is_tombstone(record) and append_ms < forget_tombstones_before))
            for i, record in enumerate(batch.records)
        ]
        if all(keep):
            continue
        rewrites.append(Rewrite(base, count, tuple(_runs(batch, base, keep, append_ms))))
    return rewrites


def _runs(batch: RecordBatch, base: int, keep: list[bool], append_ms: int) -> list[tuple[int, bytes]]:
    """Each run of consecutive survivors as a stored batch keyed by its first offset."""
    out: list[tuple[int, bytes]] = []
    start = None
    for i in range(len(keep) + 1):
        if i < len(keep) and keep[i]:
            if start is None:
                start = i
            continue
        if start is not None:
            records = batch.records[start:i]
            encoded = RecordBatch(records=records).SerializeToString()
            max_ts = max(r.timestamp_ms or append_ms for r in records)
            stored = build_stored(encoded, len(records), base + start, append_ms, max_ts, records_crc(encoded))
            out.append((base + start, stored))
            start = None
    return out


@dataclass
class CompactOp:
    """Applies rewrites to one partition; a batch that changed since the plan (retention) is left alone."""

    topic: TopicState
    partition: int
    rewrites: list[Rewrite]
    write_bytes = 1 << 30  # many rewrites: on the writer thread
    frees_space = True

    def apply(self, store: Store, txn: Any, now_ms: int) -> PartitionStats | None:
        stats_key = PARTITION_KEY.pack(self.topic.id, self.partition)
        raw = txn.get(stats_key, db=store.stats)
        if raw is None:
            return None  # the topic was deleted
        stats = PartitionStats.decode(raw)
        size = stats.size_bytes
        for rewrite in self.rewrites:
            key = LOG_KEY.pack(self.topic.id, self.partition, rewrite.base)
            old = txn.get(key, db=store.log)
            if old is None or VALUE_HEADER.unpack_from(old)[0] != rewrite.count:
                continue
            txn.delete(key, db=store.log)
            size -= len(old)
            for base, stored in rewrite.batches:
                txn.put(LOG_KEY.pack(self.topic.id, self.partition, base), stored, db=store.log)
                size += len(stored)
        compacted = PartitionStats(stats.next_offset, stats.log_start_offset, size)
        txn.put(stats_key, compacted.encode(), db=store.stats)
        return compacted

    def publish(self, registry: TopicRegistry, result: PartitionStats | None) -> None:
        if result is not None and not self.topic.deleted:
            self.topic.partitions[self.partition].size_bytes = result.size_bytes
