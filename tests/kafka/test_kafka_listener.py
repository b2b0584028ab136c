"""The Kafka listener against real Kafka clients (librdkafka through confluent-kafka, kafka-python,
aiokafka, kcat) and raw frames: version negotiation, Metadata, and bad input closing one connection."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import BrokerProcess, logged
from tidelog import AdminClient, Producer

KCAT = shutil.which("kcat")


def kafka_address(broker: BrokerProcess) -> str:
    return logged(broker, "kafka_serving", "listen")


@pytest.fixture(scope="module")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BrokerProcess, str]]:
    root = tmp_path_factory.mktemp("kafka")
    broker = BrokerProcess(root / "data", "--kafka-listen", "127.0.0.1:0", "--retention-ms", "-1").start()
    with AdminClient(broker.address) as admin:
        admin.create_topic("orders", partitions=3)
        admin.create_topic("audit")
    with Producer(broker.address) as producer:  # orders/1: offsets 0-4 at times 1000, 2000, ... 5000
        for i in range(5):
            producer.send("orders", f"r{i}".encode(), partition=1, timestamp_ms=(i + 1) * 1000)
        producer.flush()
    try:
        yield broker, kafka_address(broker)
    finally:
        broker.stop()


def request(api_key: int, version: int, body: bytes, correlation_id: int = 7, flexible: bool = False) -> bytes:
    client_id = b"raw-test"
    header = struct.pack(">hhih", api_key, version, correlation_id, len(client_id)) + client_id
    if flexible:
        header += b"\x00"  # no tagged fields
    frame = header + body
    return struct.pack(">i", len(frame)) + frame


def exchange(address: str, *frames: bytes) -> bytes:
    """Send the frames, read until the broker closes or answers everything it will (5 s of silence)."""
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        for frame in frames:
            conn.sendall(frame)
        conn.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


# (API key, lowest, highest version) as ApiVersions advertises them: what clients negotiate against.
SNAPSHOT = [
    (18, 0, 4),  # ApiVersions
    (3, 1, 12),  # Metadata
    (2, 1, 6),  # ListOffsets
    (0, 3, 10),  # Produce
    (1, 4, 12),  # Fetch
    (22, 0, 4),  # InitProducerId
    (10, 0, 4),  # FindCoordinator
    (11, 0, 7),  # JoinGroup
    (14, 0, 5),  # SyncGroup
    (12, 0, 4),  # Heartbeat
    (13, 0, 4),  # LeaveGroup
    (8, 2, 8),  # OffsetCommit
    (9, 1, 8),  # OffsetFetch
    (19, 2, 7),  # CreateTopics
    (20, 1, 5),  # DeleteTopics
    (32, 1, 4),  # DescribeConfigs
    (16, 0, 4),  # ListGroups
    (15, 0, 5),  # DescribeGroups
    (17, 1, 1),  # SaslHandshake
    (36, 0, 2),  # SaslAuthenticate
]


def test_api_versions_snapshot_and_kip_511_fallback(kafka_broker: tuple[BrokerProcess, str]) -> None:
    _, address = kafka_broker
    answer = exchange(address, request(18, 3, b"\x04raw\x041.0\x00", flexible=True))
    size, correlation_id = struct.unpack(">ii", answer[:8])
    assert size == len(answer) - 4 and correlation_id == 7
    body = answer[8:]  # ApiVersions' response header has no tagged fields, even when flexible
    error_code, count = struct.unpack(">hB", body[:3])
    assert error_code == 0 and count - 1 == len(SNAPSHOT)
    keys = [struct.unpack(">hhh", body[3 + 7 * i : 9 + 7 * i]) for i in range(count - 1)]
    assert keys == SNAPSHOT
    # A version the broker does not speak: version 0's format, UNSUPPORTED_VERSION and the ranges.
    answer = exchange(address, request(18, 99, b""))
    error_code, count = struct.unpack(">hi", answer[8:14])
    assert (error_code, count) == (35, len(SNAPSHOT))


def test_metadata_through_every_client(kafka_broker: tuple[BrokerProcess, str]) -> None:
    import confluent_kafka.admin
    import kafka

    _, address = kafka_broker
    metadata = confluent_kafka.admin.AdminClient({"bootstrap.servers": address}).list_topics(timeout=20)
    assert {"orders", "audit"} <= set(metadata.topics)
    assert sorted(metadata.topics["orders"].partitions) == [0, 1, 2]
    assert {p.leader for p in metadata.topics["orders"].partitions.values()} == {0}
    assert metadata.brokers[0].port == int(address.rsplit(":", 1)[1])

    consumer = kafka.KafkaConsumer(bootstrap_servers=address)
    try:
        assert {"orders", "audit"} <= consumer.topics()
        assert consumer.partitions_for_topic("orders") == {0, 1, 2}
    finally:
        consumer.close()

    async def with_aiokafka() -> tuple[set[str], set[int] | None]:
        import aiokafka

        client = aiokafka.AIOKafkaClient(bootstrap_servers=address)
        await client.bootstrap()
        try:
            found = await client.fetch_all_metadata()
            return found.topics(), found.partitions_for_topic("orders")
        finally:
            await client.close()

    topics, partitions = asyncio.run(with_aiokafka())
    assert {"orders", "audit"} <= topics and partitions == {0, 1, 2}


@pytest.mark.skipif(KCAT is None, reason="kcat is installed by `make test` (Debian's kcat)")
def test_kcat_lists_the_topics(kafka_broker: tuple[BrokerProcess, str]) -> None:
    _, address = kafka_broker
    assert KCAT is not None
    listed = subprocess.run([KCAT, "-L", "-J", "-b", address], capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    found = {t["topic"]: len(t["partitions"]) for t in json.loads(listed.stdout)["topics"]}
    assert found["orders"] == 3 and found["audit"] == 1
    one = subprocess.run([KCAT, "-L", "-J", "-t", "nope", "-b", address], capture_output=True, text=True, timeout=60)
    (missing,) = json.loads(one.stdout)["topics"]
    assert missing["topic"] == "nope" and "Unknown topic" in missing.get("error", "")


def test_offsets_by_position_and_time(kafka_broker: tuple[BrokerProcess, str]) -> None:
    import confluent_kafka
    import kafka

    _, address = kafka_broker
    librdkafka = confluent_kafka.Consumer({"bootstrap.servers": address, "group.id": "offsets-probe"})
    try:  # a group id librdkafka insists on; no group API is called for these
        assert librdkafka.get_watermark_offsets(confluent_kafka.TopicPartition("orders", 1), 20, False) == (0, 5)
        (found_by_time,) = librdkafka.offsets_for_times([confluent_kafka.TopicPartition("orders", 1, 2500)], 20)
        assert found_by_time.offset == 2 and found_by_time.error is None
    finally:
        librdkafka.close()
    consumer = kafka.KafkaConsumer(bootstrap_servers=address)
    try:
        tp = kafka.TopicPartition("orders", 1)
        assert consumer.beginning_offsets([tp]) == {tp: 0}
        assert consumer.end_offsets([tp]) == {tp: 5}
        found = consumer.offsets_for_times({tp: 2500})[tp]
        assert (found.offset, found.timestamp) == (2, 3000)
        assert consumer.offsets_for_times({tp: 9000})[tp] is None  # nothing at or after it
    finally:
        consumer.close()


@pytest.mark.skipif(KCAT is None, reason="kcat is installed by `make test` (Debian's kcat)")
def test_kcat_queries_offsets_by_time(kafka_broker: tuple[BrokerProcess, str]) -> None:
    _, address = kafka_broker
    assert KCAT is not None
    for query, offset in (("orders:1:2500", 2), ("orders:1:-1", 5), ("orders:1:-2", 0)):  # kcat asks one at a time
        queried = subprocess.run([KCAT, "-Q", "-b", address, "-t", query], capture_output=True, text=True, timeout=60)
        assert queried.returncode == 0, queried.stderr
        assert queried.stdout.strip() == f"orders [1] offset {offset}", (query, queried.stdout)


@pytest.mark.parametrize(
    "frames",
    [
        pytest.param([struct.pack(">i", 100) + b"\x00" * 10], id="truncated"),
        pytest.param([struct.pack(">i", -1)], id="negative-length"),
        pytest.param([struct.pack(">i", (1 << 31) - 1)], id="past-the-limit"),
        pytest.param([request(0, 9, b"\x00" * 20)], id="an-api-not-spoken"),
        pytest.param([request(3, 13, b"")], id="a-version-not-spoken"),
        pytest.param([request(3, 1, struct.pack(">i", 1 << 30))], id="a-huge-array"),
        pytest.param([request(3, 1, struct.pack(">ih", 1, 50) + b"x")], id="a-string-past-the-frame"),
        pytest.param([request(3, 9, b"\x02\xff\xff\xff\xff\xff\xff", flexible=True)], id="a-runaway-varint"),
    ],
)
def test_bad_frames_close_that_connection_only(kafka_broker: tuple[BrokerProcess, str], frames: list[bytes]) -> None:
    broker, address = kafka_broker
    assert exchange(address, *frames) == b""  # closed, nothing answered
    # The broker is up: another connection is answered, and gRPC still serves.
    assert exchange(address, request(18, 0, b""))[4:8] == struct.pack(">i", 7)
    with AdminClient(broker.address) as admin:
        assert {"orders", "audit"} <= {t.name for t in admin.list_topics()}


def test_plaintext_kafka_stays_on_loopback(tmp_path: Path) -> None:
    import sys

    from tests.harness import ROOT

    serve = [sys.executable, "-m", "tidelog", "serve", "--data-dir", str(tmp_path / "d"), "--listen", "127.0.0.1:0"]
    refused = subprocess.run(
        [*serve, "--kafka-listen", "0.0.0.0:0"], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert refused.returncode == 1 and "not a loopback address" in refused.stderr and "--tls-cert" in refused.stderr
