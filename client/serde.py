"""Serializers and deserializers: how keys and values become bytes and back.

A serializer is any callable ``object -> bytes`` and a deserializer any callable
``bytes -> object``; pass them to a producer (``key_serializer=``,
``value_serializer=``) or a consumer (``key_deserializer=``,
``value_deserializer=``). Bytes pass through untouched by default. ``None``
(a missing key, a tombstone value) is never handed to either.

    producer = Producer(address, value_serializer=serde.json_serializer)
    consumer = Consumer(address, topics=["t"], value_deserializer=serde.json_deserializer)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

Serializer = Callable[[Any], bytes]
Deserializer = Callable[[bytes], Any]


def bytes_serializer(obj: Any) -> bytes:
    """The default: bytes-like objects as they are; anything else is a TypeError that says what to use."""
    if isinstance(obj, bytes):
        return obj
    if isinstance(obj, bytearray | memoryview):
        return bytes(obj)
    raise TypeError(
        f"cannot send a {type(obj).__name__} as bytes: encode it, or give the producer a serializer "
        "(tidelog.serde.str_serializer, tidelog.serde.json_serializer or your own callable)"
    )


def str_serializer(obj: str) -> bytes:
    """A str as UTF-8."""
    return obj.encode()


def str_deserializer(data: bytes) -> str:
    """UTF-8 bytes as a str."""
    return data.decode()


def json_serializer(obj: Any) -> bytes:
    """Any JSON-serialisable object as compact UTF-8 JSON."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def json_deserializer(data: bytes) -> Any:
    """UTF-8 JSON to Python objects."""
    return json.loads(data)


def header_items(headers: Any) -> list[tuple[str, bytes]]:
    """Headers as given to `send()` (a mapping or pairs; str values as UTF-8) as (name, bytes) pairs."""
    pairs = headers.items() if hasattr(headers, "items") else headers
    out: list[tuple[str, bytes]] = []
    for name, value in pairs:
        if not isinstance(name, str):
            raise TypeError(f"a header name must be a str, got {type(name).__name__}")
        out.append((name, value.encode() if isinstance(value, str) else bytes_serializer(value)))
    return out
