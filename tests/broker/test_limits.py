"""Stream limits: in total and per connection, answered RESOURCE_EXHAUSTED with a retry hint."""

from __future__ import annotations

from pathlib import Path

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from tests.errors_util import expect_status
from tests.harness import BrokerProcess, wait_for
from tidelog.v1 import admin_pb2, broker_pb2
from tidelog.v1.admin_pb2_grpc import AdminStub
from tidelog.v1.broker_pb2_grpc import BrokerStub


def test_stream_limits_in_total_and_per_connection(tmp_path: Path) -> None:
    broker = BrokerProcess(
        tmp_path / "data", "--max-streams", "5", "--max-streams-per-connection", "3", "--retention-ms", "-1"
    ).start()
    own_connection = [("grpc.use_local_subchannel_pool", 1)]  # two channels, two TCP connections
    first = grpc.insecure_channel(broker.address, options=own_connection)
    second = grpc.insecure_channel(broker.address, options=own_connection)
    try:
        AdminStub(first).CreateTopic(admin_pb2.CreateTopicRequest(name="t"))
        request = broker_pb2.SubscribeRequest(topic="t")

        def open_stream(channel: grpc.Channel) -> grpc.Future:
            stream = BrokerStub(channel).Subscribe(request)
            next(stream)  # live
            return stream

        mine = [open_stream(first) for _ in range(3)]
        err = expect_status(C := grpc.StatusCode.RESOURCE_EXHAUSTED, "TOO_MANY_STREAMS", lambda: open_stream(first))
        assert "per connection" in err.details()
        status = rpc_status.from_call(err)
        assert status is not None
        retry = error_details_pb2.RetryInfo()
        assert any(detail.Unpack(retry) for detail in status.details) and retry.retry_delay.seconds >= 1

        theirs = [open_stream(second) for _ in range(2)]
        err = expect_status(C, "TOO_MANY_STREAMS", lambda: open_stream(second))
        assert "--max-streams" in err.details()

        mine.pop().cancel()

        def one_more() -> bool:
            try:
                theirs.append(open_stream(second))
                return True
            except grpc.RpcError:
                return False

        wait_for(one_more, what="room for one more stream once one of mine is cancelled")
        assert BrokerStub(first).Fetch(broker_pb2.FetchRequest(topic="t")).high_watermark == 0  # unary still served
        for stream in mine + theirs:
            stream.cancel()
    finally:
        first.close()
        second.close()
        broker.stop()


def test_settings_from_a_toml_file_and_errors_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "tidelog.toml"
    config.write_text('max-streams = 1\nretention_ms = -1\nfsync = "interval"\n')
    broker = BrokerProcess(tmp_path / "data", "--config", str(config)).start()
    try:
        with grpc.insecure_channel(broker.address) as channel:
            AdminStub(channel).CreateTopic(admin_pb2.CreateTopicRequest(name="t"))
            described = AdminStub(channel).DescribeTopic(admin_pb2.DescribeTopicRequest(name="t"))
            assert described.topic.configs["retention.ms"] == "-1"
            first = BrokerStub(channel).Subscribe(broker_pb2.SubscribeRequest(topic="t"))
            next(first)
            expect_status(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "TOO_MANY_STREAMS",
                lambda: next(BrokerStub(channel).Subscribe(broker_pb2.SubscribeRequest(topic="t"))),
            )
            first.cancel()
    finally:
        broker.stop()
    assert '"fsync": "interval"' in broker.log()

    for text, fragment in (
        ("max-stream = 1\n", "unknown key 'max-stream'"),
        ('max-streams = "many"\n', "max-streams = 'many' is not valid"),
        ('fsync = "sometimes"\n', "fsync must be one of always, interval"),
        ("max-streams = \n", "not valid TOML"),
    ):
        config.write_text(text)
        refused = BrokerProcess(tmp_path / "refused", "--config", str(config))
        try:
            refused.start()
            raise AssertionError("a bad config file must stop the broker")
        except RuntimeError:
            pass
        assert fragment in refused.log(), refused.log()
