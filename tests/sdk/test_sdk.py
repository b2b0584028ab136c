"""The minimal SDK against the real broker: AdminClient, Producer, Consumer and their async twins."""

from __future__ import annotations

import asyncio

import pytest

from tests.harness import BrokerProcess
from tidelog import AdminClient, AsyncAdminClient, AsyncConsumer, AsyncProducer, Consumer, Producer, RecordFuture
from tidelog.common.partitioner import partition_for_key
from tidelog.common.reasons import Reason
from tidelog.errors import (
    InvalidNameError,
    PartitionOutOfRangeError,
    TopicExistsError,
    TopicNotFoundError,
)


def collect(consumer: Consumer, count: int, timeout: float = 20.0) -> list:  # type: ignore[type-arg]
    import time

    deadline = time.monotonic() + timeout
    out: list = []  # type: ignore[type-arg]
    while len(out) < count and time.monotonic() < deadline:
        out += consumer.poll(0.5)
    return out


def test_admin_client(broker: BrokerProcess) -> None:
    with AdminClient(broker.address) as admin:
        info = admin.create_topic("sdk-admin", partitions=3, configs={"retention.ms": "1000"})
        assert (info.name, info.partitions, info.configs["retention.ms"]) == ("sdk-admin", 3, "1000")
        with pytest.raises(TopicExistsError):
            admin.create_topic("sdk-admin")
        with pytest.raises(InvalidNameError) as caught:
            admin.create_topic("no spaces")
        assert caught.value.reason == Reason.INVALID_NAME and "no spaces" in caught.value.message
        assert "sdk-admin" in [t.name for t in admin.list_topics()]
        description = admin.describe_topic("sdk-admin")
        assert [p.partition for p in description.partitions] == [0, 1, 2]
        assert admin.alter_topic_configs("sdk-admin", {"retention.ms": "-1"}).configs["retention.ms"] == "-1"
        assert admin.partitions_for("sdk-admin") == 3
        admin.delete_topic("sdk-admin")
        with pytest.raises(TopicNotFoundError):
            admin.describe_topic("sdk-admin")


def test_producer_and_consumer_round_trip(broker: BrokerProcess) -> None:
    with AdminClient(broker.address) as admin:
        admin.create_topic("sdk-round-trip", partitions=3)
    with Consumer(broker.address, topics=["sdk-round-trip"], auto_offset_reset="earliest") as consumer:
        delivered: list[RecordFuture] = []
        with Producer(broker.address) as producer:
            futures = [
                producer.send(
                    "sdk-round-trip",
                    f"v{i}".encode(),
                    key=f"k{i % 7}".encode(),
                    headers=[("n", str(i).encode())],
                    on_delivery=delivered.append,
                )
                for i in range(500)
            ]
            producer.flush()
            metadata = [f.result(10) for f in futures]
        assert len(delivered) == 500
        for i, meta in enumerate(metadata):
            assert meta.partition == partition_for_key(f"k{i % 7}".encode(), 3)
            assert meta.timestamp_ms > 0
        messages = collect(consumer, 500)
    assert len(messages) == 500
    by_value = {m.value: m for m in messages}
    for i, meta in enumerate(metadata):
        message = by_value[f"v{i}".encode()]
        assert (message.partition, message.offset) == (meta.partition, meta.offset)
        assert message.key == f"k{i % 7}".encode() and message.headers == [("n", str(i).encode())]
    for partition in range(3):
        offsets = [m.offset for m in messages if m.partition == partition]
        assert offsets == list(range(len(offsets)))  # in order, no gaps, no duplicates


def test_consumer_latest_by_default_and_seek(broker: BrokerProcess) -> None:
    with AdminClient(broker.address) as admin:
        admin.create_topic("sdk-latest")
    with Producer(broker.address) as producer:
        producer.send("sdk-latest", b"before").result(10)
        with Consumer(broker.address, topics=["sdk-latest"]) as consumer:
            assert consumer.position(("sdk-latest", 0)) == 1  # "latest" is resolved before "after" is written
            producer.send("sdk-latest", b"after").result(10)
            assert [m.value for m in collect(consumer, 1)] == [b"after"]
            consumer.seek(("sdk-latest", 0), 0)
            assert [m.value for m in collect(consumer, 2)] == [b"before", b"after"]
            assert consumer.position(("sdk-latest", 0)) == 2


def test_producer_errors_are_typed(broker: BrokerProcess) -> None:
    with AdminClient(broker.address) as admin:
        admin.create_topic("sdk-errors")
    with Producer(broker.address) as producer:
        with pytest.raises(TopicNotFoundError):
            producer.send("sdk-missing", b"x")
        with pytest.raises(PartitionOutOfRangeError):  # checked in the client, before anything is queued
            producer.send("sdk-errors", b"x", partition=5)
        assert producer.send("sdk-errors", b"fine").result(10).offset == 0


def test_async_twins(broker: BrokerProcess) -> None:
    async def scenario() -> list[bytes]:
        async with AsyncAdminClient(broker.address) as admin:
            await admin.create_topic("sdk-async", partitions=2)
        async with AsyncConsumer(broker.address, topics=["sdk-async"], auto_offset_reset="earliest") as consumer:
            async with AsyncProducer(broker.address) as producer:
                futures = [await producer.send("sdk-async", f"{i}".encode(), partition=i % 2) for i in range(100)]
                metadata = [await f for f in futures]
                assert [m.offset for m in metadata[:4]] == [0, 0, 1, 1]
            got: list[bytes] = []
            async with asyncio.timeout(20):
                async for message in consumer:
                    got.append(message.value or b"")
                    if len(got) == 100:
                        break
            return got

    got = asyncio.run(scenario())
    assert sorted(got, key=int) == [f"{i}".encode() for i in range(100)]
