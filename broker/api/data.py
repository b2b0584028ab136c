"""The Broker service: the data plane (produce, fetch, subscribe, offsets, metadata)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc

from tidelog.broker import config
from tidelog.broker.api.rpc import Context, Rpc, as_broker_error, parse
from tidelog.broker.api.tail import PartitionsTail
from tidelog.broker.batches import frame_batches
from tidelog.broker.cluster.control import etcd_unavailable
from tidelog.broker.cluster.membership import Membership, ReplicaProgress
from tidelog.broker.cluster.producer_ids import ProducerIds
from tidelog.broker.cluster.routing import require_epoch_noted, require_in_sync, require_leader
from tidelog.broker.config import Settings
from tidelog.broker.errors import BrokerError, invalid_request, topic_not_found
from tidelog.broker.log.ops import ProduceOp
from tidelog.broker.log.produce import check_partition, prepare_produce
from tidelog.broker.log.service import Log
from tidelog.broker.log.topics import PartitionState, TopicState
from tidelog.broker.metrics import Metrics
from tidelog.broker.names import check_limit
from tidelog.broker.security.access import Access
from tidelog.common.reasons import Reason
from tidelog.v1 import broker_pb2, records_pb2

# Requests of one ProduceStream accepted ahead of their answers.
PRODUCE_STREAM_PIPELINE = 64


def fetch_response(batches: list[bytes], partition: PartitionState, next_offset: int) -> bytes:
    trailer = broker_pb2.FetchResponse(
        high_watermark=partition.high_watermark,
        log_start_offset=partition.log_start_offset,
        next_offset=next_offset,
    ).SerializeToString()
    return frame_batches(batches) + trailer


def produce_response(
    op: ProduceOp, results: list[tuple[broker_pb2.PartitionResult, int, int]], request_id: int
) -> broker_pb2.ProduceResponse:
    return broker_pb2.ProduceResponse(topic=op.topic.name, results=[r for r, _, _ in results], request_id=request_id)


def offset_out_of_range(topic: TopicState, partition: PartitionState, offset: int) -> BrokerError:
    return BrokerError(
        Reason.OFFSET_OUT_OF_RANGE,
        f"offset {offset} is outside {topic.name}/{partition.partition}: valid offsets are "
        f"{partition.log_start_offset} (log start) to {partition.high_watermark} (high watermark)",
        log_start_offset=partition.log_start_offset,
        high_watermark=partition.high_watermark,
    )


def position_offset(partition: PartitionState, position: int) -> int:
    """The offset of a records_pb2.Position: the log start, or the high watermark (unspecified: latest)."""
    if position == records_pb2.POSITION_EARLIEST:
        return partition.log_start_offset
    if position in (records_pb2.POSITION_LATEST, records_pb2.POSITION_UNSPECIFIED):
        return partition.high_watermark
    raise invalid_request(f"unknown position {position}: use POSITION_EARLIEST or POSITION_LATEST")


@dataclass(frozen=True)
class Produce:
    """A produce request checked and taken apart: the log op, its acks, and each partition's leader
    epoch when it was accepted."""

    op: ProduceOp
    acks: int
    epochs: dict[int, int]


class BrokerService:
    def __init__(
        self,
        settings: Settings,
        log_: Log,
        membership: Membership,
        followers: ReplicaProgress,
        producer_ids: ProducerIds,
        metrics: Metrics,
        rpc: Rpc,
        access: Access,
    ) -> None:
        self._rpc = rpc
        self._access = access
        self._metrics = metrics
        self._settings = settings
        self._log = log_
        self._registry = log_.registry
        self._membership = membership
        self._followers = followers
        self._producer_ids = producer_ids
        self._tail = PartitionsTail(
            log_,
            access,
            metrics,
            locate=self._partition,
            resolve_start=self._resolve_start,
            out_of_range=offset_out_of_range,
            heartbeat_s=settings.subscribe_heartbeat_ms / 1000,
        )

    def handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        return {
            "Produce": self._rpc.unary("Produce", broker_pb2.ProduceRequest, self.produce),
            "InitProducer": self._rpc.unary("InitProducer", broker_pb2.InitProducerRequest, self.init_producer),
            "ProduceStream": self._rpc.bidi_stream("ProduceStream", self.produce_stream),
            "Fetch": self._rpc.unary("Fetch", broker_pb2.FetchRequest, self.fetch),
            "Subscribe": self._rpc.server_stream("Subscribe", broker_pb2.SubscribeRequest, self.subscribe),
            "SubscribePartitions": self._rpc.server_stream(
                "SubscribePartitions", broker_pb2.SubscribePartitionsRequest, self.subscribe_partitions
            ),
            "ListOffsets": self._rpc.unary("ListOffsets", broker_pb2.ListOffsetsRequest, self.list_offsets),
            "GetMetadata": self._rpc.unary("GetMetadata", broker_pb2.GetMetadataRequest, self.get_metadata),
        }

    def _partition(self, topic_name: str, partition: int) -> tuple[TopicState, PartitionState]:
        topic = self._registry.get(topic_name)
        check_partition(topic, partition)
        require_leader(self._membership, topic.name, topic.id, partition)
        return topic, topic.partitions[partition]

    def _prepare_produce(self, request: broker_pb2.ProduceRequest, size: int, acks: int) -> Produce:
        """`acks` is read by the caller, before the request is taken apart for the log."""
        op = prepare_produce(request, self._registry, size)
        epochs = {}
        for append in op.appends:  # every partition written must be led here
            require_leader(self._membership, op.topic.name, op.topic.id, append.partition)
            require_epoch_noted(self._membership, op.topic, append.partition)
            if acks != broker_pb2.ACKS_LEADER:
                require_in_sync(self._membership, op.topic, append.partition)
            state = self._membership.partition_state(op.topic.id, append.partition)
            epochs[append.partition] = state.leader_epoch if state is not None else 0
        return Produce(op, acks, epochs)

    # -- produce -------------------------------------------------------------------

    async def produce(self, request: broker_pb2.ProduceRequest, context: Context) -> broker_pb2.ProduceResponse:
        self._access.require("produce", "topic", request.topic)
        acks = request.acks  # read before the request is taken apart for the log
        produce = self._prepare_produce(request, request.ByteSize(), acks)
        op = produce.op
        results = await self._log.submit(op)
        await self._await_replicas(produce, results)
        self._count_produced(op, results)
        held = await self._access.throttle("produce", op.write_bytes)
        if held:
            context.set_trailing_metadata((("tidelog-throttle-ms", str(round(held * 1000))),))
        return produce_response(op, results, 0)

    async def _await_replicas(
        self, produce: Produce, results: list[tuple[broker_pb2.PartitionResult, int, int]]
    ) -> None:
        """acks=all (the default): answer once every in-sync replica has the records, i.e. the high
        watermark passed them; a partition of one copy needs no wait. Running out of time, or the
        leadership moving meanwhile, leaves the outcome unknown: the records may be stored, and an
        idempotent retry settles it. Each result gets its durability receipt."""
        op = produce.op
        deadline: float | None = None
        for result, _, _ in results:
            partition = op.topic.partitions[result.partition]
            end = result.base_offset + result.record_count
            epoch = produce.epochs[result.partition]
            if produce.acks != broker_pb2.ACKS_LEADER and partition.on_log_end is not None:
                while partition.high_watermark < end and not op.topic.deleted:
                    self._require_same_leadership(op.topic, result.partition, epoch)
                    if deadline is None:
                        deadline = time.monotonic() + self._settings.replication_timeout_ms / 1000
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise BrokerError(
                            Reason.REPLICATION_TIMEOUT,
                            f"{op.topic.name}/{result.partition}: the in-sync replicas did not confirm offsets up "
                            f"to {end} within {self._settings.replication_timeout_ms} ms; the records may be "
                            "stored: retry with the same producer id and sequence",
                            high_watermark=partition.high_watermark,
                        )
                    await partition.wait_for_change(remaining)
                self._require_same_leadership(op.topic, result.partition, epoch)
                require_in_sync(self._membership, op.topic, result.partition, after_append=True)
            result.durable_on[:] = [
                self._membership.broker_id,
                *self._followers.holding(op.topic.id, result.partition, end),
            ]
            result.leader_epoch = epoch
            result.high_watermark = partition.high_watermark

    def _require_same_leadership(self, topic: TopicState, partition: int, epoch: int) -> None:
        """Records waiting for their replicas are this leadership's only while it lasts: a new leader may
        have cut them (and the high watermark then passes other records at their offsets)."""
        state = self._membership.partition_state(topic.id, partition)
        if state is None or (state.leader == self._membership.broker_id and state.leader_epoch == epoch):
            return
        raise BrokerError(
            Reason.NOT_LEADER,
            f"the leadership of {topic.name}/{partition} moved (epoch {epoch} to {state.leader_epoch}) before the "
            "in-sync replicas confirmed the records: they may or may not be kept; retry with the same producer id "
            "and sequence",
            leader_id=state.leader,
            leader_address=self._membership.brokers().get(state.leader, ""),
            leader_epoch=state.leader_epoch,
        )

    def _count_produced(self, op: ProduceOp, results: list[tuple[broker_pb2.PartitionResult, int, int]]) -> None:
        records = sum(result.record_count for result, _, _ in results)
        self._metrics.produced(op.topic.name, records, op.write_bytes)

    async def init_producer(
        self, request: broker_pb2.InitProducerRequest, context: Context
    ) -> broker_pb2.InitProducerResponse:
        self._access.require_produce_somewhere()  # a producer id is a durable write: Kafka's IdempotentWrite rule
        with etcd_unavailable("no producer id"):
            producer_id = await self._producer_ids.next_id()
        return broker_pb2.InitProducerResponse(producer_id=producer_id)

    async def produce_stream(
        self, requests: AsyncIterator[bytes], context: Context
    ) -> AsyncIterator[broker_pb2.ProduceResponse]:
        """Accept requests ahead of their answers (bounded), answer strictly in order."""
        pipeline: asyncio.Queue[Any] = asyncio.Queue(PRODUCE_STREAM_PIPELINE)
        end = object()

        async def accept() -> None:
            try:
                async for raw in requests:
                    request = parse(broker_pb2.ProduceRequest, raw)
                    request_id, topic = request.request_id, request.topic
                    try:
                        self._access.require("produce", "topic", topic)
                        acks = request.acks
                        produce = self._prepare_produce(request, len(raw), acks)
                        submitted = self._log.submit(produce.op)
                        await pipeline.put((request_id, produce, submitted, time.perf_counter()))
                    except Exception as exc:
                        await pipeline.put((request_id, topic, as_broker_error(exc, "ProduceStream"), 0.0))
                await pipeline.put(end)
            except BrokerError as err:  # undecodable bytes: a protocol violation ends the stream
                await pipeline.put(err)

        acceptor = asyncio.create_task(accept())
        try:
            while (item := await pipeline.get()) is not end:
                if isinstance(item, BrokerError):
                    raise item
                request_id, subject, outcome, accepted = item
                if isinstance(outcome, BrokerError):
                    yield _produce_error(request_id, subject, outcome)
                    continue
                op = subject.op
                try:
                    results = await outcome
                    await self._await_replicas(subject, results)
                except BrokerError as err:
                    yield _produce_error(request_id, op.topic.name, err)
                    continue
                self._count_produced(op, results)
                self._metrics.observe("ProduceStream", time.perf_counter() - accepted)
                await self._access.throttle("produce", op.write_bytes)
                yield produce_response(op, results, request_id)
        finally:
            acceptor.cancel()

    # -- read ----------------------------------------------------------------------

    async def fetch(self, request: broker_pb2.FetchRequest, context: Context) -> bytes:
        self._access.require("consume", "topic", request.topic)
        topic, partition = self._partition(request.topic, request.partition)
        max_records = check_limit(
            "max_records", request.max_records, config.DEFAULT_FETCH_MAX_RECORDS, config.MAX_FETCH_MAX_RECORDS
        )
        max_bytes = check_limit(
            "max_bytes", request.max_bytes, config.DEFAULT_FETCH_MAX_BYTES, config.MAX_FETCH_MAX_BYTES
        )
        max_wait_ms = check_limit("max_wait_ms", request.max_wait_ms, 0, config.MAX_FETCH_WAIT_MS)
        offset = request.offset
        if not partition.log_start_offset <= offset <= partition.high_watermark:
            raise offset_out_of_range(topic, partition, offset)
        if offset == partition.high_watermark and max_wait_ms:
            deadline = time.monotonic() + max_wait_ms / 1000
            while partition.high_watermark == offset and not topic.deleted:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                await partition.wait_for_change(remaining)
            if topic.deleted:
                raise topic_not_found(topic.name)
        result = self._log.read(topic, partition, offset, max_records, max_bytes)
        size = sum(len(b) for b in result.batches)
        self._metrics.fetched(topic.name, result.next_offset - offset, size)
        held = await self._access.throttle("consume", size)
        if held:
            context.set_trailing_metadata((("tidelog-throttle-ms", str(round(held * 1000))),))
        return fetch_response(result.batches, partition, result.next_offset)

    async def subscribe(self, request: broker_pb2.SubscribeRequest, context: Context) -> AsyncIterator[bytes]:
        self._access.require("consume", "topic", request.topic)
        topic, partition = self._partition(request.topic, request.partition)
        max_bytes = check_limit(
            "max_bytes", request.max_bytes, config.DEFAULT_FETCH_MAX_BYTES, config.MAX_FETCH_MAX_BYTES
        )
        next_offset = self._resolve_start(topic, partition, request)
        yield fetch_response([], partition, next_offset)
        heartbeat_s = self._settings.subscribe_heartbeat_ms / 1000
        while True:
            if topic.deleted:
                raise topic_not_found(topic.name)
            if next_offset < partition.log_start_offset:
                raise offset_out_of_range(topic, partition, next_offset)
            if next_offset < partition.high_watermark:
                result = self._log.read(topic, partition, next_offset, config.MAX_FETCH_MAX_RECORDS, max_bytes)
                # No batch below the high watermark from here means nothing is left to skip to.
                if result.batches:
                    size = sum(len(b) for b in result.batches)
                    self._metrics.fetched(topic.name, result.next_offset - next_offset, size)
                    await self._access.throttle("consume", size)
                next_offset = result.next_offset if result.batches else partition.high_watermark
                yield fetch_response(result.batches, partition, next_offset)
                continue
            if not await partition.wait_for_change(heartbeat_s) and next_offset >= partition.high_watermark:
                yield fetch_response([], partition, next_offset)

    async def subscribe_partitions(
        self, request: broker_pb2.SubscribePartitionsRequest, context: Context
    ) -> AsyncIterator[bytes]:
        async for response in self._tail.stream(request):
            yield response

    def _resolve_start(
        self,
        topic: TopicState,
        partition: PartitionState,
        request: broker_pb2.SubscribeRequest | broker_pb2.PartitionStart,
    ) -> int:
        start = request.WhichOneof("start")
        if start == "offset":
            if not partition.log_start_offset <= request.offset <= partition.high_watermark:
                raise offset_out_of_range(topic, partition, request.offset)
            return request.offset
        if start == "position":
            return position_offset(partition, request.position)
        if start == "timestamp_ms":
            return self._log.offset_for_time(topic, partition, request.timestamp_ms)[0]
        return partition.high_watermark

    async def list_offsets(
        self, request: broker_pb2.ListOffsetsRequest, context: Context
    ) -> broker_pb2.ListOffsetsResponse:
        self._access.require("describe", "topic", request.topic)
        topic, partition = self._partition(request.topic, request.partition)
        if request.WhichOneof("target") == "timestamp_ms":
            offset, timestamp_ms = self._log.offset_for_time(topic, partition, request.timestamp_ms)
            return broker_pb2.ListOffsetsResponse(offset=offset, timestamp_ms=timestamp_ms)
        return broker_pb2.ListOffsetsResponse(offset=position_offset(partition, request.position))

    def _partition_metadata(self, topic: TopicState, partition: int, own_leader: int) -> broker_pb2.PartitionMetadata:
        state = self._membership.partition_state(topic.id, partition)
        if state is None:
            return broker_pb2.PartitionMetadata(partition=partition, leader=own_leader)
        return broker_pb2.PartitionMetadata(
            partition=partition,
            leader=state.leader,
            leader_epoch=state.leader_epoch,
            replicas=state.replicas,
            isr=state.isr,
        )

    async def get_metadata(
        self, request: broker_pb2.GetMetadataRequest, context: Context
    ) -> broker_pb2.GetMetadataResponse:
        if request.topics:
            for name in request.topics:
                self._access.require("describe", "topic", name)
        else:
            self._access.require("describe", "cluster")
        topics = [self._registry.get(name) for name in request.topics] if request.topics else self._registry.sorted()
        membership = self._membership
        leader = membership.broker_id  # a topic of this broker's own
        controller = membership.controller_id()
        return broker_pb2.GetMetadataResponse(
            brokers=[broker_pb2.BrokerInfo(id=i, address=a) for i, a in sorted(membership.brokers().items())],
            topics=[
                broker_pb2.TopicMetadata(
                    name=t.name,
                    partitions=[self._partition_metadata(t, p.partition, leader) for p in t.partitions],
                )
                for t in topics
            ],
            controller_id=controller if controller is not None else -1,
        )


def _produce_error(request_id: int, topic: str, err: BrokerError) -> broker_pb2.ProduceResponse:
    return broker_pb2.ProduceResponse(
        topic=topic,
        request_id=request_id,
        error=broker_pb2.ProduceError(
            code=err.code.value[0], message=err.message, reason=err.reason, metadata=err.metadata
        ),
    )
