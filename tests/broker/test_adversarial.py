"""Adversarial input beyond tests/broker/test_bad_input.py: groups, streams, extreme numbers, zero deadlines,
malformed bytes on streaming RPCs, and thousands of streams opened and dropped. Each gets its exact
status; afterwards the broker still serves and every acknowledged record is there."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from tests.errors_util import expect_status
from tests.harness import BrokerProcess
from tidelog.v1 import admin_pb2, broker_pb2, groups_pb2, records_pb2
from tidelog.v1.admin_pb2_grpc import AdminStub
from tidelog.v1.broker_pb2_grpc import BrokerStub
from tidelog.v1.groups_pb2_grpc import GroupsStub

C = grpc.StatusCode
INT64_MAX = 2**63 - 1
INT32_MAX = 2**31 - 1


def consume(stub: GroupsStub, *messages: groups_pb2.ConsumeRequest) -> list[Any]:
    return list(stub.Consume(iter(messages), timeout=10))


def join(**fields: Any) -> groups_pb2.ConsumeRequest:
    return groups_pb2.ConsumeRequest(join=groups_pb2.JoinGroup(**fields))


@pytest.fixture
def stubs(broker: BrokerProcess) -> Any:
    with grpc.insecure_channel(broker.address) as channel:
        admin, data, groups = AdminStub(channel), BrokerStub(channel), GroupsStub(channel)
        name = "adversarial"
        with contextlib.suppress(grpc.RpcError):  # made by an earlier case
            admin.CreateTopic(admin_pb2.CreateTopicRequest(name=name, partitions=2))
        yield channel, admin, data, groups, name


def cases(
    channel: grpc.Channel, admin: AdminStub, data: BrokerStub, groups: GroupsStub, topic: str
) -> list[tuple[grpc.StatusCode, str | None, Callable[[], Any]]]:
    P, F, S = broker_pb2.ProduceRequest, broker_pb2.FetchRequest, broker_pb2.SubscribeRequest
    record = records_pb2.Record(value=b"v")
    raw_stream = channel.stream_stream("/tidelog.v1.Broker/ProduceStream", None, None)
    raw_consume = channel.stream_stream("/tidelog.v1.Groups/Consume", None, None)
    raw_subscribe = channel.unary_stream("/tidelog.v1.Broker/Subscribe", None, None)
    garbage = b"\x0a\xff\xff\xff\xff\x0f"
    return [
        # extreme numbers
        (C.OUT_OF_RANGE, "OFFSET_OUT_OF_RANGE", lambda: data.Fetch(F(topic=topic, offset=INT64_MAX))),
        (C.OUT_OF_RANGE, "OFFSET_OUT_OF_RANGE", lambda: next(data.Subscribe(S(topic=topic, offset=INT64_MAX)))),
        (C.INVALID_ARGUMENT, "PARTITION_OUT_OF_RANGE", lambda: data.Fetch(F(topic=topic, partition=INT32_MAX))),
        (C.INVALID_ARGUMENT, "INVALID_PARTITIONS", lambda: admin.CreateTopic(
            admin_pb2.CreateTopicRequest(name="too-many", partitions=INT32_MAX))),
        (C.INVALID_ARGUMENT, "INVALID_REQUEST", lambda: data.Produce(
            P(topic=topic, partition=0, records=[record], producer_id=-1, sequence=0))),
        (C.INVALID_ARGUMENT, "INVALID_REQUEST", lambda: data.Produce(
            P(topic=topic, partition=0, records=[record], producer_id=1, sequence=-5))),
        (C.INVALID_ARGUMENT, "INVALID_CONFIG", lambda: admin.CreateTopic(
            admin_pb2.CreateTopicRequest(name="huge-limit", configs={"max.message.bytes": str(INT64_MAX)}))),
        # unknown enum values
        (C.INVALID_ARGUMENT, "INVALID_REQUEST", lambda: data.ListOffsets(
            broker_pb2.ListOffsetsRequest(topic=topic, position=42))),  # type: ignore[arg-type]
        (C.INVALID_ARGUMENT, "INVALID_REQUEST", lambda: groups.ResetOffsets(
            groups_pb2.ResetOffsetsRequest(group="g", topic=topic, position=42))),  # type: ignore[arg-type]
        # zero and tiny deadlines: the client gives up, the broker shrugs
        (C.DEADLINE_EXCEEDED, None, lambda: data.Fetch(F(topic=topic, offset=0, max_wait_ms=5000), timeout=0.001)),
        (C.DEADLINE_EXCEEDED, None, lambda: data.Fetch(F(topic=topic, max_wait_ms=5000), timeout=0.05)),
        # malformed bytes on streaming RPCs
        (C.INVALID_ARGUMENT, "INVALID_REQUEST", lambda: list(raw_stream(iter([garbage]), timeout=10))),
        (C.INVALID_ARGUMENT, "INVALID_REQUEST", lambda: list(raw_consume(iter([garbage]), timeout=10))),
        (C.INVALID_ARGUMENT, "INVALID_REQUEST", lambda: next(raw_subscribe(garbage, timeout=10))),
        # groups
        (C.INVALID_ARGUMENT, "INVALID_REQUEST", lambda: consume(groups, groups_pb2.ConsumeRequest())),
        (C.INVALID_ARGUMENT, "INVALID_NAME", lambda: consume(groups, join(group="", topics=[topic]))),
        (C.INVALID_ARGUMENT, "INVALID_NAME", lambda: consume(groups, join(group="x" * 300, topics=[topic]))),
        (C.INVALID_ARGUMENT, "INVALID_REQUEST", lambda: consume(groups, join(group="g", topics=[]))),
        (C.INVALID_ARGUMENT, "INVALID_REQUEST", lambda: consume(
            groups, join(group="g", topics=[topic], session_timeout_ms=INT32_MAX))),
        (C.INVALID_ARGUMENT, "INVALID_REQUEST", lambda: consume(
            groups, join(group="g", topics=[topic], initial_credit_bytes=-1))),
        (C.INVALID_ARGUMENT, "INVALID_REQUEST", lambda: consume(
            groups, join(group="g", topics=[topic], auto_offset_reset="sometimes"))),
        (C.NOT_FOUND, "TOPIC_NOT_FOUND", lambda: consume(groups, join(group="g", topics=["no-such"]))),
        (C.INVALID_ARGUMENT, "INVALID_REQUEST", lambda: consume(
            groups, join(group="g2", topics=[topic]), groups_pb2.ConsumeRequest(credit=groups_pb2.Credit(bytes=-1)))),
        (C.INVALID_ARGUMENT, "INVALID_REQUEST", lambda: consume(
            groups, join(group="g3", topics=[topic]), join(group="g3", topics=[topic]))),
        (C.FAILED_PRECONDITION, "FENCED", lambda: groups.CommitOffsets(groups_pb2.CommitOffsetsRequest(
            group="nobody", member_id="x", offsets=[groups_pb2.PartitionOffset(topic=topic, partition=0)]))),
        (C.NOT_FOUND, "TOPIC_NOT_FOUND", lambda: groups.CommitOffsets(groups_pb2.CommitOffsetsRequest(
            group="nobody", member_id="x", offsets=[groups_pb2.PartitionOffset(topic="no-such", partition=0)]))),
        (C.NOT_FOUND, "GROUP_NOT_FOUND", lambda: groups.DescribeGroup(groups_pb2.DescribeGroupRequest(group="nope"))),
        (C.NOT_FOUND, "GROUP_NOT_FOUND", lambda: groups.DeleteGroup(groups_pb2.DeleteGroupRequest(group="nope"))),
        (C.INVALID_ARGUMENT, "INVALID_NAME", lambda: groups.DescribeGroup(groups_pb2.DescribeGroupRequest(group=""))),
        (C.INVALID_ARGUMENT, "INVALID_REQUEST", lambda: groups.ResetOffsets(
            groups_pb2.ResetOffsetsRequest(group="g", topic=topic))),
        (C.OUT_OF_RANGE, "OFFSET_OUT_OF_RANGE", lambda: groups.ResetOffsets(
            groups_pb2.ResetOffsetsRequest(group="g", topic=topic, offset=-1))),
        (C.INVALID_ARGUMENT, "PARTITION_OUT_OF_RANGE", lambda: groups.ResetOffsets(
            groups_pb2.ResetOffsetsRequest(group="g", topic=topic, partitions=[7], offset=0))),
        (C.NOT_FOUND, "TOPIC_NOT_FOUND", lambda: groups.FetchOffsets(
            groups_pb2.FetchOffsetsRequest(group="g", topics=["no-such"]))),
    ]  # fmt: skip


def test_adversarial_requests_get_exact_statuses_and_nothing_acknowledged_is_lost(stubs: Any) -> None:
    channel, admin, data, groups, topic = stubs
    acknowledged = data.Produce(
        broker_pb2.ProduceRequest(topic=topic, partition=1, records=[records_pb2.Record(value=b"kept")])
    ).results[0]
    table = cases(channel, admin, data, groups, topic)
    assert len(table) >= 30
    for number, (code, reason, call) in enumerate(table):
        try:
            expect_status(code, reason, call)
        except (AssertionError, pytest.fail.Exception) as err:
            raise AssertionError(f"case {number}: {err}") from None

    # Thousands of streams opened and dropped.
    for _ in range(2000):
        stream = data.Subscribe(broker_pb2.SubscribeRequest(topic=topic, partition=0))
        next(stream)
        stream.cancel()
    members = [groups.Consume(iter([join(group="swarm", topics=[topic])])) for _ in range(200)]
    for member in members:
        next(member)  # the assignment
        member.cancel()

    fetched = data.Fetch(broker_pb2.FetchRequest(topic=topic, partition=1, offset=acknowledged.base_offset))
    assert fetched.batches[0].records[0].value == b"kept"
    assert topic in [t.name for t in admin.ListTopics(admin_pb2.ListTopicsRequest()).topics]
