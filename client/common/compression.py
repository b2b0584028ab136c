"""Batch codecs, shared by the SDK (producers compress, consumers decompress) and the broker (which
checks a frame's header on the hot path and decompresses only off it: compaction, truncation inside
a batch, `verify`, and the keys of a compacted topic's batch).

A compressed batch is RecordBatch fields 8 (the codec) and 9 (one codec frame of what `records`
would encode). Frames carry their content size: zstd's frame header (with a content checksum), lz4's
frame format, so a reader knows what it will get before it decompresses.
"""

from __future__ import annotations

import lz4.frame
import zstandard

from tidelog.common.varint import varint

NONE, ZSTD, LZ4 = 0, 1, 2  # the values of tidelog.v1 Compression
NAMES = {"none": NONE, "zstd": ZSTD, "lz4": LZ4}
ZSTD_LEVEL = 3  # zstd's default: most of the ratio at a fraction of the higher levels' cost
MAX_DECOMPRESSED_BYTES = 256 << 20  # the most one batch may decompress to, for brokers and consumers alike
_FIELD_CODEC = b"\x40"  # RecordBatch/ProduceRequest field 8, varint
_FIELD_FRAME = b"\x4a"  # field 9, length-delimited


class CorruptBatch(ValueError):
    """A compressed batch that is not a valid frame of its codec (or larger than allowed)."""


def encoded_part(codec: int, frame: bytes) -> bytes:
    """Fields 8 and 9 as protobuf encodes them: what a compressed batch stores in place of its
    records, and what its crc32c covers."""
    return _FIELD_CODEC + varint(codec) + _FIELD_FRAME + varint(len(frame)) + frame


def content_size(codec: int, frame: bytes) -> int:
    """The decompressed size a frame's header declares; CorruptBatch for a bad header or codec."""
    try:
        if codec == ZSTD:
            size = int(zstandard.get_frame_parameters(frame).content_size)
            if size == zstandard.CONTENTSIZE_UNKNOWN:
                raise CorruptBatch("a zstd frame without its content size in the header")
            return size
        if codec == LZ4:
            declared = lz4.frame.get_frame_info(frame).get("content_size", 0)
            if not declared:
                raise CorruptBatch("an lz4 frame without its content size")
            return int(declared)
    except (zstandard.ZstdError, RuntimeError, ValueError) as err:
        if isinstance(err, CorruptBatch):
            raise
        raise CorruptBatch(f"not a valid {name_of(codec)} frame: {err}") from None
    raise CorruptBatch(f"unknown compression codec {codec} (known: zstd={ZSTD}, lz4={LZ4})")


def name_of(codec: int) -> str:
    return next((name for name, value in NAMES.items() if value == codec), f"codec {codec}")


class Codecs:
    """Compressors and decompressors reused across batches (one owner, one thread at a time)."""

    def __init__(self) -> None:
        self._zstd_in = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_content_size=True, write_checksum=True)
        self._zstd_out = zstandard.ZstdDecompressor()

    def compress(self, codec: int, data: bytes) -> bytes:
        if codec == ZSTD:
            return bytes(self._zstd_in.compress(data))
        if codec == LZ4:
            return bytes(lz4.frame.compress(data, store_size=True))
        raise ValueError(f"unknown compression codec {codec}")

    def decompress(self, codec: int, frame: bytes, max_size: int) -> bytes:
        """The frame's content; CorruptBatch when it does not decompress, or declares more than `max_size`."""
        size = content_size(codec, frame)
        if size > max_size:
            raise CorruptBatch(f"a {name_of(codec)} frame of {size} bytes decompressed, above the {max_size} allowed")
        try:
            if codec == ZSTD:
                data = bytes(self._zstd_out.decompress(frame, max_output_size=max_size))
            else:
                data = bytes(lz4.frame.decompress(frame))
        except (zstandard.ZstdError, RuntimeError, ValueError) as err:
            raise CorruptBatch(f"a {name_of(codec)} frame that does not decompress: {err}") from None
        if len(data) != size:
            raise CorruptBatch(f"a {name_of(codec)} frame of {len(data)} bytes, its header says {size}")
        return data
