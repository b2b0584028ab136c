"""An in-memory LogStore: the same contract as the LMDB store (tests/storage runs one suite against
both), nothing durable. Useful where a test needs a store and no disk, and as the reference the LMDB
store's tricks (cursor seeks, the time index) are checked against.

A write transaction works on a fork of the committed state (containers copied, a partition's log only
once it is written); committing swaps the fork in, so readers keep the state they started with.
"""

from __future__ import annotations

import bisect
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tidelog.broker.batches import VALUE_HEADER, cut_stored, first_of_read, read_item, stored_records
from tidelog.broker.storage.interface import (
    LogWrite,
    PartitionStats,
    ProducerBatch,
    ReadResult,
    StoredBatch,
    TopicRecord,
)

TP = tuple[int, int]


@dataclass
class _PartitionLog:
    bases: list[int] = field(default_factory=list)
    values: dict[int, bytes] = field(default_factory=dict)

    def copy(self) -> _PartitionLog:
        return _PartitionLog(list(self.bases), dict(self.values))

    def put(self, base: int, value: bytes) -> None:
        if base not in self.values:
            bisect.insort(self.bases, base)
        self.values[base] = value

    def delete(self, base: int) -> None:
        del self.values[base]
        self.bases.remove(base)

    def from_offset(self, offset: int) -> Iterator[tuple[int, bytes]]:
        """The batch holding `offset` (or the first after it) and every one after."""
        i = bisect.bisect_right(self.bases, offset) - 1
        if i < 0 or self.bases[i] + VALUE_HEADER.unpack_from(self.values[self.bases[i]])[0] <= offset:
            i += 1
        for base in self.bases[max(i, 0) :]:
            yield base, self.values[base]


@dataclass
class _State:
    topics: dict[str, TopicRecord] = field(default_factory=dict)
    stats: dict[TP, PartitionStats] = field(default_factory=dict)
    logs: dict[TP, _PartitionLog] = field(default_factory=dict)
    producers: dict[tuple[int, int, int], list[ProducerBatch]] = field(default_factory=dict)
    deleting: set[int] = field(default_factory=set)
    offsets: dict[tuple[str, int, int], int] = field(default_factory=dict)
    acls: set[str] = field(default_factory=set)
    counters: dict[str, int] = field(default_factory=dict)
    epochs: dict[TP, tuple[tuple[int, int], ...]] = field(default_factory=dict)  # (epoch, start) in order
    hwmarks: dict[TP, int] = field(default_factory=dict)
    forked_logs: set[TP] = field(default_factory=set)  # logs this fork has copied (and may change)

    def fork(self) -> _State:
        return _State(
            dict(self.topics),
            dict(self.stats),
            dict(self.logs),
            dict(self.producers),
            set(self.deleting),
            dict(self.offsets),
            set(self.acls),
            dict(self.counters),
            dict(self.epochs),
            dict(self.hwmarks),
        )

    def log_for_write(self, tp: TP) -> _PartitionLog:
        if tp not in self.forked_logs:
            self.logs[tp] = self.logs[tp].copy() if tp in self.logs else _PartitionLog()
            self.forked_logs.add(tp)
        return self.logs[tp]


class MemoryStore:
    def __init__(self, path: Path = Path("memory")) -> None:
        self.path = path
        self._state = _State()
        self._writing = threading.Lock()  # one write transaction at a time, as LMDB

    # -- writes --

    @contextlib.contextmanager
    def write(self) -> Iterator[LogWrite]:
        with self._writing:
            work = self._state.fork()
            yield MemoryWrite(work)
            self._state = work

    # -- reads --

    def load(self) -> tuple[list[tuple[TopicRecord, list[PartitionStats]]], list[int]]:
        state = self._state
        topics = [
            (t, [state.stats.get((t.id, p), PartitionStats()) for p in range(t.partitions)])
            for t in sorted(state.topics.values(), key=lambda t: t.name)
        ]
        return topics, sorted(state.deleting)

    def scan(
        self, topic_id: int, partition: int, start: int, end: int, limit: int = 1 << 62, values: bool = True
    ) -> Iterator[StoredBatch]:
        log = self._state.logs.get((topic_id, partition))
        out: list[StoredBatch] = []
        if log is None:
            return iter(out)
        for base, value in log.from_offset(start):
            if base >= end or len(out) >= limit:
                break
            count, max_ts, append_ms = VALUE_HEADER.unpack_from(value)
            out.append(StoredBatch(base, count, max_ts, append_ms, value if values else b"", len(value)))
        return iter(out)

    def read(
        self, topic_id: int, partition: int, offset: int, high_watermark: int, max_records: int, max_bytes: int
    ) -> ReadResult:
        batches: list[bytes] = []
        next_offset, total_bytes, total_records = offset, 0, 0
        for batch in self.scan(topic_id, partition, offset, high_watermark):
            if not batches:
                skip = max(0, offset - batch.base_offset)
                keep = min(batch.count - skip, max_records)
                wire, skip, keep = first_of_read(batch.value, batch.base_offset, batch.count, skip, keep)
                next_offset, total_records = batch.base_offset + skip + keep, keep
            else:
                wire = read_item(batch.value)
                if total_records + batch.count > max_records or total_bytes + len(wire) > max_bytes:
                    break
                next_offset = batch.base_offset + batch.count
                total_records += batch.count
            batches.append(wire)
            total_bytes += len(wire)
            if total_records >= max_records or total_bytes >= max_bytes:
                break
        return ReadResult(batches, next_offset)

    def offset_for_timestamp(
        self, topic_id: int, partition: int, start: int, high_watermark: int, timestamp_ms: int, append_time: bool
    ) -> tuple[int, int] | None:
        for batch in self.scan(topic_id, partition, start, high_watermark):
            if batch.max_timestamp_ms < timestamp_ms:
                continue
            for i, record in enumerate(stored_records(batch.value)):
                stamp = batch.append_time_ms if append_time or record.timestamp_ms == 0 else record.timestamp_ms
                if stamp >= timestamp_ms and batch.base_offset + i >= start:
                    return batch.base_offset + i, stamp
        return None

    def committed(self, group: str) -> dict[tuple[int, int], int]:
        return {(t, p): o for (g, t, p), o in self._state.offsets.items() if g == group}

    def committed_offset(self, group: str, topic_id: int, partition: int) -> int | None:
        return self._state.offsets.get((group, topic_id, partition))

    def group_names(self) -> list[str]:
        return sorted({g for g, _, _ in self._state.offsets})

    def stored_acls(self) -> list[str]:
        return sorted(self._state.acls)

    def leader_epochs(self, topic_id: int, partition: int) -> list[tuple[int, int]]:
        return list(self._state.epochs.get((topic_id, partition), ()))

    def high_watermark(self, topic_id: int, partition: int) -> int | None:
        return self._state.hwmarks.get((topic_id, partition))

    # -- space: memory is never full here --

    def grow(self, into_reserve: bool) -> bool:
        return False

    def release_freed_pages(self) -> None:
        pass

    def limit_bytes(self) -> int:
        return 1 << 62

    def sync(self) -> None:
        pass

    def close(self) -> None:
        pass


class MemoryWrite:
    def __init__(self, state: _State) -> None:
        self._state = state

    @contextlib.contextmanager
    def nested(self) -> Iterator[LogWrite]:
        child = self._state.fork()
        yield MemoryWrite(child)
        parent = self._state
        parent.topics, parent.stats, parent.producers = child.topics, child.stats, child.producers
        parent.deleting, parent.offsets, parent.acls, parent.counters = (
            child.deleting,
            child.offsets,
            child.acls,
            child.counters,
        )
        parent.logs, parent.epochs, parent.hwmarks = child.logs, child.epochs, child.hwmarks
        parent.forked_logs = parent.forked_logs | child.forked_logs

    def topic(self, name: str) -> TopicRecord | None:
        return self._state.topics.get(name)

    def create_topic(self, record: TopicRecord) -> None:
        self._state.topics[record.name] = record
        for p in range(record.partitions):
            self._state.stats[(record.id, p)] = PartitionStats()

    def put_topic(self, record: TopicRecord) -> None:
        self._state.topics[record.name] = record

    def delete_topic(self, record: TopicRecord) -> None:
        del self._state.topics[record.name]
        for p in range(record.partitions):
            self._state.stats.pop((record.id, p), None)
        self._state.deleting.add(record.id)

    def purge_topic(self, topic_id: int, limit: int) -> bool:
        state = self._state
        removed = 0
        for tp in [tp for tp in state.logs if tp[0] == topic_id]:
            log = state.log_for_write(tp)
            while log.bases and removed < limit:
                log.delete(log.bases[0])
                removed += 1
            if removed >= limit:
                return False
            del state.logs[tp]
        for tp in [tp for tp in state.epochs if tp[0] == topic_id]:
            del state.epochs[tp]
        for tp in [tp for tp in state.hwmarks if tp[0] == topic_id]:
            del state.hwmarks[tp]
        for producer in [k for k in state.producers if k[0] == topic_id]:
            del state.producers[producer]
        for committed in [k for k in state.offsets if k[1] == topic_id]:
            del state.offsets[committed]
        state.deleting.discard(topic_id)
        return True

    def next_id(self, counter: str) -> int:
        current = self._state.counters.get(counter, 1)
        self._state.counters[counter] = current + 1
        return current

    def stats(self, topic_id: int, partition: int) -> PartitionStats | None:
        return self._state.stats.get((topic_id, partition))

    def append(self, topic_id: int, partition: int, batch: StoredBatch, stats: PartitionStats) -> None:
        self._state.log_for_write((topic_id, partition)).put(batch.base_offset, batch.value)
        self._state.stats[(topic_id, partition)] = stats

    def trim_head(self, topic_id: int, partition: int, new_start: int) -> PartitionStats | None:
        stats = self.stats(topic_id, partition)
        if stats is None or new_start <= stats.log_start_offset:
            return stats
        new_start = min(new_start, stats.next_offset)
        log = self._state.log_for_write((topic_id, partition))
        removed = 0
        while log.bases:
            base = log.bases[0]
            value = log.values[base]
            if base + VALUE_HEADER.unpack_from(value)[0] > new_start:
                break
            removed += len(value)
            log.delete(base)
        trimmed = PartitionStats(stats.next_offset, new_start, max(0, stats.size_bytes - removed))
        self._state.stats[(topic_id, partition)] = trimmed
        return trimmed

    def truncate(self, topic_id: int, partition: int, offset: int) -> PartitionStats | None:
        stats = self.stats(topic_id, partition)
        if stats is None:
            return None
        kept_epochs = tuple(e for e in self._state.epochs.get((topic_id, partition), ()) if e[1] < offset)
        self._state.epochs[(topic_id, partition)] = kept_epochs
        if offset >= stats.next_offset:
            return stats
        for key, batches in list(self._state.producers.items()):
            if key[:2] == (topic_id, partition):
                before_cut = [b for b in batches if b.base_offset < offset]
                if before_cut:
                    self._state.producers[key] = before_cut
                else:
                    del self._state.producers[key]
        offset = max(offset, stats.log_start_offset)
        log = self._state.log_for_write((topic_id, partition))
        size = stats.size_bytes
        for base, value in list(log.from_offset(offset)):
            size -= len(value)
            append_ms = VALUE_HEADER.unpack_from(value)[2]
            if base < offset:
                kept = cut_stored(value, base, offset - base, append_ms)
                log.put(base, kept)
                size += len(kept)
            else:
                log.delete(base)
        cut = PartitionStats(offset, stats.log_start_offset, max(0, size))
        self._state.stats[(topic_id, partition)] = cut
        return cut

    def put_high_watermark(self, topic_id: int, partition: int, offset: int) -> None:
        self._state.hwmarks[(topic_id, partition)] = offset

    def put_leader_epoch(self, topic_id: int, partition: int, epoch: int, start_offset: int) -> None:
        entries = dict(self._state.epochs.get((topic_id, partition), ()))
        entries[epoch] = start_offset
        self._state.epochs[(topic_id, partition)] = tuple(sorted(entries.items()))

    def replace_batch(
        self, topic_id: int, partition: int, base_offset: int, count: int, batches: list[StoredBatch]
    ) -> int | None:
        log = self._state.logs.get((topic_id, partition))
        old = log.values.get(base_offset) if log is not None else None
        if old is None or VALUE_HEADER.unpack_from(old)[0] != count:
            return None
        log = self._state.log_for_write((topic_id, partition))
        log.delete(base_offset)
        delta = -len(old)
        for batch in batches:
            log.put(batch.base_offset, batch.value)
            delta += len(batch.value)
        return delta

    def set_size(self, topic_id: int, partition: int, size_bytes: int) -> PartitionStats | None:
        stats = self.stats(topic_id, partition)
        if stats is None:
            return None
        resized = PartitionStats(stats.next_offset, stats.log_start_offset, size_bytes)
        self._state.stats[(topic_id, partition)] = resized
        return resized

    def producer_batches(self, topic_id: int, partition: int, producer_id: int) -> list[ProducerBatch]:
        return list(self._state.producers.get((topic_id, partition, producer_id), []))

    def put_producer_batches(
        self, topic_id: int, partition: int, producer_id: int, batches: list[ProducerBatch], now_ms: int
    ) -> None:
        self._state.producers[(topic_id, partition, producer_id)] = batches[-5:]

    def committed_offset(self, group: str, topic_id: int, partition: int) -> int | None:
        return self._state.offsets.get((group, topic_id, partition))

    def commit_offset(self, group: str, topic_id: int, partition: int, offset: int, now_ms: int) -> None:
        self._state.offsets[(group, topic_id, partition)] = offset

    def delete_group(self, group: str) -> bool:
        keys = [k for k in self._state.offsets if k[0] == group]
        for key in keys:
            del self._state.offsets[key]
        return bool(keys)

    def add_acl(self, rule: str) -> bool:
        if rule in self._state.acls:
            return False
        self._state.acls.add(rule)
        return True

    def remove_acl(self, rule: str) -> bool:
        if rule not in self._state.acls:
            return False
        self._state.acls.remove(rule)
        return True

    def acls(self) -> list[str]:
        return sorted(self._state.acls)
