"""Consumer and AsyncConsumer: read partitions through Subscribe streams.

One Subscribe stream per assigned partition pushes batches as they are written;
each batch is parsed once and its records handed out as light Message views.
A bounded queue between the streams and the caller lets gRPC flow control, not
memory, absorb a slow consumer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Literal

import grpc
from tidelog.v1 import broker_pb2, broker_pb2_grpc, records_pb2

from client._channel import DEFAULT_BOOTSTRAP, call, open_channel
from client._loop import LoopThread
from client.errors import TidelogError, from_rpc_error
from client.types import Message, TopicPartition

OffsetReset = Literal["earliest", "latest"]
_RESET = {"earliest": records_pb2.POSITION_EARLIEST, "latest": records_pb2.POSITION_LATEST}
# Parsed responses buffered between the streams and the caller.
_QUEUE_RESPONSES = 64


class AsyncConsumer:
    """Read records from asyncio code.

    >>> async with AsyncConsumer("127.0.0.1:50051", topics=["orders"], auto_offset_reset="earliest") as consumer:
    ...     async for message in consumer:
    ...         print(message.offset, message.value)
    """

    def __init__(
        self,
        bootstrap: str = DEFAULT_BOOTSTRAP,
        *,
        topics: Iterable[str] = (),
        auto_offset_reset: OffsetReset = "latest",
        max_bytes: int = 1 << 20,
    ) -> None:
        if auto_offset_reset not in _RESET:
            raise ValueError("auto_offset_reset must be 'earliest' or 'latest'")
        self._channel = open_channel(bootstrap)
        self._stub = broker_pb2_grpc.BrokerStub(self._channel)
        self._subscribe = self._channel.unary_stream(
            "/tidelog.v1.Broker/Subscribe",
            request_serializer=broker_pb2.SubscribeRequest.SerializeToString,
            response_deserializer=broker_pb2.FetchResponse.FromString,
        )
        self._topics = list(topics)
        self._reset = auto_offset_reset
        self._max_bytes = max_bytes
        self._queue: asyncio.Queue[tuple[TopicPartition, broker_pb2.FetchResponse] | TidelogError] = asyncio.Queue(
            _QUEUE_RESPONSES
        )
        self._streams: dict[TopicPartition, asyncio.Task[None]] = {}
        self._positions: dict[TopicPartition, int | None] = {}
        self._started = False

    async def start(self) -> None:
        """Assign every partition of the subscribed topics (called for you on first use)."""
        if self._started:
            return
        self._started = True
        if self._topics:
            response = await call(self._stub.GetMetadata(broker_pb2.GetMetadataRequest(topics=self._topics)))
            self.assign([TopicPartition(t.name, p.partition) for t in response.topics for p in t.partitions])

    def assign(self, partitions: Iterable[tuple[str, int]]) -> None:
        """Read exactly these partitions (replacing any previous assignment)."""
        self._started = True
        for task in self._streams.values():
            task.cancel()
        self._streams.clear()
        self._positions = {TopicPartition(*tp): None for tp in partitions}
        for tp in self._positions:
            self._open_stream(tp)

    def assignment(self) -> list[TopicPartition]:
        return list(self._positions)

    def seek(self, partition: tuple[str, int], offset: int) -> None:
        """Continue `partition` at `offset`."""
        tp = TopicPartition(*partition)
        self._positions[tp] = offset
        self._open_stream(tp)

    def position(self, partition: tuple[str, int]) -> int | None:
        """The offset of the next record this consumer will return for `partition` (None until known)."""
        return self._positions[TopicPartition(*partition)]

    def _open_stream(self, tp: TopicPartition) -> None:
        old = self._streams.pop(tp, None)
        if old is not None:
            old.cancel()
        self._streams[tp] = asyncio.create_task(self._read_partition(tp))

    async def _read_partition(self, tp: TopicPartition) -> None:
        request = broker_pb2.SubscribeRequest(topic=tp.topic, partition=tp.partition, max_bytes=self._max_bytes)
        start = self._positions.get(tp)
        if start is None:
            request.position = _RESET[self._reset]
        else:
            request.offset = start
        try:
            async for response in self._subscribe(request):
                await self._queue.put((tp, response))
        except grpc.aio.AioRpcError as err:
            if err.code() != grpc.StatusCode.CANCELLED:
                await self._queue.put(from_rpc_error(err))

    async def getmany(self, timeout: float | None = None) -> list[Message]:
        """Records that have arrived (waiting up to `timeout` seconds for the first); [] on timeout."""
        await self.start()
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        out: list[Message] = []
        while not out:  # empty responses (the live marker, heartbeats) are not an answer
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return out
            try:
                item = await asyncio.wait_for(self._queue.get(), remaining)
            except TimeoutError:
                return out
            out.extend(self._messages(item))
            while not self._queue.empty():
                out.extend(self._messages(self._queue.get_nowait()))
        return out

    def _messages(self, item: tuple[TopicPartition, broker_pb2.FetchResponse] | TidelogError) -> list[Message]:
        if isinstance(item, TidelogError):
            raise item
        tp, response = item
        if tp not in self._streams:
            return []  # a partition unassigned since this response was queued
        position = self._positions.get(tp)
        out: list[Message] = []
        topic, partition = tp
        for batch in response.batches:
            base, append_ms = batch.base_offset, batch.append_time_ms
            skip = position - base if position is not None and position > base else 0
            records = batch.records[skip:] if skip else batch.records
            out += [Message(topic, partition, base + skip + i, r, append_ms) for i, r in enumerate(records)]
        if position is None or response.next_offset > position:
            self._positions[tp] = response.next_offset
        return out

    async def __aiter__(self) -> AsyncIterator[Message]:
        while True:
            for message in await self.getmany(None):
                yield message

    async def close(self) -> None:
        for task in self._streams.values():
            task.cancel()
        await asyncio.gather(*self._streams.values(), return_exceptions=True)
        await self._channel.close()

    async def __aenter__(self) -> AsyncConsumer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class Consumer:
    """Read records (blocking API, I/O on a background thread).

    >>> with Consumer("127.0.0.1:50051", topics=["orders"], auto_offset_reset="earliest") as consumer:
    ...     for message in consumer:
    ...         print(message.offset, message.value)
    """

    def __init__(
        self,
        bootstrap: str = DEFAULT_BOOTSTRAP,
        *,
        topics: Iterable[str] = (),
        auto_offset_reset: OffsetReset = "latest",
        max_bytes: int = 1 << 20,
    ) -> None:
        self._io = LoopThread("tidelog-consumer")
        self._async = self._io.run(self._open(bootstrap, list(topics), auto_offset_reset, max_bytes))

    @staticmethod
    async def _open(bootstrap: str, topics: list[str], reset: OffsetReset, max_bytes: int) -> AsyncConsumer:
        consumer = AsyncConsumer(bootstrap, topics=topics, auto_offset_reset=reset, max_bytes=max_bytes)
        await consumer.start()
        return consumer

    def assign(self, partitions: Iterable[tuple[str, int]]) -> None:
        """Read exactly these partitions (replacing any previous assignment)."""
        self._io.run(self._call(self._async.assign, list(partitions)))

    def assignment(self) -> list[TopicPartition]:
        return self._async.assignment()

    def seek(self, partition: tuple[str, int], offset: int) -> None:
        """Continue `partition` at `offset`."""
        self._io.run(self._call(self._async.seek, partition, offset))

    def position(self, partition: tuple[str, int]) -> int | None:
        return self._async.position(partition)

    @staticmethod
    async def _call(fn: object, *args: object) -> None:
        fn(*args)  # type: ignore[operator]

    def poll(self, timeout: float | None = None) -> list[Message]:
        """Records that have arrived (waiting up to `timeout` seconds for the first); [] on timeout."""
        return self._io.run(self._async.getmany(timeout))

    def __iter__(self) -> Iterator[Message]:
        while True:
            yield from self.poll(1.0)

    def close(self) -> None:
        self._io.run(self._async.close())
        self._io.close()

    def __enter__(self) -> Consumer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
