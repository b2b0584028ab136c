"""Batches served in the reader's protocol: a read's items (broker.batches) as gRPC RecordBatches or as
Kafka RecordBatch v2, each converted once and kept while it is read again.

A batch is stored in its producer's format and passes through unconverted to a reader of the same
protocol; only a reader of the other one costs a conversion (per record, in Python). Conversions are
kept in a bounded cache keyed by where the batch is and a hash of its bytes, so that many consumers of
the same tail, or one that reads again, convert it once. A converted Kafka batch is uncompressed.
"""

from __future__ import annotations

from collections import OrderedDict

from tidelog.broker.batches import (
    HEADER_SIZE,
    VALUE_HEADER,
    is_kafka_item,
    item_value,
    kafka_batch,
    records_of,
    stored_of_records,
)
from tidelog.broker.kafka import record_batch
from tidelog.v1.records_pb2 import RecordBatch

CACHE_BYTES = 64 << 20


class Conversions:
    """The cache of converted batches (the event loop's: one thread)."""

    def __init__(self, max_bytes: int = CACHE_BYTES) -> None:
        self._max_bytes = max_bytes
        self._bytes = 0
        self._cache: OrderedDict[tuple[int, int, int, int, bool], bytes] = OrderedDict()
        self.converted = 0  # batches converted (not served from the cache): for tests and metrics

    def as_grpc(self, topic_id: int, partition: int, items: list[bytes]) -> list[bytes]:
        """gRPC RecordBatch bytes for a read's items."""
        if not any(is_kafka_item(item) for item in items):
            return items
        return [self._converted(topic_id, partition, item, False) if is_kafka_item(item) else item for item in items]

    def as_kafka(self, topic_id: int, partition: int, items: list[bytes], log_append_time: bool) -> list[bytes]:
        """Kafka batches for a read's items."""
        out = []
        for item in items:
            if is_kafka_item(item):
                out.append(bytes(kafka_batch(item_value(item))))
            else:
                out.append(self._converted(topic_id, partition, item, log_append_time))
        return out

    def _converted(self, topic_id: int, partition: int, item: bytes, log_append_time: bool) -> bytes:
        key = (topic_id, partition, len(item), hash(item), log_append_time)
        found = self._cache.get(key)
        if found is not None:
            self._cache.move_to_end(key)
            return found
        made = _to_grpc(item) if is_kafka_item(item) else _to_kafka(item, log_append_time)
        self.converted += 1
        self._cache[key] = made
        self._bytes += len(made)
        while self._bytes > self._max_bytes and self._cache:
            _, dropped = self._cache.popitem(last=False)
            self._bytes -= len(dropped)
        return made


def _to_grpc(item: bytes) -> bytes:
    """A Kafka item (tag, stored value) as a gRPC RecordBatch, its records' timestamps absolute."""
    value = item_value(item)
    _, _, append_ms = VALUE_HEADER.unpack_from(value)
    kafka = kafka_batch(value)
    stored, _ = stored_of_records(record_batch.records_of(kafka), record_batch.header_of(kafka).base_offset, append_ms)
    return stored[HEADER_SIZE:]


def _to_kafka(wire: bytes, log_append_time: bool) -> bytes:
    batch = RecordBatch.FromString(wire)
    return record_batch.encode(records_of(batch), batch.base_offset, batch.append_time_ms, log_append_time)
