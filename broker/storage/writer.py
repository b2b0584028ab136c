"""The writer: group-commits every pending write op in one transaction, in submission order.

A store allows one write transaction at a time (LMDB does). Rather than have request handlers
contend for it, handlers submit ops and await a future; the writer takes every op
submitted so far into one transaction and one fsync, then resolves their futures.
Under load the groups grow on their own, so fsync cost is shared.

Where a group commits depends on the load. A small group with nothing ahead of it
commits right on the event loop: handing it to a thread and back costs two thread
wake-ups, ~0.2 ms of latency and as much CPU, more than the loop would do meanwhile.
Larger groups, or any group while the writer thread is still busy, go to the writer
thread, so the loop keeps parsing requests while the disk syncs.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from typing import Any, Protocol

import structlog

from tidelog.broker.errors import BrokerError
from tidelog.broker.metrics import Metrics
from tidelog.broker.storage.disk_reserve import DiskReserve
from tidelog.broker.storage.interface import LogStore, LogWrite, StorageError, StorageFull
from tidelog.common.reasons import Reason

log = structlog.get_logger("tidelog.writer")

_STOP = object()
# Ops per group commit; bounds the time one commit keeps others waiting.
MAX_OPS_PER_COMMIT = 4096
# Groups writing at most this much commit on the event loop when the writer thread is idle.
INLINE_COMMIT_MAX_BYTES = 64 << 10

# How often a short disk reserve is topped up again (after commits, so only while writes come in).
RESERVE_CHECK_S = 5.0


class WriteOp(Protocol):
    """What the writer applies: `apply` on the writer's thread (or the loop) inside a nested transaction
    of the group commit (raising leaves nothing of the op behind); `publish` on the event loop once the
    group commit is durable, with apply's result, to update what lives in memory and wake readers.
    An op with a true `frees_space` attribute (deletes, retention) may use the store's reserves."""

    @property
    def write_bytes(self) -> int:
        """About how much apply() writes: the writer commits small groups on the event loop itself."""
        ...

    def apply(self, txn: LogWrite, now_ms: int) -> Any: ...

    def publish(self, result: Any) -> None: ...


_Group = list[tuple[WriteOp, "asyncio.Future[Any]"]]


class Writer:
    def __init__(
        self,
        store: LogStore,
        loop: asyncio.AbstractEventLoop,
        fsync_interval_s: float | None,
        metrics: Metrics | None = None,
        disk_reserve: DiskReserve | None = None,
    ) -> None:
        self._metrics = metrics
        self._disk_reserve = disk_reserve
        self._next_reserve_check = 0.0
        self._store = store
        self._loop = loop
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="tidelog-writer", daemon=True)
        self._fsync_interval_s = fsync_interval_s
        self._syncer_stop = threading.Event()
        self._syncer: threading.Thread | None = None
        self._closed = False
        self._loop_thread = 0
        self._pending: _Group = []  # submitted, not yet committed or handed to the thread
        self._flush_scheduled = False
        self._thread_ops = 0  # handed to the thread, not yet published
        self.commits = 0
        self.ops_committed = 0

    def start(self) -> None:
        self._loop_thread = threading.get_ident()  # start() runs on the event loop
        self._thread.start()
        if self._fsync_interval_s is not None:
            self._syncer = threading.Thread(target=self._sync_periodically, name="tidelog-fsync", daemon=True)
            self._syncer.start()

    def submit(self, op: WriteOp) -> asyncio.Future[Any]:
        """Queue an op; the future resolves (on the loop) once its group commit is durable."""
        if self._closed:
            raise BrokerError(Reason.SHUTTING_DOWN, "the broker is shutting down; retry against it once it is back")
        future: asyncio.Future[Any] = self._loop.create_future()
        self._pending.append((op, future))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)  # after the loop has taken in every request ready now
        return future

    def _flush(self) -> None:
        self._flush_scheduled = False
        group, self._pending = self._pending, []
        if not group:
            return
        inline = self._thread_ops == 0 and sum(op.write_bytes for op, _ in group) <= INLINE_COMMIT_MAX_BYTES
        for start in range(0, len(group), MAX_OPS_PER_COMMIT):
            part = group[start : start + MAX_OPS_PER_COMMIT]
            if inline:
                self._publish(part, self._commit(part))
            else:
                self._thread_ops += len(part)
                self._queue.put(part)

    async def stop(self) -> None:
        """Finish every op submitted so far, then stop the thread."""
        self._closed = True
        self._flush()
        self._queue.put(_STOP)
        await asyncio.to_thread(self._thread.join)
        if self._syncer is not None:
            self._syncer_stop.set()
            await asyncio.to_thread(self._syncer.join)

    def _sync_periodically(self) -> None:
        assert self._fsync_interval_s is not None
        while not self._syncer_stop.wait(self._fsync_interval_s):
            self._store.sync()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch: _Group = []
            item = self._queue.get()
            while True:
                if item is _STOP:
                    stopping = True
                    break
                batch += item
                if len(batch) >= MAX_OPS_PER_COMMIT:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                outcomes = self._commit(batch)
                try:
                    self._loop.call_soon_threadsafe(self._publish_from_thread, batch, outcomes)
                except RuntimeError:  # the loop is gone: nobody is left to answer
                    return

    def _commit(self, batch: _Group) -> list[Any]:
        """One group commit: each op's outcome, or the same error for all when the commit failed.

        A full map grows (up to --map-size-gb, less a reserve) and the group is committed again. A
        map that cannot grow answers STORAGE_FULL, except to ops that free space (deleting a topic,
        retention): they are committed on their own, into the reserve. A full disk answers
        STORAGE_FULL too, except to those ops again: the disk reserve is given up for them
        (broker.disk_reserve). The next commit tries afresh, so writes go through again once pages are free.
        """
        while True:
            try:
                began = time.perf_counter()
                outcomes = self._commit_once(batch)
                if self._metrics is not None:
                    self._metrics.commit_seconds.observe(time.perf_counter() - began)
                    self._metrics.commit_ops.observe(len(batch))
                self._refill_reserve_now_and_then()
                return outcomes
            except StorageFull as err:
                if not err.disk:
                    if self._grow(into_reserve=False):
                        continue
                    return self._commit_when_full(batch)
                log.error("disk_full", data_dir=str(self._store.path), free_bytes=err.free_bytes, error=str(err))
                full = BrokerError(
                    Reason.STORAGE_FULL,
                    f"the disk holding {self._store.path} is full ({err.free_bytes >> 20} MiB free): free space "
                    "there, delete topics or lower retention; writes resume once there is room",
                )
                return self._commit_when_disk_full(batch, full)
            except StorageError:
                log.exception("commit_failed", ops=len(batch))
                failed = BrokerError(Reason.INTERNAL, "the broker could not commit this write; see its log")
                return [failed] * len(batch)

    def _commit_when_full(self, batch: _Group) -> list[Any]:
        log.error("storage_full", limit_bytes=self._store.limit_bytes())
        full = BrokerError(
            Reason.STORAGE_FULL,
            f"the broker's LMDB map is at its limit ({self._store.limit_bytes() >> 20} MiB): delete topics, lower "
            "retention, or restart the broker with a larger --map-size-gb; writes resume once pages are free",
        )
        freeing = [(i, item) for i, item in enumerate(batch) if getattr(item[0], "frees_space", False)]
        outcomes: list[Any] = [full] * len(batch)
        if freeing:
            group = [item for _, item in freeing]
            while True:
                try:
                    results = self._commit_once(group)
                    self._store.release_freed_pages()
                    break
                except StorageFull as err:
                    if err.disk or not self._grow(into_reserve=True):
                        return outcomes
                except StorageError:
                    log.exception("commit_failed", ops=len(group))
                    return outcomes
            for (i, _), result in zip(freeing, results, strict=True):
                outcomes[i] = result
        return outcomes

    def _refill_reserve_now_and_then(self) -> None:
        """Take back the disk reserve, once the disk has room again (looked at every few seconds)."""
        now = time.monotonic()
        if self._disk_reserve is None or now < self._next_reserve_check:
            return
        self._next_reserve_check = now + RESERVE_CHECK_S
        if self._disk_reserve.short:
            self._disk_reserve.fill()

    def _commit_when_disk_full(self, batch: _Group, full: BrokerError) -> list[Any]:
        """Commit the ops that free space on their own, in the space the disk reserve gives back."""
        outcomes: list[Any] = [full] * len(batch)
        freeing = [(i, item) for i, item in enumerate(batch) if getattr(item[0], "frees_space", False)]
        if not freeing or self._disk_reserve is None:
            return outcomes
        self._disk_reserve.release()
        try:
            results = self._commit_once([item for _, item in freeing])
            self._store.release_freed_pages()
        except (StorageFull, StorageError) as err:
            log.error("commit_failed_on_full_disk", ops=len(freeing), error=str(err))
            return outcomes
        finally:
            self._disk_reserve.fill()  # what the commit left free: held again for the next one
        for (i, _), result in zip(freeing, results, strict=True):
            outcomes[i] = result
        return outcomes

    def _commit_once(self, batch: _Group) -> list[Any]:
        now_ms = int(time.time() * 1000)
        outcomes: list[Any] = []
        with self._store.write() as txn:
            for op, _ in batch:
                try:
                    with txn.nested() as child:
                        outcomes.append(op.apply(child, now_ms))
                except BrokerError as err:
                    outcomes.append(err)
                except (StorageFull, StorageError):
                    raise
                except Exception:
                    log.exception("write_op_failed", op=type(op).__name__)
                    outcomes.append(BrokerError(Reason.INTERNAL, "the broker failed to apply this write; see its log"))
        self.commits += 1
        self.ops_committed += len(batch)
        return outcomes

    def _grow(self, into_reserve: bool) -> bool:
        """Grow the store with no transaction open in this process: on the event loop, where reads run
        in short synchronous transactions, while this thread (the only writer) has none open."""
        if threading.get_ident() == self._loop_thread:
            return self._store.grow(into_reserve)

        async def grow() -> bool:
            return self._store.grow(into_reserve)

        try:
            return asyncio.run_coroutine_threadsafe(grow(), self._loop).result()
        except RuntimeError:  # the loop is gone
            return False

    def _publish_from_thread(self, batch: _Group, outcomes: list[Any]) -> None:
        self._thread_ops -= len(batch)
        self._publish(batch, outcomes)

    def _publish(self, batch: _Group, outcomes: list[Any]) -> None:
        for (op, future), outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, BrokerError):
                if not future.done():
                    future.set_exception(outcome)
                continue
            try:
                op.publish(outcome)
            except Exception:
                # The write is durable; a failure to wake readers must not strand the other futures.
                log.exception("publish_failed", op=type(op).__name__)
            if not future.done():
                future.set_result(outcome)
