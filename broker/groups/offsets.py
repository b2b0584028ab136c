"""Committed group offsets: where they live (OffsetStore), a single broker's store of them in its own
LMDB (LocalOffsets, through writer ops like produces), and those ops. A cluster keeps them in etcd
instead (cluster/group_store.py). A topic deleted and created again (a new id) starts with none.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from tidelog.broker.storage.interface import LogStore, LogWrite
from tidelog.broker.storage.writer import WriteOp

Entries = list[tuple[int, int, int]]  # (topic_id, partition, offset)


class OffsetStore(Protocol):
    """A group's committed offsets. Reads are of what this broker knows (every group on a single
    broker; in a cluster, the groups it coordinates); writes are durable when their future resolves."""

    def committed(self, group: str) -> dict[tuple[int, int], int]:
        """Every committed offset of `group`, by (topic_id, partition)."""
        ...

    def committed_offset(self, group: str, topic_id: int, partition: int) -> int | None: ...

    def group_names(self) -> list[str]:
        """The groups with committed offsets known here, in name order."""
        ...

    async def all_group_names(self) -> list[str]:
        """Every group with committed offsets, wherever it is coordinated, in name order."""
        ...

    def commit(self, group: str, offsets: Entries) -> asyncio.Future[list[int]]:
        """Commit (queued now, so commits keep their call order); never lowers a stored offset. The
        future holds what is stored now per entry."""
        ...

    async def reset(self, group: str, offsets: Entries) -> None:
        """Set offsets exactly, backwards too (the admin reset)."""
        ...

    async def delete(self, group: str) -> bool:
        """Forget every committed offset of the group; True if it had any."""
        ...


class LocalOffsets:
    """A single broker's: in its LMDB store, read from the last durable commit, written by writer ops."""

    def __init__(self, store: LogStore, submit: Callable[[WriteOp], asyncio.Future[Any]]) -> None:
        self._store = store
        self._submit = submit

    async def all_group_names(self) -> list[str]:
        return self.group_names()

    def commit(self, group: str, offsets: Entries) -> asyncio.Future[list[int]]:
        return self._submit(CommitOffsetsOp(group, offsets))

    async def reset(self, group: str, offsets: Entries) -> None:
        await self._submit(ResetOffsetsOp(group, offsets))

    async def delete(self, group: str) -> bool:
        return bool(await self._submit(DeleteGroupOffsetsOp(group)))

    def committed(self, group: str) -> dict[tuple[int, int], int]:
        """Every committed offset of `group`, by (topic_id, partition)."""
        return self._store.committed(group)

    def committed_offset(self, group: str, topic_id: int, partition: int) -> int | None:
        return self._store.committed_offset(group, topic_id, partition)

    def group_names(self) -> list[str]:
        """Groups with at least one committed offset, in name order."""
        return self._store.group_names()


@dataclass
class CommitOffsetsOp:
    """Commits offsets; a lower offset than the one stored is kept as stored, never moved back."""

    group: str
    offsets: Entries
    write_bytes = 0

    def apply(self, txn: LogWrite, now_ms: int) -> list[int]:
        stored: list[int] = []
        for topic_id, partition, offset in self.offsets:
            old = txn.committed_offset(self.group, topic_id, partition)
            if old is not None and old > offset:
                stored.append(old)
                continue
            txn.commit_offset(self.group, topic_id, partition, offset, now_ms)
            stored.append(offset)
        return stored

    def publish(self, result: list[int]) -> None:
        pass


@dataclass
class ResetOffsetsOp:
    """Sets offsets exactly, backwards too (the admin reset)."""

    group: str
    offsets: Entries
    write_bytes = 0

    def apply(self, txn: LogWrite, now_ms: int) -> None:
        for topic_id, partition, offset in self.offsets:
            txn.commit_offset(self.group, topic_id, partition, offset, now_ms)

    def publish(self, result: None) -> None:
        pass


@dataclass
class DeleteGroupOffsetsOp:
    """Forgets every committed offset of a group; True if it had any."""

    group: str
    write_bytes = 0
    frees_space = True

    def apply(self, txn: LogWrite, now_ms: int) -> bool:
        return txn.delete_group(self.group)

    def publish(self, result: bool) -> None:
        pass
