"""Where a consumer is in each partition it reads: one record per partition, kept in step in one place.

`position` is the next offset handed to the caller; `buffered_next` where it moves once the batches
of that partition waiting in the consumer's buffer are handed out; `start` where a (re)opened stream
begins. Each assignment of a partition (a seek, a group assignment) gets a new epoch, never reused, so
a response read under an older one can never pass for a new one.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field

from tidelog.types import TopicPartition
from tidelog.v1 import records_pb2


class Timestamp(int):
    """A start given as a timestamp (the first record at or after it), not an offset."""


class Position(int):
    """A start given as a records_pb2.Position (earliest, latest), not an offset."""


EARLIEST = Position(records_pb2.POSITION_EARLIEST)
LATEST = Position(records_pb2.POSITION_LATEST)
# Where a partition's stream starts: a plain int is an offset.
Start = int | Position | Timestamp


@dataclass(slots=True)
class PartitionPosition:
    epoch: int
    start: Start
    position: int | None  # None until the broker said where the start is
    known: asyncio.Event = field(default_factory=asyncio.Event)  # set once the position is known
    pending: int = 0  # batches of this partition in the consumer's buffer
    buffered_next: int | None = None
    high_watermark: int | None = None  # the latest the broker reported

    def learn(self, position: int) -> None:
        """The position is known now (the broker's resolved start, or a group partition's first batch)."""
        self.position = position
        self.known.set()

    def forget(self, start: Start) -> None:
        """Start again from `start` (an offset out of range falls back to the reset policy)."""
        self.start = start
        self.position = start if type(start) is int else None
        if self.position is None:
            self.known.clear()
        else:
            self.known.set()


class Positions:
    """The partitions being read, each with its PartitionPosition."""

    def __init__(self) -> None:
        self._by_tp: dict[TopicPartition, PartitionPosition] = {}
        self._epochs = itertools.count(1)

    def assign(self, tp: TopicPartition, start: Start) -> PartitionPosition:
        """Read `tp` from `start` under a new epoch (whatever was read of it before is dropped)."""
        old = self._by_tp.get(tp)
        # The same event across a seek: a caller waiting in position() learns the new start.
        entry = PartitionPosition(next(self._epochs), start, None, old.known if old else asyncio.Event())
        entry.forget(start)
        self._by_tp[tp] = entry
        return entry

    def remove(self, tp: TopicPartition) -> PartitionPosition | None:
        return self._by_tp.pop(tp, None)

    def get(self, tp: TopicPartition) -> PartitionPosition | None:
        return self._by_tp.get(tp)

    def current(self, tp: TopicPartition, epoch: int) -> PartitionPosition | None:
        """The partition's entry if `epoch` is still its epoch (else what was read is stale)."""
        entry = self._by_tp.get(tp)
        return entry if entry is not None and entry.epoch == epoch else None

    def __contains__(self, tp: object) -> bool:
        return tp in self._by_tp

    def __iter__(self) -> Iterator[TopicPartition]:
        return iter(list(self._by_tp))

    def known_positions(self) -> dict[TopicPartition, int]:
        """Every partition's position, where it is known."""
        return {tp: e.position for tp, e in self._by_tp.items() if e.position is not None}

    def lag(self) -> dict[TopicPartition, int]:
        """Records between the position and the last reported high watermark, where both are known."""
        return {
            tp: max(0, e.high_watermark - e.position)
            for tp, e in self._by_tp.items()
            if e.position is not None and e.high_watermark is not None
        }
