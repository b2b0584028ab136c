"""`tidelog verify` and `tidelog backup`: check every stored batch, and copy a live data directory.

Both open the LMDB environment beside a running broker (LMDB allows several processes) and work in
one read transaction: a consistent snapshot that the broker's writes do not disturb.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tidelog.broker.batches import HEADER_SIZE, VALUE_HEADER, holds_kafka, kafka_batch, records_crc, records_of
from tidelog.broker.kafka import record_batch
from tidelog.broker.storage import keys
from tidelog.broker.storage.interface import TopicRecord
from tidelog.broker.storage.keys import LOG_KEY, PARTITION_KEY
from tidelog.broker.storage.lmdb_store import LmdbStore
from tidelog.common.compression import CorruptBatch
from tidelog.v1.records_pb2 import RecordBatch


@dataclass
class VerifyReport:
    topics: int = 0
    partitions: int = 0
    batches: int = 0
    records: int = 0
    bytes: int = 0
    problems: list[str] = field(default_factory=list)


def open_existing(data_dir: Path) -> LmdbStore:
    if not (data_dir / "data.mdb").exists():
        raise FileNotFoundError(f"{data_dir} holds no Tidelog data (no data.mdb): check --data-dir")
    return LmdbStore(data_dir, sync=True, map_size=64 << 30)


def verify(store: LmdbStore) -> VerifyReport:
    """Every batch's CRC32C, record count and offsets, and every partition's stats against its log."""
    report = VerifyReport()
    with store.env.begin(buffers=True) as txn:
        for name, value in txn.cursor(db=store.topics):
            topic = keys.decode_topic(bytes(name), bytes(value))
            report.topics += 1
            for partition in range(topic.partitions):
                report.partitions += 1
                _verify_partition(store, txn, topic, partition, report)
    return report


def _verify_partition(store: LmdbStore, txn: object, topic: TopicRecord, partition: int, report: VerifyReport) -> None:
    where = f"{topic.name}/{partition}"
    raw = txn.get(PARTITION_KEY.pack(topic.id, partition), db=store.stats)  # type: ignore[attr-defined]
    if raw is None:
        report.problems.append(f"{where}: no stats record")
        return
    stats = keys.decode_stats(bytes(raw))
    prefix = PARTITION_KEY.pack(topic.id, partition)
    cursor = txn.cursor(db=store.log)  # type: ignore[attr-defined]
    expected = None  # the base offset the next batch must have
    size = 0
    found = cursor.set_range(prefix)
    while found and cursor.key()[:8] == prefix:
        base = LOG_KEY.unpack(cursor.key())[2]
        value = bytes(cursor.value())
        count, max_ts, append_ms = VALUE_HEADER.unpack_from(value)
        size += len(value)
        report.batches += 1
        report.records += count
        report.bytes += len(value)
        if holds_kafka(value):
            problem = _check_kafka_batch(kafka_batch(value), base, count)
        else:
            problem = _check_batch(value[HEADER_SIZE:], base, count, max_ts, append_ms)
        if expected is None and base < stats.log_start_offset:
            problem = problem or f"batch below the log start {stats.log_start_offset}"
        if expected is not None and base < expected:  # gaps are fine: compaction leaves them
            problem = problem or f"overlaps the batch before (which ends at {expected})"
        if problem:
            report.problems.append(f"{where} batch at offset {base}: {problem}")
        expected = base + count
        found = cursor.next()
    if expected is not None and expected > stats.next_offset:  # below it is fine: compaction
        report.problems.append(f"{where}: the log ends at {expected} but stats say {stats.next_offset}")
    if size != stats.size_bytes:
        report.problems.append(f"{where}: the log holds {size} bytes but stats say {stats.size_bytes}")


def _check_batch(wire: bytes, base: int, count: int, max_ts: int, append_ms: int) -> str:
    try:
        batch = RecordBatch.FromString(wire)
    except Exception as err:  # DecodeError, or worse: either way the bytes are damaged
        return f"not a valid RecordBatch ({err})"
    head = RecordBatch(
        base_offset=batch.base_offset,
        append_time_ms=batch.append_time_ms,
        max_timestamp_ms=batch.max_timestamp_ms,
        crc32c=batch.crc32c,
        producer_id=batch.producer_id,
        base_sequence=batch.base_sequence,
    ).SerializeToString()
    if not wire.startswith(head):
        return "the batch header is not where it should be"
    if records_crc(wire[len(head) :]) != batch.crc32c:
        return "CRC32C mismatch: the records are damaged"
    try:
        records = len(records_of(batch))
    except CorruptBatch as err:
        return f"a compressed batch that does not decompress ({err})"
    if batch.base_offset != base or records != count:
        return f"the batch says offset {batch.base_offset} with {records} records, its key {base} and {count}"
    if batch.append_time_ms != append_ms or batch.max_timestamp_ms != max_ts:
        return "the stored header and the batch disagree on timestamps"
    return ""


def _check_kafka_batch(batch: memoryview, base: int, count: int) -> str:
    try:
        head = record_batch.check(batch)
        records = len(record_batch.records_of(batch))
    except (record_batch.InvalidBatch, CorruptBatch) as err:
        return f"a Kafka batch that is damaged ({err})"
    if head.base_offset != base or records != count or head.count != count:
        return f"the Kafka batch says offset {head.base_offset} with {records} records, its key {base} and {count}"
    return ""


def backup(store: LmdbStore, destination: Path) -> int:
    """A compacted, consistent copy of the whole environment in `destination` (new or empty); its bytes."""
    destination.mkdir(parents=True, exist_ok=True)
    if any(destination.iterdir()):
        raise FileExistsError(f"{destination} is not empty: back up into a new or empty directory")
    store.env.copy(str(destination), compact=True)
    return (destination / "data.mdb").stat().st_size
