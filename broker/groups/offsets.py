"""Committed group offsets in LMDB: key layout, reads, and the write ops that change them.

Key: group name (UTF-8, no NUL) · 0x00 · topic_id u32 · partition u32, so one group's offsets
are one key range and a topic deleted and created again (new id) starts with none.
Value: offset i64 · commit time ms i64.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from tidelog.broker.log.topics import TopicRegistry
from tidelog.broker.storage.lmdb_store import PARTITION_KEY, Store

OFFSET_VALUE = struct.Struct(">qq")
TPKey = tuple[int, int]  # (topic_id, partition)


def group_prefix(group: str) -> bytes:
    return group.encode() + b"\x00"


def offset_key(group: str, topic_id: int, partition: int) -> bytes:
    return group_prefix(group) + PARTITION_KEY.pack(topic_id, partition)


def committed(store: Store, group: str) -> dict[TPKey, int]:
    """Every committed offset of `group`, by (topic_id, partition)."""
    prefix = group_prefix(group)
    out: dict[TPKey, int] = {}
    with store.env.begin(db=store.offsets) as txn:
        cursor = txn.cursor()
        if not cursor.set_range(prefix):
            return out
        for key, value in cursor:
            if not key.startswith(prefix):
                break
            out[PARTITION_KEY.unpack_from(key, len(prefix))] = OFFSET_VALUE.unpack(value)[0]
    return out


def committed_offset(store: Store, group: str, topic_id: int, partition: int) -> int | None:
    with store.env.begin(db=store.offsets) as txn:
        value = txn.get(offset_key(group, topic_id, partition))
    return None if value is None else int(OFFSET_VALUE.unpack(value)[0])


def group_names(store: Store) -> list[str]:
    """Groups with at least one committed offset, in name order."""
    names: list[str] = []
    with store.env.begin(db=store.offsets) as txn:
        cursor = txn.cursor()
        found = cursor.first()
        while found:
            name = bytes(cursor.key()).split(b"\x00", 1)[0]
            names.append(name.decode())
            found = cursor.set_range(name + b"\x01")  # past this group's keys
    return names


@dataclass
class CommitOffsetsOp:
    """Commits offsets; a lower offset than the one stored is kept as stored, never moved back."""

    group: str
    offsets: list[tuple[int, int, int]]  # (topic_id, partition, offset)
    write_bytes = 0

    def apply(self, store: Store, txn: Any, now_ms: int) -> list[int]:
        stored: list[int] = []
        for topic_id, partition, offset in self.offsets:
            key = offset_key(self.group, topic_id, partition)
            old = txn.get(key, db=store.offsets)
            if old is not None and OFFSET_VALUE.unpack(old)[0] > offset:
                stored.append(OFFSET_VALUE.unpack(old)[0])
                continue
            txn.put(key, OFFSET_VALUE.pack(offset, now_ms), db=store.offsets)
            stored.append(offset)
        return stored

    def publish(self, registry: TopicRegistry, result: list[int]) -> None:
        pass


@dataclass
class ResetOffsetsOp:
    """Sets offsets exactly, backwards too (the admin reset)."""

    group: str
    offsets: list[tuple[int, int, int]]
    write_bytes = 0

    def apply(self, store: Store, txn: Any, now_ms: int) -> None:
        for topic_id, partition, offset in self.offsets:
            txn.put(offset_key(self.group, topic_id, partition), OFFSET_VALUE.pack(offset, now_ms), db=store.offsets)

    def publish(self, registry: TopicRegistry, result: None) -> None:
        pass


@dataclass
class DeleteGroupOffsetsOp:
    """Forgets every committed offset of a group; True if it had any."""

    group: str
    write_bytes = 0
    frees_space = True

    def apply(self, store: Store, txn: Any, now_ms: int) -> bool:
        prefix = group_prefix(self.group)
        cursor = txn.cursor(db=store.offsets)
        found = False
        if cursor.set_range(prefix):
            while cursor.key()[: len(prefix)] == prefix:
                found = True
                if not cursor.delete():
                    break
        return found

    def publish(self, registry: TopicRegistry, result: bool) -> None:
        pass
