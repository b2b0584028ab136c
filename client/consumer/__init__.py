"""Consumer and AsyncConsumer: read partitions through Subscribe streams.

One Subscribe stream per assigned partition pushes batches as they are written;
each batch is parsed once and its records handed out as light Message views.
A bounded queue between the streams and the caller lets gRPC flow control, not
memory, absorb a slow consumer.

A stream that breaks on a transient failure (the broker restarting, the network)
is opened again, after a backoff, exactly where the last response it queued
ended: nothing is skipped and nothing delivered twice. A start offset the log no
longer has (retention) or does not have yet falls back to `auto_offset_reset`,
as in Kafka, unless that is ``"none"``.

Every response carries the epoch of the stream that read it; a seek starts a new
epoch, so records read before the seek never reach the caller after it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from typing import Literal

import grpc

from tidelog._channel import DEFAULT_BOOTSTRAP, Security, backoff_delay, call, open_channel
from tidelog._loop import LoopThread
from tidelog.consumer._group import GroupDelivery, GroupSession, PartitionsCallback
from tidelog.errors import OffsetOutOfRangeError, TidelogError, UnavailableError, from_rpc_error
from tidelog.serde import Deserializer
from tidelog.types import Message, MessageBatch, TopicPartition
from tidelog.v1 import broker_pb2, broker_pb2_grpc, records_pb2

log = logging.getLogger(__name__)

OffsetReset = Literal["earliest", "latest", "none"]
# Parsed responses buffered between the streams and the caller.
_QUEUE_RESPONSES = 64


class _Timestamp(int):
    """A start given as a timestamp (the first record at or after it), not an offset."""


class _Position(int):
    """A start given as a records_pb2.Position (earliest, latest), not an offset."""


_EARLIEST = _Position(records_pb2.POSITION_EARLIEST)
_LATEST = _Position(records_pb2.POSITION_LATEST)
# Where a partition's stream starts: a plain int is an offset.
Start = int | _Position | _Timestamp
_QueueItem = tuple[TopicPartition, int, broker_pb2.FetchResponse | GroupDelivery] | TidelogError


class AsyncConsumer:
    """Read records from asyncio code.

    >>> async with AsyncConsumer("127.0.0.1:50051", topics=["orders"], auto_offset_reset="earliest") as consumer:
    ...     async for message in consumer:
    ...         print(message.offset, message.value)

    ``topics`` subscribes to every partition of those topics (each starting by
    ``auto_offset_reset``: ``"latest"``, the default, or ``"earliest"``); or call
    ``assign()`` with explicit partitions. ``key_deserializer`` and
    ``value_deserializer`` (client.serde) turn bytes into objects on access.

    With ``group="name"`` the consumer joins that consumer group instead: the broker shares
    the topics' partitions among the group's members and delivers each from the group's
    committed offset (``auto_offset_reset`` where there is none). ``assignment()`` is what
    this member owns now; ``on_assign`` and ``on_revoke`` (called with a list of
    TopicPartition, on the consumer's event loop) follow it. With ``enable_auto_commit``
    (the default) what a previous poll returned counts as processed and is committed every
    ``auto_commit_interval_ms``, before a partition is given up, and at close: at-least-once.
    ``commit()`` commits by hand. A member silent for ``session_timeout_ms`` is dropped.
    """

    def __init__(
        self,
        bootstrap: str = DEFAULT_BOOTSTRAP,
        *,
        topics: Iterable[str] = (),
        auto_offset_reset: OffsetReset = "latest",
        key_deserializer: Deserializer | None = None,
        value_deserializer: Deserializer | None = None,
        max_bytes: int = 1 << 20,
        retry_backoff_ms: float = 100,
        retry_backoff_max_ms: float = 2_000,
        group: str | None = None,
        enable_auto_commit: bool = True,
        auto_commit_interval_ms: float = 5_000,
        session_timeout_ms: int = 10_000,
        on_assign: PartitionsCallback | None = None,
        on_revoke: PartitionsCallback | None = None,
        tls_ca_file: str | None = None,
        tls_cert_file: str | None = None,
        tls_key_file: str | None = None,
        token: str | None = None,
    ) -> None:
        if auto_offset_reset not in ("earliest", "latest", "none"):
            raise ValueError("auto_offset_reset must be 'earliest', 'latest' or 'none'")
        if group is not None and not topics:
            raise ValueError("a group consumer needs topics")
        if group is not None and not 100 <= session_timeout_ms <= 300_000:
            raise ValueError("session_timeout_ms must be 100-300000")
        security = {"tls_ca_file": tls_ca_file, "tls_cert_file": tls_cert_file, "tls_key_file": tls_key_file}
        self._channel = open_channel(bootstrap, Security.take({**security, "token": token}))
        self._stub = broker_pb2_grpc.BrokerStub(self._channel)
        self._subscribe = self._channel.unary_stream(
            "/tidelog.v1.Broker/Subscribe",
            request_serializer=broker_pb2.SubscribeRequest.SerializeToString,
            response_deserializer=broker_pb2.FetchResponse.FromString,
        )
        self._topics = list(topics)
        self._reset = auto_offset_reset
        self._serde = (key_deserializer, value_deserializer) if key_deserializer or value_deserializer else None
        self._max_bytes = max_bytes
        self._backoff_ms = (retry_backoff_ms, retry_backoff_max_ms)
        # Bounded for Subscribe streams (gRPC flow control holds the rest back); a group's credit bounds
        # its bytes instead, and its stream's control messages must never wait behind records.
        self._queue: asyncio.Queue[_QueueItem] = asyncio.Queue(0 if group is not None else _QUEUE_RESPONSES)
        self._next_epoch = itertools.count(1)  # never reused: a stale response can never pass for a new one
        self._streams: dict[TopicPartition, asyncio.Task[None]] = {}
        self._epochs: dict[TopicPartition, int] = {}
        self._starts: dict[TopicPartition, Start] = {}  # where a (re)opened stream begins
        self._positions: dict[TopicPartition, int | None] = {}  # the next offset handed to the caller
        self._known: dict[TopicPartition, asyncio.Event] = {}  # set once the position is known
        self._buffer: list[MessageBatch] = []
        self._pending: dict[TopicPartition, int] = {}  # batches of a partition in the buffer
        self._buffered_next: dict[TopicPartition, int] = {}  # position once a partition's batches are handed out
        self._high_watermarks: dict[TopicPartition, int] = {}  # the latest the broker reported
        self._started = False
        self._closed = False
        self._group: GroupSession | None = None
        self._auto_commit = group is not None and enable_auto_commit
        self._auto_commit_s = auto_commit_interval_ms / 1000
        self._auto_committer: asyncio.Task[None] | None = None
        self._processed: dict[TopicPartition, int] = {}  # positions before the latest poll
        self._polling = 0  # polls waiting now: what earlier ones returned is processed
        if group is not None:
            self._group = GroupSession(
                self,
                self._channel,
                group=group,
                topics=self._topics,
                auto_offset_reset=auto_offset_reset,
                session_timeout_ms=session_timeout_ms,
                on_assign=on_assign,
                on_revoke=on_revoke,
                backoff_ms=self._backoff_ms,
            )

    # -- assignment -------------------------------------------------------------------

    async def start(self) -> None:
        """Assign every partition of the subscribed topics (called for you on first use)."""
        if self._started:
            return
        self._started = True
        if self._group is not None:
            self._group.start()
            if self._auto_commit:
                self._auto_committer = asyncio.create_task(self._commit_periodically())
            return
        if self._topics:
            response = await call(self._stub.GetMetadata(broker_pb2.GetMetadataRequest(topics=self._topics)))
            self.assign([TopicPartition(t.name, p.partition) for t in response.topics for p in t.partitions])

    def assign(self, partitions: Iterable[tuple[str, int]]) -> None:
        """Read exactly these partitions (replacing any previous assignment), starting by auto_offset_reset."""
        self._refuse_in_group("assign()")
        self._started = True
        wanted = [TopicPartition(*tp) for tp in partitions]
        for tp in list(self._streams):
            if tp not in wanted:
                self._remove_partition(tp)
        for tp in wanted:
            if tp not in self._streams:
                self._add_partition(tp, self._reset_start())

    def assignment(self) -> list[TopicPartition]:
        """The partitions this consumer reads (in a group: what this member owns now)."""
        if self._group is not None:
            return sorted(self._group.owned)
        return list(self._streams)

    def _refuse_in_group(self, what: str) -> None:
        if self._group is not None:
            raise ValueError(
                f"{what} is not for a group consumer: the group assigns partitions and starts them at its "
                "committed offsets (move those with `tidelog groups reset-offsets`)"
            )

    # -- group membership (called by the GroupSession) ------------------------------------

    def _start_group_partition(self, tp: TopicPartition) -> None:
        self._positions[tp] = None
        self._known.setdefault(tp, asyncio.Event()).clear()
        self._drop_buffered(tp)
        self._epochs[tp] = next(self._next_epoch)

    def _stop_group_partition(self, tp: TopicPartition) -> None:
        self._remove_partition(tp)
        self._processed.pop(tp, None)

    def _processed_positions(self) -> dict[TopicPartition, int]:
        return dict(self._processed)

    async def _commit_periodically(self) -> None:
        assert self._group is not None
        while True:
            await asyncio.sleep(self._auto_commit_s)
            owned = self._group.owned
            processed = {tp: offset for tp, offset in self._processed.items() if tp in owned}
            if processed:
                try:
                    await self._group.commit(processed)
                except TidelogError as err:
                    log.warning("group %s: auto-commit failed: %s", self._group.group, err)

    async def commit(self, offsets: Mapping[tuple[str, int], int] | None = None) -> dict[TopicPartition, int]:
        """Commit the group's offsets: by default the position of every owned partition (all that
        poll() has returned); else `offsets`, each the next offset to process. Returns what is
        committed now; raises the broker's refusal (e.g. NotOwnerError after a rebalance)."""
        if self._group is None:
            raise ValueError("commit() needs a group consumer: Consumer(..., group='name')")
        await self.start()
        if offsets is None:
            chosen = {tp: p for tp, p in self._positions.items() if p is not None and tp in self._group.owned}
        else:
            chosen = {TopicPartition(*tp): offset for tp, offset in offsets.items()}
        return await self._group.commit(chosen)

    def _reset_start(self) -> Start:
        return _EARLIEST if self._reset == "earliest" else _LATEST

    def _add_partition(self, tp: TopicPartition, start: Start) -> None:
        self._positions[tp] = start if type(start) is int else None
        self._known.setdefault(tp, asyncio.Event())
        if self._positions[tp] is not None:
            self._known[tp].set()
        else:
            self._known[tp].clear()
        self._starts[tp] = start
        self._drop_buffered(tp)
        old = self._streams.pop(tp, None)
        if old is not None:
            old.cancel()
        epoch = self._epochs[tp] = next(self._next_epoch)
        self._streams[tp] = asyncio.create_task(self._read_partition(tp, epoch))

    def _remove_partition(self, tp: TopicPartition) -> None:
        self._high_watermarks.pop(tp, None)
        task = self._streams.pop(tp, None)
        if task is not None:
            task.cancel()
        self._drop_buffered(tp)
        self._epochs.pop(tp, None)
        self._starts.pop(tp, None)
        self._positions.pop(tp, None)
        self._known.pop(tp, None)

    def _drop_buffered(self, tp: TopicPartition) -> None:
        self._buffered_next.pop(tp, None)
        self._pending.pop(tp, None)
        if self._buffer:
            self._buffer = [b for b in self._buffer if (b.topic, b.partition) != tp]

    def _assigned(self, partitions: tuple[tuple[str, int], ...]) -> list[TopicPartition]:
        assigned = self.assignment()
        chosen = [TopicPartition(*tp) for tp in partitions] or assigned
        for tp in chosen:
            if tp not in assigned:
                raise ValueError(f"{tp.topic}/{tp.partition} is not assigned to this consumer")
        return chosen

    # -- positions --------------------------------------------------------------------

    def seek(self, partition: tuple[str, int], offset: int) -> None:
        """Continue `partition` at `offset` (out of range falls back to auto_offset_reset)."""
        self._refuse_in_group("seek()")
        if offset < 0:
            raise ValueError("offset must be >= 0")
        self._add_partition(self._assigned((partition,))[0], offset)

    def seek_to_beginning(self, *partitions: tuple[str, int]) -> None:
        """Continue at the log start of these partitions (none given: every assigned one)."""
        self._refuse_in_group("seek_to_beginning()")
        for tp in self._assigned(partitions):
            self._add_partition(tp, _EARLIEST)

    def seek_to_end(self, *partitions: tuple[str, int]) -> None:
        """Continue after the last record of these partitions (none given: every assigned one)."""
        self._refuse_in_group("seek_to_end()")
        for tp in self._assigned(partitions):
            self._add_partition(tp, _LATEST)

    def seek_to_timestamp(self, timestamp_ms: int, *partitions: tuple[str, int]) -> None:
        """Continue at the first record whose timestamp is at or after `timestamp_ms`."""
        self._refuse_in_group("seek_to_timestamp()")
        if timestamp_ms < 0:
            raise ValueError("timestamp_ms must be >= 0")
        for tp in self._assigned(partitions):
            self._add_partition(tp, _Timestamp(timestamp_ms))

    async def position(self, partition: tuple[str, int], timeout: float | None = 30.0) -> int:
        """The offset of the next record this consumer returns for `partition` (waits until the start is known)."""
        tp = self._assigned((partition,))[0]
        await asyncio.wait_for(self._known[tp].wait(), timeout)
        position = self._positions[tp]
        assert position is not None
        return position

    def lag(self) -> dict[TopicPartition, int]:
        """Records between this consumer's position and the high watermark the broker last reported,
        per assigned partition (once both are known); no request is made."""
        out = {}
        for tp in self.assignment():
            position, end = self._positions.get(tp), self._high_watermarks.get(tp)
            if position is not None and end is not None:
                out[tp] = max(0, end - position)
        return out

    async def end_offsets(self, *partitions: tuple[str, int]) -> dict[TopicPartition, int]:
        """The high watermark (offset after the last record) of each partition (none given: every assigned one)."""
        return await self._list_offsets(partitions, records_pb2.POSITION_LATEST)

    async def beginning_offsets(self, *partitions: tuple[str, int]) -> dict[TopicPartition, int]:
        """The log start of each partition (none given: every assigned one)."""
        return await self._list_offsets(partitions, records_pb2.POSITION_EARLIEST)

    async def _list_offsets(self, partitions: tuple[tuple[str, int], ...], position: int) -> dict[TopicPartition, int]:
        chosen = [TopicPartition(*tp) for tp in partitions] or self.assignment()
        out = {}
        for tp in chosen:
            request = broker_pb2.ListOffsetsRequest(topic=tp.topic, partition=tp.partition, position=position)  # type: ignore[arg-type]
            out[tp] = (await call(self._stub.ListOffsets(request))).offset
        return out

    # -- reading ----------------------------------------------------------------------

    async def _read_partition(self, tp: TopicPartition, epoch: int) -> None:
        failures = 0
        while True:
            request = broker_pb2.SubscribeRequest(topic=tp.topic, partition=tp.partition, max_bytes=self._max_bytes)
            start = self._starts[tp]
            if isinstance(start, _Timestamp):
                request.timestamp_ms = start
            elif isinstance(start, _Position):
                request.position = start  # type: ignore[assignment]
            else:
                request.offset = start
            try:
                async for response in self._subscribe(request):
                    failures = 0
                    self._starts[tp] = response.next_offset  # a reopened stream continues after this one
                    if self._positions[tp] is None:
                        self._positions[tp] = response.next_offset
                        self._known[tp].set()
                    await self._queue.put((tp, epoch, response))
                error: TidelogError = UnavailableError("the broker ended the subscription")
            except grpc.aio.AioRpcError as err:
                error = from_rpc_error(err)
            if isinstance(error, OffsetOutOfRangeError):
                if self._reset == "none":
                    await self._queue.put(error)
                    return
                log.warning("%s: offset out of range, resetting to %s: %s", tp, self._reset, error)
                self._starts[tp] = self._reset_start()
                self._positions[tp] = None
                self._known[tp].clear()
                continue
            if not error.retriable:  # a broken stream (even one the transport CANCELLED) is reopened
                await self._queue.put(error)
                return
            failures += 1
            delay = backoff_delay(failures, *self._backoff_ms)
            log.warning("%s: subscription lost (%s), reopening in %d ms", tp, error, round(delay * 1000))
            await asyncio.sleep(delay)

    async def getmany(self, timeout: float | None = None, max_records: int | None = None) -> list[Message]:
        """Records that have arrived (waiting up to `timeout` seconds for the first; None: forever); [] on timeout."""
        if max_records is not None and max_records < 1:
            raise ValueError("max_records must be >= 1")
        batches = await self.getmany_batches(timeout, max_records)
        if len(batches) == 1:
            return batches[0].messages()
        return [message for batch in batches for message in batch.messages()]

    async def getmany_batches(self, timeout: float | None = None, max_records: int | None = None) -> list[MessageBatch]:
        """What has arrived, as MessageBatch objects (no object per record): the fastest way to read."""
        await self.start()
        if self._auto_commit:  # what earlier polls returned has been processed
            self._processed = {tp: p for tp, p in self._positions.items() if p is not None}
        if self._group is not None and self._group.revoking:
            await self._group.give_back()  # now that what earlier polls returned is processed
        self._polling += 1
        try:
            loop = asyncio.get_running_loop()
            deadline = None if timeout is None else loop.time() + timeout
            while not self._buffer:  # empty responses (the live marker, heartbeats) are not an answer
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
                self._take(item)
                while not self._queue.empty():
                    self._take(self._queue.get_nowait())
        finally:
            self._polling -= 1
        return self._hand_out(max_records)

    def _take(self, item: _QueueItem) -> None:
        """Buffer a queued response's batches (stale epochs dropped); records are not touched."""
        if isinstance(item, TidelogError):
            raise item
        tp, epoch, response = item
        if self._group is not None and isinstance(response, GroupDelivery):
            self._group.credit_taken(response.size)
        if self._epochs.get(tp) != epoch:
            return  # read before a seek or an unassign
        self._high_watermarks[tp] = response.high_watermark
        if self._positions.get(tp) is None and response.batches:  # a group partition's first records
            self._positions[tp] = response.batches[0].base_offset
            self._known[tp].set()
        position = self._buffered_next.get(tp, self._positions[tp])
        topic, partition, serde = tp.topic, tp.partition, self._serde
        for batch in response.batches:
            base = batch.base_offset
            skip = position - base if position is not None and position > base else 0
            records = batch.records[skip:] if skip else batch.records
            if records:
                self._buffer.append(MessageBatch(topic, partition, base + skip, records, batch.append_time_ms, serde))
                self._pending[tp] = self._pending.get(tp, 0) + 1
        self._buffered_next[tp] = response.next_offset
        if not self._pending.get(tp):
            self._positions[tp] = self._buffered_next.pop(tp)  # nothing to hand out: the position moves on

    def _hand_out(self, max_records: int | None) -> list[MessageBatch]:
        """Take batches off the buffer (up to `max_records` records) and move positions past them."""
        if max_records is None:
            out, self._buffer = self._buffer, []
        else:
            out, room = [], max_records
            while self._buffer and room > 0:
                batch = self._buffer[0]
                if len(batch) > room:
                    batch, self._buffer[0] = batch.split(room)
                    self._pending[TopicPartition(batch.topic, batch.partition)] += 1
                else:
                    del self._buffer[0]
                out.append(batch)
                room -= len(batch)
        for batch in out:
            tp = TopicPartition(batch.topic, batch.partition)
            left = self._pending[tp] = self._pending[tp] - 1
            if left:
                self._positions[tp] = batch.next_offset
            else:
                self._positions[tp] = self._buffered_next.pop(tp, batch.next_offset)
        return out

    async def __aiter__(self) -> AsyncIterator[Message]:
        while True:
            for message in await self.getmany(None):
                yield message

    async def close(self) -> None:
        """Stop every stream and disconnect (a group consumer commits, with auto-commit, and leaves)."""
        if self._closed:
            return
        self._closed = True
        if self._auto_committer is not None:
            self._auto_committer.cancel()
        if self._group is not None:
            await self._group.close()
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
    """Read records (blocking API, I/O on a background thread). Arguments as AsyncConsumer.

    >>> with Consumer("127.0.0.1:50051", topics=["orders"], auto_offset_reset="earliest") as consumer:
    ...     for message in consumer:
    ...         print(message.offset, message.value)
    """

    def __init__(self, bootstrap: str = DEFAULT_BOOTSTRAP, **settings: object) -> None:
        self._io = LoopThread("tidelog-consumer")
        try:
            self._async = self._io.run(self._open(bootstrap, settings))
        except BaseException:
            self._io.close()
            raise

    @staticmethod
    async def _open(bootstrap: str, settings: dict[str, object]) -> AsyncConsumer:
        consumer = AsyncConsumer(bootstrap, **settings)  # type: ignore[arg-type]
        await consumer.start()
        return consumer

    def _on_loop(self, fn: object, *args: object) -> None:
        async def run() -> None:
            fn(*args)  # type: ignore[operator]

        self._io.run(run())

    def assign(self, partitions: Iterable[tuple[str, int]]) -> None:
        """Read exactly these partitions (replacing any previous assignment)."""
        self._on_loop(self._async.assign, list(partitions))

    def assignment(self) -> list[TopicPartition]:
        """The partitions this consumer reads."""
        return self._async.assignment()

    def seek(self, partition: tuple[str, int], offset: int) -> None:
        """Continue `partition` at `offset`."""
        self._on_loop(self._async.seek, partition, offset)

    def seek_to_beginning(self, *partitions: tuple[str, int]) -> None:
        """Continue at the log start of these partitions (none given: every assigned one)."""
        self._on_loop(self._async.seek_to_beginning, *partitions)

    def seek_to_end(self, *partitions: tuple[str, int]) -> None:
        """Continue after the last record of these partitions (none given: every assigned one)."""
        self._on_loop(self._async.seek_to_end, *partitions)

    def seek_to_timestamp(self, timestamp_ms: int, *partitions: tuple[str, int]) -> None:
        """Continue at the first record whose timestamp is at or after `timestamp_ms`."""
        self._on_loop(self._async.seek_to_timestamp, timestamp_ms, *partitions)

    def position(self, partition: tuple[str, int], timeout: float | None = 30.0) -> int:
        """The offset of the next record this consumer returns for `partition`."""
        return self._io.run(self._async.position(partition, timeout))

    def lag(self) -> dict[TopicPartition, int]:
        """Records between the position and the last reported high watermark, per assigned partition."""
        return self._async.lag()

    def end_offsets(self, *partitions: tuple[str, int]) -> dict[TopicPartition, int]:
        """The high watermark of each partition (none given: every assigned one)."""
        return self._io.run(self._async.end_offsets(*partitions))

    def beginning_offsets(self, *partitions: tuple[str, int]) -> dict[TopicPartition, int]:
        """The log start of each partition (none given: every assigned one)."""
        return self._io.run(self._async.beginning_offsets(*partitions))

    def poll(self, timeout: float | None = None, max_records: int | None = None) -> list[Message]:
        """Records that have arrived (waiting up to `timeout` seconds for the first); [] on timeout."""
        return self._io.run(self._async.getmany(timeout, max_records))

    def poll_batches(self, timeout: float | None = None, max_records: int | None = None) -> list[MessageBatch]:
        """What has arrived, as MessageBatch objects (no object per record): the fastest way to read."""
        return self._io.run(self._async.getmany_batches(timeout, max_records))

    def commit(
        self, offsets: Mapping[tuple[str, int], int] | None = None, timeout: float | None = 30.0
    ) -> dict[TopicPartition, int]:
        """Commit the group's offsets (default: everything poll() returned); see AsyncConsumer.commit."""
        return self._io.run(self._async.commit(offsets), timeout)

    def __iter__(self) -> Iterator[Message]:
        while True:
            yield from self.poll(1.0)

    def close(self) -> None:
        """Stop every stream and disconnect."""
        if self._io.loop.is_closed():
            return
        self._io.run(self._async.close())
        self._io.close()

    def __enter__(self) -> Consumer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
