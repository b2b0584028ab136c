"""Subscribe: the live first response, tailing, start positions, many idle streams, topic deletion."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator

import grpc

from tests.errors_util import expect_status
from tests.harness import wait_for
from tidelog.v1 import admin_pb2, broker_pb2, records_pb2
from tidelog.v1.admin_pb2_grpc import AdminStub
from tidelog.v1.broker_pb2_grpc import BrokerStub


def produce(stub: BrokerStub, topic: str, *values: bytes, ts: int = 0) -> None:
    stub.Produce(
        broker_pb2.ProduceRequest(
            topic=topic, partition=0, records=[records_pb2.Record(value=v, timestamp_ms=ts) for v in values]
        )
    )


class Collector:
    """Reads a Subscribe stream on a thread; the test waits on what it collected."""

    def __init__(self, responses: Iterator[broker_pb2.FetchResponse]) -> None:
        self.responses = responses
        self.first: queue.Queue[broker_pb2.FetchResponse] = queue.Queue()
        self.values: list[bytes] = []
        self.offsets: list[int] = []
        self.error: grpc.RpcError | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for i, response in enumerate(self.responses):
                if i == 0:
                    self.first.put(response)
                for batch in response.batches:
                    for j, record in enumerate(batch.records):
                        self.offsets.append(batch.base_offset + j)
                        self.values.append(record.value)
        except grpc.RpcError as err:
            self.error = err

    def cancel(self) -> None:
        self.responses.cancel()  # type: ignore[attr-defined]
        self.thread.join(10)


def test_subscriber_started_before_produce_receives_records(
    broker_stub: BrokerStub, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory()
    produce(broker_stub, topic, b"old")
    sub = Collector(broker_stub.Subscribe(broker_pb2.SubscribeRequest(topic=topic)))  # latest
    first = sub.first.get(timeout=10)
    assert (first.next_offset, first.high_watermark, len(first.batches)) == (1, 1, 0)
    produce(broker_stub, topic, b"new-1", b"new-2")
    produce(broker_stub, topic, b"new-3")
    wait_for(lambda: len(sub.values) >= 3, what="the subscriber to receive 3 records")
    assert sub.values == [b"new-1", b"new-2", b"new-3"]
    assert sub.offsets == [1, 2, 3]
    sub.cancel()


def test_subscribe_start_positions(broker_stub: BrokerStub, topic_factory: Callable[..., str]) -> None:
    topic = topic_factory()
    produce(broker_stub, topic, b"a", b"b", ts=1000)
    produce(broker_stub, topic, b"c", ts=2000)
    produce(broker_stub, topic, b"d", ts=3000)
    starts = {
        "earliest": broker_pb2.SubscribeRequest(topic=topic, position=records_pb2.POSITION_EARLIEST),
        "offset": broker_pb2.SubscribeRequest(topic=topic, offset=1),
        "timestamp": broker_pb2.SubscribeRequest(topic=topic, timestamp_ms=1500),
    }
    expected = {"earliest": [b"a", b"b", b"c", b"d"], "offset": [b"b", b"c", b"d"], "timestamp": [b"c", b"d"]}
    for name, request in starts.items():
        sub = Collector(broker_stub.Subscribe(request))

        def received_all(sub: Collector = sub, want: int = len(expected[name])) -> bool:
            return len(sub.values) >= want

        wait_for(received_all, what=f"{name} records")
        assert sub.values == expected[name], name
        sub.cancel()


def test_list_offsets(broker_stub: BrokerStub, topic_factory: Callable[..., str]) -> None:
    topic = topic_factory()
    produce(broker_stub, topic, b"a", ts=1000)
    produce(broker_stub, topic, b"b", b"c", ts=2000)
    L = broker_pb2.ListOffsetsRequest
    assert broker_stub.ListOffsets(L(topic=topic, position=records_pb2.POSITION_EARLIEST)).offset == 0
    assert broker_stub.ListOffsets(L(topic=topic, position=records_pb2.POSITION_LATEST)).offset == 3
    assert broker_stub.ListOffsets(L(topic=topic)).offset == 3
    found = broker_stub.ListOffsets(L(topic=topic, timestamp_ms=1001))
    assert (found.offset, found.timestamp_ms) == (1, 2000)
    assert broker_stub.ListOffsets(L(topic=topic, timestamp_ms=5000)).offset == 3


def test_many_idle_subscribers_do_not_stop_produce_and_fetch(
    channel: grpc.Channel, broker_stub: BrokerStub, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory()
    subscribe = channel.unary_stream(
        "/tidelog.v1.Broker/Subscribe",
        request_serializer=broker_pb2.SubscribeRequest.SerializeToString,
        response_deserializer=broker_pb2.FetchResponse.FromString,
    )
    # A deadline on each stream: a response that never comes fails the test instead of hanging it.
    streams = [subscribe(broker_pb2.SubscribeRequest(topic=topic), timeout=30) for _ in range(200)]
    for stream in streams:
        assert next(stream).next_offset == 0  # every one is live
    for i in range(20):
        produce(broker_stub, topic, str(i).encode())
    response = broker_stub.Fetch(broker_pb2.FetchRequest(topic=topic, offset=0))
    assert sum(len(b.records) for b in response.batches) == 20
    for stream in streams[:5]:
        got: list[bytes] = []
        while len(got) < 20:
            got += [r.value for b in next(stream).batches for r in b.records]
        assert got == [str(i).encode() for i in range(20)]
    for stream in streams:
        stream.cancel()


def test_deleting_a_topic_ends_its_streams_with_not_found(
    admin_stub: AdminStub, broker_stub: BrokerStub, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory()
    produce(broker_stub, topic, b"a")
    sub = Collector(broker_stub.Subscribe(broker_pb2.SubscribeRequest(topic=topic)))
    sub.first.get(timeout=10)
    admin_stub.DeleteTopic(admin_pb2.DeleteTopicRequest(name=topic))
    sub.thread.join(10)
    assert sub.error is not None and sub.error.code() == grpc.StatusCode.NOT_FOUND
    # A topic created again with that name starts at offset 0.
    admin_stub.CreateTopic(admin_pb2.CreateTopicRequest(name=topic))
    expect_status(
        grpc.StatusCode.OUT_OF_RANGE,
        "OFFSET_OUT_OF_RANGE",
        lambda: broker_stub.Fetch(broker_pb2.FetchRequest(topic=topic, offset=1)),
    )
    produce(broker_stub, topic, b"fresh")
    response = broker_stub.Fetch(broker_pb2.FetchRequest(topic=topic, offset=0))
    assert [r.value for b in response.batches for r in b.records] == [b"fresh"]


def test_heartbeats_arrive_during_silence(own_broker, topic_factory: Callable[..., str]) -> None:  # type: ignore[no-untyped-def]
    from tidelog.v1.admin_pb2_grpc import AdminStub as Admin
    from tidelog.v1.broker_pb2_grpc import BrokerStub as Broker

    own_broker.extra_args = ("--heartbeat-ms", "100")
    own_broker.start()
    with grpc.insecure_channel(own_broker.address) as ch:
        Admin(ch).CreateTopic(admin_pb2.CreateTopicRequest(name="quiet"))
        stream = Broker(ch).Subscribe(broker_pb2.SubscribeRequest(topic="quiet"), timeout=30)
        beats = [next(stream) for _ in range(3)]  # the live response, then two heartbeats
        assert all(len(b.batches) == 0 and b.next_offset == 0 for b in beats)
        stream.cancel()
