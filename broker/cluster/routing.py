"""Which broker a partition's requests go to: its leader. A broker asked about a partition another one
leads answers NOT_LEADER with the leader's id, address and epoch, so the client re-routes at once."""

from __future__ import annotations

from tidelog.broker.cluster.membership import Membership
from tidelog.broker.cluster.metadata import NO_LEADER
from tidelog.broker.errors import BrokerError
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
