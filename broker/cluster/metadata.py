"""The cluster's metadata as kept in etcd, and the pure decisions made on it.

Keys under `/{cluster}/`:
  brokers/{id}                    advertised address (bound to the broker's lease)
  controller                      the controller's id (bound to its lease; create revision = election)
  ids/topic                       the last topic id handed out
  ids/producer                    the last producer id handed out (brokers take blocks of them)
  topics/{name}                   JSON {id, partitions, replication_factor, configs}
  partitions/{topic_id}/{p}       JSON {replicas, leader, leader_epoch, isr}; leader -1: offline
  reassignments/{topic_id}/{p}    JSON [broker ids]: where the partition's replicas are moving
  replication/{id}                a broker's replication address, when not its advertised one
  deleted/{topic_id}              the name of a deleted topic (a tombstone: ids are never reused)

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


@dataclass(frozen=True)
class Election:
    """What an election made of a partition: `state` to write (None: nothing to write), the outcome
    ("elected", "not_needed", "not_eligible") and why."""

    state: PartitionState | None
    outcome: str
    detail: str = ""


def elect(state: PartitionState, live: set[int], unclean: bool) -> Election:
    """A preferred election (the first replica leads, if live and in sync) or an unclean one (a live
    replica outside the ISR leads a partition whose in-sync replicas are all gone)."""
    if unclean:
        if state.leader in live:
            return Election(None, "not_needed", f"broker {state.leader} leads it: no unclean election needed")
        in_sync = [b for b in state.isr if b in live]
        if in_sync:
            return Election(None, "not_eligible", f"broker {in_sync[0]} is in sync and live: it is elected cleanly")
        candidates = [b for b in state.replicas if b in live]
        if not candidates:
            return Election(None, "not_eligible", f"none of its replicas {list(state.replicas)} is live")
        chosen = candidates[0]
        return Election(PartitionState(state.replicas, chosen, state.leader_epoch + 1, (chosen,)), "elected")
    preferred = state.replicas[0]
    if state.leader == preferred:
        return Election(None, "not_needed", f"its preferred replica, broker {preferred}, leads it")
    if preferred not in live or preferred not in state.isr:
        why = "is not live" if preferred not in live else "is not in sync"
        return Election(None, "not_eligible", f"its preferred replica, broker {preferred}, {why}")
    return Election(PartitionState(state.replicas, preferred, state.leader_epoch + 1, state.isr), "elected")


def moving_to(state: PartitionState, target: Sequence[int]) -> PartitionState:
    """A reassignment's first step: the target replicas join (first, in their order), the old stay."""
    replicas = tuple(target) + tuple(b for b in state.replicas if b not in target)
    return PartitionState(replicas, state.leader, state.leader_epoch, state.isr)


def after_reassignment(state: PartitionState, target: Sequence[int]) -> PartitionState | None:
    """A reassignment's last step, once every target replica is in sync (else None): the replicas are
    the target, the ISR keeps only them, and a leader that is not one of them hands over to the first
    that is in sync, under the next epoch."""
    if not set(target) <= set(state.isr):
        return None
    isr = tuple(b for b in target if b in state.isr)
    if state.leader in target:
        return PartitionState(tuple(target), state.leader, state.leader_epoch, isr)
    return PartitionState(tuple(target), isr[0], state.leader_epoch + 1, isr)


def after_broker_return(state: PartitionState, live: set[int]) -> PartitionState | None:
    """An offline partition whose last ISR member is back is led by it again (next epoch); else None.
    (A returning follower rejoins the ISR only once it has caught up: the leader's call, not this.)"""
    if state.leader != NO_LEADER:
        return None
    candidates = [b for b in state.replicas if b in state.isr and b in live]
    if not candidates:
        return None
    return PartitionState(state.replicas, candidates[0], state.leader_epoch + 1, state.isr)
