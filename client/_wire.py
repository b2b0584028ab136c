"""Hand encoding of the messages on the producer's hot path.

Building a protobuf Record object per record and serializing it costs several
times more than writing its few fields directly; the encoding below is exactly
protobuf's (tests/test_wire.py checks it against the generated classes).
"""

from __future__ import annotations

from collections.abc import Sequence

_SMALL = [bytes((n,)) for n in range(128)]


def varint(value: int) -> bytes:
    if value < 128:
        return _SMALL[value]
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_record(
    key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]] | None, timestamp_ms: int
) -> bytes:
    """A Record framed as one entry of a `repeated Record records = 1` field."""
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
    if timestamp_ms:
        parts += (b"\x20", varint(timestamp_ms))
    body = b"".join(parts)
    return b"\x0a" + varint(len(body)) + body
