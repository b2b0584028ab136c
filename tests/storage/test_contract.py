"""The LogStore contract (broker/storage/interface.py), the same tests for the LMDB and the memory store."""

from __future__ import annotations

import pytest

from tests.storage.conftest import StoreFactory
from tests.storage.helpers import append, batch, kafka_batch, put
from tidelog.broker.batches import HEADER_SIZE, is_kafka_item, item_value, records_crc
from tidelog.broker.batches import kafka_batch as kafka_batch_of
from tidelog.broker.kafka import record_batch
from tidelog.broker.storage.interface import LogStore, PartitionStats, ProducerBatch, TopicRecord
from tidelog.v1.records_pb2 import RecordBatch


def values_of(wire_batches: list[bytes]) -> list[tuple[int, bytes]]:
    """(offset, value) of every record, checking each batch's CRC on the way."""
    out = []
    for wire in wire_batches:
        parsed = RecordBatch.FromString(wire)
        records = RecordBatch(records=parsed.records).SerializeToString()
        assert records_crc(records) == parsed.crc32c, "a batch came back with a CRC that does not match"
        out += [(parsed.base_offset + i, r.value) for i, r in enumerate(parsed.records)]
    return out


def create(store: LogStore, name: str = "t", partitions: int = 2) -> TopicRecord:
    with store.write() as txn:
        record = TopicRecord(txn.next_id("topic"), name, partitions, {"retention.ms": "-1"})
        txn.create_topic(record)
    return record


def test_topics_ids_and_a_restart(open_store: StoreFactory) -> None:
    store = open_store()
    first = create(store, "a")
    second = create(store, "b", 3)
    assert (first.id, second.id) == (1, 2)
    with store.write() as txn:
        txn.put_topic(TopicRecord(first.id, "a", 2, {"retention.ms": "5"}))
        assert txn.topic("a") == TopicRecord(first.id, "a", 2, {"retention.ms": "5"})
        assert txn.topic("nope") is None
        assert txn.next_id("producer") == 1 and txn.next_id("producer") == 2
    append(store, second.id, 2, [b"x"])
    store = open_store()  # LMDB: closed and opened again
    topics, deleting = store.load()
    assert [(t.name, t.configs, [s.next_offset for s in stats]) for t, stats in topics] == [
        ("a", {"retention.ms": "5"}, [0, 0]),
        ("b", {"retention.ms": "-1"}, [0, 0, 1]),
    ]
    assert deleting == []


def test_appends_keep_offsets_contiguous_and_reads_never_split_a_batch_but_the_first(store: LogStore) -> None:
    topic = create(store)
    for values in ([b"a", b"b", b"c"], [b"d"], [b"e", b"f"]):
        append(store, topic.id, 0, values)
    everything = [(i, v) for i, v in enumerate([b"a", b"b", b"c", b"d", b"e", b"f"])]
    result = store.read(topic.id, 0, 0, 6, 100, 1 << 20)
    assert values_of(result.batches) == everything and result.next_offset == 6
    middle = store.read(topic.id, 0, 1, 6, 100, 1 << 20)  # the first batch re-sliced to start at 1
    assert values_of(middle.batches) == everything[1:]
    assert [RecordBatch.FromString(b).base_offset for b in middle.batches] == [1, 3, 4]
    limited = store.read(topic.id, 0, 0, 6, 4, 1 << 20)  # max_records: whole batches after the first
    assert values_of(limited.batches) == everything[:4] and limited.next_offset == 4
    tiny = store.read(topic.id, 0, 0, 6, 100, 1)  # above max_bytes: still the first batch
    assert values_of(tiny.batches) == everything[:3] and tiny.next_offset == 3
    below_watermark = store.read(topic.id, 0, 0, 4, 100, 1 << 20)
    assert values_of(below_watermark.batches) == everything[:4]
    assert store.read(topic.id, 0, 6, 6, 100, 1 << 20).batches == []
    assert store.read(topic.id, 1, 0, 0, 100, 1 << 20).batches == []  # the other partition is empty
    assert [b.base_offset for b in store.scan(topic.id, 0, 2, 6)] == [0, 3, 4]
    assert [b.stored_bytes for b in store.scan(topic.id, 0, 0, 6, values=False)] == [
        b.stored_bytes for b in store.scan(topic.id, 0, 0, 6)
    ]


def test_a_failed_op_leaves_nothing_and_a_failed_transaction_nothing_at_all(store: LogStore) -> None:
    topic = create(store)
    with store.write() as txn:
        with pytest.raises(RuntimeError), txn.nested() as child:
            child.append(topic.id, 0, batch(0, [b"lost"]), PartitionStats(1, 0, 10))
            raise RuntimeError("the op failed")
        assert txn.stats(topic.id, 0) == PartitionStats()
        with txn.nested() as child:
            child.commit_offset("g", topic.id, 0, 3, 0)
        assert txn.committed_offset("g", topic.id, 0) == 3
    with pytest.raises(RuntimeError), store.write() as txn:
        txn.commit_offset("g", topic.id, 1, 9, 0)
        raise RuntimeError("the group commit failed")
    assert store.committed("g") == {(topic.id, 0): 3}
    assert store.read(topic.id, 0, 0, 1, 10, 1 << 20).batches == []


def test_trim_head_moves_the_log_start_by_whole_batches(store: LogStore) -> None:
    topic = create(store)
    sizes = [len(append(store, topic.id, 0, values).value) for values in ([b"a", b"b"], [b"c"], [b"d", b"e"])]
    with store.write() as txn:
        trimmed = txn.trim_head(topic.id, 0, 3)  # a batch across 3 stays whole
        assert trimmed == PartitionStats(5, 3, sizes[2])
        assert txn.trim_head(topic.id, 0, 1) == trimmed  # never back
        assert txn.trim_head(topic.id, 9, 1) is None
    assert values_of(store.read(topic.id, 0, 3, 5, 100, 1 << 20).batches) == [(3, b"d"), (4, b"e")]
    assert [b.base_offset for b in store.scan(topic.id, 0, 0, 5)] == [3]


def test_truncate_cuts_the_tail_and_a_batch_across_it(store: LogStore) -> None:
    topic = create(store)
    for values in ([b"a", b"b"], [b"c", b"d", b"e"], [b"f"]):
        append(store, topic.id, 0, values)
    with store.write() as txn:
        cut = txn.truncate(topic.id, 0, 3)
        assert cut is not None and cut.next_offset == 3
        assert txn.truncate(topic.id, 0, 10) == cut  # nothing past the end
    assert values_of(store.read(topic.id, 0, 0, 3, 100, 1 << 20).batches) == [(0, b"a"), (1, b"b"), (2, b"c")]
    assert cut.size_bytes == sum(b.stored_bytes for b in store.scan(topic.id, 0, 0, 10))
    later = append(store, topic.id, 0, [b"g"])  # the log goes on from the cut
    assert later.base_offset == 3
    assert values_of(store.read(topic.id, 0, 2, 4, 100, 1 << 20).batches) == [(2, b"c"), (3, b"g")]


def test_leader_epochs_last_across_a_restart_and_a_truncation_drops_those_past_the_cut(
    open_store: StoreFactory,
) -> None:
    store = open_store()
    topic = create(store)
    with store.write() as txn:
        for epoch, start in [(0, 0), (2, 5), (3, 9), (4, 9)]:  # epoch 3 wrote nothing
            with txn.nested() as op:  # as the writer applies each op
                op.put_leader_epoch(topic.id, 0, epoch, start)
        txn.put_leader_epoch(topic.id, 1, 7, 0)
        with txn.nested() as op:
            op.put_high_watermark(topic.id, 0, 9)
    for values in ([b"a"] * 5, [b"b"] * 4, [b"c"] * 3):
        append(store, topic.id, 0, values)
    store = open_store()
    assert store.leader_epochs(topic.id, 0) == [(0, 0), (2, 5), (3, 9), (4, 9)]
    assert (store.high_watermark(topic.id, 0), store.high_watermark(topic.id, 1)) == (9, None)
    with store.write() as txn:
        txn.truncate(topic.id, 0, 9)
    assert store.leader_epochs(topic.id, 0) == [(0, 0), (2, 5)]
    with store.write() as txn:
        txn.put_leader_epoch(topic.id, 0, 5, 9)
        txn.truncate(topic.id, 0, 9)  # at the log's end: only the epoch that starts there goes
    assert store.leader_epochs(topic.id, 0) == [(0, 0), (2, 5)]
    assert store.leader_epochs(topic.id, 1) == [(7, 0)]


def test_truncate_forgets_the_producer_batches_it_cuts(store: LogStore) -> None:
    topic = create(store)
    for values in ([b"a", b"b"], [b"c"], [b"d"]):
        append(store, topic.id, 0, values)
    with store.write() as txn:
        txn.put_producer_batches(topic.id, 0, 7, [ProducerBatch(0, 2, 0, 0), ProducerBatch(2, 1, 2, 0)], 0)
        txn.put_producer_batches(topic.id, 0, 8, [ProducerBatch(0, 1, 3, 0)], 0)
        txn.put_producer_batches(topic.id, 1, 8, [ProducerBatch(0, 1, 9, 0)], 0)  # another partition
        txn.truncate(topic.id, 0, 2)
        assert txn.producer_batches(topic.id, 0, 7) == [ProducerBatch(0, 2, 0, 0)]
        assert txn.producer_batches(topic.id, 0, 8) == []
        assert txn.producer_batches(topic.id, 1, 8) == [ProducerBatch(0, 1, 9, 0)]


def test_compaction_replaces_a_batch_with_runs_at_their_offsets(store: LogStore) -> None:
    topic = create(store)
    old = append(store, topic.id, 0, [b"a", b"b", b"c", b"d"])
    runs = [batch(0, [b"a"]), batch(2, [b"c", b"d"])]
    with store.write() as txn:
        assert txn.replace_batch(topic.id, 0, 0, 3, runs) is None  # the batch changed since the plan
        delta = txn.replace_batch(topic.id, 0, 0, 4, runs)
        assert delta == sum(len(r.value) for r in runs) - len(old.value)
    assert values_of(store.read(topic.id, 0, 0, 4, 100, 1 << 20).batches) == [(0, b"a"), (2, b"c"), (3, b"d")]
    assert values_of(store.read(topic.id, 0, 1, 4, 100, 1 << 20).batches) == [(2, b"c"), (3, b"d")]


def test_time_lookups_find_the_first_record_at_or_after(store: LogStore) -> None:
    topic = create(store)
    append(store, topic.id, 0, [b"a", b"b"], timestamps=[100, 300])
    append(store, topic.id, 0, [b"c"], timestamps=[200])
    append(store, topic.id, 0, [b"d"], timestamps=[500])
    assert store.offset_for_timestamp(topic.id, 0, 0, 4, 250, False) == (1, 300)
    assert store.offset_for_timestamp(topic.id, 0, 0, 4, 0, False) == (0, 100)
    assert store.offset_for_timestamp(topic.id, 0, 2, 4, 150, False) == (2, 200)
    assert store.offset_for_timestamp(topic.id, 0, 0, 4, 600, False) is None
    append(store, topic.id, 0, [b"e"], append_ms=2_000)  # no timestamp of its own: the append time
    assert store.offset_for_timestamp(topic.id, 0, 0, 5, 1_500, False) == (4, 2_000)


def test_producer_state_group_offsets_and_acls(open_store: StoreFactory) -> None:
    store = open_store()
    topic = create(store)
    with store.write() as txn:
        history = [ProducerBatch(i * 2, 2, i * 2, 7) for i in range(7)]
        txn.put_producer_batches(topic.id, 0, 42, history, now_ms=9)
        assert txn.producer_batches(topic.id, 0, 42) == history[-5:]  # the last five are kept
        assert txn.producer_batches(topic.id, 1, 42) == []
        txn.commit_offset("g1", topic.id, 0, 10, 0)
        txn.commit_offset("g", topic.id, 1, 1, 0)  # a name that is a prefix of another
        txn.commit_offset("g2", topic.id, 0, 2, 0)
        assert txn.add_acl("allow a * cluster") and not txn.add_acl("allow a * cluster")
        assert txn.add_acl("allow b * cluster")
        assert txn.remove_acl("allow b * cluster") and not txn.remove_acl("allow b * cluster")
    store = open_store()
    assert store.committed("g1") == {(topic.id, 0): 10} and store.committed("g") == {(topic.id, 1): 1}
    assert store.committed_offset("g2", topic.id, 0) == 2 and store.committed_offset("g2", topic.id, 1) is None
    assert store.group_names() == ["g", "g1", "g2"]
    assert store.stored_acls() == ["allow a * cluster"]
    with store.write() as txn:
        assert txn.delete_group("g1") and not txn.delete_group("g1")
    assert store.group_names() == ["g", "g2"]


def test_a_deleted_topic_is_purged_in_steps_and_a_new_one_of_its_name_starts_empty(store: LogStore) -> None:
    topic = create(store, "gone", 1)
    for i in range(5):
        append(store, topic.id, 0, [b"%d" % i])
    with store.write() as txn:
        txn.commit_offset("g", topic.id, 0, 5, 0)
        txn.put_producer_batches(topic.id, 0, 1, [ProducerBatch(0, 1, 0, 0)], 0)
        txn.put_leader_epoch(topic.id, 0, 0, 0)
        txn.delete_topic(topic)
        assert txn.topic("gone") is None
    assert store.load() == ([], [topic.id])
    steps = 0
    while True:
        steps += 1
        with store.write() as txn:
            if txn.purge_topic(topic.id, limit=2):
                break
    assert steps > 1
    assert store.load() == ([], []) and store.committed("g") == {} and store.leader_epochs(topic.id, 0) == []
    again = create(store, "gone", 1)
    assert again.id != topic.id
    assert store.read(again.id, 0, 0, 0, 10, 1 << 20).batches == []


def test_stored_values_keep_their_header_and_crc(store: LogStore) -> None:
    topic = create(store)
    stored = append(store, topic.id, 0, [b"x" * 1000, b"y"])
    (scanned,) = store.scan(topic.id, 0, 0, 2)
    assert scanned.value == stored.value
    wire = RecordBatch.FromString(scanned.value[HEADER_SIZE:])
    assert wire.base_offset == 0 and len(wire.records) == 2


def test_kafka_batches_are_read_whole_and_opened_where_they_must_be(open_store: StoreFactory) -> None:
    store = open_store()
    topic = create(store)
    append(store, topic.id, 0, [b"a", b"b"], timestamps=[10, 20])  # a gRPC batch, a Kafka one, a gRPC one
    put(store, topic.id, 0, kafka_batch(2, [b"c", b"d", b"e"], timestamps=[100, 300, 500]))
    append(store, topic.id, 0, [b"f"], timestamps=[600])
    items = store.read(topic.id, 0, 3, 6, 100, 1 << 20).batches  # from inside the Kafka batch: it comes whole
    assert is_kafka_item(items[0]) and record_batch.check(kafka_batch_of(item_value(items[0]))).base_offset == 2
    assert values_of(items[1:]) == [(5, b"f")]
    assert store.offset_for_timestamp(topic.id, 0, 0, 6, 250, False) == (3, 300)  # a time inside it
    with store.write() as txn:
        txn.put_producer_batches(topic.id, 0, 9, [ProducerBatch(0, 1, 5, 1_000, epoch=4)], 0)
        txn.truncate(topic.id, 0, 4)  # a cut inside it keeps its records below, as a gRPC batch
    store = open_store()
    kept = store.read(topic.id, 0, 0, 4, 100, 1 << 20).batches
    assert values_of(kept) == [(0, b"a"), (1, b"b"), (2, b"c"), (3, b"d")]
    with store.write() as txn:
        assert txn.producer_batches(topic.id, 0, 9) == []  # its one batch (at 5) was cut
        txn.put_producer_batches(topic.id, 1, 9, [ProducerBatch(7, 1, 0, 5, epoch=4)], 0)
    with store.write() as txn:
        assert txn.producer_batches(topic.id, 1, 9) == [ProducerBatch(7, 1, 0, 5, epoch=4)]  # the epoch is kept
