"""Replica placement and the controller's leader decisions (pure)."""

from __future__ import annotations

from collections import Counter

import pytest

from tidelog.broker.cluster.metadata import (
    NO_LEADER,
    PartitionState,
    TopicSpec,
    after_broker_loss,
    after_broker_return,
    after_reassignment,
    assign_replicas,
    elect,
    moving_to,
)


def test_replicas_spread_leaders_and_followers_evenly() -> None:
    placement = assign_replicas([3, 1, 2], partitions=6, replication_factor=3)
    assert placement[:3] == [(1, 2, 3), (2, 3, 1), (3, 1, 2)]
    assert Counter(replicas[0] for replicas in placement) == {1: 2, 2: 2, 3: 2}
    assert all(len(set(replicas)) == 3 for replicas in placement)
    with pytest.raises(ValueError, match="needs that many live brokers"):
        assign_replicas([1, 2], partitions=1, replication_factor=3)


def test_a_lost_leader_is_replaced_by_the_first_live_isr_member_under_the_next_epoch() -> None:
    state = PartitionState(replicas=(1, 2, 3), leader=1, leader_epoch=4, isr=(1, 2, 3))
    assert after_broker_loss(state, {2, 3}) == PartitionState((1, 2, 3), 2, 5, (2, 3))
    assert after_broker_loss(state, {1, 3}) == PartitionState((1, 2, 3), 1, 4, (1, 3))  # a follower: same epoch
    assert after_broker_loss(state, {1, 2, 3}) is None
    behind = PartitionState((1, 2, 3), 1, 4, (1, 3))  # 2 is out of the ISR: never elected
    assert after_broker_loss(behind, {2, 3}) == PartitionState((1, 2, 3), 3, 5, (3,))


def test_with_no_live_isr_member_the_partition_is_offline_until_its_last_leader_returns() -> None:
    state = PartitionState((1, 2), leader=1, leader_epoch=0, isr=(1,))
    offline = after_broker_loss(state, {2})
    assert offline == PartitionState((1, 2), NO_LEADER, 1, (1,))  # 2 was not in the ISR: no unclean election
    assert after_broker_return(offline, {2}) is None
    assert after_broker_return(offline, {1, 2}) == PartitionState((1, 2), 1, 2, (1,))


def test_metadata_round_trips_through_its_json() -> None:
    spec = TopicSpec(7, "orders", 6, 3, {"retention.ms": "-1"})
    assert TopicSpec.decode("orders", spec.encode()) == spec
    state = PartitionState((1, 2, 3), 2, 9, (2, 3))
    assert PartitionState.decode(state.encode()) == state


def test_a_preferred_election_moves_the_lead_to_the_first_replica_only_when_it_is_live_and_in_sync() -> None:
    state = PartitionState((0, 1, 2), 1, 4, (0, 1, 2))
    elected = elect(state, {0, 1, 2}, unclean=False)
    assert elected.outcome == "elected" and elected.state == PartitionState((0, 1, 2), 0, 5, (0, 1, 2))
    assert elect(elected.state, {0, 1, 2}, unclean=False).outcome == "not_needed"
    assert elect(PartitionState((0, 1, 2), 1, 4, (1, 2)), {0, 1, 2}, unclean=False).outcome == "not_eligible"
    assert elect(state, {1, 2}, unclean=False).outcome == "not_eligible"


def test_an_unclean_election_only_leads_a_partition_whose_in_sync_replicas_are_all_gone() -> None:
    offline = PartitionState((0, 1, 2), -1, 4, (0,))
    elected = elect(offline, {1, 2}, unclean=True)
    assert elected.outcome == "elected" and elected.state == PartitionState((0, 1, 2), 1, 5, (1,))
    assert elect(offline, {0, 1}, unclean=True).outcome == "not_eligible"  # 0 is in sync: a clean election
    assert elect(PartitionState((0, 1), 1, 4, (1,)), {1}, unclean=True).outcome == "not_needed"
    assert elect(offline, set(), unclean=True).outcome == "not_eligible"


def test_a_reassignment_adds_the_target_first_and_completes_once_all_of_it_is_in_sync() -> None:
    state = PartitionState((0,), 0, 2, (0,))
    moving = moving_to(state, (1, 2))
    assert moving == PartitionState((1, 2, 0), 0, 2, (0,))
    assert after_reassignment(moving, (1, 2)) is None
    assert after_reassignment(PartitionState((1, 2, 0), 0, 2, (0, 1)), (1, 2)) is None
    # All in sync: the old replica leaves, and the leader (not a target) hands over under the next epoch.
    assert after_reassignment(PartitionState((1, 2, 0), 0, 2, (0, 1, 2)), (1, 2)) == PartitionState(
        (1, 2), 1, 3, (1, 2)
    )
    # A leader that stays keeps its epoch.
    kept = after_reassignment(PartitionState((2, 0, 1), 0, 2, (0, 1, 2)), (2, 0))
    assert kept == PartitionState((2, 0), 0, 2, (2, 0))
