"""Records as the console shows them: bytes as text, JSON or hex, cut to a size a page can hold."""

from __future__ import annotations

import json
from typing import Any

from tidelog.v1 import records_pb2

PREVIEW_BYTES = 2048  # a tail shows this much of a key or value; "show all" fetches the rest
FULL_BYTES = 1 << 20  # "show all" shows at most this much


def show_bytes(data: bytes | None, limit: int = PREVIEW_BYTES) -> dict[str, Any] | None:
    """{kind: text|json|hex, text, size, truncated}; None for an absent value (a tombstone)."""
    if data is None:
        return None
    part = data[:limit]
    truncated = len(data) > limit
    try:
        text = part.decode("utf-8")
    except UnicodeDecodeError as err:
        if not truncated or err.start < len(part) - 3:  # not merely a character cut at the limit
            return {"kind": "hex", "text": part.hex(" "), "size": len(data), "truncated": truncated}
        text = part[: err.start].decode("utf-8")
    kind = "text"
    if not truncated and text[:1] in ("{", "["):
        try:
            text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
            kind = "json"
        except ValueError:
            pass
    return {"kind": kind, "text": text, "size": len(data), "truncated": truncated}


def show_record(
    topic: str, partition: int, offset: int, record: records_pb2.Record, append_time_ms: int, limit: int = PREVIEW_BYTES
) -> dict[str, Any]:
    value = record.value if record.HasField("value") else None
    return {
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "timestamp_ms": record.timestamp_ms or append_time_ms,
        "key": show_bytes(record.key, limit) if record.key else None,
        "value": show_bytes(value, limit),
        "headers": [{"key": h.key, "value": show_bytes(h.value, limit)} for h in record.headers],
    }


def matches(record: records_pb2.Record, key: bytes | None, contains: bytes | None) -> bool:
    """The tail's filter: the key equals `key`, and `contains` occurs in the key or the value."""
    if key is not None and record.key != key:
        return False
    return contains is None or contains in record.key or contains in record.value
