"""What each Kafka client negotiates: a session of produce (idempotent), a group read and a commit per
client, and the API versions it used, read from the broker's `tidelog_kafka_requests` counters. Each
stays inside what ApiVersions advertises, and each client goes through the APIs a real session needs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest

from tests.broker.test_metrics import free_port, scrape
from tests.harness import BrokerProcess, logged, new_topic
from tidelog.broker.kafka import messages

SESSION_APIS = {"ApiVersions", "Metadata", "Produce", "InitProducerId", "Fetch", "FindCoordinator",
                "JoinGroup", "SyncGroup", "OffsetCommit", "OffsetFetch"}  # fmt: skip
ADVERTISED = {request.name.removesuffix("Request"): request.valid for request, _ in messages.APIS.values()}


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BrokerProcess, str, str]]:
    metrics = f"127.0.0.1:{free_port()}"
    process = BrokerProcess(
        tmp_path_factory.mktemp("negotiation") / "data", "--kafka-listen", "127.0.0.1:0", "--metrics-listen", metrics
    ).start()
    try:
        yield process, logged(process, "kafka_serving", "listen"), metrics
    finally:
        process.stop()


def used(metrics: str) -> dict[tuple[str, int], float]:
    return {
        (dict(labels)["api"], int(dict(labels)["version"])): value
        for (name, labels), value in scrape(metrics).items()
        if name == "tidelog_kafka_requests_total"
    }


def confluent_session(address: str, topic: str) -> None:
    import confluent_kafka

    producer = confluent_kafka.Producer({"bootstrap.servers": address, "enable.idempotence": True})
    producer.produce(topic, b"v")
    assert producer.flush(30) == 0
    consumer = confluent_kafka.Consumer(
        {"bootstrap.servers": address, "group.id": f"cf-{topic}", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    message = None
    while message is None or message.error() is not None:
        message = consumer.poll(30)
    consumer.commit(message=message, asynchronous=False)
    consumer.committed(consumer.assignment(), timeout=30)
    consumer.close()


def kafka_python_session(address: str, topic: str) -> None:
    import kafka

    producer = kafka.KafkaProducer(bootstrap_servers=address, enable_idempotence=True)
    producer.send(topic, b"v").get(30)
    producer.close()
    consumer = kafka.KafkaConsumer(
        topic, bootstrap_servers=address, group_id=f"kp-{topic}", auto_offset_reset="earliest",
        enable_auto_commit=False, consumer_timeout_ms=30_000,
    )  # fmt: skip
    next(iter(consumer))
    consumer.commit()
    consumer.close()


def aiokafka_session(address: str, topic: str) -> None:
    import aiokafka

    async def session() -> None:
        producer = aiokafka.AIOKafkaProducer(bootstrap_servers=address, enable_idempotence=True)
        await producer.start()
        await producer.send_and_wait(topic, b"v")
        await producer.stop()
        consumer = aiokafka.AIOKafkaConsumer(
            topic, bootstrap_servers=address, group_id=f"ak-{topic}", auto_offset_reset="earliest",
            enable_auto_commit=False,
        )  # fmt: skip
        await consumer.start()
        try:
            await consumer.getone()
            await consumer.commit()
        finally:
            await consumer.stop()

    asyncio.run(session())


SESSIONS: dict[str, Callable[[str, str], None]] = {
    "confluent-kafka": confluent_session,
    "kafka-python": kafka_python_session,
    "aiokafka": aiokafka_session,
}


@pytest.mark.parametrize("client", SESSIONS)
def test_each_client_negotiates_inside_what_is_advertised(broker: tuple[BrokerProcess, str, str], client: str) -> None:
    process, address, metrics = broker
    before = used(metrics)
    SESSIONS[client](address, new_topic(process.address))
    after = used(metrics)
    negotiated = {key for key, count in after.items() if count > before.get(key, 0)}
    for api, version in negotiated:
        low, high = ADVERTISED[api]
        assert low <= version <= high, f"{client} used {api} v{version}, outside {low}-{high}"
    apis = {api for api, _ in negotiated}
    assert apis >= SESSION_APIS, f"{client} did not use {sorted(SESSION_APIS - apis)}"
    print(client, sorted(negotiated))  # the snapshot docs/kafka.md records
