"""Which broker a partition's requests go to: its leader. A broker asked about a partition another one
leads answers NOT_LEADER with the leader's id, address and epoch, so the client re-routes at once."""

from __future__ import annotations

from tidelog.broker.cluster.membership import Membership
from tidelog.broker.cluster.metadata import NO_LEADER
from tidelog.broker.errors import BrokerError
from tidelog.broker.log.topics import TopicState
from tidelog.common.reasons import Reason


def require_leader(membership: Membership, topic: str, topic_id: int, partition: int) -> None:
    """Refuse unless this broker leads the partition (a single broker leads everything)."""
    state = membership.partition_state(topic_id, partition)
    if state is None or state.leader == membership.broker_id:
        return
    if state.leader == NO_LEADER:
        raise BrokerError(
            Reason.LEADER_NOT_AVAILABLE,
            f"{topic}/{partition} has no leader right now (an election, or every in-sync replica is down); retry",
            topic=topic,
            partition=partition,
        )
    address = membership.brokers().get(state.leader, "")
    raise BrokerError(
        Reason.NOT_LEADER,
        f"broker {membership.broker_id} does not lead {topic}/{partition}: broker {state.leader} "
        f"({address or 'address unknown'}) does, in epoch {state.leader_epoch}",
        leader_id=state.leader,
        leader_address=address,
        leader_epoch=state.leader_epoch,
    )


def require_in_sync(membership: Membership, topic: TopicState, partition: int, after_append: bool = False) -> None:
    """Refuse acks=all up front while the partition's ISR is below `min.insync.replicas`: the records
    would have fewer copies than the topic asks for, so none are written. `after_append`: the records
    are written, but the ISR that confirmed them had shrunk below it (Kafka's
    NOT_ENOUGH_REPLICAS_AFTER_APPEND)."""
    state = membership.partition_state(topic.id, partition)
    if state is None:  # this broker's own topic: one copy
        return
    min_insync = int(topic.configs["min.insync.replicas"])
    if len(state.isr) >= min_insync:
        return
    outcome = (
        "the records were written but have fewer copies than that: a retry without the idempotent producer "
        "writes them again"
        if after_append
        else "nothing was written: retry once a replica catches up, or send with acks=leader"
    )
    raise BrokerError(
        Reason.NOT_ENOUGH_REPLICAS,
        f"{topic.name}/{partition} has {len(state.isr)} in-sync replica(s) (brokers {list(state.isr)}), fewer than "
        f"its min.insync.replicas={min_insync}; {outcome}",
        topic=topic.name,
        partition=partition,
        isr=",".join(map(str, state.isr)),
        min_insync_replicas=min_insync,
        after_append=str(after_append).lower(),
    )


def require_epoch_noted(membership: Membership, topic: TopicState, partition: int) -> None:
    """A new leader of a replicated partition appends nothing until its epoch is in the partition's
    epoch cache (cluster/replication.py notes it within a commit of the election)."""
    state = membership.partition_state(topic.id, partition)
    if state is None or len(state.replicas) < 2:
        return
    epochs = topic.partitions[partition].leader_epochs
    if epochs is not None and epochs.latest >= state.leader_epoch:
        return
    raise BrokerError(
        Reason.LEADER_NOT_AVAILABLE,
        f"broker {membership.broker_id} is taking the lead of {topic.name}/{partition} (epoch {state.leader_epoch}); "
        "retry",
        topic=topic.name,
        partition=partition,
    )
