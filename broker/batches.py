"""Stored batches and their wire form.

A stored value is a fixed header the broker reads without parsing the batch, followed by the batch
as a producer sent it, in one of two formats:

    | record_count u32 | max_timestamp_ms i64 | append_time_ms i64 | RecordBatch bytes |
    | record_count u32 | max_timestamp_ms i64 | append_time_ms i64 | 0x00 | Kafka RecordBatch v2 |

A gRPC producer's batch is an encoded tidelog.v1 RecordBatch: protobuf fields may come in any order
and messages concatenate, so it is the broker's small header fields followed by the records' encoding
taken straight from the request. A Kafka producer's batch (broker.kafka.record_batch) is kept as sent,
behind a 0 byte: no protobuf message starts with one (field number 0 does not exist), so the tag needs
no room in the values written before it existed.

Reads hand out *items*: a RecordBatch's bytes, or (a Kafka batch) the tag and the whole stored value,
so that a conversion for the other protocol knows the batch's append time (log.formats converts).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import crc32c

from tidelog.broker.kafka import record_batch
from tidelog.common.compression import MAX_DECOMPRESSED_BYTES, Codecs
from tidelog.common.varint import varint
from tidelog.v1.records_pb2 import Record, RecordBatch

VALUE_HEADER = struct.Struct(">Iqq")
HEADER_SIZE = VALUE_HEADER.size
KAFKA_TAG = 0  # the byte after the header that says a Kafka batch follows
_KAFKA_TAG_BYTE = bytes((KAFKA_TAG,))


def holds_kafka(value: bytes | memoryview) -> bool:
    """Whether a stored value holds a Kafka batch."""
    return value[HEADER_SIZE] == KAFKA_TAG


def build_stored_kafka(batch: bytes, count: int, append_time_ms: int, max_timestamp_ms: int) -> bytes:
    """A Kafka batch (its offsets patched already) as stored."""
    return VALUE_HEADER.pack(count, max_timestamp_ms, append_time_ms) + _KAFKA_TAG_BYTE + batch


def kafka_batch(value: bytes | memoryview) -> memoryview:
    """The Kafka batch in a stored value that holds one."""
    return memoryview(value)[HEADER_SIZE + 1 :]


def is_kafka_item(item: bytes) -> bool:
    """Whether a read's item is a Kafka batch (the tag, then its stored value) rather than a RecordBatch."""
    return item[0] == KAFKA_TAG


def item_value(item: bytes) -> memoryview:
    """The stored value inside a Kafka item."""
    return memoryview(item)[1:]


def stored_head(value: bytes) -> tuple[int, int, int, int]:
    """A stored batch's (base offset, producer id, first sequence, producer epoch); producer id 0 for none."""
    if holds_kafka(value):
        head = record_batch.header_of(kafka_batch(value))
        return head.base_offset, max(head.producer_id, 0), head.base_sequence, max(head.producer_epoch, 0)
    batch = RecordBatch.FromString(value[HEADER_SIZE:])
    return batch.base_offset, batch.producer_id, batch.base_sequence, 0


def stored_records(value: bytes, codecs: Codecs | None = None) -> Sequence[Record]:
    """A stored batch's records in either format, decompressed (CorruptBatch when they do not)."""
    if holds_kafka(value):
        return record_batch.records_of(kafka_batch(value))
    return records_of(RecordBatch.FromString(value[HEADER_SIZE:]), codecs)


def read_item(value: bytes | memoryview) -> bytes:
    """What a read hands out for a stored batch it returns whole."""
    if holds_kafka(value):
        return b"".join((_KAFKA_TAG_BYTE, value))  # the tag and the value, copied once
    return bytes(value[HEADER_SIZE:])


def length_delimited(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited protobuf field: its tag, the payload's length, the payload (already encoded)."""
    return tag + varint(len(payload)) + payload


def frame_batches(wire_batches: list[bytes]) -> bytes:
    """The encoding of `repeated RecordBatch batches = 1` holding these batches."""
    return b"".join(length_delimited(b"\x0a", b) for b in wire_batches)


def build_stored(
    records_bytes: bytes,
    count: int,
    base_offset: int,
    append_time_ms: int,
    max_timestamp_ms: int,
    crc: int,
    producer: tuple[int, int] | None = None,
) -> bytes:
    """`producer`: (producer id, first sequence) of an idempotent producer's batch."""
    head = RecordBatch(
        base_offset=base_offset,
        append_time_ms=append_time_ms,
        max_timestamp_ms=max_timestamp_ms,
        crc32c=crc,
        producer_id=producer[0] if producer else 0,
        base_sequence=producer[1] if producer else 0,
    ).SerializeToString()
    return VALUE_HEADER.pack(count, max_timestamp_ms, append_time_ms) + head + records_bytes


def records_crc(records_bytes: bytes) -> int:
    return int(crc32c.crc32c(records_bytes))


def records_of(batch: RecordBatch, codecs: Codecs | None = None) -> Sequence[Record]:
    """A batch's records, decompressed when it is compressed: for the paths off the hot one that need
    them (compaction, a cut inside a batch, a time lookup, verify, a compacted topic's keys, the
    console); CorruptBatch when a compressed one does not decompress. A caller that opens many batches
    passes its `codecs`, whose decompression contexts are reused."""
    if not batch.compression:
        return batch.records
    data = (codecs or Codecs()).decompress(batch.compression, batch.compressed_records, MAX_DECOMPRESSED_BYTES)
    return RecordBatch.FromString(data).records


def first_of_read(
    value: bytes | memoryview, base_offset: int, count: int, skip: int, keep: int
) -> tuple[bytes, int, int]:
    """A read's first batch cut to its records [skip, skip+keep) (the item, skip, keep); a compressed
    batch, or a Kafka one, comes whole (skip 0, keep all), as it cannot be cut without decompressing."""
    wire = read_item(value)
    if (not skip and keep == count) or is_kafka_item(wire):
        return wire, 0, count
    sliced = slice_wire(wire, base_offset, skip, keep)
    return (wire, 0, count) if sliced is None else (sliced, skip, keep)


def stored_of_records(records: Sequence[Record], base_offset: int, append_time_ms: int) -> tuple[bytes, int]:
    """Records rewritten as an uncompressed stored batch (a cut, compaction's survivors, a Kafka batch
    converted): the value and its max timestamp, a record without one counting as the append time."""
    encoded = RecordBatch(records=records).SerializeToString()
    max_ts = max(r.timestamp_ms or append_time_ms for r in records)
    return build_stored(encoded, len(records), base_offset, append_time_ms, max_ts, records_crc(encoded)), max_ts


def cut_stored(value: bytes, base_offset: int, keep: int, append_time_ms: int) -> bytes:
    """A stored batch cut to its first `keep` records, its max timestamp recomputed (a truncation
    inside a batch; a compressed one is kept uncompressed)."""
    return stored_of_records(stored_records(value)[:keep], base_offset, append_time_ms)[0]


def slice_wire(wire: bytes, base_offset: int, skip: int, keep: int) -> bytes | None:
    """A batch's records [skip, skip+keep) as a batch of their own (offsets unchanged); None for a
    compressed batch, which is served whole (the reader skips what it did not ask for, as Kafka's do)."""
    batch = RecordBatch.FromString(wire)
    if batch.compression:
        return None
    part = RecordBatch()
    part.records.extend(batch.records[skip : skip + keep])
    records_bytes = part.SerializeToString()
    part.base_offset = base_offset + skip
    part.append_time_ms = batch.append_time_ms
    part.max_timestamp_ms = batch.max_timestamp_ms
    part.crc32c = records_crc(records_bytes)
    return part.SerializeToString()
