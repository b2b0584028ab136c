"""Durability: records survive a clean restart and a kill -9 (every acknowledged record, once, in order)."""

from __future__ import annotations

import threading

import grpc
import pytest

from tests.harness import BrokerProcess, wait_for
from tidelog.broker.storage.lmdb_store import LMDB_FORMAT, LmdbStore
from tidelog.v1 import admin_pb2, broker_pb2, records_pb2
from tidelog.v1.admin_pb2_grpc import AdminStub
from tidelog.v1.broker_pb2_grpc import BrokerStub


def read_all(address: str, topic: str, partition: int = 0) -> list[bytes]:
    with grpc.insecure_channel(address) as ch:
        stub = BrokerStub(ch)
        values: list[bytes] = []
        offset = 0
        while True:
            response = stub.Fetch(broker_pb2.FetchRequest(topic=topic, partition=partition, offset=offset))
            values += [r.value for b in response.batches for r in b.records]
            if response.next_offset >= response.high_watermark:
                return values
            offset = response.next_offset


def test_records_and_topics_survive_a_restart(own_broker: BrokerProcess) -> None:
    own_broker.start()
    with grpc.insecure_channel(own_broker.address) as ch:
        AdminStub(ch).CreateTopic(
            admin_pb2.CreateTopicRequest(name="kept", partitions=2, configs={"retention.ms": "-1"})
        )
        stub = BrokerStub(ch)
        for i in range(50):
            stub.Produce(
                broker_pb2.ProduceRequest(
                    topic="kept", partition=i % 2, records=[records_pb2.Record(value=f"{i}".encode())]
                )
            )
        producer_id = stub.InitProducer(broker_pb2.InitProducerRequest()).producer_id
    assert own_broker.stop() == 0
    assert '"event": "stopped"' in own_broker.log()

    own_broker.start()
    assert read_all(own_broker.address, "kept", 0) == [f"{i}".encode() for i in range(0, 50, 2)]
    assert read_all(own_broker.address, "kept", 1) == [f"{i}".encode() for i in range(1, 50, 2)]
    with grpc.insecure_channel(own_broker.address) as ch:
        described = AdminStub(ch).DescribeTopic(admin_pb2.DescribeTopicRequest(name="kept"))
        assert described.topic.configs["retention.ms"] == "-1"
        assert [p.high_watermark for p in described.partitions] == [25, 25]
        assert all(p.size_bytes > 0 for p in described.partitions)
        # Producer ids are never handed out twice, across restarts too.
        assert BrokerStub(ch).InitProducer(broker_pb2.InitProducerRequest()).producer_id > producer_id


def test_every_acknowledged_record_survives_kill_9(own_broker: BrokerProcess) -> None:
    own_broker.start()
    with grpc.insecure_channel(own_broker.address) as ch:
        AdminStub(ch).CreateTopic(admin_pb2.CreateTopicRequest(name="crash", partitions=1))
    acknowledged: list[bytes] = []
    stop = threading.Event()

    def produce_until_killed() -> None:
        with grpc.insecure_channel(own_broker.address) as ch:
            requests = (
                broker_pb2.ProduceRequest(
                    topic="crash",
                    partition=0,
                    request_id=i,
                    records=[records_pb2.Record(value=f"{i}-{j}".encode()) for j in range(10)],
                )
                for i in range(1_000_000)
                if not stop.is_set()
            )
            try:
                for answer in BrokerStub(ch).ProduceStream(requests):
                    assert not answer.HasField("error")
                    acknowledged.extend(f"{answer.request_id}-{j}".encode() for j in range(10))
            except grpc.RpcError:
                pass  # the broker died under us: expected

    producer = threading.Thread(target=produce_until_killed)
    producer.start()
    wait_for(lambda: len(acknowledged) >= 2000, timeout=30, what="2000 acknowledged records")
    own_broker.kill()
    stop.set()
    producer.join(30)

    own_broker.start()
    stored = read_all(own_broker.address, "crash")
    assert stored[: len(acknowledged)] == acknowledged  # all acknowledged, in order, once
    assert len(set(stored)) == len(stored)
    # Anything beyond what was acknowledged is whole requests that were written but whose answer was lost.
    assert len(stored) % 10 == 0


@pytest.mark.parametrize(
    ("key", "value", "names"),
    [
        (b"format", b"99", ["Tidelog format 99", "reads format 1"]),
        (b"lmdb_format", b"9.9", ["LMDB data format 9.9", "py-lmdb"]),
    ],
)
def test_a_data_directory_of_another_format_is_refused_naming_both(
    own_broker: BrokerProcess, key: bytes, value: bytes, names: list[str]
) -> None:
    own_broker.start()
    assert own_broker.stop() == 0
    store = LmdbStore(own_broker.data_dir, sync=True, map_size=1 << 30)
    assert LMDB_FORMAT.count(".") == 1
    with store.env.begin(write=True, db=store.meta) as txn:
        txn.put(key, value)
    store.close()
    with pytest.raises(RuntimeError) as refused:
        own_broker.start(timeout=10)
    message = own_broker.log()
    for name in names:
        assert name in message, message
    assert "fresh --data-dir" in message and "Traceback" not in message
    assert "exited with" in str(refused.value)
