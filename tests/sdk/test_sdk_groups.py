"""The SDK's group consumer: shared partitions, auto-commit and manual commit, callbacks, async twin."""

from __future__ import annotations

import asyncio
import itertools
import threading

from tests.harness import BrokerProcess, gather, new_topic, wait_for
from tests.proxy import TcpProxy
from tidelog import AdminClient, AsyncConsumer, Consumer, MessageBatch, Producer, TopicPartition
from tidelog.errors import UnavailableError
from tidelog.testing import wait_for_async

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
        wait_for(lambda: sorted(len(r.consumer.assignment()) for r in (a, b)) == [2, 2], what="2 partitions each")
        assert set(a.consumer.assignment()).isdisjoint(b.consumer.assignment())
        values = [b"%d" % i for i in range(1000)]
        produce(broker.address, topic, values, 4)
        wait_for(lambda: len(a.got()) + len(b.got()) >= 1000, what="the 1,000 records")
        assert sorted(a.got() + b.got()) == sorted(values)
    finally:
        a.stop()
        b.stop()


def test_auto_commit_at_close_lets_the_next_member_resume(broker: BrokerProcess) -> None:
    topic = new_topic(broker.address, partitions=2)
    group = group_name()
    first = Reader(Consumer(broker.address, topics=[topic], group=group, auto_offset_reset="earliest"))
    produce(broker.address, topic, [b"a%d" % i for i in range(100)], 2)
    wait_for(lambda: len(first.got()) == 100, what="the first member's 100 records")
    first.running = False
    first.thread.join()
    first.consumer.poll(0)  # what the last poll returned now counts as processed
    first.consumer.close()

    second = Reader(Consumer(broker.address, topics=[topic], group=group, auto_offset_reset="earliest"))
    try:
        wait_for(lambda: len(second.consumer.assignment()) == 2, what="both partitions for the second member")
        produce(broker.address, topic, [b"b%d" % i for i in range(10)], 2)
        wait_for(lambda: len(second.got()) >= 10, what="the 10 new records")
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
        wait_for(lambda: gather(got, (m.value for m in consumer.poll(0.05))) >= 10, what="the 10 records")
        committed = consumer.commit({(topic, 0): 4})
        assert committed == {TopicPartition(topic, 0): 4}
    with Consumer(broker.address, topics=[topic], group=group, enable_auto_commit=False) as again:
        redelivered: list[bytes] = []
        wait_for(
            lambda: gather(redelivered, (m.value for m in again.poll(0.05))) >= 6,
            what="the 6 records after the commit",
        )
        assert redelivered == [b"%d" % i for i in range(4, 10)]
        assert again.lag() == {TopicPartition(topic, 0): 0}
        assert again.commit() == {TopicPartition(topic, 0): 10}


def test_callbacks_follow_the_assignment(broker: BrokerProcess) -> None:
    topic = new_topic(broker.address, partitions=4)
    group = group_name()
    events: list[tuple[str, list[TopicPartition]]] = []
    a = Reader(
        Consumer(
            broker.address,
            topics=[topic],
            group=group,
            on_assign=lambda tps: events.append(("assign", tps)),
            on_revoke=lambda tps: events.append(("revoke", tps)),
        )
    )
    try:
        wait_for(lambda: len(a.consumer.assignment()) == 4, what="every partition for the first member")
        b = Reader(Consumer(broker.address, topics=[topic], group=group))
        try:  # a gives partitions back at its next poll (its Reader polls all the time)
            wait_for(
                lambda: len(a.consumer.assignment()) == 2 and len(b.consumer.assignment()) == 2,
                what="2 partitions each",
            )
            assert events[0] == ("assign", [TopicPartition(topic, p) for p in range(4)])
            assert events[1][0] == "revoke" and sorted(events[1][1]) == sorted(b.consumer.assignment())
        finally:
            b.stop()
        wait_for(lambda: len(a.consumer.assignment()) == 4, what="every partition back to the first member")
        assert events[-1][0] == "assign" and len(events[-1][1]) == 2
    finally:
        a.stop()


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

    assert sorted(asyncio.run(asyncio.wait_for(scenario(), 30))) == [b"x", b"y", b"z"]


def produce_each(address: str, topic: str, partition: int, count: int) -> None:
    """`count` records, one request (so one stored batch) each."""
    with Producer(address, linger_ms=0) as producer:
        for i in range(count):
            producer.send(topic, b"%d" % i, partition=partition).result(10)


def test_records_buffered_when_the_stream_breaks_are_not_skipped(broker: BrokerProcess) -> None:
    topic = new_topic(broker.address)
    produce_each(broker.address, topic, 0, 20)
    proxy = TcpProxy(broker.address).start()

    async def scenario() -> list[int]:
        seen: list[int] = []

        def offsets(batches: list[MessageBatch]) -> list[int]:
            return [b.base_offset + i for b in batches for i in range(len(b))]

        consumer = AsyncConsumer(
            proxy.address, topics=[topic], group=group_name(), auto_offset_reset="earliest", enable_auto_commit=False
        )
        try:
            while len(seen) < 5:  # take 5; what else arrived stays in the consumer's buffer
                seen += offsets(await consumer.getmany_batches(1, max_records=5 - len(seen)))
            await asyncio.to_thread(produce_each, broker.address, topic, 0, 20)  # offsets 20-39
            session = consumer._group
            assert session is not None
            generation = session.generation
            proxy.cut()  # the stream breaks; the consumer rejoins with its member id
            await wait_for_async(
                lambda: session.generation > generation and session.owned, 20, what="the member to rejoin"
            )
            while not seen or max(seen) < 39:
                seen += offsets(await consumer.getmany_batches(5))
            return seen
        finally:
            await consumer.close()

    try:
        seen = asyncio.run(asyncio.wait_for(scenario(), 30))
    finally:
        proxy.close()
    assert set(range(40)) <= set(seen)  # redelivered from the last commit (none): duplicates, no gap


def test_commit_between_polls_with_records_piling_up_does_not_hang(broker: BrokerProcess) -> None:
    topic = new_topic(broker.address, partitions=100)
    with Producer(broker.address) as producer:
        producer.send(topic, b"first", partition=0).result(10)

    async def scenario() -> dict[TopicPartition, int]:
        async with AsyncConsumer(
            broker.address, topics=[topic], group=group_name(), auto_offset_reset="earliest", enable_auto_commit=False
        ) as consumer:
            while not await consumer.getmany(1):
                pass
            await asyncio.to_thread(produce, broker.address, topic, [b"more"] * 100, 100)  # one per partition
            # more records than the old 64-slot queue held
            await wait_for_async(lambda: consumer._queue.qsize() >= 64, 20, what="64 batches in the consumer's queue")
            return await asyncio.wait_for(consumer.commit(), 10)

    assert asyncio.run(asyncio.wait_for(scenario(), 30)) == {TopicPartition(topic, 0): 1}


def test_a_commit_while_rejoining_fails_at_once_and_later_answers_stay_matched(broker: BrokerProcess) -> None:
    topic = new_topic(broker.address)
    produce_each(broker.address, topic, 0, 10)
    proxy = TcpProxy(broker.address).start()
    tp = TopicPartition(topic, 0)

    async def scenario() -> dict[TopicPartition, int]:
        async with AsyncConsumer(
            proxy.address,
            topics=[topic],
            group=group_name(),
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            retry_backoff_ms=300,
            retry_backoff_max_ms=300,
        ) as consumer:
            while not await consumer.getmany(1):
                pass
            session = consumer._group
            assert session is not None
            proxy.cut()
            await wait_for_async(
                lambda: not session.owned, 20, what="the consumer to notice the cut and wait to rejoin"
            )
            try:
                await consumer.commit({tp: 3})
                raise AssertionError("a commit without a live membership must fail")
            except UnavailableError:
                pass
            await wait_for_async(lambda: session.owned, 20, what="the consumer to rejoin")
            return await asyncio.wait_for(consumer.commit({tp: 7}), 10)

    try:
        assert asyncio.run(asyncio.wait_for(scenario(), 30)) == {tp: 7}
    finally:
        proxy.close()


def test_a_partition_given_back_keeps_what_was_processed(broker: BrokerProcess) -> None:
    topic = new_topic(broker.address, partitions=2)
    produce(broker.address, topic, [b"v"] * 20, 2)
    group = group_name()
    first = Reader(Consumer(broker.address, topics=[topic], group=group, auto_offset_reset="earliest"))
    try:
        wait_for(lambda: len(first.got()) == 20, what="the 20 records")
        second = Reader(Consumer(broker.address, topics=[topic], group=group, auto_offset_reset="earliest"))
        try:
            wait_for(
                lambda: len(first.consumer.assignment()) == 1 and len(second.consumer.assignment()) == 1,
                what="a partition each",
            )
            with AdminClient(broker.address) as admin:  # the partition handed over was committed first
                moved = second.consumer.assignment()[0]
                assert admin.group_offsets(group)[moved] == 10
            assert second.got() == []  # so its new owner sees nothing again
        finally:
            second.stop()
    finally:
        first.stop()
