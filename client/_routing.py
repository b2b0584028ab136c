"""Which broker to send a partition's requests to: its leader, learned from GetMetadata.

A client starts with one channel to its bootstrap list (any broker answers GetMetadata). Once the
metadata names more than one broker, each partition's requests go to its leader over a channel of
their own (one per broker, opened on first use); a `NOT_LEADER` answer names the new leader, which is
used at once, and a refresh of the metadata follows — through the bootstrap list, or, when none of
it answers (the one broker listed died), through the brokers the last metadata named, as Kafka's
clients do. A single broker is reached through the bootstrap channel whatever address it advertises
(it may sit behind a port forward).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

import grpc

from tidelog._channel import Security, call, open_channel
from tidelog.errors import NotLeaderError, TidelogError
from tidelog.v1 import broker_pb2, broker_pb2_grpc

log = logging.getLogger(__name__)

BOOTSTRAP = ""  # the route key of the bootstrap channel
REFRESH_MIN_INTERVAL_S = 0.1  # refreshes asked for in a burst (a broker died) share one GetMetadata
REFRESH_TIMEOUT_S = 5.0  # per broker asked: one out of reach must not hold the others back

TP = tuple[str, int]
T = TypeVar("T")


class Routing:
    """Partition leaders and a channel per broker; on the client's event loop."""

    def __init__(self, bootstrap: str, security: Security | None, timeout_s: float) -> None:
        self._security = security
        self.bootstrap_channel = open_channel(bootstrap, security)
        self._stub = broker_pb2_grpc.BrokerStub(self.bootstrap_channel)
        self._timeout_s = timeout_s
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._leaders: dict[TP, str] = {}  # partition -> its leader's address (clustered only)
        self._brokers: list[str] = []  # every broker the last metadata named (clustered only)
        self._topics: set[str] = set()
        self._refreshing: asyncio.Task[None] | None = None
        self._refreshed_at = 0.0
        self.on_change: list[Callable[[], None]] = []  # told after a refresh

    def key_for(self, tp: TP) -> str:
        """The route of a partition: its leader's address, or BOOTSTRAP (single broker, or not known)."""
        return self._leaders.get(tp, BOOTSTRAP)

    def channel(self, key: str) -> grpc.aio.Channel:
        if key == BOOTSTRAP:
            return self.bootstrap_channel
        channel = self._channels.get(key)
        if channel is None:
            channel = self._channels[key] = open_channel(key, self._security)
        return channel

    def brokers(self) -> list[str]:
        """The addresses of every broker the last metadata named (none for a single broker)."""
        return list(self._brokers)

    @property
    def stub(self) -> broker_pb2_grpc.BrokerStub:
        """The bootstrap channel's stub: metadata, producer ids, anything any broker answers."""
        return self._stub

    async def metadata(
        self, topics: Iterable[str], wait_for_ready: bool = True, key: str = BOOTSTRAP, timeout_s: float | None = None
    ) -> broker_pb2.GetMetadataResponse:
        """GetMetadata for `topics` through the route `key` (the bootstrap channel); learns their leaders."""
        names = sorted(set(topics))
        request = broker_pb2.GetMetadataRequest(topics=names)
        stub = self._stub if key == BOOTSTRAP else broker_pb2_grpc.BrokerStub(self.channel(key))
        response: broker_pb2.GetMetadataResponse = await call(
            stub.GetMetadata(request, timeout=timeout_s or self._timeout_s, wait_for_ready=wait_for_ready)
        )
        self._topics.update(names)
        self.learn(response)
        return response

    def learn(self, response: broker_pb2.GetMetadataResponse) -> None:
        addresses = {b.id: b.address for b in response.brokers}
        clustered = len(addresses) > 1
        self._brokers = sorted(addresses.values()) if clustered else []
        for topic in response.topics:
            for part in topic.partitions:
                tp = (topic.name, part.partition)
                address = addresses.get(part.leader) if clustered else None
                if address:
                    self._leaders[tp] = address
                else:
                    self._leaders.pop(tp, None)

    async def to_leader(self, tp: TP, attempt: Callable[[grpc.aio.Channel], Awaitable[T]], tries: int = 3) -> T:
        """`attempt` on the channel of the partition's leader, following NOT_LEADER up to `tries` times."""
        for _ in range(tries - 1):
            try:
                return await attempt(self.channel(self.key_for(tp)))
            except NotLeaderError as err:
                self.moved(tp, err.metadata.get("leader_address", ""))
        return await attempt(self.channel(self.key_for(tp)))

    def moved(self, tp: TP, address: str) -> None:
        """A broker answered NOT_LEADER naming `address`: use it now, and check the metadata soon."""
        if address:
            self._leaders[tp] = address
        self._topics.add(tp[0])
        self.refresh_soon()

    def refresh_soon(self) -> None:
        """Refresh the leaders of every topic used (one request at a time, at most every 100 ms)."""
        if self._refreshing is not None and not self._refreshing.done():
            return
        self._refreshing = asyncio.get_running_loop().create_task(self._refresh())

    async def _refresh(self) -> None:
        wait = self._refreshed_at + REFRESH_MIN_INTERVAL_S - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        self._refreshed_at = time.monotonic()
        if not self._topics:
            return
        for key in [BOOTSTRAP, *self._brokers]:
            try:
                await self.metadata(self._topics, wait_for_ready=False, key=key, timeout_s=REFRESH_TIMEOUT_S)
                break
            except TidelogError as err:
                log.info("metadata refresh through %s failed: %s", key or "the bootstrap list", err)
        else:
            return  # no broker answered: the next failure asks again
        for listener in self.on_change:
            listener()

    async def close(self) -> None:
        if self._refreshing is not None:
            self._refreshing.cancel()
            await asyncio.gather(self._refreshing, return_exceptions=True)
        for channel in self._channels.values():
            await channel.close()
        await self.bootstrap_channel.close()
