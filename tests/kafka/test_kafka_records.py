"""Records through the Kafka listener: produced and consumed by real Kafka clients (librdkafka through
confluent-kafka, kafka-python, aiokafka, kcat), read across protocols (a Kafka producer read by the SDK,
an SDK producer read by Kafka consumers), every codec, fetches from inside a batch, times, compaction,
LogAppendTime, and produce requests the broker must refuse without storing anything."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import ROOT, BrokerProcess, gather, logged, new_topic, run_node, wait_for
from tests.kafka import raw
from tidelog import AdminClient, Consumer, Producer
from tidelog.broker.kafka import messages, record_batch
from tidelog.v1.records_pb2 import Header, Record

KCAT = shutil.which("kcat")
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BrokerProcess, str]]:
    root = tmp_path_factory.mktemp("kafka-records")
    process = BrokerProcess(
        root / "data", "--kafka-listen", "127.0.0.1:0", "--retention-ms", "-1", "--cleaner-interval-ms", "50"
    ).start()
    try:
        yield process, logged(process, "kafka_serving", "listen")
    finally:
        process.stop()


def sdk_records(address: str, topic: str, partition: int, count: int, start: int = 0) -> list[Any]:
    """`count` messages of a partition from `start`, read with the SDK's consumer."""
    got: list[Any] = []
    with Consumer(address) as consumer:
        consumer.assign([(topic, partition)])
        consumer.seek((topic, partition), start)
        wait_for(lambda: gather(got, consumer.poll(0.2)) >= count, 30, what=f"{count} records via the SDK")
    return got[:count]


def librdkafka_records(address: str, topic: str, partition: int, count: int, start: int = 0) -> list[Any]:
    """`count` messages of a partition from `start`, read with confluent-kafka (no group: assigned)."""
    import confluent_kafka

    consumer = confluent_kafka.Consumer(
        {"bootstrap.servers": address, "group.id": "unused", "enable.auto.commit": False}
    )
    got: list[Any] = []
    try:
        consumer.assign([confluent_kafka.TopicPartition(topic, partition, start)])

        def more() -> int:
            for message in consumer.consume(500, timeout=0.2):
                assert message.error() is None, message.error()
                got.append(message)
            return len(got)

        wait_for(lambda: more() >= count, 30, what=f"{count} records via librdkafka")
    finally:
        consumer.close()
    return got[:count]


def librdkafka_produce(
    address: str, topic: str, records: list[tuple[bytes | None, bytes | None]], **config: Any
) -> None:
    """Produce (key, value) pairs with confluent-kafka to partition 0, and wait for every delivery."""
    import confluent_kafka

    producer = confluent_kafka.Producer({"bootstrap.servers": address, "linger.ms": 5, **config})
    failures: list[Any] = []

    def delivered(error: Any, _: Any) -> None:
        if error:
            failures.append(error)

    for key, value in records:
        producer.produce(topic, key=key, value=value, partition=0, headers=[("h", b"1")], on_delivery=delivered)
    assert producer.flush(30) == 0, "deliveries still pending"
    assert failures == []


@pytest.mark.parametrize("codec", CODECS)
def test_every_librdkafka_codec_reads_back_over_both_protocols(broker: tuple[BrokerProcess, str], codec: str) -> None:
    process, address = broker
    topic = new_topic(process.address)
    sent: list[tuple[bytes | None, bytes | None]] = [
        (b"k%d" % i, b"%s value %d " % (codec.encode(), i) * 5) for i in range(300)
    ]
    sent += [(b"gone", None), (None, b"keyless")]  # a tombstone and a keyless record
    librdkafka_produce(address, topic, sent, **{"compression.codec": codec})
    kafka_read = librdkafka_records(address, topic, 0, len(sent))
    assert [(m.key(), m.value()) for m in kafka_read] == sent
    assert [m.offset() for m in kafka_read] == list(range(len(sent)))
    assert all(m.headers() == [("h", b"1")] for m in kafka_read)
    sdk_read = sdk_records(process.address, topic, 0, len(sent))
    assert [(m.raw_key, m.raw_value) for m in sdk_read] == sent
    assert [m.timestamp_ms for m in sdk_read] == [m.timestamp()[1] for m in kafka_read]
    assert all(m.headers == [("h", b"1")] for m in sdk_read)


@pytest.mark.skipif(shutil.which("node") is None, reason="node is installed on CI machines")
def test_a_kafka_producer_is_read_by_a_node_grpc_client(broker: tuple[BrokerProcess, str]) -> None:
    process, address = broker
    topic = new_topic(process.address)
    librdkafka_produce(
        address, topic, [(b"k%d" % i, b"from kafka %d" % i) for i in range(20)], **{"compression.codec": "gzip"}
    )
    read = json.loads(run_node("fetch_records.js", process.address, str(ROOT / "protos"), topic, "20"))
    assert [(r["offset"], r["key"], r["value"], r["headers"]) for r in read] == [
        (i, f"k{i}", f"from kafka {i}", [["h", "1"]]) for i in range(20)
    ]


def test_an_sdk_producer_is_read_by_every_kafka_client(broker: tuple[BrokerProcess, str]) -> None:
    import aiokafka
    import kafka

    process, address = broker
    topic = new_topic(process.address)
    with Producer(process.address, compression="zstd") as producer:  # compressed gRPC batches: converted
        for i in range(50):
            producer.send(
                topic,
                b"sdk %d" % i,
                key=b"k%d" % (i % 3),
                partition=0,
                timestamp_ms=1_000 + i,
                headers=[("n", b"%d" % i)],
            )
        producer.send(topic, None, key=b"k0", partition=0, timestamp_ms=2_000)  # a tombstone
        producer.flush()
    expected = [(b"k%d" % (i % 3), b"sdk %d" % i, 1_000 + i) for i in range(50)] + [(b"k0", None, 2_000)]

    got = librdkafka_records(address, topic, 0, 51)
    assert [(m.key(), m.value(), m.timestamp()[1]) for m in got] == expected
    assert got[7].headers() == [("n", b"7")]

    consumer = kafka.KafkaConsumer(bootstrap_servers=address, enable_auto_commit=False, consumer_timeout_ms=30_000)
    try:
        consumer.assign([kafka.TopicPartition(topic, 0)])
        consumer.seek_to_beginning()
        read: list[Any] = []
        for message in consumer:
            read.append(message)
            if len(read) == 51:
                break
        assert [(m.key, m.value, m.timestamp) for m in read] == expected
    finally:
        consumer.close()

    async def with_aiokafka() -> list[Any]:
        reader = aiokafka.AIOKafkaConsumer(bootstrap_servers=address, enable_auto_commit=False)
        await reader.start()
        try:
            partition = aiokafka.TopicPartition(topic, 0)
            reader.assign([partition])
            await reader.seek_to_beginning(partition)
            out: list[Any] = []
            while len(out) < 51:
                out += (await reader.getmany(partition, timeout_ms=30_000)).get(partition, [])
            return out
        finally:
            await reader.stop()

    assert [(m.key, m.value, m.timestamp) for m in asyncio.run(with_aiokafka())] == expected


def test_kafka_python_and_aiokafka_produce_what_the_others_read(broker: tuple[BrokerProcess, str]) -> None:
    import aiokafka
    import kafka

    process, address = broker
    topic = new_topic(process.address)
    producer = kafka.KafkaProducer(bootstrap_servers=address, compression_type="gzip")
    futures = [producer.send(topic, b"kp %d" % i, key=b"kp", partition=0) for i in range(100)]
    producer.flush()
    assert [f.get(30).offset for f in futures] == list(range(100))
    producer.close()

    async def with_aiokafka() -> int:
        writer = aiokafka.AIOKafkaProducer(bootstrap_servers=address, compression_type="lz4", enable_idempotence=True)
        await writer.start()
        try:
            sent = [await writer.send(topic, b"ai %d" % i, key=b"ai", partition=0) for i in range(100)]
            return int((await asyncio.gather(*sent))[-1].offset)
        finally:
            await writer.stop()

    assert asyncio.run(with_aiokafka()) == 199
    values = [m.raw_value for m in sdk_records(process.address, topic, 0, 200)]
    assert values == [b"kp %d" % i for i in range(100)] + [b"ai %d" % i for i in range(100)]


@pytest.mark.skipif(KCAT is None, reason="kcat is installed by `make test` (Debian's kcat)")
def test_kcat_produces_and_consumes(broker: tuple[BrokerProcess, str]) -> None:
    assert KCAT is not None
    process, address = broker
    topic = new_topic(process.address)
    lines = "".join(f"key{i}:value {i}\n" for i in range(20))
    produced = subprocess.run(
        [KCAT, "-P", "-b", address, "-t", topic, "-p", "0", "-K:", "-H", "origin=kcat", "-z", "snappy"],
        input=lines, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert produced.returncode == 0, produced.stderr
    consumed = subprocess.run(
        [KCAT, "-C", "-b", address, "-t", topic, "-p", "0", "-o", "5", "-c", "15", "-J"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert consumed.returncode == 0, consumed.stderr
    records = [json.loads(line) for line in consumed.stdout.splitlines()]
    assert [(r["offset"], r["key"], r["payload"]) for r in records] == [
        (i, f"key{i}", f"value {i}") for i in range(5, 20)
    ]
    assert records[0]["headers"] == ["origin", "kcat"]
    sdk = sdk_records(process.address, topic, 0, 20)
    assert [(m.raw_key, m.headers) for m in sdk[:1]] == [(b"key0", [("origin", b"kcat")])]


def produce_raw(address: str, topic: str, batch: bytes, acks: int = -1) -> dict[str, Any]:
    body = {
        "transactional_id": None,
        "acks": acks,
        "timeout_ms": 30_000,
        "topic_data": [{"name": topic, "partition_data": [{"index": 0, "records": batch}]}],
    }
    answer = raw.call(address, messages.PRODUCE_REQUEST, messages.PRODUCE_RESPONSE, 8, body)
    (topic_answer,) = answer["responses"]
    (partition,) = topic_answer["partition_responses"]
    return dict(partition)


def a_batch(values: list[bytes], timestamps: list[int]) -> bytes:
    records = [
        Record(key=b"k", value=v, timestamp_ms=t, headers=[Header(key="i", value=v)])
        for v, t in zip(values, timestamps, strict=True)
    ]
    return record_batch.encode(records, 0, 0, log_append_time=False)


def test_fetches_from_inside_a_batch_and_times_within_it(broker: tuple[BrokerProcess, str]) -> None:
    import confluent_kafka

    process, address = broker
    topic = new_topic(process.address)
    values = [b"v%d" % i for i in range(10)]
    answer = produce_raw(address, topic, a_batch(values, [10_000 + 1_000 * i for i in range(10)]))
    assert (answer["error_code"], answer["base_offset"]) == (0, 0)  # one batch of 10: offsets 0-9
    assert [m.value() for m in librdkafka_records(address, topic, 0, 5, start=5)] == values[5:]
    sdk = sdk_records(process.address, topic, 0, 3, start=7)
    assert [(m.offset, m.raw_value) for m in sdk] == [(7, b"v7"), (8, b"v8"), (9, b"v9")]
    consumer = confluent_kafka.Consumer({"bootstrap.servers": address, "group.id": "unused"})
    try:
        (found,) = consumer.offsets_for_times([confluent_kafka.TopicPartition(topic, 0, 13_500)], 30)
        assert found.offset == 4  # the first record at or after 13.5 s, inside the batch
    finally:
        consumer.close()
    with Consumer(process.address) as reader:
        reader.assign([(topic, 0)])
        reader.seek_to_timestamp(16_000, (topic, 0))
        got: list[Any] = []
        wait_for(lambda: gather(got, reader.poll(0.2)) >= 1, 30, what="a record at or after 16 s")
        assert got[0].offset == 6


def test_bad_produce_requests_are_answered_and_store_nothing(broker: tuple[BrokerProcess, str]) -> None:
    process, address = broker
    topic = new_topic(process.address)
    good = a_batch([b"a", b"b"], [1, 2])
    damaged = bytearray(good)
    damaged[-1] ^= 0xFF
    magic_1 = bytearray(good)
    magic_1[16] = 1
    transactional = record_batch.build(0, 0, record_batch.TRANSACTIONAL, 2, 1, 2, good[record_batch.HEADER_SIZE :])
    cases = {
        "crc": (bytes(damaged), 2),  # CORRUPT_MESSAGE
        "magic": (bytes(magic_1), 87),  # INVALID_RECORD
        "two batches": (good + good, 87),
        "truncated": (good[:-3], 2),
        "transactional": (transactional, 87),
        "empty": (b"", 87),
    }
    for name, (records, code) in cases.items():
        answer = produce_raw(address, topic, records)
        assert answer["error_code"] == code, name
        assert answer["error_message"], name  # something a person can act on
    assert produce_raw(address, topic, good, acks=5)["error_code"] == 21  # INVALID_REQUIRED_ACKS
    assert produce_raw(address, "no-such-topic", good)["error_code"] == 3
    assert produce_raw(address, "bad name!", good)["error_code"] == 17
    with AdminClient(process.address) as admin:
        assert admin.describe_topic(topic).partitions[0].high_watermark == 0
    # acks=0 is never answered; the next request on the connection is, and the records are stored.
    fire_and_forget = (messages.PRODUCE_REQUEST, 8, {
        "transactional_id": None, "acks": 0, "timeout_ms": 1000,
        "topic_data": [{"name": topic, "partition_data": [{"index": 0, "records": good}]}],
    })  # fmt: skip
    versions = (messages.API_VERSIONS_REQUEST, 3, {"client_software_name": "t", "client_software_version": "1"})
    (versions_answer,) = raw.exchange(address, [fire_and_forget, versions], answered=[False, True])
    assert raw.decode_answer(messages.API_VERSIONS_RESPONSE, 3, versions_answer)["error_code"] == 0
    with AdminClient(process.address) as admin:
        assert admin.describe_topic(topic).partitions[0].high_watermark == 2


def test_a_compacted_topic_written_over_both_protocols(broker: tuple[BrokerProcess, str]) -> None:
    process, address = broker
    configs = {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"}
    topic = new_topic(process.address, configs=configs)
    librdkafka_produce(
        address, topic, [(b"a", b"kafka a1"), (b"b", b"kafka b1"), (b"a", b"kafka a2")], **{"compression.codec": "lz4"}
    )
    with Producer(process.address) as producer:
        producer.send(topic, b"sdk b2", key=b"b", partition=0)
        producer.send(topic, b"sdk c1", key=b"c", partition=0)
        producer.flush()
    refused = produce_raw(address, topic, record_batch.encode([Record(value=b"keyless")], 0, 0, False))
    assert refused["error_code"] == 87 and "key" in refused["error_message"]

    def compacted() -> list[tuple[int, bytes | None]] | None:
        with Consumer(process.address) as consumer:
            consumer.assign([(topic, 0)])
            consumer.seek((topic, 0), 0)
            got: list[Any] = []
            wait_for(lambda: gather(got, consumer.poll(0.2)) > 0 and got[-1].offset == 4, 30, what="the log's end")
        kept = [(m.offset, m.raw_value) for m in got]
        return kept if len(kept) == 3 else None

    kept = wait_for(compacted, 60, what="the cleaner to compact the topic")
    assert kept == [(2, b"kafka a2"), (3, b"sdk b2"), (4, b"sdk c1")]
    assert [(m.offset(), m.value()) for m in librdkafka_records(address, topic, 0, 3)] == kept


def test_log_append_time_topics_stamp_kafka_batches(broker: tuple[BrokerProcess, str]) -> None:
    import confluent_kafka

    process, address = broker
    topic = new_topic(process.address, configs={"message.timestamp.type": "LogAppendTime"})
    before = int(time.time() * 1000)
    answer = produce_raw(address, topic, a_batch([b"x", b"y"], [5, 6]))  # the producer's times are replaced
    assert answer["error_code"] == 0 and answer["log_append_time_ms"] >= before
    got = librdkafka_records(address, topic, 0, 2)
    assert {m.timestamp() for m in got} == {(confluent_kafka.TIMESTAMP_LOG_APPEND_TIME, answer["log_append_time_ms"])}
    assert {m.timestamp_ms for m in sdk_records(process.address, topic, 0, 2)} == {answer["log_append_time_ms"]}


def test_verify_checks_kafka_batches(broker: tuple[BrokerProcess, str], tmp_path: Path) -> None:
    process, address = broker
    topic = new_topic(process.address)
    librdkafka_produce(address, topic, [(b"k", b"v%d" % i) for i in range(100)], **{"compression.codec": "zstd"})
    checked = subprocess.run(
        [sys.executable, "-m", "tidelog", "verify", "--data-dir", str(process.data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert checked.returncode == 0 and "no problems" in checked.stdout, checked.stdout + checked.stderr
