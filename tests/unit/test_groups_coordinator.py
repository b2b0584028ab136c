"""Group membership and cooperative rebalancing (pure logic, no broker process)."""

from __future__ import annotations

import asyncio

import pytest

from tidelog.broker.errors import BrokerError
from tidelog.broker.groups.coordinator import Coordinator, Member
from tidelog.broker.log.topics import TopicRegistry, TopicState
from tidelog.broker.storage.interface import PartitionStats, TopicRecord
from tidelog.common.reasons import Reason
from tidelog.v1 import groups_pb2


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Committed:
    """Committed offsets the test sets (an OffsetStore whose writes are not used here)."""

    def __init__(self) -> None:
        self.offsets: dict[tuple[str, int, int], int] = {}

    def committed(self, group: str) -> dict[tuple[int, int], int]:
        return {(t, p): o for (g, t, p), o in self.offsets.items() if g == group}

    def committed_offset(self, group: str, topic_id: int, partition: int) -> int | None:
        return self.offsets.get((group, topic_id, partition))

    def group_names(self) -> list[str]:
        return sorted({g for g, _, _ in self.offsets})

    async def all_group_names(self) -> list[str]:
        return self.group_names()

    def commit(self, group: str, offsets: list[tuple[int, int, int]]) -> asyncio.Future[list[int]]:
        raise NotImplementedError

    async def reset(self, group: str, offsets: list[tuple[int, int, int]]) -> None:
        raise NotImplementedError

    async def delete(self, group: str) -> bool:
        raise NotImplementedError


def coordinator(partitions: int = 12, committed: Committed | None = None) -> tuple[Coordinator, Clock]:
    registry = TopicRegistry()
    registry.add(TopicState(TopicRecord(1, "t", partitions, {}), [PartitionStats()] * partitions))
    clock = Clock()
    return Coordinator(registry, committed or Committed(), clock), clock


def join(coord: Coordinator, member_id: str = "", timeout_ms: int = 1000) -> Member:
    request = groups_pb2.JoinGroup(group="g", topics=["t"], member_id=member_id, session_timeout_ms=timeout_ms)
    return coord.join(request, "test")


def confirm_revocations(coord: Coordinator, members: list[Member]) -> None:
    for member in members:
        coord.revoked(member, list(member.revoking))


def assert_exclusive(members: list[Member]) -> None:
    held = [tp for m in members if m.ended is None for tp in (*m.owned, *m.revoking)]
    assert len(held) == len(set(held)), "a partition is held by two members"


def last_assignment(member: Member) -> groups_pb2.Assignment:
    return [r.assignment for r in member.outbox if r.HasField("assignment")][-1]


def test_join_moves_only_what_balance_needs_and_never_doubles_a_partition() -> None:
    coord, _ = coordinator()
    members = []
    for _ in range(3):
        members.append(join(coord))
        assert_exclusive(members)
        confirm_revocations(coord, members)
        assert_exclusive(members)
    assert sorted(len(m.owned) for m in members) == [4, 4, 4]
    before = {m.id: set(m.owned) for m in members}

    for m in members:
        m.outbox.clear()
    fourth = join(coord)
    members.append(fourth)
    assert_exclusive(members)
    revokes = [r.revoke for m in members[:3] for r in m.outbox if r.HasField("revoke")]
    assert sorted(len(r.partitions) for r in revokes) == [1, 1, 1]  # one from each, nothing else
    assert fourth.owned == set()  # not before the old owners let go
    confirm_revocations(coord, members)
    assert_exclusive(members)
    assert sorted(len(m.owned) for m in members) == [3, 3, 3, 3]
    for m in members[:3]:
        assert m.owned <= before[m.id]
    assert {m.generation for m in members} == {coord.group("g").generation}  # type: ignore[union-attr]
    assert last_assignment(fourth).partitions


def test_silent_member_is_removed_and_its_partitions_move() -> None:
    coord, clock = coordinator()
    a, b = join(coord, timeout_ms=500), join(coord, timeout_ms=10_000)
    confirm_revocations(coord, [a, b])
    clock.now += 0.4
    b.last_seen = clock.now
    coord.expire()
    assert a.ended is None
    clock.now += 0.2  # a has now been silent for 0.6 s
    b.last_seen = clock.now
    coord.expire()
    assert a.ended is not None and a.ended.reason == Reason.FENCED
    assert len(b.owned) == 12


def test_unconfirmed_revocation_is_taken_back_after_the_session_timeout() -> None:
    coord, clock = coordinator()
    a = join(coord, timeout_ms=500)
    b = join(coord, timeout_ms=500)
    assert len(a.revoking) == 6 and b.owned == set()
    clock.now += 0.6
    a.last_seen = b.last_seen = clock.now
    coord.expire()
    assert a.revoking == {} and len(b.owned) == 6


def test_commit_fencing() -> None:
    coord, _ = coordinator()
    a = join(coord)
    b = join(coord)
    revoking = next(iter(a.revoking))
    assert coord.check_commit("g", a.id, a.generation, [revoking]) is a  # may commit before letting go
    with pytest.raises(BrokerError) as not_owner:
        coord.check_commit("g", b.id, b.generation, [revoking])
    assert not_owner.value.reason == Reason.NOT_OWNER
    with pytest.raises(BrokerError) as stale:
        coord.check_commit("g", b.id, b.joined_generation - 1, [])
    assert stale.value.reason == Reason.FENCED
    coord.leave(a)
    with pytest.raises(BrokerError) as gone:
        coord.check_commit("g", a.id, a.generation, [])
    assert gone.value.reason == Reason.FENCED


def test_rejoining_with_a_live_member_id_ends_the_old_stream() -> None:
    coord, _ = coordinator()
    a = join(coord)
    again = join(coord, member_id=a.id)
    assert a.ended is not None and a.ended.reason == Reason.FENCED
    assert again.id == a.id and len(again.owned) == 12


@pytest.mark.parametrize(
    "request_fields",
    [
        {"group": "bad name", "topics": ["t"]},
        {"group": "g", "topics": []},
        {"group": "g", "topics": ["t"], "session_timeout_ms": 5},
        {"group": "g", "topics": ["t"], "auto_offset_reset": "middle"},
    ],
)
def test_bad_joins_are_refused(request_fields: dict[str, object]) -> None:
    coord, _ = coordinator()
    with pytest.raises(BrokerError) as refused:
        coord.join(groups_pb2.JoinGroup(**request_fields), "test")  # type: ignore[arg-type]
    assert refused.value.code.name == "INVALID_ARGUMENT"


def test_unknown_topic_is_not_found() -> None:
    coord, _ = coordinator()
    with pytest.raises(BrokerError) as refused:
        coord.join(groups_pb2.JoinGroup(group="g", topics=["nope"]), "test")
    assert refused.value.reason == Reason.TOPIC_NOT_FOUND


def test_a_subscribing_member_is_told_to_read_itself_from_the_committed_offsets() -> None:
    committed = Committed()
    committed.offsets[("g", 1, 0)] = 17
    coord, _ = coordinator(partitions=2, committed=committed)
    request = groups_pb2.JoinGroup(group="g", topics=["t"], session_timeout_ms=1000)
    member = coord.join(request, "peer", base=5 << 24, subscribe=True)
    assignment = member.outbox[-1].assignment
    assert assignment.subscribe
    assert [(o.topic, o.partition, o.offset) for o in assignment.committed] == [("t", 0, 17)]
    assert assignment.generation > 5 << 24  # above every generation of an earlier claim (a lower base)


def test_a_dropped_group_ends_its_members_and_starts_afresh() -> None:
    coord, _ = coordinator()
    member = join(coord)
    coord.drop("g", BrokerError(Reason.NOT_COORDINATOR, "moved"))
    assert member.ended is not None and member.ended.reason == Reason.NOT_COORDINATOR
    assert coord.group("g") is None
