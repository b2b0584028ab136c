"""The event loop's view of topics: metadata, published offsets, and waiters.

Only the event loop thread touches these objects. The writer publishes a commit
by scheduling a callback on the loop, so a high watermark here only ever names
records that are committed (and as durable as --fsync promises).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping

from tidelog.broker.errors import topic_not_found
from tidelog.broker.log import topic_config
from tidelog.broker.log.epochs import LeaderEpochs
from tidelog.broker.log.wakeups import Changes
from tidelog.broker.storage.interface import PartitionStats as PartitionStats
from tidelog.broker.storage.interface import TopicRecord as TopicRecord  # re-exported: the API's view


class PartitionState(Changes):
    """A partition as the event loop sees it. `log_end` is the offset after the last record stored
    here; `high_watermark` the offset readers may read up to. They are one for a partition of a
    single copy; a replicated one's high watermark follows its in-sync replicas (`on_log_end`)."""

    __slots__ = (
        "high_watermark",
        "leader_epochs",
        "log_end",
        "log_start_offset",
        "on_log_end",
        "partition",
        "size_bytes",
    )

    def __init__(self, partition: int, stats: PartitionStats) -> None:
        super().__init__()
        self.partition = partition
        self.log_end = stats.next_offset
        self.high_watermark = stats.next_offset
        self.log_start_offset = stats.log_start_offset
        self.size_bytes = stats.size_bytes
        # Set for a replicated partition: told of each append, it moves the high watermark.
        self.on_log_end: Callable[[PartitionState], None] | None = None
        self.leader_epochs: LeaderEpochs | None = None  # a replicated partition's (log.epochs)

    def advance(self, log_end: int, size_bytes: int) -> None:
        self.log_end = log_end
        self.size_bytes = size_bytes
        if self.on_log_end is None:
            self.high_watermark = log_end
            self.wake()  # an append, or (from the topic) the topic went away
        else:
            self.on_log_end(self)

    def raise_high_watermark(self, offset: int) -> None:
        """Readers may read up to `offset` now (never back, never past the log's end)."""
        offset = min(offset, self.log_end)
        if offset > self.high_watermark:
            self.high_watermark = offset
            self.wake()


class TopicState:
    def __init__(
        self, record: TopicRecord, stats: list[PartitionStats], broker_defaults: Mapping[str, str] | None = None
    ) -> None:
        self.broker_defaults = dict(broker_defaults or {})
        self.id = record.id
        self.name = record.name
        self.overrides = dict(record.configs)
        self.partitions = [PartitionState(p, s) for p, s in enumerate(stats)]
        self.deleted = False
        self._keyless_cursor = itertools.count()
        self.set_configs(record.configs)

    def set_configs(self, overrides: dict[str, str]) -> None:
        self.overrides = dict(overrides)
        self.configs = topic_config.effective(overrides, self.broker_defaults)
        self.max_message_bytes = int(self.configs["max.message.bytes"])
        self.compacted = "compact" in self.configs["cleanup.policy"]
        self.deletes = "delete" in self.configs["cleanup.policy"]  # retention applies
        self.retention_ms = int(self.configs["retention.ms"])
        self.retention_bytes = int(self.configs["retention.bytes"])
        self.log_append_time = self.configs["message.timestamp.type"] == "LogAppendTime"

    def next_keyless_partition(self) -> int:
        """Keyless records of a request go together to the next partition in turn."""
        return next(self._keyless_cursor) % len(self.partitions)

    def mark_deleted(self) -> None:
        self.deleted = True
        for partition in self.partitions:
            partition.wake()


class TopicRegistry:
    def __init__(self, broker_defaults: Mapping[str, str] | None = None) -> None:
        self.broker_defaults = dict(broker_defaults or {})  # topic configs the broker's flags set
        self._by_name: dict[str, TopicState] = {}
        self.listeners: list[Callable[[str], None]] = []  # told the name of each topic created or deleted

    def get(self, name: str) -> TopicState:
        topic = self._by_name.get(name)
        if topic is None:
            raise topic_not_found(name)
        return topic

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def add(self, topic: TopicState) -> None:
        self._by_name[topic.name] = topic
        for listener in self.listeners:
            listener(topic.name)

    def remove(self, name: str) -> None:
        topic = self._by_name.pop(name, None)
        if topic is not None:
            topic.mark_deleted()
            for listener in self.listeners:
                listener(name)

    def sorted(self) -> list[TopicState]:
        return [self._by_name[name] for name in sorted(self._by_name)]
