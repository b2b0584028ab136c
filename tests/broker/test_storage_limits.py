"""The LMDB map grows on demand under load; a map at its limit refuses produce, keeps serving reads,
and takes writes again once space is freed."""

from __future__ import annotations

import asyncio
import subprocess
import threading
from pathlib import Path

import grpc
import pytest

from tests.errors_util import expect_status
from tests.harness import BrokerProcess, new_topic, wait_for
from tidelog import AsyncConsumer, Producer
from tidelog.v1 import admin_pb2, broker_pb2, records_pb2
from tidelog.v1.admin_pb2_grpc import AdminStub
from tidelog.v1.broker_pb2_grpc import BrokerStub


def produce_succeeds(stub: BrokerStub, request: broker_pb2.ProduceRequest) -> bool:
    try:
        stub.Produce(request)
        return True
    except grpc.RpcError:
        return False


def test_the_map_grows_from_a_tiny_start_under_load_with_100_subscribers(tmp_path: Path) -> None:
    broker = BrokerProcess(tmp_path / "data", "--initial-map-size-mb", "1", "--retention-ms", "-1").start()
    try:
        topic = new_topic(broker.address)
        total = 3000
        received: list[int] = []
        ready = threading.Event()

        async def subscribers() -> None:
            consumers = [AsyncConsumer(broker.address, topics=[topic]) for _ in range(100)]
            for consumer in consumers:
                await consumer.start()
                await consumer.position((topic, 0))  # live before the first record
            ready.set()

            async def drain(consumer: AsyncConsumer) -> None:
                seen = 0
                while seen < total:
                    seen += len(await consumer.getmany(10))
                received.append(seen)

            try:
                await asyncio.wait_for(asyncio.gather(*(drain(c) for c in consumers)), 120)
            finally:
                for consumer in consumers:
                    await consumer.close()

        reader = threading.Thread(target=lambda: asyncio.run(subscribers()))
        reader.start()
        assert ready.wait(60)
        with Producer(broker.address) as producer:  # ~30 MB through a map that starts at 1 MiB
            futures = [producer.send(topic, b"%d" % i + b"x" * 10_000, partition=0) for i in range(total)]
            producer.flush(120)
        assert [f.result(0).offset for f in futures] == list(range(total))
        reader.join(180)
        assert received == [total] * 100
        assert broker.log().count('"event": "map_grown"') >= 4
    finally:
        broker.stop()


def test_a_full_map_refuses_produce_keeps_reads_and_recovers_after_a_delete(tmp_path: Path) -> None:
    broker = BrokerProcess(
        tmp_path / "data", "--initial-map-size-mb", "1", "--map-size-gb", "0.008", "--retention-ms", "-1"
    ).start()
    try:
        with grpc.insecure_channel(broker.address) as channel:
            admin, stub = AdminStub(channel), BrokerStub(channel)
            admin.CreateTopic(admin_pb2.CreateTopicRequest(name="filler"))
            admin.CreateTopic(admin_pb2.CreateTopicRequest(name="kept"))
            stub.Produce(broker_pb2.ProduceRequest(topic="kept", partition=0, records=[records_pb2.Record(value=b"k")]))
            chunk = broker_pb2.ProduceRequest(
                topic="filler", partition=0, records=[records_pb2.Record(value=b"f" * 100_000)] * 5
            )
            err = None
            for _ in range(200):  # 500 KB a request into an 8 MiB map: it fills
                try:
                    stub.Produce(chunk)
                except grpc.RpcError as refused:
                    err = refused
                    break
            assert err is not None, "the map never filled"
            assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "--map-size-gb" in err.details()
            expect_status(grpc.StatusCode.RESOURCE_EXHAUSTED, "STORAGE_FULL", lambda: stub.Produce(chunk))

            fetched = stub.Fetch(broker_pb2.FetchRequest(topic="kept", partition=0, offset=0))  # reads go on
            assert fetched.batches[0].records[0].value == b"k"

            admin.DeleteTopic(admin_pb2.DeleteTopicRequest(name="filler"))
            small = broker_pb2.ProduceRequest(
                topic="kept", partition=0, records=[records_pb2.Record(value=b"k" * 100_000)]
            )

            # The purge frees the deleted topic's pages.
            wait_for(lambda: produce_succeeds(stub, small), timeout=30, what="a produce to succeed after the delete")
        assert '"event": "storage_full"' in broker.log()
    finally:
        broker.stop()


@pytest.mark.parametrize("flag", ["--cleaner-interval-ms"])
def test_flags_are_checked(tmp_path: Path, flag: str) -> None:
    broker = BrokerProcess(tmp_path / "data", flag, "0")
    with pytest.raises(RuntimeError, match="must be >= 1"):
        broker.start()


def _private_tmpfs_works() -> bool:
    try:
        return subprocess.run(["unshare", "-m", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.skipif(
    not _private_tmpfs_works(), reason="needs `unshare -m` (root) for a private tmpfs that really fills"
)
def test_a_full_disk_refuses_produce_keeps_reads_and_recovers_after_a_delete(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    # The broker runs in its own mount namespace, with its data directory on a 12 MiB tmpfs.
    small_disk = [
        "unshare",
        "-m",
        "--propagation",
        "private",
        "sh",
        "-c",
        f'mount -t tmpfs -o size=12m tmpfs "{data}" && exec "$@"',
        "sh",
    ]
    broker = BrokerProcess(data, "--retention-ms", "-1", wrapper=small_disk).start()
    try:
        with grpc.insecure_channel(broker.address) as channel:
            admin, stub = AdminStub(channel), BrokerStub(channel)
            admin.CreateTopic(admin_pb2.CreateTopicRequest(name="filler"))
            admin.CreateTopic(admin_pb2.CreateTopicRequest(name="kept"))
            stub.Produce(broker_pb2.ProduceRequest(topic="kept", partition=0, records=[records_pb2.Record(value=b"k")]))

            def fill_with(value_bytes: int, records: int) -> grpc.RpcError:
                chunk = broker_pb2.ProduceRequest(
                    topic="filler", partition=0, records=[records_pb2.Record(value=b"f" * value_bytes)] * records
                )
                for _ in range(100_000):  # bounded; a 12 MiB disk fills long before
                    try:
                        stub.Produce(chunk)
                    except grpc.RpcError as refused:
                        return refused
                raise AssertionError("the disk never filled")

            err = fill_with(100_000, 5)
            assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "disk" in err.details() and "full" in err.details()
            fill_with(1_000, 1)  # then to the last page: even a small write is refused
            fetched = stub.Fetch(broker_pb2.FetchRequest(topic="kept", partition=0, offset=0))
            assert fetched.batches[0].records[0].value == b"k"  # reads go on

            admin.DeleteTopic(admin_pb2.DeleteTopicRequest(name="filler"))  # commits in the disk's reserve
            largest = broker_pb2.ProduceRequest(
                topic="kept", partition=0, records=[records_pb2.Record(value=b"k" * (1_048_576 - 16))]
            )
            assert largest.records[0].ByteSize() <= 1_048_576  # max.message.bytes

            wait_for(lambda: produce_succeeds(stub, largest), timeout=60, what="a max.message.bytes record to fit")
            every = stub.Fetch(broker_pb2.FetchRequest(topic="kept", partition=0, offset=0, max_bytes=4 << 20))
            assert sum(len(b.records) for b in every.batches) == 2  # nothing acknowledged was lost
        assert '"event": "disk_full"' in broker.log()
        assert '"event": "topic_purged"' in broker.log()
    finally:
        broker.stop()
