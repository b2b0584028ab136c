"""The Groups service: Consume streams (membership plus delivery within credit) and group admin."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable

import grpc
import structlog

from tidelog.broker import config
from tidelog.broker.api.data import offset_out_of_range, position_offset
from tidelog.broker.api.rpc import Context, Response, Rpc, parse
from tidelog.broker.batches import frame_batches, length_delimited
from tidelog.broker.cluster.membership import Membership, holds_replica
from tidelog.broker.errors import BrokerError, invalid_request
from tidelog.broker.groups.coordinator import Coordinator, Group, Member
from tidelog.broker.groups.offsets import OffsetStore
from tidelog.broker.groups.placement import GroupPlacement
from tidelog.broker.log.produce import check_partition
from tidelog.broker.log.service import Log
from tidelog.broker.log.topics import PartitionState, TopicState
from tidelog.broker.log.wakeups import wait_any
from tidelog.broker.metrics import Metrics
from tidelog.broker.security.access import Access
from tidelog.common.reasons import Reason
from tidelog.v1 import groups_pb2, records_pb2

log = structlog.get_logger("tidelog.groups")

# Most bytes in one records message, whatever the credit (one batch may still go over it).
MAX_RECORDS_MESSAGE_BYTES = 1 << 20
# How often silent members and unconfirmed revocations are checked.
EXPIRY_TICK_S = 0.1
# A delivery loop with nothing to do looks again this often (ended streams, deleted topics).
IDLE_RECHECK_S = 1.0
_RECORDS_TAG = b"\x1a"  # ConsumeResponse.records: field 3, length-delimited


def records_response(batches: list[bytes], topic: str, partition: int, high_watermark: int, next_offset: int) -> bytes:
    """A ConsumeResponse with `records`, built around the stored batch bytes without parsing them."""
    tail = groups_pb2.GroupRecords(
        topic=topic, partition=partition, high_watermark=high_watermark, next_offset=next_offset
    )
    return length_delimited(_RECORDS_TAG, frame_batches(batches) + tail.SerializeToString())


def group_not_found(name: str) -> BrokerError:
    return BrokerError(Reason.GROUP_NOT_FOUND, f"group {name!r} has no members and no committed offsets", group=name)


class GroupService:
    def __init__(
        self,
        log_: Log,
        offsets: OffsetStore,
        placement: GroupPlacement,
        coordinator: Coordinator,
        membership: Membership,
        metrics: Metrics,
        rpc: Rpc,
        access: Access,
    ) -> None:
        self._membership = membership
        self._rpc = rpc
        self._access = access
        self._metrics = metrics
        self._log = log_
        self._registry = log_.registry
        self._offsets = offsets
        self._placement = placement
        self._coordinator = coordinator
        self._expiry: asyncio.Task[None] | None = None

    def handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        return {
            "Consume": self._rpc.bidi_stream("Consume", self.consume),
            "CommitOffsets": self._rpc.unary("CommitOffsets", groups_pb2.CommitOffsetsRequest, self.commit_offsets),
            "FetchOffsets": self._rpc.unary("FetchOffsets", groups_pb2.FetchOffsetsRequest, self.fetch_offsets),
            "ListGroups": self._rpc.unary("ListGroups", groups_pb2.ListGroupsRequest, self.list_groups),
            "DescribeGroup": self._rpc.unary("DescribeGroup", groups_pb2.DescribeGroupRequest, self.describe_group),
            "DeleteGroup": self._rpc.unary("DeleteGroup", groups_pb2.DeleteGroupRequest, self.delete_group),
            "ResetOffsets": self._rpc.unary("ResetOffsets", groups_pb2.ResetOffsetsRequest, self.reset_offsets),
        }

    def start(self) -> None:
        self._expiry = asyncio.create_task(self._expire_periodically())

    def end_streams(self) -> None:
        """End every Consume stream with SHUTTING_DOWN (before the server stops): members rejoin later."""
        self._coordinator.end_all(
            BrokerError(Reason.SHUTTING_DOWN, "the broker is shutting down; consumers rejoin once it is back")
        )

    async def stop(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            await asyncio.gather(self._expiry, return_exceptions=True)

    async def _expire_periodically(self) -> None:
        while True:
            await asyncio.sleep(EXPIRY_TICK_S)
            self._coordinator.expire()

    # -- Consume -------------------------------------------------------------------

    async def consume(self, requests: AsyncIterator[bytes], context: Context) -> AsyncIterator[Response]:
        incoming = requests.__aiter__()
        try:
            first = parse(groups_pb2.ConsumeRequest, await anext(incoming))
        except StopAsyncIteration:
            return
        if first.WhichOneof("message") != "join":
            raise invalid_request("the first message of a Consume stream must be join")
        self._access.require("consume", "group", first.join.group)
        for topic in first.join.topics:
            self._access.require("consume", "topic", topic)
        base = await self._placement.coordinate(first.join.group)
        subscribe = self._placement.clustered and first.join.can_subscribe
        if not subscribe:
            self._require_local_replicas(first.join.topics)
        await self._coordinator.admin_writes_done(first.join.group)
        member = self._coordinator.join(first.join, context.peer(), base, subscribe)
        reader = asyncio.create_task(self._read_requests(incoming, member))
        try:
            while True:
                while member.outbox:
                    yield member.outbox.popleft()
                if member.ended is not None:
                    raise member.ended
                response = self._next_records(member)
                if response is not None:
                    await self._access.throttle("consume", len(response))
                    yield response
                    continue
                # A member that reads its partitions itself waits for the coordinator's messages only.
                owned = () if member.subscribe else member.owned
                partitions = [p for p in map(self._partition_state, owned) if p is not None]
                await wait_any([member, *partitions], IDLE_RECHECK_S)
        finally:
            reader.cancel()
            self._coordinator.leave(member)

    def _require_local_replicas(self, topics: Iterable[str]) -> None:
        """Records delivered on the stream come from the coordinator's own log: in a cluster, that holds
        only the partitions this broker replicates. A member that cannot read them itself (no
        `can_subscribe`) is refused the rest rather than given nothing from them."""
        me = self._membership.broker_id
        for name in topics:
            if name not in self._registry:
                continue  # the coordinator's own answer (a topic that does not exist) follows
            topic = self._registry.get(name)
            for partition in range(len(topic.partitions)):
                if not holds_replica(self._membership, topic.id, partition):
                    raise BrokerError(
                        Reason.UNSUPPORTED_IN_CLUSTER,
                        f"broker {me} coordinates this group but holds no replica of {name}/{partition}, so it "
                        "cannot deliver its records: join with can_subscribe and read each partition from its "
                        "leader with Subscribe (the Tidelog SDK does), or replicate the topic on every broker",
                        topic=name,
                        partition=partition,
                    )

    async def _read_requests(self, incoming: AsyncIterator[bytes], member: Member) -> None:
        """Act on what the member sends; any message is a heartbeat. A half-closed stream stays a member."""
        try:
            async for raw in incoming:
                member.last_seen = time.monotonic()
                request = parse(groups_pb2.ConsumeRequest, raw)
                kind = request.WhichOneof("message")
                if kind == "commit":
                    self._commit_on_stream(member, request.commit.offsets)
                elif kind == "credit":
                    member.grant(request.credit.records, request.credit.bytes)
                elif kind == "revoked":
                    if member.commits:  # the new owner starts from what was committed before
                        await asyncio.gather(*member.commits, return_exceptions=True)
                    self._coordinator.revoked(member, [(tp.topic, tp.partition) for tp in request.revoked.partitions])
                elif kind == "join":
                    raise invalid_request("join comes once, as the first message; open a new stream to join again")
                elif kind != "heartbeat":
                    raise invalid_request("an empty Consume message: set commit, credit, revoked or heartbeat")
        except BrokerError as err:
            member.end(err)

    def _commit_on_stream(self, member: Member, offsets: Iterable[groups_pb2.PartitionOffset]) -> None:
        """Check now, in stream order (a `revoked` right behind must not overtake it); answer in order."""
        try:
            written = self._submit_commit(member.group, member.id, None, offsets)
        except BrokerError as err:
            written = asyncio.get_running_loop().create_future()
            written.set_exception(err)
        member.commits.append(written)
        written.add_done_callback(lambda _: _answer_commits(member))

    def _submit_commit(
        self, group: str, member_id: str, generation: int | None, offsets: Iterable[groups_pb2.PartitionOffset]
    ) -> asyncio.Future[list[groups_pb2.PartitionOffset]]:
        """Check (fencing, ranges) and queue a commit; the future holds what is committed now."""
        offsets = list(offsets)
        for o in offsets:  # before anything is looked up: a refusal must not tell whether the topic exists
            self._access.require("consume", "topic", o.topic)
        topics = [self._registry.get(o.topic) for o in offsets]  # TOPIC_NOT_FOUND before any fencing
        self._coordinator.check_commit(group, member_id, generation, [(o.topic, o.partition) for o in offsets])
        entries = []
        for o, topic in zip(offsets, topics, strict=True):
            check_partition(topic, o.partition)
            partition = topic.partitions[o.partition]
            # In a cluster this broker may hold no replica (or a follower's): the leader's high
            # watermark is not known here, so only the lower bound is checked.
            high_watermark = partition.high_watermark if not self._placement.clustered else None
            if o.offset < 0 or (high_watermark is not None and o.offset > high_watermark):
                raise BrokerError(
                    Reason.OFFSET_OUT_OF_RANGE,
                    f"cannot commit offset {o.offset} for {o.topic}/{o.partition}: commit 0 to the high watermark "
                    f"({partition.high_watermark}), the offset of the next record to process",
                    log_start_offset=partition.log_start_offset,
                    high_watermark=partition.high_watermark,
                )
            entries.append((topic.id, o.partition, o.offset))
        written = self._offsets.commit(group, entries)
        result: asyncio.Future[list[groups_pb2.PartitionOffset]] = asyncio.get_running_loop().create_future()

        def done(outcome: asyncio.Future[list[int]]) -> None:
            if outcome.exception() is not None:
                result.set_exception(outcome.exception())  # type: ignore[arg-type]
                return
            stored = outcome.result()
            result.set_result(
                [
                    groups_pb2.PartitionOffset(topic=o.topic, partition=o.partition, offset=s)
                    for o, s in zip(offsets, stored, strict=True)
                ]
            )

        written.add_done_callback(done)
        return result

    def _partition_state(self, tp: tuple[str, int]) -> PartitionState | None:
        try:
            topic = self._registry.get(tp[0])
        except BrokerError:
            return None
        return topic.partitions[tp[1]] if tp[1] < len(topic.partitions) else None

    def _next_records(self, member: Member) -> bytes | None:
        """One records message from the next owned partition with data, within the member's credit."""
        if member.subscribe or not member.owned or not member.has_credit():
            return None
        tps = sorted(member.owned)
        for step in range(len(tps)):
            tp = tps[(member.cursor + step) % len(tps)]
            try:
                topic = self._registry.get(tp[0])
            except BrokerError:
                continue  # deleted: the partition yields nothing
            partition = topic.partitions[tp[1]]
            position = member.positions.get(tp)
            if position is None:
                position = self._start_offset(member, topic, partition)
            position = max(position, partition.log_start_offset)
            member.positions[tp] = position
            if position >= partition.high_watermark:
                continue
            max_records = config.MAX_FETCH_MAX_RECORDS
            if member.credit_records is not None:
                max_records = min(max_records, member.credit_records)
            read = self._log.read(
                topic, partition, position, max_records, min(member.credit_bytes, MAX_RECORDS_MESSAGE_BYTES)
            )
            member.positions[tp] = read.next_offset if read.batches else partition.high_watermark
            if not read.batches:
                continue
            sent = sum(len(b) for b in read.batches)
            member.credit_bytes -= sent
            self._metrics.fetched(tp[0], read.next_offset - position, sent)
            if member.credit_records is not None:
                member.credit_records -= read.next_offset - position
            member.cursor = (member.cursor + step + 1) % len(tps)
            return records_response(read.batches, tp[0], tp[1], partition.high_watermark, read.next_offset)
        return None

    def _start_offset(self, member: Member, topic: TopicState, partition: PartitionState) -> int:
        offset = self._offsets.committed_offset(member.group, topic.id, partition.partition)
        if offset is not None:
            return min(offset, partition.high_watermark)
        return partition.log_start_offset if member.reset == "earliest" else partition.high_watermark

    # -- offsets and admin ---------------------------------------------------------

    async def commit_offsets(
        self, request: groups_pb2.CommitOffsetsRequest, context: Context
    ) -> groups_pb2.CommitOffsetsResponse:
        self._access.require("consume", "group", request.group)
        await self._placement.coordinate(request.group)
        await self._submit_commit(request.group, request.member_id, request.generation, request.offsets)
        return groups_pb2.CommitOffsetsResponse()

    def _visible_topics_by_id(self) -> dict[int, TopicState]:
        """The topics the caller may describe: a group's answers leave the others out, without a trace."""
        return {
            topic.id: topic
            for topic in self._registry.sorted()
            if self._access.permitted("describe", "topic", topic.name)
        }

    async def fetch_offsets(
        self, request: groups_pb2.FetchOffsetsRequest, context: Context
    ) -> groups_pb2.FetchOffsetsResponse:
        self._access.require("describe", "group", request.group)
        wanted = set(request.topics)
        for name in sorted(wanted):
            self._access.require("describe", "topic", name)
        for name in wanted:
            self._registry.get(name)
        await self._placement.coordinate(request.group)
        by_id = self._visible_topics_by_id()
        offsets = [
            groups_pb2.PartitionOffset(topic=by_id[topic_id].name, partition=partition, offset=offset)
            for (topic_id, partition), offset in self._offsets.committed(request.group).items()
            if topic_id in by_id and (not wanted or by_id[topic_id].name in wanted)
        ]
        offsets.sort(key=lambda o: (o.topic, o.partition))
        return groups_pb2.FetchOffsetsResponse(offsets=offsets)

    async def list_groups(
        self, request: groups_pb2.ListGroupsRequest, context: Context
    ) -> groups_pb2.ListGroupsResponse:
        self._access.require("describe", "cluster")
        names = set(await self._offsets.all_group_names()) | {g.name for g in self._coordinator.groups() if g.members}
        summaries = []
        for name in sorted(names):
            group = self._coordinator.group(name)
            state = group.state if group else "empty" if self._placement.coordinates(name) else "elsewhere"
            summaries.append(
                groups_pb2.GroupSummary(
                    name=name,
                    members=len(group.members) if group else 0,
                    generation=group.generation if group else 0,
                    state=state,
                )
            )
        return groups_pb2.ListGroupsResponse(groups=summaries)

    async def describe_group(
        self, request: groups_pb2.DescribeGroupRequest, context: Context
    ) -> groups_pb2.DescribeGroupResponse:
        self._access.require("describe", "group", request.group)
        await self._placement.coordinate(request.group)
        group = self._coordinator.group(request.group)
        offsets = self._offsets.committed(request.group)
        if (group is None or not group.members) and not offsets:
            raise group_not_found(request.group)
        by_id = self._visible_topics_by_id()
        visible = {topic.name for topic in by_id.values()}
        owners = _owners(group)
        topics = {by_id[topic_id].name for topic_id, _ in offsets if topic_id in by_id}
        topics |= {t for m in (group.members.values() if group else ()) for t in m.topics if t in visible}
        lags = []
        for name in sorted(topics):
            try:
                topic = self._registry.get(name)
            except BrokerError:
                continue
            for partition in topic.partitions:
                done = offsets.get((topic.id, partition.partition), -1)
                start = done if done >= 0 else partition.log_start_offset
                lag = groups_pb2.PartitionLag(
                    topic=name,
                    partition=partition.partition,
                    committed_offset=done,
                    end_offset=partition.high_watermark,
                    lag=max(0, partition.high_watermark - start),
                    member_id=owners.get((name, partition.partition), ""),
                )
                if not holds_replica(self._membership, topic.id, partition.partition):  # its end is not known here
                    lag.end_offset = lag.lag = -1
                lags.append(lag)
        members = [
            groups_pb2.GroupMember(
                member_id=m.id,
                topics=sorted(t for t in m.topics if t in visible),
                partitions=[
                    groups_pb2.TopicPartition(topic=t, partition=p) for t, p in sorted(m.owned) if t in visible
                ],
                peer=m.peer,
                session_timeout_ms=round(m.session_timeout_s * 1000),
            )
            for m in (group.members.values() if group else ())
        ]
        return groups_pb2.DescribeGroupResponse(
            name=request.group,
            generation=group.generation if group else 0,
            state=group.state if group else "empty",
            members=members,
            partitions=lags,
        )

    def _check_no_members(self, name: str, action: str) -> None:
        group = self._coordinator.group(name)
        if group is not None and group.members:
            raise BrokerError(
                Reason.GROUP_NOT_EMPTY,
                f"group {name!r} has {len(group.members)} live member(s); stop them before you {action}",
                group=name,
                members=len(group.members),
            )

    async def delete_group(
        self, request: groups_pb2.DeleteGroupRequest, context: Context
    ) -> groups_pb2.DeleteGroupResponse:
        self._access.require("delete", "group", request.group)
        await self._placement.coordinate(request.group)
        self._check_no_members(request.group, "delete it")
        async with self._coordinator.admin_write(request.group):
            had_offsets = await self._offsets.delete(request.group)
        if not had_offsets:  # and no members (checked above): an empty group is not kept in memory
            raise group_not_found(request.group)
        log.info("group_deleted", group=request.group)
        return groups_pb2.DeleteGroupResponse()

    async def reset_offsets(
        self, request: groups_pb2.ResetOffsetsRequest, context: Context
    ) -> groups_pb2.ResetOffsetsResponse:
        self._access.require("alter", "group", request.group)
        self._access.require("consume", "topic", request.topic)  # it moves where the group reads this topic
        await self._placement.coordinate(request.group)
        self._check_no_members(request.group, "reset its offsets")
        topic = self._registry.get(request.topic)
        numbers = list(request.partitions) or range(len(topic.partitions))
        target = request.WhichOneof("target")
        if target is None:
            raise invalid_request("say where to reset to: position, timestamp_ms or offset")
        entries = []
        for number in numbers:
            check_partition(topic, number)
            entries.append((topic.id, number, self._reset_target(topic, topic.partitions[number], request, target)))
        async with self._coordinator.admin_write(request.group):
            self._check_no_members(request.group, "reset its offsets")  # none joined while we looked up offsets
            await self._offsets.reset(request.group, entries)
        log.info("group_offsets_reset", group=request.group, topic=topic.name, offsets=[e[2] for e in entries])
        return groups_pb2.ResetOffsetsResponse(
            offsets=[
                groups_pb2.PartitionOffset(topic=topic.name, partition=number, offset=offset)
                for _, number, offset in entries
            ]
        )

    def _reset_target(
        self, topic: TopicState, partition: PartitionState, request: groups_pb2.ResetOffsetsRequest, target: str
    ) -> int:
        if target == "position":
            if request.position == records_pb2.POSITION_UNSPECIFIED:  # a reset says where, explicitly
                raise invalid_request("position must be POSITION_EARLIEST or POSITION_LATEST")
            return position_offset(partition, request.position)
        if target == "timestamp_ms":
            return self._log.offset_for_time(topic, partition, request.timestamp_ms)[0]
        if not partition.log_start_offset <= request.offset <= partition.high_watermark:
            raise offset_out_of_range(topic, partition, request.offset)
        return request.offset


def _answer_commits(member: Member) -> None:
    """Send the answers of the member's commits that are done, oldest first, up to one still being written."""
    while member.commits and member.commits[0].done():
        done = member.commits.popleft()
        error = done.exception()
        if isinstance(error, BrokerError):
            result = groups_pb2.CommitResult(error=_group_error(error))
        elif error is not None:
            result = groups_pb2.CommitResult(error=_group_error(BrokerError(Reason.INTERNAL, "the commit failed")))
        else:
            result = groups_pb2.CommitResult(offsets=done.result())
        member.send(groups_pb2.ConsumeResponse(commit_result=result))


def _owners(group: Group | None) -> dict[tuple[str, int], str]:
    if group is None:
        return {}
    return {tp: m.id for m in group.members.values() for tp in (*m.owned, *m.revoking)}


def _group_error(err: BrokerError) -> groups_pb2.GroupError:
    return groups_pb2.GroupError(code=err.code.value[0], message=err.message, reason=err.reason, metadata=err.metadata)
