"""Write operations: what the writer thread applies, each in its own nested transaction.

An op's `apply` runs on the writer thread inside a child transaction of the group
commit; it checks everything before it writes, and if it raises, its child
transaction is aborted, so no op is ever half-applied. `publish` runs on the event
loop after the group commit is durable and updates the in-memory registry.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Protocol

from tidelog.broker.batches import build_stored
from tidelog.broker.errors import BrokerError, topic_not_found
from tidelog.broker.log.topics import TopicRegistry, TopicState
from tidelog.broker.storage import time_index
from tidelog.broker.storage.lmdb_store import (
    COUNTER,
    LOG_KEY,
    PARTITION_KEY,
    TOPIC_ID,
    PartitionStats,
    Store,
    TopicRecord,
)
from tidelog.common.reasons import Reason
from tidelog.v1.broker_pb2 import PartitionResult

# Idempotence: per (topic, partition, producer), the last few batches it wrote.
PRODUCER_KEY = struct.Struct(">IIQ")
PRODUCER_ENTRY = struct.Struct(">qIqq")  # first_sequence, record_count, base_offset, append_time_ms
PRODUCER_HEAD = struct.Struct(">q")  # last_seen_ms
PRODUCER_BATCHES_KEPT = 5


class WriteOp(Protocol):
    @property
    def write_bytes(self) -> int:
        """About how much apply() writes: the writer commits small groups on the event loop itself."""
        ...

    def apply(self, store: Store, txn: Any, now_ms: int) -> Any: ...

    def publish(self, registry: TopicRegistry, result: Any) -> None: ...


def _require_topic(store: Store, txn: Any, name: str, topic_id: int | None = None) -> TopicRecord:
    value = txn.get(name.encode(), db=store.topics)
    if value is None:
        raise topic_not_found(name)
    topic = TopicRecord.decode(name.encode(), value)
    if topic_id is not None and topic.id != topic_id:
        raise topic_not_found(name)  # deleted and created again since the request was checked
    return topic


def _next_counter(store: Store, txn: Any, name: bytes) -> int:
    value = txn.get(name, db=store.meta)
    current = COUNTER.unpack(value)[0] if value else 1
    txn.put(name, COUNTER.pack(current + 1), db=store.meta)
    return current


@dataclass(frozen=True)
class PartitionAppend:
    partition: int
    records: bytes  # the encoded `records` entries
    count: int
    max_timestamp_ms: int  # over records with a timestamp; -1 if none has one
    has_unstamped: bool  # some record has timestamp 0 (= append time)
    crc: int


@dataclass
class ProduceOp:
    topic: TopicState
    appends: list[PartitionAppend]
    producer_id: int | None = None
    sequence: int | None = None

    @property
    def write_bytes(self) -> int:
        return sum(len(part.records) for part in self.appends)

    def apply(self, store: Store, txn: Any, now_ms: int) -> list[tuple[PartitionResult, int, int]]:
        _require_topic(store, txn, self.topic.name, self.topic.id)
        out: list[tuple[PartitionResult, int, int]] = []
        for part in self.appends:
            stats_key = PARTITION_KEY.pack(self.topic.id, part.partition)
            stats = PartitionStats.decode(txn.get(stats_key, db=store.stats))
            if self.producer_id is not None and self.sequence is not None:
                duplicate = self._check_sequence(store, txn, part, stats)
                if duplicate is not None:
                    out.append((duplicate, stats.next_offset, stats.size_bytes))
                    continue
            base = stats.next_offset
            if self.topic.log_append_time or part.has_unstamped:
                max_ts = max(part.max_timestamp_ms, now_ms)
            else:
                max_ts = part.max_timestamp_ms
            value = build_stored(part.records, part.count, base, now_ms, max_ts, part.crc)
            txn.put(LOG_KEY.pack(self.topic.id, part.partition, base), value, db=store.log)
            time_index.note_batch(txn, store.timeindex, self.topic.id, part.partition, max_ts, base)
            new_stats = PartitionStats(base + part.count, stats.log_start_offset, stats.size_bytes + len(value))
            txn.put(stats_key, new_stats.encode(), db=store.stats)
            if self.producer_id is not None and self.sequence is not None:
                self._remember(store, txn, part, base, now_ms)
            result = PartitionResult(
                partition=part.partition, base_offset=base, record_count=part.count, log_append_time_ms=now_ms
            )
            out.append((result, new_stats.next_offset, new_stats.size_bytes))
        return out

    def _producer_key(self, part: PartitionAppend) -> bytes:
        assert self.producer_id is not None
        return PRODUCER_KEY.pack(self.topic.id, part.partition, self.producer_id)

    def _check_sequence(
        self, store: Store, txn: Any, part: PartitionAppend, stats: PartitionStats
    ) -> PartitionResult | None:
        """The original result of a retried batch, None for the next batch in order, else an error."""
        value = txn.get(self._producer_key(part), db=store.producers)
        entries = (
            [
                PRODUCER_ENTRY.unpack_from(value, PRODUCER_HEAD.size + i * PRODUCER_ENTRY.size)
                for i in range((len(value) - PRODUCER_HEAD.size) // PRODUCER_ENTRY.size)
            ]
            if value is not None
            else []
        )
        for first_seq, count, base, append_ms in entries:
            if first_seq == self.sequence and count == part.count:
                return PartitionResult(
                    partition=part.partition, base_offset=base, record_count=count, log_append_time_ms=append_ms
                )
        # A producer the partition has no state for starts at 0: a later batch arriving first (its
        # predecessor refused) must not be written, or the producer, which resends both in order,
        # would see them out of order.
        expected = entries[-1][0] + entries[-1][1] if entries else 0
        if self.sequence != expected:
            raise BrokerError(
                Reason.OUT_OF_ORDER_SEQUENCE,
                f"producer {self.producer_id} sent sequence {self.sequence} to {self.topic.name}/"
                f"{part.partition}, expected {expected}",
                expected_sequence=expected,
            )
        return None

    def _remember(self, store: Store, txn: Any, part: PartitionAppend, base: int, now_ms: int) -> None:
        key = self._producer_key(part)
        old = txn.get(key, db=store.producers)
        kept = bytes(old[PRODUCER_HEAD.size :]) if old else b""
        kept += PRODUCER_ENTRY.pack(self.sequence, part.count, base, now_ms)
        kept = kept[-PRODUCER_BATCHES_KEPT * PRODUCER_ENTRY.size :]
        txn.put(key, PRODUCER_HEAD.pack(now_ms) + kept, db=store.producers)

    def publish(self, registry: TopicRegistry, result: list[tuple[PartitionResult, int, int]]) -> None:
        if self.topic.deleted:
            return
        for part_result, high_watermark, size_bytes in result:
            partition = self.topic.partitions[part_result.partition]
            if high_watermark > partition.high_watermark:
                partition.advance(high_watermark, size_bytes)


@dataclass
class InitProducerOp:
    write_bytes = 0

    def apply(self, store: Store, txn: Any, now_ms: int) -> int:
        return _next_counter(store, txn, b"next_producer_id")

    def publish(self, registry: TopicRegistry, result: int) -> None:
        pass


@dataclass
class CreateTopicOp:
    name: str
    partitions: int
    configs: dict[str, str]

    @property
    def write_bytes(self) -> int:
        return self.partitions * 64

    def apply(self, store: Store, txn: Any, now_ms: int) -> TopicRecord:
        if txn.get(self.name.encode(), db=store.topics) is not None:
            raise BrokerError(Reason.TOPIC_EXISTS, f"topic {self.name!r} already exists", topic=self.name)
        topic = TopicRecord(_next_counter(store, txn, b"next_topic_id"), self.name, self.partitions, self.configs)
        txn.put(self.name.encode(), topic.encode(), db=store.topics)
        empty = PartitionStats().encode()
        for p in range(self.partitions):
            txn.put(PARTITION_KEY.pack(topic.id, p), empty, db=store.stats)
        return topic

    def publish(self, registry: TopicRegistry, result: TopicRecord) -> None:
        registry.add(TopicState(result, [PartitionStats()] * result.partitions, registry.broker_defaults))


@dataclass
class DeleteTopicOp:
    name: str
    write_bytes = 0
    frees_space = True

    def apply(self, store: Store, txn: Any, now_ms: int) -> TopicRecord:
        topic = _require_topic(store, txn, self.name)
        txn.delete(self.name.encode(), db=store.topics)
        for p in range(topic.partitions):
            txn.delete(PARTITION_KEY.pack(topic.id, p), db=store.stats)
        txn.put(TOPIC_ID.pack(topic.id), b"", db=store.deleting)
        return topic

    def publish(self, registry: TopicRegistry, result: TopicRecord) -> None:
        registry.remove(self.name)


@dataclass
class AlterTopicConfigsOp:
    name: str
    configs: dict[str, str]
    write_bytes = 0
    frees_space = True  # lowering retention is how space is freed: it must commit on a full disk

    def apply(self, store: Store, txn: Any, now_ms: int) -> TopicRecord:
        topic = _require_topic(store, txn, self.name)
        altered = TopicRecord(topic.id, topic.name, topic.partitions, {**topic.configs, **self.configs})
        txn.put(self.name.encode(), altered.encode(), db=store.topics)
        return altered

    def publish(self, registry: TopicRegistry, result: TopicRecord) -> None:
        registry.get(self.name).set_configs(result.configs)


@dataclass
class PurgeTopicOp:
    """Deletes up to `limit` keys of a deleted topic; many small ops keep the writer responsive."""

    topic_id: int
    limit: int = 2000
    write_bytes = 1 << 30  # deleting thousands of keys: never on the event loop
    frees_space = True  # may use the map's and the disk's reserve when they are full

    def apply(self, store: Store, txn: Any, now_ms: int) -> bool:
        prefix = TOPIC_ID.pack(self.topic_id)
        removed = 0
        for db in (store.log, store.producers, store.timeindex):
            cursor = txn.cursor(db=db)
            if not cursor.set_range(prefix):
                continue
            while removed < self.limit and cursor.key()[:4] == prefix:
                removed += 1
                if not cursor.delete():
                    break
            if removed >= self.limit:
                return False
        # Group offsets are keyed by group first: find this topic's by scanning (the table is small).
        cursor = txn.cursor(db=store.offsets)
        found = cursor.first()
        while found:
            found = cursor.delete() if bytes(cursor.key()[-8:-4]) == prefix else cursor.next()
        txn.delete(prefix, db=store.deleting)
        return True

    def publish(self, registry: TopicRegistry, result: bool) -> None:
        pass


@dataclass
class AclsOp:
    """Adds (or removes) ACL rules kept in LMDB; the result is every stored rule and how many changed."""

    rules: list[str]  # canonical texts
    remove: bool = False
    write_bytes = 0

    def apply(self, store: Store, txn: Any, now_ms: int) -> tuple[int, list[str]]:
        changed = 0
        for rule in self.rules:
            key = rule.encode()
            if self.remove:
                changed += bool(txn.delete(key, db=store.acls))
            elif txn.get(key, db=store.acls) is None:
                txn.put(key, b"", db=store.acls)
                changed += 1
        stored = [bytes(key).decode() for key in txn.cursor(db=store.acls).iternext(values=False)]
        return changed, stored

    def publish(self, registry: TopicRegistry, result: tuple[int, list[str]]) -> None:
        pass  # the admin service hands the stored rules to the authorizer
