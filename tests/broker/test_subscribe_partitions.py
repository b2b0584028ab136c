"""SubscribePartitions: many partitions on one stream, each one's failure its own, bad requests refused."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import grpc

from tests.errors_util import expect_status
from tests.harness import wait_for
from tidelog.v1 import admin_pb2, broker_pb2, records_pb2
from tidelog.v1.admin_pb2_grpc import AdminStub
from tidelog.v1.broker_pb2_grpc import BrokerStub

Start = broker_pb2.PartitionStart
EARLIEST = records_pb2.POSITION_EARLIEST


def produce(stub: BrokerStub, topic: str, partition: int, *values: bytes) -> None:
    records = [records_pb2.Record(value=v) for v in values]
    stub.Produce(broker_pb2.ProduceRequest(topic=topic, partition=partition, records=records))


class Tail:
    """Reads a SubscribePartitions stream on a thread; the test waits on what it collected."""

    def __init__(self, responses: Iterator[broker_pb2.SubscribePartitionsResponse]) -> None:
        self.responses = responses
        self.first: broker_pb2.SubscribePartitionsResponse | None = None
        self.values: dict[tuple[str, int], list[bytes]] = {}
        self.errors: dict[tuple[str, int], broker_pb2.PartitionError] = {}
        self.heartbeats = 0
        self.error: grpc.RpcError | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for response in self.responses:
                if self.first is None:
                    self.first = response
                if not response.partitions and not response.errors:
                    self.heartbeats += 1
                for part in response.partitions:
                    got = self.values.setdefault((part.topic, part.partition), [])
                    offset = part.next_offset - sum(len(b.records) for b in part.batches)
                    assert offset == len(got), "records arrive in order, none skipped or repeated"
                    got += [r.value for b in part.batches for r in b.records]
                for failed in response.errors:
                    self.errors[(failed.topic, failed.partition)] = failed
        except grpc.RpcError as err:
            self.error = err

    def cancel(self) -> None:
        self.responses.cancel()  # type: ignore[attr-defined]
        self.thread.join(10)


def subscribe(stub: BrokerStub, *starts: broker_pb2.PartitionStart, max_bytes: int = 0) -> Tail:
    request = broker_pb2.SubscribePartitionsRequest(partitions=starts, max_bytes=max_bytes)
    return Tail(stub.SubscribePartitions(request, timeout=60))


def test_many_partitions_on_one_stream_each_in_order(
    broker_stub: BrokerStub, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory(partitions=8)
    for p in range(8):
        produce(broker_stub, topic, p, f"{p}-old".encode())
    # A response budget smaller than what is waiting: partitions are served round robin over several responses.
    tail = subscribe(broker_stub, *(Start(topic=topic, partition=p, position=EARLIEST) for p in range(8)), max_bytes=1)
    wait_for(lambda: tail.first is not None, what="the first response")
    assert tail.first is not None
    starts = {(p.topic, p.partition): (p.next_offset, p.high_watermark, len(p.batches)) for p in tail.first.partitions}
    assert starts == {(topic, p): (0, 1, 0) for p in range(8)}
    for round_ in range(3):
        for p in range(8):
            produce(broker_stub, topic, p, f"{p}-{round_}".encode())
    want = {(topic, p): [f"{p}-old".encode()] + [f"{p}-{r}".encode() for r in range(3)] for p in range(8)}
    wait_for(lambda: tail.values == want, what="4 records from each of 8 partitions")
    assert tail.error is None and not tail.errors
    tail.cancel()


def test_a_partition_that_cannot_be_read_fails_alone(
    broker_stub: BrokerStub, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory(partitions=2)
    produce(broker_stub, topic, 0, b"a")
    tail = subscribe(
        broker_stub,
        Start(topic=topic, partition=0, offset=0),
        Start(topic=topic, partition=5),  # no such partition
        Start(topic=topic, partition=1, offset=7),  # past the high watermark
        Start(topic="no-such-topic", partition=0),
    )
    wait_for(lambda: len(tail.errors) == 3, what="the three partitions that cannot be read")
    reasons = {tp: (e.code, e.reason) for tp, e in tail.errors.items()}
    assert reasons == {
        (topic, 5): (grpc.StatusCode.INVALID_ARGUMENT.value[0], "PARTITION_OUT_OF_RANGE"),
        (topic, 1): (grpc.StatusCode.OUT_OF_RANGE.value[0], "OFFSET_OUT_OF_RANGE"),
        ("no-such-topic", 0): (grpc.StatusCode.NOT_FOUND.value[0], "TOPIC_NOT_FOUND"),
    }
    assert "high watermark" in tail.errors[(topic, 1)].message
    produce(broker_stub, topic, 0, b"b")
    wait_for(lambda: tail.values.get((topic, 0)) == [b"a", b"b"], what="the readable partition to go on")
    tail.cancel()


def test_a_deleted_topic_leaves_the_stream_and_the_others_go_on(
    admin_stub: AdminStub, broker_stub: BrokerStub, topic_factory: Callable[..., str]
) -> None:
    doomed, kept = topic_factory(), topic_factory()
    tail = subscribe(broker_stub, Start(topic=doomed), Start(topic=kept))
    wait_for(lambda: tail.first is not None, what="the first response")
    admin_stub.DeleteTopic(admin_pb2.DeleteTopicRequest(name=doomed))
    produce(broker_stub, kept, 0, b"after")  # wakes the stream, which finds the deleted topic
    wait_for(lambda: (doomed, 0) in tail.errors, what="the deleted topic's error")
    assert tail.errors[(doomed, 0)].reason == "TOPIC_NOT_FOUND"
    wait_for(lambda: tail.values.get((kept, 0)) == [b"after"], what="the kept topic's record")
    produce(broker_stub, kept, 0, b"later")
    wait_for(lambda: tail.values.get((kept, 0)) == [b"after", b"later"], what="the kept topic's next record")
    assert tail.error is None
    tail.cancel()


def test_heartbeats_keep_an_idle_stream_alive(own_broker) -> None:  # type: ignore[no-untyped-def]
    own_broker.extra_args = ("--heartbeat-ms", "100")
    own_broker.start()
    with grpc.insecure_channel(own_broker.address) as channel:
        AdminStub(channel).CreateTopic(admin_pb2.CreateTopicRequest(name="quiet", partitions=3))
        tail = subscribe(BrokerStub(channel), *(Start(topic="quiet", partition=p) for p in range(3)))
        wait_for(lambda: tail.heartbeats >= 2, what="two heartbeats")
        assert not tail.values.get(("quiet", 0)) and tail.error is None
        tail.cancel()


def test_bad_requests_are_refused(broker_stub: BrokerStub, topic_factory: Callable[..., str]) -> None:
    topic = topic_factory()

    def first(*starts: broker_pb2.PartitionStart, max_bytes: int = 0) -> object:
        request = broker_pb2.SubscribePartitionsRequest(partitions=starts, max_bytes=max_bytes)
        return next(broker_stub.SubscribePartitions(request, timeout=30))

    bad = grpc.StatusCode.INVALID_ARGUMENT
    assert "at least one" in expect_status(bad, "INVALID_REQUEST", first).details()
    twice = expect_status(bad, "INVALID_REQUEST", lambda: first(Start(topic=topic), Start(topic=topic, offset=0)))
    assert "named twice" in twice.details()
    many = [Start(topic=topic, partition=p) for p in range(10_001)]
    assert "at most 10000" in expect_status(bad, "INVALID_REQUEST", lambda: first(*many)).details()
    expect_status(bad, None, lambda: first(Start(topic=topic), max_bytes=-1))
