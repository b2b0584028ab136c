"""The producer's engine: batching, one pipelined ProduceStream, retries and idempotence.

Threads: `append` runs on any thread (the caller's) under one lock; everything
else runs on the producer's event loop.

Batching (Nagle done right): a record is sent at once when nothing is queued or
in flight; records that arrive while requests are out pile up into the next batch
of their partition, which leaves when a request returns, when it is full
(`batch_bytes`) or after `linger_ms`, whichever is first.

Delivery: each partition keeps a queue of closed batches. With idempotence (the
default) a batch takes its sequence number when it is first sent and keeps it
through every resend, at most five batches per partition are in flight (the
broker remembers the last five), and a resent batch the broker already wrote is
answered with its original offsets, so retries never duplicate or reorder.

- The stream breaks (broker restart, network): in-flight batches go back to the
  front of their queues with their sequences; the producer reconnects with
  exponential backoff and jitter and sends them again, until `delivery_timeout_ms`.
- One batch is refused: the partition is held. Batches pipelined behind it come
  back OUT_OF_ORDER_SEQUENCE (the broker expects the refused one's sequence), are
  collected in order, and once nothing of that partition is in flight they are
  re-sequenced from where the broker stands and sent again, after the refused
  batch itself when its error is retriable (failing it otherwise).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import Any

import grpc

from tidelog._channel import Security, backoff_delay, call, open_channel
from tidelog.common.partitioner import cached_partition_for_key
from tidelog.common.reasons import Reason
from tidelog.errors import (
    BufferFullError,
    DeadlineExceededError,
    DeliveryTimeoutError,
    PartitionOutOfRangeError,
    RecordTooLargeError,
    TidelogError,
    UnavailableError,
    code_from_int,
    from_rpc_error,
    make_error,
)
from tidelog.producer._batch import Batch, RecordFuture, RecordFutures
from tidelog.v1 import broker_pb2, broker_pb2_grpc

log = logging.getLogger(__name__)

TP = tuple[str, int]
# The broker remembers this many batches per producer and partition (API.md).
IDEMPOTENT_IN_FLIGHT_PER_PARTITION = 5


@dataclass(frozen=True)
class ProducerConfig:
    linger_ms: float = 5
    batch_bytes: int = 256 << 10
    buffer_bytes: int = 32 << 20
    max_block_ms: float = 60_000
    max_in_flight: int = 16
    enable_idempotence: bool = True
    delivery_timeout_ms: float = 120_000
    retry_backoff_ms: float = 100
    retry_backoff_max_ms: float = 2_000
    request_timeout_ms: float = 30_000

    def __post_init__(self) -> None:
        for name in (
            "linger_ms",
            "max_block_ms",
            "delivery_timeout_ms",
            "retry_backoff_ms",
            "retry_backoff_max_ms",
            "request_timeout_ms",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        for name in ("batch_bytes", "buffer_bytes", "max_in_flight"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")


class _Partition:
    """Delivery state of one partition."""

    __slots__ = (
        "attempts",
        "held",
        "in_flight",
        "is_ready",
        "next_sequence",
        "paused",
        "queue",
        "renumber_from",
        "retry",
    )

    def __init__(self) -> None:
        self.queue: collections.deque[Batch] = collections.deque()  # closed, not yet sent (or to resend)
        self.in_flight = 0
        self.is_ready = False  # listed in the core's ready queue
        self.next_sequence = 0
        self.held = False  # a batch was refused: wait for the in-flight ones, then resend in order
        # Set when the broker expects a sequence the batches to resend do not start at (a batch failed
        # for good, or the broker lost records): they are numbered again from there. Otherwise a
        # batch keeps its sequence for life, so a resend of one already written is recognised.
        self.renumber_from: int | None = None
        self.retry: list[Batch] = []  # refused batches to send again once the hold ends
        self.attempts = 0  # consecutive retriable refusals, for backoff
        self.paused = False  # backing off after a retriable refusal


class ProducerCore:
    def __init__(
        self, bootstrap: str, loop: asyncio.AbstractEventLoop, config: ProducerConfig, security: Security | None = None
    ) -> None:
        self._loop = loop
        self._config = config
        self._idempotent = config.enable_idempotence
        self._per_partition_cap = IDEMPOTENT_IN_FLIGHT_PER_PARTITION if self._idempotent else config.max_in_flight
        self._channel = open_channel(bootstrap, security)
        self._stub = broker_pb2_grpc.BrokerStub(self._channel)
        self._produce_stream = self._channel.stream_stream(
            "/tidelog.v1.Broker/ProduceStream",
            request_serializer=None,
            response_deserializer=broker_pb2.ProduceResponse.FromString,
        )
        self._linger_s = config.linger_ms / 1000
        self._batch_bytes = config.batch_bytes
        self._buffer_bytes = config.buffer_bytes
        self._lock = threading.Lock()
        self._space = threading.Condition(self._lock)
        self._space_freed = asyncio.Event()
        self._buffered = 0
        self._open: dict[TP, Batch] = {}
        self._parts: dict[TP, _Partition] = {}
        self._ready: collections.deque[TP] = collections.deque()
        self._in_flight: collections.deque[Batch] = collections.deque()
        self._unfinished: set[Batch] = set()
        self._partitions: dict[str, int] = {}
        self._sticky: dict[str, int] = {}
        self._producer_id: int | None = None
        self._sequences_unknown = False
        self._drain_scheduled = False
        self._linger_timer: asyncio.TimerHandle | None = None
        self._wakeup = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._loop_thread = threading.get_ident()
        self._closed = False

    # -- any thread -------------------------------------------------------------------

    def on_loop_thread(self) -> bool:
        return threading.get_ident() == self._loop_thread

    def append(
        self, topic: str, partition: int | None, key: bytes | None, frame: bytes, ts: int, block: bool = True
    ) -> RecordFuture | None:
        """Add an encoded record to its partition's batch.

        When the buffer is full, waits up to max_block_ms for space (block=True) or returns None.
        The hot path of every send: only the uncommon cases leave this function.
        """
        size = len(frame)
        with self._lock:
            full = self._closed or self._buffered + size > self._buffer_bytes
            if full and not self._make_room_locked(size, block):
                return None
            tp = (topic, self._partition_locked(topic, partition, key))
            batch = self._open.get(tp) or self._new_batch_locked(tp)
            frames = batch.frames
            index = len(frames)
            frames.append(frame)
            batch.size += size
            self._buffered += size
            if batch.size >= self._batch_bytes:
                self._close_batch(tp, batch)
            if not self._drain_scheduled:
                self._schedule_drain_locked()
        return RecordFuture(batch, index, ts)

    def append_many(
        self, topic: str, partition: int | None, frames: list[bytes], ts: int, block: bool = True
    ) -> RecordFutures | None:
        """Add encoded keyless records, in order, to one partition (the sticky one when None).

        They fill batches of up to batch_bytes each. The buffer must have room for all of them;
        when it has not, waits up to max_block_ms (block=True) or returns None.
        """
        size = sum(map(len, frames))
        with self._lock:
            full = self._closed or self._buffered + size > self._buffer_bytes
            if full and not self._make_room_locked(size, block):
                return None
            tp = (topic, self._partition_locked(topic, partition, None))
            futures = RecordFutures(ts)
            largest = max(map(len, frames), default=1) or 1  # batches stay within batch_bytes
            start = 0
            while start < len(frames):
                batch = self._open.get(tp) or self._new_batch_locked(tp)
                room = max(1, (self._batch_bytes - batch.size) // largest)
                chunk = frames[start : start + room]
                first = len(batch.frames)
                batch.frames += chunk
                chunk_size = sum(map(len, chunk))
                batch.size += chunk_size
                self._buffered += chunk_size
                futures.add_span(batch, first, len(chunk))
                start += len(chunk)
                if batch.size >= self._batch_bytes:
                    self._close_batch(tp, batch)
            if not self._drain_scheduled:
                self._schedule_drain_locked()
        return futures

    def _make_room_locked(self, size: int, block: bool) -> bool:
        """Called when the buffer is full (or closed): waits up to max_block_ms for room (block=True),
        or says False at once with the loop's space event armed for the caller to await."""
        if not block:
            self._check_size(size)
            self._space_freed.clear()
            return False
        self._wait_for_space_locked(size)
        return True

    def _partition_locked(self, topic: str, partition: int | None, key: bytes | None) -> int:
        """The partition a record goes to: the given one (checked), its key's, or the topic's sticky one."""
        count = self._partitions.get(topic)
        if count is None:
            raise MetadataMissing(topic)
        if partition is None:
            if key:
                return cached_partition_for_key(key, count)
            return self._sticky.setdefault(topic, random.randrange(count))
        if not 0 <= partition < count:
            raise PartitionOutOfRangeError(
                f"partition {partition} is out of range: topic {topic!r} has partitions 0-{count - 1}"
            )
        return partition

    def _new_batch_locked(self, tp: TP) -> Batch:
        batch = self._open[tp] = Batch(*tp)
        self._unfinished.add(batch)
        return batch

    def _schedule_drain_locked(self) -> None:
        self._drain_scheduled = True
        self._loop.call_soon_threadsafe(self._drain)

    async def append_async(
        self, topic: str, partition: int | None, key: bytes | None, frame: bytes, ts: int
    ) -> RecordFuture:
        """`append` for coroutines on the producer's loop: waits for buffer space without blocking the loop."""
        deadline = time.monotonic() + self._config.max_block_ms / 1000
        while True:
            future = self.append(topic, partition, key, frame, ts, block=False)
            if future is not None:
                return future
            await self.wait_for_space(deadline)

    async def wait_for_space(self, deadline: float) -> None:
        """Until some buffer space is freed; BufferFullError once `deadline` (time.monotonic) passes."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise self._buffer_full()
        try:
            await asyncio.wait_for(self._space_freed.wait(), remaining)
        except TimeoutError:
            raise self._buffer_full() from None

    def _check_size(self, size: int) -> None:
        if self._closed:
            raise UnavailableError("the producer is closed")
        if size > self._config.buffer_bytes:
            raise RecordTooLargeError(
                f"a {size}-byte record cannot fit the producer's buffer_bytes ({self._config.buffer_bytes})"
            )

    def _buffer_full(self) -> BufferFullError:
        return BufferFullError(
            f"the producer's buffer ({self._config.buffer_bytes} bytes) stayed full for max_block_ms "
            f"({self._config.max_block_ms:g} ms): the broker is slower than the producer or unreachable; "
            "raise buffer_bytes, slow down, or check the broker"
        )

    def _wait_for_space_locked(self, size: int) -> None:
        self._check_size(size)
        if self._buffered + size <= self._config.buffer_bytes:
            return
        if self.on_loop_thread():  # a delivery callback: waiting would stop what frees the space
            raise self._buffer_full()
        deadline = time.monotonic() + self._config.max_block_ms / 1000
        while self._buffered + size > self._config.buffer_bytes:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._space.wait(remaining):
                raise self._buffer_full()
            self._check_size(size)

    def _close_batch(self, tp: TP, batch: Batch) -> None:
        """Move a batch from accumulating to its partition's send queue (lock held)."""
        del self._open[tp]
        batch.count = len(batch.frames)
        part = self._parts.get(tp)
        if part is None:
            part = self._parts[tp] = _Partition()
        part.queue.append(batch)
        self._mark_ready(tp, part)
        topic, partition = tp
        if self._sticky.get(topic) == partition:
            self._sticky[topic] = (partition + 1) % self._partitions[topic]

    def _mark_ready(self, tp: TP, part: _Partition) -> None:
        if (
            part.queue
            and not part.is_ready
            and not part.held
            and not part.paused
            and part.in_flight < self._per_partition_cap
        ):
            part.is_ready = True
            self._ready.append(tp)

    # -- event loop: batching ---------------------------------------------------------

    def start(self) -> None:
        self._loop_thread = threading.get_ident()
        self._runner = asyncio.create_task(self._run())

    async def load_partitions(self, topic: str) -> int:
        if topic not in self._partitions:
            request = broker_pb2.GetMetadataRequest(topics=[topic])
            # Like send() itself, waits up to max_block_ms for a broker that is (re)starting.
            timeout = self._config.max_block_ms / 1000
            response = await call(self._stub.GetMetadata(request, timeout=timeout, wait_for_ready=True))
            self._partitions[topic] = len(response.topics[0].partitions)
        return self._partitions[topic]

    def _drain(self, flush: bool = False) -> None:
        """Send what should leave now: everything when idle (or flushing), else what lingered long enough."""
        now = time.monotonic()
        with self._lock:
            self._drain_scheduled = False
            idle = not self._in_flight and not self._ready
            next_deadline: float | None = None
            for tp, batch in list(self._open.items()):
                deadline = batch.created + self._linger_s
                if flush or idle or now >= deadline:
                    self._close_batch(tp, batch)
                elif next_deadline is None or deadline < next_deadline:
                    next_deadline = deadline
            has_work = bool(self._ready)
        if next_deadline is not None and self._linger_timer is None:
            self._linger_timer = self._loop.call_later(next_deadline - now, self._on_linger)
        if has_work:
            self._wakeup.set()

    def _on_linger(self) -> None:
        self._linger_timer = None
        self._drain()

    def _next_to_send(self) -> Batch | None:
        """The next batch to write, now counted in flight (lock held)."""
        if len(self._in_flight) >= self._config.max_in_flight or not self._ready:
            return None
        tp = self._ready.popleft()
        part = self._parts[tp]
        part.is_ready = False
        batch = part.queue.popleft()
        if self._idempotent and batch.sequence is None:
            batch.sequence = part.next_sequence
            part.next_sequence += batch.count
        part.in_flight += 1
        self._in_flight.append(batch)
        self._mark_ready(tp, part)
        return batch

    # -- event loop: the connection ---------------------------------------------------

    async def _run(self) -> None:
        """Keep a ProduceStream open while there is work; reconnect with backoff when it breaks."""
        failures = 0
        while True:
            await self._wakeup.wait()
            self._expire_queued()
            error: TidelogError | None
            try:
                if self._idempotent and (self._producer_id is None or self._sequences_unknown):
                    await self._new_producer_id()
                acknowledged = await self._pump(self._produce_stream())
                error = None
            except _StreamBroken as broken:
                error, acknowledged = broken.error, broken.acknowledged
            except grpc.aio.AioRpcError as err:  # InitProducer
                error, acknowledged = from_rpc_error(err), 0
            if error is None:
                return
            failures = 0 if acknowledged else failures + 1
            self._on_stream_broken(error)
            delay = self._backoff(failures)
            log.warning("produce stream lost (%s), reconnecting in %d ms", error, round(delay * 1000))
            await asyncio.sleep(delay)

    def _backoff(self, attempt: int) -> float:
        return backoff_delay(attempt, self._config.retry_backoff_ms, self._config.retry_backoff_max_ms)

    async def _new_producer_id(self) -> None:
        """A fresh producer id; every partition's sequence starts again at 0 (nothing is in flight)."""
        response = await self._stub.InitProducer(
            broker_pb2.InitProducerRequest(), timeout=self._config.delivery_timeout_ms / 1000
        )
        with self._lock:
            self._producer_id = response.producer_id
            self._sequences_unknown = False
            for part in self._parts.values():
                part.next_sequence = 0
                for batch in part.queue:
                    batch.sequence = None

    async def _pump(self, stream: Any) -> int:
        """Write batches and read answers until the stream breaks (raises _StreamBroken) or the core closes."""
        counter = _Counter()
        tasks = [
            asyncio.create_task(self._send_batches(stream)),
            asyncio.create_task(self._receive_answers(stream, counter)),
            asyncio.create_task(self._watch_answers()),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            stream.cancel()
        for task in done:
            err = task.exception()
            error = _as_error(err) if err is not None else UnavailableError("the broker ended the produce stream")
            raise _StreamBroken(error, counter.value)
        return counter.value  # pragma: no cover - one task always finishes first

    async def _send_batches(self, stream: Any) -> None:
        request_id = 0
        while True:
            with self._lock:
                batch = self._next_to_send()
            if batch is None:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            request_id += 1
            batch.sent_at = time.monotonic()
            await stream.write(batch.encode(request_id, self._producer_id))

    async def _watch_answers(self) -> None:
        """End a stream whose oldest request went unanswered for request_timeout_ms (a silent broker or network)."""
        timeout_s = self._config.request_timeout_ms / 1000
        while True:
            oldest = self._in_flight[0].sent_at if self._in_flight else time.monotonic()
            waited = time.monotonic() - oldest
            if waited > timeout_s:
                raise DeadlineExceededError(
                    f"no answer from the broker for {waited:.1f}s (request_timeout_ms): reconnecting"
                )
            await asyncio.sleep(min(timeout_s - waited, 1.0) + 0.001)

    async def _receive_answers(self, stream: Any, counter: _Counter) -> None:
        async for response in stream:
            batch = self._in_flight.popleft()
            if response.HasField("error"):
                e = response.error
                self._on_refused(batch, make_error(code_from_int(e.code), e.message, e.reason, e.metadata))
            else:
                counter.value += 1
                result = response.results[0]
                self._on_written(batch, result.base_offset, result.log_append_time_ms)
            self._drain()

    # -- event loop: outcomes ---------------------------------------------------------

    def _on_written(self, batch: Batch, base_offset: int, append_time_ms: int) -> None:
        with self._lock:
            part = self._parts[(batch.topic, batch.partition)]
            part.in_flight -= 1
            part.attempts = 0
            self._after_answer((batch.topic, batch.partition), part)
        self._finish(batch, base_offset=base_offset, append_time_ms=append_time_ms)

    def _on_refused(self, batch: Batch, error: TidelogError) -> None:
        tp = (batch.topic, batch.partition)
        failed: TidelogError | None = None
        with self._lock:
            part = self._parts[tp]
            part.in_flight -= 1
            part.held = True
            if error.reason == Reason.OUT_OF_ORDER_SEQUENCE:
                # Behind a refused batch (then the broker expects the first batch to resend), after a
                # batch that failed for good, or the broker lost records (a crash with --fsync interval).
                expected = int(error.metadata.get("expected_sequence", batch.sequence or 0))
                first_to_resend = min(b.sequence or 0 for b in [*part.retry, batch])
                if expected != first_to_resend:
                    log.warning("%s/%d: sequence reset by the broker: %s", batch.topic, batch.partition, error)
                    part.renumber_from = expected if part.renumber_from is None else min(part.renumber_from, expected)
                part.retry.append(batch)
            else:
                if error.reason == Reason.TOPIC_NOT_FOUND:
                    self._partitions.pop(batch.topic, None)
                if error.retriable and not self._expired(batch):
                    part.attempts += 1
                    part.retry.append(batch)
                else:
                    failed = error
            self._after_answer(tp, part)
        if failed is not None:
            self._finish(batch, error=failed)

    def _after_answer(self, tp: TP, part: _Partition) -> None:
        """Release a hold once nothing of the partition is in flight (lock held)."""
        if part.held and part.in_flight == 0:
            part.held = False
            if self._idempotent and part.renumber_from is not None:
                part.next_sequence = part.renumber_from
                part.renumber_from = None
                for batch in part.retry:
                    batch.sequence = None
            part.queue.extendleft(reversed(part.retry))
            part.retry = []
            if part.attempts and not part.paused:
                part.paused = True
                self._loop.call_later(self._backoff(part.attempts), self._end_pause, tp, part)
        self._mark_ready(tp, part)

    def _end_pause(self, tp: TP, part: _Partition) -> None:
        with self._lock:
            part.paused = False
            self._mark_ready(tp, part)
        self._drain()

    def _on_stream_broken(self, error: TidelogError) -> None:
        """Take back what was in flight: resend it (same sequences), or fail it if retrying cannot help."""
        reconnect = error.retriable
        failed: list[Batch] = []
        with self._lock:
            batches = list(self._in_flight)
            self._in_flight.clear()
            self._ready.clear()
            for batch in batches:
                part = self._parts[(batch.topic, batch.partition)]
                part.in_flight -= 1
                if part.held:
                    part.retry.append(batch)  # sent after a refused batch, so not written: resend in order
            for batch in reversed(batches):
                part = self._parts[(batch.topic, batch.partition)]
                if part.held:
                    continue
                if reconnect:
                    part.queue.appendleft(batch)
                else:
                    failed.append(batch)  # it may have been written: its sequence is not used again
            for tp, part in self._parts.items():
                part.is_ready = False
                self._after_answer(tp, part)
            has_work = bool(self._ready)
        for batch in reversed(failed):
            self._finish(batch, error=error)
        if has_work:
            self._wakeup.set()

    def _expired(self, batch: Batch) -> bool:
        return time.monotonic() - batch.created > self._config.delivery_timeout_ms / 1000

    def _expire_queued(self) -> None:
        """Fail queued batches older than delivery_timeout_ms (nothing is in flight when this runs)."""
        expired: list[Batch] = []
        with self._lock:
            for part in self._parts.values():
                while part.queue and self._expired(part.queue[0]):
                    batch = part.queue.popleft()
                    if batch.sequence is not None:  # sent before: the broker may have it, sequences are unknown
                        self._sequences_unknown = True
                    expired.append(batch)
        for batch in expired:
            self._finish(
                batch,
                error=DeliveryTimeoutError(
                    f"{batch.count} record(s) for {batch.topic}/{batch.partition} not acknowledged within "
                    f"delivery_timeout_ms ({self._config.delivery_timeout_ms:g} ms): is the broker reachable?"
                ),
            )

    def _finish(
        self, batch: Batch, base_offset: int = -1, error: TidelogError | None = None, append_time_ms: int = 0
    ) -> None:
        with self._lock:
            self._unfinished.discard(batch)
            self._buffered -= batch.size
            self._space.notify_all()
        self._space_freed.set()
        batch.finish(base_offset, error, append_time_ms)

    # -- event loop: flush and close --------------------------------------------------

    def metrics(self) -> dict[str, int]:
        with self._lock:
            return {
                "buffered_bytes": self._buffered,
                "buffer_bytes": self._buffer_bytes,
                "in_flight_requests": len(self._in_flight),
                "queued_batches": sum(len(p.queue) + len(p.retry) for p in self._parts.values()),
                "open_batches": len(self._open),
            }

    def unfinished(self) -> list[Batch]:
        with self._lock:
            return list(self._unfinished)

    async def flush(self) -> None:
        self._drain(flush=True)
        pending = self.unfinished()
        if pending:
            await asyncio.gather(*(b.aio_future() for b in pending))

    async def close(self, timeout: float | None = None) -> None:
        """Deliver what is queued (up to `timeout` seconds), fail the rest, and release the connection."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.flush(), timeout)
        with self._lock:
            self._closed = True
            self._space.notify_all()
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
        for batch in self.unfinished():
            self._finish(batch, error=UnavailableError("the producer was closed before the record was delivered"))
        if self._linger_timer is not None:
            self._linger_timer.cancel()
        await self._channel.close()


class MetadataMissing(LookupError):
    """The topic's partition count is not known (any more): load it and append again."""


class _Counter:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0


class _StreamBroken(Exception):
    def __init__(self, error: TidelogError, acknowledged: int) -> None:
        super().__init__(str(error))
        self.error = error
        self.acknowledged = acknowledged


def _as_error(err: BaseException) -> TidelogError:
    if isinstance(err, grpc.aio.AioRpcError):
        return from_rpc_error(err)
    if isinstance(err, TidelogError):
        return err
    return UnavailableError(f"the produce stream failed: {err!r}")
