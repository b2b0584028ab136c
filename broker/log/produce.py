"""Turning a ProduceRequest into a ProduceOp: validation, routing, and the batch bytes.

The per-record work is kept to reading timestamps (one list comprehension); record
bytes are never re-built record by record when the request names its partition:
clearing the request's other fields leaves exactly the `records` encoding, which
is also a RecordBatch's (both use field 1).
"""

from __future__ import annotations

from collections.abc import Sequence

from tidelog.broker.batches import records_crc, records_of
from tidelog.broker.errors import BrokerError, invalid_request
from tidelog.broker.log.ops import PartitionAppend, ProduceOp
from tidelog.broker.log.topics import TopicRegistry, TopicState
from tidelog.common import compression
from tidelog.common.partitioner import partition_for_key
from tidelog.common.reasons import Reason
from tidelog.v1.broker_pb2 import ProduceRequest
from tidelog.v1.records_pb2 import Record, RecordBatch


def check_partition(topic: TopicState, partition: int) -> None:
    if not 0 <= partition < len(topic.partitions):
        raise BrokerError(
            Reason.PARTITION_OUT_OF_RANGE,
            f"partition {partition} is out of range: topic {topic.name!r} has partitions 0-{len(topic.partitions) - 1}",
            topic=topic.name,
            partitions=len(topic.partitions),
        )


def prepare_produce(request: ProduceRequest, registry: TopicRegistry, request_size: int) -> ProduceOp:
    topic = registry.get(request.topic)
    records = request.records
    count = len(records)
    if count == 0 and not request.compression:
        raise BrokerError(Reason.EMPTY_RECORDS, "a produce request needs at least one record", topic=topic.name)
    idempotent = request.HasField("producer_id")
    if idempotent != request.HasField("sequence"):
        raise invalid_request("producer_id and sequence must be given together")
    if idempotent and not request.HasField("partition"):
        raise invalid_request("an idempotent produce (producer_id and sequence) must name its partition")
    if idempotent and (request.sequence < 0 or request.producer_id <= 0):
        raise invalid_request("producer_id must come from InitProducer and sequence must be >= 0")
    if request.compression:
        append = _compressed_append(request, topic)
        if idempotent:
            return ProduceOp(topic, [append], request.producer_id, request.sequence)
        return ProduceOp(topic, [append])
    if request_size > topic.max_message_bytes:
        _check_record_sizes(topic, records)
    timestamps = [r.timestamp_ms for r in records]
    if min(timestamps) < 0:
        raise invalid_request("record timestamp_ms must be >= 0 (0 = the append time)")
    if topic.compacted and not all(r.key for r in records):
        raise BrokerError(
            Reason.KEY_REQUIRED,
            f"topic {topic.name!r} is compacted: every record needs a non-empty key",
            topic=topic.name,
        )

    if request.HasField("partition"):
        check_partition(topic, request.partition)
        partition = request.partition
        producer_id = request.producer_id if idempotent else None
        sequence = request.sequence if idempotent else None
        for descriptor, _ in request.ListFields():  # the rest is the request's own, not the batch's
            if descriptor.name != "records":
                request.ClearField(descriptor.name)  # type: ignore[arg-type]
        request.DiscardUnknownFields()
        appends = [_append(partition, request.SerializeToString(), count, timestamps)]
        return ProduceOp(topic, appends, producer_id, sequence)
    return ProduceOp(topic, _route_by_key(topic, records, timestamps))


def _append(partition: int, records_bytes: bytes, count: int, timestamps: list[int]) -> PartitionAppend:
    return PartitionAppend(
        partition=partition,
        records=records_bytes,
        count=count,
        max_timestamp_ms=max(timestamps),
        has_unstamped=min(timestamps) == 0,
        crc=records_crc(records_bytes),
    )


def _compressed_append(request: ProduceRequest, topic: TopicState) -> PartitionAppend:
    """A compressed batch, checked without decompressing it (but a compacted topic's: its keys)."""
    if request.records:
        raise invalid_request("give records or a compressed batch (compression, compressed_records), not both")
    if not request.HasField("partition"):
        raise invalid_request("a compressed batch must name its partition (the producer places its records)")
    check_partition(topic, request.partition)
    if request.record_count < 1:
        raise BrokerError(Reason.EMPTY_RECORDS, "a compressed batch needs record_count >= 1", topic=topic.name)
    frame = request.compressed_records
    if len(frame) > topic.max_message_bytes:
        raise BrokerError(
            Reason.RECORD_TOO_LARGE,
            f"a compressed batch of {len(frame)} bytes, above topic {topic.name!r}'s max.message.bytes "
            f"({topic.max_message_bytes}): send smaller batches",
            topic=topic.name,
            max_message_bytes=topic.max_message_bytes,
        )
    if request.min_timestamp_ms < 0 or request.max_timestamp_ms < request.min_timestamp_ms:
        raise invalid_request("min_timestamp_ms must be >= 0 and at most max_timestamp_ms (0 = the append time)")
    try:
        compression.content_size(request.compression, frame)
    except compression.CorruptBatch as err:
        raise invalid_request(f"a corrupt compressed batch: {err}; nothing was written") from None
    records_bytes = compression.encoded_part(request.compression, frame)
    crc = records_crc(records_bytes)
    if crc != request.crc32c:
        raise invalid_request(
            f"a corrupt compressed batch: its crc32c is {request.crc32c}, its bytes' {crc} (damaged on the way, "
            "or not computed over fields 8 and 9 as encoded); nothing was written"
        )
    if topic.compacted:
        _check_compacted_keys(topic, request, records_bytes)
    return PartitionAppend(
        partition=request.partition,
        records=records_bytes,
        count=request.record_count,
        max_timestamp_ms=request.max_timestamp_ms,
        has_unstamped=request.min_timestamp_ms == 0,
        crc=crc,
    )


def _check_compacted_keys(topic: TopicState, request: ProduceRequest, records_bytes: bytes) -> None:
    """Compaction needs every record keyed: a compacted topic's compressed batch is opened to see."""
    try:
        records = records_of(RecordBatch.FromString(records_bytes))
    except compression.CorruptBatch as err:
        raise invalid_request(f"a corrupt compressed batch: {err}; nothing was written") from None
    if len(records) != request.record_count:
        raise invalid_request(f"record_count is {request.record_count}, the batch holds {len(records)} records")
    if not all(r.key for r in records):
        raise BrokerError(
            Reason.KEY_REQUIRED,
            f"topic {topic.name!r} is compacted: every record needs a non-empty key",
            topic=topic.name,
        )


def _route_by_key(topic: TopicState, records: Sequence[Record], timestamps: list[int]) -> list[PartitionAppend]:
    """Keyed records by murmur2 of the key; the keyless records of a request go together, in turn."""
    partitions = len(topic.partitions)
    keyless_partition: int | None = None
    routed: dict[int, list[int]] = {}
    for i, record in enumerate(records):
        if record.key:
            partition = partition_for_key(record.key, partitions)
        else:
            if keyless_partition is None:
                keyless_partition = topic.next_keyless_partition()
            partition = keyless_partition
        routed.setdefault(partition, []).append(i)
    appends = []
    for partition, indexes in sorted(routed.items()):
        part = ProduceRequest()
        part.records.extend(records[i] for i in indexes)
        part.DiscardUnknownFields()
        appends.append(_append(partition, part.SerializeToString(), len(indexes), [timestamps[i] for i in indexes]))
    return appends


def _check_record_sizes(topic: TopicState, records: Sequence[Record]) -> None:
    for index, record in enumerate(records):
        size = record.ByteSize()
        if size > topic.max_message_bytes:
            raise BrokerError(
                Reason.RECORD_TOO_LARGE,
                f"record {index} is {size} bytes, above topic {topic.name!r}'s max.message.bytes "
                f"({topic.max_message_bytes})",
                topic=topic.name,
                max_message_bytes=topic.max_message_bytes,
            )
