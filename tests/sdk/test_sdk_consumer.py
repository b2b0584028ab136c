"""The SDK consumer against the real broker: seeks, positions, reconnects without gaps or duplicates."""

from __future__ import annotations

import asyncio

import pytest

from tests import harness
from tests.harness import BrokerProcess, gather, wait_for
from tests.proxy import TcpProxy
from tidelog import AsyncConsumer, Consumer, Producer
from tidelog.errors import OffsetOutOfRangeError, TopicNotFoundError
from tidelog.types import Message, TopicPartition


def new_topic(address: str, partitions: int = 1, configs: dict[str, str] | None = None) -> str:
    return harness.new_topic(address, partitions, "sdkc", configs)


def produce(address: str, topic: str, values: range, partition: int = 0, ts: int | None = None) -> None:
    with Producer(address) as producer:
        for i in values:
            producer.send(topic, str(i).encode(), partition=partition, timestamp_ms=ts)
        producer.flush()


def take(consumer: Consumer, count: int, timeout: float = 30.0) -> list[Message]:
    got: list[Message] = []
    wait_for(lambda: gather(got, consumer.poll(0.2)) >= count, timeout, what=f"{count} records")
    return got


def take_exactly(consumer: Consumer, count: int, timeout: float = 30.0) -> list[Message]:
    """`count` records and no more, so that the position ends right after them."""
    got: list[Message] = []
    wait_for(
        lambda: gather(got, consumer.poll(0.2, max_records=count - len(got))) >= count,
        timeout,
        what=f"{count} records",
    )
    return got


def cut_and_await_reconnect(proxy: TcpProxy) -> None:
    """Cut every connection through `proxy`, then wait until the client opens a new one."""
    connections = proxy.connections
    proxy.cut()
    wait_for(lambda: proxy.connections > connections, what="the client to reconnect after the cut")


def test_seeks_positions_and_offsets(broker: BrokerProcess) -> None:
    topic = new_topic(broker.address, partitions=2)
    produce(broker.address, topic, range(0, 10), partition=0, ts=1_000)
    produce(broker.address, topic, range(10, 20), partition=0, ts=2_000)
    produce(broker.address, topic, range(100, 105), partition=1)
    tp0, tp1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
    with Consumer(broker.address, topics=[topic]) as consumer:  # latest by default
        assert sorted(consumer.assignment()) == [tp0, tp1]
        assert consumer.position(tp0) == 20 and consumer.position(tp1) == 5
        assert consumer.poll(0.2) == []
        assert consumer.end_offsets() == {tp0: 20, tp1: 5}
        assert consumer.beginning_offsets(tp0) == {tp0: 0}

        consumer.seek_to_beginning(tp0)
        assert [int(m.value) for m in take(consumer, 20)] == list(range(20))
        assert consumer.position(tp0) == 20

        consumer.seek(tp0, 5)
        first = consumer.poll(5, max_records=3)
        assert [m.offset for m in first] == [5, 6, 7]
        assert consumer.position(tp0) == 8
        assert [m.offset for m in take(consumer, 12)] == list(range(8, 20))

        consumer.seek_to_timestamp(2_000, tp0)
        assert consumer.position(tp0) == 10
        assert [int(m.value) for m in take(consumer, 10)] == list(range(10, 20))

        consumer.seek_to_beginning()  # every assigned partition
        got = take(consumer, 25)
        assert sorted(int(m.value) for m in got) == [*range(20), *range(100, 105)]

        consumer.seek_to_end()
        assert consumer.position(tp0) == 20  # "latest" is resolved before anything more is written
        produce(broker.address, topic, range(20, 22), partition=0)
        assert [int(m.value) for m in take(consumer, 2)] == [20, 21]

        with pytest.raises(ValueError, match="not assigned"):
            consumer.seek((topic, 7), 0)


def test_seek_backwards_drops_records_read_before_it(broker: BrokerProcess) -> None:
    topic = new_topic(broker.address)
    produce(broker.address, topic, range(5000))
    with Consumer(broker.address, topics=[topic], auto_offset_reset="earliest", max_bytes=1024) as consumer:
        assert take(consumer, 1)[0].offset == 0  # the stream runs ahead into the queue meanwhile
        consumer.seek((topic, 0), 0)
        got = take(consumer, 5000)
        assert [m.offset for m in got[:5000]] == list(range(5000))


def test_out_of_range_start_follows_auto_offset_reset(broker: BrokerProcess) -> None:
    topic = new_topic(broker.address)
    produce(broker.address, topic, range(3))
    with Consumer(broker.address, auto_offset_reset="earliest") as consumer:
        consumer.assign([(topic, 0)])
        consumer.seek((topic, 0), 1000)
        assert [int(m.value) for m in take(consumer, 3)] == [0, 1, 2]
    with Consumer(broker.address, auto_offset_reset="none") as strict:
        strict.assign([(topic, 0)])
        strict.seek((topic, 0), 1000)
        with pytest.raises(OffsetOutOfRangeError) as caught:
            take(strict, 1)
        assert caught.value.metadata["high_watermark"] == "3"
    with pytest.raises(TopicNotFoundError), Consumer(broker.address, topics=["sdkc-missing"]):
        pass


def test_reconnects_without_gaps_or_duplicates(broker: BrokerProcess) -> None:
    topic = new_topic(broker.address)
    proxy = TcpProxy(broker.address).start()
    try:
        with Consumer(
            proxy.address, topics=[topic], auto_offset_reset="earliest", retry_backoff_ms=10, max_bytes=4096
        ) as consumer:
            got: list[Message] = []
            for round_ in range(5):
                produce(broker.address, topic, range(round_ * 2000, (round_ + 1) * 2000))
                # Up to mid-way through the round's records, no further: the cut lands before the round's end.
                got += take_exactly(consumer, round_ * 2000 + 500 - len(got))
                cut_and_await_reconnect(proxy)
            wait_for(lambda: gather(got, consumer.poll(0.2)) >= 10_000, 30, what="every record")
            got += consumer.poll(0.3)
        assert [int(m.value) for m in got] == list(range(10_000))
        assert proxy.connections > 5
    finally:
        proxy.close()


def test_consumer_rides_out_a_broker_restart(own_broker: BrokerProcess) -> None:
    own_broker.start()
    topic = new_topic(own_broker.address)
    produce(own_broker.address, topic, range(100))
    with Consumer(own_broker.address, topics=[topic], auto_offset_reset="earliest", retry_backoff_ms=20) as consumer:
        assert len(take(consumer, 100)) == 100
        own_broker.kill()
        own_broker.start()
        produce(own_broker.address, topic, range(100, 200))
        assert [int(m.value) for m in take(consumer, 100)] == list(range(100, 200))


def test_async_consumer_iterates_and_seeks(broker: BrokerProcess) -> None:
    topic = new_topic(broker.address)
    produce(broker.address, topic, range(50))

    async def scenario() -> list[int]:
        async with AsyncConsumer(broker.address, topics=[topic]) as consumer:
            assert await consumer.position((topic, 0)) == 50
            consumer.seek_to_beginning()
            out: list[int] = []
            async with asyncio.timeout(20):
                async for message in consumer:
                    out.append(int(message.value))
                    if len(out) == 50:
                        break
            return out

    assert asyncio.run(scenario()) == list(range(50))


def test_poll_batches_hands_out_stored_batches_and_moves_positions(broker: BrokerProcess) -> None:
    topic = new_topic(broker.address)
    produce(broker.address, topic, range(1000))
    tp = TopicPartition(topic, 0)
    with Consumer(broker.address, topics=[topic], auto_offset_reset="earliest") as consumer:
        consumer.seek(tp, 10)
        got: list[int] = []
        first = None
        while len(got) < 990:
            batches = consumer.poll_batches(5, max_records=300)
            assert sum(len(b) for b in batches) <= 300
            for batch in batches:
                assert batch.base_offset == 10 + len(got)
                got += [int(v) for v in batch.values]
                first = first or batch
            assert consumer.position(tp) == 10 + len(got)
        assert got == list(range(10, 1000))
        assert first is not None and [m.offset for m in first][:2] == [10, 11] and first.keys[0] == b""
        produce(broker.address, topic, range(1000, 1002))
        assert [int(m.value) for m in take(consumer, 2)] == [1000, 1001]  # records after batches, as usual


def test_a_consumer_of_thousands_of_partitions_reads_every_record_once_across_a_broker_kill(
    own_broker: BrokerProcess,
) -> None:
    # Thousands of Subscribe streams open in one burst, at the start and again when the broker is back;
    # the server's transport once cancelled part of such a burst, and the consumer dropped those partitions.
    partitions = 3000
    own_broker.start()
    topic = new_topic(own_broker.address, partitions=partitions)

    def produce_round(value: bytes) -> None:
        with Producer(own_broker.address) as producer:
            for p in range(partitions):
                producer.send(topic, value, partition=p)
            producer.flush()

    seen: dict[tuple[int, int], int] = {}

    def read_until(total: int, consumer: Consumer) -> None:
        def progress() -> bool:
            for message in consumer.poll(0.2):
                key = (message.partition, message.offset)
                seen[key] = seen.get(key, 0) + 1
            return len(seen) >= total

        wait_for(progress, 180, what=f"{total} distinct records (have {len(seen)})")

    produce_round(b"a")
    produce_round(b"b")
    with Consumer(own_broker.address, topics=[topic], auto_offset_reset="earliest") as consumer:
        read_until(2 * partitions, consumer)
        own_broker.kill()
        own_broker.start()
        produce_round(b"c")
        read_until(3 * partitions, consumer)
        assert not consumer.poll(0.5)  # nothing more, and nothing twice
    assert sorted(seen) == [(p, o) for p in range(partitions) for o in range(3)]
    assert set(seen.values()) == {1}
