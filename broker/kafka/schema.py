"""Kafka messages described as data, and one encoder and decoder for all of them.

A message is a struct of fields, each present in a range of versions, perhaps nullable in some,
perhaps tagged (KIP-482). The shape follows Kafka's own JSON message specs ("versions": "3+",
"nullableVersions", "taggedVersions", "flexibleVersions"), so the definitions in `messages.py` read
like them. Decoded messages are plain dicts keyed by snake_case field names.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tidelog.broker.kafka.wire import MalformedFrame, Reader, Writer

NO_VERSIONS = (1, 0)  # an empty range
ZERO_UUID = uuid.UUID(int=0)


def versions(spec: str) -> tuple[int, int]:
    """ "3+" -> (3, 32767), "1-4" -> (1, 4), "2" -> (2, 2), "none" -> an empty range."""
    if spec == "none":
        return NO_VERSIONS
    if spec.endswith("+"):
        return int(spec[:-1]), 32767
    low, _, high = spec.partition("-")
    return int(low), int(high or low)


@dataclass(frozen=True)
class Field:
    name: str
    type: str | Struct  # a primitive's name, or a struct
    versions: tuple[int, int]
    array: bool = False
    nullable: tuple[int, int] = NO_VERSIONS
    tag: int | None = None  # a tagged field: written only in flexible versions, by its tag
    default: Any = None

    def present(self, version: int) -> bool:
        return self.versions[0] <= version <= self.versions[1]

    def nullable_in(self, version: int) -> bool:
        return self.nullable[0] <= version <= self.nullable[1]


@dataclass(frozen=True)
class Struct:
    fields: tuple[Field, ...]


def field(
    name: str,
    type_: str | Struct,
    versions_: str = "0+",
    *,
    array: bool = False,
    nullable: str = "none",
    tag: int | None = None,
    default: Any = None,
) -> Field:
    return Field(name, type_, versions(versions_), array, versions(nullable), tag, default)


def struct(*fields: Field) -> Struct:
    return Struct(fields)


@dataclass(frozen=True)
class Message:
    name: str
    api_key: int
    valid: tuple[int, int]  # the versions this broker speaks
    flexible: int  # the first flexible version (KIP-482); 32767 when none is
    body: Struct

    def is_flexible(self, version: int) -> bool:
        return version >= self.flexible


_DEFAULTS: dict[str, Any] = {
    "int8": 0, "int16": 0, "int32": 0, "int64": 0, "uint16": 0, "float64": 0.0, "bool": False,
    "string": "", "bytes": b"", "records": None, "uuid": ZERO_UUID,
}  # fmt: skip


# The fixed-width primitives, by type name: built once, not for every field read or written.
_READERS: dict[str, Callable[[Reader], Any]] = {
    "int8": Reader.int8, "int16": Reader.int16, "int32": Reader.int32, "int64": Reader.int64,
    "uint16": Reader.uint16, "float64": Reader.float64, "bool": Reader.boolean, "uuid": Reader.uuid,
}  # fmt: skip
_WRITERS: dict[str, Callable[[Writer, Any], None]] = {
    "int8": Writer.int8, "int16": Writer.int16, "int32": Writer.int32, "int64": Writer.int64,
    "uint16": Writer.uint16, "float64": Writer.float64, "bool": Writer.boolean, "uuid": Writer.uuid,
}  # fmt: skip


def _default(f: Field, version: int) -> Any:
    if f.default is not None:
        return f.default
    if f.array:
        return None if f.nullable_in(version) else []
    if isinstance(f.type, Struct):
        return {}
    return None if f.nullable_in(version) and f.type in ("string", "bytes") else _DEFAULTS[f.type]


def _read_value(r: Reader, f: Field, version: int, flexible: bool) -> Any:
    kind = f.type
    if isinstance(kind, Struct):
        return decode_struct(r, kind, version, flexible)
    nullable = f.nullable_in(version)
    if kind == "string":
        return r.compact_string(nullable) if flexible else r.string(nullable)
    if kind in ("bytes", "records"):
        return r.compact_bytes(nullable or kind == "records") if flexible else r.bytes_(nullable or kind == "records")
    return _READERS[kind](r)


def _read_field(r: Reader, f: Field, version: int, flexible: bool) -> Any:
    if not f.array:
        return _read_value(r, f, version, flexible)
    count = r.array_length(flexible)
    if count < 0:
        if not f.nullable_in(version):
            raise MalformedFrame(f"a null array for {f.name}, which is not nullable in version {version}")
        return None
    return [_read_value(r, f, version, flexible) for _ in range(count)]


def decode_struct(r: Reader, body: Struct, version: int, flexible: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    tagged: dict[int, Field] = {}
    for f in body.fields:
        if not f.present(version):
            out[f.name] = _default(f, version)
        elif f.tag is not None:
            tagged[f.tag] = f
            out[f.name] = _default(f, version)
        else:
            out[f.name] = _read_field(r, f, version, flexible)
    if flexible:
        for tag, raw in r.tagged_fields().items():
            if tag in tagged:
                out[tagged[tag].name] = _read_field(Reader(raw), tagged[tag], version, flexible)
    return out


def _write_value(w: Writer, f: Field, value: Any, version: int, flexible: bool) -> None:
    kind = f.type
    if value is None and not isinstance(kind, Struct) and not f.nullable_in(version) and kind != "records":
        value = _DEFAULTS[kind]  # a null where this version has none: its type's empty value, never a -1
    if isinstance(kind, Struct):
        encode_struct(w, kind, value, version, flexible)
    elif kind == "string":
        (w.compact_string if flexible else w.string)(value)
    elif kind in ("bytes", "records"):
        (w.compact_bytes if flexible else w.bytes_)(value)
    else:
        _WRITERS[kind](w, value)


def _write_field(w: Writer, f: Field, value: Any, version: int, flexible: bool) -> None:
    if not f.array:
        _write_value(w, f, value, version, flexible)
        return
    if value is None and not f.nullable_in(version):
        value = []
    w.array_length(None if value is None else len(value), flexible)
    for item in value or ():
        _write_value(w, f, item, version, flexible)


def encode_struct(w: Writer, body: Struct, data: dict[str, Any], version: int, flexible: bool) -> None:
    tagged: list[tuple[int, bytes]] = []
    for f in body.fields:
        if not f.present(version):
            continue
        value = data.get(f.name, _default(f, version))
        if f.tag is not None:
            if flexible and value != _default(f, version):
                inner = Writer()
                _write_field(inner, f, value, version, flexible)
                tagged.append((f.tag, inner.getvalue()))
            continue
        _write_field(w, f, value, version, flexible)
    if flexible:
        w.uvarint(len(tagged))
        for tag, raw in sorted(tagged):
            w.uvarint(tag)
            w.uvarint(len(raw))
            w.raw(raw)


def decode(message: Message, version: int, data: bytes | memoryview, pos: int = 0) -> dict[str, Any]:
    reader = Reader(data, pos)
    return decode_struct(reader, message.body, version, message.is_flexible(version))


def encode(message: Message, version: int, data: dict[str, Any]) -> bytes:
    writer = Writer()
    encode_struct(writer, message.body, data, version, message.is_flexible(version))
    return writer.getvalue()
