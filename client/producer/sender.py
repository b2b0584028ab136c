"""The sender: one pipelined ProduceStream to one broker, answered in order.

It writes the batches the delivery side hands it (several in flight), reads the answers, and hands
each back; a stream whose oldest request goes unanswered for `request_timeout_ms` is ended. When the
stream breaks (broker restart, network), the delivery side takes back what was in flight and the
sender reconnects with exponential backoff and jitter. A producer has one sender per broker it
writes to (the leaders of its partitions).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

import grpc

from tidelog._channel import backoff_delay
from tidelog.errors import DeadlineExceededError, TidelogError, UnavailableError, from_rpc_error
from tidelog.producer._batch import Batch, Compression
from tidelog.v1 import broker_pb2

log = logging.getLogger(__name__)


class Delivery(Protocol):
    """What the sender needs of the producer's delivery side."""

    @property
    def producer_id(self) -> int | None: ...

    @property
    def acks(self) -> int:
        """The ProduceRequest's acks value."""
        ...

    @property
    def compression(self) -> Compression | None:
        """How batches are compressed (None: they are not)."""
        ...

    def next_to_send(self) -> Batch | None:
        """The next batch to write, now counted in flight; None when there is none."""
        ...

    def oldest_sent_at(self) -> float | None:
        """When the oldest request in flight was written (time.monotonic), or None."""
        ...

    def on_answer(self, response: broker_pb2.ProduceResponse) -> bool:
        """The answer to the oldest request in flight; True if it was written."""
        ...

    def on_stream_broken(self, error: TidelogError) -> None: ...

    def expire_queued(self) -> None: ...


def produce_stream(channel: grpc.aio.Channel) -> Callable[[], Any]:
    """Opens a ProduceStream on `channel` that takes requests already encoded (Batch.encode)."""
    opener: Callable[[], Any] = channel.stream_stream(
        "/tidelog.v1.Broker/ProduceStream",
        request_serializer=None,
        response_deserializer=broker_pb2.ProduceResponse.FromString,
    )
    return opener


class Sender:
    def __init__(
        self,
        open_stream: Callable[[], Any],
        delivery: Delivery,
        *,
        request_timeout_ms: float,
        backoff_ms: tuple[float, float],
    ) -> None:
        self._produce_stream = open_stream
        self._delivery = delivery
        self._request_timeout_s = request_timeout_ms / 1000
        self._backoff_ms = backoff_ms
        self.wakeup = asyncio.Event()  # set when there is something to send

    def backoff(self, attempt: int) -> float:
        return backoff_delay(attempt, *self._backoff_ms)

    async def run(self) -> None:
        """Keep a ProduceStream open while there is work; reconnect with backoff when it breaks."""
        failures = 0
        while True:
            await self.wakeup.wait()
            self._delivery.expire_queued()
            error: TidelogError | None
            try:
                acknowledged = await self._pump(self._produce_stream())
                error = None
            except _StreamBroken as broken:
                error, acknowledged = broken.error, broken.acknowledged
            if error is None:
                return
            failures = 0 if acknowledged else failures + 1
            self._delivery.on_stream_broken(error)
            delay = self.backoff(failures)
            log.warning("produce stream lost (%s), reconnecting in %d ms", error, round(delay * 1000))
            await asyncio.sleep(delay)

    async def _pump(self, stream: Any) -> int:
        """Write batches and read answers until the stream breaks (raises _StreamBroken) or is cancelled."""
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
            batch = self._delivery.next_to_send()
            if batch is None:
                self.wakeup.clear()
                await self.wakeup.wait()
                continue
            request_id += 1
            batch.sent_at = time.monotonic()
            delivery = self._delivery
            await stream.write(batch.encode(request_id, delivery.producer_id, delivery.acks, delivery.compression))

    async def _watch_answers(self) -> None:
        """End a stream whose oldest request went unanswered for request_timeout_ms (a silent broker or network)."""
        timeout_s = self._request_timeout_s
        while True:
            oldest = self._delivery.oldest_sent_at()
            waited = time.monotonic() - oldest if oldest is not None else 0.0
            if waited > timeout_s:
                raise DeadlineExceededError(
                    f"no answer from the broker for {waited:.1f}s (request_timeout_ms): reconnecting"
                )
            await asyncio.sleep(min(timeout_s - waited, 1.0) + 0.001)

    async def _receive_answers(self, stream: Any, counter: _Counter) -> None:
        async for response in stream:
            if self._delivery.on_answer(response):
                counter.value += 1


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
