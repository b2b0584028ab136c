"""The producer's engine: the delivery of closed batches, wired to its parts.

The parts, each a module of this package: the accumulator (records into batches, within the buffer;
any thread), idempotence (the producer id and sequences), the sender (a ProduceStream to one broker),
and the client's routing (which broker leads each partition). This module keeps each partition's
delivery queue and acts on every answer. Threads: appends run on any thread (the caller's) under one
lock; everything else runs on the producer's event loop.

Routes: a partition's batches go to its leader, through that broker's route (a sender, the
partitions ready for it, its requests in flight; `max_in_flight` per route, as Kafka's per
connection). A NOT_LEADER refusal names the new leader, and the retried batch goes there; a batch
queued for a route whose partition has moved is passed on when the route reaches it.

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
- A new producer id (at start, or after a sent batch expired): nothing is sent until every route
  has nothing in flight, then every partition's sequence starts again at 0.
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
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tidelog._channel import Security, backoff_delay, call
from tidelog._routing import TP, Routing
from tidelog.common import compression
from tidelog.common.compression import Codecs
from tidelog.common.reasons import Reason
from tidelog.errors import (
    DeliveryTimeoutError,
    TidelogError,
    UnavailableError,
    code_from_int,
    make_error,
)
from tidelog.producer._batch import Batch, Compression, RecordFuture
from tidelog.producer.accumulator import Accumulator
from tidelog.producer.accumulator import MetadataMissing as MetadataMissing  # for the public producer
from tidelog.producer.idempotence import IN_FLIGHT_PER_PARTITION, Idempotence, PartitionDelivery
from tidelog.producer.sender import Sender, produce_stream
from tidelog.v1 import broker_pb2

log = logging.getLogger(__name__)
ACKS = {"all": broker_pb2.ACKS_ALL, "leader": broker_pb2.ACKS_LEADER}
WATCH_LEADERS_EVERY_S = 0.25
WATCH_LEADERS_TIMES = 240  # a minute: leases are shorter than that


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
    acks: str = "all"
    compression: str = "none"

    def __post_init__(self) -> None:
        if self.acks not in ACKS:
            raise ValueError(f"acks must be 'all' or 'leader', not {self.acks!r}")
        if self.compression not in compression.NAMES:
            raise ValueError(f"compression must be one of {sorted(compression.NAMES)}, not {self.compression!r}")
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


class _Route:
    """One broker's connection: its sender, and its requests in flight (oldest first: the stream
    answers in order). The delivery side of its sender (sender.Delivery)."""

    def __init__(self, core: ProducerCore, key: str) -> None:
        self.core = core
        self.key = key
        self.in_flight: collections.deque[Batch] = collections.deque()
        config = core.config
        self.sender = Sender(
            core.open_stream(key),
            self,
            request_timeout_ms=config.request_timeout_ms,
            backoff_ms=(config.retry_backoff_ms, config.retry_backoff_max_ms),
        )
        self.task = asyncio.create_task(self.sender.run())

    @property
    def producer_id(self) -> int | None:
        return self.core.producer_id

    @property
    def acks(self) -> int:
        return ACKS[self.core.config.acks]

    @property
    def compression(self) -> Compression | None:
        return self.core.compression

    def next_to_send(self) -> Batch | None:
        return self.core.next_to_send(self)

    def oldest_sent_at(self) -> float | None:
        return self.in_flight[0].sent_at if self.in_flight else None

    def on_answer(self, response: broker_pb2.ProduceResponse) -> bool:
        return self.core.on_answer(self, response)

    def on_stream_broken(self, error: TidelogError) -> None:
        self.core.on_stream_broken(self, error)

    def expire_queued(self) -> None:
        self.core.expire_queued()


class ProducerCore:
    def __init__(
        self, bootstrap: str, loop: asyncio.AbstractEventLoop, config: ProducerConfig, security: Security | None = None
    ) -> None:
        self._loop = loop
        self.config = config
        codec = compression.NAMES[config.compression]
        # Batches are compressed as their senders write them, all on this loop: one set of compressors.
        self.compression: Compression | None = (codec, Codecs()) if codec != compression.NONE else None
        self._idempotence = Idempotence(config.enable_idempotence)
        self._per_partition_cap = IN_FLIGHT_PER_PARTITION if config.enable_idempotence else config.max_in_flight
        self._routing = Routing(bootstrap, security, config.max_block_ms / 1000)
        self._lock = threading.Lock()
        self._loop_thread = threading.get_ident()
        self._accumulator = Accumulator(
            lock=self._lock,
            batch_bytes=config.batch_bytes,
            buffer_bytes=config.buffer_bytes,
            max_block_ms=config.max_block_ms,
            linger_s=config.linger_ms / 1000,
            on_close=self._queue_closed,
            schedule_drain=lambda: self._loop.call_soon_threadsafe(self._drain),
            on_loop_thread=self.on_loop_thread,
            backlogged=self._backlogged,
        )
        # The hot path of every send goes straight to the accumulator.
        self.append = self._accumulator.append
        self.append_many = self._accumulator.append_many
        self.wait_for_space = self._accumulator.wait_for_space
        self._parts: dict[TP, PartitionDelivery] = {}
        self._ready: dict[str, collections.deque[TP]] = {}  # by route: partitions with a batch to send
        self._routes: dict[str, _Route] = {}
        self._linger_timer: asyncio.TimerHandle | None = None
        self._producer_id_task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._started = False
        self._routing.on_change.append(self._on_leaders_changed)
        self._watching: set[str] = set()  # routes whose broker is out of reach: the leaders are watched

    def open_stream(self, key: str) -> Callable[[], Any]:
        """A ProduceStream opener for the route `key` (tests put a model broker here)."""
        return produce_stream(self._routing.channel(key))

    def on_loop_thread(self) -> bool:
        return threading.get_ident() == self._loop_thread

    async def append_async(
        self, topic: str, partition: int | None, key: bytes | None, frame: bytes, ts: int
    ) -> RecordFuture:
        """`append` for coroutines on the producer's loop: waits for buffer space without blocking the loop."""
        deadline = time.monotonic() + self.config.max_block_ms / 1000
        while True:
            future = self.append(topic, partition, key, frame, ts, block=False)
            if future is not None:
                return future
            await self.wait_for_space(deadline)

    def _backlogged(self, tp: TP) -> bool:
        part = self._parts.get(tp)
        return part is not None and bool(part.queue)

    def _queue_closed(self, tp: TP, batch: Batch) -> None:
        """A closed batch joins its partition's delivery queue (lock held)."""
        part = self._parts.get(tp)
        if part is None:
            part = self._parts[tp] = PartitionDelivery()
        part.queue.append(batch)
        self._mark_ready(tp, part)

    def _mark_ready(self, tp: TP, part: PartitionDelivery) -> None:
        """List the partition with its leader's route when it has a batch it may send (lock held)."""
        if (
            part.queue
            and not part.is_ready
            and not part.held
            and not part.paused
            and part.in_flight < self._per_partition_cap
        ):
            part.is_ready = True
            key = self._routing.key_for(tp)
            ready = self._ready.get(key)
            if ready is None:
                ready = self._ready[key] = collections.deque()
            ready.append(tp)

    # -- event loop: batching ---------------------------------------------------------

    def start(self) -> None:
        self._loop_thread = threading.get_ident()
        self._started = True
        self._drain()

    async def load_partitions(self, topic: str) -> int:
        partitions = self._accumulator.partitions
        if topic not in partitions:
            # Like send() itself, waits up to max_block_ms for a broker that is (re)starting.
            response = await self._routing.metadata([topic])
            partitions[topic] = len(response.topics[0].partitions)
        return partitions[topic]

    def _drain(self, flush: bool = False) -> None:
        """Send what should leave now: everything when idle (or flushing), else what lingered long enough."""
        if not self._started:
            return
        now = time.monotonic()
        with self._lock:
            self._accumulator.drain_scheduled = False
            idle = not self._in_flight_count() and not any(self._ready.values())
            next_deadline = self._accumulator.close_due(now, flush or idle)
            with_work = [key for key, ready in self._ready.items() if ready]
        if next_deadline is not None and self._linger_timer is None:
            self._linger_timer = self._loop.call_later(next_deadline - now, self._on_linger)
        self._wake(with_work)
        self._ensure_producer_id()

    def _on_leaders_changed(self) -> None:
        """A metadata refresh: partitions listed for a route that no longer leads them move now."""
        with self._lock:
            for key, ready in list(self._ready.items()):
                moving = [tp for tp in ready if self._routing.key_for(tp) != key]
                if not moving:
                    continue
                self._ready[key] = collections.deque(tp for tp in ready if self._routing.key_for(tp) == key)
                for tp in moving:
                    part = self._parts[tp]
                    part.is_ready = False
                    self._mark_ready(tp, part)
        self._drain()

    async def _watch_leaders(self, key: str) -> None:
        """While partitions wait for the route of a broker out of reach, refresh the metadata every
        quarter second (not at the reconnect's backoff): once another broker leads them, they move."""
        try:
            for _ in range(WATCH_LEADERS_TIMES):
                await asyncio.sleep(WATCH_LEADERS_EVERY_S)
                if not self._ready.get(key):
                    return
                self._routing.refresh_soon()
        finally:
            self._watching.discard(key)

    def _wake(self, keys: list[str]) -> None:
        for key in keys:
            route = self._routes.get(key)
            if route is None:
                route = self._routes[key] = _Route(self, key)
            route.sender.wakeup.set()

    def _in_flight_count(self) -> int:
        return sum(len(route.in_flight) for route in self._routes.values())

    def _on_linger(self) -> None:
        self._linger_timer = None
        self._drain()

    # -- event loop: the producer id --------------------------------------------------

    @property
    def producer_id(self) -> int | None:
        return self._idempotence.producer_id

    def _ensure_producer_id(self) -> None:
        """Ask for a producer id once one is needed and nothing is in flight (routes send nothing while
        one is needed, so every sequence can start again at 0)."""
        if not self._idempotence.needs_producer_id or self._in_flight_count():
            return
        if self._producer_id_task is None or self._producer_id_task.done():
            self._producer_id_task = asyncio.create_task(self._init_producer())

    async def _init_producer(self) -> None:
        failures = 0
        while self._idempotence.needs_producer_id:
            request = broker_pb2.InitProducerRequest()
            try:
                response = await call(
                    self._routing.stub.InitProducer(request, timeout=self.config.delivery_timeout_ms / 1000)
                )
            except TidelogError as error:
                if not error.retriable:
                    self._fail_queued(error)
                failures += 1
                delay = backoff_delay(failures, self.config.retry_backoff_ms, self.config.retry_backoff_max_ms)
                log.warning("no producer id (%s), asking again in %d ms", error, round(delay * 1000))
                await asyncio.sleep(delay)
                self.expire_queued()
                continue
            with self._lock:
                self._idempotence.start_over(response.producer_id, self._parts.values())
        self._drain()

    # -- what a route's sender asks (sender.Delivery) ---------------------------------

    def next_to_send(self, route: _Route) -> Batch | None:
        moved = False
        try:
            with self._lock:
                if self._idempotence.needs_producer_id or len(route.in_flight) >= self.config.max_in_flight:
                    return None
                ready = self._ready.get(route.key)
                while ready:
                    tp = ready.popleft()
                    part = self._parts[tp]
                    part.is_ready = False
                    if self._routing.key_for(tp) != route.key:  # its leader moved: to the right route
                        self._mark_ready(tp, part)
                        moved = True
                        continue
                    batch = part.queue.popleft()
                    self._idempotence.number(part, batch)
                    part.in_flight += 1
                    route.in_flight.append(batch)
                    self._mark_ready(tp, part)
                    return batch
                return None
        finally:
            if moved:
                self._loop.call_soon(self._drain)

    def on_answer(self, route: _Route, response: broker_pb2.ProduceResponse) -> bool:
        batch = route.in_flight.popleft()
        written = not response.HasField("error")
        if written:
            result = response.results[0]
            batch.durable_on, batch.leader_epoch = tuple(result.durable_on), result.leader_epoch
            self._on_written(batch, result.base_offset, result.log_append_time_ms)
        else:
            e = response.error
            self._on_refused(batch, make_error(code_from_int(e.code), e.message, e.reason, e.metadata))
        self._drain()
        return written

    # -- event loop: outcomes ---------------------------------------------------------

    def _on_written(self, batch: Batch, base_offset: int, append_time_ms: int) -> None:
        with self._lock:
            part = self._parts[(batch.topic, batch.partition)]
            part.in_flight -= 1
            part.attempts = 0
            part.rerouted = False
            self._after_answer((batch.topic, batch.partition), part)
        self._finish(batch, base_offset=base_offset, append_time_ms=append_time_ms)

    def _on_refused(self, batch: Batch, error: TidelogError) -> None:
        tp = (batch.topic, batch.partition)
        if error.reason == Reason.NOT_LEADER:
            self._routing.moved(tp, error.metadata.get("leader_address", ""))
        elif error.reason == Reason.LEADER_NOT_AVAILABLE:
            self._routing.refresh_soon()
        failed: TidelogError | None = None
        with self._lock:
            part = self._parts[tp]
            part.in_flight -= 1
            part.held = True
            if error.reason == Reason.OUT_OF_ORDER_SEQUENCE:
                self._idempotence.out_of_order(part, batch, error)
                part.retry.append(batch)
            else:
                if error.reason == Reason.TOPIC_NOT_FOUND:
                    self._accumulator.partitions.pop(batch.topic, None)
                if error.retriable and not self._expired(batch):
                    moved_to = error.metadata.get("leader_address") if error.reason == Reason.NOT_LEADER else None
                    if moved_to and not part.rerouted:  # the answer says where: go there at once, once
                        part.rerouted = True
                    else:
                        part.attempts += 1
                    part.retry.append(batch)
                else:
                    failed = error
            self._after_answer(tp, part)
        if failed is not None:
            self._finish(batch, error=failed)

    def _after_answer(self, tp: TP, part: PartitionDelivery) -> None:
        """Release a hold once nothing of the partition is in flight (lock held)."""
        if part.held and part.in_flight == 0:
            part.held = False
            self._idempotence.hold_released(part)
            part.queue.extendleft(reversed(part.retry))
            part.retry = []
            if part.attempts and not part.paused:
                part.paused = True
                delay = backoff_delay(part.attempts, self.config.retry_backoff_ms, self.config.retry_backoff_max_ms)
                self._loop.call_later(delay, self._end_pause, tp, part)
        self._mark_ready(tp, part)

    def _end_pause(self, tp: TP, part: PartitionDelivery) -> None:
        with self._lock:
            part.paused = False
            self._mark_ready(tp, part)
        self._drain()

    def on_stream_broken(self, route: _Route, error: TidelogError) -> None:
        """Take back what was in flight on the route: resend it (same sequences), or fail it if retrying
        cannot help; the partitions listed for the route are listed again (perhaps with another)."""
        reconnect = error.retriable
        failed: list[Batch] = []
        with self._lock:
            batches = list(route.in_flight)
            route.in_flight.clear()
            listed = set(self._ready.pop(route.key, ()))
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
            for tp in listed | {(b.topic, b.partition) for b in batches}:
                part = self._parts[tp]
                if tp in listed:
                    part.is_ready = False
                self._after_answer(tp, part)
            with_work = [key for key, ready in self._ready.items() if ready]
        for batch in reversed(failed):
            self._finish(batch, error=error)
        if route.key:  # a leader's connection broke: it may lead nothing now
            self._routing.refresh_soon()
            if route.key not in self._watching:
                self._watching.add(route.key)
                self._background.add(asyncio.create_task(self._watch_leaders(route.key)))
        self._wake(with_work)
        self._ensure_producer_id()

    def _expired(self, batch: Batch) -> bool:
        return time.monotonic() - batch.created > self.config.delivery_timeout_ms / 1000

    def expire_queued(self) -> None:
        """Fail queued batches older than delivery_timeout_ms (they are not in flight)."""
        expired: list[Batch] = []
        with self._lock:
            for part in self._parts.values():
                while part.queue and self._expired(part.queue[0]):
                    batch = part.queue.popleft()
                    self._idempotence.expired(batch)
                    expired.append(batch)
        for batch in expired:
            self._finish(
                batch,
                error=DeliveryTimeoutError(
                    f"{batch.count} record(s) for {batch.topic}/{batch.partition} not acknowledged within "
                    f"delivery_timeout_ms ({self.config.delivery_timeout_ms:g} ms): is the broker reachable?"
                ),
            )

    def _fail_queued(self, error: TidelogError) -> None:
        """Fail every queued batch: the broker refused what they need (a producer id), for good."""
        failed: list[Batch] = []
        with self._lock:
            for part in self._parts.values():
                failed += part.queue
                part.queue.clear()
        for batch in failed:
            self._finish(batch, error=error)

    def _finish(
        self, batch: Batch, base_offset: int = -1, error: TidelogError | None = None, append_time_ms: int = 0
    ) -> None:
        self._accumulator.release(batch)
        batch.finish(base_offset, error, append_time_ms)

    # -- event loop: flush and close --------------------------------------------------

    def metrics(self) -> dict[str, int]:
        with self._lock:
            return {
                "buffered_bytes": self._accumulator.buffered,
                "buffer_bytes": self._accumulator.buffer_bytes,
                "in_flight_requests": self._in_flight_count(),
                "queued_batches": sum(len(p.queue) + len(p.retry) for p in self._parts.values()),
                "open_batches": len(self._accumulator.open),
                "broker_connections": len(self._routes),
            }

    def unfinished(self) -> list[Batch]:
        with self._lock:
            return list(self._accumulator.unfinished)

    async def flush(self) -> None:
        self._drain(flush=True)
        pending = self.unfinished()
        if pending:
            await asyncio.gather(*(b.aio_future() for b in pending))

    async def close(self, timeout: float | None = None) -> None:
        """Deliver what is queued (up to `timeout` seconds), fail the rest, and release the connections."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.flush(), timeout)
        self._accumulator.close()
        tasks = [route.task for route in self._routes.values()] + list(self._background)
        if self._producer_id_task is not None:
            tasks.append(self._producer_id_task)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for batch in self.unfinished():
            self._finish(batch, error=UnavailableError("the producer was closed before the record was delivered"))
        if self._linger_timer is not None:
            self._linger_timer.cancel()
        await self._routing.close()
