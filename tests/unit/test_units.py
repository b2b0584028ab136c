"""Pure logic: wire encoding, the partitioner, topic configs, names, stored-batch slicing."""

from __future__ import annotations

import pytest

from tidelog._wire import encode_record
from tidelog.broker.batches import HEADER_SIZE, build_stored, frame_batches, records_crc, slice_wire
from tidelog.broker.errors import BrokerError
from tidelog.broker.log import topic_config
from tidelog.broker.names import check_limit, check_topic_name
from tidelog.common.partitioner import murmur2, partition_for_key
from tidelog.common.reasons import Reason
from tidelog.common.varint import varint
from tidelog.v1 import broker_pb2, records_pb2


@pytest.mark.parametrize(
    ("key", "value", "headers", "ts"),
    [
        (None, b"v", None, 0),
        (b"k", b"", [("a", b"1"), ("a", b"")], 1_700_000_000_000),
        (b"k" * 300, None, None, 5),
        (None, b"x" * 70_000, [("h" * 200, b"y" * 200)], 2**62),
        *((None, b"x" * n, None, ts) for n in (0, 100, 115, 116, 117, 127, 128, 300) for ts in (0, 1_700_000_000_000)),
    ],
)
def test_hand_encoded_record_equals_protobuf(key, value, headers, ts) -> None:  # type: ignore[no-untyped-def]
    record = records_pb2.Record(
        key=key or b"", timestamp_ms=ts, headers=[records_pb2.Header(key=k, value=v) for k, v in headers or []]
    )
    if value is not None:
        record.value = value
    expected = broker_pb2.ProduceRequest(records=[record]).SerializeToString()
    assert encode_record(key, value, headers, ts) == expected


def test_varint() -> None:
    for n in (0, 1, 127, 128, 300, 2**32, 2**63 - 1):
        message = records_pb2.Record(timestamp_ms=n).SerializeToString()
        assert message == b"\x20" + varint(n) or n == 0


def test_murmur2_matches_kafka() -> None:
    # Reference values from Kafka's own partitioner tests.
    assert murmur2(b"21") == -973932308
    assert murmur2(b"foobar") == -790332482
    assert murmur2(b"a-little-bit-long-string") == -985981536
    assert murmur2(b"a-little-bit-longer-string") == -1486304829
    assert murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") == -58897971
    assert murmur2(b"abc") == 479470107
    assert all(0 <= partition_for_key(bytes([i]), 7) < 7 for i in range(256))


def test_topic_config_table() -> None:
    assert topic_config.effective({})["retention.ms"] == "604800000"
    assert topic_config.effective({"retention.ms": "-1"})["retention.ms"] == "-1"
    assert topic_config.validate({"cleanup.policy": "compact,delete"}) == {"cleanup.policy": "compact,delete"}
    with pytest.raises(BrokerError) as caught:
        topic_config.validate({"segment.bytes": "1"})
    assert caught.value.reason == Reason.UNKNOWN_CONFIG


@pytest.mark.parametrize("name", ["a", "A-b_c.9", "x" * 249, "..."])
def test_good_topic_names(name: str) -> None:
    check_topic_name(name)


def test_limits() -> None:
    assert check_limit("max_bytes", 0, 100, 1000) == 100
    assert check_limit("max_bytes", 5000, 100, 1000) == 1000
    with pytest.raises(BrokerError):
        check_limit("max_bytes", -1, 100, 1000)


def test_stored_batch_passes_through_and_slices() -> None:
    records = [records_pb2.Record(value=str(i).encode(), timestamp_ms=10 + i) for i in range(5)]
    records_bytes = broker_pb2.ProduceRequest(records=records).SerializeToString()
    stored = build_stored(records_bytes, 5, 100, 999, 14, records_crc(records_bytes))
    wire = stored[HEADER_SIZE:]
    batch = records_pb2.RecordBatch.FromString(wire)
    assert (batch.base_offset, batch.append_time_ms, batch.max_timestamp_ms) == (100, 999, 14)
    assert list(batch.records) == records
    assert batch.crc32c == records_crc(records_pb2.RecordBatch(records=records).SerializeToString())

    cut = slice_wire(wire, 100, 2, 2)
    assert cut is not None
    sliced = records_pb2.RecordBatch.FromString(cut)
    assert sliced.base_offset == 102 and list(sliced.records) == records[2:4]
    assert sliced.crc32c == records_crc(records_pb2.RecordBatch(records=records[2:4]).SerializeToString())

    framed = broker_pb2.FetchResponse.FromString(
        frame_batches([wire, wire]) + broker_pb2.FetchResponse(high_watermark=7).SerializeToString()
    )
    assert len(framed.batches) == 2 and framed.high_watermark == 7


def test_compaction_keeps_runs_of_survivors_at_their_offsets() -> None:
    from tidelog.broker.log.compaction import _runs

    batch = records_pb2.RecordBatch(records=[records_pb2.Record(key=b"k%d" % i, value=b"v%d" % i) for i in range(5)])
    runs = _runs(batch.records, 100, [False, True, True, False, True], append_ms=7)
    assert [run.base_offset for run in runs] == [101, 104] and [run.count for run in runs] == [2, 1]
    first = records_pb2.RecordBatch.FromString(runs[0].value[HEADER_SIZE:])
    assert first.base_offset == 101 and [r.value for r in first.records] == [b"v1", b"v2"]
    assert first.crc32c == records_crc(records_pb2.RecordBatch(records=first.records).SerializeToString())


def test_min_insync_replicas_defaults_to_two_and_cannot_exceed_the_replicas() -> None:
    assert topic_config.with_min_insync_replicas({}, 1) == {}  # one copy: the table's default (1) holds
    assert topic_config.with_min_insync_replicas({}, 3) == {"min.insync.replicas": "2"}
    assert topic_config.with_min_insync_replicas({}, 2) == {"min.insync.replicas": "2"}
    assert topic_config.with_min_insync_replicas({"min.insync.replicas": "3"}, 3)["min.insync.replicas"] == "3"
    for configs, factor in [({"min.insync.replicas": "2"}, 1), ({"min.insync.replicas": "4"}, 3)]:
        with pytest.raises(BrokerError) as caught:
            topic_config.with_min_insync_replicas(configs, factor)
        assert caught.value.reason is Reason.INVALID_CONFIG
