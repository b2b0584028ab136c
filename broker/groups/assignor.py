"""Sticky, balanced partition assignment for a consumer group (pure logic).

Every partition of a subscribed topic goes to exactly one member subscribed to that topic.
Counts differ by at most one where subscriptions allow it, and a partition stays with its
current owner whenever balance permits, so a member joining or leaving moves as few partitions
as it can: a 4th member joining 3 that own 12 partitions takes one from each, and nothing else
moves.

How: first a fair share per member (quotas), then each member keeps what it owns up to its quota,
then the rest go to the members furthest below their quota. When all members read the same topics
the quotas are the plain floor/ceil split, the larger shares going to the members that own the most.
With mixed subscriptions the quotas come from a greedy fill that serves the partitions with the
fewest possible readers first.
"""

from __future__ import annotations

from collections.abc import Mapping, Set

TP = tuple[str, int]


def assign(
    subscriptions: Mapping[str, Set[str]], partitions: Mapping[str, int], current: Mapping[str, Set[TP]]
) -> dict[str, set[TP]]:
    """The new owner set of each member.

    subscriptions: member id → topics it reads; partitions: topic → partition count (topics
    that no longer exist are absent); current: member id → what it owns now.
    """
    members = sorted(subscriptions)
    out: dict[str, set[TP]] = {member: set() for member in members}
    if not members:
        return out
    readers = {topic: [m for m in members if topic in subscriptions[m]] for topic in partitions}
    wanted = sorted(
        ((topic, p) for topic, count in partitions.items() if readers[topic] for p in range(count)),
        key=lambda tp: (len(readers[tp[0]]), tp),  # the most constrained first
    )
    valid = {  # what each member owns and may keep, the partitions fewest others could take first
        m: sorted(
            (
                tp
                for tp in current.get(m, ())
                if tp[0] in partitions and tp[1] < partitions[tp[0]] and m in readers[tp[0]]
            ),
            key=lambda tp: (len(readers[tp[0]]), tp),
        )
        for m in members
    }
    quota = _quotas(members, subscriptions, wanted, readers, valid)

    taken: set[TP] = set()
    for member in members:  # keep what you own, up to your share
        keep = [tp for tp in valid[member] if tp not in taken][: quota[member]]
        out[member].update(keep)
        taken.update(keep)
    for tp in wanted:  # the rest to whoever is furthest below their share (then least loaded)
        if tp in taken:
            continue
        owner = min(readers[tp[0]], key=lambda m: (len(out[m]) - quota[m], len(out[m]), m))
        out[owner].add(tp)
    return out


def _quotas(
    members: list[str],
    subscriptions: Mapping[str, Set[str]],
    wanted: list[TP],
    readers: Mapping[str, list[str]],
    valid: Mapping[str, list[TP]],
) -> dict[str, int]:
    if all(subscriptions[m] == subscriptions[members[0]] for m in members):
        floor, extra = divmod(len(wanted), len(members))
        quota = dict.fromkeys(members, floor)
        for member in sorted(members, key=lambda m: (-len(valid[m]), m))[:extra]:
            quota[member] += 1  # the larger shares to the biggest owners: fewer moves
        return quota
    counts = dict.fromkeys(members, 0)
    for tp in wanted:
        counts[min(readers[tp[0]], key=lambda m: (counts[m], m))] += 1
    return counts
