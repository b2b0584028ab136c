"""The replication protocol as a model, driven by hypothesis: three replicas of one partition, an
in-memory compare-and-swap store standing in for etcd, and every decision made by the broker's own
pure code (metadata.after_broker_loss/after_broker_return for the controller, isr.py for the leader's
ISR and high watermark, log/epochs.py for divergence and truncation).

What the real brokers may do, the model lets happen in any order: a broker's view of the store lags
until it refreshes, a broker may crash (its log survives, its memory does not), lose its lease while
it runs on (a pause: a zombie with a stale view), come back; time passes; followers fetch a few
records at a time. After every step:

- no acknowledged record is lost: every member of the store's ISR holds every acknowledged record at
  its offset, in the epoch it was written in;
- replicas agree up to their high watermarks (prefix-equal);
- at most one leader per leader epoch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from tidelog.broker.cluster.isr import IsrTracker, with_isr
from tidelog.broker.cluster.metadata import NO_LEADER, PartitionState, after_broker_loss, after_broker_return
from tidelog.broker.log.epochs import LeaderEpochs, diverging, truncation_point

TP = (1, 0)
MIN_INSYNC = 2
LAG_S = 10.0
FETCH_MAX = 3  # records per fetch: followers copy a little at a time
broker = st.sampled_from((1, 2, 3))


class CasStore:
    """etcd, as far as the protocol needs it: one key, written only over the revision it was read at."""

    def __init__(self, state: PartitionState) -> None:
        self.state = state
        self.revision = 1

    def put_if(self, seen_revision: int, new: PartitionState) -> int | None:
        if seen_revision != self.revision:
            return None
        self.revision += 1
        self.state = new
        return self.revision


@dataclass
class Replica:
    id: int
    log: list[tuple[int, int]] = field(default_factory=list)  # (leader epoch, value), by offset: durable
    epochs: LeaderEpochs = field(default_factory=LeaderEpochs)  # durable
    alive: bool = True
    high_watermark: int = 0
    view: PartitionState | None = None  # this broker's (possibly stale) copy of the store
    view_revision: int = 0
    tracker: IsrTracker = field(default_factory=lambda: IsrTracker(LAG_S))
    led_epoch: int = -1  # the epoch whose leadership the tracker was started for

    @property
    def leads(self) -> bool:
        """This broker thinks it leads, and has noted its epoch (it appends only then)."""
        return (
            self.alive
            and self.view is not None
            and self.view.leader == self.id
            and self.epochs.latest >= self.view.leader_epoch
        )


@dataclass
class Pending:
    broker: int
    epoch: int
    offset: int
    value: int


class ReplicationModel(RuleBasedStateMachine):
    def __init__(self, brokers: tuple[int, ...] = (1, 2, 3)) -> None:
        super().__init__()
        self.store = CasStore(PartitionState(brokers, 1, 0, brokers))
        self.replicas = {b: Replica(b) for b in brokers}
        self.registered = set(brokers)  # brokers whose lease lives
        self.now = 0.0
        self.next_value = 0
        self.pending: list[Pending] = []
        self.acknowledged: list[tuple[int, int, int]] = []  # (offset, epoch, value)
        self.leader_of_epoch = {0: 1}
        for b in brokers:
            self._refresh(self.replicas[b])

    # -- what each broker does -----------------------------------------------------------

    def _refresh(self, replica: Replica) -> None:
        """The broker's watch catches up with the store; a new leadership starts (as _reconcile does)."""
        replica.view, replica.view_revision = self.store.state, self.store.revision
        view = replica.view
        if view.leader == replica.id and replica.led_epoch != view.leader_epoch:
            replica.led_epoch = view.leader_epoch
            replica.tracker.became_leader(TP, [b for b in view.replicas if b != replica.id], self.now)
            replica.epochs.assign(view.leader_epoch, len(replica.log))  # AssignEpochOp

    def _raise_high_watermark(self, leader: Replica) -> None:
        assert leader.view is not None
        members = leader.tracker.counted(TP, leader.view, leader.view_revision)
        hw = leader.tracker.high_watermark(TP, members, leader.id, len(leader.log))
        leader.high_watermark = max(leader.high_watermark, min(hw, len(leader.log)))

    @rule(b=broker)
    def refresh(self, b: int) -> None:
        if self.replicas[b].alive:
            self._refresh(self.replicas[b])

    @rule(b=broker)
    def produce(self, b: int) -> None:
        """acks=all: refused up front below min.insync.replicas (as the broker's view says)."""
        replica = self.replicas[b]
        if not replica.leads or replica.view is None or len(replica.view.isr) < MIN_INSYNC:
            return
        self.next_value += 1
        epoch = replica.view.leader_epoch
        self.pending.append(Pending(b, epoch, len(replica.log), self.next_value))
        replica.log.append((epoch, self.next_value))
        self._raise_high_watermark(replica)

    @rule(f=broker, records=st.integers(0, FETCH_MAX))
    def fetch(self, f: int, records: int) -> None:
        """One ReplicaFetch, as replication.fetch and _fetch_from handle it (0 records: the answer was
        lost on the way, after the leader took note of the fetch)."""
        follower = self.replicas[f]
        if not follower.alive or follower.view is None:
            return
        leader = self.replicas.get(follower.view.leader)
        if leader is None or leader.id == f or not leader.leads or leader.view is None:
            return
        if leader.view.leader_epoch != follower.view.leader_epoch:  # NOT_LEADER: the epoch is fenced
            return
        parted = diverging(leader.epochs, len(leader.log), follower.epochs.latest, len(follower.log))
        if parted is not None:
            cut = truncation_point(follower.epochs, len(follower.log), parted)
            del follower.log[cut:]
            follower.epochs.truncate_from(cut)
            follower.high_watermark = min(follower.high_watermark, cut)
            return
        start = len(follower.log)
        leader.tracker.on_fetch(TP, f, start, len(leader.log), self.now)
        self._raise_high_watermark(leader)
        follower.log += leader.log[start : start + records]
        for epoch, first in leader.epochs.overlapping(start, len(leader.log)):
            if epoch > follower.epochs.latest and first < len(follower.log):
                follower.epochs.assign(epoch, first)
        follower.high_watermark = max(follower.high_watermark, min(leader.high_watermark, len(follower.log)))

    @rule(b=broker)
    def maintain_isr(self, b: int) -> None:
        """The leader's periodic ISR check, written by compare-and-swap over the revision it saw."""
        replica = self.replicas[b]
        if not replica.leads or replica.view is None:
            return
        view = replica.view
        replica.tracker.check_clock(self.now)
        leaving = replica.tracker.lagging(TP, view, b, self.now)
        joining = replica.tracker.caught_up(TP, view, replica.high_watermark, replica.epochs.latest_start)
        new = with_isr(view, leaving, joining)
        if new is None:
            return
        revision = self.store.put_if(replica.view_revision, new)
        if revision is not None:
            replica.tracker.wrote(TP, view, new, revision)

    @rule(seconds=st.sampled_from([1.0, 4.0, 11.0]))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds

    @rule()
    def controller(self) -> None:
        """The controller brings the partition in line with the registered brokers (it reads the store
        fresh; a stale controller's write would fail its compare anyway)."""
        state = self.store.state
        new = after_broker_loss(state, self.registered) or after_broker_return(state, self.registered)
        if new is not None and self.store.put_if(self.store.revision, new) is not None and new.leader != NO_LEADER:
            assert self.leader_of_epoch.setdefault(new.leader_epoch, new.leader) == new.leader

    @rule(b=broker)
    def crash(self, b: int) -> None:
        replica = self.replicas[b]
        replica.alive = False
        self.registered.discard(b)

    @rule(b=broker)
    def lease_lost(self, b: int) -> None:
        """Paused past its lease: the others see it gone, while it runs on with what it last saw."""
        self.registered.discard(b)

    @rule(b=broker)
    def start_again(self, b: int) -> None:
        """A crashed broker restarts (its log and epochs survive; what it held in memory does not), or a
        paused one wakes and registers again."""
        replica = self.replicas[b]
        if not replica.alive:
            fresh = Replica(b, replica.log, replica.epochs)  # the high watermark hidden until confirmed
            self.replicas[b] = replica = fresh
        self.registered.add(b)
        self._refresh(replica)

    @precondition(lambda self: bool(self.pending))
    @rule(data=st.data())
    def answer(self, data: st.DataObject) -> None:
        """The produce handler's wait ends: acknowledged only while the same leadership lasts and the
        ISR is at least min.insync.replicas (the broker's view, as _await_replicas reads it)."""
        self.answer_one(data.draw(st.sampled_from(self.pending)))

    def answer_one(self, waiting: Pending) -> None:
        replica = self.replicas[waiting.broker]
        view = replica.view
        if not replica.alive or view is None:
            self.pending.remove(waiting)  # the connection died with it: outcome unknown to the client
            return
        if view.leader != replica.id or view.leader_epoch != waiting.epoch:
            self.pending.remove(waiting)  # NOT_LEADER: outcome unknown, the idempotent retry settles it
            return
        if replica.high_watermark > waiting.offset and len(view.isr) >= MIN_INSYNC:
            self.pending.remove(waiting)
            assert replica.log[waiting.offset] == (waiting.epoch, waiting.value)
            self.acknowledged.append((waiting.offset, waiting.epoch, waiting.value))

    # -- what must always hold ---------------------------------------------------------

    @invariant()
    def no_acknowledged_record_is_lost(self) -> None:
        for member in self.store.state.isr:
            log = self.replicas[member].log
            for offset, epoch, value in self.acknowledged:
                assert offset < len(log) and log[offset] == (epoch, value), (
                    f"ISR member {member} lacks acknowledged record {value} at offset {offset}"
                )

    @invariant()
    def replicas_agree_up_to_their_high_watermarks(self) -> None:
        for a in self.replicas.values():
            for b in self.replicas.values():
                shared = min(a.high_watermark, b.high_watermark)
                assert a.log[:shared] == b.log[:shared], f"replicas {a.id} and {b.id} differ below {shared}"


def isr_of(model: ReplicationModel) -> tuple[int, ...]:
    return model.store.state.isr


def check(model: ReplicationModel) -> None:
    model.no_acknowledged_record_is_lost()
    model.replicas_agree_up_to_their_high_watermarks()


def acknowledge_one_record(model: ReplicationModel, leader: int, followers: list[int]) -> None:
    model.produce(leader)
    for _ in range(2):  # one fetch copies it, the next reports it stored
        for f in followers:
            model.fetch(f, FETCH_MAX)
    model.answer_one(model.pending[-1])
    assert model.acknowledged, "the record was acknowledged"


def test_a_replica_written_into_the_isr_counts_before_the_leader_sees_the_write() -> None:
    """Broker 3 rejoins; the leader's view still shows the old ISR when the next record comes. Counting
    only the view would acknowledge it on 1 and 2 while the store's ISR names 3 (the maximal ISR rule)."""
    model = ReplicationModel()
    model.time_passes(LAG_S + 1)
    model.fetch(2, FETCH_MAX)
    model.maintain_isr(1)  # 3 has not fetched for the lag time
    model.refresh(1)
    assert isr_of(model) == (1, 2)
    model.fetch(3, FETCH_MAX)
    model.maintain_isr(1)  # 3 has everything: back in, and the leader's view does not show it yet
    assert isr_of(model) == (1, 2, 3) and model.replicas[1].view == PartitionState((1, 2, 3), 1, 0, (1, 2))
    model.produce(1)
    model.fetch(2, FETCH_MAX)
    model.fetch(2, FETCH_MAX)
    assert model.replicas[1].high_watermark == 0  # 3 holds it back
    check(model)


def test_a_new_leader_whose_high_watermark_lags_admits_no_replica_short_of_its_epoch_start() -> None:
    """Four replicas; 3 is out of the ISR and lacks a record 1 acknowledged with 2 and 4. Then 2 and 4
    restart (their high watermarks hidden) before the controller notices, and 1 dies: 2 leads with a
    high watermark of 0, held there by 4. Broker 3 must not rejoin on the strength of that high
    watermark alone — also up to where 2's epoch starts (Kafka's rule), or the ISR names a replica
    that lacks an acknowledged record."""
    model = ReplicationModel((1, 2, 3, 4))
    model.time_passes(LAG_S + 1)
    model.fetch(2, FETCH_MAX)
    model.fetch(4, FETCH_MAX)
    model.maintain_isr(1)
    model.refresh(1)
    assert isr_of(model) == (1, 2, 4)
    acknowledge_one_record(model, 1, [2, 4])
    for b in (2, 4):
        model.crash(b)
        model.start_again(b)
    model.crash(1)
    model.controller()
    for b in (2, 3, 4):
        model.refresh(b)
    assert model.store.state.leader == 2 and model.replicas[2].high_watermark == 0
    model.fetch(3, 0)  # the answer is lost: 3 still lacks the record
    model.maintain_isr(2)
    assert isr_of(model) == (2, 4)
    check(model)


TestReplicationModel = ReplicationModel.TestCase
TestReplicationModel.settings = settings(max_examples=300, stateful_step_count=80, deadline=None)
