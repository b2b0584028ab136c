"""Consumer groups through the raw Groups stubs: membership, cooperative rebalancing, delivery
within credit, commits and fencing, and the admin RPCs."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypedDict, Unpack

import grpc
import pytest

from tests.errors_util import error_reason, expect_status
from tests.harness import BrokerProcess, new_topic, wait_for
from tidelog.common.reasons import Reason
from tidelog.v1 import admin_pb2, broker_pb2, groups_pb2, records_pb2
from tidelog.v1.admin_pb2_grpc import AdminStub
from tidelog.v1.broker_pb2_grpc import BrokerStub
from tidelog.v1.groups_pb2_grpc import GroupsStub

TP = tuple[str, int]


class JoinSettings(TypedDict, total=False):
    """JoinGroup's fields besides the group and its topics."""

    member_id: str
    session_timeout_ms: int
    auto_offset_reset: str
    initial_credit_bytes: int


def produce(address: str, topic: str, partition: int, *values: bytes) -> None:
    with grpc.insecure_channel(address) as channel:
        BrokerStub(channel).Produce(
            broker_pb2.ProduceRequest(
                topic=topic, partition=partition, records=[records_pb2.Record(value=v) for v in values]
            )
        )


class RawMember:
    """One Consume stream driven by hand: what it sent and what it got, on a reader thread."""

    def __init__(self, address: str, group: str, topics: list[str], **join: Unpack[JoinSettings]) -> None:
        self.channel = grpc.insecure_channel(address)
        self.outgoing: queue.Queue[groups_pb2.ConsumeRequest | None] = queue.Queue()
        self.outgoing.put(groups_pb2.ConsumeRequest(join=groups_pb2.JoinGroup(group=group, topics=topics, **join)))
        self.call = GroupsStub(self.channel).Consume(self._requests())
        self.lock = threading.Lock()
        self.assignment: groups_pb2.Assignment | None = None
        self.revoked: list[TP] = []  # every partition the broker asked back
        self.records: dict[TP, list[tuple[int, bytes]]] = {}
        self.commit_results: list[groups_pb2.CommitResult] = []
        self.error: grpc.RpcError | None = None
        self.auto_revoke = True
        threading.Thread(target=self._read, daemon=True).start()

    def _requests(self) -> Iterator[groups_pb2.ConsumeRequest]:
        while (request := self.outgoing.get()) is not None:
            yield request

    def _read(self) -> None:
        try:
            for response in self.call:
                kind = response.WhichOneof("message")
                with self.lock:
                    if kind == "assignment":
                        self.assignment = response.assignment
                    elif kind == "revoke":
                        tps = [(tp.topic, tp.partition) for tp in response.revoke.partitions]
                        self.revoked += tps
                        if self.auto_revoke:
                            self.send(revoked=groups_pb2.Revoked(partitions=response.revoke.partitions))
                    elif kind == "records":
                        r = response.records
                        got = self.records.setdefault((r.topic, r.partition), [])
                        for batch in r.batches:
                            got += [(batch.base_offset + i, rec.value) for i, rec in enumerate(batch.records)]
                    elif kind == "commit_result":
                        self.commit_results.append(response.commit_result)
        except grpc.RpcError as err:
            self.error = err

    def send(self, **message: object) -> None:
        self.outgoing.put(groups_pb2.ConsumeRequest(**message))  # type: ignore[arg-type]

    def owned(self) -> set[TP]:
        with self.lock:
            a = self.assignment
            return {(tp.topic, tp.partition) for tp in a.partitions} if a else set()

    def values(self) -> list[bytes]:
        with self.lock:
            return [v for tp in sorted(self.records) for _, v in self.records[tp]]

    def commit(self, topic: str, partition: int, offset: int) -> None:
        self.send(
            commit=groups_pb2.CommitOffsets(
                offsets=[groups_pb2.PartitionOffset(topic=topic, partition=partition, offset=offset)]
            )
        )

    def close(self) -> None:
        self.call.cancel()
        self.channel.close()


@pytest.fixture
def groups_stub(broker: BrokerProcess) -> Iterator[GroupsStub]:
    with grpc.insecure_channel(broker.address) as channel:
        yield GroupsStub(channel)


def test_a_member_gets_every_partition_records_and_commits(broker: BrokerProcess, groups_stub: GroupsStub) -> None:
    topic = new_topic(broker.address, partitions=2)
    produce(broker.address, topic, 0, b"old")  # before the group: "earliest" starts here
    # It never heartbeats: a session long enough that it stays a member however long the test takes.
    member = RawMember(broker.address, "g-basic", [topic], auto_offset_reset="earliest", session_timeout_ms=300_000)
    try:
        wait_for(lambda: member.owned() == {(topic, 0), (topic, 1)}, what="both partitions assigned")
        produce(broker.address, topic, 1, b"a", b"b")
        wait_for(lambda: sorted(member.values()) == [b"a", b"b", b"old"], what="the 3 records")
        member.commit(topic, 1, 2)
        wait_for(lambda: member.commit_results, what="the commit's result")
        assert list(member.commit_results[0].offsets) == [
            groups_pb2.PartitionOffset(topic=topic, partition=1, offset=2)
        ]
        described = groups_stub.DescribeGroup(groups_pb2.DescribeGroupRequest(group="g-basic"))
        assert described.state == "stable" and [m.member_id for m in described.members] == [
            member.assignment.member_id  # type: ignore[union-attr]
        ]
        lag = {(p.topic, p.partition): (p.committed_offset, p.end_offset, p.lag) for p in described.partitions}
        assert lag == {(topic, 0): (-1, 1, 1), (topic, 1): (2, 2, 0)}
        expect_status(
            grpc.StatusCode.FAILED_PRECONDITION,
            "GROUP_NOT_EMPTY",
            lambda: groups_stub.DeleteGroup(groups_pb2.DeleteGroupRequest(group="g-basic")),
        )
    finally:
        member.close()

    wait_for(
        lambda: not groups_stub.DescribeGroup(groups_pb2.DescribeGroupRequest(group="g-basic")).members,
        what="the closed member to leave",
    )
    produce(broker.address, topic, 1, b"c")
    again = RawMember(broker.address, "g-basic", [topic], auto_offset_reset="earliest", session_timeout_ms=300_000)
    try:  # partition 1 resumes after the commit; partition 0 (nothing committed) from the start
        wait_for(lambda: sorted(again.values()) == [b"c", b"old"], what="the uncommitted records again")
    finally:
        again.close()


def test_join_moves_only_a_fair_share_and_a_dead_members_partitions_move(broker: BrokerProcess) -> None:
    topic = new_topic(broker.address, partitions=12)
    # They never heartbeat: a session long enough that only a closed stream ends a membership.
    members = [RawMember(broker.address, "g-balance", [topic], session_timeout_ms=300_000) for _ in range(3)]
    fourth: RawMember | None = None
    try:
        wait_for(lambda: sorted(len(m.owned()) for m in members) == [4, 4, 4], what="12 partitions over 3 members")
        revoked_before = sum(len(m.revoked) for m in members)
        fourth = RawMember(broker.address, "g-balance", [topic], session_timeout_ms=300_000)
        wait_for(
            lambda: sorted(len(m.owned()) for m in [*members, fourth]) == [3, 3, 3, 3],
            what="12 partitions over 4 members",
        )
        assert sum(len(m.revoked) for m in members) - revoked_before == 3
        owned = [tp for m in [*members, fourth] for tp in m.owned()]
        assert len(set(owned)) == 12

        members[0].close()  # its stream ends: it leaves at once
        survivors = [*members[1:], fourth]
        wait_for(lambda: sorted(len(m.owned()) for m in survivors) == [4, 4, 4], what="12 partitions over 3 survivors")
        produce(broker.address, topic, 5, b"after")
        wait_for(lambda: any(b"after" in m.values() for m in survivors), what="a survivor to get the record")
    finally:
        for m in [*members, *([fourth] if fourth else [])]:
            m.close()


def test_silent_member_times_out_and_is_fenced(broker: BrokerProcess, groups_stub: GroupsStub) -> None:
    topic = new_topic(broker.address)
    silent = RawMember(broker.address, "g-silent", [topic], session_timeout_ms=300)
    try:
        wait_for(lambda: silent.assignment is not None, what="the silent member's assignment")
        member_id, generation = silent.assignment.member_id, silent.assignment.generation  # type: ignore[union-attr]
        wait_for(lambda: silent.error is not None, timeout=10, what="the silent member to be fenced")
        assert silent.error.code() == grpc.StatusCode.FAILED_PRECONDITION  # type: ignore[union-attr]
        assert error_reason(silent.error) == "FENCED"
        request = groups_pb2.CommitOffsetsRequest(
            group="g-silent",
            member_id=member_id,
            generation=generation,
            offsets=[groups_pb2.PartitionOffset(topic=topic, partition=0, offset=0)],
        )
        expect_status(grpc.StatusCode.FAILED_PRECONDITION, "FENCED", lambda: groups_stub.CommitOffsets(request))
    finally:
        silent.close()


def test_commit_by_a_member_that_does_not_own_the_partition_is_refused(
    broker: BrokerProcess, groups_stub: GroupsStub
) -> None:
    topic = new_topic(broker.address, partitions=2)
    a = RawMember(broker.address, "g-fence", [topic])
    b = RawMember(broker.address, "g-fence", [topic])
    try:
        wait_for(lambda: len(a.owned()) == 1 and len(b.owned()) == 1, what="a partition each")
        (not_a,) = b.owned()
        assert b.assignment is not None and a.assignment is not None
        request = groups_pb2.CommitOffsetsRequest(
            group="g-fence",
            member_id=a.assignment.member_id,
            generation=a.assignment.generation,
            offsets=[groups_pb2.PartitionOffset(topic=not_a[0], partition=not_a[1], offset=0)],
        )
        expect_status(grpc.StatusCode.FAILED_PRECONDITION, "NOT_OWNER", lambda: groups_stub.CommitOffsets(request))
        a.commit(not_a[0], not_a[1], 0)  # on the stream: an error answer, and the stream goes on
        wait_for(lambda: a.commit_results, what="the refused commit's answer")
        assert a.commit_results[0].error.reason == Reason.NOT_OWNER
        assert a.error is None
    finally:
        a.close()
        b.close()


def test_delivery_stays_within_credit_and_resumes_on_a_grant(broker: BrokerProcess) -> None:
    topic = new_topic(broker.address)
    for i in range(5):
        produce(broker.address, topic, 0, b"%d" % i + b"x" * 100)  # one stored batch each
    member = RawMember(broker.address, "g-credit", [topic], auto_offset_reset="earliest", initial_credit_bytes=50)
    try:
        # One batch may overshoot the credit, no more.
        wait_for(lambda: len(member.values()) == 1, what="the first batch")
        member.send(credit=groups_pb2.Credit(records=2, bytes=1 << 20))  # records now counted: 2 more
        wait_for(lambda: len(member.values()) == 3, what="2 more records on the grant")
        member.send(heartbeat=groups_pb2.Heartbeat())
        member.send(credit=groups_pb2.Credit(records=100))
        wait_for(lambda: len(member.values()) == 5, what="the last 2 records")
        assert member.values() == [b"%d" % i + b"x" * 100 for i in range(5)]
    finally:
        member.close()


def test_reset_and_delete_a_group(broker: BrokerProcess, groups_stub: GroupsStub) -> None:
    topic = new_topic(broker.address, partitions=2)
    produce(broker.address, topic, 0, b"a", b"b", b"c")
    reset = groups_stub.ResetOffsets(
        groups_pb2.ResetOffsetsRequest(group="g-admin", topic=topic, position=records_pb2.POSITION_LATEST)
    )
    assert [(o.partition, o.offset) for o in reset.offsets] == [(0, 3), (1, 0)]
    groups_stub.ResetOffsets(groups_pb2.ResetOffsetsRequest(group="g-admin", topic=topic, partitions=[0], offset=1))
    fetched = groups_stub.FetchOffsets(groups_pb2.FetchOffsetsRequest(group="g-admin", topics=[topic]))
    assert [(o.partition, o.offset) for o in fetched.offsets] == [(0, 1), (1, 0)]
    assert "g-admin" in [g.name for g in groups_stub.ListGroups(groups_pb2.ListGroupsRequest()).groups]
    expect_status(
        grpc.StatusCode.OUT_OF_RANGE,
        "OFFSET_OUT_OF_RANGE",
        lambda: groups_stub.ResetOffsets(groups_pb2.ResetOffsetsRequest(group="g-admin", topic=topic, offset=99)),
    )
    member = RawMember(broker.address, "g-admin", [topic])
    try:
        wait_for(lambda: member.values() == [b"b", b"c"], what="the records from the reset offset")
    finally:
        member.close()
    wait_for(
        lambda: not groups_stub.DescribeGroup(groups_pb2.DescribeGroupRequest(group="g-admin")).members,
        what="the closed member to leave",
    )
    groups_stub.DeleteGroup(groups_pb2.DeleteGroupRequest(group="g-admin"))
    for call in (
        lambda: groups_stub.DescribeGroup(groups_pb2.DescribeGroupRequest(group="g-admin")),
        lambda: groups_stub.DeleteGroup(groups_pb2.DeleteGroupRequest(group="g-admin")),
    ):
        expect_status(grpc.StatusCode.NOT_FOUND, "GROUP_NOT_FOUND", call)


@pytest.mark.parametrize(
    ("first", "code", "reason"),
    [
        (groups_pb2.ConsumeRequest(heartbeat=groups_pb2.Heartbeat()), grpc.StatusCode.INVALID_ARGUMENT, None),
        (
            groups_pb2.ConsumeRequest(join=groups_pb2.JoinGroup(group="g", topics=["no-such-topic"])),
            grpc.StatusCode.NOT_FOUND,
            "TOPIC_NOT_FOUND",
        ),
        (
            groups_pb2.ConsumeRequest(join=groups_pb2.JoinGroup(group="bad name!", topics=["x"])),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_NAME",
        ),
    ],
)
def test_bad_consume_streams_get_a_clear_status(
    groups_stub: GroupsStub, first: groups_pb2.ConsumeRequest, code: grpc.StatusCode, reason: str | None
) -> None:
    expect_status(code, reason, lambda: list(groups_stub.Consume(iter([first]))))


def test_deleting_a_topic_takes_its_partitions_back_from_the_group(broker: BrokerProcess) -> None:
    kept, doomed = new_topic(broker.address), new_topic(broker.address, partitions=2)
    member = RawMember(broker.address, "g-delete", [kept, doomed])
    try:
        wait_for(lambda: len(member.owned()) == 3, what="the 3 partitions of both topics")
        with grpc.insecure_channel(broker.address) as channel:
            AdminStub(channel).DeleteTopic(admin_pb2.DeleteTopicRequest(name=doomed))
        wait_for(lambda: member.owned() == {(kept, 0)}, what="the deleted topic's partitions taken back")
        assert sorted(member.revoked) == [(doomed, 0), (doomed, 1)]
    finally:
        member.close()


def test_commit_answers_come_in_commit_order_under_write_load(broker: BrokerProcess) -> None:
    topic, load = new_topic(broker.address), new_topic(broker.address)
    produce(broker.address, topic, 0, *[b"x"] * 500)
    stop = threading.Event()

    def flood() -> None:  # large writes go through the writer thread, so commits group there too
        while not stop.is_set():
            produce(broker.address, load, 0, b"y" * 200_000)

    flooders = [threading.Thread(target=flood, daemon=True) for _ in range(3)]
    for flooder in flooders:
        flooder.start()
    member = RawMember(broker.address, "g-order", [topic], initial_credit_bytes=1)
    try:
        wait_for(lambda: member.owned() == {(topic, 0)}, what="the partition assigned")
        sent: list[tuple[str, int | None]] = []
        for i in range(1, 201):
            member.commit(topic, 0, i)
            sent.append(("ok", i))
            member.commit(topic, 5, 0)  # no such partition: refused at once, answered in its turn
            sent.append(("refused", None))
        wait_for(lambda: len(member.commit_results) == len(sent), timeout=30, what="an answer to every commit")
        got = [("refused", None) if r.HasField("error") else ("ok", r.offsets[0].offset) for r in member.commit_results]
        assert got == sent
    finally:
        stop.set()
        for flooder in flooders:
            flooder.join()
        member.close()


def test_a_topic_deleted_and_created_again_is_assigned_again(broker: BrokerProcess) -> None:
    topic = new_topic(broker.address, partitions=2)
    member = RawMember(broker.address, "g-recreate", [topic], auto_offset_reset="earliest")
    try:
        wait_for(lambda: member.owned() == {(topic, 0), (topic, 1)}, what="both partitions assigned")
        with grpc.insecure_channel(broker.address) as channel:
            admin = AdminStub(channel)
            admin.DeleteTopic(admin_pb2.DeleteTopicRequest(name=topic))
            wait_for(lambda: member.owned() == set(), what="the deleted topic's partitions taken back")
            admin.CreateTopic(admin_pb2.CreateTopicRequest(name=topic, partitions=2))
        produce(broker.address, topic, 0, b"again")
        wait_for(lambda: b"again" in member.values(), what="the record in the topic created again")
    finally:
        member.close()


def test_stopping_the_broker_ends_consume_streams_at_once_with_shutting_down(own_broker: BrokerProcess) -> None:
    own_broker.start()
    topic = new_topic(own_broker.address)
    member = RawMember(own_broker.address, "g-stop", [topic])
    wait_for(lambda: member.owned(), what="the partition assigned")
    assert own_broker.stop() == 0  # the streams are ended by the broker, not cut by the grace period
    wait_for(lambda: member.error is not None, what="the stream to end")
    assert member.error.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[union-attr]
    assert error_reason(member.error) == "SHUTTING_DOWN"
    member.close()
