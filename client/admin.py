"""AdminClient and AsyncAdminClient: topics, offsets, metadata and consumer groups."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import grpc

from tidelog._channel import DEFAULT_BOOTSTRAP, Security, call, open_channel
from tidelog._loop import LoopThread
from tidelog.errors import NotCoordinatorError
from tidelog.types import (
    ClusterDescription,
    ClusterPartition,
    ElectionResult,
    GroupDescription,
    GroupMemberInfo,
    GroupSummary,
    PartitionDescription,
    PartitionLag,
    TopicDescription,
    TopicInfo,
    TopicPartition,
)
from tidelog.v1 import admin_pb2, admin_pb2_grpc, broker_pb2, broker_pb2_grpc, groups_pb2, groups_pb2_grpc, records_pb2

T = TypeVar("T")
_COORDINATOR_TRIES = 3
_OUTCOMES = {
    admin_pb2.ELECTION_OUTCOME_ELECTED: "elected",
    admin_pb2.ELECTION_OUTCOME_NOT_NEEDED: "not_needed",
    admin_pb2.ELECTION_OUTCOME_NOT_ELIGIBLE: "not_eligible",
}
_POSITIONS = {"earliest": records_pb2.POSITION_EARLIEST, "latest": records_pb2.POSITION_LATEST}


def _topic_info(topic: admin_pb2.Topic) -> TopicInfo:
    return TopicInfo(topic.name, topic.partitions, dict(topic.configs))


class AsyncAdminClient:
    """Manage topics from asyncio code.

    >>> admin = AsyncAdminClient("127.0.0.1:50051")
    >>> await admin.create_topic("orders", partitions=3, configs={"retention.ms": "86400000"})
    """

    def __init__(self, bootstrap: str = DEFAULT_BOOTSTRAP, *, timeout: float = 30.0, **security: Any) -> None:
        """`security`: tls_ca_file, tls_cert_file, tls_key_file, token (client._channel.Security)."""
        settings = dict(security)
        self._security = Security.take(settings)
        self._channel = open_channel(bootstrap, self._security)
        self._broker_channels: dict[str, grpc.aio.Channel] = {}
        if settings:
            raise TypeError(f"unknown AdminClient settings: {', '.join(sorted(settings))}")
        self._admin = admin_pb2_grpc.AdminStub(self._channel)
        self._broker = broker_pb2_grpc.BrokerStub(self._channel)
        self._groups = groups_pb2_grpc.GroupsStub(self._channel)
        self._timeout = timeout

    async def create_topic(
        self,
        name: str,
        partitions: int = 1,
        configs: Mapping[str, str] | None = None,
        replication_factor: int | None = None,
    ) -> TopicInfo:
        """Create a topic; raises TopicExistsError, InvalidNameError, InvalidConfigError.
        `replication_factor` (a cluster's; None: the broker's default) copies each partition on as many brokers."""
        request = admin_pb2.CreateTopicRequest(name=name, partitions=partitions, configs=dict(configs or {}))
        if replication_factor is not None:
            request.replication_factor = replication_factor
        return _topic_info(await call(self._admin.CreateTopic(request, timeout=self._timeout)))

    async def delete_topic(self, name: str) -> None:
        """Delete a topic and its records; raises TopicNotFoundError."""
        await call(self._admin.DeleteTopic(admin_pb2.DeleteTopicRequest(name=name), timeout=self._timeout))

    async def list_topics(self) -> list[TopicInfo]:
        """Every topic, sorted by name."""
        response = await call(self._admin.ListTopics(admin_pb2.ListTopicsRequest(), timeout=self._timeout))
        return [_topic_info(t) for t in response.topics]

    async def describe_topic(self, name: str) -> TopicDescription:
        """A topic with each partition's log start, high watermark and size; in a cluster, each
        partition's leader, replicas and ISR, and its figures as its leader holds them."""
        request = admin_pb2.DescribeTopicRequest(name=name)
        response = await call(self._admin.DescribeTopic(request, timeout=self._timeout))
        partitions = {p.partition: p for p in response.partitions}
        if any(p.replicas for p in partitions.values()):  # a cluster: each partition's own figures
            metadata = await call(self._broker.GetMetadata(broker_pb2.GetMetadataRequest(), timeout=self._timeout))
            addresses = {b.id: b.address for b in metadata.brokers}
            for leader in {p.leader for p in partitions.values() if p.leader in addresses}:
                stub = admin_pb2_grpc.AdminStub(self._channel_to(addresses[leader]))
                at_leader = await call(stub.DescribeTopic(request, timeout=self._timeout))
                for p in at_leader.partitions:
                    if p.leader == leader:
                        partitions[p.partition] = p
        return TopicDescription(
            _topic_info(response.topic),
            [
                PartitionDescription(
                    p.partition,
                    p.log_start_offset,
                    p.high_watermark,
                    p.size_bytes,
                    p.leader,
                    tuple(p.replicas),
                    tuple(p.isr),
                )
                for _, p in sorted(partitions.items())
            ],
        )

    def _channel_to(self, address: str) -> grpc.aio.Channel:
        """A channel of its own to one broker (a partition's leader, a group's coordinator)."""
        channel = self._broker_channels.get(address)
        if channel is None:
            channel = self._broker_channels[address] = open_channel(address, self._security)
        return channel

    async def alter_topic_configs(self, name: str, configs: Mapping[str, str]) -> TopicInfo:
        """Change some of a topic's configs; returns the effective configs."""
        request = admin_pb2.AlterTopicConfigsRequest(name=name, configs=dict(configs))
        return _topic_info(await call(self._admin.AlterTopicConfigs(request, timeout=self._timeout)))

    async def list_offset(
        self, topic: str, partition: int, *, position: str = "latest", timestamp_ms: int | None = None
    ) -> int:
        """The offset at `position` ("earliest"/"latest"), or of the first record at or after `timestamp_ms`."""
        request = broker_pb2.ListOffsetsRequest(topic=topic, partition=partition)
        if timestamp_ms is not None:
            request.timestamp_ms = timestamp_ms
        else:
            request.position = _POSITIONS[position]
        response = await call(self._broker.ListOffsets(request, timeout=self._timeout))
        return int(response.offset)

    async def partitions_for(self, topic: str) -> int:
        """How many partitions `topic` has (from GetMetadata)."""
        response = await call(
            self._broker.GetMetadata(broker_pb2.GetMetadataRequest(topics=[topic]), timeout=self._timeout)
        )
        return len(response.topics[0].partitions)

    async def list_groups(self) -> list[GroupSummary]:
        """Groups with live members or committed offsets, sorted by name."""
        response = await call(self._groups.ListGroups(groups_pb2.ListGroupsRequest(), timeout=self._timeout))
        return [GroupSummary(g.name, g.members, g.generation, g.state) for g in response.groups]

    async def describe_group(self, name: str) -> GroupDescription:
        """Members, their partitions, and per partition the committed offset, end offset and lag;
        raises GroupNotFoundError."""
        request = groups_pb2.DescribeGroupRequest(group=name)
        r = await self._at_coordinator(lambda stub: stub.DescribeGroup(request, timeout=self._timeout))
        return GroupDescription(
            r.name,
            r.generation,
            r.state,
            [
                GroupMemberInfo(
                    m.member_id,
                    list(m.topics),
                    [TopicPartition(tp.topic, tp.partition) for tp in m.partitions],
                    m.peer,
                    m.session_timeout_ms,
                )
                for m in r.members
            ],
            [
                PartitionLag(p.topic, p.partition, p.committed_offset, p.end_offset, p.lag, p.member_id)
                for p in r.partitions
            ],
        )

    async def group_offsets(self, name: str, topics: list[str] | None = None) -> dict[TopicPartition, int]:
        """The group's committed offsets (of `topics`, or all)."""
        request = groups_pb2.FetchOffsetsRequest(group=name, topics=topics or [])
        response = await self._at_coordinator(lambda stub: stub.FetchOffsets(request, timeout=self._timeout))
        return {TopicPartition(o.topic, o.partition): o.offset for o in response.offsets}

    async def delete_group(self, name: str) -> None:
        """Forget a group's committed offsets; raises GroupNotEmptyError while members are live."""
        request = groups_pb2.DeleteGroupRequest(group=name)
        await self._at_coordinator(lambda stub: stub.DeleteGroup(request, timeout=self._timeout))

    async def reset_group_offsets(
        self,
        name: str,
        topic: str,
        *,
        position: str | None = None,
        offset: int | None = None,
        timestamp_ms: int | None = None,
        partitions: list[int] | None = None,
    ) -> dict[TopicPartition, int]:
        """Set the group's committed offsets of `topic` (all partitions, or `partitions`) to a
        position ("earliest"/"latest"), an offset, or the first record at/after a time; refused
        (GroupNotEmptyError) while members are live. Returns the new offsets."""
        if sum(x is not None for x in (position, offset, timestamp_ms)) != 1:
            raise ValueError("give exactly one of position, offset, timestamp_ms")
        request = groups_pb2.ResetOffsetsRequest(group=name, topic=topic, partitions=partitions or [])
        if position is not None:
            request.position = _POSITIONS[position]
        elif offset is not None:
            request.offset = offset
        else:
            assert timestamp_ms is not None
            request.timestamp_ms = timestamp_ms
        response = await self._at_coordinator(lambda stub: stub.ResetOffsets(request, timeout=self._timeout))
        return {TopicPartition(o.topic, o.partition): o.offset for o in response.offsets}

    async def _at_coordinator(self, attempt: Callable[[groups_pb2_grpc.GroupsStub], Awaitable[T]]) -> T:
        """A group call at the group's coordinator: a broker that is not one names it (NOT_COORDINATOR)."""
        stub = self._groups
        for _ in range(_COORDINATOR_TRIES - 1):
            try:
                return await call(attempt(stub))
            except NotCoordinatorError as err:
                address = err.metadata.get("coordinator_address", "")
                if not address:
                    raise
                stub = groups_pb2_grpc.GroupsStub(self._channel_to(address))
        return await call(attempt(stub))

    async def create_acls(self, rules: list[str]) -> None:
        """Add ACL rules (`allow alice produce topic:orders-*`) beside the broker's ACL file."""
        request = admin_pb2.CreateAclsRequest(acls=[admin_pb2.Acl(rule=rule) for rule in rules])
        await call(self._admin.CreateAcls(request, timeout=self._timeout))

    async def delete_acls(self, rules: list[str]) -> int:
        """Remove added ACL rules; how many there were."""
        request = admin_pb2.DeleteAclsRequest(acls=[admin_pb2.Acl(rule=rule) for rule in rules])
        return int((await call(self._admin.DeleteAcls(request, timeout=self._timeout))).deleted)

    async def list_acls(self) -> list[tuple[str, str]]:
        """Every rule in force, as (rule, source) with source "file" or "added"."""
        response = await call(self._admin.ListAcls(admin_pb2.ListAclsRequest(), timeout=self._timeout))
        return [(acl.rule, acl.source) for acl in response.acls]

    async def describe_cluster(self) -> ClusterDescription:
        """The brokers, the controller, and the partitions under-replicated or offline."""
        response = await call(self._admin.DescribeCluster(admin_pb2.DescribeClusterRequest(), timeout=self._timeout))

        def partitions(entries: Any) -> list[ClusterPartition]:
            return [
                ClusterPartition(
                    p.topic, p.partition, p.leader, tuple(p.replicas), tuple(p.isr), tuple(p.target_replicas)
                )
                for p in entries
            ]

        return ClusterDescription(
            {b.id: b.address for b in response.brokers},
            response.controller_id,
            partitions(response.under_replicated),
            partitions(response.offline),
            partitions(response.reassigning),
        )

    async def elect_leaders(
        self, topic: str, partitions: list[int] | None = None, *, unclean: bool = False
    ) -> list[ElectionResult]:
        """Move the leadership of `topic`'s partitions (all, or `partitions`) to each one's preferred
        replica when it is live and in sync; with `unclean`, to a live replica outside the ISR of a
        partition whose in-sync replicas are all gone (what only they held is lost)."""
        kind = admin_pb2.ELECTION_TYPE_UNCLEAN if unclean else admin_pb2.ELECTION_TYPE_PREFERRED
        request = admin_pb2.ElectLeadersRequest(topic=topic, partitions=partitions or [], type=kind)
        response = await call(self._admin.ElectLeaders(request, timeout=self._timeout))
        return [
            ElectionResult(r.partition, _OUTCOMES.get(r.outcome, "unknown"), r.leader, r.leader_epoch, r.detail)
            for r in response.results
        ]

    async def reassign_partitions(self, topic: str, replicas: Mapping[int, Sequence[int]]) -> None:
        """Move partitions to new replicas ({partition: [broker ids]}, the first the preferred leader).
        Returns once the move is recorded; describe_cluster().reassigning shows it until it is done."""
        request = admin_pb2.ReassignPartitionsRequest(
            topic=topic,
            partitions=[
                admin_pb2.PartitionReplicas(partition=p, replicas=list(r)) for p, r in sorted(replicas.items())
            ],
        )
        await call(self._admin.ReassignPartitions(request, timeout=self._timeout))

    async def close(self) -> None:
        for channel in self._broker_channels.values():
            await channel.close()
        await self._channel.close()

    async def __aenter__(self) -> AsyncAdminClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class AdminClient:
    """Manage topics and groups (blocking). The same methods as AsyncAdminClient.

    >>> with AdminClient("127.0.0.1:50051") as admin:
    ...     admin.create_topic("orders", partitions=3)
    """

    def __init__(self, bootstrap: str = DEFAULT_BOOTSTRAP, *, timeout: float = 30.0, **security: Any) -> None:
        self._loop = LoopThread("tidelog-admin")
        self._async = self._loop.run(self._open(bootstrap, timeout, security))

    @staticmethod
    async def _open(bootstrap: str, timeout: float, security: dict[str, Any]) -> AsyncAdminClient:
        return AsyncAdminClient(bootstrap, timeout=timeout, **security)

    def create_topic(
        self,
        name: str,
        partitions: int = 1,
        configs: Mapping[str, str] | None = None,
        replication_factor: int | None = None,
    ) -> TopicInfo:
        """Create a topic; raises TopicExistsError, InvalidNameError, InvalidConfigError.
        `replication_factor` (a cluster's; None: the broker's default) copies each partition on as many brokers."""
        return self._loop.run(self._async.create_topic(name, partitions, configs, replication_factor))

    def delete_topic(self, name: str) -> None:
        """Delete a topic and its records; raises TopicNotFoundError."""
        self._loop.run(self._async.delete_topic(name))

    def list_topics(self) -> list[TopicInfo]:
        """Every topic, sorted by name."""
        return self._loop.run(self._async.list_topics())

    def describe_topic(self, name: str) -> TopicDescription:
        """A topic with each partition's log start, high watermark and size."""
        return self._loop.run(self._async.describe_topic(name))

    def alter_topic_configs(self, name: str, configs: Mapping[str, str]) -> TopicInfo:
        """Change some of a topic's configs; returns the effective configs."""
        return self._loop.run(self._async.alter_topic_configs(name, configs))

    def list_offset(
        self, topic: str, partition: int, *, position: str = "latest", timestamp_ms: int | None = None
    ) -> int:
        """The offset at `position` ("earliest"/"latest"), or of the first record at or after `timestamp_ms`."""
        return self._loop.run(self._async.list_offset(topic, partition, position=position, timestamp_ms=timestamp_ms))

    def partitions_for(self, topic: str) -> int:
        """How many partitions `topic` has."""
        return self._loop.run(self._async.partitions_for(topic))

    def list_groups(self) -> list[GroupSummary]:
        """Groups with live members or committed offsets, sorted by name."""
        return self._loop.run(self._async.list_groups())

    def describe_group(self, name: str) -> GroupDescription:
        """Members, their partitions, and per partition the committed offset, end offset and lag."""
        return self._loop.run(self._async.describe_group(name))

    def group_offsets(self, name: str, topics: list[str] | None = None) -> dict[TopicPartition, int]:
        """The group's committed offsets (of `topics`, or all)."""
        return self._loop.run(self._async.group_offsets(name, topics))

    def delete_group(self, name: str) -> None:
        """Forget a group's committed offsets; raises GroupNotEmptyError while members are live."""
        self._loop.run(self._async.delete_group(name))

    def reset_group_offsets(
        self,
        name: str,
        topic: str,
        *,
        position: str | None = None,
        offset: int | None = None,
        timestamp_ms: int | None = None,
        partitions: list[int] | None = None,
    ) -> dict[TopicPartition, int]:
        """Set the group's committed offsets of `topic`; see AsyncAdminClient.reset_group_offsets."""
        return self._loop.run(
            self._async.reset_group_offsets(
                name, topic, position=position, offset=offset, timestamp_ms=timestamp_ms, partitions=partitions
            )
        )

    def create_acls(self, rules: list[str]) -> None:
        """Add ACL rules (`allow alice produce topic:orders-*`) beside the broker's ACL file."""
        self._loop.run(self._async.create_acls(rules))

    def delete_acls(self, rules: list[str]) -> int:
        """Remove added ACL rules; how many there were."""
        return self._loop.run(self._async.delete_acls(rules))

    def list_acls(self) -> list[tuple[str, str]]:
        """Every rule in force, as (rule, source) with source "file" or "added"."""
        return self._loop.run(self._async.list_acls())

    def describe_cluster(self) -> ClusterDescription:
        """The brokers, the controller, and the partitions under-replicated, offline or moving."""
        return self._loop.run(self._async.describe_cluster())

    def elect_leaders(
        self, topic: str, partitions: list[int] | None = None, *, unclean: bool = False
    ) -> list[ElectionResult]:
        """See AsyncAdminClient.elect_leaders."""
        return self._loop.run(self._async.elect_leaders(topic, partitions, unclean=unclean))

    def reassign_partitions(self, topic: str, replicas: Mapping[int, Sequence[int]]) -> None:
        """See AsyncAdminClient.reassign_partitions."""
        self._loop.run(self._async.reassign_partitions(topic, replicas))

    def close(self) -> None:
        if self._loop.loop.is_closed():
            return
        self._loop.run(self._async.close())
        self._loop.close()

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
