"""Compaction against a model (the latest value per key), with readers running through it."""

from __future__ import annotations

import random
import subprocess
import sys
import threading
from collections.abc import Iterator

import grpc
import pytest

from tests.harness import ROOT, BrokerProcess, wait_for
from tidelog import Producer
from tidelog.v1 import admin_pb2, broker_pb2
from tidelog.v1.admin_pb2_grpc import AdminStub
from tidelog.v1.broker_pb2_grpc import BrokerStub

Read = list[tuple[int, bytes, bytes | None]]  # (offset, key, value or None for a tombstone)


@pytest.fixture(scope="module")
def compacting_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    process = BrokerProcess(
        tmp_path_factory.mktemp("compaction") / "data", "--cleaner-interval-ms", "50", "--retention-ms", "-1"
    ).start()
    yield process
    assert process.stop() == 0, process.log()


def read_all(stub: BrokerStub, topic: str) -> Read:
    out: Read = []
    offset = 0
    while True:
        response = stub.Fetch(broker_pb2.FetchRequest(topic=topic, partition=0, offset=offset, max_records=10_000))
        for batch in response.batches:
            for i, record in enumerate(batch.records):
                out.append((batch.base_offset + i, record.key, record.value if record.HasField("value") else None))
        if response.next_offset >= response.high_watermark or not response.batches:
            return out
        offset = response.next_offset


def write_keyed(address: str, topic: str, seed: int) -> dict[bytes, tuple[int, bytes | None]]:
    """3,000 records over 50 keys, one in ten a tombstone; the model: key -> (offset, value) of the latest."""
    rng = random.Random(seed)
    model: dict[bytes, tuple[int, bytes | None]] = {}
    with Producer(address, linger_ms=2) as producer:
        sent = []
        for i in range(3000):
            key = b"k%d" % rng.randrange(50)
            value = None if rng.random() < 0.1 else b"v%d" % i
            sent.append((key, value, producer.send(topic, value, key=key, partition=0)))
        producer.flush()
    for key, value, future in sent:
        model[key] = (future.result(0).offset, value)
    return model


@pytest.mark.parametrize("delete_retention_ms", ["0", "3600000"])
def test_compaction_keeps_the_latest_per_key_at_its_offset(
    compacting_broker: BrokerProcess, delete_retention_ms: str
) -> None:
    topic = f"compacted-{delete_retention_ms}"
    with grpc.insecure_channel(compacting_broker.address) as channel:
        admin, stub = AdminStub(channel), BrokerStub(channel)
        admin.CreateTopic(
            admin_pb2.CreateTopicRequest(
                name=topic,
                configs={
                    "cleanup.policy": "compact",
                    "min.compaction.lag.ms": "0",
                    "delete.retention.ms": delete_retention_ms,
                },
            )
        )
        keep_tombstones = delete_retention_ms != "0"
        survivors_seen_by_readers: list[str] = []
        stop = threading.Event()
        final: dict[bytes, tuple[int, bytes | None]] = {}

        def reader() -> None:  # reads all the time while the cleaner works
            while not stop.is_set():
                records = read_all(stub, topic)
                offsets = [offset for offset, _, _ in records]
                if offsets != sorted(set(offsets)):
                    survivors_seen_by_readers.append(f"out of order or doubled: {offsets[:20]}")
                present = {(offset, key) for offset, key, _ in records}
                missing = [
                    k
                    for k, (offset, value) in final.items()
                    if (value is not None or keep_tombstones) and (offset, k) not in present
                ]
                if final and missing:
                    survivors_seen_by_readers.append(f"a survivor was missing: {missing[:5]}")

        model = write_keyed(compacting_broker.address, topic, seed=len(delete_retention_ms))
        final.update(model)
        watcher = threading.Thread(target=reader)
        watcher.start()
        try:
            expected = sorted(
                (offset, key, value) for key, (offset, value) in model.items() if value is not None or keep_tombstones
            )
            wait_for(lambda: read_all(stub, topic) == expected, timeout=30, what="the log compacted to the model")
        finally:
            stop.set()
            watcher.join()
        assert survivors_seen_by_readers == []
        high_watermark = admin.DescribeTopic(admin_pb2.DescribeTopicRequest(name=topic)).partitions[0].high_watermark
        assert high_watermark == 3000  # offsets are never reused
    checked = subprocess.run(
        [sys.executable, "-m", "tidelog", "verify", "--data-dir", str(compacting_broker.data_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr  # CRCs, offsets and stats still agree
