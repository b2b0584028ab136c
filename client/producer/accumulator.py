"""The accumulator: records into per-partition batches, within the producer's buffer.

`append` runs on any thread (the caller's) under the producer's lock and is the hot path of every
send: only the uncommon cases (a full buffer, a topic whose partitions are not known yet, a full
batch) leave it. A batch closes when full (`batch_bytes`) or when the producer drains it (when idle,
after `linger_ms`, on flush); a closed batch goes to its partition's delivery queue.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable

from tidelog.common.partitioner import cached_partition_for_key
from tidelog.errors import BufferFullError, PartitionOutOfRangeError, RecordTooLargeError, UnavailableError
from tidelog.producer._batch import Batch, RecordFuture, RecordFutures

TP = tuple[str, int]


class MetadataMissing(LookupError):
    """The topic's partition count is not known (any more): load it and append again."""


class Accumulator:
    def __init__(
        self,
        *,
        lock: threading.Lock,
        batch_bytes: int,
        buffer_bytes: int,
        max_block_ms: float,
        linger_s: float,
        on_close: Callable[[TP, Batch], None],
        schedule_drain: Callable[[], object],
        on_loop_thread: Callable[[], bool],
        backlogged: Callable[[TP], bool] = lambda tp: False,
    ) -> None:
        """`backlogged(tp)`: the partition has closed batches not sent yet (lock held)."""
        self._lock = lock
        self._backlogged = backlogged
        self._space = threading.Condition(lock)
        self.space_freed = asyncio.Event()
        self._batch_bytes = batch_bytes
        self.buffer_bytes = buffer_bytes
        self._max_block_ms = max_block_ms
        self._linger_s = linger_s
        self._on_close = on_close  # called with the lock held
        self._schedule_drain = schedule_drain
        self._on_loop_thread = on_loop_thread
        self.buffered = 0
        self.open: dict[TP, Batch] = {}
        self.partitions: dict[str, int] = {}  # topic -> partition count
        self._sticky: dict[str, int] = {}  # topic -> the partition keyless records go to now
        self.unfinished: set[Batch] = set()
        self.drain_scheduled = False
        self.closed = False

    def append(
        self, topic: str, partition: int | None, key: bytes | None, frame: bytes, ts: int, block: bool = True
    ) -> RecordFuture | None:
        """Add an encoded record to its partition's batch.

        When the buffer is full, waits up to max_block_ms for space (block=True) or returns None.
        """
        size = len(frame)
        with self._lock:
            full = self.closed or self.buffered + size > self.buffer_bytes
            if full and not self._make_room_locked(size, block):
                return None
            tp = (topic, self._partition_locked(topic, partition, key))
            batch = self.open.get(tp) or self._new_batch_locked(tp)
            frames = batch.frames
            index = len(frames)
            frames.append(frame)
            if ts > batch.max_ts:  # inline: this is every send()'s path
                batch.max_ts = ts
            if ts < batch.min_ts:
                batch.min_ts = ts
            batch.size += size
            self.buffered += size
            if batch.size >= self._batch_bytes:
                self.close_batch(tp, batch)
            if not self.drain_scheduled:
                self.drain_scheduled = True
                self._schedule_drain()
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
            full = self.closed or self.buffered + size > self.buffer_bytes
            if full and not self._make_room_locked(size, block):
                return None
            tp = (topic, self._partition_locked(topic, partition, None))
            futures = RecordFutures(ts)
            largest = max(map(len, frames), default=1) or 1  # batches stay within batch_bytes
            start = 0
            while start < len(frames):
                batch = self.open.get(tp) or self._new_batch_locked(tp)
                room = max(1, (self._batch_bytes - batch.size) // largest)
                chunk = frames[start : start + room]
                first = len(batch.frames)
                batch.frames += chunk
                batch.note_timestamp(ts)
                chunk_size = sum(map(len, chunk))
                batch.size += chunk_size
                self.buffered += chunk_size
                futures.add_span(batch, first, len(chunk))
                start += len(chunk)
                if batch.size >= self._batch_bytes:
                    self.close_batch(tp, batch)
            if not self.drain_scheduled:
                self.drain_scheduled = True
                self._schedule_drain()
        return futures

    def _make_room_locked(self, size: int, block: bool) -> bool:
        """Called when the buffer is full (or closed): waits up to max_block_ms for room (block=True),
        or says False at once with the loop's space event armed for the caller to await."""
        if not block:
            self._check_size(size)
            self.space_freed.clear()
            return False
        self._wait_for_space_locked(size)
        return True

    def _partition_locked(self, topic: str, partition: int | None, key: bytes | None) -> int:
        """The partition a record goes to: the given one (checked), its key's, or the topic's sticky one."""
        count = self.partitions.get(topic)
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
        batch = self.open[tp] = Batch(*tp)
        self.unfinished.add(batch)
        return batch

    def close_batch(self, tp: TP, batch: Batch) -> None:
        """Stop accumulating into `batch` and hand it to its partition's delivery queue (lock held)."""
        del self.open[tp]
        batch.count = len(batch.frames)
        self._on_close(tp, batch)
        topic, partition = tp
        if self._sticky.get(topic) == partition:
            self._sticky[topic] = (partition + 1) % self.partitions[topic]

    def close_due(self, now: float, close_all: bool) -> float | None:
        """Close the batches that lingered long enough (all of them with `close_all`); the next
        deadline of those left open (lock held).

        A lingered batch whose partition still has closed batches waiting to be sent stays open and
        goes on filling (Kafka's rule: a batch is ready once it may be sent): closing it would only
        queue a small batch behind the others, and under load every small batch is a request and a
        commit of its own. It closes at a later drain (one runs at every answer), or once full."""
        next_deadline: float | None = None
        for tp, batch in list(self.open.items()):
            deadline = batch.created + self._linger_s
            if close_all or (now >= deadline and not self._backlogged(tp)):
                self.close_batch(tp, batch)
            elif next_deadline is None or deadline < next_deadline:
                next_deadline = deadline
        return next_deadline

    def release(self, batch: Batch) -> None:
        """A batch is done with (delivered or failed): its bytes leave the buffer."""
        with self._lock:
            self.unfinished.discard(batch)
            self.buffered -= batch.size
            self._space.notify_all()
        self.space_freed.set()

    def close(self) -> None:
        """Refuse new records from now on, and wake whoever waits for space (to be refused)."""
        with self._lock:
            self.closed = True
            self._space.notify_all()

    async def wait_for_space(self, deadline: float) -> None:
        """Until some buffer space is freed; BufferFullError once `deadline` (time.monotonic) passes."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise self._buffer_full()
        try:
            await asyncio.wait_for(self.space_freed.wait(), remaining)
        except TimeoutError:
            raise self._buffer_full() from None

    def _check_size(self, size: int) -> None:
        if self.closed:
            raise UnavailableError("the producer is closed")
        if size > self.buffer_bytes:
            raise RecordTooLargeError(
                f"a {size}-byte record cannot fit the producer's buffer_bytes ({self.buffer_bytes})"
            )

    def _buffer_full(self) -> BufferFullError:
        return BufferFullError(
            f"the producer's buffer ({self.buffer_bytes} bytes) stayed full for max_block_ms "
            f"({self._max_block_ms:g} ms): the broker is slower than the producer or unreachable; "
            "raise buffer_bytes, slow down, or check the broker"
        )

    def _wait_for_space_locked(self, size: int) -> None:
        self._check_size(size)
        if self.buffered + size <= self.buffer_bytes:
            return
        if self._on_loop_thread():  # a delivery callback: waiting would stop what frees the space
            raise self._buffer_full()
        deadline = time.monotonic() + self._max_block_ms / 1000
        while self.buffered + size > self.buffer_bytes:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._space.wait(remaining):
                raise self._buffer_full()
            self._check_size(size)
