"""Who is in sync: the leader's view of its followers, and the ISR changes it asks for.

Kafka's rule (replica.lag.time.max.ms): a follower is in sync while it has been caught up with the
leader's log end within the last `lag_s`. "Caught up" is judged at each fetch: a fetch from the
leader's log end catches up now; a fetch from at least where the leader's log ended at the
follower's previous fetch caught up then (under a steady stream of produces a follower is always a
few batches short of the very end, yet never falls behind). A follower that stops fetching (dead,
paused, cut off) stops catching up, and leaves the ISR once `lag_s` has passed.

A follower outside the ISR rejoins once it has stored everything up to the high watermark, and up to
where the leader's epoch started: then counting it cannot lower the high watermark, and it holds
every record an earlier leader acknowledged (a new leader's own high watermark can lag those, as it
learned it as a follower; Kafka's rule too). From
the moment the leader writes it in, the high watermark counts it, even while the leader's own view of
etcd does not show the change yet (Kafka's "maximal ISR", KIP-841): else the high watermark could pass
records the newcomer lacks, and the controller could elect the newcomer.

Pure bookkeeping: the clock is passed in, and the leader (replication.py) writes the changes to etcd.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from tidelog.broker.cluster.metadata import PartitionState

TP = tuple[int, int]  # (topic id, partition)


@dataclass
class FollowerProgress:
    log_end: int = 0  # what the follower has stored: the offset of its latest fetch
    caught_up_at: float = 0.0
    fetched_at: float = 0.0
    leader_end_at_fetch: int = 0  # the leader's log end when that fetch came
    fetched: bool = False  # from this leader: only then does log_end say anything


class IsrTracker:
    """The leader side's progress of every follower of the partitions it leads."""

    def __init__(self, lag_s: float) -> None:
        self.lag_s = lag_s
        self._progress: dict[TP, dict[int, FollowerProgress]] = {}
        self._joined: dict[TP, tuple[frozenset[int], int]] = {}  # members written in, at a revision
        self._checked_at: float | None = None

    def became_leader(self, tp: TP, followers: Iterable[int], now: float) -> None:
        """A new leadership starts every follower as caught up now (as Kafka does): none has had the
        chance to fetch from this leader yet."""
        self._progress[tp] = {b: FollowerProgress(caught_up_at=now) for b in followers}
        self._joined.pop(tp, None)

    def forget(self, tp: TP) -> None:
        self._progress.pop(tp, None)
        self._joined.pop(tp, None)

    def wrote(self, tp: TP, old: PartitionState, new: PartitionState, revision: int) -> None:
        """This leader wrote `new` over `old` at `revision`: who joined counts at once."""
        joined = frozenset(new.isr) - frozenset(old.isr)
        if joined:
            self._joined[tp] = (joined, revision)

    def counted(self, tp: TP, state: PartitionState, revision: int) -> frozenset[int]:
        """The members the high watermark follows: the ISR of `state` (read at `revision`), and those
        this leader wrote in at a later revision than that."""
        members = frozenset(state.isr)
        joined = self._joined.get(tp)
        if joined is None:
            return members
        if revision >= joined[1]:  # the view shows that write (or what came after it) now
            del self._joined[tp]
            return members
        return members | joined[0]

    def high_watermark(self, tp: TP, members: Iterable[int], me: int, leader_end: int) -> int:
        """The least log end over `members`, the leader's own included."""
        ends = self.log_ends(tp)
        return min([leader_end, *(ends.get(b, 0) for b in members if b != me)])

    def on_fetch(self, tp: TP, follower: int, offset: int, leader_end: int, now: float) -> None:
        progress = self._progress.setdefault(tp, {}).setdefault(follower, FollowerProgress())
        if offset >= leader_end:
            progress.caught_up_at = now
        elif offset >= progress.leader_end_at_fetch and progress.fetched:
            progress.caught_up_at = max(progress.caught_up_at, progress.fetched_at)
        progress.log_end = offset
        progress.fetched = True
        progress.fetched_at = now
        progress.leader_end_at_fetch = leader_end

    def log_ends(self, tp: TP) -> dict[int, int]:
        return {b: p.log_end for b, p in self._progress.get(tp, {}).items()}

    def lagging(self, tp: TP, state: PartitionState, me: int, now: float) -> list[int]:
        """The ISR's followers that have not caught up within `lag_s`."""
        progress = self._progress.setdefault(tp, {})
        followers = [b for b in state.isr if b != me]
        for b in followers:  # one never seen starts its clock now
            progress.setdefault(b, FollowerProgress(caught_up_at=now))
        return [b for b in followers if now - progress[b].caught_up_at > self.lag_s]

    def caught_up(self, tp: TP, state: PartitionState, high_watermark: int, epoch_start: int) -> list[int]:
        """The replicas outside the ISR that have stored everything up to the high watermark and to the
        start of the leader's epoch."""
        needed = max(high_watermark, epoch_start)
        progress = self._progress.get(tp, {})
        return [
            b
            for b in state.replicas
            if b not in state.isr and b in progress and progress[b].fetched and progress[b].log_end >= needed
        ]

    def check_clock(self, now: float) -> None:
        """Call at each periodic check: when this broker itself went unscheduled for longer than `lag_s`
        (a pause, a stalled VM), its followers fetched in that time as far as they could tell, so
        their clocks restart instead of them all leaving the ISR for the leader's own absence."""
        if self._checked_at is not None and now - self._checked_at > self.lag_s:
            for followers in self._progress.values():
                for progress in followers.values():
                    progress.caught_up_at = max(progress.caught_up_at, now)
        self._checked_at = now


def with_isr(state: PartitionState, leaving: Iterable[int], joining: Iterable[int]) -> PartitionState | None:
    """The state with `leaving` out of the ISR and `joining` in (in replica order), or None if unchanged.
    The leader never leaves its own ISR."""
    gone = set(leaving) - {state.leader}
    members = (set(state.isr) - gone) | set(joining)
    isr = tuple(b for b in state.replicas if b in members)
    return None if isr == state.isr else PartitionState(state.replicas, state.leader, state.leader_epoch, isr)
