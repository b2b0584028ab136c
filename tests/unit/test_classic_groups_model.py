"""Kafka's classic group protocol (kafka.classic_groups) driven by hypothesis: members join, sync,
heartbeat, leave and go silent in any order while time passes, and these always hold:

- a member is only ever told the assignment its generation's leader gave it, in that generation;
- generations only grow, and a join is answered in the group's current generation;
- the group is live in LiveGroups exactly while it has members;
- when every member has rejoined and the leader has synced, the group is Stable.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from tidelog.broker.groups.protocols import KAFKA, LiveGroups
from tidelog.broker.kafka import codes
from tidelog.broker.kafka.classic_groups import COMPLETING, STABLE, ClassicGroups, GroupError, Join

GROUP = "g"
MEMBERS = ["a", "b", "c"]
SESSION_MS = 1_000
Answer = dict[str, Any]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class ClassicGroupModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = Clock()
        self.live = LiveGroups()
        self.groups = ClassicGroups(self.live, self.clock)
        self.ids: dict[str, str] = {}  # the model's member -> the id the broker gave it
        self.joins: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.syncs: dict[str, tuple[int, asyncio.Future[dict[str, Any]]]] = {}
        self.generation: dict[str, int] = {}  # the generation each member last joined
        self.highest = 0

    def teardown(self) -> None:
        self.loop.close()

    def on_loop(self, call: Callable[[], Answer]) -> Answer:
        """`call()` run on the model's event loop, which the coordinator's futures belong to."""

        async def run() -> Answer:
            return call()

        return self.loop.run_until_complete(run())

    def settle(self) -> None:
        """Check the answers that have come: futures the coordinator resolved, nothing left to run."""
        for name, future in list(self.joins.items()):
            if future.done():
                del self.joins[name]
                answer = future.result()
                if answer["error_code"] == codes.NONE:
                    group = self.groups.group(GROUP)
                    assert group is not None and answer["generation_id"] == group.generation
                    assert answer["generation_id"] >= self.highest
                    self.highest = answer["generation_id"]
                    self.generation[name] = answer["generation_id"]
                    if answer["leader"] == answer["member_id"]:
                        assert {m["member_id"] for m in answer["members"]} == set(group.members)
        for name, (generation, future) in list(self.syncs.items()):
            if future.done():
                del self.syncs[name]
                answer = future.result()
                if answer["error_code"] == codes.NONE:
                    assert answer["assignment"] == f"{generation}:{self.ids[name]}".encode()

    @rule(name=st.sampled_from(MEMBERS))
    def join(self, name: str) -> None:
        self.join_as(name)

    def join_as(self, name: str) -> None:
        if name in self.joins:
            return

        def joining() -> Answer:
            join = Join(
                GROUP, self.ids.get(name, ""), name, "", SESSION_MS, SESSION_MS, "consumer", [("range", b"")], 5
            )
            try:
                future = self.groups.begin_join(join)
                if future.done() and future.result()["error_code"] == codes.MEMBER_ID_REQUIRED:
                    self.ids[name] = future.result()["member_id"]  # KIP-394: join again with it
                    future = self.groups.begin_join(replace(join, member_id=self.ids[name]))
                self.joins[name] = future
            except GroupError as err:
                if err.code == codes.UNKNOWN_MEMBER_ID:
                    self.ids.pop(name, None)
            return {}

        self.on_loop(joining)
        self.settle()

    @precondition(lambda self: bool(self.generation))
    @rule(data=st.data())
    def sync(self, data: st.DataObject) -> None:
        self.sync_as(data.draw(st.sampled_from(sorted(self.generation))))

    def sync_as(self, name: str) -> None:
        if name in self.syncs or name not in self.ids:
            return
        generation = self.generation[name]
        group = self.groups.group(GROUP)
        assignments = {}
        if group is not None and group.leader == self.ids[name]:
            assignments = {m: f"{generation}:{m}".encode() for m in group.members}

        def syncing() -> Answer:
            with contextlib.suppress(GroupError):  # a refusal: nothing to check
                self.syncs[name] = (generation, self.groups.begin_sync(GROUP, generation, self.ids[name], assignments))
            return {}

        self.on_loop(syncing)
        self.settle()

    @precondition(lambda self: bool(self.generation))
    @rule(data=st.data())
    def heartbeat(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.generation)))
        try:
            self.groups.heartbeat(GROUP, self.generation[name], self.ids.get(name, ""))
        except GroupError as err:
            assert err.code in (codes.REBALANCE_IN_PROGRESS, codes.ILLEGAL_GENERATION, codes.UNKNOWN_MEMBER_ID)

    @rule(name=st.sampled_from(MEMBERS))
    def leave(self, name: str) -> None:
        try:
            self.groups.leave(GROUP, self.ids.get(name, ""))
        except GroupError as err:
            assert err.code == codes.UNKNOWN_MEMBER_ID
        self.ids.pop(name, None)
        self.generation.pop(name, None)
        self.settle()

    @rule(seconds=st.sampled_from([0.1, 0.6, 1.5]))
    def time_passes(self, seconds: float) -> None:
        self.clock.now += seconds
        self.groups.expire()
        self.settle()

    @rule()
    def everyone_rejoins_and_syncs(self) -> None:
        """Every member the model knows joins again, as a client told of a rebalance does (members it
        no longer knows are dropped when the rebalance's time is up), then syncs: the group is Stable,
        each member holding what the leader gave it."""
        for _ in range(2 * len(MEMBERS) + 2):
            group = self.groups.group(GROUP)
            ours = {self.ids.get(name) for name in MEMBERS}
            if group is not None and group.state == COMPLETING and not self.joins and set(group.members) == ours:
                break
            for name in MEMBERS:
                now = self.groups.group(GROUP)
                joined = now is not None and now.state == COMPLETING and self.ids.get(name) in now.members
                if name not in self.joins and not joined:
                    self.join_as(name)
            group = self.groups.group(GROUP)
            if self.joins and group is not None and set(group.members) - ours:
                self.time_passes(1.5)  # a member nobody will rejoin as holds the rebalance up until then
        else:
            raise AssertionError("the members never all joined one generation")
        assert group is not None
        for name in sorted(MEMBERS, key=lambda n: self.ids[n] == group.leader):  # the leader last
            self.sync_as(name)
        assert not self.syncs, "every sync answered"
        assert group.state == STABLE

    @invariant()
    def live_while_it_has_members(self) -> None:
        group = self.groups.group(GROUP)
        has_members = group is not None and bool(group.members)
        try:
            self.live.enter(GROUP, "tidelog")
            entered = True
            self.live.leave(GROUP, "tidelog")
        except Exception:
            entered = False
        assert entered != has_members
        if has_members:
            self.live.enter(GROUP, KAFKA)  # (already its: no change)

    @invariant()
    def stable_once_everyone_synced(self) -> None:
        group = self.groups.group(GROUP)
        if group is None or not group.members or self.joins or self.syncs:
            return
        if group.state == STABLE:
            assert all(m.joining is None and m.syncing is None for m in group.members.values())


TestClassicGroups = ClassicGroupModel.TestCase
TestClassicGroups.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
