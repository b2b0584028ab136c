"""The time index: where in a partition a timestamp lookup starts, so it seeks instead of scanning.

Per partition, an entry (topic_id, partition, timestamp) -> base offset is written whenever a batch
raises the partition's largest timestamp so far. Timestamps need not grow with offsets (CreateTime),
but that running maximum does; so the first entry at or above T names the first batch whose newest
record may be at or after T: every batch before it is older. Retention drops the entries of the
batches it deletes; the first entry left then stands for the log start. Written in the same
transaction as the batch.
"""

from __future__ import annotations

from typing import Any

from tidelog.broker.storage.keys import OFFSET, TIME_KEY
from tidelog.broker.storage.keys import PARTITION_KEY as PARTITION_PREFIX


def note_batch(txn: Any, db: Any, topic_id: int, partition: int, max_timestamp_ms: int, base: int) -> None:
    """Index a new batch if it raises the partition's largest timestamp."""
    prefix = PARTITION_PREFIX.pack(topic_id, partition)
    cursor = txn.cursor(db=db)
    past = cursor.set_range(PARTITION_PREFIX.pack(topic_id, partition + 1))
    last = cursor.prev() if past else cursor.last()
    if last and cursor.key()[:8] == prefix and TIME_KEY.unpack(cursor.key())[2] >= max_timestamp_ms:
        return
    txn.put(TIME_KEY.pack(topic_id, partition, max_timestamp_ms), OFFSET.pack(base), db=db)


def scan_start(txn: Any, db: Any, topic_id: int, partition: int, timestamp_ms: int, log_start: int) -> int | None:
    """The offset a lookup of `timestamp_ms` may start scanning at; None when no record is that new."""
    prefix = PARTITION_PREFIX.pack(topic_id, partition)
    cursor = txn.cursor(db=db)
    if not cursor.set_range(TIME_KEY.pack(topic_id, partition, max(0, timestamp_ms))) or cursor.key()[:8] != prefix:
        return None
    base = int(OFFSET.unpack(cursor.value())[0])
    first = not cursor.prev() or cursor.key()[:8] != prefix
    return log_start if first else max(base, log_start)


def trim(txn: Any, db: Any, topic_id: int, partition: int, new_start: int) -> None:
    """Drop the entries of batches below `new_start` (retention deleted them). The last one dropped
    comes back pointing at `new_start`: its timestamp still bounds the batches kept up to the next entry."""
    prefix = PARTITION_PREFIX.pack(topic_id, partition)
    cursor = txn.cursor(db=db)
    found = cursor.set_range(prefix)
    last_dropped = None
    while found and cursor.key()[:8] == prefix and OFFSET.unpack(cursor.value())[0] < new_start:
        last_dropped = bytes(cursor.key())
        found = cursor.delete()
    if last_dropped is not None:
        txn.put(last_dropped, OFFSET.pack(new_start), db=db)


def truncate(txn: Any, db: Any, topic_id: int, partition: int, offset: int) -> None:
    """Drop the entries of batches at or after `offset` (the log's tail was cut there)."""
    prefix = PARTITION_PREFIX.pack(topic_id, partition)
    cursor = txn.cursor(db=db)
    found = cursor.set_range(prefix)
    while found and cursor.key()[:8] == prefix:
        found = cursor.delete() if OFFSET.unpack(cursor.value())[0] >= offset else cursor.next()
