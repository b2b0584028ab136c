"""Timestamp lookups through the time index, against a brute-force model, before and after retention."""

from __future__ import annotations

import random

import grpc

from tests.harness import BrokerProcess
from tidelog.v1 import admin_pb2, broker_pb2, records_pb2
from tidelog.v1.admin_pb2_grpc import AdminStub
from tidelog.v1.broker_pb2_grpc import BrokerStub


def first_at_or_after(timestamps: list[int], target: int, start: int = 0) -> int:
    return next((i for i in range(start, len(timestamps)) if timestamps[i] >= target), len(timestamps))


def test_lookups_match_a_scan_whatever_the_timestamp_order(broker: BrokerProcess) -> None:
    rng = random.Random(5)
    timestamps: list[int] = []
    with grpc.insecure_channel(broker.address) as channel:
        AdminStub(channel).CreateTopic(admin_pb2.CreateTopicRequest(name="times", partitions=2))
        stub = BrokerStub(channel)
        for _ in range(200):  # CreateTime: out of order, repeats, and runs in one batch
            batch = [rng.randrange(1_000, 100_000) for _ in range(rng.randrange(1, 4))]
            stub.Produce(
                broker_pb2.ProduceRequest(
                    topic="times", partition=1, records=[records_pb2.Record(value=b"v", timestamp_ms=t) for t in batch]
                )
            )
            timestamps += batch
        for target in [0, 999, 1_000, 100_000, 200_000, *[rng.randrange(0, 110_000) for _ in range(100)]]:
            found = stub.ListOffsets(broker_pb2.ListOffsetsRequest(topic="times", partition=1, timestamp_ms=target))
            expected = first_at_or_after(timestamps, target)
            assert found.offset == expected, (target, found.offset, expected)
            if expected < len(timestamps):
                assert found.timestamp_ms == timestamps[expected]
        empty = stub.ListOffsets(broker_pb2.ListOffsetsRequest(topic="times", partition=0, timestamp_ms=5))
        assert empty.offset == 0
