"""The cluster's metadata as kept in etcd, and the pure decisions made on it.

Keys under `/{cluster}/`:
  brokers/{id}                    advertised address (bound to the broker's lease)
  controller                      the controller's id (bound to its lease; create revision = election)
  ids/topic                       the last topic id handed out
  ids/producer                    the last producer id handed out (brokers take blocks of them)
  topics/{name}                   JSON {id, partitions, replication_factor, configs}
  partitions/{topic_id}/{p}       JSON {replicas, leader, leader_epoch, isr}; leader -1: offline

Replica placement is Kafka's: partition p's replicas are consecutive brokers (in id order) starting
at p's turn, so leaders (the first replica) spread evenly and each broker follows evenly.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

NO_LEADER = -1


@dataclass(frozen=True)
class TopicSpec:
    id: int
    name: str
    partitions: int
    replication_factor: int
    configs: dict[str, str]

    def encode(self) -> bytes:
        return json.dumps(
            {
                "id": self.id,
                "partitions": self.partitions,
                "replication_factor": self.replication_factor,
                "configs": self.configs,
            }
        ).encode()

    @classmethod
    def decode(cls, name: str, value: bytes) -> TopicSpec:
        doc = json.loads(value)
        return cls(doc["id"], name, doc["partitions"], doc["replication_factor"], doc["configs"])


@dataclass(frozen=True)
class PartitionState:
    replicas: tuple[int, ...]  # preferred order: the first is the preferred leader
    leader: int
    leader_epoch: int
    isr: tuple[int, ...]

    def encode(self) -> bytes:
        return json.dumps(
            {"replicas": self.replicas, "leader": self.leader, "leader_epoch": self.leader_epoch, "isr": self.isr}
        ).encode()

    @classmethod
    def decode(cls, value: bytes) -> PartitionState:
        doc = json.loads(value)
        return cls(tuple(doc["replicas"]), doc["leader"], doc["leader_epoch"], tuple(doc["isr"]))


def assign_replicas(brokers: Sequence[int], partitions: int, replication_factor: int) -> list[tuple[int, ...]]:
    """Each partition's replicas: `replication_factor` consecutive live brokers from the partition's turn."""
    ordered = sorted(brokers)
    if not 1 <= replication_factor <= len(ordered):
        raise ValueError(
            f"replication factor {replication_factor} needs that many live brokers; {len(ordered)} are registered"
        )
    return [tuple(ordered[(p + r) % len(ordered)] for r in range(replication_factor)) for p in range(partitions)]


def after_broker_loss(state: PartitionState, live: set[int]) -> PartitionState | None:
    """The partition's state once the brokers not in `live` are gone, or None when nothing changes.

    They leave the ISR (never emptied: the last member stays, so only it can lead again — an unclean
    election takes an explicit admin call). A leader that is gone is replaced by the first live ISR
    member in replica order, under the next leader epoch; with none live the partition is offline.
    """
    survivors = tuple(b for b in state.isr if b in live)
    last = (state.leader,) if state.leader in state.isr else state.isr[:1]
    isr = survivors or last
    leader = state.leader
    if leader not in live:
        candidates = [b for b in state.replicas if b in isr and b in live]
        leader = candidates[0] if candidates else NO_LEADER
    if leader == state.leader and isr == state.isr:
        return None
    epoch = state.leader_epoch + 1 if leader != state.leader else state.leader_epoch
    return PartitionState(state.replicas, leader, epoch, isr)


def after_broker_return(state: PartitionState, live: set[int]) -> PartitionState | None:
    """An offline partition whose last ISR member is back is led by it again (next epoch); else None.
    (A returning follower rejoins the ISR only once it has caught up: the leader's call, not this.)"""
    if state.leader != NO_LEADER:
        return None
    candidates = [b for b in state.replicas if b in state.isr and b in live]
    if not candidates:
        return None
    return PartitionState(state.replicas, candidates[0], state.leader_epoch + 1, state.isr)
