"""Kafka's Produce: each partition's RecordBatch checked (header, CRC-32C, counts, size) and stored as
its producer sent it, behind the Kafka tag (broker.batches); the broker assigns its offsets by patching
its base offset. Records are opened only for a compacted topic, whose records all need keys.

Each partition is its own write op, so one partition's refusal leaves the others in the request to go
on (as Kafka answers per partition); the writer still commits them together.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from tidelog.broker.errors import BrokerError
from tidelog.broker.kafka import codes, record_batch
from tidelog.broker.kafka.caller import Caller
from tidelog.broker.kafka.cluster_view import KafkaCluster
from tidelog.broker.kafka.topics import readable_topic
from tidelog.broker.log.ops import PartitionAppend, ProduceOp
from tidelog.broker.log.service import Log
from tidelog.broker.log.topics import TopicState
from tidelog.broker.metrics import Metrics
from tidelog.broker.security.access import Access
from tidelog.common.compression import CorruptBatch

ACKS = (0, 1, -1)


class Refusal(Exception):
    """One partition's answer that is not a write: its error code and what to tell the producer."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Submitted:
    topic: TopicState
    future: asyncio.Future[Any]
    size: int
    epoch: int  # the partition's leader epoch when it was written


class KafkaProduce:
    def __init__(self, log_: Log, access: Access, metrics: Metrics, cluster: KafkaCluster) -> None:
        self._log = log_
        self._access = access
        self._metrics = metrics
        self._cluster = cluster

    async def __call__(self, request: dict[str, Any], version: int, caller: Caller) -> dict[str, Any] | None:
        """The answer; None for acks=0, which Kafka's protocol never answers."""
        acks = request["acks"]
        refusal = None
        if acks not in ACKS:
            refusal = Refusal(codes.INVALID_REQUIRED_ACKS, f"acks={acks}: use 0, 1 or -1 (all)")
        elif request["transactional_id"] is not None:
            refusal = Refusal(codes.INVALID_RECORD, "transactions are not supported by this broker yet")
        answers: list[tuple[str, int, Submitted | Refusal]] = []
        for topic_data in request["topic_data"]:
            name = topic_data["name"]
            topic = readable_topic(self._log.registry, self._access, name, "produce")
            for partition_data in topic_data["partition_data"]:
                index = partition_data["index"]
                if refusal is not None:
                    answers.append((name, index, refusal))
                elif isinstance(topic, int):
                    answers.append((name, index, Refusal(topic, f"topic {name!r} is not one you may write to")))
                else:
                    answers.append((name, index, self._submit(topic, index, partition_data["records"], acks)))
        responses: dict[str, list[dict[str, Any]]] = {}
        for name, index, pending in answers:
            responses.setdefault(name, []).append(await self._answer(name, index, pending, acks))
        written = sum(p.size for _, _, p in answers if isinstance(p, Submitted))
        throttle_ms = round(self._access.quota_delay("produce", written) * 1000)
        if acks == 0:  # no answer to carry the throttle: the connection is muted all the same
            caller.session.mute_s = throttle_ms / 1000
            return None
        return {
            "responses": [{"name": name, "partition_responses": parts} for name, parts in responses.items()],
            "throttle_time_ms": throttle_ms,
        }

    def _submit(self, topic: TopicState, index: int, records: bytes | None, acks: int) -> Submitted | Refusal:
        try:
            append, head = _append(topic, index, records)
            self._cluster.refuse_unless_leader(topic, index, acks_all=acks == -1)
        except Refusal as refusal:
            return refusal
        except BrokerError as err:
            return Refusal(codes.of(err), err.message)
        if head.producer_id >= 0:  # idempotent: de-duplicated by (producer id, epoch, sequence)
            op = ProduceOp(topic, [append], head.producer_id, head.base_sequence, head.producer_epoch)
        else:
            op = ProduceOp(topic, [append])
        epoch = self._cluster.leader_epoch(topic, index)
        return Submitted(topic, self._log.submit(op), len(append.records), epoch)

    async def _answer(self, name: str, index: int, pending: Submitted | Refusal, acks: int) -> dict[str, Any]:
        answer: dict[str, Any] = {"index": index, "error_code": codes.NONE, "base_offset": -1, "record_errors": []}
        if isinstance(pending, Refusal):
            return {**answer, "error_code": pending.code, "error_message": str(pending)}
        try:
            results = await pending.future
        except BrokerError as err:
            return {**answer, "error_code": codes.of(err), "error_message": err.message}
        result, _, _ = results[0]
        topic = pending.topic
        if acks == -1:
            end = result.base_offset + result.record_count
            code = await self._cluster.await_in_sync(topic, index, end, pending.epoch)
            if code != codes.NONE:
                return {**answer, "error_code": code, "error_message": "the in-sync replicas did not confirm it"}
        self._metrics.produced(name, result.record_count, pending.size)
        answer["base_offset"] = result.base_offset
        answer["log_append_time_ms"] = result.log_append_time_ms if topic.log_append_time else -1
        answer["log_start_offset"] = topic.partitions[index].log_start_offset
        return answer


def _append(topic: TopicState, index: int, records: bytes | None) -> tuple[PartitionAppend, record_batch.BatchHeader]:
    """A partition's batch, checked, ready for the log (or the Refusal that answers for it)."""
    if not 0 <= index < len(topic.partitions):
        raise Refusal(codes.UNKNOWN_TOPIC_OR_PARTITION, f"{topic.name!r} has partitions 0-{len(topic.partitions) - 1}")
    if not records:
        raise Refusal(codes.INVALID_RECORD, "a partition's produce data holds no batch")
    if len(records) > topic.max_message_bytes:
        raise Refusal(
            codes.MESSAGE_TOO_LARGE,
            f"a batch of {len(records)} bytes, above {topic.name!r}'s max.message.bytes ({topic.max_message_bytes})",
        )
    try:
        batches = record_batch.split(records)
        if len(batches) != 1:
            raise record_batch.InvalidBatch(f"{len(batches)} batches for one partition: send exactly one")
        batch = batches[0]
        head = record_batch.check(batch)
        if head.producer_id >= 0 and (head.producer_epoch < 0 or head.base_sequence < 0):
            raise Refusal(codes.INVALID_RECORD, "an idempotent batch needs a producer epoch and a sequence >= 0")
        if topic.compacted and not all(r.key for r in record_batch.records_of(batch)):
            raise Refusal(codes.INVALID_RECORD, f"topic {topic.name!r} is compacted: every record needs a key")
    except record_batch.InvalidBatch as err:
        raise Refusal(codes.CORRUPT_MESSAGE if err.corrupt else codes.INVALID_RECORD, str(err)) from None
    except CorruptBatch as err:
        raise Refusal(codes.CORRUPT_MESSAGE, str(err)) from None
    stamped = head.base_timestamp >= 0 and not head.log_append_time
    append = PartitionAppend(
        partition=index,
        records=bytes(batch),
        count=head.count,
        max_timestamp_ms=head.max_timestamp if stamped else -1,
        has_unstamped=not stamped,
        crc=head.crc,
        kafka=True,
    )
    return append, head
