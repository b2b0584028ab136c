"""Consumer group membership: who is in each group, what each member owns, and fencing.

Only the event loop touches this state. A member is one live `Consume` stream; the service
delivers records of `member.owned` and sends what the coordinator puts in `member.outbox`.

A rebalance (a member joins, leaves or times out) computes a sticky balanced target
(broker.assignor) and bumps the generation. Partitions a member loses are asked back with
`revoke` and stay held by it until it answers `revoked` (or its session timeout passes); only
then do they go to their new owner. Partitions that stay put keep flowing throughout, and at no
moment do two members hold the same partition.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from tidelog.broker.errors import BrokerError, invalid_request
from tidelog.broker.groups.assignor import TP, assign
from tidelog.broker.groups.offsets import OffsetStore
from tidelog.broker.groups.protocols import TIDELOG, LiveGroups
from tidelog.broker.log.topics import TopicRegistry
from tidelog.broker.log.wakeups import Changes
from tidelog.broker.names import check_group_name
from tidelog.common.reasons import Reason
from tidelog.v1 import groups_pb2

DEFAULT_SESSION_TIMEOUT_MS = 10_000
MIN_SESSION_TIMEOUT_MS = 100
MAX_SESSION_TIMEOUT_MS = 300_000
DEFAULT_CREDIT_BYTES = 1 << 20
RESET_POLICIES = ("latest", "earliest")


class Member(Changes):
    """One live Consume stream. `wake()` tells its delivery loop that something changed."""

    __slots__ = (
        "commits",
        "credit_bytes",
        "credit_records",
        "cursor",
        "ended",
        "generation",
        "group",
        "id",
        "joined_generation",
        "last_seen",
        "outbox",
        "owned",
        "peer",
        "positions",
        "reset",
        "revoking",
        "session_timeout_s",
        "subscribe",
        "topics",
    )

    def __init__(
        self, member_id: str, group: str, topics: frozenset[str], session_timeout_s: float, reset: str, peer: str
    ) -> None:
        super().__init__()
        self.id = member_id
        self.group = group
        self.topics = topics
        self.session_timeout_s = session_timeout_s
        self.reset = reset
        self.peer = peer
        self.subscribe = False  # reads its partitions itself (Subscribe): no records on the stream
        self.owned: set[TP] = set()  # delivered to this member now
        self.revoking: dict[TP, float] = {}  # asked back, still held until revoked or this deadline
        self.positions: dict[TP, int] = {}  # next offset to deliver, once resolved
        self.outbox: deque[groups_pb2.ConsumeResponse] = deque()
        self.generation = 0  # of the last assignment sent
        self.joined_generation = 0
        self.credit_bytes = DEFAULT_CREDIT_BYTES
        self.credit_records: int | None = None  # counted only once a grant names records
        self.last_seen = time.monotonic()
        self.ended: BrokerError | None = None  # set when the broker ends the membership
        self.cursor = 0  # round-robin over owned partitions when delivering
        self.commits: deque[asyncio.Future[Any]] = deque()  # commits on the stream, not yet answered

    def send(self, response: groups_pb2.ConsumeResponse) -> None:
        self.outbox.append(response)
        self.wake()

    def holds(self, tp: TP) -> bool:
        return tp in self.owned or tp in self.revoking

    def grant(self, records: int, bytes_: int) -> None:
        if records < 0 or bytes_ < 0:
            raise invalid_request("credit records and bytes must be >= 0")
        self.credit_bytes += bytes_
        if records:
            self.credit_records = (self.credit_records or 0) + records
        self.wake()

    def has_credit(self) -> bool:
        return self.credit_bytes > 0 and (self.credit_records is None or self.credit_records > 0)

    def end(self, error: BrokerError) -> None:
        self.ended = error
        self.wake()


class Group:
    __slots__ = ("base", "generation", "members", "name", "target")

    def __init__(self, name: str, base: int) -> None:
        self.name = name
        self.base = base  # generations are base + a counter: a new coordinator's base is above the last one's
        self.generation = 0
        self.members: dict[str, Member] = {}
        self.target: dict[str, set[TP]] = {}

    @property
    def state(self) -> str:
        if not self.members:
            return "empty"
        settled = all(m.owned == self.target.get(m.id, set()) and not m.revoking for m in self.members.values())
        return "stable" if settled else "rebalancing"


class _Counter:
    def __init__(self) -> None:
        self._next = 1

    def __next__(self) -> int:
        value, self._next = self._next, self._next + 1
        return value

    def peek(self) -> int:
        return self._next


def _partitions_message(tps: Iterable[TP]) -> list[groups_pb2.TopicPartition]:
    return [groups_pb2.TopicPartition(topic=t, partition=p) for t, p in sorted(tps)]


class Coordinator:
    def __init__(
        self,
        registry: TopicRegistry,
        offsets: OffsetStore,
        clock: Callable[[], float] = time.monotonic,
        live: LiveGroups | None = None,
    ) -> None:
        self._registry = registry
        self._offsets = offsets
        self._clock = clock
        self._live = live or LiveGroups()  # shared with the Kafka listener's classic groups
        self._groups: dict[str, Group] = {}
        # One counter for every group: a group dropped when empty and joined again never reuses a generation.
        self._generations = _Counter()
        self._admin_writes: dict[str, asyncio.Event] = {}  # groups whose offsets an admin call is changing
        registry.listeners.append(self.topic_changed)

    def group(self, name: str) -> Group | None:
        return self._groups.get(name)

    def groups(self) -> list[Group]:
        return list(self._groups.values())

    @contextlib.asynccontextmanager
    async def admin_write(self, name: str) -> AsyncIterator[None]:
        """Hold joins to group `name` back while an admin call changes its offsets."""
        done = self._admin_writes[name] = asyncio.Event()
        try:
            yield
        finally:
            del self._admin_writes[name]
            done.set()

    async def admin_writes_done(self, name: str) -> None:
        while (pending := self._admin_writes.get(name)) is not None:
            await pending.wait()

    def end_all(self, error: BrokerError) -> None:
        """End every member's stream (the broker is stopping)."""
        for group in self._groups.values():
            for member in group.members.values():
                member.end(error)

    def drop(self, name: str, error: BrokerError) -> None:
        """This broker no longer coordinates the group: end its members' streams (they rejoin where it went)."""
        group = self._groups.pop(name, None)
        self._live.leave(name, TIDELOG)
        for member in group.members.values() if group is not None else ():
            member.end(error)

    # -- membership ---------------------------------------------------------------

    def join(self, request: groups_pb2.JoinGroup, peer: str, base: int = 0, subscribe: bool = False) -> Member:
        """A new member (`subscribe`: it reads its partitions itself); `base` is the group's generation
        base under this broker's claim (cluster), 0 on a single broker."""
        check_group_name(request.group)
        if not request.topics:
            raise invalid_request("join needs at least one topic")
        for topic in request.topics:
            self._registry.get(topic)  # TOPIC_NOT_FOUND for an unknown topic
        timeout_ms = request.session_timeout_ms or DEFAULT_SESSION_TIMEOUT_MS
        if not MIN_SESSION_TIMEOUT_MS <= timeout_ms <= MAX_SESSION_TIMEOUT_MS:
            raise invalid_request(
                f"session_timeout_ms must be {MIN_SESSION_TIMEOUT_MS}-{MAX_SESSION_TIMEOUT_MS} (0 = "
                f"{DEFAULT_SESSION_TIMEOUT_MS}), got {timeout_ms}"
            )
        reset = request.auto_offset_reset or "latest"
        if reset not in RESET_POLICIES:
            raise invalid_request(f"auto_offset_reset must be 'earliest' or 'latest', got {reset!r}")
        if request.initial_credit_bytes < 0:
            raise invalid_request("initial_credit_bytes must be >= 0 (0 = 1 MiB)")

        group = self._groups.get(request.group)
        if group is None:
            self._live.enter(request.group, TIDELOG)
            group = self._groups[request.group] = Group(request.group, base)
        member_id = request.member_id or uuid.uuid4().hex
        previous = group.members.get(member_id)
        if previous is not None:  # the same member on a new stream: the old one is over
            self._remove(
                group, previous, BrokerError(Reason.FENCED, f"member {member_id} joined again on another stream")
            )
        member = Member(member_id, group.name, frozenset(request.topics), timeout_ms / 1000, reset, peer)
        member.credit_bytes = request.initial_credit_bytes or DEFAULT_CREDIT_BYTES
        member.subscribe = subscribe
        member.last_seen = self._clock()
        member.joined_generation = group.base + self._generations.peek()
        group.members[member_id] = member
        self._rebalance(group)
        return member

    def leave(self, member: Member) -> None:
        """The member's stream ended; its partitions go to the others."""
        group = self._groups.get(member.group)
        if group is not None and group.members.get(member.id) is member:
            self._remove(group, member, None)

    def revoked(self, member: Member, tps: Iterable[TP]) -> None:
        """The member stopped processing these partitions: hand them to their new owners."""
        for tp in tps:
            if tp in member.revoking:  # anything else is not being asked back: ignore it
                del member.revoking[tp]
                member.positions.pop(tp, None)
        group = self._groups.get(member.group)
        if group is not None:
            self._hand_over(group)

    def expire(self) -> None:
        """Remove members silent past their session timeout; take back unconfirmed revocations."""
        now = self._clock()
        for group in list(self._groups.values()):
            for member in list(group.members.values()):
                if now - member.last_seen > member.session_timeout_s:
                    timeout_ms = round(member.session_timeout_s * 1000)
                    error = BrokerError(
                        Reason.FENCED,
                        f"member {member.id} sent nothing for {timeout_ms} ms (session_timeout_ms); rejoin",
                    )
                    self._remove(group, member, error)
                    continue
                late = [tp for tp, deadline in member.revoking.items() if now > deadline]
                if late:
                    self.revoked(member, late)

    def topic_changed(self, topic: str) -> None:
        """A topic was created or deleted: rebalance the groups whose members name it."""
        for group in self._groups.values():
            if any(topic in m.topics for m in group.members.values()):
                self._rebalance(group)

    # -- fencing ------------------------------------------------------------------

    def check_commit(self, group_name: str, member_id: str, generation: int | None, tps: Iterable[TP]) -> Member:
        """The member, if it may commit these partitions now; else FENCED or NOT_OWNER."""
        group = self._groups.get(group_name)
        member = group.members.get(member_id) if group is not None else None
        if group is None or member is None:
            raise BrokerError(
                Reason.FENCED,
                f"member {member_id!r} is not in group {group_name!r} (its session ended, or it never joined); rejoin",
                group=group_name,
            )
        if generation is not None and not member.joined_generation <= generation <= group.generation:
            raise BrokerError(
                Reason.FENCED,
                f"generation {generation} is not one of member {member_id}'s ({member.joined_generation}-"
                f"{group.generation}); rejoin",
                group=group_name,
                generation=group.generation,
            )
        for topic, partition in tps:
            if not member.holds((topic, partition)):
                raise BrokerError(
                    Reason.NOT_OWNER,
                    f"member {member_id} does not own {topic}/{partition} in group {group_name!r}",
                    group=group_name,
                    topic=topic,
                    partition=partition,
                )
        return member

    # -- rebalancing --------------------------------------------------------------

    def _remove(self, group: Group, member: Member, error: BrokerError | None) -> None:
        del group.members[member.id]
        if error is not None:
            member.end(error)
        if group.members:
            self._rebalance(group)
        else:
            del self._groups[group.name]  # its committed offsets stay in LMDB
            self._live.leave(group.name, TIDELOG)

    def _rebalance(self, group: Group) -> None:
        group.generation = group.base + next(self._generations)
        topics = {t for m in group.members.values() for t in m.topics}
        partitions: dict[str, int] = {}
        for topic in topics:
            with contextlib.suppress(BrokerError):  # deleted since the member joined
                partitions[topic] = len(self._registry.get(topic).partitions)
        group.target = assign(
            {m.id: m.topics for m in group.members.values()},
            partitions,
            {m.id: m.owned for m in group.members.values()},
        )
        deadline_base = self._clock()
        for member in group.members.values():
            lose = member.owned - group.target[member.id]
            if lose:
                member.owned -= lose
                for tp in lose:
                    member.revoking[tp] = deadline_base + member.session_timeout_s
                member.send(groups_pb2.ConsumeResponse(revoke=groups_pb2.Revoke(partitions=_partitions_message(lose))))
        self._hand_over(group, announce_all=True)

    def _hand_over(self, group: Group, announce_all: bool = False) -> None:
        """Give members the target partitions nobody holds any more; tell those whose set changed."""
        held = {tp for m in group.members.values() for tp in (*m.owned, *m.revoking)}
        for member in group.members.values():
            gain = {tp for tp in group.target.get(member.id, ()) if tp not in held}
            if gain or announce_all:
                member.owned |= gain
                held |= gain
                member.generation = group.generation
                assignment = groups_pb2.Assignment(
                    generation=group.generation, member_id=member.id, partitions=_partitions_message(member.owned)
                )
                if member.subscribe:
                    assignment.subscribe = True
                    assignment.committed.extend(self._committed(group.name, member.owned))
                member.send(groups_pb2.ConsumeResponse(assignment=assignment))

    def _committed(self, group: str, tps: Iterable[TP]) -> list[groups_pb2.PartitionOffset]:
        """The group's committed offsets of these partitions (those it has; topics still there)."""
        out = []
        for topic, partition in sorted(tps):
            try:
                topic_id = self._registry.get(topic).id
            except BrokerError:
                continue
            offset = self._offsets.committed_offset(group, topic_id, partition)
            if offset is not None:
                out.append(groups_pb2.PartitionOffset(topic=topic, partition=partition, offset=offset))
        return out
