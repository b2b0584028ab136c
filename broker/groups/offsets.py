"""Committed group offsets: the reads the group service and the metrics make, and the write ops that
change them (through the store's LogWrite). A topic deleted and created again (a new id) starts with none.
"""

from __future__ import annotations

from dataclasses import dataclass

from tidelog.broker.storage.interface import LogStore, LogWrite


class GroupOffsets:
    """What is committed, read from the store (the last durable commit)."""

    def __init__(self, store: LogStore) -> None:
        self._store = store

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
    offsets: list[tuple[int, int, int]]  # (topic_id, partition, offset)
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
    offsets: list[tuple[int, int, int]]
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
