"""Kafka's classic consumer groups through the Kafka listener: confluent-kafka members splitting
partitions, one leaving or killed and the other resuming from the committed offsets, cooperative-sticky
with a late joiner, kafka-python and aiokafka groups, offsets shared with the SDK's groups, a group
live in one protocol refusing the other, and the protocol's fencing (raw requests)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.harness import ROOT, BrokerProcess, gather, logged, new_topic, wait_for
from tests.kafka import raw
from tidelog import AdminClient, Consumer, Producer
from tidelog.broker.kafka import messages
from tidelog.errors import TidelogError

PER_PARTITION = 50


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BrokerProcess, str]]:
    root = tmp_path_factory.mktemp("kafka-groups")
    process = BrokerProcess(root / "data", "--kafka-listen", "127.0.0.1:0", "--retention-ms", "-1").start()
    try:
        yield process, logged(process, "kafka_serving", "listen")
    finally:
        process.stop()


def filled_topic(address: str, partitions: int = 4) -> str:
    topic = new_topic(address, partitions=partitions)
    with Producer(address) as producer:
        for p in range(partitions):
            producer.send_many(topic, [b"%d-%d" % (p, i) for i in range(PER_PARTITION)], partition=p)
        producer.flush()
    return topic


def member(address: str, group: str, **config: Any) -> Any:
    import confluent_kafka

    return confluent_kafka.Consumer(
        {
            "bootstrap.servers": address,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 100,
            **config,
        }
    )


def assigned(consumer: Any) -> set[int]:
    return {tp.partition for tp in consumer.assignment()}


class Reader:
    """A member whose reads the test drives: each step polls once, commits what it read, notes it."""

    def __init__(self, consumer: Any) -> None:
        self.consumer = consumer
        self.seen: list[tuple[int, int]] = []

    def step(self) -> None:
        message = self.consumer.poll(0.05)
        if message is not None and message.error() is None:
            self.consumer.commit(message=message, asynchronous=False)
            self.seen.append((message.partition(), message.offset()))


def everything(partitions: int = 4) -> list[tuple[int, int]]:
    return [(p, o) for p in range(partitions) for o in range(PER_PARTITION)]


def test_two_members_split_four_partitions_and_one_resumes_where_the_other_left(
    broker: tuple[BrokerProcess, str],
) -> None:
    process, address = broker
    topic = filled_topic(process.address)
    group = f"split-{topic}"
    a, b = Reader(member(address, group)), Reader(member(address, group))
    a.consumer.subscribe([topic])
    b.consumer.subscribe([topic])

    def split() -> bool:
        a.step()
        b.step()
        return len(assigned(a.consumer)) == 2 and len(assigned(b.consumer)) == 2 and len(b.seen) >= 5

    wait_for(split, 60, what="a 2/2 split with records read by both")
    assert assigned(a.consumer).isdisjoint(assigned(b.consumer))
    b.consumer.close()  # LeaveGroup: its partitions go to a, from what it committed

    def drained() -> bool:
        a.step()
        return len(a.seen) + len(b.seen) >= len(everything())

    wait_for(drained, 60, what="a to read the rest")
    assert assigned(a.consumer) == {0, 1, 2, 3}
    assert sorted(a.seen + b.seen) == everything()  # every record once: commits move with the partitions
    a.consumer.close()
    with AdminClient(process.address) as admin:
        assert set(admin.group_offsets(group).values()) == {PER_PARTITION}


def test_a_killed_member_s_partitions_resume_from_its_commits(broker: tuple[BrokerProcess, str]) -> None:
    process, address = broker
    topic = filled_topic(process.address)
    group = f"killed-{topic}"
    victim = subprocess.Popen(
        [sys.executable, "-m", "tests.kafka.kafka_member", address, topic, group, "1500"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    printed: list[tuple[int, int]] = []

    def read_victim() -> None:
        assert victim.stdout is not None
        for line in victim.stdout:
            if line != "started\n":
                partition, offset = line.split()
                printed.append((int(partition), int(offset)))

    reader = threading.Thread(target=read_victim, daemon=True)
    reader.start()
    try:
        survivor = Reader(member(address, group))
        survivor.consumer.subscribe([topic])

        def both_reading() -> bool:
            survivor.step()
            mine = assigned(survivor.consumer)
            return len(mine) == 2 and any(p not in mine for p, _ in printed[-1:])

        wait_for(both_reading, 60, what="the victim reading its half after the split")
    finally:
        victim.kill()
        victim.wait(10)
    reader.join(10)

    def drained() -> bool:
        survivor.step()
        return set(survivor.seen) | set(printed) >= set(everything())

    wait_for(drained, 60, what="the survivor to take the victim's partitions and read the rest")
    assert assigned(survivor.consumer) == {0, 1, 2, 3}
    duplicates = len(survivor.seen) + len(printed) - len(everything())
    assert 0 <= duplicates <= 4, "more re-read than the victim had printed and not yet committed"
    survivor.consumer.close()


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is installed by `make test` (Debian's kcat)")
def test_kcat_reads_as_a_group_member(broker: tuple[BrokerProcess, str]) -> None:
    process, address = broker
    topic = filled_topic(process.address)
    count = str(4 * PER_PARTITION)
    consumed = subprocess.run(
        ["kcat", "-b", address, "-G", f"kcat-{topic}", "-o", "beginning", "-c", count, "-f", "%p %o\n", topic],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert consumed.returncode == 0, consumed.stderr
    assert sorted(tuple(map(int, line.split())) for line in consumed.stdout.splitlines()) == everything()


def test_cooperative_sticky_keeps_partitions_through_a_late_joiner(broker: tuple[BrokerProcess, str]) -> None:
    process, address = broker
    topic = filled_topic(process.address)
    group = f"sticky-{topic}"
    config = {"partition.assignment.strategy": "cooperative-sticky"}
    early = member(address, group, **config)
    early.subscribe([topic])
    wait_for(lambda: early.poll(0.05) is not None and assigned(early) == {0, 1, 2, 3}, 60, what="all 4 to the first")
    late = member(address, group, **config)
    late.subscribe([topic])
    held: list[set[int]] = []

    def settled() -> bool:
        early.poll(0.05)
        late.poll(0.05)
        mine, theirs = assigned(early), assigned(late)
        assert mine.isdisjoint(theirs), "a partition held by both members"
        held.append(mine)
        return len(mine) == 2 and len(theirs) == 2

    wait_for(settled, 60, what="a 2/2 split")
    assert min(len(h) for h in held) >= 2, "the first member gave up all it held (an eager rebalance)"
    late.close()
    early.close()


def test_kafka_python_and_aiokafka_groups_commit_what_the_sdk_resumes_from(broker: tuple[BrokerProcess, str]) -> None:
    import aiokafka
    import kafka

    process, address = broker
    topic = filled_topic(process.address, partitions=2)
    consumer = kafka.KafkaConsumer(
        topic, bootstrap_servers=address, group_id=f"kp-{topic}", auto_offset_reset="earliest",
        enable_auto_commit=False, consumer_timeout_ms=60_000,
    )  # fmt: skip
    read = []
    for message in consumer:
        read.append(message)
        if len(read) == 2 * PER_PARTITION:
            break
    consumer.commit()
    consumer.close()
    assert sorted((m.partition, m.offset) for m in read) == everything(2)

    async def with_aiokafka() -> int:
        reader = aiokafka.AIOKafkaConsumer(
            topic, bootstrap_servers=address, group_id=f"ak-{topic}", auto_offset_reset="earliest",
            enable_auto_commit=False,
        )  # fmt: skip
        await reader.start()
        try:
            count = 0
            while count < PER_PARTITION:  # half of them, then commit: the SDK reads the rest
                batches = await reader.getmany(timeout_ms=1000, max_records=PER_PARTITION - count)
                count += sum(len(b) for b in batches.values())
            await reader.commit()
            return count
        finally:
            await reader.stop()

    assert asyncio.run(with_aiokafka()) == PER_PARTITION
    with AdminClient(process.address) as admin:
        assert set(admin.group_offsets(f"kp-{topic}").values()) == {PER_PARTITION}
        committed = sum(admin.group_offsets(f"ak-{topic}").values())
    assert committed == PER_PARTITION
    got: list[Any] = []
    with Consumer(process.address, topics=[topic], group=f"ak-{topic}", auto_offset_reset="earliest") as sdk:
        wait_for(lambda: gather(got, sdk.poll(0.2)) >= PER_PARTITION, 60, what="the SDK to read the rest")
    assert len(got) == PER_PARTITION  # nothing again of what aiokafka committed


def join(address: str, group: str, member_id: str = "", session_ms: int = 10_000, version: int = 5) -> dict[str, Any]:
    body = {
        "group_id": group, "session_timeout_ms": session_ms, "rebalance_timeout_ms": 10_000,
        "member_id": member_id, "group_instance_id": None, "protocol_type": "consumer",
        "protocols": [{"name": "range", "metadata": b"subscription"}],
    }  # fmt: skip
    return raw.call(address, messages.JOIN_GROUP_REQUEST, messages.JOIN_GROUP_RESPONSE, version, body)


def joined(address: str, group: str) -> dict[str, Any]:
    """The KIP-394 dance: a join without an id gets one (MEMBER_ID_REQUIRED), then joins with it."""
    first = join(address, group)
    assert first["error_code"] == 79 and first["member_id"]
    answer = join(address, group, first["member_id"])
    assert answer["error_code"] == 0, answer
    return answer


def commit(address: str, group: str, generation: int, member_id: str, topic: str) -> int:
    body = {
        "group_id": group, "generation_id_or_member_epoch": generation, "member_id": member_id,
        "group_instance_id": None,
        "topics": [{"name": topic, "partitions": [{"partition_index": 0, "committed_offset": 3}]}],
    }  # fmt: skip
    answer = raw.call(address, messages.OFFSET_COMMIT_REQUEST, messages.OFFSET_COMMIT_RESPONSE, 7, body)
    return int(answer["topics"][0]["partitions"][0]["error_code"])


def heartbeat(address: str, group: str, generation: int, member_id: str) -> int:
    body = {"group_id": group, "generation_id": generation, "member_id": member_id, "group_instance_id": None}
    return int(raw.call(address, messages.HEARTBEAT_REQUEST, messages.HEARTBEAT_RESPONSE, 3, body)["error_code"])


def sync(address: str, group: str, generation: int, member_id: str, assignment: bytes = b"") -> dict[str, Any]:
    body = {
        "group_id": group, "generation_id": generation, "member_id": member_id, "group_instance_id": None,
        "assignments": [{"member_id": member_id, "assignment": assignment}] if assignment else [],
    }  # fmt: skip
    return raw.call(address, messages.SYNC_GROUP_REQUEST, messages.SYNC_GROUP_RESPONSE, 3, body)


def test_the_protocol_fences_stale_generations_and_unknown_members(broker: tuple[BrokerProcess, str]) -> None:
    process, address = broker
    topic = filled_topic(process.address, partitions=1)
    group = f"fence-{topic}"
    first = joined(address, group)  # alone: the leader at once
    a, generation = first["member_id"], first["generation_id"]
    assert first["leader"] == a and [m["member_id"] for m in first["members"]] == [a]
    assert sync(address, group, generation, a, b"mine")["assignment"] == b"mine"
    assert commit(address, group, generation, a, topic) == 0
    assert commit(address, group, generation, "nobody", topic) == 25  # UNKNOWN_MEMBER_ID
    assert commit(address, group, -1, "", topic) == 25  # a group with members takes no outside commit

    second: dict[str, Any] = {}
    joining = threading.Thread(target=lambda: second.update(joined(address, group)))
    joining.start()  # its join waits for the first member to rejoin
    wait_for(lambda: heartbeat(address, group, generation, a) == 27, 30, what="REBALANCE_IN_PROGRESS")
    rejoined = join(address, group, a)
    joining.join(30)
    assert rejoined["generation_id"] == second["generation_id"] > generation
    assert commit(address, group, generation, a, topic) == 22  # ILLEGAL_GENERATION: the stale one is fenced
    assert heartbeat(address, group, generation, a) == 22


@pytest.mark.parametrize(
    ("group", "session_ms", "code"),
    [("bad name!", 10_000, 24), ("fine", 1, 26)],
    ids=["INVALID_GROUP_ID", "INVALID_SESSION_TIMEOUT"],
)
def test_bad_joins_are_answered(broker: tuple[BrokerProcess, str], group: str, session_ms: int, code: int) -> None:
    _, address = broker
    assert join(address, group, session_ms=session_ms, version=3)["error_code"] == code


def test_a_group_live_in_one_protocol_refuses_the_other(broker: tuple[BrokerProcess, str]) -> None:
    process, address = broker
    topic = filled_topic(process.address, partitions=1)
    with Consumer(process.address, topics=[topic], group=f"sdk-{topic}", auto_offset_reset="earliest") as sdk:
        got: list[Any] = []
        wait_for(lambda: gather(got, sdk.poll(0.2)) > 0, 60, what="the SDK member to read")
        assert join(address, f"sdk-{topic}", version=3)["error_code"] == 23  # INCONSISTENT_GROUP_PROTOCOL

    kafka_member = joined(address, f"kafka-{topic}")
    refused = pytest.raises(TidelogError, match="live members of the kafka protocol")
    with Consumer(process.address, topics=[topic], group=f"kafka-{topic}") as sdk, refused:
        wait_for(lambda: sdk.poll(0.2) and False, 30, what="the refusal")
    body = {"group_id": f"kafka-{topic}", "member_id": "", "members": [{"member_id": kafka_member["member_id"]}]}
    left = raw.call(address, messages.LEAVE_GROUP_REQUEST, messages.LEAVE_GROUP_RESPONSE, 3, body)
    assert left["members"][0]["error_code"] == 0
    with Consumer(process.address, topics=[topic], group=f"kafka-{topic}", auto_offset_reset="earliest") as sdk:
        again: list[Any] = []
        wait_for(lambda: gather(again, sdk.poll(0.2)) > 0, 60, what="the SDK member once the Kafka one left")


def test_offset_fetch_reads_what_the_sdk_set(broker: tuple[BrokerProcess, str]) -> None:
    process, address = broker
    topic = filled_topic(process.address, partitions=2)
    with AdminClient(process.address) as admin:
        admin.reset_group_offsets(f"of-{topic}", topic, offset=7, partitions=[0])
        admin.reset_group_offsets(f"of-{topic}", topic, offset=9, partitions=[1])
    for version, body in (
        (5, {"group_id": f"of-{topic}", "topics": None}),
        (8, {"groups": [{"group_id": f"of-{topic}", "topics": [{"name": topic, "partition_indexes": [0, 1]}]}]}),
    ):
        answer = raw.call(address, messages.OFFSET_FETCH_REQUEST, messages.OFFSET_FETCH_RESPONSE, version, body)
        (found,) = answer["groups"][0]["topics"] if version >= 8 else answer["topics"]
        assert {p["partition_index"]: p["committed_offset"] for p in found["partitions"]} == {0: 7, 1: 9}
