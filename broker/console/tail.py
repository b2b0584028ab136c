"""The live tail: a topic's new records pushed to the page as server-sent events.

One SubscribePartitions stream with the viewer's token, so the broker's ACLs judge it like any
consumer. A page cannot take a firehose: at most MAX_RECORDS_PER_S records a second are sent, and
what is left out is counted in a `skipped` event instead.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from tidelog.broker.batches import records_of
from tidelog.broker.console.gateway import Gateway, call_failed, metadata
from tidelog.broker.console.render import matches, show_record
from tidelog.common.compression import Codecs, CorruptBatch
from tidelog.v1 import broker_pb2

MAX_RECORDS_PER_S = 200


@dataclass(frozen=True)
class TailRequest:
    topic: str
    partitions: list[int]
    start: broker_pb2.PartitionStart  # topic and partition unset: the same start for each partition
    key: bytes | None = None
    contains: bytes | None = None


def event(kind: str, data: Any) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class _Budget:
    """At most MAX_RECORDS_PER_S records a second; counts what it turned away."""

    def __init__(self) -> None:
        self._window_start = time.monotonic()
        self.sent = 0
        self.skipped = 0

    def take(self) -> bool:
        if self.sent < MAX_RECORDS_PER_S:
            self.sent += 1
            return True
        self.skipped += 1
        return False

    def roll(self) -> int:
        """Start a new second if this one is over: how many were skipped in the one that ended."""
        now = time.monotonic()
        if now - self._window_start < 1.0:
            return 0
        skipped, self._window_start, self.sent, self.skipped = self.skipped, now, 0, 0
        return skipped


def _partition_events(
    tail: TailRequest, part: broker_pb2.PartitionRecords, start: int, codecs: Codecs, budget: _Budget
) -> Iterator[bytes]:
    for batch in part.batches:
        try:
            records = records_of(batch, codecs)
        except CorruptBatch as err:
            yield event("partition_error", {"partition": part.partition, "error": str(err)})
            continue
        first_wanted = start - batch.base_offset  # a compressed batch is served whole
        for i, record in enumerate(records):
            if i >= first_wanted and matches(record, tail.key, tail.contains) and budget.take():
                offset = batch.base_offset + i
                yield event("record", show_record(tail.topic, part.partition, offset, record, batch.append_time_ms))


async def tail_events(gateway: Gateway, token: str | None, tail: TailRequest) -> AsyncGenerator[bytes, None]:
    """`ready` (each partition's start), then `record`, `skipped`, `partition_error` and `error` events."""
    request = broker_pb2.SubscribePartitionsRequest()
    for partition in tail.partitions:
        start = request.partitions.add()
        start.CopyFrom(tail.start)
        start.topic, start.partition = tail.topic, partition
    codecs, budget = Codecs(), _Budget()
    stream = gateway.broker.SubscribePartitions(request, metadata=metadata(token))
    try:
        starts: dict[int, int] | None = None
        async for response in stream:
            if starts is None:  # the first response: where each partition starts
                starts = {p.partition: p.next_offset for p in response.partitions}
                yield event("ready", {"starts": starts})
            for failed in response.errors:
                yield event("partition_error", {"partition": failed.partition, "error": failed.message})
            if skipped := budget.roll():
                yield event("skipped", {"records": skipped})
            for part in response.partitions:
                for chunk in _partition_events(tail, part, starts.get(part.partition, 0), codecs, budget):
                    yield chunk
            if not response.partitions and not response.errors:
                yield b": heartbeat\n\n"  # keeps proxies from closing an idle stream
    except grpc.aio.AioRpcError as err:
        if err.code() != grpc.StatusCode.CANCELLED:
            yield event("error", {"error": call_failed(err).message})
    finally:
        stream.cancel()
