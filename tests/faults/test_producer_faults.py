"""The producer's retry and idempotence logic against a model broker that misbehaves at random.

The model keeps the broker's rules (per producer and partition: the last five batches, the next
expected sequence, 0 for a producer new to the partition, OUT_OF_ORDER_SEQUENCE on a gap) and, with
fixed seeds, refuses batches with a
retriable error, loses answers after writing, and breaks the stream before writing. Whatever
happens, every record must end up in the log exactly once, in send order per partition.
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from typing import Any

import grpc
import pytest

from tidelog._wire import encode_record
from tidelog.producer._core import ProducerConfig, ProducerCore
from tidelog.v1 import broker_pb2

PARTITIONS = 3


class ModelBroker:
    def __init__(self, rng: random.Random, refuse: float, lose_answer: float, break_before: float) -> None:
        self.rng = rng
        self.refuse, self.lose_answer, self.break_before = refuse, lose_answer, break_before
        self.log: dict[int, list[bytes]] = defaultdict(list)
        self.producers: dict[tuple[int, int], list[tuple[int, int, int]]] = {}  # (pid, partition) -> batches
        self.next_pid = 1
        self.streams = 0

    async def InitProducer(self, request: Any, timeout: float | None = None) -> Any:  # the RPC stub's name
        self.next_pid += 1
        return broker_pb2.InitProducerResponse(producer_id=self.next_pid)

    def handle(self, data: bytes) -> broker_pb2.ProduceResponse:
        request = broker_pb2.ProduceRequest.FromString(data)
        answer = broker_pb2.ProduceResponse(topic=request.topic, request_id=request.request_id)
        if self.rng.random() < self.refuse:
            answer.error.CopyFrom(broker_pb2.ProduceError(code=14, message="shutting down", reason="SHUTTING_DOWN"))
            return answer
        partition, count = request.partition, len(request.records)
        seen = self.producers.get((request.producer_id, partition), [])
        for first, n, base in seen:
            if first == request.sequence and n == count:
                answer.results.add(partition=partition, base_offset=base, record_count=n)
                return answer
        expected = seen[-1][0] + seen[-1][1] if seen else 0  # a producer new to the partition starts at 0
        if request.sequence != expected:
            answer.error.CopyFrom(
                broker_pb2.ProduceError(
                    code=9,
                    message="gap",
                    reason="OUT_OF_ORDER_SEQUENCE",
                    metadata={"expected_sequence": str(expected)},
                )
            )
            return answer
        base = len(self.log[partition])
        self.log[partition].extend(r.value for r in request.records)
        batches = self.producers.setdefault((request.producer_id, partition), [])
        batches.append((request.sequence, count, base))
        del batches[:-5]
        answer.results.add(partition=partition, base_offset=base, record_count=count)
        return answer

    def open_stream(self) -> ModelStream:
        self.streams += 1
        return ModelStream(self)


def _unavailable() -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), "cut")


class ModelStream:
    def __init__(self, broker: ModelBroker) -> None:
        self.broker = broker
        self.answers: asyncio.Queue[broker_pb2.ProduceResponse | None] = asyncio.Queue()
        self.broken = False

    async def write(self, data: bytes) -> None:
        if self.broken:
            raise _unavailable()
        if self.broker.rng.random() < self.broker.break_before:
            self._break()
            return
        answer = self.broker.handle(data)
        if self.broker.rng.random() < self.broker.lose_answer:
            self._break()  # written, but the answer never arrives
            return
        await asyncio.sleep(0)  # let the answers interleave with further writes
        self.answers.put_nowait(answer)

    def _break(self) -> None:
        self.broken = True
        self.answers.put_nowait(None)

    def __aiter__(self) -> ModelStream:
        return self

    async def __anext__(self) -> broker_pb2.ProduceResponse:
        answer = await self.answers.get()
        if answer is None:
            raise _unavailable()
        return answer

    def cancel(self) -> None:
        self.broken = True


async def produce_through(broker: ModelBroker, records: int) -> list[Any]:
    config = ProducerConfig(batch_bytes=64, linger_ms=0, retry_backoff_ms=0.1, retry_backoff_max_ms=1)
    core = ProducerCore("127.0.0.1:9", asyncio.get_running_loop(), config)
    # The model broker stands in for the gRPC stub (InitProducer) and the streams the senders use.
    core._routing._stub = broker  # type: ignore[assignment]
    core.open_stream = lambda key: broker.open_stream  # type: ignore[method-assign]
    core._accumulator.partitions["t"] = PARTITIONS
    core.start()
    futures = []
    for i in range(records):
        frame = encode_record(None, str(i).encode(), None, 1)
        futures.append(await core.append_async("t", i % PARTITIONS, None, frame, 1))
        if i % 50 == 0:
            await asyncio.sleep(0)
    await asyncio.wait_for(core.flush(), 60)
    await core.close()
    return futures


@pytest.mark.parametrize("seed", range(24))
def test_every_record_lands_once_in_order_whatever_fails(seed: int) -> None:
    broker = ModelBroker(random.Random(seed), refuse=0.05, lose_answer=0.03, break_before=0.03)
    futures = asyncio.run(produce_through(broker, 3000))
    assert [f.exception(0) for f in futures if f.exception(0)] == []
    for partition in range(PARTITIONS):
        assert broker.log[partition] == [str(i).encode() for i in range(partition, 3000, PARTITIONS)]
    for i, future in enumerate(futures):  # the offsets each record was told are where it is
        metadata = future.result(0)
        assert broker.log[metadata.partition][metadata.offset] == str(i).encode()
    assert broker.streams > 10  # the faults happened
