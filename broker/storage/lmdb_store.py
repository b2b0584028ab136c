"""The LMDB environment: schema, keys, start-up loading and the read path.

Named databases:
  meta       format version and id counters
  topics     topic name -> JSON {id, partitions, configs}
  log        (topic_id u32, partition u32, base_offset u64) -> stored batch (broker.batches)
  stats      (topic_id, partition) -> (next_offset, log_start_offset, size_bytes), written in
             the same transaction as the batches, so start-up never scans the log
  producers  (topic_id, partition, producer_id u64) -> idempotence state (broker.ops)
  deleting   topic_id -> b"" for deleted topics whose log is still being purged
  offsets    (group name, 0x00, topic_id, partition) -> committed offset (broker.group_offsets)
  timeindex  (topic_id, partition, timestamp) -> base offset, as the largest timestamp grows (broker.time_index)
  acls       an ACL rule added by CreateAcls (its text) -> b"" (broker.acls)

Keys are fixed-width big-endian so that LMDB's key order is log order.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lmdb
import structlog

from tidelog.broker.batches import HEADER_SIZE, VALUE_HEADER, slice_wire
from tidelog.broker.storage import time_index
from tidelog.v1.records_pb2 import RecordBatch

log = structlog.get_logger("tidelog.store")

FORMAT_VERSION = 1
# LMDB's on-disk format changes only between major.minor versions of the C library.
LMDB_FORMAT = "{}.{}".format(*lmdb.version()[:2])
LOG_KEY = struct.Struct(">IIQ")
PARTITION_KEY = struct.Struct(">II")
TOPIC_ID = struct.Struct(">I")
COUNTER = struct.Struct(">Q")
STATS = struct.Struct(">QQQ")


@dataclass(frozen=True)
class TopicRecord:
    id: int
    name: str
    partitions: int
    configs: dict[str, str]

    def encode(self) -> bytes:
        return json.dumps({"id": self.id, "partitions": self.partitions, "configs": self.configs}).encode()

    @classmethod
    def decode(cls, name: bytes, value: bytes) -> TopicRecord:
        doc = json.loads(value)
        return cls(doc["id"], name.decode(), doc["partitions"], doc["configs"])


@dataclass(frozen=True)
class PartitionStats:
    next_offset: int = 0
    log_start_offset: int = 0
    size_bytes: int = 0

    def encode(self) -> bytes:
        return STATS.pack(self.next_offset, self.log_start_offset, self.size_bytes)

    @classmethod
    def decode(cls, value: bytes | None) -> PartitionStats:
        return cls(*STATS.unpack(value)) if value else cls()


@dataclass(frozen=True)
class ReadResult:
    batches: list[bytes]
    next_offset: int


class FormatMismatch(Exception):
    pass


class Store:
    def __init__(self, path: Path, *, sync: bool, map_size: int, max_map_size: int | None = None) -> None:
        """`map_size`: where the map starts (at least the data already there); it grows up to `max_map_size`."""
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        existing = (path / "data.mdb").stat().st_size if (path / "data.mdb").exists() else 0
        self.max_map_size = max(max_map_size or map_size, existing)
        map_size = min(self.max_map_size, max(map_size, existing * 2))
        # Held by reads on threads other than the event loop's, and by a map resize (which must not
        # run while any transaction of this process is open).
        self._resize_lock = threading.Lock()
        self.env = lmdb.open(
            str(path),
            map_size=map_size,
            max_dbs=16,
            max_readers=1024,
            # --fsync interval: data pages are still synced at each commit, only the meta page waits
            # for the timed env.sync(). A power loss then rolls back to an older, intact transaction;
            # sync=False (MDB_NOSYNC) could leave a damaged file where writes are reordered.
            sync=True,
            metasync=sync,
            readahead=False,
        )
        # A kill -9 leaves stale reader slots behind; free them before serving.
        self.env.reader_check()
        self.meta = self.env.open_db(b"meta")
        self.topics = self.env.open_db(b"topics")
        self.log = self.env.open_db(b"log")
        self.stats = self.env.open_db(b"stats")
        self.producers = self.env.open_db(b"producers")
        self.deleting = self.env.open_db(b"deleting")
        self.offsets = self.env.open_db(b"offsets")
        self.timeindex = self.env.open_db(b"timeindex")
        self.acls = self.env.open_db(b"acls")
        self._check_format()

    def _check_format(self) -> None:
        """Refuse a data directory written by an incompatible Tidelog or LMDB (a patch release of
        either is compatible: LMDB's on-disk format is fixed within a major.minor series)."""
        lmdb_format = LMDB_FORMAT.encode()
        with self.env.begin(db=self.meta) as txn:
            found, found_lmdb = txn.get(b"format"), txn.get(b"lmdb_format")
            indexed = txn.get(b"time_index") == b"complete"
        # A directory from before the time index has batches it never saw: lookups scan there.
        self.time_index_complete = found is None or indexed
        if found is None or found_lmdb is None:  # a new directory, or one from before the LMDB check
            with self.env.begin(write=True, db=self.meta) as txn:
                if found is None:
                    txn.put(b"format", str(FORMAT_VERSION).encode())
                    txn.put(b"time_index", b"complete")  # every batch of a new directory is indexed
                if found_lmdb is None:
                    txn.put(b"lmdb_format", lmdb_format)
        problems = []
        if found is not None and int(found) != FORMAT_VERSION:
            problems.append(f"Tidelog format {int(found)} (this broker reads format {FORMAT_VERSION})")
        if found_lmdb is not None and bytes(found_lmdb) != lmdb_format:
            problems.append(
                f"LMDB data format {bytes(found_lmdb).decode()} (this broker's LMDB library is {LMDB_FORMAT}.x, "
                f"py-lmdb {lmdb.__version__})"
            )
        if problems:
            self.env.close()
            raise FormatMismatch(
                f"data directory {self.path} was written with {' and '.join(problems)}; run the Tidelog release "
                "(and py-lmdb) that wrote it, copy its topics into a fresh --data-dir with that release, or start "
                "this one on a fresh --data-dir"
            )

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """Around a read transaction on a worker thread: a map resize waits for it to end."""
        with self._resize_lock:
            yield

    def free_disk_bytes(self) -> int:
        stat = os.statvfs(self.path)
        return stat.f_bavail * stat.f_frsize

    @property
    def map_reserve(self) -> int:
        """The top of the map kept for writes that free space: LMDB needs new pages even to delete."""
        return min(self.max_map_size // 8, 256 << 20)

    def grow_map(self, into_reserve: bool = False) -> bool:
        """Double the map, up to max_map_size less the reserve (into it for writes that free space);
        False at the limit. No transaction may be open in this process (the writer calls it between
        commits, on the event loop)."""
        current = self.env.info()["map_size"]
        limit = self.max_map_size if into_reserve else self.max_map_size - self.map_reserve
        grown = min(limit, max(current * 2, current + (1 << 20)))
        if grown <= current:
            return False
        with self._resize_lock:
            self.env.set_mapsize(grown)
        log.info("map_grown", map_size=grown, max_map_size=self.max_map_size)
        return True

    def release_freed_pages(self) -> None:
        """Commit a tiny transaction. LMDB reuses the pages a commit freed only once a later transaction
        has committed; on a full disk no other write could, so the freed space would never be used."""
        with self.env.begin(write=True, db=self.meta) as txn:
            txn.put(b"freed_at_ns", str(time.time_ns()).encode())

    def close(self) -> None:
        self.env.sync(True)
        self.env.close()

    def sync(self) -> None:
        self.env.sync(True)

    # -- start-up -------------------------------------------------------------

    def stored_acls(self) -> list[str]:
        with self.env.begin(db=self.acls) as txn:
            return [bytes(key).decode() for key in txn.cursor().iternext(values=False)]

    def load(self) -> tuple[list[tuple[TopicRecord, list[PartitionStats]]], list[int]]:
        """Every topic with its partition stats, and topic ids still being purged."""
        topics: list[tuple[TopicRecord, list[PartitionStats]]] = []
        with self.env.begin() as txn:
            for name, value in txn.cursor(db=self.topics):
                topic = TopicRecord.decode(name, value)
                stats = [
                    PartitionStats.decode(txn.get(PARTITION_KEY.pack(topic.id, p), db=self.stats))
                    for p in range(topic.partitions)
                ]
                topics.append((topic, stats))
            deleting = [TOPIC_ID.unpack(k)[0] for k in txn.cursor(db=self.deleting).iternext(values=False)]
        return topics, deleting

    # -- read path --------------------------------------------------------------

    def read(
        self,
        topic_id: int,
        partition: int,
        offset: int,
        high_watermark: int,
        max_records: int,
        max_bytes: int,
    ) -> ReadResult:
        """Batches from `offset` (the first re-sliced to start exactly there), below the high watermark.

        The first batch is always returned whole-or-sliced even above max_bytes, so a
        reader always makes progress; later batches pass through unparsed while they fit.
        """
        prefix = PARTITION_KEY.pack(topic_id, partition)
        wire_batches: list[bytes] = []
        next_offset = offset
        total_bytes = 0
        total_records = 0
        with self.env.begin(db=self.log, buffers=True) as txn:
            cursor = txn.cursor()
            if not _seek(cursor, prefix, offset):
                return ReadResult(wire_batches, next_offset)
            while True:
                base = LOG_KEY.unpack(cursor.key())[2]
                if base >= high_watermark:
                    break
                value = cursor.value()
                count = VALUE_HEADER.unpack_from(value)[0]
                if not wire_batches:
                    skip = max(0, offset - base)
                    keep = min(count - skip, max_records)
                    wire = bytes(value[HEADER_SIZE:])
                    if skip or keep < count:
                        wire = slice_wire(wire, base, skip, keep)
                    next_offset = base + skip + keep
                    total_records = keep
                else:
                    size = len(value) - HEADER_SIZE
                    if total_records + count > max_records or total_bytes + size > max_bytes:
                        break
                    wire = bytes(value[HEADER_SIZE:])
                    next_offset = base + count
                    total_records += count
                wire_batches.append(wire)
                total_bytes += len(wire)
                if total_records >= max_records or total_bytes >= max_bytes:
                    break
                if not cursor.next() or cursor.key()[:8] != prefix:
                    break
        return ReadResult(wire_batches, next_offset)

    def offset_for_timestamp(
        self, topic_id: int, partition: int, start: int, high_watermark: int, timestamp_ms: int, append_time: bool
    ) -> tuple[int, int] | None:
        """The first (offset, timestamp) whose timestamp is >= timestamp_ms, or None.

        Seeks with the time index, then scans batch headers (max_timestamp_ms needs no parse)
        and parses only the batch that holds the answer.
        """
        prefix = PARTITION_KEY.pack(topic_id, partition)
        with self.env.begin(db=self.log, buffers=True) as txn:
            if self.time_index_complete:
                indexed = time_index.scan_start(txn, self.timeindex, topic_id, partition, timestamp_ms, start)
                if indexed is None:
                    return None
                begin = max(indexed, start)
            else:
                begin = start
            cursor = txn.cursor()
            if not _seek(cursor, prefix, begin):
                return None
            while True:
                base = LOG_KEY.unpack(cursor.key())[2]
                if base >= high_watermark:
                    return None
                value = cursor.value()
                _, max_ts, append_ms = VALUE_HEADER.unpack_from(value)
                if max_ts >= timestamp_ms:
                    batch = RecordBatch.FromString(bytes(value[HEADER_SIZE:]))
                    for i, record in enumerate(batch.records):
                        ts = append_ms if append_time or record.timestamp_ms == 0 else record.timestamp_ms
                        if ts >= timestamp_ms and base + i >= start:
                            return base + i, ts
                if not cursor.next() or cursor.key()[:8] != prefix:
                    return None


def _seek(cursor: Any, prefix: bytes, offset: int) -> bool:
    """Position the cursor on the batch holding `offset`, or the first batch after it."""
    target = prefix + COUNTER.pack(offset)
    if cursor.set_range(target):
        if cursor.key() == target:
            return True
        after = bytes(cursor.key())
        if cursor.prev() and cursor.key()[:8] == prefix and _covers(cursor, offset):
            return True
        cursor.set_range(after)
        return bool(after[:8] == prefix)
    return bool(cursor.last() and cursor.key()[:8] == prefix and _covers(cursor, offset))


def _covers(cursor: Any, offset: int) -> bool:
    base = LOG_KEY.unpack(cursor.key())[2]
    count: int = VALUE_HEADER.unpack_from(cursor.value())[0]
    return bool(base + count > offset)
