"""The consumer's assigned partitions, read over one SubscribePartitions stream per broker.

Partitions are grouped by the broker that leads them (the client's routing), and each group is one
stream, so 1,000 partitions cost one call and one response per round, not a thousand streams. A
change to a group (a partition assigned, sought, dropped, or moved to another leader) reopens its
stream from every partition's current position, once per event-loop turn however many changes came.

A stream that breaks on a retriable failure (the broker restarting, the network, a call the server's
transport cancelled) is opened again, after a backoff, exactly where the last response it queued
ended: nothing is skipped and nothing delivered twice. A partition the broker can no longer serve on
the stream is dealt with alone while the others go on: a start the log no longer has (retention) or
does not have yet falls back to the reset policy, as in Kafka, unless that is ``"none"``; a moved
leader is followed; anything else retriable is retried after a backoff of its own.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from tidelog._channel import backoff_delay
from tidelog._routing import Routing
from tidelog.common.reasons import Reason
from tidelog.consumer.positions import EARLIEST, LATEST, PartitionPosition, Position, Start, Timestamp
from tidelog.errors import (
    OffsetOutOfRangeError,
    TidelogError,
    UnavailableError,
    code_from_int,
    from_rpc_error,
    make_error,
)
from tidelog.types import TopicPartition
from tidelog.v1 import broker_pb2

log = logging.getLogger(__name__)

# What one response of a stream queues: each partition's records, under the epoch it was read for.
Received = list[tuple[TopicPartition, int, Any]]
QueueItem = tuple[TopicPartition, int, Any] | Received | TidelogError
_BACKOFF_STEP_S = 0.1  # how often a backoff looks whether a metadata refresh moved a leader


@dataclass(eq=False)
class _Stream:
    """One broker's stream: the partitions it reads (as the broker serves them) and their entries."""

    key: str
    entries: dict[TopicPartition, PartitionPosition]
    task: asyncio.Task[None] | None = None
    over: bool = False  # ended or failed: the next regroup opens it again
    live: set[TopicPartition] = field(init=False)

    def __post_init__(self) -> None:
        self.live = set(self.entries)


class Subscriptions:
    """The SubscribePartitions streams of a consumer's assigned partitions, one per broker."""

    def __init__(
        self,
        routing: Routing,
        queue: asyncio.Queue[QueueItem],
        *,
        max_bytes: int,
        reset: str,
        backoff_ms: tuple[float, float],
        limit: int | None = None,
    ) -> None:
        """`limit`: at most this many responses queued and not yet taken (for a queue that has no
        bound of its own: a group consumer's, which its Consume stream's messages must never wait on)."""
        self._routing = routing
        self._openers: dict[str, Callable[..., Any]] = {}  # a SubscribePartitions opener per broker
        self._queue = queue
        self._max_bytes = max_bytes
        self._reset = reset
        self._backoff_ms = backoff_ms
        self._room = asyncio.Semaphore(limit) if limit is not None else None
        self._entries: dict[TopicPartition, PartitionPosition] = {}
        self._streams: dict[str, _Stream] = {}
        self._stale: set[str] = set()  # streams whose partitions' starts changed (a seek)
        self._parked: dict[TopicPartition, float] = {}  # not read again before this loop time
        self._failures: dict[str, int] = {}  # consecutive failures of each broker's stream
        self._partition_failures: dict[TopicPartition, int] = {}
        self._regroup_due: asyncio.Handle | None = None

    def taken(self) -> None:
        """The consumer took one of the responses off the queue."""
        if self._room is not None:
            self._room.release()

    def reset_start(self) -> Start:
        return EARLIEST if self._reset == "earliest" else LATEST

    def open(self, tp: TopicPartition, entry: PartitionPosition) -> None:
        """Read `tp` from its entry's start (what was read of it under an earlier entry is dropped)."""
        self._entries[tp] = entry
        self._parked.pop(tp, None)
        self._stale.add(self._routing.key_for((tp.topic, tp.partition)))
        self._regroup_soon()

    def close(self, tp: TopicPartition) -> None:
        if self._entries.pop(tp, None) is not None:
            self._parked.pop(tp, None)
            self._regroup_soon()

    def __contains__(self, tp: object) -> bool:
        return tp in self._entries

    def partitions(self) -> list[TopicPartition]:
        return list(self._entries)

    async def close_all(self) -> None:
        self._entries.clear()
        if self._regroup_due is not None:
            self._regroup_due.cancel()
            self._regroup_due = None
        tasks = [s.task for s in self._streams.values() if s.task is not None]
        self._streams.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- which stream reads what ---------------------------------------------------

    def _regroup_soon(self) -> None:
        if self._regroup_due is None:
            self._regroup_due = asyncio.get_running_loop().call_soon(self._regroup)

    def _regroup(self) -> None:
        """Open, reopen or close streams so each broker's stream reads exactly the partitions it leads."""
        self._regroup_due = None
        now = asyncio.get_running_loop().time()
        wanted: dict[str, dict[TopicPartition, PartitionPosition]] = {}
        for tp, entry in self._entries.items():
            if self._parked.get(tp, 0.0) <= now:
                wanted.setdefault(self._routing.key_for((tp.topic, tp.partition)), {})[tp] = entry
        stale, self._stale = self._stale, set()
        for key, stream in list(self._streams.items()):
            entries = wanted.get(key)
            if stream.over or key in stale or entries is None or set(entries) != stream.live:
                if stream.task is not None:
                    stream.task.cancel()
                del self._streams[key]
        for key, entries in wanted.items():
            if key not in self._streams:
                stream = self._streams[key] = _Stream(key, entries)
                stream.task = asyncio.create_task(self._read(stream))

    def _park(self, tp: TopicPartition, delay: float) -> None:
        """Leave `tp` out of the streams for `delay` seconds (math.inf: until it is assigned again)."""
        self._parked[tp] = asyncio.get_running_loop().time() + delay
        if delay != math.inf:
            asyncio.get_running_loop().call_later(delay, self._regroup_soon)

    # -- one stream ----------------------------------------------------------------

    def _subscribe(self, key: str) -> Callable[..., Any]:
        opener = self._openers.get(key)
        if opener is None:
            opener = self._openers[key] = self._routing.channel(key).unary_stream(
                "/tidelog.v1.Broker/SubscribePartitions",
                request_serializer=broker_pb2.SubscribePartitionsRequest.SerializeToString,
                response_deserializer=broker_pb2.SubscribePartitionsResponse.FromString,
            )
        return opener

    def _request(self, stream: _Stream) -> broker_pb2.SubscribePartitionsRequest:
        request = broker_pb2.SubscribePartitionsRequest(max_bytes=self._max_bytes)
        for tp in stream.live:
            start = stream.entries[tp].start
            part = request.partitions.add(topic=tp.topic, partition=tp.partition)
            if isinstance(start, Timestamp):
                part.timestamp_ms = start
            elif isinstance(start, Position):
                part.position = start  # type: ignore[assignment]
            else:
                part.offset = start
        return request

    async def _read(self, stream: _Stream) -> None:
        try:
            async for response in self._subscribe(stream.key)(self._request(stream)):
                self._failures.pop(stream.key, None)
                received: Received = []
                for records in response.partitions:
                    tp = TopicPartition(records.topic, records.partition)
                    entry = stream.entries.get(tp)
                    if entry is not None and tp in stream.live:
                        received.append((tp, entry.epoch, records))
                for failed in response.errors:
                    await self._partition_failed(stream, failed)
                if not received:
                    continue  # a heartbeat
                if self._room is not None:
                    await self._room.acquire()
                await self._queue.put(received)
                # Only once queued: a stream cancelled before (a regroup) is reopened where this one began.
                for tp, _, records in received:
                    entry = stream.entries[tp]
                    entry.start = records.next_offset
                    if entry.position is None:
                        entry.learn(records.next_offset)
                    if self._partition_failures:
                        self._partition_failures.pop(tp, None)
            if not stream.live:
                stream.over = True  # every partition left it, each dealt with already
                self._regroup_soon()
                return
            error: TidelogError = UnavailableError("the broker ended the subscription")
        except grpc.aio.AioRpcError as err:
            error = from_rpc_error(err)
        await self._stream_failed(stream, error)

    async def _stream_failed(self, stream: _Stream, error: TidelogError) -> None:
        if not error.retriable:  # a broken stream (even one the transport CANCELLED) is reopened
            for tp in stream.live:
                self._park(tp, math.inf)
            stream.over = True
            self._regroup_soon()
            await self._queue.put(error)
            return
        failures = self._failures[stream.key] = self._failures.get(stream.key, 0) + 1
        self._routing.refresh_soon()
        delay = backoff_delay(failures, *self._backoff_ms)
        log.warning("subscription lost (%s), reopening %d partition(s) in %d ms", error, len(stream.live), delay * 1000)
        await self._back_off(stream, delay)
        stream.over = True
        self._regroup_soon()

    async def _back_off(self, stream: _Stream, delay: float) -> None:
        """Wait `delay`, but no longer than it takes a metadata refresh to show another leader."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + delay
        while (left := deadline - loop.time()) > 0:
            await asyncio.sleep(min(left, _BACKOFF_STEP_S))
            if any(self._routing.key_for((tp.topic, tp.partition)) != stream.key for tp in stream.live):
                return
            if stream.key:  # a leader out of reach (not the bootstrap list): has another taken over?
                self._routing.refresh_soon()

    async def _partition_failed(self, stream: _Stream, failed: broker_pb2.PartitionError) -> None:
        """The broker stopped serving one partition on `stream`: reset, follow the leader, or retry it alone."""
        tp = TopicPartition(failed.topic, failed.partition)
        entry = stream.entries.get(tp)
        if entry is None or tp not in stream.live:
            return
        stream.live.discard(tp)
        if self._entries.get(tp) is not entry:
            return  # sought or dropped meanwhile: the next regroup reads it from its new start, if at all
        error = make_error(code_from_int(failed.code), failed.message, failed.reason, dict(failed.metadata))
        if isinstance(error, OffsetOutOfRangeError):
            if self._reset == "none":
                self._park(tp, math.inf)
                await self._queue.put(error)
                return
            log.warning("%s: offset out of range, resetting to %s: %s", tp, self._reset, error)
            entry.forget(self.reset_start())
            self._regroup_soon()
            return
        if not error.retriable:
            self._park(tp, math.inf)
            await self._queue.put(error)
            return
        failures = self._partition_failures[tp] = self._partition_failures.get(tp, 0) + 1
        if error.reason == Reason.NOT_LEADER:
            address = error.metadata.get("leader_address", "")
            self._routing.moved((tp.topic, tp.partition), address)
            if address and failures == 1:  # the leader moved and the answer says where: go at once
                log.info("%s: reading from the new leader at %s", tp, address)
                self._regroup_soon()
                return
        else:
            self._routing.refresh_soon()
        delay = backoff_delay(failures, *self._backoff_ms)
        log.warning("%s: subscription lost (%s), reopening in %d ms", tp, error, round(delay * 1000))
        self._park(tp, delay)
        self._regroup_soon()
