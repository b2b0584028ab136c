"""Kafka's classic consumer groups: the broker runs the membership, the members assign.

A group goes Empty -> PreparingRebalance (someone joined or left; every member must send JoinGroup
again) -> CompletingRebalance (the join is answered: the leader gets every member's subscription) ->
Stable (the leader's SyncGroup carried the assignment, relayed to each member). Heartbeats tell the
members of a rebalance (REBALANCE_IN_PROGRESS), and keep them in the group: a member silent past its
session timeout is removed, as is one that does not rejoin within its rebalance timeout. The assignor
(range, roundrobin, cooperative-sticky...) is the client's; the broker never reads the assignment.

Generations come from one counter for every group, so a group emptied and joined again never reuses
one, and a commit of a stale generation is refused. Only the event loop touches this state.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from tidelog.broker.errors import BrokerError
from tidelog.broker.groups.protocols import KAFKA, LiveGroups
from tidelog.broker.kafka import codes

log = structlog.get_logger("tidelog.kafka")

EMPTY, PREPARING, COMPLETING, STABLE = "Empty", "PreparingRebalance", "CompletingRebalance", "Stable"
MIN_SESSION_TIMEOUT_MS = 100
MAX_SESSION_TIMEOUT_MS = 1_800_000  # Kafka's group.max.session.timeout.ms
Answer = dict[str, Any]


class GroupError(Exception):
    """A Kafka error code that answers a group request."""

    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(message or f"error {code}")
        self.code = code


@dataclass
class ClassicMember:
    id: str
    client_id: str
    client_host: str
    session_timeout_s: float
    rebalance_timeout_s: float
    protocols: list[tuple[str, bytes]]
    last_seen: float
    joining: asyncio.Future[Answer] | None = None  # its JoinGroup, waiting for the rebalance
    syncing: asyncio.Future[Answer] | None = None  # its SyncGroup, waiting for the leader's
    assignment: bytes = b""


@dataclass
class ClassicGroup:
    name: str
    state: str = EMPTY
    generation: int = 0
    protocol_type: str | None = None
    protocol: str | None = None
    leader: str | None = None
    members: dict[str, ClassicMember] = field(default_factory=dict)
    pending: dict[str, float] = field(default_factory=dict)  # member ids handed out (KIP-394), until when
    rebalance_deadline: float = 0.0


@dataclass(frozen=True)
class Join:
    group: str
    member_id: str
    client_id: str
    client_host: str
    session_timeout_ms: int
    rebalance_timeout_ms: int
    protocol_type: str
    protocols: list[tuple[str, bytes]]
    version: int


def _answered(answer: Answer) -> asyncio.Future[Answer]:
    future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
    future.set_result(answer)
    return future


def _resolve(future: asyncio.Future[Answer] | None, answer: Answer) -> None:
    if future is not None and not future.done():
        future.set_result(answer)


class ClassicGroups:
    def __init__(self, live: LiveGroups, clock: Callable[[], float] = time.monotonic) -> None:
        self._live = live
        self._clock = clock
        self._groups: dict[str, ClassicGroup] = {}
        self._generations = itertools.count(1)

    def group(self, name: str) -> ClassicGroup | None:
        return self._groups.get(name)

    def groups(self) -> list[ClassicGroup]:
        return list(self._groups.values())

    def live(self, name: str) -> bool:
        group = self._groups.get(name)
        return group is not None and bool(group.members)

    # -- the protocol ------------------------------------------------------------------

    async def join(self, join: Join) -> Answer:
        """The JoinGroup's answer, once the rebalance it is part of completes."""
        return await self.begin_join(join)

    def begin_join(self, join: Join) -> asyncio.Future[Answer]:
        """Join at once (GroupError when refused); the future holds the answer once the rebalance
        completes (at once for KIP-394's MEMBER_ID_REQUIRED)."""
        if not MIN_SESSION_TIMEOUT_MS <= join.session_timeout_ms <= MAX_SESSION_TIMEOUT_MS:
            raise GroupError(codes.INVALID_SESSION_TIMEOUT)
        if not join.protocol_type or not join.protocols:
            raise GroupError(codes.INCONSISTENT_GROUP_PROTOCOL)
        group = self._groups.setdefault(join.group, ClassicGroup(join.group))
        if group.members and (
            join.protocol_type != group.protocol_type or not self._common(group, join.protocols, join.member_id)
        ):
            raise GroupError(codes.INCONSISTENT_GROUP_PROTOCOL)
        now = self._clock()
        member_id = join.member_id
        if not member_id:
            member_id = f"{join.client_id or 'member'}-{uuid.uuid4()}"
            if join.version >= 4:  # KIP-394: the member learns its id, then joins with it
                group.pending[member_id] = now + join.session_timeout_ms / 1000
                return _answered({"error_code": codes.MEMBER_ID_REQUIRED, "member_id": member_id})
        elif member_id not in group.members and group.pending.pop(member_id, None) is None:
            raise GroupError(codes.UNKNOWN_MEMBER_ID)
        if not group.members:
            try:
                self._live.enter(group.name, KAFKA)
            except BrokerError:
                raise GroupError(codes.INCONSISTENT_GROUP_PROTOCOL) from None
            group.protocol_type = join.protocol_type
        rebalance_ms = join.rebalance_timeout_ms if join.rebalance_timeout_ms > 0 else join.session_timeout_ms
        member = group.members.get(member_id)
        if member is None:
            member = group.members[member_id] = ClassicMember(
                member_id, join.client_id, join.client_host, 0, 0, [], now
            )
        member.session_timeout_s = join.session_timeout_ms / 1000
        member.rebalance_timeout_s = rebalance_ms / 1000
        member.protocols = join.protocols
        member.last_seen = now
        _resolve(member.joining, {"error_code": codes.UNKNOWN_MEMBER_ID})  # an older join of the same member
        waiting: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        member.joining = waiting
        if group.state != PREPARING:
            self._prepare_rebalance(group, f"member {member_id} joined")
        self._complete_join_if_ready(group)
        return waiting

    async def sync(self, name: str, generation: int, member_id: str, assignments: dict[str, bytes]) -> Answer:
        """The SyncGroup's answer: this member's assignment, once the leader has sent them."""
        return await self.begin_sync(name, generation, member_id, assignments)

    def begin_sync(
        self, name: str, generation: int, member_id: str, assignments: dict[str, bytes]
    ) -> asyncio.Future[Answer]:
        """Sync at once (GroupError when refused); the future holds the member's assignment once the
        leader's sync has brought them (at once for the leader, and in a Stable group)."""
        group, member = self._member(name, member_id)
        if generation != group.generation:
            raise GroupError(codes.ILLEGAL_GENERATION)
        if group.state == PREPARING:
            raise GroupError(codes.REBALANCE_IN_PROGRESS)
        member.last_seen = self._clock()
        if group.state == STABLE:
            return _answered(self._synced(group, member))
        waiting: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        member.syncing = waiting
        if member_id == group.leader:
            for each in group.members.values():
                each.assignment = assignments.get(each.id, b"")
            group.state = STABLE
            log.info("kafka_group_stable", group=name, generation=generation, members=len(group.members))
            for each in group.members.values():
                _resolve(each.syncing, self._synced(group, each))
                each.syncing = None
        return waiting

    def heartbeat(self, name: str, generation: int, member_id: str) -> None:
        group, member = self._member(name, member_id)
        if generation != group.generation:
            raise GroupError(codes.ILLEGAL_GENERATION)
        member.last_seen = self._clock()
        if group.state == PREPARING:
            raise GroupError(codes.REBALANCE_IN_PROGRESS)

    def leave(self, name: str, member_id: str) -> None:
        group, member = self._member(name, member_id)
        self._remove(group, member, "left")

    def check_commit(self, name: str, generation: int, member_id: str) -> None:
        """May these offsets be committed? A consumer outside any group (generation -1, no member id)
        commits while the group has no members; a member, in its generation and not mid-sync."""
        group = self._groups.get(name)
        if generation < 0 and not member_id:
            if group is not None and group.members:
                raise GroupError(codes.UNKNOWN_MEMBER_ID)
            return
        group, member = self._member(name, member_id)
        if generation != group.generation:
            raise GroupError(codes.ILLEGAL_GENERATION)
        if group.state == COMPLETING:
            raise GroupError(codes.REBALANCE_IN_PROGRESS)
        member.last_seen = self._clock()

    def drop(self, name: str) -> None:
        """This broker no longer coordinates the group: its members are told (NOT_COORDINATOR) and
        find the new coordinator, where they join again."""
        group = self._groups.pop(name, None)
        if group is None:
            return
        moved = {"error_code": codes.NOT_COORDINATOR}
        for member in group.members.values():
            _resolve(member.joining, moved)
            _resolve(member.syncing, moved)
        if group.members:
            self._live.leave(name, KAFKA)
        log.info("kafka_group_dropped", group=name, members=len(group.members))

    # -- time --------------------------------------------------------------------------

    async def expire_periodically(self, interval_s: float = 0.1) -> None:
        while True:
            await asyncio.sleep(interval_s)
            self.expire()

    def expire(self) -> None:
        """Remove members silent past their session timeout and, once a rebalance's time is up, those
        that did not rejoin; forget ids handed out and never used, and empty groups."""
        now = self._clock()
        for group in list(self._groups.values()):
            group.pending = {m: until for m, until in group.pending.items() if until > now}
            for member in list(group.members.values()):
                if member.joining is None and member.last_seen + member.session_timeout_s < now:
                    self._remove(group, member, "session timed out")
            if group.state == PREPARING and group.rebalance_deadline < now:
                for member in [m for m in group.members.values() if m.joining is None]:
                    self._remove(group, member, "did not rejoin in time")
                self._complete_join_if_ready(group)
            if not group.members and not group.pending:
                del self._groups[group.name]

    # -- inside ------------------------------------------------------------------------

    def _member(self, name: str, member_id: str) -> tuple[ClassicGroup, ClassicMember]:
        group = self._groups.get(name)
        member = group.members.get(member_id) if group is not None else None
        if group is None or member is None:
            raise GroupError(codes.UNKNOWN_MEMBER_ID)
        return group, member

    def _common(self, group: ClassicGroup, protocols: list[tuple[str, bytes]], joining: str) -> set[str]:
        """The protocols (assignors) every member, this one included, supports."""
        names = {name for name, _ in protocols}
        for member in group.members.values():
            if member.id != joining:
                names &= {name for name, _ in member.protocols}
        return names

    def _prepare_rebalance(self, group: ClassicGroup, why: str) -> None:
        for member in group.members.values():  # a sync waiting on the old generation's leader is over
            _resolve(member.syncing, {"error_code": codes.REBALANCE_IN_PROGRESS})
            member.syncing = None
        group.state = PREPARING
        longest = max((m.rebalance_timeout_s for m in group.members.values()), default=0.0)
        group.rebalance_deadline = self._clock() + longest
        log.info("kafka_group_rebalancing", group=group.name, reason=why, members=len(group.members))

    def _complete_join_if_ready(self, group: ClassicGroup) -> None:
        if group.state != PREPARING or any(m.joining is None for m in group.members.values()):
            return
        if not group.members:
            self._empty(group)
            return
        group.generation = next(self._generations)
        if group.leader not in group.members:
            group.leader = next(iter(group.members))
        leader = group.members[group.leader]
        common = self._common(group, leader.protocols, leader.id)
        group.protocol = next(name for name, _ in leader.protocols if name in common)
        group.state = COMPLETING
        now = self._clock()
        subscriptions = [
            {"member_id": m.id, "group_instance_id": None, "metadata": dict(m.protocols)[group.protocol]}
            for m in group.members.values()
        ]
        for member in group.members.values():
            member.last_seen = now
            _resolve(
                member.joining,
                {
                    "error_code": codes.NONE,
                    "generation_id": group.generation,
                    "protocol_type": group.protocol_type,
                    "protocol_name": group.protocol,
                    "leader": group.leader,
                    "member_id": member.id,
                    "members": subscriptions if member.id == group.leader else [],
                },
            )
            member.joining = None

    def _synced(self, group: ClassicGroup, member: ClassicMember) -> Answer:
        return {
            "error_code": codes.NONE,
            "protocol_type": group.protocol_type,
            "protocol_name": group.protocol,
            "assignment": member.assignment,
        }

    def _remove(self, group: ClassicGroup, member: ClassicMember, why: str) -> None:
        del group.members[member.id]
        gone = {"error_code": codes.UNKNOWN_MEMBER_ID}
        _resolve(member.joining, gone)
        _resolve(member.syncing, gone)
        log.info("kafka_group_member_removed", group=group.name, member=member.id, reason=why)
        if not group.members:
            self._empty(group)
            return
        if group.state != PREPARING:
            self._prepare_rebalance(group, f"member {member.id} {why}")
        self._complete_join_if_ready(group)

    def _empty(self, group: ClassicGroup) -> None:
        group.state = EMPTY
        group.leader = group.protocol = group.protocol_type = None
        self._live.leave(group.name, KAFKA)
