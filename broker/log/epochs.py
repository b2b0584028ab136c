"""Which leader epoch wrote which offsets of a replicated partition (Kafka's leader epoch cache, KIP-101).

Entries are (epoch, start offset), both rising: epoch E wrote from its start offset up to the next
entry's start (or the log's end, for the latest). A leader adds its epoch, at its log end, before it
appends anything in it; a follower adds the leader's entries for what it copies; a truncation drops the
entries that start at or past the cut.

With them a follower finds where its log and its leader's part: it asks where its own latest epoch
ends on the leader. A log that runs past that end, or an epoch the leader never had, was written by a
leader whose records nobody else kept (never acknowledged with acks=all), and is cut back there —
never to the follower's own high watermark, which can lie below records that were acknowledged.
"""

from __future__ import annotations

from collections.abc import Iterable

Entry = tuple[int, int]  # (leader epoch, start offset)
NO_EPOCH = -1


class LeaderEpochs:
    __slots__ = ("entries",)

    def __init__(self, entries: Iterable[Entry] = ()) -> None:
        self.entries: list[Entry] = sorted(entries)

    @property
    def latest(self) -> int:
        return self.entries[-1][0] if self.entries else NO_EPOCH

    @property
    def latest_start(self) -> int:
        """Where the latest epoch's records start (0 with none)."""
        return self.entries[-1][1] if self.entries else 0

    def assign(self, epoch: int, start: int) -> bool:
        """Note that `epoch` writes from `start` on; False (nothing changes) for an epoch already known."""
        if epoch <= self.latest:
            return False
        self.entries.append((epoch, start))
        return True

    def truncate_from(self, offset: int) -> None:
        """Forget the epochs that start at or past `offset` (the log was cut back there)."""
        self.entries = [(e, s) for e, s in self.entries if s < offset]

    def end_of(self, epoch: int, log_end: int) -> Entry:
        """(the largest epoch known here up to `epoch`, the offset where it ends): the next entry's start,
        or `log_end` for the latest. (NO_EPOCH, the first entry's start) when every epoch here is later."""
        for i in range(len(self.entries) - 1, -1, -1):
            known, _ = self.entries[i]
            if known <= epoch:
                end = self.entries[i + 1][1] if i + 1 < len(self.entries) else log_end
                return known, end
        return NO_EPOCH, self.entries[0][1] if self.entries else log_end

    def overlapping(self, start: int, end: int) -> list[Entry]:
        """The entries that wrote some offset of [start, end): what a follower copying them needs."""
        out = []
        for i, (epoch, first) in enumerate(self.entries):
            ends = self.entries[i + 1][1] if i + 1 < len(self.entries) else 1 << 62
            if first < end and ends > start:
                out.append((epoch, first))
        return out


def diverging(leader: LeaderEpochs, leader_end: int, follower_epoch: int, follower_end: int) -> Entry | None:
    """The leader's answer to a follower at `follower_end` whose latest epoch is `follower_epoch`: None
    when the follower's log is a prefix of the leader's as far as the epochs tell, else (epoch, end
    offset) — the leader's largest epoch up to the follower's, and where it ends on the leader."""
    if follower_epoch == NO_EPOCH or not leader.entries:  # no epochs (a new replica): only the length tells
        return None if follower_end <= leader_end else (leader.latest, leader_end)
    epoch, end = leader.end_of(follower_epoch, leader_end)
    if epoch == follower_epoch and follower_end <= end:
        return None
    return epoch, end


def truncation_point(follower: LeaderEpochs, follower_end: int, answer: Entry) -> int:
    """Where a follower told `answer` = (epoch, end) cuts its log: at the leader's end of that epoch, or
    earlier where its own copy of that epoch ends (its later records came from an epoch the leader never
    had)."""
    epoch, leader_end = answer
    _, own_end = follower.end_of(epoch, follower_end)
    return min(leader_end, own_end, follower_end)
