"""Idempotent Kafka producers (confluent-kafka, kafka-python, aiokafka) whose answers are lost, and
across a broker killed with SIGKILL: every record lands exactly once, and each key's records keep
their order. The clients reach the broker through a proxy (tests/proxy.py) that Metadata advertises,
so the test can drop the broker's answers while its requests still arrive, and cut connections."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import BrokerProcess, gather, new_topic, wait_for
from tests.proxy import TcpProxy
from tidelog import AdminClient, Consumer

PARTITIONS = 3
KEYS = 6


class Setup:
    def __init__(self, broker: BrokerProcess, proxy: TcpProxy) -> None:
        self.broker = broker
        self.proxy = proxy
        self.topic = new_topic(broker.address, partitions=PARTITIONS)

    def stored(self) -> int:
        """Records the broker holds in the topic (it answers over gRPC, not through the proxy)."""
        with AdminClient(self.broker.address) as admin:
            return sum(p.high_watermark for p in admin.describe_topic(self.topic).partitions)

    def point_proxy_at_the_broker(self) -> None:
        self.proxy.upstream = last_kafka_address(self.broker)

    def check_exactly_once(self, sent: int) -> None:
        """Every value 0..sent-1 once, and each key's values in the order they were sent."""
        got: list[Any] = []
        with Consumer(self.broker.address) as consumer:
            consumer.assign([(self.topic, p) for p in range(PARTITIONS)])
            consumer.seek_to_beginning(*[(self.topic, p) for p in range(PARTITIONS)])
            wait_for(lambda: gather(got, consumer.poll(0.2)) >= sent, 60, what=f"{sent} records")
        values = [int(m.raw_value) for m in got]
        assert sorted(values) == list(range(sent)), f"{len(values)} records for {sent} sent"
        by_key: dict[bytes, list[int]] = {}
        for message in got:
            by_key.setdefault(message.raw_key, []).append(int(message.raw_value))
        assert all(v == sorted(v) for v in by_key.values()), "a key's records out of order"


def last_kafka_address(broker: BrokerProcess) -> str:
    """The Kafka listener's address of the broker's latest start (its log keeps every start's)."""

    def found() -> str | None:
        lines = [json.loads(line) for line in broker.log().splitlines() if '"kafka_serving"' in line]
        return str(lines[-1]["listen"]) if lines else None

    address = wait_for(found, 30, what="the kafka_serving log line")
    assert address is not None
    return address


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    proxy = TcpProxy().start()
    broker = BrokerProcess(tmp_path / "data", "--kafka-listen", "127.0.0.1:0", "--kafka-advertise", proxy.address)
    broker.start()
    try:
        ready = Setup(broker, proxy)
        ready.point_proxy_at_the_broker()
        yield ready
    finally:
        broker.stop()
        proxy.close()


class Sender:
    """A producer client driven from the test: `send(n)` sends the next n values, `acked()` counts the
    deliveries, `finish()` waits for every delivery and closes."""

    send: Callable[[int], None]
    acked: Callable[[], int]
    finish: Callable[[], None]
    sent = 0


def librdkafka_sender(address: str, topic: str) -> Sender:
    import confluent_kafka

    producer = confluent_kafka.Producer(
        {"bootstrap.servers": address, "enable.idempotence": True, "linger.ms": 2, "message.timeout.ms": 120_000}
    )
    sender = Sender()
    acks: list[Any] = []
    failures: list[Any] = []

    def delivered(error: Any, message: Any) -> None:
        (failures if error else acks).append(error or message)

    def send(n: int) -> None:
        for _ in range(n):
            producer.produce(topic, key=b"k%d" % (sender.sent % KEYS), value=b"%d" % sender.sent, on_delivery=delivered)
            sender.sent += 1
        producer.poll(0)

    def acked() -> int:
        producer.poll(0)
        return len(acks)

    def finish() -> None:
        assert producer.flush(120) == 0, "deliveries still pending"
        assert failures == []

    sender.send, sender.acked, sender.finish = send, acked, finish
    return sender


def kafka_python_sender(address: str, topic: str) -> Sender:
    import kafka

    producer = kafka.KafkaProducer(bootstrap_servers=address, enable_idempotence=True, linger_ms=2)
    sender = Sender()
    futures: list[Any] = []

    def send(n: int) -> None:
        for _ in range(n):
            futures.append(producer.send(topic, key=b"k%d" % (sender.sent % KEYS), value=b"%d" % sender.sent))
            sender.sent += 1

    def finish() -> None:
        producer.flush(120)
        assert all(f.succeeded() for f in futures), [f.exception for f in futures if f.failed()][:3]
        producer.close()

    sender.send, sender.acked, sender.finish = send, lambda: sum(f.is_done for f in futures), finish
    return sender


def aiokafka_sender(address: str, topic: str) -> Sender:
    """aiokafka on a loop of its own in a thread, driven from the test's thread."""
    import aiokafka

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def run(coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(120)

    async def make() -> Any:
        producer = aiokafka.AIOKafkaProducer(bootstrap_servers=address, enable_idempotence=True, linger_ms=2)
        await producer.start()
        return producer

    producer = run(make())
    sender = Sender()
    futures: list[Any] = []

    async def send_some(n: int) -> None:
        for _ in range(n):
            key, value = b"k%d" % (sender.sent % KEYS), b"%d" % sender.sent
            futures.append(await producer.send(topic, value, key=key))
            sender.sent += 1

    async def finish_all() -> None:
        await producer.flush()
        results = await asyncio.gather(*futures, return_exceptions=True)
        await producer.stop()
        assert not [r for r in results if isinstance(r, BaseException)]

    def finish() -> None:
        try:
            run(finish_all())
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)

    sender.send = lambda n: run(send_some(n))
    sender.acked = lambda: sum(f.done() for f in futures)
    sender.finish = finish
    return sender


SENDERS = {"confluent-kafka": librdkafka_sender, "kafka-python": kafka_python_sender, "aiokafka": aiokafka_sender}


@pytest.mark.parametrize("client", SENDERS)
def test_lost_answers_are_retried_into_exactly_once(setup: Setup, client: str) -> None:
    sender = SENDERS[client](setup.proxy.address, setup.topic)
    sender.send(50)
    wait_for(lambda: sender.acked() >= 50, 60, what="the first 50 deliveries")
    setup.proxy.swallow_answers()  # requests still arrive and are written; their answers are lost

    def written_but_not_answered() -> bool:
        sender.send(5)
        acked = sender.acked()
        return setup.stored() > acked

    wait_for(written_but_not_answered, 60, what="records stored whose answers were lost")
    setup.proxy.cut()  # the client reconnects and sends its unanswered batches again
    sender.send(50)
    sender.finish()
    setup.check_exactly_once(sender.sent)


def test_an_idempotent_producer_across_a_broker_killed(setup: Setup) -> None:
    sender = librdkafka_sender(setup.proxy.address, setup.topic)
    sender.send(100)
    wait_for(lambda: sender.acked() >= 100, 60, what="the first 100 deliveries")

    setup.proxy.swallow_answers()  # so that the kill finds records stored and not answered

    def written_but_not_answered() -> bool:
        sender.send(20)
        acked = sender.acked()
        return setup.stored() > acked

    wait_for(written_but_not_answered, 60, what="records stored whose answers were lost")
    setup.broker.kill()
    sender.send(50)  # queued while the broker is down
    setup.broker.start()
    setup.point_proxy_at_the_broker()
    sender.finish()
    setup.check_exactly_once(sender.sent)
