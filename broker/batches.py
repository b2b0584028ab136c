"""Stored batches and their wire form.

A stored value is a fixed header the broker reads without parsing protobuf,
followed by the batch exactly as it goes on the wire (an encoded RecordBatch):

    | record_count u32 | max_timestamp_ms i64 | append_time_ms i64 | RecordBatch bytes |

Protobuf fields may come in any order and messages concatenate, so the
RecordBatch bytes are the broker's small header fields followed by the
records' encoding taken straight from the producer's request.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import crc32c

from tidelog.common.compression import MAX_DECOMPRESSED_BYTES, Codecs
from tidelog.common.varint import varint
from tidelog.v1.records_pb2 import Record, RecordBatch

VALUE_HEADER = struct.Struct(">Iqq")
HEADER_SIZE = VALUE_HEADER.size


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


def first_of_read(wire: bytes, base_offset: int, count: int, skip: int, keep: int) -> tuple[bytes, int, int]:
    """A read's first batch cut to its records [skip, skip+keep) (the wire batch, skip, keep); a
    compressed batch comes whole (skip 0, keep all), as it cannot be cut without decompressing."""
    if not skip and keep == count:
        return wire, skip, keep
    sliced = slice_wire(wire, base_offset, skip, keep)
    return (wire, 0, count) if sliced is None else (sliced, skip, keep)


def cut_stored(value: bytes, base_offset: int, keep: int, append_time_ms: int) -> bytes:
    """A stored batch cut to its first `keep` records, its max timestamp recomputed (a truncation
    inside a batch; a compressed one is kept uncompressed)."""
    records = records_of(RecordBatch.FromString(value[HEADER_SIZE:]))[:keep]
    encoded = RecordBatch(records=records).SerializeToString()
    max_ts = max(r.timestamp_ms or append_time_ms for r in records)
    return build_stored(encoded, keep, base_offset, append_time_ms, max_ts, records_crc(encoded))


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
