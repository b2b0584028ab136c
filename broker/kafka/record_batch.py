"""Kafka's RecordBatch (magic 2): the header read and checked, offsets and times patched, records
converted to and from Tidelog's.

A batch is a 61-byte header and its records, perhaps compressed as one block:

    base_offset i64 | batch_length i32 | partition_leader_epoch i32 | magic i8 | crc u32 |
    attributes i16 | last_offset_delta i32 | base_timestamp i64 | max_timestamp i64 |
    producer_id i64 | producer_epoch i16 | base_sequence i32 | record_count i32 | records...

The CRC-32C covers everything from `attributes` on, so the broker assigns offsets (and the leader
epoch) by patching the first 16 bytes without touching it. Records are zigzag varints and bytes:

    length | attributes i8 | timestamp_delta | offset_delta | key | value | header count | headers

This is off the hot path: a batch is stored as its producer sent it, and opened only to convert it
for a gRPC reader, to compact it, to look up a time inside it or to verify it.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import cramjam
import crc32c
import lz4.frame
import zstandard

from tidelog.broker.kafka.wire import MalformedFrame, Reader
from tidelog.common.compression import MAX_DECOMPRESSED_BYTES, CorruptBatch
from tidelog.common.varint import varint
from tidelog.v1.records_pb2 import Header, Record

HEADER = struct.Struct(">qiibIhiqqqhii")
HEADER_SIZE = HEADER.size  # 61
CRC_START = 21  # the CRC covers the batch from `attributes` on
_PATCHED = struct.Struct(">qii")  # base offset, batch length, partition leader epoch
_I16 = struct.Struct(">h")
_MAX_TS_AT = 35
_I64 = struct.Struct(">q")
_U32 = struct.Struct(">I")

NO_TIMESTAMP = -1
CODEC_MASK = 0x07
LOG_APPEND_TIME = 0x08
TRANSACTIONAL = 0x10
CONTROL = 0x20
CODECS = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}
_XERIAL_MAGIC = b"\x82SNAPPY\x00"  # snappy-java's framing, which the Java client writes


class InvalidBatch(ValueError):
    """A batch this broker will not store, with what is wrong with it (said to the producer)."""

    def __init__(self, message: str, *, corrupt: bool = False) -> None:
        super().__init__(message)
        self.corrupt = corrupt  # damaged (CORRUPT_MESSAGE) rather than refused (INVALID_RECORD)


@dataclass(frozen=True)
class BatchHeader:
    base_offset: int
    length: int
    leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    count: int

    @property
    def codec(self) -> int:
        return self.attributes & CODEC_MASK

    @property
    def log_append_time(self) -> bool:
        return bool(self.attributes & LOG_APPEND_TIME)


def header_of(batch: bytes | memoryview) -> BatchHeader:
    return BatchHeader(*HEADER.unpack_from(batch))


def crc_of(batch: bytes | bytearray | memoryview) -> int:
    return int(crc32c.crc32c(memoryview(batch)[CRC_START:]))


def split(records: bytes) -> list[memoryview]:
    """The batches in a produce request's `records`; InvalidBatch when they are not whole v2 batches."""
    view = memoryview(records)
    batches: list[memoryview] = []
    pos = 0
    while pos < len(view):
        if len(view) - pos < HEADER_SIZE:
            raise InvalidBatch(f"{len(view) - pos} bytes at the end of the records, too few for a batch header")
        length = int.from_bytes(view[pos + 8 : pos + 12], "big", signed=True)
        magic = view[pos + 16]
        if magic != 2:
            raise InvalidBatch(
                f"a batch of magic {magic}: this broker stores RecordBatch v2 only (Kafka 0.11+ clients send it)"
            )
        end = pos + 12 + length
        if length < HEADER_SIZE - 12 or end > len(view):
            raise InvalidBatch(f"a batch whose length ({length}) does not match the bytes sent", corrupt=True)
        batches.append(view[pos:end])
        pos = end
    return batches


def check(batch: memoryview | bytes) -> BatchHeader:
    """A whole v2 batch's header, after its CRC and counts are checked (records stay unopened)."""
    head = header_of(batch)
    if head.crc != crc_of(batch):
        raise InvalidBatch(f"a batch whose CRC-32C is {head.crc}, its bytes' {crc_of(batch)}", corrupt=True)
    if head.count < 1 or head.last_offset_delta != head.count - 1:
        raise InvalidBatch(
            f"a batch of {head.count} records whose last offset delta is {head.last_offset_delta} "
            f"(it must be the count - 1)"
        )
    if head.attributes & (TRANSACTIONAL | CONTROL):
        raise InvalidBatch("a transactional or control batch: this broker has no transactions yet")
    if head.codec not in CODECS:
        raise InvalidBatch(f"compression codec {head.codec} is none Kafka defines (0-4)")
    return head


def patched(batch: memoryview | bytes, base_offset: int, leader_epoch: int) -> bytes:
    """The batch with its offsets starting at `base_offset`, in `leader_epoch` (the CRC is unchanged)."""
    out = bytearray(batch)
    _PATCHED.pack_into(out, 0, base_offset, len(out) - 12, leader_epoch)
    return bytes(out)


def with_log_append_time(batch: bytes, append_time_ms: int) -> bytes:
    """A LogAppendTime topic's batch: its timestamp type and max timestamp set, its CRC recomputed."""
    out = bytearray(batch)
    attributes = _I16.unpack_from(out, CRC_START)[0] | LOG_APPEND_TIME
    _I16.pack_into(out, CRC_START, attributes)
    _I64.pack_into(out, _MAX_TS_AT, append_time_ms)
    _U32.pack_into(out, 17, crc_of(out))
    return bytes(out)


# -- records ---------------------------------------------------------------------------------------


def decompressed(codec: int, block: bytes | memoryview) -> bytes:
    """A compressed batch's records; CorruptBatch when they do not decompress (or grow too large)."""
    try:
        if codec == 1:
            data = _gunzip(block)
        elif codec == 2:
            data = _unsnappy(bytes(block))
        elif codec == 3:
            data = bytes(lz4.frame.decompress(block))
        elif codec == 4:
            data = _unzstd(bytes(block))
        else:
            return bytes(block)
    except CorruptBatch:
        raise
    except Exception as err:  # each library has its own errors; all mean the same here
        raise CorruptBatch(f"{CODECS.get(codec, codec)} records that do not decompress: {err}") from None
    if len(data) > MAX_DECOMPRESSED_BYTES:
        raise CorruptBatch(f"records that decompress past {MAX_DECOMPRESSED_BYTES} bytes")
    return data


def _gunzip(block: bytes | memoryview) -> bytes:
    inflater = zlib.decompressobj(wbits=31)
    data = inflater.decompress(block, MAX_DECOMPRESSED_BYTES + 1)
    if not inflater.eof:
        raise CorruptBatch("gzip records that end early (or decompress past the limit)")
    return data


def _unzstd(block: bytes) -> bytes:
    reader = zstandard.ZstdDecompressor().decompressobj()
    return bytes(reader.decompress(block))


def _unsnappy(block: bytes) -> bytes:
    if not block.startswith(_XERIAL_MAGIC):
        return bytes(cramjam.snappy.decompress_raw(block))
    pos, parts = 16, []  # magic, then two int32 versions; then (int32 length, raw block)*
    while pos < len(block):
        size = int.from_bytes(block[pos : pos + 4], "big")
        pos += 4
        if size <= 0 or pos + size > len(block):
            raise CorruptBatch("a xerial snappy block whose length runs past the batch")
        parts.append(bytes(cramjam.snappy.decompress_raw(block[pos : pos + size])))
        pos += size
    return b"".join(parts)


def compress(codec: int, data: bytes) -> bytes:
    """Records compressed as a Kafka client would (for tests and conversions; the broker stores as sent)."""
    if codec == 1:
        return gzip.compress(data)
    if codec == 2:
        return bytes(cramjam.snappy.compress_raw(data))
    if codec == 3:
        return bytes(lz4.frame.compress(data))
    if codec == 4:
        return bytes(zstandard.ZstdCompressor().compress(data))
    return data


def records_of(batch: bytes | memoryview) -> list[Record]:
    """A batch's records as Tidelog's: a null key is no key, a null value a tombstone, and timestamps
    absolute (a LogAppendTime batch's are its max timestamp; none, -1, becomes 0: the append time)."""
    head = header_of(batch)
    reader = Reader(decompressed(head.codec, memoryview(batch)[HEADER_SIZE:]))
    out: list[Record] = []
    try:
        for _ in range(head.count):
            length = reader.varint()
            if length < 0 or length > reader.remaining:
                raise CorruptBatch("a record whose length runs past the batch")
            end = reader.pos + length
            reader.int8()  # attributes: unused
            timestamp_delta = reader.varint()
            reader.varint()  # offset delta: records are in order
            record = Record(key=reader.varint_bytes() or b"")
            value = reader.varint_bytes()
            if value is not None:
                record.value = value
            for _ in range(reader.varint()):
                key = reader.varint_bytes() or b""
                record.headers.append(Header(key=key.decode("utf-8", "replace"), value=reader.varint_bytes() or b""))
            if head.log_append_time:
                record.timestamp_ms = max(head.max_timestamp, 0)
            elif head.base_timestamp != NO_TIMESTAMP:
                record.timestamp_ms = max(head.base_timestamp + timestamp_delta, 0)
            reader.pos = end
            out.append(record)
    except MalformedFrame as err:
        raise CorruptBatch(f"a record that does not decode: {err}") from None
    return out


def _zigzag(value: int) -> bytes:
    """A signed varint as Kafka's records encode them (zigzag, then protobuf's base-128 varint)."""
    return varint((value << 1) ^ (value >> 63))


def _blob(value: bytes | None) -> bytes:
    return _zigzag(-1) if value is None else _zigzag(len(value)) + value


def encode(
    records: Sequence[Record], base_offset: int, append_time_ms: int, log_append_time: bool, leader_epoch: int = 0
) -> bytes:
    """Tidelog records as one uncompressed v2 batch (for a Kafka reader of what a gRPC producer wrote).
    A record's timestamp 0 (the append time) becomes the batch's append time."""
    times = [r.timestamp_ms or append_time_ms for r in records]
    base_ts = times[0] if times else append_time_ms
    body = bytearray()
    for i, (record, ts) in enumerate(zip(records, times, strict=True)):
        inner = bytearray(b"\x00")
        inner += _zigzag(ts - base_ts)
        inner += _zigzag(i)
        inner += _blob(record.key or None)
        inner += _blob(record.value if record.HasField("value") else None)
        inner += _zigzag(len(record.headers))
        for header in record.headers:
            inner += _blob(header.key.encode())
            inner += _blob(header.value)
        body += _zigzag(len(inner))
        body += inner
    max_ts = append_time_ms if log_append_time else max(times, default=append_time_ms)
    attributes = LOG_APPEND_TIME if log_append_time else 0
    return build(base_offset, leader_epoch, attributes, len(records), base_ts, max_ts, bytes(body))


def build(
    base_offset: int,
    leader_epoch: int,
    attributes: int,
    count: int,
    base_ts: int,
    max_ts: int,
    records: bytes,
    producer: tuple[int, int, int] = (-1, -1, -1),
) -> bytes:
    """A v2 batch around already encoded (perhaps compressed) records; `producer`: id, epoch, sequence."""
    out = bytearray(HEADER_SIZE)
    HEADER.pack_into(
        out, 0, base_offset, HEADER_SIZE - 12 + len(records), leader_epoch, 2, 0, attributes,
        count - 1, base_ts, max_ts, *producer, count,
    )  # fmt: skip
    out += records
    _U32.pack_into(out, 17, crc_of(out))
    return bytes(out)
