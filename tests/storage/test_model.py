"""Both stores against a plain model of a partition's records, under random appends, head trims,
tail truncations and reads (hypothesis): the same answers everywhere, offsets contiguous from the log
start, every batch whole but the first a read re-slices, every CRC intact."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from tests.storage.helpers import append
from tests.storage.test_contract import values_of
from tidelog.broker.storage.interface import LogStore, TopicRecord
from tidelog.broker.storage.lmdb_store import LmdbStore
from tidelog.broker.storage.memory_store import MemoryStore

PARTITIONS = 2


class StoresAgainstAModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self._dir = tempfile.TemporaryDirectory(prefix="tidelog-model-")
        self.stores: list[LogStore] = [LmdbStore(Path(self._dir.name), sync=False, map_size=1 << 26), MemoryStore()]
        for store in self.stores:
            with store.write() as txn:
                txn.create_topic(TopicRecord(txn.next_id("topic"), "t", PARTITIONS, {}))
        # per partition: log start, and every record ever appended (offset = index)
        self.start = [0] * PARTITIONS
        self.records: list[list[bytes]] = [[] for _ in range(PARTITIONS)]
        self.appended = 0

    def teardown(self) -> None:
        for store in self.stores:
            store.close()
        self._dir.cleanup()

    @rule(partition=st.integers(0, PARTITIONS - 1), sizes=st.lists(st.integers(0, 300), min_size=1, max_size=6))
    def append_a_batch(self, partition: int, sizes: list[int]) -> None:
        values = [b"%d:" % (self.appended + i) + b"v" * size for i, size in enumerate(sizes)]
        self.appended += len(values)
        for store in self.stores:
            stored = append(store, 1, partition, values)
            assert stored.base_offset == len(self.records[partition])  # contiguous: the next offset
        self.records[partition] += values

    @precondition(lambda self: any(self.records))
    @rule(partition=st.integers(0, PARTITIONS - 1), data=st.data())
    def trim_the_head(self, partition: int, data: st.DataObject) -> None:
        end = len(self.records[partition])
        target = data.draw(st.integers(0, end))
        starts = set()
        for store in self.stores:
            with store.write() as txn:
                trimmed = txn.trim_head(1, partition, target)
                assert trimmed is not None
                starts.add(trimmed.log_start_offset)
        assert len(starts) == 1  # both cut at the same batch boundary
        (new_start,) = starts
        assert self.start[partition] <= new_start <= max(target, self.start[partition])
        self.start[partition] = new_start

    @precondition(lambda self: any(self.records))
    @rule(partition=st.integers(0, PARTITIONS - 1), data=st.data())
    def truncate_the_tail(self, partition: int, data: st.DataObject) -> None:
        end = len(self.records[partition])
        offset = data.draw(st.integers(self.start[partition], end))
        for store in self.stores:
            with store.write() as txn:
                cut = txn.truncate(1, partition, offset)
                assert cut is not None and cut.next_offset == offset
        del self.records[partition][offset:]

    @rule(
        partition=st.integers(0, PARTITIONS - 1),
        data=st.data(),
        max_records=st.integers(1, 20),
        max_bytes=st.integers(1, 2_000),
    )
    def read(self, partition: int, data: st.DataObject, max_records: int, max_bytes: int) -> None:
        end = len(self.records[partition])
        offset = data.draw(st.integers(self.start[partition], end))
        answers = []
        for store in self.stores:
            result = store.read(1, partition, offset, end, max_records, max_bytes)
            got = values_of(result.batches)
            expected = list(enumerate(self.records[partition]))[offset:]
            assert got == expected[: len(got)], "records out of order, missing or invented"
            if offset < end:
                assert got, "a read must return at least one record when one exists"
                assert result.next_offset == offset + len(got)
            assert len(got) <= max_records
            answers.append((got, result.next_offset))
        assert answers[0] == answers[1]

    @invariant()
    def stats_agree_with_the_model(self) -> None:
        for store in self.stores:
            topics, _ = store.load()
            (_, stats), *_ = topics
            for partition, partition_stats in enumerate(stats):
                assert partition_stats.next_offset == len(self.records[partition])
                assert partition_stats.log_start_offset == self.start[partition]
                stored = sum(b.stored_bytes for b in store.scan(1, partition, 0, 1 << 62))
                assert partition_stats.size_bytes == stored


StoresAgainstAModel.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
test_stores_against_a_model = StoresAgainstAModel.TestCase
