"""Producer ids for InitProducer: unique over everything a producer may write to.

A single broker counts them in its own store. In a cluster a producer writes to the leaders of many
partitions, and each leader de-duplicates by producer id, so two producers given the same id by two
brokers would have one's batches taken for the other's retries: ids come from a counter in etcd, in
blocks, so that asking for one is rarely a round trip (ids of a block left unused by a restart are
skipped, as Kafka's are).
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from tidelog.broker.cluster.control import ControlPlane
from tidelog.broker.log.ops import InitProducerOp
from tidelog.broker.log.service import Log

BLOCK = 1000


class ProducerIds(Protocol):
    async def next_id(self) -> int: ...


class LocalProducerIds:
    def __init__(self, log_: Log) -> None:
        self._log = log_

    async def next_id(self) -> int:
        producer_id: int = await self._log.submit(InitProducerOp())
        return producer_id


class ClusterProducerIds:
    def __init__(self, control: ControlPlane, block: int = BLOCK) -> None:
        self._control = control
        self._size = block
        self._block: range = range(0)
        self._next = 0
        self._lock = asyncio.Lock()

    async def next_id(self) -> int:
        async with self._lock:
            if self._next >= len(self._block):
                self._block, self._next = await self._control.producer_id_block(self._size), 0
            self._next += 1
            return self._block[self._next - 1]
