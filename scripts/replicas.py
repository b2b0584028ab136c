"""Compare the replicas of a topic's partitions byte for byte, as stored: each broker's batches (base
offset, record count, CRC32C) up to the partition's high watermark, read from its LMDB directly
(the brokers stopped, or running: LMDB allows another reader). The cluster crash harness's last check.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tidelog.broker.batches import HEADER_SIZE, holds_kafka, kafka_batch
from tidelog.broker.kafka import record_batch
from tidelog.broker.storage import maintenance
from tidelog.v1.records_pb2 import RecordBatch

BatchId = tuple[int, int, int]  # base offset, record count, CRC32C of the records


@dataclass(frozen=True)
class Divergence:
    """A replica whose batches below the high watermark are not the reference's (the leader's)."""

    partition: int
    broker: int
    reference: int
    first_difference: tuple[BatchId | None, BatchId | None]  # (this replica's batch, the reference's)

    def __str__(self) -> str:
        mine, theirs = self.first_difference
        return (
            f"partition {self.partition}: broker {self.broker} holds {mine} where broker {self.reference} "
            f"(the leader) holds {theirs}"
        )


def _crc(value: bytes) -> int:
    """A stored batch's CRC32C of its records, in either format (broker.batches)."""
    if holds_kafka(value):
        return record_batch.header_of(kafka_batch(value)).crc
    return RecordBatch.FromString(value[HEADER_SIZE:]).crc32c


def stored_batches(data_dir: Path, topic: str, high_watermarks: Mapping[int, int]) -> dict[int, list[BatchId]]:
    """partition -> the batches of `topic` the broker stores that end at or below its high watermark."""
    store = maintenance.open_existing(data_dir)
    try:
        topics, _ = store.load()
        topic_id = next(t.id for t, _ in topics if t.name == topic)
        out: dict[int, list[BatchId]] = {}
        for partition, below in high_watermarks.items():
            out[partition] = [
                (batch.base_offset, batch.count, _crc(batch.value))
                for batch in store.scan(topic_id, partition, 0, below)
                if batch.base_offset + batch.count <= below
            ]
        return out
    finally:
        store.close()


def first_difference(mine: Sequence[BatchId], theirs: Sequence[BatchId]) -> tuple[BatchId | None, BatchId | None]:
    for index in range(max(len(mine), len(theirs))):
        a = mine[index] if index < len(mine) else None
        b = theirs[index] if index < len(theirs) else None
        if a != b:
            return a, b
    return None, None


def divergences(copies: Mapping[int, Mapping[int, Sequence[BatchId]]], leaders: Mapping[int, int]) -> list[Divergence]:
    """`copies`: broker -> partition -> its batches; each partition's replicas against its leader's copy."""
    found = []
    for partition, leader in sorted(leaders.items()):
        reference = copies[leader][partition]
        for broker in sorted(copies):
            if broker != leader and list(copies[broker][partition]) != list(reference):
                found.append(
                    Divergence(partition, broker, leader, first_difference(copies[broker][partition], reference))
                )
    return found


def compare(
    data_dirs: Mapping[int, Path], topic: str, high_watermarks: Mapping[int, int], leaders: Mapping[int, int]
) -> list[Divergence]:
    """Every replica of every partition of `topic` against its leader's, below the high watermarks."""
    copies = {broker: stored_batches(path, topic, high_watermarks) for broker, path in data_dirs.items()}
    return divergences(copies, leaders)
