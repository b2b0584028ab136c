"""Replication, Kafka's way: followers fetch from leaders, the leader's high watermark follows its ISR.

A follower of a partition fetches from the leader's log end of its own (`ReplicaFetch`, long-polled),
appends what comes verbatim (`ReplicateOp`: the stored values, at their offsets), and fetches again:
each fetch's offset tells the leader how far the follower has stored. The leader's high watermark is
the least log end over the in-sync replicas (itself included) and only rises; readers never read past
it, so a record a consumer saw is on every in-sync replica.

Each fetch carries the follower's latest leader epoch; the leader answers where that epoch ends in
its own log (log/epochs.py, KIP-101), and a follower whose log runs past it (it led before and wrote
what nobody else kept) cuts its tail back there before it fetches again. A new leader notes its epoch
at its log end before it appends anything (`AssignEpochOp`); until then it answers
LEADER_NOT_AVAILABLE.

The leader keeps its ISR true (isr.py): a follower that has not caught up within
`--replica-lag-time-ms` leaves it, one that has stored up to the high watermark rejoins, each change
a compare-and-swap of the partition's key in etcd.

A producer's `acks=all` waits for the high watermark to pass its records (api/data.py). The high
watermark is checkpointed every few seconds (and at a clean stop); a restart shows records up to the
checkpoint at once, and the rest once the in-sync replicas confirm them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from typing import Any

import grpc
import structlog

from tidelog.broker.cluster.control import ETCD_ERRORS, ControlPlane
from tidelog.broker.cluster.isr import IsrTracker, with_isr
from tidelog.broker.cluster.metadata import PartitionState
from tidelog.broker.errors import BrokerError, topic_not_found
from tidelog.broker.log.epochs import LeaderEpochs, diverging, truncation_point
from tidelog.broker.log.ops import AssignEpochOp, CheckpointHighWatermarksOp, ReplicateOp, TruncateOp
from tidelog.broker.log.service import Log
from tidelog.broker.log.topics import PartitionState as LocalPartition
from tidelog.broker.log.topics import TopicState
from tidelog.common.reasons import Reason
from tidelog.v1 import replication_pb2, replication_pb2_grpc

log = structlog.get_logger("tidelog.replication")

FETCH_WAIT_MS = 500
HW_CHECKPOINT_S = 5.0  # Kafka's replica.high.watermark.checkpoint.interval.ms
FETCH_MAX_BYTES = 4 << 20
RETRY_S = 0.2

TP = tuple[int, int]  # (topic id, partition)


class Replication:
    def __init__(
        self,
        control: ControlPlane,
        log_: Log,
        replica_lag_s: float,
        token: str = "",
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        self._control = control
        self._credentials = credentials  # TLS to the other brokers; None: plaintext
        self._call_metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._log = log_
        self._isr = IsrTracker(replica_lag_s)  # leader side: what each follower has stored, and when
        self._leading: dict[TP, tuple[int, str]] = {}  # tp -> (leader epoch, topic name)
        self._isr_check = asyncio.Event()  # a follower out of the ISR may have caught up
        self._assigning: dict[TP, asyncio.Task[None]] = {}  # a new leader noting its epoch
        self._checkpointed: dict[TP, int] = {}  # the high watermark last checkpointed, by partition
        self._following: dict[TP, tuple[asyncio.Task[None], int, int]] = {}  # tp -> (task, leader, epoch)
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._local_change = asyncio.Event()

    def start(self) -> None:
        self._local_change = asyncio.Event()
        self._isr_check = asyncio.Event()
        self._log.registry.listeners.append(lambda name: self._local_change.set())  # a topic mirrored here
        self._tasks = [
            asyncio.create_task(self._run()),
            asyncio.create_task(self._maintain_isrs()),
            asyncio.create_task(self._checkpoint_periodically()),
        ]

    async def stop(self) -> None:
        tasks = [t for t, _, _ in self._following.values()] + self._tasks + list(self._assigning.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for channel in self._channels.values():
            await channel.close()

    # -- the high watermark's checkpoint -------------------------------------------------

    async def _checkpoint_periodically(self) -> None:
        while True:
            await asyncio.sleep(HW_CHECKPOINT_S)
            try:
                await self.checkpoint()
            except BrokerError as err:  # a full disk: the next one tries again
                log.warning("hw_checkpoint_failed", error=err.message)

    async def checkpoint(self) -> None:
        """Note every replicated partition's high watermark that moved since the last checkpoint."""
        marks = []
        for topic in self._log.registry.sorted():
            for local in topic.partitions:
                tp = (topic.id, local.partition)
                if tp in self._checkpointed and self._checkpointed[tp] != local.high_watermark:
                    marks.append((topic, local.partition, local.high_watermark))
        if marks:
            await self._log.submit(CheckpointHighWatermarksOp(marks))
            for topic, partition, offset in marks:
                self._checkpointed[(topic.id, partition)] = offset

    # -- which partitions this broker replicates, and how --------------------------------

    async def _run(self) -> None:
        """At every change of the cluster's metadata, or of the topics here."""
        while True:
            self._local_change.clear()
            seen = self._control.cache.version
            self._reconcile()
            changes = [
                asyncio.ensure_future(self._control.cache.changed_since(seen)),
                asyncio.ensure_future(self._local_change.wait()),
            ]
            try:
                await asyncio.wait(changes, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for change in changes:
                    change.cancel()

    def _reconcile(self) -> None:
        me = self._control.broker_id
        brokers = self._control.brokers()
        wanted: dict[TP, tuple[int, int]] = {}
        leading: dict[TP, tuple[int, str]] = {}
        for name, spec in self._control.topics().items():
            if name not in self._log.registry:
                continue
            topic = self._log.registry.get(name)
            for p, local in enumerate(topic.partitions):
                state = self._control.partition_state(spec.id, p)
                if state is None or me not in state.replicas or len(state.replicas) < 2:
                    continue
                if local.on_log_end is None:  # replicated: its high watermark follows the ISR from now on
                    local.on_log_end = functools.partial(self._log_end_moved, topic)
                    checkpoint = self._log.high_watermark_checkpoint(topic, local) or 0
                    local.high_watermark = min(local.log_end, max(local.log_start_offset, checkpoint))
                    self._checkpointed[(spec.id, p)] = local.high_watermark
                    local.leader_epochs = LeaderEpochs(self._log.leader_epochs(topic, local))
                if state.leader == me:
                    tp = (spec.id, p)
                    leading[tp] = (state.leader_epoch, name)
                    if self._leading.get(tp) != leading[tp]:
                        self._isr.became_leader(tp, [b for b in state.replicas if b != me], time.monotonic())
                    self._note_epoch(topic, local, state.leader_epoch)
                    self._raise_high_watermark(topic, local, state)
                elif state.leader in brokers:
                    wanted[(spec.id, p)] = (state.leader, state.leader_epoch)
        for tp in self._leading.keys() - leading.keys():
            self._isr.forget(tp)
            name = self._leading[tp][1]
            if name in self._log.registry:  # a produce waiting for its replicas learns the leadership is gone
                self._log.registry.get(name).partitions[tp[1]].wake()
        self._leading = leading
        for tp, (task, leader, epoch) in list(self._following.items()):
            if wanted.get(tp) != (leader, epoch):
                task.cancel()
                del self._following[tp]
        for tp, (leader, epoch) in wanted.items():
            if tp not in self._following:
                task = asyncio.create_task(self._follow(tp, leader, epoch))
                self._following[tp] = (task, leader, epoch)

    # -- leader side ---------------------------------------------------------------------

    def _note_epoch(self, topic: TopicState, local: LocalPartition, epoch: int) -> None:
        """Note a new leadership's epoch at the log end (once; the produce path waits for it)."""
        tp = (topic.id, local.partition)
        if local.leader_epochs is None or local.leader_epochs.latest >= epoch or tp in self._assigning:
            return

        async def note() -> None:
            try:
                await self._log.submit(AssignEpochOp(topic, local.partition, epoch))
                log.info("leader_epoch_started", topic=topic.name, partition=local.partition, epoch=epoch)
            except BrokerError as err:  # the next change of the metadata tries again
                log.warning("leader_epoch_failed", topic=topic.name, partition=local.partition, error=err.message)
            finally:
                del self._assigning[tp]
                self._local_change.set()

        self._assigning[tp] = asyncio.create_task(note())

    def _log_end_moved(self, topic: TopicState, local: LocalPartition) -> None:
        state = self._control.partition_state(topic.id, local.partition)
        if state is not None and state.leader == self._control.broker_id:
            self._raise_high_watermark(topic, local, state)
        local.wake()  # followers long-polling for what is new, whether or not the high watermark moved

    def _raise_high_watermark(self, topic: TopicState, local: LocalPartition, state: PartitionState) -> None:
        """The least log end over the ISR (and those this leader wrote in since), this broker's included."""
        tp = (topic.id, local.partition)
        members = self._isr.counted(tp, state, self._control.partition_revision(*tp))
        local.raise_high_watermark(self._isr.high_watermark(tp, members, self._control.broker_id, local.log_end))

    def follower_lag(self) -> dict[tuple[str, int], dict[int, int]]:
        """Per partition led here, (topic name, partition): each follower's records behind this log end
        (from its latest fetch; one that has not fetched since this leadership began counts from 0)."""
        out: dict[tuple[str, int], dict[int, int]] = {}
        for tp, (_, name) in self._leading.items():
            state = self._control.partition_state(*tp)
            if state is None or name not in self._log.registry:
                continue
            end = self._log.registry.get(name).partitions[tp[1]].log_end
            ends = self._isr.log_ends(tp)
            out[(name, tp[1])] = {
                b: max(0, end - ends.get(b, 0)) for b in state.replicas if b != self._control.broker_id
            }
        return out

    def holding(self, topic_id: int, partition: int, end: int) -> list[int]:
        """The followers whose latest fetch said they have stored the offsets below `end`."""
        return sorted(b for b, stored in self._isr.log_ends((topic_id, partition)).items() if stored >= end)

    async def fetch(self, request: replication_pb2.ReplicaFetchRequest) -> replication_pb2.ReplicaFetchResponse:
        """A follower's fetch: its log end counts toward the high watermark; the stored batches after it."""
        topic = self._log.registry.get(request.topic)
        if not 0 <= request.partition < len(topic.partitions):
            raise topic_not_found(request.topic)
        state = self._control.partition_state(topic.id, request.partition)
        me = self._control.broker_id
        if state is None or state.leader != me or state.leader_epoch != request.leader_epoch:
            raise BrokerError(
                Reason.NOT_LEADER,
                f"broker {me} does not lead {topic.name}/{request.partition} in epoch {request.leader_epoch}",
                leader_id=state.leader if state else -1,
                leader_epoch=state.leader_epoch if state else -1,
            )
        local = topic.partitions[request.partition]
        epochs = local.leader_epochs
        if epochs is None or epochs.latest < state.leader_epoch:
            raise BrokerError(
                Reason.LEADER_NOT_AVAILABLE,
                f"broker {me} is taking the lead of {topic.name}/{request.partition} in epoch {state.leader_epoch}; "
                "retry",
            )
        parted = diverging(epochs, local.log_end, request.last_fetched_epoch, request.offset)
        if parted is not None:  # nothing counts toward the high watermark until the follower cuts back
            return replication_pb2.ReplicaFetchResponse(
                diverging=replication_pb2.DivergingEpoch(epoch=parted[0], end_offset=parted[1]),
                high_watermark=local.high_watermark,
                log_end=local.log_end,
            )
        tp = (topic.id, request.partition)
        self._isr.on_fetch(tp, request.replica_id, request.offset, local.log_end, time.monotonic())
        self._raise_high_watermark(topic, local, state)
        if request.replica_id not in state.isr and request.offset >= max(local.high_watermark, epochs.latest_start):
            self._isr_check.set()
        deadline = time.monotonic() + min(request.max_wait_ms or FETCH_WAIT_MS, 10_000) / 1000
        while request.offset >= local.log_end and not topic.deleted:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            await local.wait_for_change(remaining)
        if request.offset >= local.log_end:  # it waited at the log's end all along: caught up till now
            self._isr.on_fetch(tp, request.replica_id, request.offset, local.log_end, time.monotonic())
        values = self._log.stored_values(topic, local, request.offset, request.max_bytes or FETCH_MAX_BYTES)
        return replication_pb2.ReplicaFetchResponse(
            batches=values,
            high_watermark=local.high_watermark,
            log_end=local.log_end,
            epochs=[
                replication_pb2.LeaderEpoch(epoch=e, start_offset=s)
                for e, s in epochs.overlapping(request.offset, local.log_end)
            ],
        )

    async def _maintain_isrs(self) -> None:
        """Every half lag time, and whenever a follower outside an ISR may have caught up: shrink and
        expand the ISRs of the partitions led here."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._isr_check.wait(), self._isr.lag_s / 2)
            self._isr_check.clear()
            self._isr.check_clock(time.monotonic())
            for tp, (epoch, name) in list(self._leading.items()):
                try:
                    await self._maintain_isr(tp, epoch, name)
                except ETCD_ERRORS as err:  # etcd out of reach: the next check tries again
                    log.warning("isr_change_failed", topic=name, partition=tp[1], error=str(err))

    async def _maintain_isr(self, tp: TP, epoch: int, name: str) -> None:
        me = self._control.broker_id
        state = self._control.partition_state(*tp)
        if state is None or state.leader != me or state.leader_epoch != epoch or name not in self._log.registry:
            return
        local = self._log.registry.get(name).partitions[tp[1]]
        epochs = local.leader_epochs
        if epochs is None or epochs.latest != epoch:  # the epoch is not noted yet: the next check
            return
        leaving = self._isr.lagging(tp, state, me, time.monotonic())
        registered = self._control.brokers()  # one the controller dropped (its lease ran out) waits to register
        joining = [
            b for b in self._isr.caught_up(tp, state, local.high_watermark, epochs.latest_start) if b in registered
        ]
        new = with_isr(state, leaving, joining)
        if new is None:
            return
        revision = await self._control.alter_partition(*tp, state, new)
        if revision is not None:
            self._isr.wrote(tp, state, new, revision)
            log.info("isr_changed", topic=name, partition=tp[1], isr=new.isr, left=leaving, joined=joining)

    async def hand_over(self) -> int:
        """Controlled shutdown: lead nothing before stopping. Each partition led here goes to the
        registered in-sync replica that has stored the most, under the next epoch and without this
        broker in its ISR (compare-and-swap, as an ISR change): producers move on the NOT_LEADER
        they get, instead of waiting out this broker's lease. The partitions handed over, once this
        broker's metadata shows every move (the caller bounds the wait)."""
        me = self._control.broker_id
        registered = self._control.brokers()
        moved: list[TP] = []
        for tp in list(self._leading):
            state = self._control.partition_state(*tp)
            if state is None or state.leader != me:
                continue
            ends = self._isr.log_ends(tp)
            candidates = [b for b in state.isr if b != me and b in registered]
            if not candidates:  # the only in-sync replica: it goes offline with this broker, as it must
                continue
            successor = max(candidates, key=lambda b: (ends.get(b, -1), -state.replicas.index(b)))
            isr = tuple(b for b in state.isr if b != me)
            new = PartitionState(state.replicas, successor, state.leader_epoch + 1, isr)
            try:
                if await self._control.alter_partition(*tp, state, new) is not None:
                    moved.append(tp)
                    log.info("leadership_handed_over", topic_id=tp[0], partition=tp[1], to=successor)
            except ETCD_ERRORS as err:  # the lease running out moves it instead
                log.warning("hand_over_failed", topic_id=tp[0], partition=tp[1], error=str(err))
        while True:
            seen = self._control.cache.version
            if not any(self._leads(tp) for tp in moved):
                return len(moved)
            await self._control.cache.changed_since(seen)

    def _leads(self, tp: TP) -> bool:
        state = self._control.partition_state(*tp)
        return state is not None and state.leader == self._control.broker_id

    # -- follower side -------------------------------------------------------------------

    def _stub(self, leader: int) -> Any:
        address = self._control.replication_address(leader)
        channel = self._channels.get(address)
        if channel is None:
            if self._credentials is not None:
                channel = grpc.aio.secure_channel(address, self._credentials)
            else:
                channel = grpc.aio.insecure_channel(address)
            self._channels[address] = channel
        return replication_pb2_grpc.ReplicationServiceStub(channel)

    async def _follow(self, tp: TP, leader: int, epoch: int) -> None:
        """Fetch from the leader until cancelled (a new leader or epoch starts another task)."""
        while True:
            try:
                await self._fetch_from(tp, leader, epoch)
                return
            except asyncio.CancelledError:
                raise
            except BrokerError as err:  # this broker's own refusal (it is stopping, its disk is full)
                log.warning("replica_fetch_failed", topic_id=tp[0], partition=tp[1], leader=leader, error=err.message)
                await asyncio.sleep(RETRY_S)
            except Exception:  # never give a partition up for good: log, wait, go on
                log.exception("replica_fetch_failed", topic_id=tp[0], partition=tp[1], leader=leader)
                await asyncio.sleep(RETRY_S)

    async def _fetch_from(self, tp: TP, leader: int, epoch: int) -> None:
        topic_id, partition = tp
        me = self._control.broker_id
        while True:
            topic = next((t for t in self._log.registry.sorted() if t.id == topic_id), None)
            if topic is None:
                return
            local = topic.partitions[partition]
            epochs = local.leader_epochs
            if epochs is None:  # not marked replicated yet: the next reconcile does it
                await asyncio.sleep(RETRY_S)
                continue
            request = replication_pb2.ReplicaFetchRequest(
                topic=topic.name,
                partition=partition,
                offset=local.log_end,
                replica_id=me,
                leader_epoch=epoch,
                max_wait_ms=FETCH_WAIT_MS,
                max_bytes=FETCH_MAX_BYTES,
                last_fetched_epoch=epochs.latest,
            )
            try:
                response = await self._stub(leader).ReplicaFetch(
                    request, timeout=FETCH_WAIT_MS / 1000 + 5, metadata=self._call_metadata
                )
            except grpc.aio.AioRpcError:
                await asyncio.sleep(RETRY_S)  # the leader moves or is out of reach: the cache says which
                continue
            if response.HasField("diverging"):  # ours parts from the leader's: cut it back, then fetch again
                parted = (response.diverging.epoch, response.diverging.end_offset)
                cut = truncation_point(epochs, local.log_end, parted)
                (log.warning if cut < local.log_end else log.debug)(  # records cut, or only an empty epoch
                    "replica_truncated",
                    topic=topic.name,
                    partition=partition,
                    log_end=local.log_end,
                    to=cut,
                    leader_epoch=parted[0],
                    leader_epoch_end=parted[1],
                )
                await self._log.submit(TruncateOp(topic, partition, cut))
                continue
            if response.batches:
                new_epochs = [(e.epoch, e.start_offset) for e in response.epochs if e.epoch > epochs.latest]
                try:
                    await self._log.submit(ReplicateOp(topic, partition, list(response.batches), new_epochs))
                except BrokerError as err:
                    log.warning("replica_append_failed", topic=topic.name, partition=partition, error=err.message)
                    await asyncio.sleep(RETRY_S)
                    continue
            local.raise_high_watermark(response.high_watermark)
