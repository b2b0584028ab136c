"""Kafka clients against a three-broker cluster (real etcd): Metadata names every broker's Kafka
address and each partition's leader, replicas and ISR; an idempotent acks=all producer loses nothing
and duplicates nothing across a leader's SIGKILL; a group finds its coordinator and reads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.conftest import own_cluster
from tests.harness import gather, logged, wait_for
from tidelog import AdminClient, Consumer
from tidelog.errors import TidelogError
from tidelog.testing import ClusterProcess


@pytest.fixture
def kafka_cluster(tmp_path: Path) -> Iterator[tuple[ClusterProcess, dict[int, str]]]:
    with own_cluster(tmp_path, "--retention-ms", "-1", "--kafka-listen", "127.0.0.1:0") as cluster:
        addresses = {b: logged(broker, "kafka_serving", "listen") for b, broker in cluster.brokers.items()}
        yield cluster, addresses


def leaders(cluster: ClusterProcess, topic: str, alive: int = 0) -> dict[int, int]:
    with AdminClient(cluster.addresses[alive]) as admin:
        return {p.partition: p.leader for p in admin.describe_topic(topic).partitions}


def test_metadata_names_the_brokers_and_leaders(kafka_cluster: tuple[ClusterProcess, dict[int, str]]) -> None:
    import confluent_kafka.admin

    cluster, addresses = kafka_cluster
    with AdminClient(cluster.addresses[0]) as admin:
        admin.create_topic("spread", partitions=3, replication_factor=3)
    expected = leaders(cluster, "spread")

    def metadata() -> Any:
        found = confluent_kafka.admin.AdminClient({"bootstrap.servers": addresses[1]}).list_topics(timeout=20)
        partitions = found.topics["spread"].partitions
        complete = len(partitions) == 3 and all(len(p.isrs) == 3 for p in partitions.values())
        return found if complete else None

    found = wait_for(metadata, 30, what="Metadata with every partition's ISR complete")
    assert {b.id: f"{b.host}:{b.port}" for b in found.brokers.values()} == addresses
    assert {p: found.topics["spread"].partitions[p].leader for p in range(3)} == expected
    assert found.controller_id in addresses
    assert all(sorted(p.replicas) == [0, 1, 2] for p in found.topics["spread"].partitions.values())


def test_acks_all_across_a_leader_killed(kafka_cluster: tuple[ClusterProcess, dict[int, str]]) -> None:
    import confluent_kafka

    cluster, addresses = kafka_cluster
    with AdminClient(cluster.addresses[0]) as admin:
        admin.create_topic("durable", partitions=1, replication_factor=3)
    victim = leaders(cluster, "durable")[0]
    survivor = next(b for b in addresses if b != victim)
    producer = confluent_kafka.Producer(
        {
            "bootstrap.servers": ",".join(addresses[b] for b in addresses if b != victim),
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 2,
            "message.timeout.ms": 120_000,
        }
    )
    acked: list[Any] = []
    failed: list[Any] = []
    sent = 0

    def send(count: int) -> None:
        nonlocal sent
        for _ in range(count):
            producer.produce("durable", b"%d" % sent, on_delivery=lambda e, m: (failed if e else acked).append(e or m))
            sent += 1
        producer.poll(0)

    def some_acked() -> bool:
        send(20)
        return len(acked) >= 200

    wait_for(some_acked, 60, what="200 acknowledged records")
    cluster.kill(victim)
    send(200)  # through the election: retried until the new leader takes them

    def new_leader() -> bool:
        try:
            return leaders(cluster, "durable", survivor)[0] not in (victim, -1)
        except TidelogError:  # (the SDK asks the leader for its figures: the old one until the election)
            return False

    wait_for(new_leader, 60, what="a new leader")
    assert producer.flush(120) == 0 and failed == []
    got: list[Any] = []
    with Consumer(cluster.addresses[survivor]) as consumer:
        consumer.assign([("durable", 0)])
        consumer.seek(("durable", 0), 0)
        wait_for(lambda: gather(got, consumer.poll(0.2)) >= sent, 60, what=f"{sent} records")
    assert sorted(int(m.raw_value) for m in got) == list(range(sent))  # each once: none lost, none doubled


def test_a_group_finds_its_coordinator_and_reads(kafka_cluster: tuple[ClusterProcess, dict[int, str]]) -> None:
    import confluent_kafka

    cluster, addresses = kafka_cluster
    with AdminClient(cluster.addresses[0]) as admin:
        admin.create_topic("shared", partitions=3, replication_factor=2)
    producer = confluent_kafka.Producer({"bootstrap.servers": addresses[2]})
    for i in range(90):
        producer.produce("shared", b"%d" % i, partition=i % 3)
    assert producer.flush(60) == 0
    consumer = confluent_kafka.Consumer(
        {"bootstrap.servers": addresses[0], "group.id": "spread-readers", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe(["shared"])
    read: list[int] = []

    def more() -> int:
        message = consumer.poll(0.1)
        value = message.value() if message is not None and message.error() is None else None
        if value is not None:
            read.append(int(value))
        return len(read)

    wait_for(lambda: more() >= 90, 60, what="the group to read all 90")
    consumer.commit(asynchronous=False)
    consumer.close()
    assert sorted(read) == list(range(90))
