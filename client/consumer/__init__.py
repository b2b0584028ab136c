"""Consumer and AsyncConsumer: read partitions through SubscribePartitions streams, or as a group member.

The parts, each a module of this package: `subscriptions` (one SubscribePartitions stream per
broker, reopened where it ended when it breaks), `positions` (where the consumer is in each
partition, under an epoch per assignment, so records read before a seek never reach the caller after
it), `group_session` (a group member's Consume stream). This module owns the buffer between them and
the caller: each batch is parsed once and its records handed out as light Message views; a bounded
queue lets gRPC flow control, not memory, absorb a slow consumer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal

import grpc

from tidelog._channel import DEFAULT_BOOTSTRAP, Security, call
from tidelog._loop import LoopThread
from tidelog._routing import Routing
from tidelog.common.compression import MAX_DECOMPRESSED_BYTES, Codecs, CorruptBatch
from tidelog.consumer.group_session import GroupDelivery, GroupSession, PartitionsCallback
from tidelog.consumer.positions import EARLIEST, LATEST, PartitionPosition, Positions, Start, Timestamp
from tidelog.consumer.subscriptions import QueueItem, Subscriptions
from tidelog.errors import CorruptBatchError, TidelogError
from tidelog.serde import Deserializer
from tidelog.types import Message, MessageBatch, TopicPartition
from tidelog.v1 import broker_pb2, broker_pb2_grpc, records_pb2

log = logging.getLogger(__name__)

OffsetReset = Literal["earliest", "latest", "none"]
# Parsed responses buffered between the streams and the caller.
_QUEUE_RESPONSES = 64
_METADATA_TIMEOUT_S = 30.0


class AsyncConsumer:
    """Read records from asyncio code.

    >>> async with AsyncConsumer("127.0.0.1:50051", topics=["orders"], auto_offset_reset="earliest") as consumer:
    ...     async for message in consumer:
    ...         print(message.offset, message.value)

    ``topics`` subscribes to every partition of those topics (each starting by
    ``auto_offset_reset``: ``"latest"``, the default, or ``"earliest"``); or call
    ``assign()`` with explicit partitions. ``key_deserializer`` and
    ``value_deserializer`` (tidelog.serde) turn bytes into objects on access.

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
        self._routing = Routing(bootstrap, Security.take({**security, "token": token}), _METADATA_TIMEOUT_S)
        self._channel = self._routing.bootstrap_channel
        self._topics = list(topics)
        self._serde = (key_deserializer, value_deserializer) if key_deserializer or value_deserializer else None
        backoff_ms = (retry_backoff_ms, retry_backoff_max_ms)
        # Bounded for SubscribePartitions streams (gRPC flow control holds the rest back); a group's credit bounds
        # its bytes instead, and its stream's control messages must never wait behind records.
        self._queue: asyncio.Queue[QueueItem] = asyncio.Queue(0 if group is not None else _QUEUE_RESPONSES)
        self._positions = Positions()
        self._subscriptions = Subscriptions(
            self._routing,
            self._queue,
            max_bytes=max_bytes,
            reset=auto_offset_reset,
            backoff_ms=backoff_ms,
            limit=_QUEUE_RESPONSES if group is not None else None,
        )
        self._buffer: list[MessageBatch] = []
        self._codecs = Codecs()  # compressed batches are opened on this consumer's loop
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
                _GroupSide(self),
                self._routing,
                group=group,
                topics=self._topics,
                auto_offset_reset=auto_offset_reset,
                session_timeout_ms=session_timeout_ms,
                on_assign=on_assign,
                on_revoke=on_revoke,
                backoff_ms=backoff_ms,
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
            response = await self._routing.metadata(self._topics, wait_for_ready=False)
            self.assign([TopicPartition(t.name, p.partition) for t in response.topics for p in t.partitions])

    def assign(self, partitions: Iterable[tuple[str, int]]) -> None:
        """Read exactly these partitions (replacing any previous assignment), starting by auto_offset_reset."""
        self._refuse_in_group("assign()")
        self._started = True
        wanted = [TopicPartition(*tp) for tp in partitions]
        for tp in self._subscriptions.partitions():
            if tp not in wanted:
                self._remove_partition(tp)
        for tp in wanted:
            if tp not in self._subscriptions:
                self._add_partition(tp, self._subscriptions.reset_start())

    def assignment(self) -> list[TopicPartition]:
        """The partitions this consumer reads (in a group: what this member owns now)."""
        if self._group is not None:
            return sorted(self._group.owned)
        return self._subscriptions.partitions()

    def _refuse_in_group(self, what: str) -> None:
        if self._group is not None:
            raise ValueError(
                f"{what} is not for a group consumer: the group assigns partitions and starts them at its "
                "committed offsets (move those with `tidelog groups reset-offsets`)"
            )

    # -- group membership (called by the GroupSession) ------------------------------------

    def _start_group_partition(self, tp: TopicPartition) -> None:
        self._drop_buffered(tp)
        self._positions.assign(tp, LATEST)  # the broker delivers from the group's offset: learnt from its batches

    def _read_group_partition(self, tp: TopicPartition, offset: int | None) -> None:
        self._add_partition(tp, self._subscriptions.reset_start() if offset is None else offset)

    def _stop_group_partition(self, tp: TopicPartition) -> None:
        self._remove_partition(tp)
        self._processed.pop(tp, None)

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
            chosen = {tp: p for tp, p in self._positions.known_positions().items() if tp in self._group.owned}
        else:
            chosen = {TopicPartition(*tp): offset for tp, offset in offsets.items()}
        return await self._group.commit(chosen)

    def _add_partition(self, tp: TopicPartition, start: Start) -> None:
        self._drop_buffered(tp)
        self._subscriptions.open(tp, self._positions.assign(tp, start))

    def _remove_partition(self, tp: TopicPartition) -> None:
        self._subscriptions.close(tp)
        self._drop_buffered(tp)
        self._positions.remove(tp)

    def _drop_buffered(self, tp: TopicPartition) -> None:
        entry = self._positions.get(tp)
        if entry is not None:
            entry.pending, entry.buffered_next = 0, None
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
            self._add_partition(tp, EARLIEST)

    def seek_to_end(self, *partitions: tuple[str, int]) -> None:
        """Continue after the last record of these partitions (none given: every assigned one)."""
        self._refuse_in_group("seek_to_end()")
        for tp in self._assigned(partitions):
            self._add_partition(tp, LATEST)

    def seek_to_timestamp(self, timestamp_ms: int, *partitions: tuple[str, int]) -> None:
        """Continue at the first record whose timestamp is at or after `timestamp_ms`."""
        self._refuse_in_group("seek_to_timestamp()")
        if timestamp_ms < 0:
            raise ValueError("timestamp_ms must be >= 0")
        for tp in self._assigned(partitions):
            self._add_partition(tp, Timestamp(timestamp_ms))

    async def position(self, partition: tuple[str, int], timeout: float | None = 30.0) -> int:
        """The offset of the next record this consumer returns for `partition` (waits until the start is known)."""
        tp = self._assigned((partition,))[0]
        entry = self._positions.get(tp)
        assert entry is not None
        await asyncio.wait_for(entry.known.wait(), timeout)
        position = (self._positions.get(tp) or entry).position  # a seek meanwhile: its entry, same event
        assert position is not None
        return position

    def lag(self) -> dict[TopicPartition, int]:
        """Records between this consumer's position and the high watermark the broker last reported,
        per assigned partition (once both are known); no request is made."""
        assigned = set(self.assignment())
        return {tp: lag for tp, lag in self._positions.lag().items() if tp in assigned}

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

            async def list_offsets(channel: grpc.aio.Channel, request: Any = request) -> int:
                return int((await call(broker_pb2_grpc.BrokerStub(channel).ListOffsets(request))).offset)

            out[tp] = await self._routing.to_leader((tp.topic, tp.partition), list_offsets)
        return out

    # -- reading ----------------------------------------------------------------------

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
            self._processed = self._positions.known_positions()
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

    def _take(self, item: QueueItem) -> None:
        """Buffer a queued response's batches (stale epochs dropped); records are not touched."""
        if isinstance(item, TidelogError):
            raise item
        if isinstance(item, list):  # one SubscribePartitions response
            self._subscriptions.taken()
            for tp, epoch, records in item:
                self._buffer_response(tp, epoch, records)
            return
        tp, epoch, delivery = item
        assert self._group is not None and isinstance(delivery, GroupDelivery)
        self._group.credit_taken(delivery.size)
        self._buffer_response(tp, epoch, delivery)

    def _buffer_response(self, tp: TopicPartition, epoch: int, response: Any) -> None:
        """Buffer one partition's batches from a response (a PartitionRecords or a GroupDelivery)."""
        entry = self._positions.current(tp, epoch)
        if entry is None:
            return  # read before a seek or an unassign
        entry.high_watermark = response.high_watermark
        if entry.position is None and response.batches:  # a group partition's first records
            entry.learn(response.batches[0].base_offset)
        position = entry.buffered_next if entry.buffered_next is not None else entry.position
        topic, partition, serde = tp.topic, tp.partition, self._serde
        for batch in response.batches:
            base = batch.base_offset
            skip = position - base if position is not None and position > base else 0
            batch_records = self._records_of(batch) if batch.compression else batch.records
            records = batch_records[skip:] if skip else batch_records
            if records:
                self._buffer.append(MessageBatch(topic, partition, base + skip, records, batch.append_time_ms, serde))
                entry.pending += 1
        if entry.pending:
            entry.buffered_next = response.next_offset
        else:
            entry.position = response.next_offset  # nothing to hand out: the position moves on

    def _records_of(self, batch: records_pb2.RecordBatch) -> Sequence[records_pb2.Record]:
        """A compressed batch's records (served whole by the broker: `_take` skips those before the position)."""
        try:
            data = self._codecs.decompress(batch.compression, batch.compressed_records, MAX_DECOMPRESSED_BYTES)
        except CorruptBatch as err:
            raise CorruptBatchError(
                f"a compressed batch at offset {batch.base_offset} does not decompress: {err}"
            ) from None
        return records_pb2.RecordBatch.FromString(data).records

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
                    self._entry_of(batch).pending += 1
                else:
                    del self._buffer[0]
                out.append(batch)
                room -= len(batch)
        for batch in out:
            entry = self._entry_of(batch)
            entry.pending -= 1
            if entry.pending:
                entry.position = batch.next_offset
            else:
                entry.position = batch.next_offset if entry.buffered_next is None else entry.buffered_next
                entry.buffered_next = None
        return out

    def _entry_of(self, batch: MessageBatch) -> PartitionPosition:
        entry = self._positions.get(TopicPartition(batch.topic, batch.partition))
        assert entry is not None, "buffered batches belong to partitions being read"
        return entry

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
        await self._subscriptions.close_all()
        await self._routing.close()

    async def __aenter__(self) -> AsyncConsumer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class _GroupSide:
    """The consumer as its group session sees it (group_session.GroupHost)."""

    def __init__(self, consumer: AsyncConsumer) -> None:
        self._consumer = consumer

    @property
    def auto_commit(self) -> bool:
        return self._consumer._auto_commit

    @property
    def polling(self) -> bool:
        return self._consumer._polling > 0

    def deliver(self, item: tuple[TopicPartition, int, GroupDelivery] | TidelogError) -> None:
        self._consumer._queue.put_nowait(item)

    def queue_empty(self) -> bool:
        return self._consumer._queue.empty()

    def epoch_of(self, tp: TopicPartition) -> int | None:
        entry = self._consumer._positions.get(tp)
        return None if entry is None else entry.epoch

    def start_partition(self, tp: TopicPartition) -> None:
        self._consumer._start_group_partition(tp)

    def read_partition(self, tp: TopicPartition, offset: int | None) -> None:
        self._consumer._read_group_partition(tp, offset)

    def stop_partition(self, tp: TopicPartition) -> None:
        self._consumer._stop_group_partition(tp)

    def position_of(self, tp: TopicPartition) -> int | None:
        entry = self._consumer._positions.get(tp)
        return None if entry is None else entry.position

    def processed_positions(self) -> dict[TopicPartition, int]:
        return dict(self._consumer._processed)


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
