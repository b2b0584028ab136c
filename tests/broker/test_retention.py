"""Retention: the pure cut (with an injected clock), and the cleaner in a real broker."""

from __future__ import annotations

import time
from collections.abc import Iterator

import grpc
import pytest

from tests.errors_util import error_info, expect_status
from tests.harness import BrokerProcess, wait_for
from tidelog.broker.log.retention import BatchHead, retention_cut
from tidelog.v1 import admin_pb2, broker_pb2, records_pb2
from tidelog.v1.admin_pb2_grpc import AdminStub
from tidelog.v1.broker_pb2_grpc import BrokerStub

HOUR_MS = 3_600_000


def heads(*specs: tuple[int, int]) -> list[BatchHead]:
    """(timestamp_ms, size) per batch, 10 records each, from offset 0."""
    return [BatchHead(i * 10, 10, ts, size) for i, (ts, size) in enumerate(specs)]


def test_time_retention_cuts_whole_batches_from_the_head_only() -> None:
    now = 100 * HOUR_MS
    log = heads((now - 3 * HOUR_MS, 100), (now - 2 * HOUR_MS, 100), (now - 10, 100), (now - 3 * HOUR_MS, 100))
    cut = retention_cut(log, now_ms=now, retention_ms=HOUR_MS, retention_bytes=-1, total_bytes=400)
    assert cut == 20  # the old batch behind a new one stays: only the head goes
    assert retention_cut(log, now_ms=now, retention_ms=-1, retention_bytes=-1, total_bytes=400) is None
    later = now + 10 * HOUR_MS  # the same log, the clock moved on
    assert retention_cut(log, now_ms=later, retention_ms=HOUR_MS, retention_bytes=-1, total_bytes=400) == 40


def test_size_retention_keeps_at_least_the_limit() -> None:
    log = heads((0, 100), (0, 100), (0, 100), (0, 100))
    assert retention_cut(log, now_ms=0, retention_ms=-1, retention_bytes=250, total_bytes=400) == 10
    assert retention_cut(log, now_ms=0, retention_ms=-1, retention_bytes=200, total_bytes=400) == 20
    assert retention_cut(log, now_ms=0, retention_ms=-1, retention_bytes=400, total_bytes=400) is None
    assert retention_cut(log, now_ms=0, retention_ms=-1, retention_bytes=0, total_bytes=400) == 40


@pytest.fixture(scope="module")
def cleaning_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    process = BrokerProcess(tmp_path_factory.mktemp("retention") / "data", "--cleaner-interval-ms", "50").start()
    yield process
    assert process.stop() == 0, process.log()


def produce(stub: BrokerStub, topic: str, *timestamps: int) -> None:
    for ts in timestamps:  # one request, so one batch, per record
        stub.Produce(
            broker_pb2.ProduceRequest(
                topic=topic, partition=0, records=[records_pb2.Record(value=b"v" * 100, timestamp_ms=ts)]
            )
        )


def describe(admin: AdminStub, topic: str) -> admin_pb2.PartitionInfo:
    described: admin_pb2.DescribeTopicResponse = admin.DescribeTopic(admin_pb2.DescribeTopicRequest(name=topic))
    return described.partitions[0]


def test_the_cleaner_applies_retention_by_time_and_altered_configs_without_a_restart(
    cleaning_broker: BrokerProcess,
) -> None:
    now = int(time.time() * 1000)
    with grpc.insecure_channel(cleaning_broker.address) as channel:
        admin, stub = AdminStub(channel), BrokerStub(channel)
        admin.CreateTopic(admin_pb2.CreateTopicRequest(name="aging", configs={"retention.ms": "-1"}))
        produce(stub, "aging", now - 3 * HOUR_MS, now - 2 * HOUR_MS, now)
        admin.AlterTopicConfigs(
            admin_pb2.AlterTopicConfigsRequest(name="aging", configs={"retention.ms": str(HOUR_MS)})
        )
        wait_for(lambda: describe(admin, "aging").log_start_offset == 2, what="the 2 old records deleted")
        partition = describe(admin, "aging")
        assert partition.high_watermark == 3

        err = expect_status(
            grpc.StatusCode.OUT_OF_RANGE,
            "OFFSET_OUT_OF_RANGE",
            lambda: stub.Fetch(broker_pb2.FetchRequest(topic="aging", partition=0, offset=0)),
        )
        assert error_info(err).metadata["log_start_offset"] == "2"
        assert "2 (log start)" in err.details()
        kept = stub.Fetch(broker_pb2.FetchRequest(topic="aging", partition=0, offset=2))
        assert kept.batches[0].base_offset == 2


def test_the_cleaner_applies_retention_by_bytes(cleaning_broker: BrokerProcess) -> None:
    now = int(time.time() * 1000)
    with grpc.insecure_channel(cleaning_broker.address) as channel:
        admin, stub = AdminStub(channel), BrokerStub(channel)
        admin.CreateTopic(admin_pb2.CreateTopicRequest(name="bounded", configs={"retention.bytes": "1000"}))
        produce(stub, "bounded", *[now] * 20)
        wait_for(lambda: describe(admin, "bounded").log_start_offset > 0, what="the oldest records deleted")
        wait_for(lambda: describe(admin, "bounded").size_bytes < 1500, what="the partition cut to retention.bytes")
        partition = describe(admin, "bounded")
        assert partition.size_bytes >= 1000 and partition.high_watermark == 20


def test_time_lookups_after_retention_start_at_the_new_log_start(cleaning_broker: BrokerProcess) -> None:
    with grpc.insecure_channel(cleaning_broker.address) as channel:
        admin, stub = AdminStub(channel), BrokerStub(channel)
        admin.CreateTopic(admin_pb2.CreateTopicRequest(name="dated", configs={"retention.ms": "-1"}))
        now = int(time.time() * 1000)
        stamps = [now - 5000, now - 1000, now - 3000, now - 500, now - 4000]  # one batch each
        produce(stub, "dated", *stamps)
        size = describe(admin, "dated").size_bytes
        one_batch = size // 5
        admin.AlterTopicConfigs(
            admin_pb2.AlterTopicConfigsRequest(name="dated", configs={"retention.bytes": str(size - 2 * one_batch)})
        )
        wait_for(lambda: describe(admin, "dated").log_start_offset == 2, what="the first 2 batches deleted")

        def lookup(ts: int) -> int:
            request = broker_pb2.ListOffsetsRequest(topic="dated", partition=0, timestamp_ms=ts)
            found: broker_pb2.ListOffsetsResponse = stub.ListOffsets(request)
            return found.offset

        assert lookup(0) == 2  # the first record kept
        assert lookup(now - 3500) == 2  # now-3000 at offset 2
        assert lookup(now - 2000) == 3
        assert lookup(now - 600) == 3
        assert lookup(now) == 5  # none that new: the high watermark


def test_time_lookups_after_retention_dropped_the_newest_batch_so_far(cleaning_broker: BrokerProcess) -> None:
    with grpc.insecure_channel(cleaning_broker.address) as channel:
        admin, stub = AdminStub(channel), BrokerStub(channel)
        admin.CreateTopic(admin_pb2.CreateTopicRequest(name="backdated", configs={"retention.ms": "-1"}))
        now = int(time.time() * 1000)
        produce(stub, "backdated", now, now - 9000, now - 8000)  # later batches are older
        size = describe(admin, "backdated").size_bytes
        admin.AlterTopicConfigs(
            admin_pb2.AlterTopicConfigsRequest(name="backdated", configs={"retention.bytes": str(size - size // 3)})
        )
        wait_for(lambda: describe(admin, "backdated").log_start_offset == 1, what="the first batch deleted")
        found = stub.ListOffsets(broker_pb2.ListOffsetsRequest(topic="backdated", partition=0, timestamp_ms=now - 8500))
        assert found.offset == 2  # now-8000, although the batch that raised the newest timestamp is gone
