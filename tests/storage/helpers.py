"""Building stored batches for the storage tests, as the produce path builds them."""

from __future__ import annotations

from tidelog.broker.batches import build_stored, build_stored_kafka, records_crc
from tidelog.broker.kafka import record_batch
from tidelog.broker.storage.interface import LogStore, PartitionStats, StoredBatch
from tidelog.v1.records_pb2 import Record, RecordBatch


def batch(base: int, values: list[bytes], append_ms: int = 1_000, timestamps: list[int] | None = None) -> StoredBatch:
    """A stored batch of these values from `base`, as the produce path builds it."""
    stamps = timestamps or [0] * len(values)
    records = RecordBatch(records=[Record(value=v, timestamp_ms=t) for v, t in zip(values, stamps, strict=True)])
    encoded = records.SerializeToString()
    max_ts = max(t or append_ms for t in stamps)
    value = build_stored(encoded, len(values), base, append_ms, max_ts, records_crc(encoded))
    return StoredBatch(base, len(values), max_ts, append_ms, value)


def append(store: LogStore, topic_id: int, partition: int, values: list[bytes], **kwargs: object) -> StoredBatch:
    """Append a batch at the partition's next offset, in a transaction of its own."""
    with store.write() as txn:
        stats = txn.stats(topic_id, partition) or PartitionStats()
        stored = batch(stats.next_offset, values, **kwargs)  # type: ignore[arg-type]
        after = PartitionStats(
            stored.base_offset + stored.count, stats.log_start_offset, stats.size_bytes + len(stored.value)
        )
        txn.append(topic_id, partition, stored, after)
    return stored


def kafka_batch(base: int, values: list[bytes], timestamps: list[int], append_ms: int = 1_000) -> StoredBatch:
    """A Kafka producer's batch of these values from `base`, as the Kafka produce path stores it."""
    records = [
        Record(key=b"k%d" % i, value=v, timestamp_ms=t) for i, (v, t) in enumerate(zip(values, timestamps, strict=True))
    ]
    sent = record_batch.encode(records, 0, append_ms, log_append_time=False)
    value = build_stored_kafka(record_batch.patched(sent, base, 0), len(values), append_ms, max(timestamps))
    return StoredBatch(base, len(values), max(timestamps), append_ms, value)


def put(store: LogStore, topic_id: int, partition: int, stored: StoredBatch) -> None:
    with store.write() as txn:
        stats = txn.stats(topic_id, partition) or PartitionStats()
        after = PartitionStats(
            stored.base_offset + stored.count, stats.log_start_offset, stats.size_bytes + len(stored.value)
        )
        txn.append(topic_id, partition, stored, after)
