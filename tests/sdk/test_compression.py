"""Compressed batches: produced by the SDK (zstd, lz4), stored and served as sent, opened by consumers;
mixed codecs in one partition; a corrupt batch refused with nothing stored."""

from __future__ import annotations

import functools
import json
import subprocess
import sys

import crc32c
import grpc
import pytest

from tests.errors_util import expect_status
from tests.harness import BrokerProcess, new_topic, wait_for
from tidelog import Consumer, Producer
from tidelog.common import compression
from tidelog.common.compression import Codecs, encoded_part
from tidelog.v1 import broker_pb2, records_pb2
from tidelog.v1.broker_pb2_grpc import BrokerStub


def values(prefix: str, n: int) -> list[bytes]:
    """Compressible values: JSON events, as most topics carry."""
    return [json.dumps({"event": prefix, "n": i, "user": f"user-{i % 7}", "ok": True}).encode() for i in range(n)]


def read_all(address: str, topic: str, count: int, **settings: object) -> list[bytes]:
    got: list[bytes] = []
    with Consumer(address, topics=[topic], auto_offset_reset="earliest", **settings) as consumer:

        def enough() -> bool:
            got.extend(m.value for m in consumer.poll(timeout=0.2))
            return len(got) >= count

        wait_for(enough, 30, what=f"{count} records")
    return got


def fetch(address: str, topic: str, offset: int) -> broker_pb2.FetchResponse:
    with grpc.insecure_channel(address) as channel:
        request = broker_pb2.FetchRequest(topic=topic, partition=0, offset=offset, max_records=10_000)
        answer: broker_pb2.FetchResponse = BrokerStub(channel).Fetch(request, timeout=10)
        return answer


@pytest.mark.parametrize("codec", ["zstd", "lz4"])
def test_a_compressed_batch_is_stored_as_sent_and_read_back_whole(broker: BrokerProcess, codec: str) -> None:
    topic = new_topic(broker.address)
    sent = values(codec, 500)
    with Producer(broker.address, compression=codec, linger_ms=50) as producer:
        futures = producer.send_many(topic, sent, partition=0)
        assert [m.offset for m in futures.result(30)] == list(range(500))
    stored = fetch(broker.address, topic, 0).batches
    assert stored and all(b.compression == compression.NAMES[codec] and not b.records for b in stored)
    assert sum(len(b.compressed_records) for b in stored) < sum(map(len, sent)) / 3  # JSON compresses
    assert read_all(broker.address, topic, 500) == sent
    # A read from inside a compressed batch gets the whole batch; the consumer skips what it did not ask for.
    with Consumer(broker.address) as consumer:
        consumer.assign([(topic, 0)])
        consumer.seek((topic, 0), 250)
        got: list[int] = []

        def the_rest() -> bool:
            got.extend(m.offset for m in consumer.poll(timeout=0.2))
            return len(got) >= 250

        wait_for(the_rest, 30, what="offsets 250-499")
    assert got == list(range(250, 500))


def test_codecs_mix_in_one_partition_and_keys_land_where_uncompressed_ones_do(broker: BrokerProcess) -> None:
    topic = new_topic(broker.address, partitions=3)
    expected: list[bytes] = []
    for codec in ("none", "zstd", "lz4", "zstd", "none"):
        batch = values(codec, 40)
        with Producer(broker.address, compression=codec) as producer:
            for value in batch:
                producer.send(topic, value, partition=1)
        expected += batch
    assert read_all(broker.address, topic, len(expected)) == expected
    keyed = {}
    for codec in ("none", "lz4"):
        with Producer(broker.address, compression=codec) as producer:
            keyed[codec] = producer.send(topic, b"v", key=b"the-same-key").result(30).partition
    assert keyed["none"] == keyed["lz4"]


def compressed_request(topic: str, frame: bytes, codec: int, count: int, crc: int | None = None) -> bytes:
    part = encoded_part(codec, frame)
    header = broker_pb2.ProduceRequest(
        topic=topic,
        partition=0,
        record_count=count,
        max_timestamp_ms=5,
        min_timestamp_ms=5,
        crc32c=int(crc32c.crc32c(part)) if crc is None else crc,
    )
    return part + header.SerializeToString()


def test_a_corrupt_compressed_batch_is_refused_and_nothing_is_stored(broker: BrokerProcess) -> None:
    topic = new_topic(broker.address)
    records = records_pb2.RecordBatch(records=[records_pb2.Record(value=b"fine")]).SerializeToString()
    frame = Codecs().compress(compression.ZSTD, records)
    with grpc.insecure_channel(broker.address) as channel:
        produce = channel.unary_unary(
            "/tidelog.v1.Broker/Produce",
            request_serializer=lambda raw: raw,
            response_deserializer=broker_pb2.ProduceResponse.FromString,
        )
        for bad in (
            compressed_request(topic, b"not a zstd frame at all", compression.ZSTD, 1),
            compressed_request(topic, frame, compression.ZSTD, 1, crc=12345),  # damaged on the way
            compressed_request(topic, frame, 7, 1),  # a codec nobody knows
            compressed_request(topic, frame, compression.ZSTD, 0),
        ):
            err = expect_status(grpc.StatusCode.INVALID_ARGUMENT, None, functools.partial(produce, bad, timeout=10))
            assert "compressed" in (err.details() or "") or "record_count" in (err.details() or "")
        assert not fetch(broker.address, topic, 0).batches  # nothing was written
        answer = produce(compressed_request(topic, frame, compression.ZSTD, 1), timeout=10)
        assert answer.results[0].base_offset == 0
    assert read_all(broker.address, topic, 1) == [b"fine"]


def test_a_compacted_topics_compressed_batch_needs_keys(broker: BrokerProcess) -> None:
    topic = new_topic(broker.address, configs={"cleanup.policy": "compact"})
    with Producer(broker.address, compression="zstd") as producer:
        assert producer.send(topic, b"v", key=b"k", partition=0).result(30).offset == 0
        with pytest.raises(Exception, match="needs a non-empty key"):
            producer.send(topic, b"keyless", partition=0).result(30)


def test_producer_refuses_an_unknown_codec() -> None:
    with pytest.raises(ValueError, match="compression must be one of"):
        Producer("127.0.0.1:1", compression="gzip")


def test_verify_reads_compressed_batches(own_broker: BrokerProcess) -> None:
    own_broker.start()
    topic = new_topic(own_broker.address)
    with Producer(own_broker.address, compression="lz4") as producer:
        producer.send_many(topic, values("v", 100), partition=0).result(30)
    own_broker.stop()
    report = subprocess.run(
        [sys.executable, "-m", "tidelog", "verify", "--data-dir", str(own_broker.data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert report.returncode == 0, report.stdout + report.stderr
    assert "100 record(s)" in report.stdout
