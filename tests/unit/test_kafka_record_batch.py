"""Kafka's RecordBatch v2 as the broker handles it (broker.kafka.record_batch), the conversions between
the two protocols' batches (log.formats), and a Kafka producer's epochs in the produce op (log.ops)."""

from __future__ import annotations

import struct

import cramjam
import pytest

from tidelog.broker.batches import HEADER_SIZE, build_stored, build_stored_kafka, records_crc, stored_head
from tidelog.broker.errors import BrokerError
from tidelog.broker.kafka import record_batch
from tidelog.broker.log.formats import Conversions
from tidelog.broker.log.ops import KAFKA_SEQUENCE_WRAP, PartitionAppend, ProduceOp
from tidelog.broker.log.topics import TopicState
from tidelog.broker.storage import keys
from tidelog.broker.storage.interface import PartitionStats, ProducerBatch, TopicRecord
from tidelog.broker.storage.memory_store import MemoryStore
from tidelog.common.compression import CorruptBatch
from tidelog.common.reasons import Reason
from tidelog.v1.records_pb2 import Header, Record, RecordBatch

ONE_RECORD = record_batch.encode([Record(value=b"a", timestamp_ms=1)], 0, 0, False)[record_batch.HEADER_SIZE :]
RECORDS = [
    Record(key=b"k1", value=b"v1", timestamp_ms=1_000, headers=[Header(key="h", value=b"x")]),
    Record(value=b"keyless", timestamp_ms=1_500),
    Record(key=b"k1", timestamp_ms=2_000),  # a tombstone: no value
]


def test_records_survive_the_round_trip_with_keys_tombstones_headers_and_times() -> None:
    batch = record_batch.encode(RECORDS, 40, append_time_ms=9_000, log_append_time=False)
    head = record_batch.check(batch)
    assert (head.base_offset, head.count, head.base_timestamp, head.max_timestamp) == (40, 3, 1_000, 2_000)
    back = record_batch.records_of(batch)
    assert back == RECORDS
    assert not back[1].key and not back[2].HasField("value")


def test_offsets_are_patched_outside_the_crc_and_a_flipped_bit_is_caught() -> None:
    batch = record_batch.encode(RECORDS, 0, 9_000, False)
    moved = record_batch.patched(batch, 1234, 7)
    head = record_batch.check(moved)  # the CRC still holds
    assert (head.base_offset, head.leader_epoch) == (1234, 7)
    damaged = bytearray(moved)
    damaged[-1] ^= 1
    with pytest.raises(record_batch.InvalidBatch, match="CRC") as caught:
        record_batch.check(bytes(damaged))
    assert caught.value.corrupt


def test_log_append_time_rewrites_the_type_the_max_timestamp_and_the_crc() -> None:
    batch = record_batch.with_log_append_time(record_batch.encode(RECORDS, 0, 9_000, False), 5_555)
    head = record_batch.check(batch)
    assert head.log_append_time and head.max_timestamp == 5_555
    assert {r.timestamp_ms for r in record_batch.records_of(batch)} == {5_555}


@pytest.mark.parametrize("codec", [0, 1, 2, 3, 4], ids=["none", "gzip", "snappy", "lz4", "zstd"])
def test_every_kafka_codec_is_opened(codec: int) -> None:
    plain = record_batch.encode(RECORDS, 0, 9_000, False)
    head = record_batch.header_of(plain)
    body = record_batch.compress(codec, plain[record_batch.HEADER_SIZE :])
    batch = record_batch.build(0, 0, codec, 3, head.base_timestamp, head.max_timestamp, body)
    assert record_batch.check(batch).codec == codec
    assert record_batch.records_of(batch) == RECORDS
    broken = record_batch.build(0, 0, codec, 3, 0, 0, body[: len(body) // 2])
    with pytest.raises(CorruptBatch):
        record_batch.records_of(broken)


def test_snappy_in_xerial_framing_as_the_java_client_writes_it() -> None:
    plain = record_batch.encode(RECORDS, 0, 9_000, False)
    records = plain[record_batch.HEADER_SIZE :]
    blocks = [bytes(cramjam.snappy.compress_raw(records[i : i + 20])) for i in range(0, len(records), 20)]
    framed = b"\x82SNAPPY\x00" + struct.pack(">ii", 1, 1) + b"".join(struct.pack(">i", len(b)) + b for b in blocks)
    batch = record_batch.build(0, 0, 2, 3, 1_000, 2_000, framed)
    assert record_batch.records_of(batch) == RECORDS


@pytest.mark.parametrize(
    ("records", "problem"),
    [
        (b"\x00" * 30, "too few for a batch header"),
        (record_batch.encode(RECORDS, 0, 1, False)[:-5], "does not match the bytes sent"),
        (bytes(16) + b"\x01" + bytes(60), "magic 1"),
    ],
    ids=["truncated", "short", "magic-1"],
)
def test_records_that_are_not_whole_v2_batches_are_refused(records: bytes, problem: str) -> None:
    with pytest.raises(record_batch.InvalidBatch, match=problem):
        record_batch.split(records)


def test_a_batch_whose_counts_disagree_or_that_is_transactional_is_refused() -> None:
    plain = record_batch.encode(RECORDS, 0, 9_000, False)
    body = plain[record_batch.HEADER_SIZE :]
    with pytest.raises(record_batch.InvalidBatch, match="last offset delta"):
        record_batch.check(record_batch.build(0, 0, 0, 0, 0, 0, body))
    with pytest.raises(record_batch.InvalidBatch, match="transactional"):
        record_batch.check(record_batch.build(0, 0, record_batch.TRANSACTIONAL, 3, 0, 0, body))


def test_conversions_both_ways_and_once() -> None:
    kafka = record_batch.patched(record_batch.encode(RECORDS, 0, 9_000, False), 10, 0)
    stored = build_stored_kafka(kafka, 3, 9_000, 2_000)
    item = b"\x00" + stored  # what a read hands out for it
    conversions = Conversions()
    (grpc,) = conversions.as_grpc(1, 0, [item])
    batch = RecordBatch.FromString(grpc)
    assert batch.base_offset == 10 and batch.append_time_ms == 9_000 and list(batch.records) == RECORDS
    assert records_crc(RecordBatch(records=batch.records).SerializeToString()) == batch.crc32c
    assert conversions.as_grpc(1, 0, [item]) == [grpc] and conversions.converted == 1  # cached
    assert conversions.as_kafka(1, 0, [item], False) == [kafka]  # its own format: as stored

    encoded = RecordBatch(records=[Record(value=b"a"), Record(key=b"b", value=b"c")]).SerializeToString()
    wire = build_stored(encoded, 2, 20, 7_000, 7_000, records_crc(encoded))[HEADER_SIZE:]
    (converted,) = conversions.as_kafka(1, 0, [wire], log_append_time=False)
    head = record_batch.check(converted)
    assert (head.base_offset, head.count, head.max_timestamp) == (20, 2, 7_000)
    assert [r.timestamp_ms for r in record_batch.records_of(converted)] == [7_000, 7_000]  # 0: the append time
    assert conversions.as_grpc(1, 0, [wire]) == [wire]


def test_stored_heads_in_either_format() -> None:
    kafka = record_batch.build(5, 0, 0, 1, 0, 0, ONE_RECORD, producer=(42, 3, 17))
    assert stored_head(build_stored_kafka(kafka, 1, 0, 0)) == (5, 42, 17, 3)
    encoded = RecordBatch(records=[Record(value=b"a")]).SerializeToString()
    assert stored_head(build_stored(encoded, 1, 8, 0, 0, 0, producer=(9, 4))) == (8, 9, 4, 0)


def test_producer_state_written_before_epochs_reads_as_epoch_0() -> None:
    old = keys.PRODUCER_HEAD_WITHOUT_EPOCH.pack(123) + keys.PRODUCER_ENTRY.pack(4, 2, 10, 99)
    assert keys.decode_producer(old) == [ProducerBatch(4, 2, 10, 99, 0)]
    assert keys.decode_producer(keys.PRODUCER_HEAD_WITHOUT_EPOCH.pack(1)) == []
    new = [ProducerBatch(4, 2, 10, 99, 6), ProducerBatch(6, 1, 12, 99, 6)]
    assert keys.decode_producer(keys.encode_producer(new, 123)) == new
    assert keys.decode_producer(keys.encode_producer([], 123)) == []


class KafkaProducer:
    """Writes one-record Kafka batches through ProduceOp, as the Kafka produce path does."""

    def __init__(self) -> None:
        self.store = MemoryStore()
        record = TopicRecord(1, "t", 1, {})
        with self.store.write() as txn:
            txn.create_topic(record)
        self.topic = TopicState(record, [PartitionStats()])

    def send(self, epoch: int, sequence: int) -> int:
        kafka = record_batch.build(0, 0, 0, 1, 0, 0, ONE_RECORD, producer=(7, epoch, sequence))
        append = PartitionAppend(0, kafka, 1, -1, True, 0, kafka=True)
        op = ProduceOp(self.topic, [append], 7, sequence, epoch)
        with self.store.write() as txn:
            result = op.apply(txn, 1_000)
        op.publish(result)
        return result[0][0].base_offset


def test_kafka_producer_epochs_sequences_and_their_wrap() -> None:
    producer = KafkaProducer()
    with pytest.raises(BrokerError) as unknown:
        producer.send(0, 5)  # no state here: a producer starts at 0
    assert unknown.value.reason == Reason.UNKNOWN_PRODUCER
    assert [producer.send(0, 0), producer.send(0, 1), producer.send(0, 0)] == [0, 1, 0]  # the retry: its offset
    assert producer.send(1, 0) == 2  # a bumped epoch starts again at 0
    with pytest.raises(BrokerError) as fenced:
        producer.send(0, 2)
    assert fenced.value.reason == Reason.PRODUCER_FENCED
    with pytest.raises(BrokerError) as gap:
        producer.send(1, 5)
    assert gap.value.reason == Reason.OUT_OF_ORDER_SEQUENCE


def test_kafka_sequences_wrap_at_int32() -> None:
    producer = KafkaProducer()
    producer.send(0, 0)
    with producer.store.write() as txn:  # as if 2^31 - 1 records had been sent
        txn.put_producer_batches(1, 0, 7, [ProducerBatch(KAFKA_SEQUENCE_WRAP - 1, 1, 0, 0, 0)], 0)
    assert producer.send(0, 0) == 1
