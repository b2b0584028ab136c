"""Two brokers in one process: each keeps its own data, stream limits, ACLs and metrics (nothing is
wired through module globals)."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import grpc
import pytest

from tidelog import AsyncAdminClient, AsyncProducer
from tidelog.broker.config import Settings
from tidelog.broker.server import Broker
from tidelog.errors import PermissionDeniedError, UnauthenticatedError
from tidelog.v1 import broker_pb2, records_pb2
from tidelog.v1.broker_pb2_grpc import BrokerStub


async def open_streams(address: str, topic: str, count: int, token: str = "") -> list[grpc.StatusCode | None]:
    """Open `count` Subscribe streams on one connection; each one's status once it answered (None: live)."""
    metadata = (("authorization", f"Bearer {token}"),) if token else None
    async with grpc.aio.insecure_channel(address) as channel:
        stub = BrokerStub(channel)
        outcomes: list[grpc.StatusCode | None] = []
        calls = []
        for _ in range(count):
            request = broker_pb2.SubscribeRequest(topic=topic, position=records_pb2.POSITION_EARLIEST)
            call = stub.Subscribe(request, metadata=metadata)
            calls.append(call)
            try:
                await call.read()  # the first response: the stream is live
                outcomes.append(None)
            except grpc.aio.AioRpcError as err:
                outcomes.append(err.code())
        for call in calls:
            call.cancel()
        return outcomes


def test_two_brokers_in_one_process_keep_their_own_wiring(tmp_path: Path) -> None:
    tokens, rules = tmp_path / "tokens", tmp_path / "acls"
    tokens.write_text(f"ops {hashlib.sha256(b'ops-token').hexdigest()}\n")
    rules.write_text("allow ops * topic:only-*\n")
    guarded = Settings(
        data_dir=tmp_path / "guarded",
        listen="127.0.0.1:0",
        auth_tokens=tokens,
        acls=rules,
        max_streams_per_connection=1,
        retention_ms=-1,
    )
    unguarded = Settings(data_dir=tmp_path / "open", listen="127.0.0.1:0", retention_ms=-1)

    async def scenario() -> None:
        first, second = Broker(guarded), Broker(unguarded)
        a, b = await first.start(), await second.start()
        try:
            async with AsyncAdminClient(b) as admin:  # no token and no ACL on this one
                await admin.create_topic("shared-name")
            async with AsyncAdminClient(a) as admin:
                with pytest.raises(UnauthenticatedError):
                    await admin.create_topic("only-a")
            async with AsyncAdminClient(a, token="ops-token") as admin:
                await admin.create_topic("only-a")
                with pytest.raises(PermissionDeniedError):
                    await admin.create_topic("shared-name")  # the first broker's ACL, not the second's

            async with AsyncProducer(b) as producer:
                await producer.send("shared-name", b"on b", partition=0)
            assert await open_streams(b, "shared-name", 2) == [None, None]
            limited = await open_streams(a, "only-a", 2, token="ops-token")
            assert limited == [None, grpc.StatusCode.RESOURCE_EXHAUSTED]  # its own per-connection limit

            def produced(broker: Broker) -> float | None:
                return broker.metrics.registry.get_sample_value(
                    "tidelog_produced_records_total", {"topic": "shared-name"}
                )

            assert produced(second) == 1 and produced(first) is None
        finally:
            await first.stop()
            await second.stop()

    asyncio.run(scenario())
