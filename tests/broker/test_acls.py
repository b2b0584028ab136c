"""ACLs over every RPC kind: literal and prefix patterns, deny beats allow, default deny, no leak of
whether a topic exists, reload on SIGHUP."""

from __future__ import annotations

import functools
import hashlib
import json
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from tests.errors_util import expect_status
from tests.harness import ROOT, BrokerProcess, wait_for
from tidelog import AdminClient, Producer
from tidelog.errors import PermissionDeniedError
from tidelog.v1 import broker_pb2, groups_pb2, records_pb2
from tidelog.v1.broker_pb2_grpc import BrokerStub
from tidelog.v1.groups_pb2_grpc import GroupsStub

RULES = """
allow ops * cluster
allow alice produce topic:orders
allow alice consume topic:orders
allow alice consume group:billing
allow alice * topic:orders-*
deny  alice * topic:orders-secret   # deny beats the prefix allow
"""


def line(principal: str) -> str:
    return f"{principal} {hashlib.sha256(principal.encode()).hexdigest()}\n"  # each one's token is its name


def channel_for(address: str, principal: str) -> tuple[grpc.Channel, tuple[tuple[str, str]]]:
    return grpc.insecure_channel(address), (("authorization", f"Bearer {principal}"),)


def test_acls_over_every_rpc_kind(tmp_path: Path) -> None:
    tokens, rules = tmp_path / "tokens", tmp_path / "acls"
    tokens.write_text(line("ops") + line("alice") + line("bob"))
    rules.write_text(RULES)
    broker = BrokerProcess(
        tmp_path / "data", "--auth-tokens", str(tokens), "--acls", str(rules), "--retention-ms", "-1"
    ).start()
    try:
        with AdminClient(broker.address, token="ops") as ops:
            for name in ("orders", "orders-x", "orders-secret", "payments"):
                ops.create_topic(name)
        created = [line for line in broker.log().splitlines() if '"event": "topic_created"' in line]
        assert len(created) == 4 and all('"principal": "ops"' in line and '"request_id"' in line for line in created)
        denied = grpc.StatusCode.PERMISSION_DENIED
        with grpc.insecure_channel(broker.address) as channel:
            data, groups = BrokerStub(channel), GroupsStub(channel)
            alice, bob = (("authorization", "Bearer alice"),), (("authorization", "Bearer bob"),)

            def produce(topic: str, who: tuple[tuple[str, str]]) -> object:
                request = broker_pb2.ProduceRequest(topic=topic, partition=0, records=[records_pb2.Record(value=b"v")])
                return data.Produce(request, metadata=who)

            produce("orders", alice)  # unary, allowed
            produce("orders-x", alice)  # by prefix
            for topic in ("orders-secret", "payments", "no-such-topic"):  # deny, no rule, no topic: one answer
                err = expect_status(denied, "NOT_AUTHORIZED", functools.partial(produce, topic, alice))
                assert f"may not produce topic {topic!r}" in err.details()
            expect_status(denied, "NOT_AUTHORIZED", lambda: produce("orders", bob))  # default deny

            subscribe = broker_pb2.SubscribeRequest(topic="orders", position=records_pb2.POSITION_EARLIEST)
            assert next(data.Subscribe(subscribe, metadata=alice)).high_watermark == 1  # server streaming
            expect_status(denied, "NOT_AUTHORIZED", lambda: next(data.Subscribe(subscribe, metadata=bob)))

            def subscribe_partitions(topic: str) -> broker_pb2.SubscribePartitionsResponse:
                starts = [broker_pb2.PartitionStart(topic="orders"), broker_pb2.PartitionStart(topic=topic)]
                request = broker_pb2.SubscribePartitionsRequest(partitions=starts)
                first: broker_pb2.SubscribePartitionsResponse = next(data.SubscribePartitions(request, metadata=alice))
                return first

            assert [p.high_watermark for p in subscribe_partitions("orders-x").partitions] == [1, 1]
            # One forbidden topic refuses the call, in the same words whether or not it exists.
            refusals = [
                expect_status(denied, "NOT_AUTHORIZED", functools.partial(subscribe_partitions, topic)).details()
                for topic in ("orders-secret", "no-such-topic")
            ]
            assert refusals[0].replace("orders-secret", "T") == refusals[1].replace("no-such-topic", "T")

            def join(group: str, who: tuple[tuple[str, str]]) -> groups_pb2.ConsumeResponse:
                message = groups_pb2.ConsumeRequest(join=groups_pb2.JoinGroup(group=group, topics=["orders"]))
                stream = groups.Consume(iter([message]), metadata=who)
                first: groups_pb2.ConsumeResponse = next(stream)
                stream.cancel()
                return first

            assert join("billing", alice).HasField("assignment")  # bidi
            expect_status(denied, "NOT_AUTHORIZED", lambda: join("other", alice))

        with Producer(broker.address, token="alice") as producer:  # ProduceStream through the SDK
            producer.send("orders", b"sdk", partition=0).result(10)
            with pytest.raises(PermissionDeniedError):
                producer.send("payments", b"no", partition=0).result(10)
        with AdminClient(broker.address, token="alice") as admin, pytest.raises(PermissionDeniedError):
            admin.list_topics()  # needs describe on the cluster
        with AdminClient(broker.address, token="ops") as ops:
            assert [t.name for t in ops.list_topics()] == ["orders", "orders-secret", "orders-x", "payments"]

        rules.write_text(RULES + "allow bob consume topic:orders\n")
        assert broker.proc is not None
        broker.proc.send_signal(signal.SIGHUP)

        def bob_reads() -> bool:
            with grpc.insecure_channel(broker.address) as channel:
                try:
                    BrokerStub(channel).Fetch(
                        broker_pb2.FetchRequest(topic="orders"), metadata=(("authorization", "Bearer bob"),)
                    )
                    return True
                except grpc.RpcError:
                    return False

        wait_for(bob_reads, what="the ACL reload that lets bob read")
    finally:
        broker.stop()


def test_acls_need_principals(tmp_path: Path) -> None:
    rules = tmp_path / "acls"
    rules.write_text(RULES)
    broker = BrokerProcess(tmp_path / "data", "--acls", str(rules))
    with pytest.raises(RuntimeError):
        broker.start()
    assert "--acls needs principals" in broker.log()


def test_rule_evaluation_and_parse_errors(tmp_path: Path) -> None:
    from tidelog.broker.security.acls import Authorizer, parse

    path = tmp_path / "acls"
    path.write_text(RULES + "allow carol describe group:team-*\n")
    authorizer = Authorizer(path)
    assert authorizer.allowed("alice", "produce", "topic", "orders")
    assert not authorizer.allowed("alice", "produce", "topic", "order")  # literal: exact
    assert authorizer.allowed("alice", "alter", "topic", "orders-x")  # prefix, any operation
    assert not authorizer.allowed("alice", "consume", "topic", "orders-secret")  # deny beats allow
    assert authorizer.allowed("alice", "describe", "topic", "orders")  # implied by produce
    assert not authorizer.allowed("alice", "create", "topic", "orders")  # create is not implied
    assert authorizer.allowed("ops", "delete", "group", "anything")  # the cluster covers all
    assert authorizer.allowed("carol", "describe", "group", "team-a")
    assert not authorizer.allowed("carol", "consume", "group", "team-a")
    assert not authorizer.allowed("dave", "describe", "cluster", "")  # default deny
    for bad, fragment in (
        ("permit alice produce topic:x", "expected `allow|deny"),
        ("allow alice write topic:x", "unknown operation 'write'"),
        ("allow alice produce topic", "resource must be"),
        ("allow alice produce queue:x", "resource must be"),
    ):
        with pytest.raises(ValueError, match=fragment):
            parse(bad)


def test_acls_added_by_rpc_and_cli_survive_a_restart(tmp_path: Path) -> None:
    tokens, rules = tmp_path / "tokens", tmp_path / "acls"
    tokens.write_text(line("ops") + line("carol"))
    rules.write_text("allow ops * cluster\n")
    broker = BrokerProcess(
        tmp_path / "data", "--auth-tokens", str(tokens), "--acls", str(rules), "--retention-ms", "-1"
    )
    broker.start()
    try:

        def tidelog(*args: str) -> subprocess.CompletedProcess[str]:
            command = [sys.executable, "-m", "tidelog", *args, "-b", broker.address, "--token", "ops"]
            return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)

        with AdminClient(broker.address, token="ops") as ops:
            ops.create_topic("logs")
        with AdminClient(broker.address, token="carol") as carol, pytest.raises(PermissionDeniedError):
            carol.describe_topic("logs")
        added = tidelog("acls", "add", "allow carol describe topic:log*")
        assert added.returncode == 0, added.stderr
        with AdminClient(broker.address, token="carol") as carol:
            assert carol.describe_topic("logs").topic.name == "logs"
            with pytest.raises(PermissionDeniedError):
                carol.create_acls(["allow carol * cluster"])  # needs alter on the cluster
        bad = tidelog("acls", "add", "allow carol fly topic:x")
        assert bad.returncode == 1 and "unknown operation 'fly'" in bad.stderr

        broker.stop()
        broker.start()  # added rules are kept in the data directory
        listed = json.loads(tidelog("acls", "list", "--json").stdout)
        assert listed == [
            {"rule": "allow ops * cluster", "source": "file"},
            {"rule": "allow carol describe topic:log*", "source": "added"},
        ]
        removed = tidelog("acls", "remove", "allow carol describe topic:log*")
        assert removed.stdout.strip() == "removed 1 rule(s)"
        with AdminClient(broker.address, token="carol") as carol, pytest.raises(PermissionDeniedError):
            carol.describe_topic("logs")
    finally:
        broker.stop()
