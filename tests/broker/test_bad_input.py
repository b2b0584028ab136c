"""Every bad input of the API answers its status code and reason, and the broker keeps serving."""

from __future__ import annotations

import functools
from collections.abc import Callable

import grpc
import pytest

from tests.errors_util import error_info, expect_status
from tidelog.common.reasons import Reason
from tidelog.v1 import admin_pb2, broker_pb2, records_pb2
from tidelog.v1.admin_pb2_grpc import AdminStub
from tidelog.v1.broker_pb2_grpc import BrokerStub

C = grpc.StatusCode


def rec(value: bytes = b"v", key: bytes = b"") -> records_pb2.Record:
    return records_pb2.Record(key=key, value=value)


@pytest.mark.parametrize("name", ["", ".", "..", "has space", "slash/name", "x" * 250, "ünïcode", "star*"])
def test_create_topic_bad_name(admin_stub: AdminStub, name: str) -> None:
    expect_status(
        C.INVALID_ARGUMENT, "INVALID_NAME", lambda: admin_stub.CreateTopic(admin_pb2.CreateTopicRequest(name=name))
    )


@pytest.mark.parametrize("partitions", [0, -1, 10_001])
def test_create_topic_bad_partitions(admin_stub: AdminStub, partitions: int) -> None:
    request = admin_pb2.CreateTopicRequest(name="bad-partitions", partitions=partitions)
    expect_status(C.INVALID_ARGUMENT, "INVALID_PARTITIONS", lambda: admin_stub.CreateTopic(request))


def test_create_topic_defaults_to_one_partition_and_reports_configs(admin_stub: AdminStub) -> None:
    topic = admin_stub.CreateTopic(admin_pb2.CreateTopicRequest(name="one-partition", configs={"retention.ms": "-1"}))
    assert topic.partitions == 1
    assert topic.configs["retention.ms"] == "-1"
    assert topic.configs["cleanup.policy"] == "delete"


@pytest.mark.parametrize(
    ("configs", "reason"),
    [
        ({"no.such.key": "1"}, "UNKNOWN_CONFIG"),
        ({"retention.ms": "soon"}, "INVALID_CONFIG"),
        ({"retention.ms": "-2"}, "INVALID_CONFIG"),
        ({"cleanup.policy": "shred"}, "INVALID_CONFIG"),
        ({"max.message.bytes": "0"}, "INVALID_CONFIG"),
        ({"message.timestamp.type": "Now"}, "INVALID_CONFIG"),
    ],
)
def test_create_topic_bad_configs(admin_stub: AdminStub, configs: dict[str, str], reason: str) -> None:
    request = admin_pb2.CreateTopicRequest(name="bad-config", configs=configs)
    err = expect_status(C.INVALID_ARGUMENT, reason, lambda: admin_stub.CreateTopic(request))
    assert next(iter(configs)) in err.details()


def test_topic_exists_and_not_found(admin_stub: AdminStub, topic_factory: Callable[..., str]) -> None:
    topic = topic_factory()
    expect_status(
        C.ALREADY_EXISTS, "TOPIC_EXISTS", lambda: admin_stub.CreateTopic(admin_pb2.CreateTopicRequest(name=topic))
    )
    for call in (
        lambda: admin_stub.DeleteTopic(admin_pb2.DeleteTopicRequest(name="missing")),
        lambda: admin_stub.DescribeTopic(admin_pb2.DescribeTopicRequest(name="missing")),
        lambda: admin_stub.AlterTopicConfigs(admin_pb2.AlterTopicConfigsRequest(name="missing")),
    ):
        expect_status(C.NOT_FOUND, "TOPIC_NOT_FOUND", call)


def test_alter_configs_validates_and_applies(admin_stub: AdminStub, topic_factory: Callable[..., str]) -> None:
    topic = topic_factory()
    bad = admin_pb2.AlterTopicConfigsRequest(name=topic, configs={"retention.bytes": "lots"})
    expect_status(C.INVALID_ARGUMENT, "INVALID_CONFIG", lambda: admin_stub.AlterTopicConfigs(bad))
    altered = admin_stub.AlterTopicConfigs(
        admin_pb2.AlterTopicConfigsRequest(name=topic, configs={"retention.bytes": "1000"})
    )
    assert altered.configs["retention.bytes"] == "1000"
    described = admin_stub.DescribeTopic(admin_pb2.DescribeTopicRequest(name=topic))
    assert described.topic.configs["retention.bytes"] == "1000"


def test_produce_errors(broker_stub: BrokerStub, topic_factory: Callable[..., str]) -> None:
    topic = topic_factory(partitions=2)
    compacted = topic_factory(configs={"cleanup.policy": "compact"})
    small = topic_factory(configs={"max.message.bytes": "100"})
    P = broker_pb2.ProduceRequest
    cases = [
        (C.NOT_FOUND, "TOPIC_NOT_FOUND", P(topic="missing", records=[rec()])),
        (C.INVALID_ARGUMENT, "EMPTY_RECORDS", P(topic=topic, partition=0)),
        (C.INVALID_ARGUMENT, "PARTITION_OUT_OF_RANGE", P(topic=topic, partition=2, records=[rec()])),
        (C.INVALID_ARGUMENT, "PARTITION_OUT_OF_RANGE", P(topic=topic, partition=-1, records=[rec()])),
        (C.INVALID_ARGUMENT, "RECORD_TOO_LARGE", P(topic=small, partition=0, records=[rec(b"x" * 200)])),
        (C.INVALID_ARGUMENT, "KEY_REQUIRED", P(topic=compacted, partition=0, records=[rec(key=b"")])),
        (C.INVALID_ARGUMENT, "INVALID_REQUEST", P(topic=topic, partition=0, records=[rec()], sequence=0)),
        (C.INVALID_ARGUMENT, "INVALID_REQUEST", P(topic=topic, records=[rec()], producer_id=1, sequence=0)),
        (
            C.INVALID_ARGUMENT,
            "INVALID_REQUEST",
            P(topic=topic, partition=0, records=[records_pb2.Record(value=b"v", timestamp_ms=-5)]),
        ),
    ]
    for code, reason, request in cases:
        expect_status(code, reason, functools.partial(broker_stub.Produce, request))
    # Nothing of the failed requests was written.
    for p in range(2):
        assert broker_stub.Fetch(broker_pb2.FetchRequest(topic=topic, partition=p)).high_watermark == 0
    # A compacted topic takes keyed records, a small-limit topic takes small ones.
    broker_stub.Produce(P(topic=compacted, partition=0, records=[rec(key=b"k")]))
    broker_stub.Produce(P(topic=small, partition=0, records=[rec(b"x" * 50)]))


def test_fetch_errors(broker_stub: BrokerStub, topic_factory: Callable[..., str]) -> None:
    topic = topic_factory()
    broker_stub.Produce(broker_pb2.ProduceRequest(topic=topic, partition=0, records=[rec(), rec()]))
    F = broker_pb2.FetchRequest
    expect_status(C.NOT_FOUND, "TOPIC_NOT_FOUND", lambda: broker_stub.Fetch(F(topic="missing")))
    expect_status(C.INVALID_ARGUMENT, "PARTITION_OUT_OF_RANGE", lambda: broker_stub.Fetch(F(topic=topic, partition=1)))
    err = expect_status(C.OUT_OF_RANGE, "OFFSET_OUT_OF_RANGE", lambda: broker_stub.Fetch(F(topic=topic, offset=3)))
    assert dict(error_info(err).metadata) == {"log_start_offset": "0", "high_watermark": "2"}
    expect_status(C.OUT_OF_RANGE, "OFFSET_OUT_OF_RANGE", lambda: broker_stub.Fetch(F(topic=topic, offset=-1)))
    for negative in (F(topic=topic, max_records=-1), F(topic=topic, max_bytes=-1), F(topic=topic, max_wait_ms=-1)):
        expect_status(C.INVALID_ARGUMENT, "INVALID_REQUEST", functools.partial(broker_stub.Fetch, negative))
    # Limits above their bound are clamped, not refused.
    assert broker_stub.Fetch(F(topic=topic, max_bytes=2**31 - 1, max_records=2**31 - 1)).next_offset == 2


def test_subscribe_and_list_offsets_errors(broker_stub: BrokerStub, topic_factory: Callable[..., str]) -> None:
    topic = topic_factory()
    S = broker_pb2.SubscribeRequest
    expect_status(C.NOT_FOUND, "TOPIC_NOT_FOUND", lambda: next(broker_stub.Subscribe(S(topic="missing"))))
    expect_status(
        C.INVALID_ARGUMENT, "PARTITION_OUT_OF_RANGE", lambda: next(broker_stub.Subscribe(S(topic=topic, partition=9)))
    )
    expect_status(C.OUT_OF_RANGE, "OFFSET_OUT_OF_RANGE", lambda: next(broker_stub.Subscribe(S(topic=topic, offset=1))))
    unknown_position = records_pb2.Position.ValueType(7)  # no such Position
    expect_status(
        C.INVALID_ARGUMENT,
        "INVALID_REQUEST",
        lambda: next(broker_stub.Subscribe(S(topic=topic, position=unknown_position))),
    )
    L = broker_pb2.ListOffsetsRequest
    expect_status(C.NOT_FOUND, "TOPIC_NOT_FOUND", lambda: broker_stub.ListOffsets(L(topic="missing")))
    expect_status(
        C.INVALID_ARGUMENT, "PARTITION_OUT_OF_RANGE", lambda: broker_stub.ListOffsets(L(topic=topic, partition=1))
    )
    expect_status(
        C.NOT_FOUND,
        "TOPIC_NOT_FOUND",
        lambda: broker_stub.GetMetadata(broker_pb2.GetMetadataRequest(topics=[topic, "missing"])),
    )


@pytest.mark.parametrize(
    "method", ["/tidelog.v1.Admin/CreateTopic", "/tidelog.v1.Broker/Produce", "/tidelog.v1.Broker/Fetch"]
)
def test_malformed_bytes_are_invalid_argument(channel: grpc.Channel, method: str) -> None:
    call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
    expect_status(C.INVALID_ARGUMENT, "INVALID_REQUEST", lambda: call(b"\x0a\xff\xff\xff\xff\x0f"))


def test_broker_still_serves_after_bad_input(broker_stub: BrokerStub, topic_factory: Callable[..., str]) -> None:
    topic = topic_factory()
    response = broker_stub.Produce(broker_pb2.ProduceRequest(topic=topic, partition=0, records=[rec(b"alive")]))
    assert response.results[0].record_count == 1


def test_names_of_any_length_are_refused_with_a_short_message(channel: grpc.Channel) -> None:
    from tidelog.v1 import groups_pb2
    from tidelog.v1.groups_pb2_grpc import GroupsStub

    admin, data, groups = AdminStub(channel), BrokerStub(channel), GroupsStub(channel)
    huge = "n" * 5000
    calls = {
        "DescribeTopic": lambda: admin.DescribeTopic(admin_pb2.DescribeTopicRequest(name=huge)),
        "CreateTopic": lambda: admin.CreateTopic(admin_pb2.CreateTopicRequest(name=huge)),
        "Produce": lambda: data.Produce(broker_pb2.ProduceRequest(topic=huge, records=[rec()])),
        "Fetch": lambda: data.Fetch(broker_pb2.FetchRequest(topic=huge)),
        "DescribeGroup": lambda: groups.DescribeGroup(groups_pb2.DescribeGroupRequest(group=huge)),
        "FetchOffsets": lambda: groups.FetchOffsets(groups_pb2.FetchOffsetsRequest(group="g", topics=[huge])),
    }
    for method, call in calls.items():
        err = expect_status(C.INVALID_ARGUMENT, "INVALID_NAME", call)
        assert len(err.details()) < 300, method
        assert "5000 characters" in err.details(), method
        assert all(len(v) <= 300 for v in error_info(err).metadata.values()), method


def test_every_error_message_is_cut_to_fit_a_status() -> None:
    from tidelog.broker.errors import MAX_MESSAGE_CHARS, BrokerError

    err = BrokerError(Reason.INVALID_CONFIG, "bad value " + "v" * 20_000, value="v" * 20_000)
    assert len(err.message) < MAX_MESSAGE_CHARS + 50 and "more characters" in err.message
    assert len(err.metadata["value"]) < 300


def test_a_single_broker_takes_only_one_copy(admin_stub: AdminStub) -> None:
    request = admin_pb2.CreateTopicRequest(name="two-copies", replication_factor=2)
    err = expect_status(C.INVALID_ARGUMENT, "INVALID_REPLICATION_FACTOR", lambda: admin_stub.CreateTopic(request))
    assert "--cluster" in (err.details() or "")
