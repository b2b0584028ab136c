"""The LMDB store: one environment per data directory (key layouts: storage.keys).

One writer transaction at a time (the writer's), readers never block it (MVCC). Reads on threads
other than the event loop's hold a lock that a map resize takes, since LMDB resizes only with no
transaction of the process open; a kill -9 leaves stale reader slots, freed at start-up.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lmdb
import structlog

from tidelog.broker.batches import HEADER_SIZE, VALUE_HEADER, cut_stored, first_of_read, read_item, stored_records
from tidelog.broker.storage import keys, time_index
from tidelog.broker.storage.interface import (
    LogWrite,
    PartitionStats,
    ProducerBatch,
    ReadResult,
    StorageError,
    StorageFull,
    StoredBatch,
    TopicRecord,
)
from tidelog.broker.storage.keys import COUNTER, LOG_KEY, PARTITION_KEY, TOPIC_ID

log = structlog.get_logger("tidelog.store")

FORMAT_VERSION = 1
# LMDB's on-disk format changes only between major.minor versions of the C library.
LMDB_FORMAT = "{}.{}".format(*lmdb.version()[:2])
# A commit that fails while the disk has less than this (plus what it wrote) free is a full disk.
DISK_FULL_BELOW_BYTES = 16 << 20


class FormatMismatch(Exception):
    pass


class LmdbStore:
    """The broker's LogStore (storage.interface)."""

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
        self._owner_thread = threading.get_ident()
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
        self.epochs = self.env.open_db(b"epochs")
        self.hwmarks = self.env.open_db(b"hwmarks")
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

    def reading(self) -> contextlib.AbstractContextManager[object]:
        """Around a read transaction: on a worker thread, a map resize waits for it to end. Reads on the
        thread that opened the store (the event loop's, where resizes run) cannot overlap one, and take
        no lock (a plain object's context, not a generator's: this is on every read's path)."""
        if threading.get_ident() == self._owner_thread:
            return _NO_LOCK
        return self._resize_lock

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

    def grow(self, into_reserve: bool) -> bool:
        return self.grow_map(into_reserve)

    def limit_bytes(self) -> int:
        return self.max_map_size

    def close(self) -> None:
        self.env.sync(True)
        self.env.close()

    def sync(self) -> None:
        self.env.sync(True)

    # -- writes -----------------------------------------------------------------

    def write(self) -> contextlib.AbstractContextManager[LogWrite]:
        return _WriteTransaction(self, self.env.begin(write=True))

    # -- start-up -------------------------------------------------------------

    def stored_acls(self) -> list[str]:
        with self.env.begin(db=self.acls) as txn:
            return [bytes(key).decode() for key in txn.cursor().iternext(values=False)]

    def load(self) -> tuple[list[tuple[TopicRecord, list[PartitionStats]]], list[int]]:
        topics: list[tuple[TopicRecord, list[PartitionStats]]] = []
        with self.env.begin() as txn:
            for name, value in txn.cursor(db=self.topics):
                topic = keys.decode_topic(name, value)
                stats = []
                for p in range(topic.partitions):
                    raw = txn.get(PARTITION_KEY.pack(topic.id, p), db=self.stats)
                    stats.append(keys.decode_stats(raw) if raw else PartitionStats())
                topics.append((topic, stats))
            deleting = [TOPIC_ID.unpack(k)[0] for k in txn.cursor(db=self.deleting).iternext(values=False)]
        return topics, deleting

    # -- group offsets ----------------------------------------------------------

    def high_watermark(self, topic_id: int, partition: int) -> int | None:
        with self.reading(), self.env.begin(db=self.hwmarks) as txn:
            value = txn.get(PARTITION_KEY.pack(topic_id, partition))
        return None if value is None else int(keys.OFFSET.unpack(value)[0])

    def leader_epochs(self, topic_id: int, partition: int) -> list[tuple[int, int]]:
        prefix = PARTITION_KEY.pack(topic_id, partition)
        out = []
        with self.reading(), self.env.begin(db=self.epochs) as txn:
            cursor = txn.cursor()
            found = cursor.set_range(prefix)
            while found and cursor.key()[:8] == prefix:
                out.append((keys.EPOCH_KEY.unpack(cursor.key())[2], keys.OFFSET.unpack(cursor.value())[0]))
                found = cursor.next()
        return out

    def committed(self, group: str) -> dict[tuple[int, int], int]:
        prefix = keys.group_prefix(group)
        out: dict[tuple[int, int], int] = {}
        with self.reading(), self.env.begin(db=self.offsets) as txn:
            cursor = txn.cursor()
            if not cursor.set_range(prefix):
                return out
            for key, value in cursor:
                if not key.startswith(prefix):
                    break
                out[PARTITION_KEY.unpack_from(key, len(prefix))] = keys.OFFSET_VALUE.unpack(value)[0]
        return out

    def committed_offset(self, group: str, topic_id: int, partition: int) -> int | None:
        with self.reading(), self.env.begin(db=self.offsets) as txn:
            value = txn.get(keys.offset_key(group, topic_id, partition))
        return None if value is None else int(keys.OFFSET_VALUE.unpack(value)[0])

    def group_names(self) -> list[str]:
        names: list[str] = []
        with self.reading(), self.env.begin(db=self.offsets) as txn:
            cursor = txn.cursor()
            found = cursor.first()
            while found:
                name = bytes(cursor.key()).split(b"\x00", 1)[0]
                names.append(name.decode())
                found = cursor.set_range(name + b"\x01")  # past this group's keys
        return names

    # -- read path --------------------------------------------------------------

    def scan(
        self, topic_id: int, partition: int, start: int, end: int, limit: int = 1 << 62, values: bool = True
    ) -> Iterator[StoredBatch]:
        prefix = PARTITION_KEY.pack(topic_id, partition)
        out: list[StoredBatch] = []
        with self.reading(), self.env.begin(db=self.log, buffers=True) as txn:
            cursor = txn.cursor()
            found = _seek(cursor, prefix, start)
            while found and len(out) < limit:
                base = LOG_KEY.unpack(cursor.key())[2]
                if base >= end:
                    break
                value = cursor.value()
                count, max_ts, append_ms = VALUE_HEADER.unpack_from(value)
                out.append(StoredBatch(base, count, max_ts, append_ms, bytes(value) if values else b"", len(value)))
                found = cursor.next() and cursor.key()[:8] == prefix
        return iter(out)

    def read(
        self, topic_id: int, partition: int, offset: int, high_watermark: int, max_records: int, max_bytes: int
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
        with self.reading(), self.env.begin(db=self.log, buffers=True) as txn:
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
                    wire, skip, keep = first_of_read(value, base, count, skip, keep)
                    next_offset = base + skip + keep
                    total_records = keep
                else:
                    size = len(value) - HEADER_SIZE
                    if total_records + count > max_records or total_bytes + size > max_bytes:
                        break
                    wire = read_item(value)
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
        with self.reading(), self.env.begin(db=self.log, buffers=True) as txn:
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
                    for i, record in enumerate(stored_records(bytes(value))):
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


class LmdbWrite:
    """A LogWrite over an LMDB write transaction (or a child of one)."""

    __slots__ = ("_store", "_txn")

    def __init__(self, store: LmdbStore, txn: Any) -> None:
        self._store = store
        self._txn = txn

    def nested(self) -> contextlib.AbstractContextManager[LogWrite]:
        return _WriteTransaction(self._store, self._store.env.begin(write=True, parent=self._txn), nested=True)

    # -- topics and ids --

    def topic(self, name: str) -> TopicRecord | None:
        value = self._txn.get(name.encode(), db=self._store.topics)
        return None if value is None else keys.decode_topic(name.encode(), value)

    def create_topic(self, record: TopicRecord) -> None:
        txn, store = self._txn, self._store
        txn.put(record.name.encode(), keys.encode_topic(record), db=store.topics)
        empty = keys.encode_stats(PartitionStats())
        for p in range(record.partitions):
            txn.put(PARTITION_KEY.pack(record.id, p), empty, db=store.stats)

    def put_topic(self, record: TopicRecord) -> None:
        self._txn.put(record.name.encode(), keys.encode_topic(record), db=self._store.topics)

    def delete_topic(self, record: TopicRecord) -> None:
        txn, store = self._txn, self._store
        txn.delete(record.name.encode(), db=store.topics)
        for p in range(record.partitions):
            txn.delete(PARTITION_KEY.pack(record.id, p), db=store.stats)
        txn.put(TOPIC_ID.pack(record.id), b"", db=store.deleting)

    def purge_topic(self, topic_id: int, limit: int) -> bool:
        txn, store = self._txn, self._store
        prefix = TOPIC_ID.pack(topic_id)
        removed = 0
        for db in (store.log, store.producers, store.timeindex, store.epochs, store.hwmarks):
            cursor = txn.cursor(db=db)
            if not cursor.set_range(prefix):
                continue
            while removed < limit and cursor.key()[:4] == prefix:
                removed += 1
                if not cursor.delete():
                    break
            if removed >= limit:
                return False
        # Group offsets are keyed by group first: find this topic's by scanning (the table is small).
        cursor = txn.cursor(db=store.offsets)
        found = cursor.first()
        while found:
            found = cursor.delete() if bytes(cursor.key()[-8:-4]) == prefix else cursor.next()
        txn.delete(prefix, db=store.deleting)
        return True

    def next_id(self, counter: str) -> int:
        name = keys.COUNTERS[counter]
        value = self._txn.get(name, db=self._store.meta)
        current = keys.COUNTER.unpack(value)[0] if value else 1
        self._txn.put(name, keys.COUNTER.pack(current + 1), db=self._store.meta)
        return int(current)

    # -- partitions --

    def stats(self, topic_id: int, partition: int) -> PartitionStats | None:
        raw = self._txn.get(PARTITION_KEY.pack(topic_id, partition), db=self._store.stats)
        return None if raw is None else keys.decode_stats(raw)

    def _put_stats(self, topic_id: int, partition: int, stats: PartitionStats) -> None:
        self._txn.put(PARTITION_KEY.pack(topic_id, partition), keys.encode_stats(stats), db=self._store.stats)

    def append(self, topic_id: int, partition: int, batch: StoredBatch, stats: PartitionStats) -> None:
        txn, store = self._txn, self._store
        txn.put(LOG_KEY.pack(topic_id, partition, batch.base_offset), batch.value, db=store.log)
        time_index.note_batch(txn, store.timeindex, topic_id, partition, batch.max_timestamp_ms, batch.base_offset)
        self._put_stats(topic_id, partition, stats)

    def trim_head(self, topic_id: int, partition: int, new_start: int) -> PartitionStats | None:
        txn, store = self._txn, self._store
        stats = self.stats(topic_id, partition)
        if stats is None or new_start <= stats.log_start_offset:
            return stats
        new_start = min(new_start, stats.next_offset)
        prefix = PARTITION_KEY.pack(topic_id, partition)
        cursor = txn.cursor(db=store.log)
        removed = 0
        found = cursor.set_range(prefix)
        while found and cursor.key()[:8] == prefix:
            base = LOG_KEY.unpack(cursor.key())[2]
            count = VALUE_HEADER.unpack_from(cursor.value())[0]
            if base + count > new_start:
                break  # only whole batches go
            removed += len(cursor.value())
            found = cursor.delete()
        time_index.trim(txn, store.timeindex, topic_id, partition, new_start)
        trimmed = PartitionStats(stats.next_offset, new_start, max(0, stats.size_bytes - removed))
        self._put_stats(topic_id, partition, trimmed)
        return trimmed

    def truncate(self, topic_id: int, partition: int, offset: int) -> PartitionStats | None:
        txn, store = self._txn, self._store
        stats = self.stats(topic_id, partition)
        if stats is None:
            return None
        self._truncate_epochs(topic_id, partition, offset)  # an epoch that wrote nothing may start at the end
        if offset >= stats.next_offset:
            return stats
        self._truncate_producers(topic_id, partition, offset)
        offset = max(offset, stats.log_start_offset)
        prefix = PARTITION_KEY.pack(topic_id, partition)
        cursor = txn.cursor(db=store.log)
        size = stats.size_bytes
        found = _seek(cursor, prefix, offset)
        while found:
            base = LOG_KEY.unpack(cursor.key())[2]
            value = bytes(cursor.value())
            append_ms = VALUE_HEADER.unpack_from(value)[2]
            size -= len(value)
            if base < offset:  # the batch across the cut keeps its records below it
                kept = cut_stored(value, base, offset - base, append_ms)
                cursor.put(bytes(cursor.key()), kept)
                size += len(kept)
                found = cursor.next() and cursor.key()[:8] == prefix
            else:
                found = cursor.delete() and cursor.key()[:8] == prefix
        time_index.truncate(txn, store.timeindex, topic_id, partition, offset)
        cut = PartitionStats(offset, stats.log_start_offset, max(0, size))
        self._put_stats(topic_id, partition, cut)
        return cut

    def _truncate_epochs(self, topic_id: int, partition: int, offset: int) -> None:
        prefix = PARTITION_KEY.pack(topic_id, partition)
        cursor = self._txn.cursor(db=self._store.epochs)
        found = cursor.set_range(prefix)
        while found and cursor.key()[:8] == prefix:
            if keys.OFFSET.unpack(cursor.value())[0] >= offset:
                found = cursor.delete() and cursor.key()[:8] == prefix
            else:
                found = cursor.next()

    def _truncate_producers(self, topic_id: int, partition: int, offset: int) -> None:
        prefix = PARTITION_KEY.pack(topic_id, partition)
        cursor = self._txn.cursor(db=self._store.producers)
        found = cursor.set_range(prefix)
        while found and cursor.key()[:8] == prefix:
            key, value = bytes(cursor.key()), bytes(cursor.value())
            batches = keys.decode_producer(value)
            kept = [b for b in batches if b.base_offset < offset]
            if len(kept) == len(batches):
                found = cursor.next()
            elif kept:
                cursor.put(key, keys.encode_producer(kept, keys.PRODUCER_HEAD_WITHOUT_EPOCH.unpack_from(value)[0]))
                found = cursor.next()
            else:
                found = cursor.delete() and cursor.key()[:8] == prefix

    def put_high_watermark(self, topic_id: int, partition: int, offset: int) -> None:
        self._txn.put(PARTITION_KEY.pack(topic_id, partition), keys.OFFSET.pack(offset), db=self._store.hwmarks)

    def put_leader_epoch(self, topic_id: int, partition: int, epoch: int, start_offset: int) -> None:
        self._txn.put(
            keys.EPOCH_KEY.pack(topic_id, partition, epoch), keys.OFFSET.pack(start_offset), db=self._store.epochs
        )

    def replace_batch(
        self, topic_id: int, partition: int, base_offset: int, count: int, batches: list[StoredBatch]
    ) -> int | None:
        txn, store = self._txn, self._store
        key = LOG_KEY.pack(topic_id, partition, base_offset)
        old = txn.get(key, db=store.log)
        if old is None or VALUE_HEADER.unpack_from(old)[0] != count:
            return None
        txn.delete(key, db=store.log)
        delta = -len(old)
        for batch in batches:
            txn.put(LOG_KEY.pack(topic_id, partition, batch.base_offset), batch.value, db=store.log)
            delta += len(batch.value)
        return delta

    def set_size(self, topic_id: int, partition: int, size_bytes: int) -> PartitionStats | None:
        stats = self.stats(topic_id, partition)
        if stats is None:
            return None
        resized = PartitionStats(stats.next_offset, stats.log_start_offset, size_bytes)
        self._put_stats(topic_id, partition, resized)
        return resized

    def producer_batches(self, topic_id: int, partition: int, producer_id: int) -> list[ProducerBatch]:
        value = self._txn.get(keys.PRODUCER_KEY.pack(topic_id, partition, producer_id), db=self._store.producers)
        return [] if value is None else keys.decode_producer(bytes(value))

    def put_producer_batches(
        self, topic_id: int, partition: int, producer_id: int, batches: list[ProducerBatch], now_ms: int
    ) -> None:
        key = keys.PRODUCER_KEY.pack(topic_id, partition, producer_id)
        self._txn.put(key, keys.encode_producer(batches, now_ms), db=self._store.producers)

    # -- group offsets --

    def committed_offset(self, group: str, topic_id: int, partition: int) -> int | None:
        value = self._txn.get(keys.offset_key(group, topic_id, partition), db=self._store.offsets)
        return None if value is None else int(keys.OFFSET_VALUE.unpack(value)[0])

    def commit_offset(self, group: str, topic_id: int, partition: int, offset: int, now_ms: int) -> None:
        key = keys.offset_key(group, topic_id, partition)
        self._txn.put(key, keys.OFFSET_VALUE.pack(offset, now_ms), db=self._store.offsets)

    def delete_group(self, group: str) -> bool:
        prefix = keys.group_prefix(group)
        cursor = self._txn.cursor(db=self._store.offsets)
        found = False
        if cursor.set_range(prefix):
            while cursor.key()[: len(prefix)] == prefix:
                found = True
                if not cursor.delete():
                    break
        return found

    # -- ACL rules --

    def add_acl(self, rule: str) -> bool:
        key = rule.encode()
        if self._txn.get(key, db=self._store.acls) is not None:
            return False
        self._txn.put(key, b"", db=self._store.acls)
        return True

    def remove_acl(self, rule: str) -> bool:
        return bool(self._txn.delete(rule.encode(), db=self._store.acls))

    def acls(self) -> list[str]:
        return [bytes(key).decode() for key in self._txn.cursor(db=self._store.acls).iternext(values=False)]


_NO_LOCK = contextlib.nullcontext()


class _WriteTransaction:
    """An LMDB write transaction (or a child of one) as a LogWrite context: committed on a normal exit,
    aborted on an exception; LMDB's full map or disk raised as StorageFull. A class, not a generator:
    every op of every group commit enters one."""

    __slots__ = ("_nested", "_store", "_txn")

    def __init__(self, store: LmdbStore, txn: Any, nested: bool = False) -> None:
        self._store = store
        self._txn = txn
        self._nested = nested

    def __enter__(self) -> LogWrite:
        return LmdbWrite(self._store, self._txn)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: object) -> None:
        if kind is not None:
            self._txn.abort()
            if isinstance(error, lmdb.MapFullError | lmdb.DiskError):
                raise self._full(error) from None
            return
        try:
            self._txn.commit()
        except lmdb.Error as err:
            if self._nested:
                raise
            raise self._full(err) from None

    def _full(self, err: lmdb.Error) -> StorageFull | StorageError:
        store = self._store
        if isinstance(err, lmdb.MapFullError):
            return StorageFull(f"the LMDB map is full ({store.env.info()['map_size']} bytes)", disk=False)
        # A full disk shows as ENOSPC, or as EIO when a write comes up short: ask the disk.
        free = store.free_disk_bytes()
        if isinstance(err, lmdb.DiskError) or free < DISK_FULL_BELOW_BYTES:
            return StorageFull(f"the disk is full: {err}", disk=True, free_bytes=free)
        log.error("commit_failed", error=str(err))
        return StorageError(str(err))
