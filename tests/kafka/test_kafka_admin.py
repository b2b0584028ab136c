"""Kafka's admin APIs through the Kafka listener, from confluent-kafka's and kafka-python's admin
clients: topics created (and refused with Kafka's errors), configs described, topics deleted, groups of
both protocols listed and described."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import BrokerProcess, gather, logged, new_topic, wait_for
from tests.kafka import raw
from tidelog import AdminClient, Consumer
from tidelog.broker.kafka import messages


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BrokerProcess, str]]:
    root = tmp_path_factory.mktemp("kafka-admin")
    process = BrokerProcess(root / "data", "--kafka-listen", "127.0.0.1:0").start()
    try:
        yield process, logged(process, "kafka_serving", "listen")
    finally:
        process.stop()


def outcomes(futures: dict[str, Any]) -> dict[str, int]:
    """Each future's Kafka error code (0 for success)."""
    found = {}
    for name, future in futures.items():
        try:
            future.result(30)
            found[name] = 0
        except Exception as err:  # confluent_kafka.KafkaException, carrying a KafkaError
            found[name] = err.args[0].code()
    return found


def test_topics_are_created_described_and_deleted(broker: tuple[BrokerProcess, str]) -> None:
    from confluent_kafka.admin import AdminClient as KafkaAdmin
    from confluent_kafka.admin._config import ConfigResource
    from confluent_kafka.admin._resource import ResourceType
    from confluent_kafka.cimpl import NewTopic

    process, address = broker
    admin = KafkaAdmin({"bootstrap.servers": address})
    created = outcomes(
        admin.create_topics(
            [
                NewTopic("made", 3, 1, config={"retention.ms": "60000", "cleanup.policy": "compact"}),
                NewTopic("bad name!", 1, 1),
                NewTopic("three-copies", 1, 3),
                NewTopic("unknown-config", 1, 1, config={"segment.bytes": "1"}),
                NewTopic("too-many", 100_000, 1),
            ]
        )
    )
    assert created == {"made": 0, "bad name!": 17, "three-copies": 38, "unknown-config": 40, "too-many": 37}
    assert outcomes(admin.create_topics([NewTopic("made", 1, 1)])) == {"made": 36}  # TOPIC_ALREADY_EXISTS
    assert outcomes(admin.create_topics([NewTopic("checked", 1, 1)], validate_only=True)) == {"checked": 0}
    with AdminClient(process.address) as sdk:
        described = sdk.describe_topic("made")
        assert len(described.partitions) == 3 and described.topic.configs["cleanup.policy"] == "compact"
        assert "checked" not in {t.name for t in sdk.list_topics()}  # validate_only created nothing

    (future,) = admin.describe_configs([ConfigResource(ResourceType.TOPIC, "made")]).values()
    configs = future.result(30)
    assert configs["retention.ms"].value == "60000" and not configs["retention.ms"].is_default
    assert configs["max.message.bytes"].is_default

    assert outcomes(admin.delete_topics(["made", "never-was"])) == {"made": 0, "never-was": 3}
    with AdminClient(process.address) as sdk:
        assert "made" not in {t.name for t in sdk.list_topics()}


def test_groups_of_both_protocols_are_listed_and_described(broker: tuple[BrokerProcess, str]) -> None:
    import kafka.admin
    from confluent_kafka import Consumer as KafkaConsumer
    from confluent_kafka.admin import AdminClient as KafkaAdmin

    process, address = broker
    topic = new_topic(process.address, partitions=2)
    kafka_member = KafkaConsumer({"bootstrap.servers": address, "group.id": f"k-{topic}", "client.id": "mine"})
    kafka_member.subscribe([topic])
    wait_for(lambda: kafka_member.poll(0.05) is None and len(kafka_member.assignment()) == 2, 60, what="an assignment")
    with Consumer(process.address, topics=[topic], group=f"t-{topic}") as sdk_member:
        wait_for(lambda: gather([], sdk_member.poll(0.05)) == 0 and bool(sdk_member.assignment()), 60, what="a member")
        admin = KafkaAdmin({"bootstrap.servers": address})
        listed = {g.group_id for g in admin.list_consumer_groups().result(30).valid}
        assert f"k-{topic}" in listed  # (librdkafka lists groups of the "consumer" protocol type only)
        described = admin.describe_consumer_groups([f"k-{topic}"])[f"k-{topic}"].result(30)
        assert described.state.name == "STABLE" and [m.client_id for m in described.members] == ["mine"]
        assert {tp.partition for tp in described.members[0].assignment.topic_partitions} == {0, 1}

        legacy = kafka.admin.KafkaAdminClient(bootstrap_servers=address)
        try:
            described_by_kafka_python = legacy.describe_groups([f"t-{topic}"])
            listed_by_kafka_python = legacy.list_groups()
        finally:
            legacy.close()
        tidelog_group = described_by_kafka_python[f"t-{topic}"]
        assert tidelog_group["protocol_type"] == "tidelog" and tidelog_group["group_state"] == "Stable"
        assert [m["client_host"] for m in tidelog_group["members"]] == ["127.0.0.1"]
        by_type = {g["group_id"]: g["protocol_type"] for g in listed_by_kafka_python}
        assert by_type[f"k-{topic}"] == "consumer" and by_type[f"t-{topic}"] == "tidelog"
    kafka_member.close()


def test_topics_are_created_on_first_use_only_when_the_broker_says_so(
    broker: tuple[BrokerProcess, str], tmp_path: Path
) -> None:
    import confluent_kafka

    _, address = broker

    def asked_for(bootstrap: str, name: str) -> int:
        body = {"topics": [{"name": name, "topic_id": None}], "allow_auto_topic_creation": True}
        answer = raw.call(bootstrap, messages.METADATA_REQUEST, messages.METADATA_RESPONSE, 9, body)
        return int(answer["topics"][0]["error_code"])

    assert asked_for(address, "made-by-use") == 3  # off by default: unknown, and not created
    assert asked_for(address, "made-by-use") == 3
    creating = BrokerProcess(tmp_path / "data", "--kafka-listen", "127.0.0.1:0", "--kafka-auto-create-topics")
    creating.start()
    try:
        kafka_address = logged(creating, "kafka_serving", "listen")
        assert asked_for(kafka_address, "made-by-use") == 0
        assert asked_for(kafka_address, "bad name!") == 17  # what cannot be created is answered as it is
        producer = confluent_kafka.Producer({"bootstrap.servers": kafka_address})
        outcomes: list[Any] = []
        producer.produce("also-by-use", b"v", on_delivery=lambda error, _: outcomes.append(error))
        producer.flush(30)
        assert outcomes == [None]
        with AdminClient(creating.address) as sdk:
            assert len(sdk.describe_topic("also-by-use").partitions) == 1
    finally:
        creating.stop()
