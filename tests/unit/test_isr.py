"""The leader's ISR bookkeeping: who lags, who has caught up, with the clock passed in."""

from __future__ import annotations

from tidelog.broker.cluster.isr import IsrTracker, with_isr
from tidelog.broker.cluster.metadata import PartitionState

TP = (7, 0)
STATE = PartitionState((1, 2, 3), 1, 4, (1, 2, 3))


def test_a_follower_that_stops_fetching_lags_after_the_lag_time() -> None:
    isr = IsrTracker(lag_s=10)
    isr.became_leader(TP, [2, 3], now=0)
    isr.on_fetch(TP, 2, offset=5, leader_end=5, now=1)
    isr.on_fetch(TP, 3, offset=5, leader_end=5, now=1)
    assert isr.lagging(TP, STATE, me=1, now=10.5) == []
    isr.on_fetch(TP, 2, offset=5, leader_end=5, now=10.5)  # 3 says nothing more
    assert isr.lagging(TP, STATE, me=1, now=11.5) == [3]


def test_a_follower_a_few_batches_short_of_a_growing_log_is_in_sync() -> None:
    """Each fetch starts where the leader's log ended at the previous one: it never falls behind."""
    isr = IsrTracker(lag_s=10)
    isr.became_leader(TP, [2, 3], now=0)
    leader_end = 0
    for second in range(1, 60):
        offset, leader_end = leader_end, leader_end + 100  # the leader grows while the follower fetches
        isr.on_fetch(TP, 2, offset=offset, leader_end=leader_end, now=second)
        isr.on_fetch(TP, 3, offset=offset, leader_end=leader_end, now=second)
    assert isr.lagging(TP, STATE, me=1, now=60) == []


def test_a_follower_that_falls_further_behind_lags() -> None:
    isr = IsrTracker(lag_s=10)
    isr.became_leader(TP, [2, 3], now=0)
    for second in range(1, 30):  # stores 10 per second while the leader grows by 100
        isr.on_fetch(TP, 2, offset=second * 10, leader_end=second * 100, now=second)
        isr.on_fetch(TP, 3, offset=second * 100, leader_end=second * 100, now=second)
    assert isr.lagging(TP, STATE, me=1, now=30) == [2]


def test_the_leaders_own_pause_is_not_its_followers_lag() -> None:
    isr = IsrTracker(lag_s=10)
    isr.became_leader(TP, [2, 3], now=0)
    isr.check_clock(now=1)
    isr.check_clock(now=60)  # the leader was not scheduled for 59 s
    assert isr.lagging(TP, STATE, me=1, now=61) == []
    assert isr.lagging(TP, STATE, me=1, now=71) == [2, 3]  # ... but they must fetch after it


def test_a_replica_outside_the_isr_joins_once_it_has_the_high_watermark() -> None:
    isr = IsrTracker(lag_s=10)
    state = PartitionState((1, 2, 3), 1, 4, (1, 2))
    isr.became_leader(TP, [2, 3], now=0)
    isr.on_fetch(TP, 3, offset=40, leader_end=100, now=1)
    assert isr.caught_up(TP, state, high_watermark=90, epoch_start=0) == []
    isr.on_fetch(TP, 3, offset=90, leader_end=100, now=2)
    assert isr.caught_up(TP, state, high_watermark=90, epoch_start=0) == [3]
    assert isr.caught_up(TP, state, high_watermark=90, epoch_start=95) == []  # what earlier leaders acknowledged


def test_with_isr_keeps_the_leader_and_replica_order() -> None:
    state = PartitionState((1, 2, 3), 2, 4, (2, 3))
    assert with_isr(state, leaving=[2, 3], joining=[]) == PartitionState((1, 2, 3), 2, 4, (2,))
    assert with_isr(state, leaving=[], joining=[1]) == PartitionState((1, 2, 3), 2, 4, (1, 2, 3))
    assert with_isr(state, leaving=[], joining=[]) is None


def test_a_replica_that_has_not_fetched_from_this_leader_does_not_join() -> None:
    """A new leadership knows its followers only by name: a dead one must not join an empty partition's
    ISR for its log end of 0."""
    isr = IsrTracker(lag_s=10)
    state = PartitionState((1, 2, 3), 1, 4, (1,))
    isr.became_leader(TP, [2, 3], now=0)
    assert isr.caught_up(TP, state, high_watermark=0, epoch_start=0) == []
    isr.on_fetch(TP, 2, offset=0, leader_end=0, now=1)
    assert isr.caught_up(TP, state, high_watermark=0, epoch_start=0) == [2]
