"""Committed group offsets in LMDB, through the writer as the broker uses them."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tidelog.broker.groups.offsets import CommitOffsetsOp, DeleteGroupOffsetsOp, ResetOffsetsOp, committed, group_names
from tidelog.broker.log.topics import TopicRegistry
from tidelog.broker.storage.lmdb_store import Store
from tidelog.broker.storage.ops import PurgeTopicOp
from tidelog.broker.storage.writer import Writer


def test_commit_keeps_the_highest_reset_moves_back_delete_forgets(tmp_path: Path) -> None:
    async def scenario(store: Store) -> None:
        writer = Writer(store, TopicRegistry(), asyncio.get_running_loop(), None)
        writer.start()
        assert await writer.submit(CommitOffsetsOp("g1", [(7, 0, 10), (7, 1, 5)])) == [10, 5]
        assert await writer.submit(CommitOffsetsOp("g1", [(7, 0, 4)])) == [10]  # never back by a commit
        await writer.submit(CommitOffsetsOp("g", [(7, 0, 1)]))  # a name that is a prefix of another
        await writer.submit(CommitOffsetsOp("g2", [(8, 3, 2)]))
        assert committed(store, "g1") == {(7, 0): 10, (7, 1): 5}
        assert committed(store, "g") == {(7, 0): 1}
        assert group_names(store) == ["g", "g1", "g2"]

        await writer.submit(ResetOffsetsOp("g1", [(7, 0, 0)]))
        assert committed(store, "g1") == {(7, 0): 0, (7, 1): 5}

        assert await writer.submit(DeleteGroupOffsetsOp("g1")) is True
        assert await writer.submit(DeleteGroupOffsetsOp("g1")) is False
        assert committed(store, "g1") == {}
        assert group_names(store) == ["g", "g2"]
        await writer.stop()

    store = Store(tmp_path / "data", sync=False, map_size=1 << 26)
    asyncio.run(scenario(store))
    store.close()
    reopened = Store(tmp_path / "data", sync=False, map_size=1 << 26)
    assert committed(reopened, "g2") == {(8, 3): 2}  # durable across a restart
    reopened.close()


def test_purging_a_deleted_topic_drops_its_group_offsets(tmp_path: Path) -> None:
    async def scenario(store: Store) -> None:
        writer = Writer(store, TopicRegistry(), asyncio.get_running_loop(), None)
        writer.start()
        await writer.submit(CommitOffsetsOp("g1", [(7, 0, 1), (8, 0, 2)]))
        await writer.submit(CommitOffsetsOp("g2", [(7, 3, 3)]))
        assert await writer.submit(PurgeTopicOp(7)) is True
        assert committed(store, "g1") == {(8, 0): 2}
        assert committed(store, "g2") == {}
        await writer.stop()

    store = Store(tmp_path / "data", sync=False, map_size=1 << 26)
    asyncio.run(scenario(store))
    store.close()
