"""What the Kafka APIs tell clients of the cluster, and ask of it: every broker's Kafka address (each
registers its own in etcd beside its gRPC one), each partition's leader, replicas and ISR, the group
coordinators, and the in-sync replicas an acks=all produce waits for.

A single broker is a cluster of one: node 0 leads every partition and coordinates every group.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from tidelog.broker.cluster.control import ControlPlane
from tidelog.broker.cluster.membership import Membership
from tidelog.broker.cluster.metadata import NO_LEADER, PartitionState
from tidelog.broker.cluster.routing import require_epoch_noted, require_in_sync, require_leader
from tidelog.broker.errors import BrokerError
from tidelog.broker.groups.placement import GroupPlacement
from tidelog.broker.kafka import codes
from tidelog.broker.log.topics import TopicState


@dataclass(frozen=True)
class Node:
    node_id: int
    host: str
    port: int


def node_of(node_id: int, address: str) -> Node:
    host, port = address.rsplit(":", 1)
    return Node(node_id, host.strip("[]"), int(port))


class KafkaCluster:
    def __init__(
        self,
        me: Node,
        membership: Membership,
        placement: GroupPlacement,
        control: ControlPlane | None = None,
        replication_timeout_s: float = 30.0,
    ) -> None:
        self.me = me
        self._membership = membership
        self._placement = placement
        self._control = control
        self._replication_timeout_s = replication_timeout_s

    def nodes(self) -> list[Node]:
        if self._control is None:
            return [self.me]
        return [node_of(b, address) for b, address in sorted(self._control.kafka_brokers().items())]

    def controller_id(self) -> int:
        controller = self._membership.controller_id()
        return self.me.node_id if controller is None else controller

    def partitions(self, topic: TopicState) -> list[dict[str, Any]]:
        """The topic's partitions' Metadata entries (the live brokers looked up once for them all)."""
        me = self.me.node_id
        own = PartitionState((me,), me, 0, (me,))  # a single broker's: it alone holds and leads it
        live = {n.node_id for n in self.nodes()}
        entries = []
        for index in range(len(topic.partitions)):
            state = self._membership.partition_state(topic.id, index) or own
            entries.append(
                {
                    "partition_index": index,
                    "error_code": codes.LEADER_NOT_AVAILABLE if state.leader == NO_LEADER else codes.NONE,
                    "leader_id": state.leader,
                    "leader_epoch": state.leader_epoch,
                    "replica_nodes": list(state.replicas),
                    "isr_nodes": list(state.isr),
                    "offline_replicas": [r for r in state.replicas if r not in live],
                }
            )
        return entries

    def leader_epoch(self, topic: TopicState, index: int) -> int:
        state = self._membership.partition_state(topic.id, index)
        return 0 if state is None else state.leader_epoch

    def refuse_unless_leader(self, topic: TopicState, index: int, acks_all: bool = False) -> None:
        """BrokerError (NOT_LEADER, LEADER_NOT_AVAILABLE, NOT_ENOUGH_REPLICAS) unless this broker may
        take records for the partition now."""
        require_leader(self._membership, topic.name, topic.id, index)
        require_epoch_noted(self._membership, topic, index)
        if acks_all:
            require_in_sync(self._membership, topic, index)

    async def await_in_sync(self, topic: TopicState, index: int, end: int, epoch: int) -> int:
        """acks=all: wait until the in-sync replicas hold the records below `end` (the high watermark
        passes them); the error code that answers when they do not (in time, or the leadership moved)."""
        partition = topic.partitions[index]
        if partition.on_log_end is None:
            return codes.NONE  # one copy: durable already
        deadline = time.monotonic() + self._replication_timeout_s
        while partition.high_watermark < end and not topic.deleted:
            if self.leader_epoch(topic, index) != epoch:
                return codes.NOT_LEADER_OR_FOLLOWER  # a new leader may have cut them: the producer retries
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return codes.REQUEST_TIMED_OUT
            await partition.wait_for_change(remaining)
        try:
            require_in_sync(self._membership, topic, index, after_append=True)
        except BrokerError:
            return codes.NOT_ENOUGH_REPLICAS_AFTER_APPEND
        return codes.NONE

    async def coordinator(self, group: str) -> Node | int:
        """The node that coordinates `group` (claimed here when no broker does), or an error code."""
        try:
            await self._placement.coordinate(group)
        except BrokerError as err:
            owner = err.metadata.get("coordinator_id", "")
            addresses = {n.node_id: n for n in self.nodes()}
            if owner and int(owner) in addresses:
                return addresses[int(owner)]
            return codes.COORDINATOR_NOT_AVAILABLE
        return self.me

    def coordinates(self, group: str) -> bool:
        return self._placement.coordinates(group)
