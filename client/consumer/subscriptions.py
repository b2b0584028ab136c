"""One Subscribe stream per assigned partition, feeding the consumer's queue.

A stream that breaks on a retriable failure (the broker restarting, the network, a call the server's
transport cancelled) is opened again, after a backoff, exactly where the last response it queued
ended: nothing is skipped and nothing delivered twice. A start the log no longer has (retention) or
does not have yet falls back to the reset policy, as in Kafka, unless that is ``"none"``. Each stream
goes to the partition's leader (the client's routing), and follows it when it moves.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import grpc

from tidelog._channel import backoff_delay
from tidelog._routing import Routing
from tidelog.common.reasons import Reason
from tidelog.consumer.positions import EARLIEST, LATEST, PartitionPosition, Position, Start, Timestamp
from tidelog.errors import OffsetOutOfRangeError, TidelogError, UnavailableError, from_rpc_error
from tidelog.types import TopicPartition
from tidelog.v1 import broker_pb2

log = logging.getLogger(__name__)

QueueItem = tuple[TopicPartition, int, Any] | TidelogError


class Subscriptions:
    """The Subscribe streams of a consumer's assigned partitions, one task each."""

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
        self._openers: dict[str, Callable[..., Any]] = {}  # a Subscribe opener per broker
        self._queue = queue
        self._max_bytes = max_bytes
        self._reset = reset
        self._backoff_ms = backoff_ms
        self._tasks: dict[TopicPartition, asyncio.Task[None]] = {}
        self._room = asyncio.Semaphore(limit) if limit is not None else None

    def taken(self) -> None:
        """The consumer took one of the responses off the queue."""
        if self._room is not None:
            self._room.release()

    def _subscribe(self, tp: TopicPartition) -> Callable[..., Any]:
        key = self._routing.key_for((tp.topic, tp.partition))
        opener = self._openers.get(key)
        if opener is None:
            opener = self._openers[key] = self._routing.channel(key).unary_stream(
                "/tidelog.v1.Broker/Subscribe",
                request_serializer=broker_pb2.SubscribeRequest.SerializeToString,
                response_deserializer=broker_pb2.FetchResponse.FromString,
            )
        return opener

    def reset_start(self) -> Start:
        return EARLIEST if self._reset == "earliest" else LATEST

    def open(self, tp: TopicPartition, entry: PartitionPosition) -> None:
        """Read `tp` from its entry's start (a stream already open on it is closed first)."""
        self.close(tp)
        self._tasks[tp] = asyncio.create_task(self._read(tp, entry))

    def close(self, tp: TopicPartition) -> None:
        task = self._tasks.pop(tp, None)
        if task is not None:
            task.cancel()

    def __contains__(self, tp: object) -> bool:
        return tp in self._tasks

    def partitions(self) -> list[TopicPartition]:
        return list(self._tasks)

    async def close_all(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _request(self, tp: TopicPartition, start: Start) -> broker_pb2.SubscribeRequest:
        request = broker_pb2.SubscribeRequest(topic=tp.topic, partition=tp.partition, max_bytes=self._max_bytes)
        if isinstance(start, Timestamp):
            request.timestamp_ms = start
        elif isinstance(start, Position):
            request.position = start  # type: ignore[assignment]
        else:
            request.offset = start
        return request

    async def _read(self, tp: TopicPartition, entry: PartitionPosition) -> None:
        failures = 0
        while True:
            try:
                async for response in self._subscribe(tp)(self._request(tp, entry.start)):
                    failures = 0
                    entry.start = response.next_offset  # a reopened stream continues after this one
                    if entry.position is None:
                        entry.learn(response.next_offset)
                    if self._room is not None:
                        await self._room.acquire()
                    await self._queue.put((tp, entry.epoch, response))
                error: TidelogError = UnavailableError("the broker ended the subscription")
            except grpc.aio.AioRpcError as err:
                error = from_rpc_error(err)
            if isinstance(error, OffsetOutOfRangeError):
                if self._reset == "none":
                    await self._queue.put(error)
                    return
                log.warning("%s: offset out of range, resetting to %s: %s", tp, self._reset, error)
                entry.forget(self.reset_start())
                continue
            if not error.retriable:  # a broken stream (even one the transport CANCELLED) is reopened
                await self._queue.put(error)
                return
            failures += 1
            if error.reason == Reason.NOT_LEADER:
                address = error.metadata.get("leader_address", "")
                self._routing.moved((tp.topic, tp.partition), address)
                if address and failures == 1:  # the leader moved and the answer says where: go at once
                    log.info("%s: reading from the new leader at %s", tp, address)
                    continue
            else:
                self._routing.refresh_soon()
            delay = backoff_delay(failures, *self._backoff_ms)
            log.warning("%s: subscription lost (%s), reopening in %d ms", tp, error, round(delay * 1000))
            await self._back_off(tp, delay)

    async def _back_off(self, tp: TopicPartition, delay: float) -> None:
        """Wait `delay`, but no longer than it takes a metadata refresh to show another leader."""
        key = self._routing.key_for((tp.topic, tp.partition))
        deadline = asyncio.get_running_loop().time() + delay
        while (left := deadline - asyncio.get_running_loop().time()) > 0:
            await asyncio.sleep(min(left, 0.1))
            if self._routing.key_for((tp.topic, tp.partition)) != key:
                return
            if key:  # a leader out of reach (not the bootstrap list): has another taken over?
                self._routing.refresh_soon()
