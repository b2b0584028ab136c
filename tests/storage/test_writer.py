"""The writer's group commit: small groups on the event loop, large ones on its thread, always in order;
group offsets through it, on either store."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from tidelog.broker.groups.offsets import CommitOffsetsOp, DeleteGroupOffsetsOp, ResetOffsetsOp
from tidelog.broker.log.ops import CreateTopicOp, ProduceOp, PurgeTopicOp
from tidelog.broker.log.produce import prepare_produce
from tidelog.broker.log.topics import TopicRegistry
from tidelog.broker.storage.interface import LogStore
from tidelog.broker.storage.lmdb_store import LmdbStore
from tidelog.broker.storage.writer import INLINE_COMMIT_MAX_BYTES, WriteOp, Writer
from tidelog.v1 import broker_pb2, records_pb2


def produce_op(registry: TopicRegistry, value_bytes: int) -> ProduceOp:
    request = broker_pb2.ProduceRequest(topic="t", partition=0, records=[records_pb2.Record(value=b"v" * value_bytes)])
    return prepare_produce(request, registry, request.ByteSize())


def test_groups_commit_in_submission_order_wherever_they_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> tuple[list[int], set[str]]:
        store = LmdbStore(tmp_path / "data", sync=True, map_size=1 << 28)
        registry = TopicRegistry()
        writer = Writer(store, asyncio.get_running_loop(), None)
        committed_on: set[str] = set()
        commit = writer._commit
        large_on_thread, small_submitted = threading.Event(), threading.Event()

        def recording_commit(group: list[tuple[WriteOp, asyncio.Future[Any]]]) -> list[Any]:
            committed_on.add(threading.current_thread().name)
            if threading.current_thread().name == "tidelog-writer" and not large_on_thread.is_set():
                large_on_thread.set()  # hold the large group here until the small ones are queued behind it
                assert small_submitted.wait(30), "the small ops were never submitted"
            return commit(group)

        monkeypatch.setattr(writer, "_commit", recording_commit)
        writer.start()
        await writer.submit(CreateTopicOp(registry, "t", 1, {}))
        large = writer.submit(produce_op(registry, INLINE_COMMIT_MAX_BYTES + 1))
        assert await asyncio.to_thread(large_on_thread.wait, 30), "the large group never reached the writer thread"
        small = [writer.submit(produce_op(registry, 10)) for _ in range(3)]
        small_submitted.set()  # their flush is queued on the loop before the large group's answer can be
        results = [await large, *[await future for future in small]]
        later = await writer.submit(produce_op(registry, 10))  # the thread is idle again: on the loop
        await writer.stop()
        store.close()
        return [result[0][0].base_offset for result in [*results, later]], committed_on

    offsets, committed_on = asyncio.run(scenario())
    assert offsets == [0, 1, 2, 3, 4]
    assert committed_on == {"MainThread", "tidelog-writer"}


def test_group_offsets_through_the_writer(store: LogStore) -> None:
    async def scenario() -> None:
        writer = Writer(store, asyncio.get_running_loop(), None)
        writer.start()
        assert await writer.submit(CommitOffsetsOp("g1", [(7, 0, 10), (7, 1, 5)])) == [10, 5]
        assert await writer.submit(CommitOffsetsOp("g1", [(7, 0, 4)])) == [10]  # never back by a commit
        await writer.submit(CommitOffsetsOp("g2", [(8, 3, 2)]))
        await writer.submit(ResetOffsetsOp("g1", [(7, 0, 0)]))  # a reset moves back
        assert store.committed("g1") == {(7, 0): 0, (7, 1): 5}
        assert await writer.submit(DeleteGroupOffsetsOp("g1")) is True
        assert await writer.submit(DeleteGroupOffsetsOp("g1")) is False
        await writer.submit(CommitOffsetsOp("g3", [(7, 3, 3)]))
        assert await writer.submit(PurgeTopicOp(7)) is True  # a purged topic takes its offsets along
        assert store.group_names() == ["g2"]
        await writer.stop()

    asyncio.run(scenario())
