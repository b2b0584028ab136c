"""A consumer's membership in a group: one Groups.Consume stream, driven for AsyncConsumer.

The broker assigns partitions and pushes their records from the group's committed offsets (a
single broker), or, in a cluster, says to read them from their leaders with Subscribe from the
committed offsets it sends along. This side hands pushed records to the consumer's queue, grants
credit back as the caller takes them, commits (on the stream; answers come in commit order),
answers `revoke` after committing what was processed, and rejoins with the same member id when the
stream breaks. The stream goes to the group's coordinator: a broker that is not answers
NOT_COORDINATOR with its address, and the session goes there.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping
from typing import Any, NamedTuple, Protocol

import grpc

from tidelog._channel import backoff_delay
from tidelog._routing import BOOTSTRAP, Routing
from tidelog.common.reasons import Reason
from tidelog.errors import TidelogError, UnavailableError, code_from_int, from_rpc_error, make_error
from tidelog.types import TopicPartition
from tidelog.v1 import groups_pb2

log = logging.getLogger(__name__)

PartitionsCallback = Callable[[list[TopicPartition]], Any]
# While the coordinator moves, retries back off no further than this many steps (~400 ms by default).
_SEARCH_STEPS = 2
# Credit is granted back in steps of at least this much, to keep credit messages few.
_CREDIT_STEP_BYTES = 64 << 10


class GroupDelivery(NamedTuple):
    """One records message, in the shape the consumer's buffer takes (like a FetchResponse)."""

    batches: Any
    next_offset: int
    high_watermark: int
    size: int


class GroupHost(Protocol):
    """What the session needs of the consumer it drives."""

    @property
    def auto_commit(self) -> bool: ...

    @property
    def polling(self) -> bool:
        """A poll is waiting now: what earlier polls returned is processed."""
        ...

    def deliver(self, item: tuple[TopicPartition, int, GroupDelivery] | TidelogError) -> None:
        """Queue records (or a final error) for the caller; never waits."""
        ...

    def queue_empty(self) -> bool: ...

    def epoch_of(self, tp: TopicPartition) -> int | None:
        """The epoch of an owned partition's reading (None: not read now)."""
        ...

    def start_partition(self, tp: TopicPartition) -> None:
        """Take the partition's records as the broker pushes them on the stream."""
        ...

    def read_partition(self, tp: TopicPartition, offset: int | None) -> None:
        """Read the partition from its leader, from `offset` (None: by auto_offset_reset)."""
        ...

    def stop_partition(self, tp: TopicPartition) -> None: ...

    def position_of(self, tp: TopicPartition) -> int | None:
        """The next offset the caller will be given (all that polls handed out is before it)."""
        ...

    def processed_positions(self) -> dict[TopicPartition, int]:
        """Positions as of the latest poll: what the caller has processed."""
        ...


class GroupSession:
    def __init__(
        self,
        consumer: GroupHost,
        routing: Routing,
        *,
        group: str,
        topics: list[str],
        auto_offset_reset: str,
        session_timeout_ms: int,
        on_assign: PartitionsCallback | None,
        on_revoke: PartitionsCallback | None,
        backoff_ms: tuple[float, float],
    ) -> None:
        self._consumer = consumer
        self._routing = routing
        self._coordinator = BOOTSTRAP  # the route of the group's coordinator, once a broker named it
        self._join = groups_pb2.JoinGroup(
            group=group,
            topics=topics,
            session_timeout_ms=session_timeout_ms,
            auto_offset_reset="earliest" if auto_offset_reset == "earliest" else "latest",
            can_subscribe=True,
        )
        self.group = group
        self._heartbeat_s = session_timeout_ms / 3000
        self._on_assign = on_assign
        self._on_revoke = on_revoke
        self._backoff_ms = backoff_ms
        self.member_id = ""
        self.generation = 0
        self.owned: set[TopicPartition] = set()
        self._live = False  # a stream is open and joined: commits can be sent
        self._outgoing: asyncio.Queue[groups_pb2.ConsumeRequest | None] = asyncio.Queue()
        self._commits: deque[asyncio.Future[dict[TopicPartition, int]]] = deque()  # sent on this stream
        self._committed: dict[TopicPartition, int] = {}
        self._revoking: dict[TopicPartition, int | None] = {}  # asked back: the position when asked
        self._credit_due = 0
        self._task: asyncio.Task[None] | None = None
        self._side_tasks: set[asyncio.Task[None]] = set()
        self._joined = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    # -- the stream ------------------------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        while True:
            self._outgoing = asyncio.Queue()
            self._credit_due = 0
            self._join.member_id = self.member_id
            self._outgoing.put_nowait(groups_pb2.ConsumeRequest(join=self._join))
            route = self._route(failures)
            consume = self._routing.channel(route).stream_stream(
                "/tidelog.v1.Groups/Consume",
                request_serializer=groups_pb2.ConsumeRequest.SerializeToString,
                response_deserializer=groups_pb2.ConsumeResponse.FromString,
            )
            stream = consume(self._requests(self._outgoing))
            heartbeat = asyncio.create_task(self._heartbeat(self._outgoing))
            try:
                async for response in stream:
                    failures = 0
                    await self._handle(response)
                error: TidelogError = UnavailableError("the broker ended the group stream")
            except grpc.aio.AioRpcError as err:
                error = from_rpc_error(err)
            finally:
                heartbeat.cancel()
                stream.cancel()
            self._lose_everything(error)
            # FENCED: the session ended (a long pause, a broker restart); join again.
            if not error.retriable and error.reason != Reason.FENCED:
                self._consumer.deliver(error)
                return
            failures += 1
            if error.reason == Reason.NOT_COORDINATOR:
                address = error.metadata.get("coordinator_address", "")
                self._coordinator = address or BOOTSTRAP
                if address and failures == 1:  # the answer says where the coordinator is: go at once
                    log.info("group %s: joining at its coordinator %s", self.group, address)
                    continue
            elif route != BOOTSTRAP:  # the coordinator is out of reach: ask the others who took over
                self._coordinator = BOOTSTRAP
            # Looking for a coordinator that moved (the dead one is still named until its lease ends):
            # keep asking at a short, steady pace rather than backing off ever longer.
            moving = error.reason == Reason.NOT_COORDINATOR or (route != BOOTSTRAP and error.retriable)
            delay = backoff_delay(min(failures, _SEARCH_STEPS) if moving else failures, *self._backoff_ms)
            log.warning("group %s: stream lost (%s), rejoining in %d ms", self.group, error, round(delay * 1000))
            await asyncio.sleep(delay)

    def _route(self, failures: int) -> str:
        """Where to join: the coordinator once named; else the bootstrap list, and after failures there
        the other brokers the metadata named in turn (the bootstrap broker may be the one that died)."""
        if self._coordinator != BOOTSTRAP:
            return self._coordinator
        candidates = [BOOTSTRAP, *self._routing.brokers()]
        return candidates[failures % len(candidates)]

    @staticmethod
    async def _requests(
        outgoing: asyncio.Queue[groups_pb2.ConsumeRequest | None],
    ) -> AsyncIterator[groups_pb2.ConsumeRequest]:
        while (request := await outgoing.get()) is not None:
            yield request

    async def _heartbeat(self, outgoing: asyncio.Queue[groups_pb2.ConsumeRequest | None]) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_s)
            outgoing.put_nowait(groups_pb2.ConsumeRequest(heartbeat=groups_pb2.Heartbeat()))

    def _send(self, **message: Any) -> None:
        self._outgoing.put_nowait(groups_pb2.ConsumeRequest(**message))

    async def _handle(self, response: groups_pb2.ConsumeResponse) -> None:
        kind = response.WhichOneof("message")
        if kind == "records":
            records = response.records
            tp = TopicPartition(records.topic, records.partition)
            epoch = self._consumer.epoch_of(tp)
            if epoch is None or not records.batches:
                # Not ours any more: the credit it took is given back at once.
                self.credit_taken(sum(batch.ByteSize() for batch in records.batches))
                return
            last = records.batches[-1]
            size = sum(batch.ByteSize() for batch in records.batches)  # what the broker charged
            # A compressed batch's records are not counted until it is opened: the broker says where it ended.
            next_offset = records.next_offset or last.base_offset + len(last.records)
            delivery = GroupDelivery(records.batches, next_offset, records.high_watermark, size)
            # Unbounded: credit bounds the bytes, and control messages behind must never wait for the caller.
            self._consumer.deliver((tp, epoch, delivery))
        elif kind == "assignment":
            assignment = response.assignment
            self.member_id, self.generation = assignment.member_id, assignment.generation
            now = {TopicPartition(tp.topic, tp.partition) for tp in assignment.partitions}
            added, lost = sorted(now - self.owned), sorted(self.owned - now)
            committed = {TopicPartition(o.topic, o.partition): o.offset for o in assignment.committed}
            for tp in lost:
                self._consumer.stop_partition(tp)
            for tp in added:
                if assignment.subscribe:
                    self._consumer.read_partition(tp, committed.get(tp))
                else:
                    self._consumer.start_partition(tp)
            self.owned = now
            self._live = True
            self._joined.set()
            if added:
                await _call(self._on_assign, added)
        elif kind == "revoke":
            tps = [TopicPartition(tp.topic, tp.partition) for tp in response.revoke.partitions]
            for tp in tps:
                if tp in self.owned:
                    self._revoking[tp] = self._consumer.position_of(tp)  # all that polls handed out
                    self._consumer.stop_partition(tp)
                    self.owned.discard(tp)
            if self._consumer.polling:  # the caller waits in a poll: what it was given is processed
                self._side_task(self.give_back())
            # Otherwise the caller may be processing what it was given: give back at its next poll.
        elif kind == "commit_result":
            if not self._commits:
                return
            future = self._commits.popleft()
            result = response.commit_result
            if future.done():
                return
            if result.HasField("error"):
                e = result.error
                future.set_exception(make_error(code_from_int(e.code), e.message, e.reason, e.metadata))
            else:
                stored = {TopicPartition(o.topic, o.partition): o.offset for o in result.offsets}
                self._committed.update(stored)
                future.set_result(stored)

    def _side_task(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    @property
    def revoking(self) -> bool:
        return bool(self._revoking)

    async def give_back(self) -> None:
        """Commit what was processed of the partitions asked back (with auto-commit), then say they are free.

        Runs when the caller polls (or is waiting in a poll): everything polls handed out before is
        processed then, as at-least-once needs, and nothing processed is delivered to the next owner again.
        """
        revoking, self._revoking = self._revoking, {}
        if not revoking:
            return
        processed = {tp: offset for tp, offset in revoking.items() if offset is not None}
        try:
            if self._consumer.auto_commit and processed:
                await self.commit(processed)
        except TidelogError as err:
            log.warning("group %s: commit before revoke failed: %s", self.group, err)
        await _call(self._on_revoke, list(revoking))
        if self._live:
            self._send(
                revoked=groups_pb2.Revoked(
                    partitions=[groups_pb2.TopicPartition(topic=t, partition=p) for t, p in revoking]
                )
            )

    def _lose_everything(self, error: TidelogError) -> None:
        self._live = False
        for task in self._side_tasks:
            task.cancel()
        for future in self._commits:
            if not future.done():
                future.set_exception(error)
        self._commits.clear()
        self._revoking = {}  # the broker takes them back without us: the next owner starts at the last commit
        for tp in self.owned:
            self._consumer.stop_partition(tp)
        self.owned = set()
        self._joined.clear()

    # -- what the consumer calls -----------------------------------------------------

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> dict[TopicPartition, int]:
        """Commit offsets (the next record to process, per partition); what is committed now."""
        new = {tp: offset for tp, offset in offsets.items() if self._committed.get(tp) != offset}
        if not new:
            return dict(offsets)
        if not self._live:
            raise UnavailableError(
                f"not a member of group {self.group!r} right now (the consumer is rejoining): commit once it has"
            )
        future: asyncio.Future[dict[TopicPartition, int]] = asyncio.get_running_loop().create_future()
        self._commits.append(future)
        self._send(
            commit=groups_pb2.CommitOffsets(
                offsets=[groups_pb2.PartitionOffset(topic=t, partition=p, offset=o) for (t, p), o in new.items()]
            )
        )
        return await future

    def credit_taken(self, size: int) -> None:
        """The caller took `size` bytes off the buffer: let the broker send as much again."""
        self._credit_due += size
        if self._live and (self._credit_due >= _CREDIT_STEP_BYTES or self._consumer.queue_empty()):
            self._send(credit=groups_pb2.Credit(bytes=self._credit_due))
            self._credit_due = 0

    async def close(self) -> None:
        """Commit what was processed (with auto-commit), then leave the group."""
        if self._task is None:
            return
        try:
            await asyncio.wait_for(self.give_back(), 10)
            if self._consumer.auto_commit and self.owned:
                processed = {tp: o for tp, o in self._consumer.processed_positions().items() if tp in self.owned}
                await asyncio.wait_for(self.commit(processed), 10)
        except (TidelogError, TimeoutError) as err:
            log.warning("group %s: final commit failed: %s", self.group, err)
        self._outgoing.put_nowait(None)
        self._task.cancel()
        for task in self._side_tasks:
            task.cancel()
        await asyncio.gather(self._task, *self._side_tasks, return_exceptions=True)


async def _call(callback: PartitionsCallback | None, tps: Iterable[TopicPartition]) -> None:
    if callback is None:
        return
    try:
        result = callback(list(tps))
        if inspect.isawaitable(result):
            await result
    except Exception:
        log.exception("partition callback failed")
