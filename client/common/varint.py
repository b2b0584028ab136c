"""Protobuf's base-128 varint, for messages built by hand on the hot paths of both sides."""

from __future__ import annotations

_SMALL = [bytes((n,)) for n in range(128)]


def varint(value: int) -> bytes:
    """The varint encoding of a non-negative int."""
    if value < 128:
        return _SMALL[value]
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
