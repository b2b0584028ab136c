"""ACLs on what group RPCs reveal of topics, on InitProducer, and on streams after a reload.

Every group RPC that names or returns a topic checks the topic's ACL before any lookup, and a
refusal reads the same whether the topic exists (denied, or no rule) or not; a reload that revokes
a token or a right ends the streams that depended on it."""

from __future__ import annotations

import functools
import hashlib
import queue
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.errors_util import error_reason, expect_status
from tests.harness import BrokerProcess, wait_for
from tidelog import AdminClient
from tidelog.v1 import broker_pb2, groups_pb2, records_pb2
from tidelog.v1.broker_pb2_grpc import BrokerStub
from tidelog.v1.groups_pb2_grpc import GroupsStub

RULES = """
allow ops * cluster
allow clerk consume group:billing
allow clerk alter group:billing
allow clerk consume topic:ledger
deny  clerk * topic:secret
allow viewer describe group:billing
allow writer produce topic:ledger-*
allow reader consume topic:ledger
allow reader consume group:readers
"""
PRINCIPALS = ("ops", "clerk", "viewer", "writer", "reader", "nobody", "temp")
DENIED = grpc.StatusCode.PERMISSION_DENIED
# Topics a refusal must not tell apart: one denied by a rule, one no rule allows, one that does not exist.
FORBIDDEN = ("secret", "hidden", "missing")


def token_line(principal: str) -> str:
    return f"{principal} {hashlib.sha256(principal.encode()).hexdigest()}\n"  # each one's token is its name


def auth(principal: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {principal}"),)


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BrokerProcess, Path, Path]]:
    root = tmp_path_factory.mktemp("acl-groups")
    tokens, rules = root / "tokens", root / "acls"
    tokens.write_text("".join(token_line(p) for p in PRINCIPALS))
    rules.write_text(RULES)
    broker = BrokerProcess(
        root / "data", "--auth-tokens", str(tokens), "--acls", str(rules), "--retention-ms", "-1"
    ).start()
    with AdminClient(broker.address, token="ops") as ops:
        for name in ("ledger", "secret", "hidden"):
            ops.create_topic(name)
    with grpc.insecure_channel(broker.address) as channel:
        data, groups = BrokerStub(channel), GroupsStub(channel)
        for name in ("ledger", "secret", "hidden"):
            record = records_pb2.Record(value=b"v")
            data.Produce(broker_pb2.ProduceRequest(topic=name, partition=0, records=[record]), metadata=auth("ops"))
            reset = groups_pb2.ResetOffsetsRequest(group="billing", topic=name, offset=1)
            groups.ResetOffsets(reset, metadata=auth("ops"))  # the group has offsets on every topic
    yield broker, tokens, rules
    assert broker.stop() == 0, broker.log()


def refusal(fn: Callable[[], Any], topic: str) -> str:
    """The refusal's message with the topic's name taken out: the same for every FORBIDDEN topic."""
    err = expect_status(DENIED, "NOT_AUTHORIZED", fn)
    return (err.details() or "").replace(repr(topic), "TOPIC")


def test_every_group_rpc_checks_the_topic_before_looking_it_up(secured: tuple[BrokerProcess, Path, Path]) -> None:
    broker = secured[0]
    with grpc.insecure_channel(broker.address) as channel:
        groups = GroupsStub(channel)
        clerk, viewer = auth("clerk"), auth("viewer")

        def commit(topic: str) -> object:
            offsets = [groups_pb2.PartitionOffset(topic=topic, partition=0, offset=1)]
            request = groups_pb2.CommitOffsetsRequest(group="billing", generation=1, member_id="m", offsets=offsets)
            return groups.CommitOffsets(request, metadata=clerk)

        def fetch(topic: str, who: tuple[tuple[str, str]] = clerk) -> groups_pb2.FetchOffsetsResponse:
            request = groups_pb2.FetchOffsetsRequest(group="billing", topics=[topic])
            fetched: groups_pb2.FetchOffsetsResponse = groups.FetchOffsets(request, metadata=who)
            return fetched

        def reset(topic: str) -> groups_pb2.ResetOffsetsResponse:
            request = groups_pb2.ResetOffsetsRequest(group="billing", topic=topic, position=records_pb2.POSITION_LATEST)
            reset: groups_pb2.ResetOffsetsResponse = groups.ResetOffsets(request, metadata=clerk)
            return reset

        def join(topic: str) -> groups_pb2.ConsumeResponse:
            message = groups_pb2.ConsumeRequest(join=groups_pb2.JoinGroup(group="billing", topics=[topic]))
            stream = groups.Consume(iter([message]), metadata=clerk)
            try:
                first: groups_pb2.ConsumeResponse = next(stream)
                return first
            finally:
                stream.cancel()

        for rpc in (commit, fetch, reset, join):
            answers = {refusal(functools.partial(rpc, topic), topic) for topic in FORBIDDEN}
            assert len(answers) == 1, f"{rpc.__name__} tells forbidden topics apart: {answers}"
        # Allowed: the topic's own answers (no member holds the partition, so the commit is fenced).
        assert error_reason(expect_status(grpc.StatusCode.FAILED_PRECONDITION, None, lambda: commit("ledger"))) in (
            "FENCED",
            "NOT_OWNER",
        )
        assert [o.topic for o in fetch("ledger").offsets] == ["ledger"]
        assert [(o.topic, o.offset) for o in reset("ledger").offsets] == [("ledger", 1)]

        # Unnamed topics: only what the caller may describe comes back, with no trace of the rest.
        everything = groups.FetchOffsets(groups_pb2.FetchOffsetsRequest(group="billing"), metadata=clerk)
        assert [o.topic for o in everything.offsets] == ["ledger"]
        described = groups.DescribeGroup(groups_pb2.DescribeGroupRequest(group="billing"), metadata=clerk)
        assert {p.topic for p in described.partitions} == {"ledger"}
        all_of_it = groups.DescribeGroup(groups_pb2.DescribeGroupRequest(group="billing"), metadata=auth("ops"))
        assert {p.topic for p in all_of_it.partitions} == {"ledger", "secret", "hidden"}

        # Describe on the group alone shows no topic at all.
        assert groups.FetchOffsets(groups_pb2.FetchOffsetsRequest(group="billing"), metadata=viewer).offsets == []
        shown = groups.DescribeGroup(groups_pb2.DescribeGroupRequest(group="billing"), metadata=viewer)
        assert list(shown.partitions) == []
        answers = {refusal(functools.partial(fetch, topic, viewer), topic) for topic in (*FORBIDDEN, "ledger")}
        assert len(answers) == 1


def test_commits_on_a_consume_stream_check_the_topic(secured: tuple[BrokerProcess, Path, Path]) -> None:
    broker = secured[0]
    with grpc.insecure_channel(broker.address) as channel:
        outgoing: queue.Queue[groups_pb2.ConsumeRequest | None] = queue.Queue()
        outgoing.put(groups_pb2.ConsumeRequest(join=groups_pb2.JoinGroup(group="billing", topics=["ledger"])))
        stream = GroupsStub(channel).Consume(iter(outgoing.get, None), metadata=auth("clerk"))
        try:
            assert next(stream).HasField("assignment")

            def commit_result(topic: str) -> groups_pb2.CommitResult:
                offsets = [groups_pb2.PartitionOffset(topic=topic, partition=0, offset=1)]
                outgoing.put(groups_pb2.ConsumeRequest(commit=groups_pb2.CommitOffsets(offsets=offsets)))
                for response in stream:
                    if response.HasField("commit_result"):
                        result: groups_pb2.CommitResult = response.commit_result
                        return result
                raise AssertionError("the stream ended before the commit's answer")

            refusals = set()
            for topic in FORBIDDEN:
                error = commit_result(topic).error
                assert (error.code, error.reason) == (DENIED.value[0], "NOT_AUTHORIZED")
                refusals.add(error.message.replace(repr(topic), "TOPIC"))
            assert len(refusals) == 1
            assert [o.topic for o in commit_result("ledger").offsets] == ["ledger"]
        finally:
            outgoing.put(None)
            stream.cancel()


def test_init_producer_needs_produce_on_some_topic(secured: tuple[BrokerProcess, Path, Path]) -> None:
    broker = secured[0]
    with grpc.insecure_channel(broker.address) as channel:
        data = BrokerStub(channel)
        assert (
            data.InitProducer(broker_pb2.InitProducerRequest(), metadata=auth("writer")).producer_id > 0
        )  # by a prefix rule
        assert (
            data.InitProducer(broker_pb2.InitProducerRequest(), metadata=auth("ops")).producer_id > 0
        )  # by the cluster
        for principal in ("reader", "nobody"):
            err = expect_status(
                DENIED,
                "NOT_AUTHORIZED",
                functools.partial(data.InitProducer, broker_pb2.InitProducerRequest(), metadata=auth(principal)),
            )
            assert "idempotent producer id" in (err.details() or "")


class StreamWatcher:
    """Reads a stream on a thread; `error()` is the status it ended with, once it has ended."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.responses = 0
        self.records = 0  # in a Subscribe stream's batches (heartbeats carry none)
        self.ended: grpc.RpcError | None = None
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for response in self.stream:
                self.responses += 1
                if isinstance(response, broker_pb2.FetchResponse):
                    self.records += sum(len(batch.records) for batch in response.batches)
        except grpc.RpcError as err:
            self.ended = err


def test_a_reload_ends_streams_whose_token_or_rights_were_revoked(
    secured: tuple[BrokerProcess, Path, Path],
) -> None:
    broker, tokens, rules = secured
    assert broker.proc is not None
    with grpc.insecure_channel(broker.address) as channel:
        data, groups = BrokerStub(channel), GroupsStub(channel)
        rules.write_text(RULES + "allow temp consume topic:ledger\n")
        broker.proc.send_signal(signal.SIGHUP)

        def temp_may_read() -> bool:
            try:
                data.Fetch(broker_pb2.FetchRequest(topic="ledger"), metadata=auth("temp"))
                return True
            except grpc.RpcError:
                return False

        wait_for(temp_may_read, what="the ACL reload that lets temp read")
        subscribe = broker_pb2.SubscribeRequest(topic="ledger", position=records_pb2.POSITION_EARLIEST)
        by_token = StreamWatcher(data.Subscribe(subscribe, metadata=auth("temp")))
        by_acl = StreamWatcher(data.Subscribe(subscribe, metadata=auth("reader")))
        # It never heartbeats: a session that outlasts the test.
        readers = groups_pb2.JoinGroup(group="readers", topics=["ledger"], session_timeout_ms=300_000)
        join = groups_pb2.ConsumeRequest(join=readers)
        member_requests: queue.Queue[groups_pb2.ConsumeRequest | None] = queue.Queue()
        member_requests.put(join)
        member = StreamWatcher(groups.Consume(iter(member_requests.get, None), metadata=auth("reader")))
        bystander = StreamWatcher(data.Subscribe(subscribe, metadata=auth("ops")))
        watchers = (by_token, by_acl, member, bystander)
        wait_for(lambda: all(w.responses for w in watchers), what="every stream's first response")

        tokens.write_text("".join(token_line(p) for p in PRINCIPALS if p != "temp"))
        rules.write_text(RULES.replace("allow reader consume topic:ledger\n", ""))
        broker.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: by_token.ended and by_acl.ended and member.ended, what="the revoked streams to end")
        assert by_token.ended.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[union-attr]
        assert by_acl.ended.code() == DENIED and member.ended.code() == DENIED  # type: ignore[union-attr]
        assert "lost a right" in (by_acl.ended.details() or "")  # type: ignore[union-attr]
        assert bystander.ended is None  # a stream that keeps its rights goes on
        before = bystander.records
        record = records_pb2.Record(value=b"after")
        data.Produce(broker_pb2.ProduceRequest(topic="ledger", partition=0, records=[record]), metadata=auth("ops"))
        wait_for(lambda: bystander.records > before, what="the bystander's next records")
        bystander.stream.cancel()
        member_requests.put(None)
        tokens.write_text("".join(token_line(p) for p in PRINCIPALS))
        rules.write_text(RULES)
        broker.proc.send_signal(signal.SIGHUP)
