"""Produce, ProduceStream and Fetch against the real broker, through generated stubs."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import grpc

from tests.errors_util import error_info, expect_status
from tidelog.broker.batches import records_crc
from tidelog.common.reasons import Reason
from tidelog.v1 import broker_pb2, records_pb2
from tidelog.v1.broker_pb2_grpc import BrokerStub

NOT_FOUND = grpc.StatusCode.NOT_FOUND
INVALID = grpc.StatusCode.INVALID_ARGUMENT


def records(*values: bytes, key: bytes = b"", ts: int = 0) -> list[records_pb2.Record]:
    return [records_pb2.Record(key=key, value=v, timestamp_ms=ts) for v in values]


def produce(stub: BrokerStub, topic: str, values: list[bytes], partition: int | None = 0) -> broker_pb2.ProduceResponse:
    request = broker_pb2.ProduceRequest(topic=topic, records=records(*values))
    if partition is not None:
        request.partition = partition
    response: broker_pb2.ProduceResponse = stub.Produce(request)
    return response


def fetch_values(
    stub: BrokerStub, topic: str, offset: int, partition: int = 0, **limits: int
) -> tuple[list[bytes], broker_pb2.FetchResponse]:
    response = stub.Fetch(broker_pb2.FetchRequest(topic=topic, partition=partition, offset=offset, **limits))
    values = [r.value for b in response.batches for r in b.records]
    return values, response


def test_produce_then_fetch_round_trip(broker_stub: BrokerStub, topic_factory: Callable[..., str]) -> None:
    topic = topic_factory()
    first = produce(broker_stub, topic, [b"a", b"b", b"c"])
    second = produce(broker_stub, topic, [b"d", b"e"])
    assert [(r.partition, r.base_offset, r.record_count) for r in first.results] == [(0, 0, 3)]
    assert (second.results[0].base_offset, second.results[0].record_count) == (3, 2)
    assert second.results[0].log_append_time_ms > 0

    values, response = fetch_values(broker_stub, topic, 0)
    assert values == [b"a", b"b", b"c", b"d", b"e"]
    assert (response.high_watermark, response.log_start_offset, response.next_offset) == (5, 0, 5)
    assert [b.base_offset for b in response.batches] == [0, 3]
    batch = response.batches[0]
    assert batch.append_time_ms == first.results[0].log_append_time_ms
    assert batch.max_timestamp_ms == batch.append_time_ms  # every record had timestamp 0
    assert batch.crc32c != 0


def test_fetch_starts_exactly_at_the_requested_offset(
    broker_stub: BrokerStub, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory()
    produce(broker_stub, topic, [b"0", b"1", b"2", b"3"])
    produce(broker_stub, topic, [b"4", b"5"])
    values, response = fetch_values(broker_stub, topic, 2)
    assert values == [b"2", b"3", b"4", b"5"]
    assert response.batches[0].base_offset == 2
    values, _ = fetch_values(broker_stub, topic, 5)
    assert values == [b"5"]


def test_fetch_limits_always_make_progress(broker_stub: BrokerStub, topic_factory: Callable[..., str]) -> None:
    topic = topic_factory()
    produce(broker_stub, topic, [b"x" * 1000] * 3)
    produce(broker_stub, topic, [b"y" * 1000] * 3)
    values, response = fetch_values(broker_stub, topic, 0, max_bytes=10)
    assert len(values) == 3 and response.next_offset == 3  # one whole batch, even above max_bytes
    values, response = fetch_values(broker_stub, topic, 1, max_records=1)
    assert values == [b"x" * 1000] and response.next_offset == 2
    values, response = fetch_values(broker_stub, topic, 0, max_records=4)
    assert len(values) == 3 and response.next_offset == 3  # the next batch would exceed max_records


def test_fetch_at_high_watermark_is_empty_and_long_polls(
    broker_stub: BrokerStub, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory()
    produce(broker_stub, topic, [b"a"])
    values, response = fetch_values(broker_stub, topic, 1)
    assert values == [] and response.high_watermark == 1

    result: dict[str, list[bytes]] = {}

    def long_poll() -> None:
        result["values"], _ = fetch_values(broker_stub, topic, 1, max_wait_ms=30_000)

    poller = threading.Thread(target=long_poll)
    poller.start()
    # The poll has no data to return until we produce; produce once it is surely waiting or not,
    # either way it must come back with the record, long before its 30 s wait is over.
    produce(broker_stub, topic, [b"b"])
    poller.join(20)
    assert not poller.is_alive()
    assert result["values"] == [b"b"]


def test_long_poll_without_data_returns_empty_after_its_wait(
    broker_stub: BrokerStub, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory()
    started = time.monotonic()
    values, response = fetch_values(broker_stub, topic, 0, max_wait_ms=200)
    assert values == [] and response.next_offset == 0
    assert time.monotonic() - started >= 0.19


def test_keyed_records_go_to_the_murmur2_partition(broker_stub: BrokerStub, topic_factory: Callable[..., str]) -> None:
    from tidelog.common.partitioner import partition_for_key

    topic = topic_factory(partitions=4)
    keys = [f"key-{i}".encode() for i in range(40)]
    request = broker_pb2.ProduceRequest(topic=topic, records=[records_pb2.Record(key=k, value=k) for k in keys])
    response = broker_stub.Produce(request)
    assert sum(r.record_count for r in response.results) == 40
    for partition in range(4):
        values, _ = fetch_values(broker_stub, topic, 0, partition=partition)
        expected = [k for k in keys if partition_for_key(k, 4) == partition]
        assert values == expected  # relative order kept within each partition


def test_keyless_records_spread_over_partitions(broker_stub: BrokerStub, topic_factory: Callable[..., str]) -> None:
    topic = topic_factory(partitions=3)
    for i in range(6):
        produce(broker_stub, topic, [str(i).encode()], partition=None)
    counts = [fetch_values(broker_stub, topic, 0, partition=p)[1].high_watermark for p in range(3)]
    assert counts == [2, 2, 2]


def test_record_fields_round_trip(broker_stub: BrokerStub, topic_factory: Callable[..., str]) -> None:
    topic = topic_factory()
    record = records_pb2.Record(
        key=b"k",
        value=b"",
        timestamp_ms=1_700_000_000_000,
        headers=[records_pb2.Header(key="h", value=b"1"), records_pb2.Header(key="h", value=b"2")],
    )
    tombstone = records_pb2.Record(key=b"k2", timestamp_ms=1_700_000_000_001)
    broker_stub.Produce(broker_pb2.ProduceRequest(topic=topic, partition=0, records=[record, tombstone]))
    response = broker_stub.Fetch(broker_pb2.FetchRequest(topic=topic, partition=0, offset=0))
    got = list(response.batches[0].records)
    assert got == [record, tombstone]
    assert got[0].HasField("value") and not got[1].HasField("value")
    assert response.batches[0].max_timestamp_ms == 1_700_000_000_001


def test_idempotent_retry_is_written_once(broker_stub: BrokerStub, topic_factory: Callable[..., str]) -> None:
    topic = topic_factory()
    producer_id = broker_stub.InitProducer(broker_pb2.InitProducerRequest()).producer_id
    assert producer_id > 0

    def send(sequence: int, *values: bytes) -> broker_pb2.ProduceResponse:
        response: broker_pb2.ProduceResponse = broker_stub.Produce(
            broker_pb2.ProduceRequest(
                topic=topic,
                partition=0,
                records=records(*values),
                producer_id=producer_id,
                sequence=sequence,
            )
        )
        return response

    first = send(0, b"a", b"b")
    retry = send(0, b"a", b"b")
    assert retry.results[0].base_offset == first.results[0].base_offset
    assert retry.results[0].log_append_time_ms == first.results[0].log_append_time_ms
    send(2, b"c")
    err = expect_status(grpc.StatusCode.FAILED_PRECONDITION, "OUT_OF_ORDER_SEQUENCE", lambda: send(5, b"x"))
    assert error_info(err).metadata["expected_sequence"] == "3"
    values, _ = fetch_values(broker_stub, topic, 0)
    assert values == [b"a", b"b", b"c"]


def test_produce_stream_answers_in_order_and_survives_bad_requests(
    broker_stub: BrokerStub, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory()
    requests = [
        broker_pb2.ProduceRequest(topic=topic, partition=0, records=records(b"1"), request_id=1),
        broker_pb2.ProduceRequest(topic="no-such-topic", partition=0, records=records(b"x"), request_id=2),
        broker_pb2.ProduceRequest(topic=topic, partition=7, records=records(b"x"), request_id=3),
        broker_pb2.ProduceRequest(topic=topic, partition=0, records=[], request_id=4),
        broker_pb2.ProduceRequest(topic=topic, partition=0, records=records(b"2", b"3"), request_id=5),
    ]
    answers = list(broker_stub.ProduceStream(iter(requests)))
    assert [a.request_id for a in answers] == [1, 2, 3, 4, 5]
    assert answers[0].results[0].base_offset == 0
    assert (answers[1].error.reason, answers[1].error.code) == ("TOPIC_NOT_FOUND", grpc.StatusCode.NOT_FOUND.value[0])
    assert answers[2].error.reason == Reason.PARTITION_OUT_OF_RANGE
    assert answers[3].error.reason == Reason.EMPTY_RECORDS
    assert answers[4].results[0].base_offset == 1
    assert fetch_values(broker_stub, topic, 0)[0] == [b"1", b"2", b"3"]


def test_produce_stream_ends_on_undecodable_bytes(channel: grpc.Channel, topic_factory: Callable[..., str]) -> None:
    topic = topic_factory()
    stream = channel.stream_stream(
        "/tidelog.v1.Broker/ProduceStream",
        request_serializer=None,
        response_deserializer=broker_pb2.ProduceResponse.FromString,
    )
    good = broker_pb2.ProduceRequest(topic=topic, partition=0, records=records(b"ok"), request_id=1).SerializeToString()
    responses = stream(iter([good, b"\xff\xff\xff"]))
    assert next(responses).request_id == 1
    expect_status(INVALID, "INVALID_REQUEST", lambda: next(responses))


def test_a_stored_batch_keeps_only_the_records_of_the_request_and_its_producer(
    broker_stub: BrokerStub, topic_factory: Callable[..., str]
) -> None:
    """Every request field but the records is the request's own: acks once leaked into the stored
    bytes as a second field 7 (a RecordBatch's base_sequence), and followers took it for the sequence."""
    topic = topic_factory()
    producer_id = broker_stub.InitProducer(broker_pb2.InitProducerRequest()).producer_id
    request = broker_pb2.ProduceRequest(
        topic=topic,
        partition=0,
        records=records(b"a", b"b"),
        producer_id=producer_id,
        sequence=41,
        request_id=9,
        acks=broker_pb2.ACKS_LEADER,
    )
    expect_status(grpc.StatusCode.FAILED_PRECONDITION, "OUT_OF_ORDER_SEQUENCE", lambda: broker_stub.Produce(request))
    request.sequence = 0
    broker_stub.Produce(request)
    fetched = broker_stub.Fetch(broker_pb2.FetchRequest(topic=topic, partition=0))
    batch = fetched.batches[0]
    assert (batch.producer_id, batch.base_sequence) == (producer_id, 0)
    only_records = records_pb2.RecordBatch(records=batch.records).SerializeToString()
    assert records_pb2.RecordBatch.FromString(only_records).records == batch.records
    assert records_crc(only_records) == batch.crc32c  # the CRC covers exactly the records
