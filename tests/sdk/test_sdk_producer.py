"""The SDK producer against the real broker: round trips, retries, idempotence, the bounded buffer."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from tests import harness
from tests.harness import BrokerProcess, gather, wait_for
from tests.proxy import TcpProxy
from tidelog import AdminClient, AsyncConsumer, AsyncProducer, Consumer, Producer, RecordFuture, serde
from tidelog.errors import BufferFullError, DeliveryTimeoutError, RecordTooLargeError
from tidelog.types import Message


def new_topic(address: str, partitions: int = 1, configs: dict[str, str] | None = None) -> str:
    return harness.new_topic(address, partitions, "sdkp", configs)


def high_watermarks(address: str, topic: str) -> int:
    with AdminClient(address) as admin:
        return sum(p.high_watermark for p in admin.describe_topic(topic).partitions)


def read_all(address: str, topic: str, count: int, timeout: float = 60.0) -> list[Message]:
    with Consumer(address, topics=[topic], auto_offset_reset="earliest", max_bytes=4 << 20) as consumer:
        out: list[Message] = []
        wait_for(lambda: gather(out, consumer.poll(0.5)) >= count, timeout, what=f"{count} records")
        return out


@pytest.fixture
def proxy(broker: BrokerProcess) -> Iterator[TcpProxy]:
    p = TcpProxy(broker.address).start()
    yield p
    p.close()


def test_100k_records_round_trip_in_order_with_keys_headers_timestamps(broker: BrokerProcess) -> None:
    topic = new_topic(broker.address, partitions=4)
    n = 100_000
    with Producer(broker.address) as producer:
        futures = [
            producer.send(
                topic,
                f"v{i}".encode(),
                key=f"k{i % 97}".encode() if i % 3 else None,
                headers=[("i", str(i).encode())] if i % 5 == 0 else None,
                timestamp_ms=1_700_000_000_000 + i,
            )
            for i in range(n)
        ]
        producer.flush()
    metadata = [f.result(0) for f in futures]
    messages = read_all(broker.address, topic, n)
    assert len(messages) == n
    by_partition: dict[int, list[Message]] = {}
    for m in messages:
        by_partition.setdefault(m.partition, []).append(m)
    for partition, got in by_partition.items():
        assert [m.offset for m in got] == list(range(len(got)))
        sent_here = [i for i, md in enumerate(metadata) if md.partition == partition]
        assert [m.value for m in got] == [f"v{i}".encode() for i in sent_here]  # send order kept per partition
        for m, i in zip(got, sent_here, strict=True):
            assert m.key == (f"k{i % 97}".encode() if i % 3 else None)
            assert m.headers == ([("i", str(i).encode())] if i % 5 == 0 else [])
            assert m.timestamp_ms == 1_700_000_000_000 + i
    assert len(by_partition) == 4


@pytest.mark.parametrize("idempotent", [True, False], ids=["idempotent", "not-idempotent"])
def test_lost_acknowledgements_are_retried_and_written_once(
    broker: BrokerProcess, proxy: TcpProxy, idempotent: bool
) -> None:
    """The broker writes batches whose answers the proxy swallows; the producer resends them on a new
    connection. With idempotence each is written once and in order; without, duplicates show (so this
    test can fail)."""
    topic = new_topic(broker.address, partitions=2)
    sent = 0
    futures = []
    with Producer(
        proxy.address, enable_idempotence=idempotent, linger_ms=1, retry_backoff_ms=10, retry_backoff_max_ms=50
    ) as producer:
        for _ in range(4):
            for _ in range(1000):
                futures.append(producer.send(topic, str(sent).encode(), partition=sent % 2))
                sent += 1
            producer.flush()
            before = high_watermarks(broker.address, topic)
            proxy.swallow_answers()
            for _ in range(3000):
                futures.append(producer.send(topic, str(sent).encode(), partition=sent % 2))
                sent += 1
            wait_for(
                lambda before=before: high_watermarks(broker.address, topic) > before,  # type: ignore[misc]
                what="writes with lost answers",
            )
            proxy.cut()
        producer.flush()
    assert [f.exception(0) for f in futures if f.exception(0)] == []
    written = high_watermarks(broker.address, topic)
    if not idempotent:
        assert written > sent
        return
    assert written == sent
    messages = read_all(broker.address, topic, sent)
    for partition in (0, 1):
        values = [int(m.value) for m in messages if m.partition == partition]
        assert values == list(range(partition, sent, 2))
    assert proxy.connections > 4


def test_producer_rides_out_broker_crashes(own_broker: BrokerProcess) -> None:
    """kill -9 while records are in flight, restart on the same port: every record lands exactly once."""
    own_broker.start()
    topic = new_topic(own_broker.address, partitions=3)
    sent = 0
    futures = []
    restarts_done = threading.Event()
    # A small buffer keeps what is in flight, and so what is sent while the broker is down, small.
    with Producer(own_broker.address, retry_backoff_ms=20, retry_backoff_max_ms=200, buffer_bytes=1 << 20) as producer:

        def produce() -> None:
            nonlocal sent
            while not restarts_done.is_set() and sent < 1_000_000:  # a bound, should the kills never happen
                futures.append(producer.send(topic, str(sent).encode(), partition=sent % 3))
                sent += 1

        sender = threading.Thread(target=produce)
        sender.start()
        try:
            for _ in range(3):
                start = high_watermarks(own_broker.address, topic)
                wait_for(
                    lambda: start < high_watermarks(own_broker.address, topic) < sent,  # noqa: B023 - called at once
                    what="records in flight: some of this round written, more sent",
                )
                own_broker.kill()
                own_broker.start()
        finally:
            restarts_done.set()
            sender.join()
        producer.flush()
    assert [f.exception(0) for f in futures if f.exception(0)] == []
    messages = read_all(own_broker.address, topic, sent)
    assert len(messages) == sent == high_watermarks(own_broker.address, topic)
    for partition in range(3):
        assert [int(m.value) for m in messages if m.partition == partition] == list(range(partition, sent, 3))


def test_send_blocks_while_the_buffer_is_full_and_resumes(broker: BrokerProcess, proxy: TcpProxy) -> None:
    topic = new_topic(broker.address)
    record = b"x" * 1000
    with Producer(proxy.address, buffer_bytes=64 << 10, batch_bytes=8 << 10, linger_ms=1) as producer:
        producer.send(topic, b"warm-up").result(10)
        proxy.swallow_answers()
        futures: list[RecordFuture] = []
        sender = threading.Thread(target=lambda: futures.extend(producer.send(topic, record) for _ in range(200)))
        sender.start()

        def buffer_full() -> bool:
            metrics = producer.metrics()
            return metrics["buffered_bytes"] + len(record) + 16 > metrics["buffer_bytes"]

        wait_for(buffer_full, what="the buffer to fill")
        assert sender.is_alive()  # blocked in send(), not growing memory
        assert producer.metrics()["buffered_bytes"] <= 64 << 10
        proxy.cut()  # answers flow again on the new connection
        sender.join(30)
        assert not sender.is_alive()
        producer.flush()
        assert len({f.result(0).offset for f in futures}) == 200


def test_send_raises_after_max_block_ms(broker: BrokerProcess, proxy: TcpProxy) -> None:
    topic = new_topic(broker.address)
    with Producer(proxy.address, buffer_bytes=32 << 10, max_block_ms=100) as producer:
        producer.send(topic, b"warm-up").result(10)
        proxy.swallow_answers()
        with pytest.raises(BufferFullError, match="buffer_bytes"):
            for _ in range(1000):
                producer.send(topic, b"x" * 1000)
        with pytest.raises(RecordTooLargeError, match="buffer_bytes"):
            producer.send(topic, b"x" * (64 << 10))
        proxy.cut()


def test_unanswered_records_fail_after_delivery_timeout(broker: BrokerProcess, proxy: TcpProxy) -> None:
    topic = new_topic(broker.address)
    with Producer(
        proxy.address, delivery_timeout_ms=500, request_timeout_ms=200, retry_backoff_ms=20, retry_backoff_max_ms=50
    ) as producer:
        producer.send(topic, b"warm-up").result(10)
        proxy.swallow_answers(new_connections=True)
        future = producer.send(topic, b"lost in the network")
        with pytest.raises(DeliveryTimeoutError, match="delivery_timeout_ms"):
            future.result(30)
        proxy.cut()
        # The producer starts afresh (a new producer id) and delivers what comes next.
        assert producer.send(topic, b"after").result(30).offset >= 1


def test_serializers_and_header_forms(broker: BrokerProcess) -> None:
    topic = new_topic(broker.address)
    with Producer(broker.address, key_serializer=serde.str_serializer, value_serializer=serde.json_serializer) as p:
        p.send(topic, {"n": 1, "tags": ["a"]}, key="user-1", headers={"source": "test", "raw": b"\x00"})
        p.send(topic, None, key="user-1")  # a tombstone skips the serializer
        p.flush()
    with pytest.raises(TypeError, match="serializer"), Producer(broker.address) as plain:
        plain.send(topic, "a str without a serializer")
    with Consumer(
        broker.address,
        topics=[topic],
        auto_offset_reset="earliest",
        key_deserializer=serde.str_deserializer,
        value_deserializer=serde.json_deserializer,
    ) as consumer:
        got: list[Message] = []
        wait_for(lambda: gather(got, consumer.poll(0.5)) >= 2, what="2 records")
    assert (got[0].key, got[0].value, got[0].headers) == (
        "user-1",
        {"n": 1, "tags": ["a"]},
        [
            ("source", b"test"),
            ("raw", b"\x00"),
        ],
    )
    assert got[0].raw_value == b'{"n":1,"tags":["a"]}'
    assert (got[1].key, got[1].value) == ("user-1", None)


def test_async_producer_with_delivery_callbacks(broker: BrokerProcess) -> None:
    topic = new_topic(broker.address, partitions=2)

    async def scenario() -> tuple[list[int], list[Message]]:
        delivered: list[int] = []
        async with AsyncProducer(broker.address, value_serializer=serde.str_serializer) as producer:
            futures = [
                await producer.send(topic, f"{i}", partition=i % 2, on_delivery=lambda f: delivered.append(1))
                for i in range(1000)
            ]
            offsets = [(await f).offset for f in futures]
        async with AsyncConsumer(broker.address, topics=[topic], auto_offset_reset="earliest") as consumer:
            got: list[Message] = []
            async with asyncio.timeout(20):
                while len(got) < 1000:
                    got += await consumer.getmany(1.0)
        assert len(delivered) == 1000
        return offsets, got

    offsets, got = asyncio.run(scenario())
    assert offsets[:4] == [0, 0, 1, 1]
    assert sorted(int(m.value) for m in got) == list(range(1000))


def test_a_refused_batch_fails_alone_and_the_pipeline_behind_it_is_resent_in_order(broker: BrokerProcess) -> None:
    """Batches pipelined behind a refused one come back OUT_OF_ORDER_SEQUENCE; the producer re-sequences
    and resends them, so only the refused batch fails and the partition has no gap or reordering."""
    topic = new_topic(broker.address, configs={"max.message.bytes": "2000"})
    values = [str(i).encode() for i in range(3000)]
    values[1500] = b"x" * 3000
    with Producer(broker.address, batch_bytes=2048, linger_ms=0) as producer:
        futures = [producer.send(topic, v) for v in values]
        producer.flush()
    failed = [i for i, f in enumerate(futures) if f.exception(0) is not None]
    assert 1500 in failed and len(failed) < 500  # one batch of at most batch_bytes (2048) of small records
    assert all(isinstance(futures[i].exception(0), RecordTooLargeError) for i in failed)
    assert failed == list(range(failed[0], failed[-1] + 1))  # one batch: contiguous
    delivered = [v for i, v in enumerate(values) if i not in failed]
    got = read_all(broker.address, topic, len(delivered))
    assert [m.value for m in got] == delivered
    assert [f.result(0).offset for i, f in enumerate(futures) if i not in failed] == list(range(len(delivered)))


def test_a_raising_delivery_callback_harms_nothing_else(broker: BrokerProcess) -> None:
    topic = new_topic(broker.address)
    called: list[int] = []

    def bad_callback(future: object) -> None:
        called.append(1)
        raise RuntimeError("a bug in user code")

    with Producer(broker.address, linger_ms=50) as producer:
        producer.send(topic, b"warm-up").result(10)
        futures = [producer.send(topic, b"x", on_delivery=bad_callback) for _ in range(5)]
        producer.flush()
        assert len(called) == 5
        assert [f.result(0).offset for f in futures] == [1, 2, 3, 4, 5]
        stamped = producer.send(topic, b"append time", timestamp_ms=0).result(10)
        assert stamped.timestamp_ms > 0  # the broker's append time, as stored
        assert repr(futures[0]) == f"<RecordFuture {topic}/0@1>"


def test_send_many_keeps_order_and_fills_batches(broker: BrokerProcess) -> None:
    topic = new_topic(broker.address, partitions=2)
    values = [str(i).encode() for i in range(20_000)]
    with Producer(broker.address, batch_bytes=4096) as producer:
        futures = producer.send_many(topic, values, partition=1)
        assert len(producer.send_many(topic, [])) == 0
        producer.flush()
    assert len(futures) == 20_000 and futures.done()
    assert [m.offset for m in futures.result(0)] == list(range(20_000))
    assert [f.result(0).offset for f in futures[::-997]] == list(range(19_999, -1, -997))
    assert futures[-1].result(0).offset == 19_999 and {m.partition for m in futures.result(0)} == {1}
    assert [m.value for m in read_all(broker.address, topic, 20_000)] == values
    with Producer(broker.address, value_serializer=serde.str_serializer) as producer:
        mixed = producer.send_many(topic, ["a" * 300, "b"], partition=0)  # long values take the general encoding
        tomb = producer.send_many(topic, [None], partition=0)
        assert [f.result(10).offset for f in [*mixed, *tomb]] == [0, 1, 2]
    with pytest.raises(TypeError, match="serializer"), Producer(broker.address) as plain:
        plain.send_many(topic, ["not bytes"])


def test_async_send_many(broker: BrokerProcess) -> None:
    topic = new_topic(broker.address)

    async def scenario() -> list[int]:
        async with AsyncProducer(broker.address) as producer:
            futures = await producer.send_many(topic, [b"a", b"b", b"c"])
            return [(await f).offset for f in futures] + [m.offset for m in await futures]

    assert asyncio.run(scenario()) == [0, 1, 2, 0, 1, 2]
