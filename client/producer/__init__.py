"""Producer and AsyncProducer: send records; batching, retries and idempotence happen behind.

`send()` costs a few microseconds: the record is encoded straight into its
partition's batch and a light `RecordFuture` comes back; the batch leaves over a
pipelined ProduceStream (see this package's _core, accumulator, idempotence and sender modules).

Settings (keyword arguments of both classes):

- ``linger_ms`` (5): how long a batch may wait for more records while earlier ones are in flight.
- ``batch_bytes`` (256 KiB): a batch this full leaves at once.
- ``buffer_bytes`` (32 MiB): records not yet acknowledged may take this much memory; when
  full, ``send()`` waits up to ``max_block_ms`` (60 000) and then raises BufferFullError.
- ``enable_idempotence`` (True): a producer id and per-partition sequence numbers make
  every retry write a batch at most once and in order.
- ``delivery_timeout_ms`` (120 000): how long a record may take, retries included,
  before it fails with DeliveryTimeoutError; ``retry_backoff_ms`` (100) and
  ``retry_backoff_max_ms`` (2 000) bound the exponential backoff between reconnects;
  a stream with a request unanswered for ``request_timeout_ms`` (30 000) is reconnected.
- ``max_in_flight`` (16): requests awaiting an answer per broker (at most 5 per partition with
  idempotence).
- ``acks`` ("all"): in a cluster, ``"all"`` answers once every in-sync replica has the records
  (refused up front below the topic's ``min.insync.replicas``); ``"leader"`` once the leader has
  committed them. A single broker answers both after its own commit.
- ``compression`` ("none"): ``"zstd"`` or ``"lz4"`` sends each batch as one frame of that codec;
  the broker stores and serves it as sent, and consumers open it.
- ``key_serializer``, ``value_serializer``: callables to bytes (tidelog.serde); bytes by default.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any

from tidelog._channel import DEFAULT_BOOTSTRAP, Security
from tidelog._loop import LoopThread
from tidelog._wire import encode_record, encode_values
from tidelog.errors import TidelogError
from tidelog.producer._batch import DeliveryCallback, RecordFuture, RecordFutures
from tidelog.producer._core import MetadataMissing, ProducerConfig, ProducerCore
from tidelog.serde import Serializer, bytes_serializer, header_items
from tidelog.types import RecordMetadata

Headers = Mapping[str, str | bytes] | Sequence[tuple[str, str | bytes]]

__all__ = ["AsyncProducer", "DeliveryCallback", "Headers", "Producer", "RecordFuture", "RecordFutures"]


class _Encoder:
    """Serializers and the record encoding shared by both producers."""

    def __init__(self, key_serializer: Serializer | None, value_serializer: Serializer | None) -> None:
        self._key_serializer = key_serializer
        self._value_serializer = value_serializer

    def encode(
        self, key: Any, value: Any, headers: Headers | None, timestamp_ms: int | None
    ) -> tuple[bytes | None, bytes, int]:
        """(key bytes, the encoded record, its timestamp)."""
        if key is not None:
            if self._key_serializer:
                key = self._key_serializer(key)
            elif type(key) is not bytes:
                key = bytes_serializer(key)
        if value is not None:
            if self._value_serializer:
                value = self._value_serializer(value)
            elif type(value) is not bytes:
                value = bytes_serializer(value)
        if timestamp_ms is None:
            timestamp_ms = time.time_ns() // 1_000_000
        elif timestamp_ms < 0:
            raise ValueError("timestamp_ms must be >= 0")
        pairs = header_items(headers) if headers else None
        return key, encode_record(key, value, pairs, timestamp_ms), timestamp_ms

    def encode_many(self, values: Sequence[Any], timestamp_ms: int | None) -> tuple[list[bytes], int]:
        """The encoded records of send_many() and their shared timestamp."""
        if timestamp_ms is None:
            timestamp_ms = time.time_ns() // 1_000_000
        elif timestamp_ms < 0:
            raise ValueError("timestamp_ms must be >= 0")
        if self._value_serializer:
            values = [None if v is None else self._value_serializer(v) for v in values]
        elif not all(type(v) is bytes for v in values):
            values = [None if v is None else bytes_serializer(v) for v in values]
        if None in values:
            return [encode_record(None, v, None, timestamp_ms) for v in values], timestamp_ms
        return encode_values(values, timestamp_ms), timestamp_ms


class AsyncProducer:
    """Produce from asyncio code. Settings as in the module docstring.

    >>> async with AsyncProducer("127.0.0.1:50051") as producer:
    ...     future = await producer.send("orders", b"hello", key=b"customer-1")
    ...     metadata = await future
    """

    def __init__(
        self,
        bootstrap: str = DEFAULT_BOOTSTRAP,
        *,
        key_serializer: Serializer | None = None,
        value_serializer: Serializer | None = None,
        **settings: Any,
    ) -> None:
        self._security = Security.take(settings)
        self._config = ProducerConfig(**settings)
        self._bootstrap = bootstrap
        self._encoder = _Encoder(key_serializer, value_serializer)
        self._core: ProducerCore | None = None

    def _ensure_core(self) -> ProducerCore:
        if self._core is None:
            self._core = ProducerCore(self._bootstrap, asyncio.get_running_loop(), self._config, self._security)
            self._core.start()
        return self._core

    async def send(
        self,
        topic: str,
        value: Any,
        key: Any = None,
        headers: Headers | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        on_delivery: DeliveryCallback | None = None,
    ) -> RecordFuture:
        """Queue a record; returns with an awaitable RecordFuture once it is in a batch.

        Waits (up to ``max_block_ms``) only when the buffer is full or the topic's
        partition count is not known yet.
        """
        core = self._ensure_core()
        key_bytes, frame, ts = self._encoder.encode(key, value, headers, timestamp_ms)
        try:
            future = await core.append_async(topic, partition, key_bytes, frame, ts)
        except MetadataMissing:
            await core.load_partitions(topic)
            future = await core.append_async(topic, partition, key_bytes, frame, ts)
        if on_delivery is not None:
            future.add_done_callback(on_delivery)
        return future

    async def send_many(
        self, topic: str, values: Sequence[Any], partition: int | None = None, timestamp_ms: int | None = None
    ) -> RecordFutures:
        """Queue keyless records, in order, to one partition (the sticky one when None): the fast path.

        Returns a RecordFutures (a sequence of RecordFuture); `await` it for all their RecordMetadata.
        """
        core = self._ensure_core()
        frames, ts = self._encoder.encode_many(values, timestamp_ms)
        deadline = time.monotonic() + self._config.max_block_ms / 1000
        while True:
            try:
                futures = core.append_many(topic, partition, frames, ts, block=False)
            except MetadataMissing:
                await core.load_partitions(topic)
                continue
            if futures is not None:
                return futures
            await core.wait_for_space(deadline)

    async def send_and_wait(self, topic: str, value: Any, **kwargs: Any) -> RecordMetadata:
        """Send one record and wait for its acknowledgement."""
        return await (await self.send(topic, value, **kwargs))

    async def partitions_for(self, topic: str) -> int:
        """How many partitions `topic` has (cached)."""
        return await self._ensure_core().load_partitions(topic)

    def metrics(self) -> dict[str, int]:
        """Buffer use and queue depths: buffered_bytes, buffer_bytes, in_flight_requests, queued_batches,
        open_batches."""
        return self._core.metrics() if self._core is not None else {}

    async def flush(self, timeout: float | None = None) -> None:
        """Send everything queued and wait until each record is acknowledged or has failed.

        Raises TimeoutError after `timeout` seconds (the records stay queued)."""
        if self._core is not None:
            await asyncio.wait_for(self._core.flush(), timeout)

    async def close(self, timeout: float | None = None) -> None:
        """Flush (up to `timeout` seconds; records still undelivered then fail) and disconnect."""
        if self._core is not None:
            await self._core.close(timeout)

    async def __aenter__(self) -> AsyncProducer:
        self._ensure_core()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class Producer:
    """Produce records (blocking API, I/O on a background thread). Settings as in the module docstring.

    >>> with Producer("127.0.0.1:50051") as producer:
    ...     future = producer.send("orders", b"hello", key=b"customer-1")
    ...     print(future.result(timeout=10).offset)
    """

    def __init__(
        self,
        bootstrap: str = DEFAULT_BOOTSTRAP,
        *,
        key_serializer: Serializer | None = None,
        value_serializer: Serializer | None = None,
        **settings: Any,
    ) -> None:
        security = Security.take(settings)
        config = ProducerConfig(**settings)
        self._encoder = _Encoder(key_serializer, value_serializer)
        self._io = LoopThread("tidelog-producer")
        self._core = self._io.run(self._open(bootstrap, config, security))

    @staticmethod
    async def _open(bootstrap: str, config: ProducerConfig, security: Security) -> ProducerCore:
        core = ProducerCore(bootstrap, asyncio.get_running_loop(), config, security)
        core.start()
        return core

    def send(
        self,
        topic: str,
        value: Any,
        key: Any = None,
        headers: Headers | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        on_delivery: DeliveryCallback | None = None,
    ) -> RecordFuture:
        """Queue a record; returns at once with a RecordFuture (`result(timeout)` waits for the ack).

        Blocks (up to ``max_block_ms``) only when the buffer is full or the topic's
        partition count is not known yet. `on_delivery(future)` runs on the
        producer's I/O thread once the record is acknowledged or failed.
        """
        key_bytes, frame, ts = self._encoder.encode(key, value, headers, timestamp_ms)
        try:
            future = self._core.append(topic, partition, key_bytes, frame, ts)
        except MetadataMissing:
            self._load_partitions(topic)
            future = self._core.append(topic, partition, key_bytes, frame, ts)
        assert future is not None  # a blocking append returns a future or raises
        if on_delivery is not None:
            future.add_done_callback(on_delivery)
        return future

    def send_many(
        self, topic: str, values: Sequence[Any], partition: int | None = None, timestamp_ms: int | None = None
    ) -> RecordFutures:
        """Queue keyless records, in order, to one partition (the sticky one when None): the fast path.

        Encodes them in one pass and takes the producer's lock once, so it costs a fraction of
        calling send() for each. Returns a RecordFutures: a sequence of one RecordFuture per value,
        made when indexed, whose `result(timeout)` waits for all and gives their RecordMetadata.
        """
        frames, ts = self._encoder.encode_many(values, timestamp_ms)
        try:
            futures = self._core.append_many(topic, partition, frames, ts)
        except MetadataMissing:
            self._load_partitions(topic)
            futures = self._core.append_many(topic, partition, frames, ts)
        assert futures is not None  # a blocking append returns futures or raises
        return futures

    def _load_partitions(self, topic: str) -> int:
        if self._core.on_loop_thread():
            raise TidelogError(
                f"send() from a delivery callback cannot look up topic {topic!r}: send to it once from "
                "another thread first, or call partitions_for() before"
            )
        return self._io.run(self._core.load_partitions(topic))

    def send_and_wait(self, topic: str, value: Any, timeout: float | None = None, **kwargs: Any) -> RecordMetadata:
        """Send one record and wait for its acknowledgement."""
        return self.send(topic, value, **kwargs).result(timeout)

    def partitions_for(self, topic: str) -> int:
        """How many partitions `topic` has (cached)."""
        return self._load_partitions(topic)

    def metrics(self) -> dict[str, int]:
        """Buffer use and queue depths: buffered_bytes, buffer_bytes, in_flight_requests, queued_batches,
        open_batches."""
        return self._core.metrics()

    def flush(self, timeout: float | None = None) -> None:
        """Send everything queued and wait until each record is acknowledged or has failed."""
        self._io.run(self._core.flush(), timeout)

    def close(self, timeout: float | None = None) -> None:
        """Flush (up to `timeout` seconds; records still undelivered then fail) and disconnect."""
        if self._io.loop.is_closed():
            return
        self._io.run(self._core.close(timeout))
        self._io.close()

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
