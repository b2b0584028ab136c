"""The cluster's control plane against a real etcd: registration under a lease, one controller elected
by a transaction, its writes fenced by the election revision, and the metadata cache kept by a watch."""

from __future__ import annotations

import asyncio
import socket
from collections import Counter

import pytest

from tidelog.broker.cluster.control import ControlPlane, TopicExists
from tidelog.broker.cluster.etcd import Etcd
from tidelog.broker.cluster.metadata import PartitionState
from tidelog.testing import EtcdProcess, wait_for_async

# The shortest useful lease (DESIGN.md: ~1.5x etcd's election timeout); production uses ~10 s.
TTL_S = 2


def plane(etcd: EtcdProcess, cluster: str, broker_id: int) -> ControlPlane:
    return ControlPlane(Etcd(etcd.endpoint), cluster, broker_id, f"127.0.0.1:{9000 + broker_id}", TTL_S)


def test_brokers_register_and_one_controller_is_elected(etcd: EtcdProcess) -> None:
    async def scenario() -> None:
        planes = [plane(etcd, "reg", i) for i in (1, 2, 3)]
        for p in planes:
            await p.start()
        try:
            everyone = {1: "127.0.0.1:9001", 2: "127.0.0.1:9002", 3: "127.0.0.1:9003"}
            await wait_for_async(
                lambda: all(p.brokers() == everyone for p in planes), 20, what="every cache to list all brokers"
            )
            await wait_for_async(lambda: sum(p.is_controller for p in planes) == 1, 20, what="one controller")
            (controller,) = [p for p in planes if p.is_controller]
            await wait_for_async(
                lambda: all(p.controller_id() == controller.broker_id for p in planes), 20, what="all to agree"
            )
            assert await controller.controller_write([(controller.keys.prefix + b"topics/orders", b"{}")])
            for other in planes:
                if other is not controller:
                    assert not await other.controller_write([(other.keys.prefix + b"topics/x", b"{}")])
            await wait_for_async(
                lambda: all(p.keys.prefix + b"topics/orders" in p.cache.entries for p in planes), 20, what="the watch"
            )
            await planes[2].stop()  # leaves: its lease is revoked, its registration goes at once
            await wait_for_async(lambda: 3 not in planes[0].brokers(), 20, what="broker 3's registration to go")
        finally:
            for p in planes:
                await p.stop()

    asyncio.run(scenario())


def test_a_controller_whose_lease_expires_is_fenced_and_another_takes_over(etcd: EtcdProcess) -> None:
    async def scenario() -> None:
        first, second = plane(etcd, "fence", 1), plane(etcd, "fence", 2)
        await first.start()
        await wait_for_async(lambda: first.is_controller, 20, what="the first broker to become the controller")
        await second.start()
        await wait_for_async(
            lambda: second.controller_id() == 1 and 1 in second.brokers(), 20, what="the second to see it"
        )
        old = first.election
        assert old is not None
        outsider = Etcd(etcd.endpoint)
        await outsider.connect()
        try:
            # As if the controller were paused past its TTL: its lease is gone, its keys with it.
            await outsider.revoke(first.lease_id)
            await wait_for_async(
                lambda: second.is_controller or (first.is_controller and first.election != old),
                20,
                what="a new election",
            )
            new = second.election or first.election
            assert new is not None and new.revision > old.revision
            # A write under the old election revision is refused, whoever won now.
            stale = await outsider.put_if_created_at(first.keys.controller, old.revision, [(b"/fence/x", b"stale")])
            assert not stale and await outsider.get(b"/fence/x") is None
            await wait_for_async(
                lambda: 1 in second.brokers(), 20, what="the first broker to register again under a new lease"
            )
            await wait_for_async(
                lambda: sum(p.is_controller for p in (first, second)) == 1, 20, what="exactly one controller"
            )
        finally:
            await outsider.close()
            await first.stop()
            await second.stop()

    asyncio.run(scenario())


def test_the_controller_moves_leaderships_off_brokers_that_go_and_a_new_controller_carries_on(
    etcd: EtcdProcess,
) -> None:
    async def scenario() -> None:
        planes = {i: plane(etcd, "topics", i) for i in (1, 2, 3)}
        for p in planes.values():
            await p.start()
        try:
            await wait_for_async(
                lambda: all(len(p.brokers()) == 3 for p in planes.values()), 20, what="all three registered"
            )
            await wait_for_async(lambda: any(p.is_controller for p in planes.values()), 20, what="a controller")
            controller = next(p for p in planes.values() if p.is_controller)
            creator = next(p for p in planes.values() if p is not controller)  # any broker creates topics
            spec = await creator.create_topic("orders", 6, 3, {})
            with pytest.raises(TopicExists):
                await creator.create_topic("orders", 1, 1, {})
            with pytest.raises(ValueError, match="live brokers"):
                await creator.create_topic("too-wide", 1, 4, {})

            def states(p: ControlPlane) -> list[PartitionState | None]:
                return [p.partition_state(spec.id, i) for i in range(6)]

            await wait_for_async(
                lambda: all(None not in states(p) for p in planes.values()), 20, what="every cache to see them"
            )
            first = states(creator)
            assert Counter(s.leader for s in first if s) == {1: 2, 2: 2, 3: 2}

            gone = next(i for i in planes if i != controller.broker_id)
            await planes[gone].stop()
            survivors = {i: p for i, p in planes.items() if i != gone}
            watcher = survivors[controller.broker_id]

            def moved() -> bool:
                now = states(watcher)
                return all(s is not None and s.leader != gone and gone not in s.isr for s in now)

            await wait_for_async(moved, 20, what=f"broker {gone}'s leaderships and ISR places to go")
            for before, after in zip(first, states(watcher), strict=True):
                assert before is not None and after is not None
                if before.leader == gone:
                    assert after.leader_epoch == before.leader_epoch + 1 and after.leader in before.isr
                else:
                    assert (after.leader, after.leader_epoch) == (before.leader, before.leader_epoch)

            await controller.stop()  # the controller goes too: the last broker takes over, leads everything
            (last,) = [p for i, p in survivors.items() if i != controller.broker_id]
            await wait_for_async(lambda: last.is_controller, 20, what="the last broker to become the controller")
            await wait_for_async(
                lambda: all(s is not None and s.leader == last.broker_id for s in states(last)),
                20,
                what="the last broker to lead every partition",
            )
        finally:
            for p in planes.values():
                await p.stop()

    asyncio.run(scenario())


def test_a_broker_given_several_etcd_endpoints_works_through_one_that_answers(etcd: EtcdProcess) -> None:
    with socket.socket() as unused:  # a port nothing listens on: the first endpoint is down
        unused.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{unused.getsockname()[1]}"

    async def scenario() -> None:
        control = ControlPlane(Etcd([dead, etcd.endpoint]), "endpoints", 1, "127.0.0.1:9001", TTL_S)
        await control.start()
        try:
            await wait_for_async(lambda: control.brokers() == {1: "127.0.0.1:9001"}, 20, what="registered")
            await wait_for_async(lambda: control.is_controller, 20, what="elected")
        finally:
            await control.stop()

    asyncio.run(scenario())
