"""Group coordination in a cluster against a real etcd: one broker claims a group, its offset writes
are fenced by the claim, a successor starts from every offset committed before and under higher
generations, and commits never move an offset back."""

from __future__ import annotations

import asyncio

import pytest

from tidelog.broker.cluster.control import ControlPlane
from tidelog.broker.cluster.etcd import Etcd
from tidelog.broker.cluster.group_store import EtcdGroups
from tidelog.broker.errors import BrokerError
from tidelog.common.reasons import Reason
from tidelog.testing import EtcdProcess, wait_for_async

TTL_S = 2


def broker(etcd: EtcdProcess, broker_id: int) -> tuple[ControlPlane, EtcdGroups, Etcd]:
    client = Etcd(etcd.endpoint)
    control = ControlPlane(client, "groups", broker_id, f"127.0.0.1:{9100 + broker_id}", TTL_S)
    return control, EtcdGroups(control, client), client


def test_a_claim_fences_the_offsets_and_a_successor_takes_over_from_them(etcd: EtcdProcess) -> None:
    async def scenario() -> None:
        (a, groups_a, client), (b, groups_b, _) = broker(etcd, 1), broker(etcd, 2)
        lost: list[str] = []
        groups_a.on_lost(lost.append)
        await a.start()
        await b.start()
        try:
            await wait_for_async(lambda: a.lease_id != 0 and b.lease_id != 0, 20, what="both registered")
            await wait_for_async(lambda: len(b.brokers()) == 2, 20, what="b to see a")
            base_a = await groups_a.coordinate("g")
            assert await groups_a.commit("g", [(7, 0, 10), (7, 1, 3)]) == [10, 3]
            assert await groups_a.commit("g", [(7, 0, 5)]) == [10]  # never backwards

            with pytest.raises(BrokerError) as refused:
                await groups_b.coordinate("g")
            assert refused.value.reason == Reason.NOT_COORDINATOR
            assert refused.value.metadata["coordinator_address"] == "127.0.0.1:9101"

            # a's claim ends (as its lease would) before a notices: b claims, a's writes are fenced.
            await client.delete_if_created_at(a.keys.group_coordinator("g"), base_a >> 24)
            base_b = await groups_b.coordinate("g")
            assert base_b > base_a  # the group's generations go on rising under the new coordinator
            assert groups_b.committed("g") == {(7, 0): 10, (7, 1): 3}
            with pytest.raises(BrokerError) as fenced:
                await groups_a.commit("g", [(7, 0, 99)])
            assert fenced.value.reason == Reason.NOT_COORDINATOR and lost == ["g"]
            stored = await client.get(a.keys.group_offset("g", 7, 0))
            assert stored is not None and stored.value == b"10"

            assert await groups_b.commit("g", [(7, 0, 15)]) == [15]
            assert await groups_b.all_group_names() == ["g"]
            await groups_b.release_all()  # a clean stop: the next broker claims at once
            await groups_a.coordinate("g")
            assert groups_a.committed_offset("g", 7, 0) == 15
            assert await groups_a.delete("g") and groups_a.committed("g") == {}
            assert await groups_b.all_group_names() == []
        finally:
            await a.stop()
            await b.stop()

    asyncio.run(scenario())


def test_a_claim_held_by_an_earlier_session_of_the_same_broker_is_taken_over(etcd: EtcdProcess) -> None:
    async def scenario() -> None:
        control, groups, client = broker(etcd, 3)
        await control.start()
        try:
            await wait_for_async(lambda: control.lease_id != 0, 20, what="registered")
            # A key from this broker's previous run, under a lease not yet expired.
            lease = await client.grant(60)
            assert await client.create(control.keys.group_coordinator("h"), b"3", lease) is not None
            assert await groups.coordinate("h") > 0
            assert groups.coordinates("h")
        finally:
            await control.stop()

    asyncio.run(scenario())
