"""The Kafka protocol's primitive types, read from and written to bytes.

Fixed-width integers are big-endian; varints are zigzag-encoded, unsigned varints are not. "Compact"
strings, bytes and arrays (the flexible versions of KIP-482) carry their length + 1 as an unsigned
varint, 0 meaning null; the others an int16 (strings) or int32 (bytes, arrays) length, -1 meaning
null. Every read checks its length against what is left, so a frame that lies about a length raises
MalformedFrame rather than reading past its end or allocating what it claims.
"""

from __future__ import annotations

import struct
import uuid

_I8, _I16, _I32, _I64 = struct.Struct(">b"), struct.Struct(">h"), struct.Struct(">i"), struct.Struct(">q")
_U16, _U32, _F64 = struct.Struct(">H"), struct.Struct(">I"), struct.Struct(">d")
MAX_ARRAY_ITEMS = 1 << 20  # no request needs more; a larger count is a lie or an attack


class MalformedFrame(ValueError):
    """A frame the protocol cannot decode: the connection that sent it is closed."""


class Reader:
    __slots__ = ("_data", "pos")

    def __init__(self, data: bytes | memoryview, pos: int = 0) -> None:
        self._data = memoryview(data)
        self.pos = pos

    @property
    def remaining(self) -> int:
        return len(self._data) - self.pos

    def _take(self, size: int) -> memoryview:
        if size < 0 or size > self.remaining:
            raise MalformedFrame(f"{size} bytes wanted at byte {self.pos}, {self.remaining} left")
        start = self.pos
        self.pos += size
        return self._data[start : self.pos]

    def int8(self) -> int:
        return int(_I8.unpack(self._take(1))[0])

    def int16(self) -> int:
        return int(_I16.unpack(self._take(2))[0])

    def uint16(self) -> int:
        return int(_U16.unpack(self._take(2))[0])

    def int32(self) -> int:
        return int(_I32.unpack(self._take(4))[0])

    def uint32(self) -> int:
        return int(_U32.unpack(self._take(4))[0])

    def int64(self) -> int:
        return int(_I64.unpack(self._take(8))[0])

    def float64(self) -> float:
        return float(_F64.unpack(self._take(8))[0])

    def boolean(self) -> bool:
        return self._take(1)[0] != 0

    def uuid(self) -> uuid.UUID:
        return uuid.UUID(bytes=bytes(self._take(16)))

    def uvarint(self) -> int:
        value, shift = 0, 0
        while True:
            byte = self._take(1)[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
            if shift > 63:
                raise MalformedFrame("a varint longer than 10 bytes")

    def varint(self) -> int:
        raw = self.uvarint()
        return (raw >> 1) ^ -(raw & 1)

    def raw(self, size: int) -> bytes:
        return bytes(self._take(size))

    def string(self, nullable: bool = False) -> str | None:
        size = self.int16()
        return self._text(size, nullable)

    def compact_string(self, nullable: bool = False) -> str | None:
        return self._text(self.uvarint() - 1, nullable)

    def _text(self, size: int, nullable: bool) -> str | None:
        if size < 0:
            if not nullable:
                raise MalformedFrame(f"a null string where one is required (byte {self.pos})")
            return None
        try:
            return str(self._take(size), "utf-8")
        except UnicodeDecodeError:
            raise MalformedFrame(f"a string that is not UTF-8 (byte {self.pos})") from None

    def bytes_(self, nullable: bool = False) -> bytes | None:
        return self._blob(self.int32(), nullable)

    def compact_bytes(self, nullable: bool = False) -> bytes | None:
        return self._blob(self.uvarint() - 1, nullable)

    def _blob(self, size: int, nullable: bool) -> bytes | None:
        if size < 0:
            if not nullable:
                raise MalformedFrame(f"null bytes where they are required (byte {self.pos})")
            return None
        return self.raw(size)

    def varint_bytes(self) -> bytes | None:
        """Bytes behind a zigzag varint length, -1 meaning null (the fields of Kafka's records)."""
        size = self.varint()
        return None if size < 0 else self.raw(size)

    def array_length(self, compact: bool) -> int:
        """The item count of an array (-1: null), checked against what the frame can hold."""
        count = self.uvarint() - 1 if compact else self.int32()
        if count > MAX_ARRAY_ITEMS or count > self.remaining:  # each item takes a byte at least
            raise MalformedFrame(f"an array of {count} items in a frame with {self.remaining} bytes left")
        return count

    def tagged_fields(self) -> dict[int, bytes]:
        """The tagged fields (KIP-482) here, by tag, undecoded: a reader skips those it does not know."""
        fields: dict[int, bytes] = {}
        for _ in range(self._tag_count()):
            tag = self.uvarint()
            fields[tag] = self.raw(self.uvarint())
        return fields

    def _tag_count(self) -> int:
        count = self.uvarint()
        if count > self.remaining:
            raise MalformedFrame(f"{count} tagged fields in a frame with {self.remaining} bytes left")
        return count


class Writer:
    __slots__ = ("_parts",)

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def getvalue(self) -> bytes:
        return b"".join(self._parts)

    def raw(self, data: bytes) -> None:
        self._parts.append(data)

    def int8(self, value: int) -> None:
        self._parts.append(_I8.pack(value))

    def int16(self, value: int) -> None:
        self._parts.append(_I16.pack(value))

    def uint16(self, value: int) -> None:
        self._parts.append(_U16.pack(value))

    def int32(self, value: int) -> None:
        self._parts.append(_I32.pack(value))

    def uint32(self, value: int) -> None:
        self._parts.append(_U32.pack(value))

    def int64(self, value: int) -> None:
        self._parts.append(_I64.pack(value))

    def float64(self, value: float) -> None:
        self._parts.append(_F64.pack(value))

    def boolean(self, value: bool) -> None:
        self._parts.append(b"\x01" if value else b"\x00")

    def uuid(self, value: uuid.UUID) -> None:
        self._parts.append(value.bytes)

    def uvarint(self, value: int) -> None:
        out = bytearray()
        while value > 0x7F:
            out.append((value & 0x7F) | 0x80)
            value >>= 7
        out.append(value)
        self._parts.append(bytes(out))

    def varint(self, value: int) -> None:
        self.uvarint((value << 1) ^ (value >> 63))

    def string(self, value: str | None) -> None:
        if value is None:
            self.int16(-1)
            return
        data = value.encode()
        self.int16(len(data))
        self._parts.append(data)

    def compact_string(self, value: str | None) -> None:
        self.compact_bytes(None if value is None else value.encode())

    def bytes_(self, value: bytes | None) -> None:
        if value is None:
            self.int32(-1)
            return
        self.int32(len(value))
        self._parts.append(value)

    def compact_bytes(self, value: bytes | None) -> None:
        if value is None:
            self.uvarint(0)
            return
        self.uvarint(len(value) + 1)
        self._parts.append(value)

    def array_length(self, count: int | None, compact: bool) -> None:
        if compact:
            self.uvarint(0 if count is None else count + 1)
        else:
            self.int32(-1 if count is None else count)

    def no_tagged_fields(self) -> None:
        self._parts.append(b"\x00")
