"""SubscribePartitions: many partitions tailed over one stream, read round robin.

One stream per consumer and broker instead of one per partition: a consumer of 1,000 partitions
costs the broker one coroutine and the client one response per round, not a thousand small ones.
A partition that cannot be read any more (deleted, overtaken by retention) is answered once with an
error and leaves the stream; the others go on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from tidelog.broker import config
from tidelog.broker.batches import frame_batches, length_delimited
from tidelog.broker.errors import BrokerError, invalid_request, topic_not_found
from tidelog.broker.log.service import Log
from tidelog.broker.log.topics import PartitionState, TopicState
from tidelog.broker.log.wakeups import wait_any
from tidelog.broker.metrics import Metrics
from tidelog.broker.names import check_limit
from tidelog.broker.security.access import Access
from tidelog.v1 import broker_pb2

MAX_PARTITIONS = 10_000
_PARTITIONS_TAG = b"\x0a"  # SubscribePartitionsResponse.partitions: field 1, length-delimited
_ERRORS_TAG = b"\x12"  # SubscribePartitionsResponse.errors: field 2, length-delimited

# (topic name, partition) -> the topic and the partition, when this broker may serve it (raises if not).
Locate = Callable[[str, int], tuple[TopicState, PartitionState]]
# The first offset a PartitionStart asks for (raises if it is out of range).
ResolveStart = Callable[[TopicState, PartitionState, broker_pb2.PartitionStart], int]
OutOfRange = Callable[[TopicState, PartitionState, int], BrokerError]


@dataclass(slots=True)
class _Tail:
    topic: TopicState
    partition: PartitionState
    next_offset: int


def _records(tail: _Tail, batches: list[bytes]) -> bytes:
    """One PartitionRecords entry of a response, built around the stored batch bytes without parsing them."""
    partition = tail.partition
    trailer = broker_pb2.PartitionRecords(
        topic=tail.topic.name,
        partition=partition.partition,
        high_watermark=partition.high_watermark,
        log_start_offset=partition.log_start_offset,
        next_offset=tail.next_offset,
    ).SerializeToString()
    return length_delimited(_PARTITIONS_TAG, frame_batches(batches) + trailer)


def _error(topic: str, partition: int, err: BrokerError) -> bytes:
    entry = broker_pb2.PartitionError(
        topic=topic,
        partition=partition,
        code=err.code.value[0],
        message=err.message,
        reason=err.reason,
        metadata=err.metadata,
    ).SerializeToString()
    return length_delimited(_ERRORS_TAG, entry)


class PartitionsTail:
    """Serves SubscribePartitions calls; where a partition is read from is the caller's rule (`locate`)."""

    def __init__(
        self,
        log_: Log,
        access: Access,
        metrics: Metrics,
        *,
        locate: Locate,
        resolve_start: ResolveStart,
        out_of_range: OutOfRange,
        heartbeat_s: float,
    ) -> None:
        self._log = log_
        self._access = access
        self._metrics = metrics
        self._locate = locate
        self._resolve_start = resolve_start
        self._out_of_range = out_of_range
        self._heartbeat_s = heartbeat_s

    async def stream(self, request: broker_pb2.SubscribePartitionsRequest) -> AsyncIterator[bytes]:
        starts = request.partitions
        if not starts:
            raise invalid_request("name at least one partition to subscribe to")
        if len(starts) > MAX_PARTITIONS:
            raise invalid_request(f"{len(starts)} partitions in one subscription: at most {MAX_PARTITIONS}")
        for name in sorted({start.topic for start in starts}):  # every topic allowed before any is looked up
            self._access.require("consume", "topic", name)
        if len({(start.topic, start.partition) for start in starts}) != len(starts):
            raise invalid_request("a partition is named twice: name each partition once")
        max_bytes = check_limit(
            "max_bytes", request.max_bytes, config.DEFAULT_FETCH_MAX_BYTES, config.MAX_FETCH_MAX_BYTES
        )
        tails, first = self._open(starts)
        yield first
        cursor = 0
        while tails:
            response, cursor = self._round(tails, cursor, max_bytes)
            if response:
                await self._access.throttle("consume", len(response))
                yield response
                continue
            if not await wait_any([t.partition for t in tails], self._heartbeat_s):
                yield b""  # a heartbeat: the stream is alive, nothing is new

    def _open(self, starts: Sequence[broker_pb2.PartitionStart]) -> tuple[list[_Tail], bytes]:
        """The partitions that can be read, and the first response: each one's start, or why not."""
        tails: list[_Tail] = []
        parts: list[bytes] = []
        for start in starts:
            try:
                topic, partition = self._locate(start.topic, start.partition)
                tail = _Tail(topic, partition, self._resolve_start(topic, partition, start))
            except BrokerError as err:
                parts.append(_error(start.topic, start.partition, err))
                continue
            tails.append(tail)
            parts.append(_records(tail, []))
        return tails, b"".join(parts)

    def _round(self, tails: list[_Tail], cursor: int, max_bytes: int) -> tuple[bytes, int]:
        """One response: what the partitions have from their next offsets, starting at `cursor`, within
        max_bytes; and where the next round starts. Partitions that ended are taken out of `tails`."""
        parts: list[bytes] = []
        room = max_bytes
        ended: list[_Tail] = []
        count = len(tails)
        step = 0
        while step < count and room > 0:
            tail = tails[(cursor + step) % count]
            step += 1
            partition = tail.partition
            if tail.topic.deleted:
                parts.append(_error(tail.topic.name, partition.partition, topic_not_found(tail.topic.name)))
                ended.append(tail)
            elif tail.next_offset < partition.log_start_offset:
                err = self._out_of_range(tail.topic, partition, tail.next_offset)
                parts.append(_error(tail.topic.name, partition.partition, err))
                ended.append(tail)
            elif tail.next_offset < partition.high_watermark:
                start = tail.next_offset
                read = self._log.read(tail.topic, partition, start, config.MAX_FETCH_MAX_RECORDS, room)
                # No batch below the high watermark from here means nothing is left to skip to.
                tail.next_offset = read.next_offset if read.batches else partition.high_watermark
                size = sum(len(b) for b in read.batches)
                if read.batches:
                    self._metrics.fetched(tail.topic.name, read.next_offset - start, size)
                room -= size
                parts.append(_records(tail, read.batches))
        for tail in ended:
            tails.remove(tail)
        return b"".join(parts), (cursor + step) % len(tails) if tails else 0
