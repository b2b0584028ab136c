"""The SDK's group consumer: shared partitions, auto-commit and manual commit, callbacks, async twin."""

from __future__ import annotations

import asyncio
import itertools
import threading

from client import AsyncConsumer, Consumer, Producer, TopicPartition
from tests.harness import BrokerProcess, new_topic, wait_for

_groups = itertools.count()


def group_name() -> str:
    return f"sdk-group-{next(_groups)}"


def produce(address: str, topic: str, values: list[bytes], partitions: int) -> None:
    with Producer(address) as producer:
        for i, value in enumerate(values):
            producer.send(topic, value, partition=i % partitions)
        producer.flush()


class Reader:
    """Polls a group Consumer on a thread and keeps every value it got."""

    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer
        self.values: list[bytes] = []
        self.lock = threading.Lock()
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while self.running:
            got = self.consumer.poll(0.05)
            with self.lock:
                self.values += [m.value for m in got]

    def got(self) -> list[bytes]:
        with self.lock:
            return list(self.values)

    def stop(self) -> None:
        self.running = False
        self.thread.join()
        self.consumer.close()


def test_members_share_partitions_and_every_record_arrives_once(broker: BrokerProcess) -> None:
    topic = new_topic(broker.address, partitions=4)
    group = group_name()
    a = Reader(Consumer(broker.address, topics=[topic], group=group))
    b = Reader(Consumer(broker.address, topics=[topic], group=group))
    try:
        wait_for(lambda: sorted(len(r.consumer.assignment()) for r in (a, b)) == [2, 2])
        assert set(a.consumer.assignment()).isdisjoint(b.consumer.assignment())
        values = [b"%d" % i for i in range(1000)]
        produce(broker.address, topic, values, 4)
        wait_for(lambda: len(a.got()) + len(b.got()) >= 1000)
        assert sorted(a.got() + b.got()) == sorted(values)
    finally:
        a.stop()
        b.stop()


def test_auto_commit_at_close_lets_the_next_member_resume(broker: BrokerProcess) -> None:
    topic = new_topic(broker.address, partitions=2)
    group = group_name()
    first = Reader(Consumer(broker.address, topics=[topic], group=group, auto_offset_reset="earliest"))
    produce(broker.address, topic, [b"a%d" % i for i in range(100)], 2)
    wait_for(lambda: len(first.got()) == 100)
    first.running = False
    first.thread.join()
    first.consumer.poll(0)  # what the last poll returned now counts as processed
    first.consumer.close()

    second = Reader(Consumer(broker.address, topics=[topic], group=group, auto_offset_reset="earliest"))
    try:
        wait_for(lambda: len(second.consumer.assignment()) == 2)
        produce(broker.address, topic, [b"b%d" % i for i in range(10)], 2)
        wait_for(lambda: len(second.got()) >= 10)
        assert sorted(second.got()) == sorted(b"b%d" % i for i in range(10))
    finally:
        second.stop()


def test_manual_commit_and_redelivery_of_what_was_not_committed(broker: BrokerProcess) -> None:
    topic = new_topic(broker.address)
    group = group_name()
    produce(broker.address, topic, [b"%d" % i for i in range(10)], 1)
    with Consumer(
        broker.address, topics=[topic], group=group, auto_offset_reset="earliest", enable_auto_commit=False
    ) as consumer:
        got: list[bytes] = []
        wait_for(lambda: got.extend(m.value for m in consumer.poll(0.05)) or len(got) >= 10)
        committed = consumer.commit({(topic, 0): 4})
        assert committed == {TopicPartition(topic, 0): 4}
    with Consumer(broker.address, topics=[topic], group=group, enable_auto_commit=False) as again:
        redelivered: list[bytes] = []
        wait_for(lambda: redelivered.extend(m.value for m in again.poll(0.05)) or len(redelivered) >= 6)
        assert redelivered == [b"%d" % i for i in range(4, 10)]
        assert again.lag() == {TopicPartition(topic, 0): 0}
        assert again.commit() == {TopicPartition(topic, 0): 10}


def test_callbacks_follow_the_assignment(broker: BrokerProcess) -> None:
    topic = new_topic(broker.address, partitions=4)
    group = group_name()
    events: list[tuple[str, list[TopicPartition]]] = []
    a = Consumer(
        broker.address,
        topics=[topic],
        group=group,
        on_assign=lambda tps: events.append(("assign", tps)),
        on_revoke=lambda tps: events.append(("revoke", tps)),
    )
    try:
        wait_for(lambda: len(a.assignment()) == 4)
        b = Consumer(broker.address, topics=[topic], group=group)
        try:
            wait_for(lambda: len(a.assignment()) == 2 and len(b.assignment()) == 2)
            assert events[0] == ("assign", [TopicPartition(topic, p) for p in range(4)])
            assert events[1][0] == "revoke" and sorted(events[1][1]) == sorted(b.assignment())
        finally:
            b.close()
        wait_for(lambda: len(a.assignment()) == 4)
        assert events[-1][0] == "assign" and len(events[-1][1]) == 2
    finally:
        a.close()


def test_async_group_consumer(broker: BrokerProcess) -> None:
    topic = new_topic(broker.address, partitions=2)
    produce(broker.address, topic, [b"x", b"y", b"z"], 2)

    async def scenario() -> list[bytes]:
        got: list[bytes] = []
        async with AsyncConsumer(
            broker.address, topics=[topic], group=group_name(), auto_offset_reset="earliest"
        ) as consumer:
            while len(got) < 3:
                got += [m.value for m in await consumer.getmany(5)]
            assert consumer.lag() == {TopicPartition(topic, 0): 0, TopicPartition(topic, 1): 0}
            assert await consumer.commit() == {TopicPartition(topic, 0): 2, TopicPartition(topic, 1): 1}
        return got

    assert sorted(asyncio.run(scenario())) == [b"x", b"y", b"z"]
