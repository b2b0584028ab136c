"""Sticky, balanced group assignment (pure logic)."""

from __future__ import annotations

from tidelog.broker.groups.assignor import TP, assign


def moved(before: dict[str, set[TP]], after: dict[str, set[TP]]) -> int:
    owner = {tp: m for m, tps in before.items() for tp in tps}
    return sum(1 for m, tps in after.items() for tp in tps if owner.get(tp, m) != m)


def check_exact_cover(result: dict[str, set[TP]], wanted: set[TP]) -> None:
    owned = [tp for tps in result.values() for tp in tps]
    assert len(owned) == len(set(owned)), "a partition has two owners"
    assert set(owned) == wanted


def test_join_and_leave_move_as_little_as_balance_needs() -> None:
    topics = {"t": 12}
    wanted = {("t", p) for p in range(12)}
    three = assign({m: {"t"} for m in "abc"}, topics, {})
    check_exact_cover(three, wanted)
    assert sorted(len(tps) for tps in three.values()) == [4, 4, 4]

    four = assign({m: {"t"} for m in "abcd"}, topics, three)
    check_exact_cover(four, wanted)
    assert sorted(len(tps) for tps in four.values()) == [3, 3, 3, 3]
    assert moved(three, four) == 3  # one from each old member to the new one

    del four["b"]
    after_leave = assign({m: {"t"} for m in "acd"}, topics, four)
    check_exact_cover(after_leave, wanted)
    assert sorted(len(tps) for tps in after_leave.values()) == [4, 4, 4]
    assert moved(four, after_leave) == 0  # only b's partitions found new owners
    for member in "acd":
        assert four[member] <= after_leave[member]


def test_uneven_counts_differ_by_at_most_one() -> None:
    result = assign({m: {"t"} for m in "ab"}, {"t": 5}, {"a": {("t", p) for p in range(5)}})
    assert sorted(len(tps) for tps in result.values()) == [2, 3]
    assert len(result["a"]) == 3  # the previous owner keeps the larger share


def test_only_subscribers_get_a_topic_and_vanished_partitions_go() -> None:
    subscriptions = {"a": {"t1"}, "b": {"t1", "t2"}}
    current = {"a": {("t1", 0), ("gone", 0)}, "b": {("t2", 5)}}
    result = assign(subscriptions, {"t1": 2, "t2": 2}, current)
    check_exact_cover(result, {("t1", 0), ("t1", 1), ("t2", 0), ("t2", 1)})
    assert all(tp[0] == "t1" for tp in result["a"])
    assert ("t1", 0) in result["a"]


def test_no_members_no_assignment() -> None:
    assert assign({}, {"t": 3}, {}) == {}


def test_mixed_subscriptions_are_balanced_where_readers_allow() -> None:
    subscriptions = {"a": {"t1", "t2"}, "b": {"t1"}}
    partitions = {"t1": 2, "t2": 2}
    fresh = assign(subscriptions, partitions, {})
    assert sorted(len(tps) for tps in fresh.values()) == [2, 2]
    assert {tp[0] for tp in fresh["b"]} == {"t1"}
    sticky = assign(subscriptions, partitions, {"a": {("t1", 0), ("t1", 1), ("t2", 0), ("t2", 1)}})
    assert sticky["b"] == {("t1", 0), ("t1", 1)} and sticky["a"] == {("t2", 0), ("t2", 1)}
    check_exact_cover(sticky, {("t1", 0), ("t1", 1), ("t2", 0), ("t2", 1)})


def test_the_larger_shares_stay_with_the_biggest_owners() -> None:
    result = assign({m: {"t"} for m in "ab"}, {"t": 5}, {"b": {("t", p) for p in range(5)}})
    assert len(result["b"]) == 3 and result["b"] <= {("t", p) for p in range(5)}
