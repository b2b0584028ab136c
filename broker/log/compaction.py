"""Log compaction (`cleanup.policy` compact): keep the latest record of each key, offsets unchanged.

A pass over a partition reads its log up to the high watermark in one read transaction and maps
each key to its latest offset. Batches old enough to clean (appended before min.compaction.lag.ms
ago) that hold superseded records — or tombstones older than delete.retention.ms — are rewritten:
each run of consecutive survivors becomes a stored batch of its own, keyed by its first offset, so
every survivor keeps its offset and readers only see gaps where records were removed. The rewrite
is one writer op (one transaction): a reader sees a batch before or after, never half of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tidelog.broker.batches import stored_of_records, stored_records
from tidelog.broker.log.topics import TopicState
from tidelog.broker.storage.interface import LogStore, LogWrite, PartitionStats, StoredBatch
from tidelog.v1.records_pb2 import Record

# Batches rewritten per writer op: bounds the time one op holds the writer.
BATCHES_PER_OP = 500


@dataclass(frozen=True)
class Rewrite:
    """Replace the stored batch at `base` (with `count` records) by `batches` (base offset, stored value)."""

    base: int
    count: int
    batches: tuple[StoredBatch, ...]


def _is_tombstone(record: Record) -> bool:
    return not record.HasField("value")


def plan(store: LogStore, topic: TopicState, partition: int, end: int, now_ms: int) -> list[Rewrite]:
    """What a compaction pass would rewrite in a partition, below offset `end` (the high watermark).

    Parses the partition's whole log: the cleaner runs it on a worker thread."""
    batches: list[tuple[int, int, int, Sequence[Record]]] = []  # (base, count, append_ms, records)
    latest: dict[bytes, int] = {}
    for stored in store.scan(topic.id, partition, 0, end):
        records = stored_records(stored.value)  # survivors: kept uncompressed, as gRPC batches
        batches.append((stored.base_offset, stored.count, stored.append_time_ms, records))
        for i, record in enumerate(records):
            latest[record.key] = stored.base_offset + i
    clean_before = now_ms - int(topic.configs["min.compaction.lag.ms"])
    forget_tombstones_before = now_ms - int(topic.configs["delete.retention.ms"])
    rewrites: list[Rewrite] = []
    for base, count, append_ms, records in batches:
        if append_ms > clean_before:
            break  # this batch and all after it are too recent to clean
        keep = [
            not record.key  # a keyless record (written before the topic became compacted) stays
            or (latest[record.key] == base + i and not (_is_tombstone(record) and append_ms < forget_tombstones_before))
            for i, record in enumerate(records)
        ]
        if all(keep):
            continue
        rewrites.append(Rewrite(base, count, tuple(_runs(records, base, keep, append_ms))))
    return rewrites


def _runs(batch_records: Sequence[Record], base: int, keep: list[bool], append_ms: int) -> list[StoredBatch]:
    """Each run of consecutive survivors as a stored batch keyed by its first offset."""
    out: list[StoredBatch] = []
    start = None
    for i in range(len(keep) + 1):
        if i < len(keep) and keep[i]:
            if start is None:
                start = i
            continue
        if start is not None:
            records = batch_records[start:i]
            stored, max_ts = stored_of_records(records, base + start, append_ms)
            out.append(StoredBatch(base + start, len(records), max_ts, append_ms, stored))
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

    def apply(self, txn: LogWrite, now_ms: int) -> PartitionStats | None:
        topic_id, partition = self.topic.id, self.partition
        stats = txn.stats(topic_id, partition)
        if stats is None:
            return None  # the topic was deleted
        size = stats.size_bytes
        for rewrite in self.rewrites:
            delta = txn.replace_batch(topic_id, partition, rewrite.base, rewrite.count, list(rewrite.batches))
            size += delta or 0
        return txn.set_size(topic_id, partition, size)

    def publish(self, result: PartitionStats | None) -> None:
        if result is not None and not self.topic.deleted:
            self.topic.partitions[self.partition].size_bytes = result.size_bytes
