"""Quotas: the token bucket (with an injected clock), and throttling observed in a real broker."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from tests.harness import BrokerProcess
from tidelog.broker.security.quotas import Quotas, parse
from tidelog.v1 import admin_pb2, broker_pb2, records_pb2
from tidelog.v1.admin_pb2_grpc import AdminStub
from tidelog.v1.broker_pb2_grpc import BrokerStub


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_bucket_delays_by_the_debt_over_the_rate(tmp_path: Path) -> None:
    path = tmp_path / "quotas"
    path.write_text("* 1000 -1\nbulk 10000 500\n")
    clock = Clock()
    quotas = Quotas(path, clock)
    assert quotas.delay("alice", "produce", 1000) == 0  # a second's burst passes
    assert quotas.delay("alice", "produce", 500) == pytest.approx(0.5)  # then the debt sets the wait
    clock.now += 1.5
    assert quotas.delay("alice", "produce", 1000) == 0  # paid back, and a burst again
    assert quotas.delay("alice", "consume", 10**9) == 0  # -1: no limit
    assert quotas.delay("bulk", "consume", 1000) == pytest.approx(1.0)  # its own line, not *
    for bad in ("alice 10", "alice ten 5", "alice 0 5", "alice -5 5"):
        with pytest.raises(ValueError, match="expected"):
            parse(bad)


def test_over_quota_producers_are_held_back_and_told(tmp_path: Path) -> None:
    quotas = tmp_path / "quotas"
    quotas.write_text("* 100000 -1  # anonymous on loopback too\n")
    broker = BrokerProcess(tmp_path / "data", "--quotas", str(quotas), "--retention-ms", "-1").start()
    try:
        with grpc.insecure_channel(broker.address) as channel:
            AdminStub(channel).CreateTopic(admin_pb2.CreateTopicRequest(name="t"))
            stub = BrokerStub(channel)
            request = broker_pb2.ProduceRequest(
                topic="t", partition=0, records=[records_pb2.Record(value=b"x" * 60_000)]
            )
            held: list[int] = []
            produced = 0
            while not held and produced < 100:  # until one is held: the bucket refills while this machine sends
                _, call = stub.Produce.with_call(request)
                produced += 1
                held += [int(v) for k, v in call.trailing_metadata() or () if k == "tidelog-throttle-ms"]
            assert held and max(held) > 0  # throttled, and said so
            fetch = broker_pb2.FetchRequest(topic="t", max_records=produced, max_bytes=64 << 20)
            fetched, call = stub.Fetch.with_call(fetch)
            assert sum(len(b.records) for b in fetched.batches) == produced  # nothing refused
            assert not [v for k, v in call.trailing_metadata() or () if k == "tidelog-throttle-ms"]  # no consume quota
    finally:
        broker.stop()
