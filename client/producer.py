"""Producer and AsyncProducer: batching per partition over one pipelined ProduceStream.

Latency and throughput both come from one rule (Nagle done right): a record is sent
at once when nothing is in flight, and records that arrive while a request is out
pile up into the next batch, which leaves when that request returns, when the
batch is full (`batch_bytes`) or after `linger_ms`, whichever is first.

`send()` costs a few microseconds: the record is encoded straight into its
partition's batch and a light `RecordFuture` (a batch and an index) comes back;
callbacks and results are resolved per batch, not per record.
"""

from __future__ import annotations

import asyncio
import collections
import random
import threading
import time
from collections.abc import Callable, Generator, Sequence
from typing import Any

import grpc
from tidelog.v1 import broker_pb2, broker_pb2_grpc

from client._channel import DEFAULT_BOOTSTRAP, call, open_channel
from client._loop import LoopThread
from client._wire import encode_record
from client.errors import TidelogError, UnavailableError, code_from_int, from_rpc_error, make_error
from client.partitioner import partition_for_key
from client.types import RecordMetadata

Headers = Sequence[tuple[str, bytes]]
DeliveryCallback = Callable[["RecordFuture"], None]


class _Batch:
    """Records bound for one partition in one request, and their shared outcome."""

    __slots__ = (
        "_aio_future",
        "_callbacks",
        "_event",
        "base_offset",
        "count",
        "created",
        "error",
        "frames",
        "partition",
        "size",
        "timestamps",
        "topic",
    )

    def __init__(self, topic: str, partition: int) -> None:
        self.topic = topic
        self.partition = partition
        self.frames: list[bytes] = []
        self.timestamps: list[int] = []
        self.size = 0
        self.count = 0
        self.created = time.monotonic()
        self.base_offset = -1
        self.error: TidelogError | None = None
        self._event = threading.Event()
        self._callbacks: list[Callable[[], None]] = []
        self._aio_future: asyncio.Future[None] | None = None

    def encode(self, request_id: int) -> bytes:
        header = broker_pb2.ProduceRequest(topic=self.topic, partition=self.partition, request_id=request_id)
        return b"".join(self.frames) + header.SerializeToString()

    @property
    def done(self) -> bool:
        return self._event.is_set()

    def finish(self, base_offset: int = -1, error: TidelogError | None = None) -> None:
        self.base_offset = base_offset
        self.error = error
        self.frames = []
        self._event.set()
        if self._aio_future is not None and not self._aio_future.done():
            self._aio_future.set_result(None)
        for callback in self._callbacks:
            callback()
        self._callbacks = []

    def wait(self, timeout: float | None) -> bool:
        return self._event.wait(timeout)

    def on_done(self, callback: Callable[[], None]) -> None:
        if self.done:
            callback()
        else:
            self._callbacks.append(callback)

    def aio_future(self) -> asyncio.Future[None]:
        if self._aio_future is None:
            self._aio_future = asyncio.get_running_loop().create_future()
            if self.done:
                self._aio_future.set_result(None)
        return self._aio_future


class RecordFuture:
    """The outcome of one `send()`: resolves to RecordMetadata or raises a TidelogError.

    Awaitable in asyncio code (`await future`); blocking with `result(timeout)`.
    """

    __slots__ = ("_batch", "_index")

    def __init__(self, batch: _Batch, index: int) -> None:
        self._batch = batch
        self._index = index

    def done(self) -> bool:
        return self._batch.done

    def result(self, timeout: float | None = None) -> RecordMetadata:
        """Wait for the broker's acknowledgement; raises TimeoutError after `timeout` seconds."""
        if not self._batch.wait(timeout):
            raise TimeoutError(f"record not acknowledged within {timeout}s")
        return self._metadata()

    def exception(self, timeout: float | None = None) -> TidelogError | None:
        if not self._batch.wait(timeout):
            raise TimeoutError(f"record not acknowledged within {timeout}s")
        return self._batch.error

    def add_done_callback(self, fn: DeliveryCallback) -> None:
        """Call `fn(future)` once the record is acknowledged or failed (on the producer's I/O thread)."""
        self._batch.on_done(lambda: fn(self))

    def _metadata(self) -> RecordMetadata:
        batch = self._batch
        if batch.error is not None:
            raise batch.error
        return RecordMetadata(
            batch.topic, batch.partition, batch.base_offset + self._index, batch.timestamps[self._index]
        )

    def __await__(self) -> Generator[Any, None, RecordMetadata]:
        yield from self._batch.aio_future().__await__()
        return self._metadata()


class _ProducerCore:
    """Accumulates records (from any thread) and sends batches (on its event loop)."""

    def __init__(
        self, bootstrap: str, loop: asyncio.AbstractEventLoop, *, linger_ms: float, batch_bytes: int, max_in_flight: int
    ) -> None:
        self._loop = loop
        self._channel = open_channel(bootstrap)
        self._stub = broker_pb2_grpc.BrokerStub(self._channel)
        self._produce_stream = self._channel.stream_stream(
            "/tidelog.v1.Broker/ProduceStream",
            request_serializer=None,
            response_deserializer=broker_pb2.ProduceResponse.FromString,
        )
        self._linger_s = linger_ms / 1000
        self._batch_bytes = batch_bytes
        self._max_in_flight = max_in_flight
        self._lock = threading.Lock()
        self._open: dict[tuple[str, int], _Batch] = {}
        self._to_send: collections.deque[_Batch] = collections.deque()
        self._unfinished: set[_Batch] = set()
        self._drain_scheduled = False
        self._linger_timer: asyncio.TimerHandle | None = None
        self._in_flight: collections.deque[_Batch] = collections.deque()
        self._partitions: dict[str, int] = {}
        self._sticky: dict[str, int] = {}
        self._send_wakeup = asyncio.Event()
        self._slots = asyncio.Semaphore(max_in_flight)
        self._stream: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    # -- any thread -------------------------------------------------------------------

    def partition_count(self, topic: str) -> int | None:
        return self._partitions.get(topic)

    def append(
        self,
        topic: str,
        partition: int | None,
        key: bytes | None,
        value: bytes | None,
        headers: Headers | None,
        timestamp_ms: int | None,
    ) -> RecordFuture:
        if self._closed:
            raise UnavailableError("the producer is closed")
        if partition is None:
            count = self._partitions[topic]
            partition = (
                partition_for_key(key, count) if key else self._sticky.setdefault(topic, random.randrange(count))
            )
        ts = timestamp_ms if timestamp_ms is not None else int(time.time() * 1000)
        frame = encode_record(key, value, headers, ts)
        tp = (topic, partition)
        with self._lock:
            batch = self._open.get(tp)
            if batch is None:
                batch = self._open[tp] = _Batch(topic, partition)
                self._unfinished.add(batch)
            index = batch.count
            batch.frames.append(frame)
            batch.timestamps.append(ts)
            batch.count = index + 1
            batch.size += len(frame)
            if batch.size >= self._batch_bytes:
                self._close_batch(tp, batch)
            if not self._drain_scheduled:
                self._drain_scheduled = True
                self._loop.call_soon_threadsafe(self._drain)
        return RecordFuture(batch, index)

    def _close_batch(self, tp: tuple[str, int], batch: _Batch) -> None:
        """Move a batch from accumulating to the send queue (lock held)."""
        del self._open[tp]
        self._to_send.append(batch)
        topic, partition = tp
        if self._sticky.get(topic) == partition:
            self._sticky[topic] = (partition + 1) % self._partitions[topic]

    def unfinished(self) -> list[_Batch]:
        with self._lock:
            return list(self._unfinished)

    # -- event loop -------------------------------------------------------------------

    async def start(self) -> None:
        self._stream = self._produce_stream()
        self._tasks = [asyncio.create_task(self._send_loop()), asyncio.create_task(self._receive_loop())]

    async def load_partitions(self, topic: str) -> int:
        if topic not in self._partitions:
            response = await call(self._stub.GetMetadata(broker_pb2.GetMetadataRequest(topics=[topic])))
            self._partitions[topic] = len(response.topics[0].partitions)
        return self._partitions[topic]

    def _drain(self, flush: bool = False) -> None:
        """Send what should leave now: everything when idle (or flushing), else what lingered long enough."""
        now = time.monotonic()
        with self._lock:
            self._drain_scheduled = False
            idle = not self._in_flight and not self._to_send
            next_deadline: float | None = None
            for tp, batch in list(self._open.items()):
                deadline = batch.created + self._linger_s
                if flush or idle or now >= deadline:
                    self._close_batch(tp, batch)
                elif next_deadline is None or deadline < next_deadline:
                    next_deadline = deadline
            has_work = bool(self._to_send)
        if next_deadline is not None and self._linger_timer is None:
            self._linger_timer = self._loop.call_later(next_deadline - now, self._on_linger)
        if has_work:
            self._send_wakeup.set()

    def _on_linger(self) -> None:
        self._linger_timer = None
        self._drain()

    async def _send_loop(self) -> None:
        request_id = 0
        while True:
            await self._send_wakeup.wait()
            self._send_wakeup.clear()
            while True:
                with self._lock:
                    batch = self._to_send.popleft() if self._to_send else None
                if batch is None:
                    break
                await self._slots.acquire()
                request_id += 1
                self._in_flight.append(batch)
                try:
                    await self._stream.write(batch.encode(request_id))
                except (grpc.aio.AioRpcError, asyncio.InvalidStateError) as err:
                    self._fail_in_flight(_stream_error(err))

    async def _receive_loop(self) -> None:
        try:
            async for response in self._stream:
                batch = self._in_flight.popleft()
                self._slots.release()
                if response.HasField("error"):
                    e = response.error
                    self._finish(batch, error=make_error(code_from_int(e.code), e.message, e.reason))
                else:
                    self._finish(batch, base_offset=response.results[0].base_offset)
                self._drain()
        except grpc.aio.AioRpcError as err:
            self._fail_in_flight(from_rpc_error(err))

    def _finish(self, batch: _Batch, base_offset: int = -1, error: TidelogError | None = None) -> None:
        with self._lock:
            self._unfinished.discard(batch)
        batch.finish(base_offset, error)

    def _fail_in_flight(self, error: TidelogError) -> None:
        while self._in_flight:
            self._finish(self._in_flight.popleft(), error=error)
            self._slots.release()

    async def flush(self) -> None:
        self._drain(flush=True)
        pending = self.unfinished()
        if pending:
            await asyncio.gather(*(b.aio_future() for b in pending))

    async def close(self) -> None:
        await self.flush()
        self._closed = True
        if self._stream is not None:
            await self._stream.done_writing()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._channel.close()


def _stream_error(err: Exception) -> TidelogError:
    if isinstance(err, grpc.aio.AioRpcError):
        return from_rpc_error(err)
    return UnavailableError(f"the produce stream closed: {err}")


class AsyncProducer:
    """Produce from asyncio code.

    >>> async with AsyncProducer("127.0.0.1:50051") as producer:
    ...     future = await producer.send("orders", b"hello", key=b"customer-1")
    ...     metadata = await future
    """

    def __init__(
        self,
        bootstrap: str = DEFAULT_BOOTSTRAP,
        *,
        linger_ms: float = 5,
        batch_bytes: int = 256 << 10,
        max_in_flight: int = 16,
    ) -> None:
        self._settings = {"linger_ms": linger_ms, "batch_bytes": batch_bytes, "max_in_flight": max_in_flight}
        self._bootstrap = bootstrap
        self._core: _ProducerCore | None = None

    async def _ensure_core(self) -> _ProducerCore:
        if self._core is None:
            self._core = _ProducerCore(self._bootstrap, asyncio.get_running_loop(), **self._settings)  # type: ignore[arg-type]
            await self._core.start()
        return self._core

    async def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: Headers | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> RecordFuture:
        """Queue a record; returns at once with an awaitable RecordFuture."""
        core = await self._ensure_core()
        if core.partition_count(topic) is None:
            await core.load_partitions(topic)
        return core.append(topic, partition, key, value, headers, timestamp_ms)

    async def send_and_wait(self, topic: str, value: bytes | None, **kwargs: Any) -> RecordMetadata:
        return await (await self.send(topic, value, **kwargs))

    async def flush(self) -> None:
        """Send everything queued and wait until the broker acknowledged it."""
        if self._core is not None:
            await self._core.flush()

    async def close(self) -> None:
        if self._core is not None:
            await self._core.close()

    async def __aenter__(self) -> AsyncProducer:
        await self._ensure_core()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class Producer:
    """Produce records (blocking API, I/O on a background thread).

    >>> with Producer("127.0.0.1:50051") as producer:
    ...     future = producer.send("orders", b"hello", key=b"customer-1")
    ...     print(future.result(timeout=10).offset)
    """

    def __init__(
        self,
        bootstrap: str = DEFAULT_BOOTSTRAP,
        *,
        linger_ms: float = 5,
        batch_bytes: int = 256 << 10,
        max_in_flight: int = 16,
    ) -> None:
        self._io = LoopThread("tidelog-producer")
        self._core = self._io.run(self._open(bootstrap, linger_ms, batch_bytes, max_in_flight))

    async def _open(self, bootstrap: str, linger_ms: float, batch_bytes: int, max_in_flight: int) -> _ProducerCore:
        core = _ProducerCore(
            bootstrap,
            asyncio.get_running_loop(),
            linger_ms=linger_ms,
            batch_bytes=batch_bytes,
            max_in_flight=max_in_flight,
        )
        await core.start()
        return core

    def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: Headers | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        on_delivery: DeliveryCallback | None = None,
    ) -> RecordFuture:
        """Queue a record; returns at once with a RecordFuture (`result(timeout)` waits for the ack)."""
        if self._core.partition_count(topic) is None:
            self._io.run(self._core.load_partitions(topic))
        future = self._core.append(topic, partition, key, value, headers, timestamp_ms)
        if on_delivery is not None:
            future.add_done_callback(on_delivery)
        return future

    def flush(self, timeout: float | None = None) -> None:
        """Send everything queued and wait until the broker acknowledged it."""
        self._io.run(self._core.flush(), timeout)

    def close(self) -> None:
        self._io.run(self._core.close())
        self._io.close()

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
