"""Hand encoding of the messages on the producer's hot path.

Building a protobuf Record object per record and serializing it costs several
times more than writing its few fields directly; the encoding below is exactly
protobuf's (tests/unit/test_units.py checks it against the generated classes).
"""

from __future__ import annotations

from collections.abc import Sequence

from tidelog.common.varint import _SMALL, varint

# (timestamp_ms, its encoded field): records sent in the same millisecond share it. A tuple, so
# that threads swapping it never see a timestamp paired with another's encoding.
_timestamp_cache: tuple[int, bytes] = (-1, b"")


def _timestamp_field(timestamp_ms: int) -> bytes:
    global _timestamp_cache
    if not timestamp_ms:
        return b""
    cached = _timestamp_cache
    if cached[0] != timestamp_ms:
        cached = _timestamp_cache = (timestamp_ms, b"\x20" + varint(timestamp_ms))
    return cached[1]


def encode_record(
    key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]] | None, timestamp_ms: int
) -> bytes:
    """A Record framed as one entry of a `repeated Record records = 1` field."""
    ts_field = _timestamp_field(timestamp_ms)
    if value is not None and not key and not headers:  # the common case: one allocation
        size = len(value)
        size_field = _SMALL[size] if size < 128 else varint(size)
        body_size = 1 + len(size_field) + size + len(ts_field)
        return b"\x0a%b\x12%b%b%b" % (
            _SMALL[body_size] if body_size < 128 else varint(body_size),
            size_field,
            value,
            ts_field,
        )
    parts: list[bytes] = []
    if key:
        parts += (b"\x0a", varint(len(key)), key)
    if value is not None:
        parts += (b"\x12", varint(len(value)), value)
    if headers:
        for name, data in headers:
            encoded_name = name.encode()
            header = b"".join(
                (
                    b"\x0a" + varint(len(encoded_name)) + encoded_name if encoded_name else b"",
                    b"\x12" + varint(len(data)) + data if data else b"",
                )
            )
            parts += (b"\x1a", varint(len(header)), header)
    parts.append(ts_field)
    body = b"".join(parts)
    return b"\x0a" + varint(len(body)) + body


def encode_values(values: Sequence[bytes], timestamp_ms: int) -> list[bytes]:
    """Keyless, headerless records sharing one timestamp, each framed as encode_record frames it.

    The batch path of `send_many()`: when every record fits one-byte lengths (values up to ~110
    bytes), each is a single %-format with no Python function call per record.
    """
    ts_field = _timestamp_field(timestamp_ms)
    extra = 2 + len(ts_field)  # the value's tag and length byte, and the timestamp field
    if not values or max(map(len, values)) + extra >= 128:
        return [encode_record(None, value, None, timestamp_ms) for value in values]
    template = b"\x0a%b\x12%b%b" + ts_field.replace(b"%", b"%%")
    small = _SMALL
    return [template % (small[len(value) + extra], small[len(value)], value) for value in values]
