"""The producer's accumulator: when a lingering batch closes (pure: no broker, no event loop)."""

from __future__ import annotations

import threading

from tidelog.producer._batch import Batch
from tidelog.producer.accumulator import Accumulator

TP = tuple[str, int]


def accumulator(backlogged: set[TP]) -> tuple[Accumulator, list[TP]]:
    closed: list[TP] = []
    acc = Accumulator(
        lock=threading.Lock(),
        batch_bytes=1 << 20,
        buffer_bytes=1 << 30,
        max_block_ms=1000,
        linger_s=0.005,
        on_close=lambda tp, batch: closed.append(tp),
        schedule_drain=lambda: None,
        on_loop_thread=lambda: True,
        backlogged=lambda tp: tp in backlogged,
    )
    acc.partitions["t"] = 2
    return acc, closed


def test_a_lingered_batch_waits_while_its_partition_has_batches_to_send() -> None:
    backlog: set[TP] = {("t", 0)}
    acc, closed = accumulator(backlog)
    for partition in (0, 1):
        acc.append("t", partition, None, b"record", ts=1)
    now = max(batch.created for batch in acc.open.values()) + 1.0  # both lingered long enough
    with acc._lock:
        acc.close_due(now, close_all=False)
    assert closed == [("t", 1)]  # partition 0 still has a batch queued: its open one goes on filling
    acc.append("t", 0, None, b"more", ts=2)
    assert isinstance(acc.open[("t", 0)], Batch) and len(acc.open[("t", 0)].frames) == 2
    backlog.clear()  # the queued batch was sent
    with acc._lock:
        acc.close_due(now, close_all=False)
    assert closed == [("t", 1), ("t", 0)]


def test_flushing_closes_every_batch_backlog_or_not() -> None:
    acc, closed = accumulator({("t", 0)})
    acc.append("t", 0, None, b"record", ts=1)
    with acc._lock:
        acc.close_due(0.0, close_all=True)
    assert closed == [("t", 0)]
