"""The log's write operations (storage.writer.WriteOp): produce, topics, producer ids, ACL rules.

Each `apply` checks everything before it writes, through the store's LogWrite (no key layout here);
`publish` runs on the event loop once the group commit is durable and updates the in-memory topics.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tidelog.broker.batches import VALUE_HEADER, build_stored, build_stored_kafka, stored_head
from tidelog.broker.errors import BrokerError, topic_not_found
from tidelog.broker.kafka import record_batch
from tidelog.broker.log.topics import TopicRegistry, TopicState
from tidelog.broker.storage.interface import LogWrite, PartitionStats, ProducerBatch, StoredBatch, TopicRecord
from tidelog.common.reasons import Reason
from tidelog.v1.broker_pb2 import PartitionResult


def _require_topic(txn: LogWrite, name: str, topic_id: int | None = None) -> TopicRecord:
    topic = txn.topic(name)
    if topic is None or (topic_id is not None and topic.id != topic_id):
        raise topic_not_found(name)  # (or deleted and created again since the request was checked)
    return topic


@dataclass(frozen=True)
class PartitionAppend:
    partition: int
    records: bytes  # the encoded `records` entries
    count: int
    max_timestamp_ms: int  # over records with a timestamp; -1 if none has one
    has_unstamped: bool  # some record has timestamp 0 (= append time)
    crc: int
    kafka: bool = False  # `records` is a Kafka RecordBatch v2, stored as sent (broker.kafka.record_batch)


KAFKA_SEQUENCE_WRAP = 1 << 31


@dataclass
class ProduceOp:
    topic: TopicState
    appends: list[PartitionAppend]
    producer_id: int | None = None
    sequence: int | None = None
    epoch: int | None = None  # a Kafka producer's: a newer one starts its sequences again, an older is fenced

    @property
    def write_bytes(self) -> int:
        return sum(len(part.records) for part in self.appends)

    def _history(self, txn: LogWrite, partition: int, producer_id: int) -> list[ProducerBatch]:
        """The producer's last batches here, in its epoch (none yet when the epoch is new)."""
        history = txn.producer_batches(self.topic.id, partition, producer_id)
        if self.epoch is None or not history:
            return history
        current = history[-1].epoch
        if self.epoch < current:
            raise BrokerError(
                Reason.PRODUCER_FENCED,
                f"producer {producer_id} wrote to {self.topic.name}/{partition} in epoch {current}; "
                f"epoch {self.epoch} is fenced",
                epoch=current,
            )
        return history if self.epoch == current else []

    def apply(self, txn: LogWrite, now_ms: int) -> list[tuple[PartitionResult, int, int]]:
        topic_id = self.topic.id
        _require_topic(txn, self.topic.name, topic_id)
        out: list[tuple[PartitionResult, int, int]] = []
        for part in self.appends:
            stats = txn.stats(topic_id, part.partition) or PartitionStats()
            history: list[ProducerBatch] = []
            if self.producer_id is not None:
                history = self._history(txn, part.partition, self.producer_id)
                duplicate = self._check_sequence(history, part)
                if duplicate is not None:
                    out.append((duplicate, stats.next_offset, stats.size_bytes))
                    continue
            base = stats.next_offset
            if self.topic.log_append_time or part.has_unstamped:
                max_ts = max(part.max_timestamp_ms, now_ms)
            else:
                max_ts = part.max_timestamp_ms
            producer = (
                (self.producer_id, self.sequence)
                if self.producer_id is not None and self.sequence is not None
                else None
            )
            if part.kafka:
                batch = record_batch.patched(part.records, base, 0)
                if self.topic.log_append_time:
                    batch = record_batch.with_log_append_time(batch, now_ms)
                value = build_stored_kafka(batch, part.count, now_ms, max_ts)
            else:
                value = build_stored(part.records, part.count, base, now_ms, max_ts, part.crc, producer)
            new_stats = PartitionStats(base + part.count, stats.log_start_offset, stats.size_bytes + len(value))
            txn.append(topic_id, part.partition, StoredBatch(base, part.count, max_ts, now_ms, value), new_stats)
            if self.producer_id is not None and self.sequence is not None:
                history.append(ProducerBatch(self.sequence, part.count, base, now_ms, self.epoch or 0))
                txn.put_producer_batches(topic_id, part.partition, self.producer_id, history, now_ms)
            result = PartitionResult(
                partition=part.partition, base_offset=base, record_count=part.count, log_append_time_ms=now_ms
            )
            out.append((result, new_stats.next_offset, new_stats.size_bytes))
        return out

    def _check_sequence(self, history: list[ProducerBatch], part: PartitionAppend) -> PartitionResult | None:
        """The original result of a retried batch, None for the next batch in order, else an error."""
        for batch in history:
            if batch.first_sequence == self.sequence and batch.count == part.count:
                return PartitionResult(
                    partition=part.partition,
                    base_offset=batch.base_offset,
                    record_count=batch.count,
                    log_append_time_ms=batch.append_time_ms,
                )
        # A producer the partition has no state for starts at 0: a later batch arriving first (its
        # predecessor refused) must not be written, or the producer, which resends both in order,
        # would see them out of order.
        expected = history[-1].first_sequence + history[-1].count if history else 0
        if self.epoch is not None:  # Kafka's sequences are int32s that wrap to 0
            expected %= KAFKA_SEQUENCE_WRAP
            if not history and self.sequence != 0:
                raise BrokerError(
                    Reason.UNKNOWN_PRODUCER,
                    f"producer {self.producer_id} has no state in {self.topic.name}/{part.partition} "
                    f"(epoch {self.epoch}) and sent sequence {self.sequence}: a new epoch starts at 0",
                )
        if self.sequence != expected:
            raise BrokerError(
                Reason.OUT_OF_ORDER_SEQUENCE,
                f"producer {self.producer_id} sent sequence {self.sequence} to {self.topic.name}/"
                f"{part.partition}, expected {expected}",
                expected_sequence=expected,
            )
        return None

    def publish(self, result: list[tuple[PartitionResult, int, int]]) -> None:
        if self.topic.deleted:
            return
        for part_result, high_watermark, size_bytes in result:
            partition = self.topic.partitions[part_result.partition]
            if high_watermark > partition.log_end:
                partition.advance(high_watermark, size_bytes)


@dataclass
class InitProducerOp:
    write_bytes = 0

    def apply(self, txn: LogWrite, now_ms: int) -> int:
        return txn.next_id("producer")

    def publish(self, result: int) -> None:
        pass


@dataclass
class CreateTopicOp:
    registry: TopicRegistry
    name: str
    partitions: int
    configs: dict[str, str]
    topic_id: int | None = None  # a cluster's id for the topic (else the store's own counter)
    if_absent: bool = False  # the topic existing with that id is fine (a cluster topic mirrored here)

    @property
    def write_bytes(self) -> int:
        return self.partitions * 64

    def apply(self, txn: LogWrite, now_ms: int) -> TopicRecord:
        existing = txn.topic(self.name)
        if existing is not None:
            if self.if_absent and existing.id == self.topic_id:
                return existing
            raise BrokerError(Reason.TOPIC_EXISTS, f"topic {self.name!r} already exists", topic=self.name)
        topic_id = self.topic_id if self.topic_id is not None else txn.next_id("topic")
        topic = TopicRecord(topic_id, self.name, self.partitions, self.configs)
        txn.create_topic(topic)
        return topic

    def publish(self, result: TopicRecord) -> None:
        registry = self.registry
        if self.name not in registry:
            registry.add(TopicState(result, [PartitionStats()] * result.partitions, registry.broker_defaults))


@dataclass
class DeleteTopicOp:
    registry: TopicRegistry
    name: str
    write_bytes = 0
    frees_space = True

    def apply(self, txn: LogWrite, now_ms: int) -> TopicRecord:
        topic = _require_topic(txn, self.name)
        txn.delete_topic(topic)
        return topic

    def publish(self, result: TopicRecord) -> None:
        self.registry.remove(self.name)


@dataclass
class AlterTopicConfigsOp:
    registry: TopicRegistry
    name: str
    configs: dict[str, str]
    write_bytes = 0
    frees_space = True  # lowering retention is how space is freed: it must commit on a full disk

    def apply(self, txn: LogWrite, now_ms: int) -> TopicRecord:
        topic = _require_topic(txn, self.name)
        altered = TopicRecord(topic.id, topic.name, topic.partitions, {**topic.configs, **self.configs})
        txn.put_topic(altered)
        return altered

    def publish(self, result: TopicRecord) -> None:
        self.registry.get(self.name).set_configs(result.configs)


@dataclass
class PurgeTopicOp:
    """Deletes up to `limit` entries of a deleted topic; many small ops keep the writer responsive."""

    topic_id: int
    limit: int = 2000
    write_bytes = 1 << 30  # deleting thousands of keys: never on the event loop
    frees_space = True  # may use the map's and the disk's reserve when they are full

    def apply(self, txn: LogWrite, now_ms: int) -> bool:
        return txn.purge_topic(self.topic_id, self.limit)

    def publish(self, result: bool) -> None:
        pass


@dataclass
class AclsOp:
    """Adds (or removes) ACL rules kept in the store; the result is how many changed and every stored rule."""

    rules: list[str]  # canonical texts
    remove: bool = False
    write_bytes = 0

    def apply(self, txn: LogWrite, now_ms: int) -> tuple[int, list[str]]:
        change = txn.remove_acl if self.remove else txn.add_acl
        changed = sum(change(rule) for rule in self.rules)
        return changed, txn.acls()

    def publish(self, result: tuple[int, list[str]]) -> None:
        pass


@dataclass
class ReplicateOp:
    """A follower appends the leader's stored batches verbatim, at their own base offsets; a batch it
    already has is skipped, a gap refused (the follower fetches again from its log end). An idempotent
    producer's batch adds to that producer's state here too, as on the leader."""

    topic: TopicState
    partition: int
    values: list[bytes]  # stored values (broker.batches)
    epochs: list[tuple[int, int]] = field(default_factory=list)  # the leader's, for what is new here

    @property
    def write_bytes(self) -> int:
        return sum(len(v) for v in self.values)

    def apply(self, txn: LogWrite, now_ms: int) -> PartitionStats:
        stats = txn.stats(self.topic.id, self.partition)
        if stats is None:
            raise topic_not_found(self.topic.name)
        for value in self.values:
            count, max_ts, append_ms = VALUE_HEADER.unpack_from(value)
            base, producer_id, base_sequence, epoch = stored_head(value)
            if base + count <= stats.next_offset:
                continue
            if base != stats.next_offset:
                raise BrokerError(
                    Reason.OFFSET_OUT_OF_RANGE,
                    f"replica of {self.topic.name}/{self.partition} ends at {stats.next_offset}, got a batch at {base}",
                )
            stats = PartitionStats(base + count, stats.log_start_offset, stats.size_bytes + len(value))
            txn.append(self.topic.id, self.partition, StoredBatch(base, count, max_ts, append_ms, value), stats)
            if producer_id:
                history = txn.producer_batches(self.topic.id, self.partition, producer_id)
                if history and history[-1].epoch != epoch:
                    history = []
                history.append(ProducerBatch(base_sequence, count, base, append_ms, epoch))
                txn.put_producer_batches(self.topic.id, self.partition, producer_id, history, now_ms)
        for epoch, start in self.epochs:
            if start < stats.next_offset:  # an epoch is noted once this replica holds some of its records
                txn.put_leader_epoch(self.topic.id, self.partition, epoch, start)
        return stats

    def publish(self, result: PartitionStats) -> None:
        if not self.topic.deleted:
            partition = self.topic.partitions[self.partition]
            if partition.leader_epochs is not None:
                for epoch, start in self.epochs:
                    if start < result.next_offset:
                        partition.leader_epochs.assign(epoch, start)
            if result.next_offset > partition.log_end:
                partition.advance(result.next_offset, result.size_bytes)


@dataclass
class TruncateOp:
    """A follower cuts its log back to `offset` (the leader's log end: what lies past it, only this
    broker has)."""

    topic: TopicState
    partition: int
    offset: int
    write_bytes = 1 << 30  # deletes: on the writer thread

    def apply(self, txn: LogWrite, now_ms: int) -> PartitionStats:
        stats = txn.truncate(self.topic.id, self.partition, self.offset)
        if stats is None:
            raise topic_not_found(self.topic.name)
        return stats

    def publish(self, result: PartitionStats) -> None:
        if not self.topic.deleted:
            partition = self.topic.partitions[self.partition]
            partition.log_end = result.next_offset
            partition.size_bytes = result.size_bytes
            partition.high_watermark = min(partition.high_watermark, result.next_offset)
            if partition.leader_epochs is not None:
                partition.leader_epochs.truncate_from(self.offset)
            partition.wake()


@dataclass
class AssignEpochOp:
    """A new leader notes its epoch at its log end, before it appends anything in it (log.epochs)."""

    topic: TopicState
    partition: int
    epoch: int
    write_bytes = 0

    def apply(self, txn: LogWrite, now_ms: int) -> int:
        stats = txn.stats(self.topic.id, self.partition)
        if stats is None:
            raise topic_not_found(self.topic.name)
        txn.put_leader_epoch(self.topic.id, self.partition, self.epoch, stats.next_offset)
        return stats.next_offset

    def publish(self, result: int) -> None:
        partition = self.topic.partitions[self.partition]
        if not self.topic.deleted and partition.leader_epochs is not None:
            partition.leader_epochs.assign(self.epoch, result)


@dataclass
class CheckpointHighWatermarksOp:
    """Replicated partitions' high watermarks, noted so that a restart shows what was readable at once
    instead of hiding everything until the followers confirm it again."""

    marks: list[tuple[TopicState, int, int]]  # (topic, partition, high watermark)
    write_bytes = 0

    def apply(self, txn: LogWrite, now_ms: int) -> None:
        for topic, partition, offset in self.marks:
            if txn.stats(topic.id, partition) is not None:  # deleted since: nothing to note
                txn.put_high_watermark(topic.id, partition, offset)

    def publish(self, result: None) -> None:
        pass
