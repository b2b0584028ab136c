"""A producer batch and the light per-record future that points into it.

Outcomes are resolved per batch (one event, one callback list), never per record:
a `RecordFuture` is just (batch, index), so `send()` allocates no Future, lock or
event of its own (DESIGN.md: a concurrent.futures.Future per record costs more
than the rest of the send path together).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Generator, Sequence
from typing import Any, overload

import crc32c

from tidelog.common.compression import Codecs, encoded_part
from tidelog.errors import TidelogError
from tidelog.types import RecordMetadata
from tidelog.v1 import broker_pb2

DeliveryCallback = Callable[["RecordFuture"], None]
log = logging.getLogger(__name__)

Compression = tuple[int, Codecs]  # a codec (tidelog.common.compression) and the compressors to use


class Batch:
    """Records bound for one partition in one request, and their shared outcome."""

    __slots__ = (
        "_aio_futures",
        "_callbacks",
        "_compressed",
        "_event",
        "append_time_ms",
        "base_offset",
        "count",
        "created",
        "durable_on",
        "error",
        "frames",
        "leader_epoch",
        "max_ts",
        "min_ts",
        "partition",
        "sent_at",
        "sequence",
        "size",
        "topic",
    )

    def __init__(self, topic: str, partition: int) -> None:
        self.topic = topic
        self.partition = partition
        self.frames: list[bytes] = []
        self.size = 0
        self.count = 0  # set when the batch closes; until then len(frames)
        self.created = time.monotonic()
        self.sent_at = 0.0
        # The first record's idempotence sequence; None until first sent (and after a sequence reset).
        self.sequence: int | None = None
        self.max_ts = 0  # the records' timestamps (a compressed batch declares them)
        self.min_ts = 1 << 62
        self._compressed: tuple[bytes, int] | None = None  # fields 8 and 9 as encoded, and their CRC
        self.base_offset = -1
        self.append_time_ms = 0
        self.durable_on: tuple[int, ...] = ()  # the broker's durability receipt, once written
        self.leader_epoch = -1
        self.error: TidelogError | None = None
        self._event = threading.Event()
        self._callbacks: list[Callable[[], None]] = []
        self._aio_futures: list[asyncio.Future[None]] = []

    def note_timestamp(self, ts: int) -> None:
        if ts > self.max_ts:
            self.max_ts = ts
        if ts < self.min_ts:
            self.min_ts = ts

    def encode(
        self, request_id: int, producer_id: int | None, acks: int = 0, compression: Compression | None = None
    ) -> bytes:
        """The ProduceRequest: the records as encoded at send() (or, with `compression`, one frame of
        them, made once for every attempt), then the header fields."""
        header = broker_pb2.ProduceRequest(
            topic=self.topic,
            partition=self.partition,
            request_id=request_id,
            acks=acks,  # type: ignore[arg-type]
        )
        if producer_id is not None and self.sequence is not None:
            header.producer_id = producer_id
            header.sequence = self.sequence
        if compression is None:
            return b"".join(self.frames) + header.SerializeToString()
        if self._compressed is None:
            codec, codecs = compression
            part = encoded_part(codec, codecs.compress(codec, b"".join(self.frames)))
            self._compressed = part, int(crc32c.crc32c(part))
        part, crc = self._compressed
        header.record_count = self.count
        header.max_timestamp_ms, header.min_timestamp_ms = self.max_ts, min(self.min_ts, self.max_ts)
        header.crc32c = crc
        return part + header.SerializeToString()

    @property
    def done(self) -> bool:
        return self._event.is_set()

    def finish(self, base_offset: int = -1, error: TidelogError | None = None, append_time_ms: int = 0) -> None:
        """Resolve every record of the batch (called once, on the producer's event loop)."""
        self.base_offset = base_offset
        self.append_time_ms = append_time_ms
        self.error = error
        self.frames = []
        self._compressed = None
        self._event.set()
        for future in self._aio_futures:
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody is waiting any more
                future.get_loop().call_soon_threadsafe(_resolve, future)
        self._aio_futures = []
        for callback in self._callbacks:
            try:
                callback()
            except Exception:  # a user's callback must not break delivery of the others
                log.exception("%s/%d: a delivery callback raised", self.topic, self.partition)
        self._callbacks = []

    def wait(self, timeout: float | None) -> bool:
        return self._event.wait(timeout)

    def on_done(self, callback: Callable[[], None]) -> None:
        if self.done:
            callback()
        else:
            self._callbacks.append(callback)

    def aio_future(self) -> asyncio.Future[None]:
        """A future of the running loop that completes with the batch (any loop, any thread)."""
        future = asyncio.get_running_loop().create_future()
        if self.done:
            future.set_result(None)
        else:
            self._aio_futures.append(future)
            if self.done:  # finished while we registered
                _resolve(future)
        return future


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class RecordFuture:
    """The outcome of one `send()`: resolves to RecordMetadata or raises a TidelogError.

    Awaitable in asyncio code (`await future`); blocking with `result(timeout)`.
    """

    __slots__ = ("_batch", "_index", "_timestamp_ms")

    def __init__(self, batch: Batch, index: int, timestamp_ms: int) -> None:
        self._batch = batch
        self._index = index
        self._timestamp_ms = timestamp_ms

    def done(self) -> bool:
        """True once the record is acknowledged or has failed."""
        return self._batch.done

    def result(self, timeout: float | None = None) -> RecordMetadata:
        """Wait for the broker's acknowledgement; raises the record's TidelogError, or TimeoutError."""
        if not self._batch.wait(timeout):
            raise TimeoutError(f"record not acknowledged within {timeout}s")
        return self._metadata()

    def exception(self, timeout: float | None = None) -> TidelogError | None:
        """The record's error, or None once it is acknowledged."""
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
        # A record sent with timestamp 0 is stamped with the broker's append time.
        timestamp = self._timestamp_ms or batch.append_time_ms
        return RecordMetadata(
            batch.topic,
            batch.partition,
            batch.base_offset + self._index,
            timestamp,
            batch.durable_on,
            batch.leader_epoch,
        )

    def __repr__(self) -> str:
        batch = self._batch
        if not batch.done:
            return f"<RecordFuture {batch.topic}/{batch.partition} pending>"
        if batch.error is not None:
            return f"<RecordFuture {batch.topic}/{batch.partition} failed: {batch.error}>"
        return f"<RecordFuture {batch.topic}/{batch.partition}@{batch.base_offset + self._index}>"

    def __await__(self) -> Generator[Any, None, RecordMetadata]:
        if not self._batch.done:
            yield from self._batch.aio_future().__await__()
        return self._metadata()


class RecordFutures(Sequence[RecordFuture]):
    """The outcomes of one `send_many()`: a sequence of RecordFuture, made when indexed.

    It holds one (batch, first index, count) span per batch the records went into, so queuing
    a thousand records creates no thousand objects; `result()` waits for all of them at once.
    """

    __slots__ = ("_ends", "_spans", "_timestamp_ms")

    def __init__(self, timestamp_ms: int) -> None:
        self._timestamp_ms = timestamp_ms
        self._spans: list[tuple[Batch, int]] = []  # (batch, index in it of the span's first record)
        self._ends: list[int] = []  # records up to the end of each span

    def add_span(self, batch: Batch, first: int, count: int) -> None:
        self._spans.append((batch, first))
        self._ends.append((self._ends[-1] if self._ends else 0) + count)

    def __len__(self) -> int:
        return self._ends[-1] if self._ends else 0

    @overload
    def __getitem__(self, index: int) -> RecordFuture: ...
    @overload
    def __getitem__(self, index: slice) -> list[RecordFuture]: ...
    def __getitem__(self, index: int | slice) -> RecordFuture | list[RecordFuture]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("RecordFutures index out of range")
        span = bisect.bisect_right(self._ends, index)
        batch, first = self._spans[span]
        return RecordFuture(batch, first + index - (self._ends[span - 1] if span else 0), self._timestamp_ms)

    def done(self) -> bool:
        """True once every record is acknowledged or has failed."""
        return all(batch.done for batch, _ in self._spans)

    def result(self, timeout: float | None = None) -> list[RecordMetadata]:
        """Wait for every record; their RecordMetadata in send order, or the first failure's TidelogError."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for batch, _ in self._spans:
            if not batch.wait(None if deadline is None else max(0.0, deadline - time.monotonic())):
                raise TimeoutError(f"records not acknowledged within {timeout}s")
        return self._metadata()

    def _metadata(self) -> list[RecordMetadata]:
        out: list[RecordMetadata] = []
        start = 0
        for (batch, first), end in zip(self._spans, self._ends, strict=True):
            if batch.error is not None:
                raise batch.error
            timestamp = self._timestamp_ms or batch.append_time_ms
            base = batch.base_offset + first
            out += [
                RecordMetadata(batch.topic, batch.partition, base + i, timestamp, batch.durable_on, batch.leader_epoch)
                for i in range(end - start)
            ]
            start = end
        return out

    def __await__(self) -> Generator[Any, None, list[RecordMetadata]]:
        for batch, _ in self._spans:
            if not batch.done:
                yield from batch.aio_future().__await__()
        return self._metadata()

    def __repr__(self) -> str:
        return f"<RecordFutures {len(self)} records in {len(self._spans)} batch(es)>"
