from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from tests.harness import BrokerProcess
from tidelog.v1 import admin_pb2, admin_pb2_grpc, broker_pb2_grpc

_names = itertools.count()


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """One broker shared by the tests that only need a running broker (each uses its own topics).

    Retention is off by default here: tests write records stamped in 1970, which the 7-day default
    would let the cleaner delete between a test's write and its read."""
    process = BrokerProcess(tmp_path_factory.mktemp("shared") / "data", "--retention-ms", "-1").start()
    yield process
    assert process.stop() == 0, process.log()


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    """A broker of the test's own, for tests that stop, kill or restart it."""
    process = BrokerProcess(tmp_path / "data", "--retention-ms", "-1")  # as the shared one
    yield process
    if process.proc is not None:
        process.kill()


@pytest.fixture
def channel(broker: BrokerProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(broker.address) as ch:
        yield ch


@pytest.fixture
def admin_stub(channel: grpc.Channel) -> admin_pb2_grpc.AdminStub:
    return admin_pb2_grpc.AdminStub(channel)


@pytest.fixture
def broker_stub(channel: grpc.Channel) -> broker_pb2_grpc.BrokerStub:
    return broker_pb2_grpc.BrokerStub(channel)


@pytest.fixture
def topic_factory(admin_stub: admin_pb2_grpc.AdminStub, request: pytest.FixtureRequest) -> Callable[..., str]:
    """Create uniquely named topics: topic_factory(partitions=1, **configs) -> name."""

    def create(partitions: int = 1, configs: dict[str, str] | None = None) -> str:
        name = re.sub(r"[^A-Za-z0-9._-]", "-", f"t{next(_names)}-{request.node.name[:40]}")
        admin_stub.CreateTopic(admin_pb2.CreateTopicRequest(name=name, partitions=partitions, configs=configs or {}))
        return name

    return create
