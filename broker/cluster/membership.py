"""Which brokers there are and which is the controller: what the API layer tells clients.

A single broker (the embedded default, no etcd) is its own cluster: broker 0, its own controller. A
clustered broker answers from its control plane's metadata cache (control.ControlPlane).
"""

from __future__ import annotations

from typing import Protocol

from tidelog.broker.cluster.metadata import PartitionState


class Membership(Protocol):
    @property
    def broker_id(self) -> int: ...

    def brokers(self) -> dict[int, str]:
        """The live brokers: id -> advertised address."""
        ...

    def controller_id(self) -> int | None: ...

    def partition_state(self, topic_id: int, partition: int) -> PartitionState | None:
        """A partition's replicas, leader, epoch and ISR (None: this broker's own topic)."""
        ...


def holds_replica(membership: Membership, topic_id: int, partition: int) -> bool:
    """This broker has a replica of the partition (a single broker has every one)."""
    state = membership.partition_state(topic_id, partition)
    return state is None or membership.broker_id in state.replicas


class ReplicaProgress(Protocol):
    def holding(self, topic_id: int, partition: int, end: int) -> list[int]:
        """The followers known (from their fetches) to have stored the partition's offsets below `end`."""
        ...


class NoFollowers:
    """A single broker's: no partition has followers."""

    def holding(self, topic_id: int, partition: int, end: int) -> list[int]:
        return []


class SingleBroker:
    def __init__(self, address: str) -> None:
        self.address = address

    @property
    def broker_id(self) -> int:
        return 0

    def brokers(self) -> dict[int, str]:
        return {0: self.address}

    def controller_id(self) -> int | None:
        return 0

    def partition_state(self, topic_id: int, partition: int) -> PartitionState | None:
        return None
