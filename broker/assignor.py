"""Sticky, balanced partition assignment for a consumer group (pure logic).

Every partition of a subscribed topic goes to exactly one member subscribed to that topic.
Counts differ by at most one where subscriptions allow it, and a partition stays with its
current owner whenever balance permits, so a member joining or leaving moves as few partitions
as it can: a 4th member joining 3 that own 12 partitions takes one from each, and nothing else
moves.
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
    wanted = sorted(
        (topic, p)
        for topic in {t for ts in subscriptions.values() for t in ts}
        if topic in partitions
        for p in range(partitions[topic])
    )
    floor, extra = divmod(len(wanted), len(members))

    # Keep what members own and may still own, the biggest owners first, up to a fair share:
    # only `extra` members may keep floor + 1.
    valid = {
        member: sorted(
            tp
            for tp in current.get(member, ())
            if tp[0] in subscriptions[member] and tp[0] in partitions and tp[1] < partitions[tp[0]]
        )
        for member in members
    }
    taken: set[TP] = set()
    for member in sorted(members, key=lambda m: (-len(valid[m]), m)):
        keep = [tp for tp in valid[member] if tp not in taken]
        share = floor + 1 if extra and len(keep) > floor else floor
        if share > floor:
            extra -= 1
        out[member].update(keep[:share])
        taken.update(keep[:share])

    # The rest go, in order, to the least loaded member that reads their topic.
    for tp in wanted:
        if tp in taken:
            continue
        readers = [m for m in members if tp[0] in subscriptions[m]]
        owner = min(readers, key=lambda m: (len(out[m]), m))
        out[owner].add(tp)
    return out
