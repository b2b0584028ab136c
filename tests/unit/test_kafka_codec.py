"""The Kafka codec: primitives, the message codec over every version spoken, and the generated module."""

from __future__ import annotations

import subprocess
import sys
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.harness import ROOT
from tidelog.broker.kafka import messages
from tidelog.broker.kafka.schema import Message, decode, encode
from tidelog.broker.kafka.wire import MalformedFrame, Reader, Writer


@given(st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1))
def test_varints_round_trip(value: int) -> None:
    out = Writer()
    out.varint(value)
    assert Reader(out.getvalue()).varint() == value


@given(st.integers(min_value=0, max_value=(1 << 64) - 1))
def test_unsigned_varints_round_trip(value: int) -> None:
    out = Writer()
    out.uvarint(value)
    assert Reader(out.getvalue()).uvarint() == value


def test_known_encodings() -> None:
    out = Writer()
    out.varint(-1)
    out.varint(1)
    out.uvarint(300)
    out.compact_string("ab")
    out.compact_string(None)
    out.string("ab")
    out.string(None)
    out.array_length(None, compact=False)
    assert out.getvalue() == b"\x01\x02\xac\x02\x03ab\x00\x00\x02ab\xff\xff\xff\xff\xff\xff"


@pytest.mark.parametrize(
    ("data", "read"),
    [
        (b"\x00\x05ab", lambda r: r.string()),  # a length past the end
        (b"\xff\xff", lambda r: r.string()),  # null where a string is required
        (b"\x80" * 11, lambda r: r.uvarint()),  # a varint that never ends
        (b"\x7f\xff\xff\xff", lambda r: r.array_length(compact=False)),  # more items than bytes
        (b"\x00\x02\xc3\x28", lambda r: r.string()),  # not UTF-8
    ],
)
def test_malformed_input_raises(data: bytes, read: object) -> None:
    with pytest.raises(MalformedFrame):
        read(Reader(data))  # type: ignore[operator]


def _spoken() -> list[tuple[Message, int]]:
    return [
        (message, version)
        for pair in messages.APIS.values()
        for message in pair
        for version in range(message.valid[0], message.valid[1] + 1)
    ]


@pytest.mark.parametrize(("message", "version"), _spoken(), ids=lambda m: getattr(m, "name", str(m)))
def test_every_message_round_trips_in_every_version(message: Message, version: int) -> None:
    samples: dict[str, dict[str, Any]] = {
        "MetadataRequest": {
            "topics": [{"topic_id": uuid.uuid4(), "name": "orders"}],
            "allow_auto_topic_creation": False,
        },
        "MetadataResponse": {
            "brokers": [{"node_id": 0, "host": "127.0.0.1", "port": 9092, "rack": None}],
            "cluster_id": "c",
            "controller_id": 0,
            "topics": [
                {"name": "orders", "partitions": [{"partition_index": 2, "replica_nodes": [0], "isr_nodes": [0]}]}
            ],
        },
        "ApiVersionsRequest": {"client_software_name": "t", "client_software_version": "1"},
        "ListOffsetsRequest": {
            "replica_id": -1,
            "topics": [{"name": "orders", "partitions": [{"partition_index": 1, "timestamp": -2}]}],
        },
        "ListOffsetsResponse": {
            "topics": [{"name": "orders", "partitions": [{"partition_index": 1, "offset": 5, "timestamp": 9}]}]
        },
        "ApiVersionsResponse": {"api_keys": [{"api_key": 3, "min_version": 1, "max_version": 12}]},
        "ProduceRequest": {
            "transactional_id": None,
            "acks": -1,
            "timeout_ms": 30000,
            "topic_data": [{"name": "orders", "partition_data": [{"index": 1, "records": b"batch"}]}],
        },
        "ProduceResponse": {
            "responses": [{"name": "orders", "partition_responses": [{"index": 1, "error_code": 0, "base_offset": 7}]}],
            "throttle_time_ms": 3,
        },
        "InitProducerIdRequest": {"transactional_id": None, "transaction_timeout_ms": 60_000, "producer_id": 4},
        "InitProducerIdResponse": {"error_code": 0, "producer_id": 42, "producer_epoch": 3},
        "FindCoordinatorRequest": {"key": "g", "key_type": 0, "coordinator_keys": ["g"]},
        "FindCoordinatorResponse": {
            "node_id": 1,
            "host": "h",
            "port": 9,
            "coordinators": [{"key": "g", "node_id": 1, "host": "h", "port": 9}],
        },
        "JoinGroupRequest": {
            "group_id": "g",
            "session_timeout_ms": 10_000,
            "member_id": "",
            "protocol_type": "consumer",
            "protocols": [{"name": "range", "metadata": b"m"}],
        },
        "JoinGroupResponse": {
            "generation_id": 3,
            "protocol_name": "range",
            "leader": "a",
            "member_id": "a",
            "members": [{"member_id": "a", "metadata": b"m"}],
        },
        "SyncGroupRequest": {
            "group_id": "g",
            "generation_id": 3,
            "member_id": "a",
            "assignments": [{"member_id": "a", "assignment": b"x"}],
        },
        "SyncGroupResponse": {"error_code": 0, "assignment": b"x"},
        "HeartbeatRequest": {"group_id": "g", "generation_id": 3, "member_id": "a"},
        "HeartbeatResponse": {"error_code": 27},
        "LeaveGroupRequest": {"group_id": "g", "member_id": "a", "members": [{"member_id": "a"}]},
        "LeaveGroupResponse": {"error_code": 0, "members": [{"member_id": "a", "error_code": 0}]},
        "OffsetCommitRequest": {
            "group_id": "g",
            "generation_id_or_member_epoch": 3,
            "member_id": "a",
            "topics": [{"name": "t", "partitions": [{"partition_index": 0, "committed_offset": 5}]}],
        },
        "OffsetCommitResponse": {"topics": [{"name": "t", "partitions": [{"partition_index": 0, "error_code": 0}]}]},
        "OffsetFetchRequest": {
            "group_id": "g",
            "topics": [{"name": "t", "partition_indexes": [0]}],
            "groups": [{"group_id": "g", "topics": None}],
        },
        "OffsetFetchResponse": {
            "topics": [{"name": "t", "partitions": [{"partition_index": 0, "committed_offset": 5}]}],
            "groups": [{"group_id": "g", "topics": []}],
        },
        "CreateTopicsRequest": {
            "topics": [
                {"name": "t", "num_partitions": 3, "replication_factor": -1, "configs": [{"name": "a", "value": "1"}]}
            ],
            "validate_only": True,
        },
        "CreateTopicsResponse": {"topics": [{"name": "t", "error_code": 36, "error_message": "exists"}]},
        "DeleteTopicsRequest": {"topic_names": ["t"], "timeout_ms": 1000},
        "DeleteTopicsResponse": {"responses": [{"name": "t", "error_code": 0}]},
        "DescribeConfigsRequest": {
            "resources": [{"resource_type": 2, "resource_name": "t", "configuration_keys": None}]
        },
        "DescribeConfigsResponse": {
            "results": [{"resource_type": 2, "resource_name": "t", "configs": [{"name": "a", "value": "1"}]}]
        },
        "ListGroupsRequest": {"states_filter": ["Stable"]},
        "ListGroupsResponse": {"groups": [{"group_id": "g", "protocol_type": "consumer", "group_state": "Stable"}]},
        "DescribeGroupsRequest": {"groups": ["g"]},
        "DescribeGroupsResponse": {"groups": [{"group_id": "g", "group_state": "Dead", "members": []}]},
        "SaslHandshakeRequest": {"mechanism": "PLAIN"},
        "SaslHandshakeResponse": {"error_code": 0, "mechanisms": ["PLAIN"]},
        "SaslAuthenticateRequest": {"auth_bytes": b"\0alice\0token"},
        "SaslAuthenticateResponse": {"error_code": 58, "error_message": "authentication failed", "auth_bytes": b""},
        "FetchRequest": {
            "max_wait_ms": 500,
            "min_bytes": 1,
            "max_bytes": 1 << 20,
            "topics": [{"topic": "orders", "partitions": [{"partition": 1, "fetch_offset": 4}]}],
        },
        "FetchResponse": {
            "throttle_time_ms": 0,
            "responses": [
                {"topic": "orders", "partitions": [{"partition_index": 1, "high_watermark": 9, "records": b"b"}]}
            ],
        },
    }
    sample = samples[message.name]
    once = decode(message, version, encode(message, version, sample))
    assert decode(message, version, encode(message, version, once)) == once
    for name, value in sample.items():
        spoken = any(f.name == name and f.present(version) and f.type != "uuid" for f in message.body.fields)
        if spoken and not isinstance(value, list):
            assert once[name] == value, name


def test_the_generated_module_is_current() -> None:
    result = subprocess.run(
        [sys.executable, "scripts/gen_kafka_messages.py", "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
