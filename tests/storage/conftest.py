"""Every test here runs against each LogStore: the LMDB store and the in-memory one."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tidelog.broker.storage.interface import LogStore
from tidelog.broker.storage.lmdb_store import LmdbStore
from tidelog.broker.storage.memory_store import MemoryStore

StoreFactory = Callable[[], LogStore]


@pytest.fixture(params=["lmdb", "memory"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """Opens the store (again, on the same data, for the LMDB one: a restart)."""
    opened: list[LogStore] = []
    memory = MemoryStore(tmp_path / "memory")

    def factory() -> LogStore:
        if request.param == "memory":
            return memory
        for store in opened:
            store.close()
        opened.clear()
        store = LmdbStore(tmp_path / "data", sync=False, map_size=1 << 26)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store: StoreFactory) -> LogStore:
    return open_store()
