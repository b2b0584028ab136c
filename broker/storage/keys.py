"""Every LMDB key and value layout, in one place. Keys are fixed-width big-endian, so LMDB's byte order
is log order; a numeric topic id (not the name) makes delete-then-recreate safe.

Named databases:
  meta       format version, LMDB's data format, the time-index mark, id counters, freed_at_ns
  topics     topic name (UTF-8) -> JSON {id, partitions, configs}
  log        LOG_KEY (topic_id u32, partition u32, base_offset u64) -> stored batch (broker.batches)
  stats      PARTITION_KEY (topic_id, partition) -> STATS (next_offset, log_start_offset, size_bytes),
             written with the batches, so start-up never scans the log
  producers  PRODUCER_KEY (topic_id, partition, producer_id u64) -> PRODUCER_HEAD (last_seen_ms, epoch)
             and up to 5 PRODUCER_ENTRY (first_sequence, record_count, base_offset, append_time_ms); values
             written before epochs existed have an 8-byte head (last_seen_ms): the lengths tell them apart
  deleting   TOPIC_ID (topic_id) -> b"" for deleted topics whose data is still being purged
  offsets    group (UTF-8, no NUL) 0x00 PARTITION_KEY -> OFFSET_VALUE (offset i64, commit time ms i64)
  timeindex  TIME_KEY (topic_id, partition, timestamp i64) -> OFFSET (base offset u64), whenever a batch
             raises the partition's largest timestamp (storage.time_index)
  acls       an ACL rule added by CreateAcls (its text) -> b""
  hwmarks    PARTITION_KEY -> OFFSET: a replicated partition's checkpointed high watermark
  epochs     EPOCH_KEY (topic_id, partition, leader_epoch u32) -> OFFSET (where that epoch's records
             start; a replicated partition's leader epoch cache, log.epochs)
"""

from __future__ import annotations

import json
import struct

from tidelog.broker.storage.interface import PartitionStats, ProducerBatch, TopicRecord

LOG_KEY = struct.Struct(">IIQ")
PARTITION_KEY = struct.Struct(">II")
TOPIC_ID = struct.Struct(">I")
COUNTER = struct.Struct(">Q")
STATS = struct.Struct(">QQQ")
PRODUCER_KEY = struct.Struct(">IIQ")
PRODUCER_HEAD = struct.Struct(">qh")
PRODUCER_HEAD_WITHOUT_EPOCH = struct.Struct(">q")
PRODUCER_ENTRY = struct.Struct(">qIqq")
PRODUCER_BATCHES_KEPT = 5
OFFSET_VALUE = struct.Struct(">qq")
TIME_KEY = struct.Struct(">IIq")  # timestamps are >= 0, so signed big-endian sorts like the numbers
OFFSET = struct.Struct(">Q")
EPOCH_KEY = struct.Struct(">III")
COUNTERS = {"topic": b"next_topic_id", "producer": b"next_producer_id"}


def encode_topic(record: TopicRecord) -> bytes:
    return json.dumps({"id": record.id, "partitions": record.partitions, "configs": record.configs}).encode()


def decode_topic(name: bytes, value: bytes) -> TopicRecord:
    doc = json.loads(value)
    return TopicRecord(doc["id"], bytes(name).decode(), doc["partitions"], doc["configs"])


def encode_stats(stats: PartitionStats) -> bytes:
    return STATS.pack(stats.next_offset, stats.log_start_offset, stats.size_bytes)


def decode_stats(value: bytes) -> PartitionStats:
    return PartitionStats(*STATS.unpack(value))


def group_prefix(group: str) -> bytes:
    return group.encode() + b"\x00"


def offset_key(group: str, topic_id: int, partition: int) -> bytes:
    return group_prefix(group) + PARTITION_KEY.pack(topic_id, partition)


def encode_producer(batches: list[ProducerBatch], now_ms: int) -> bytes:
    """A producer's last batches; they share one epoch (a new epoch starts a new history)."""
    kept = batches[-PRODUCER_BATCHES_KEPT:]
    epoch = kept[-1].epoch if kept else 0
    return PRODUCER_HEAD.pack(now_ms, epoch) + b"".join(
        PRODUCER_ENTRY.pack(b.first_sequence, b.count, b.base_offset, b.append_time_ms) for b in kept
    )


def decode_producer(value: bytes) -> list[ProducerBatch]:
    if (len(value) - PRODUCER_HEAD_WITHOUT_EPOCH.size) % PRODUCER_ENTRY.size == 0:
        head, epoch = PRODUCER_HEAD_WITHOUT_EPOCH.size, 0
    else:
        head, epoch = PRODUCER_HEAD.size, PRODUCER_HEAD.unpack_from(value)[1]
    batches = []
    for pos in range(head, len(value), PRODUCER_ENTRY.size):
        first_sequence, count, base_offset, append_time_ms = PRODUCER_ENTRY.unpack_from(value, pos)
        batches.append(ProducerBatch(first_sequence, count, base_offset, append_time_ms, epoch))
    return batches
