"""Clustered broker processes (`tidelog serve --cluster`) with a real etcd: membership and the
controller as every broker's GetMetadata reports them, across a kill -9 and a pause past the lease."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import grpc
import pytest

from tests.broker.test_metrics import free_port, scrape
from tests.cluster.conftest import own_cluster
from tests.errors_util import error_info, expect_status
from tests.harness import wait_for
from tests.proxy import TcpProxy
from tidelog import AdminClient
from tidelog.broker.batches import HEADER_SIZE
from tidelog.broker.storage import maintenance
from tidelog.errors import InvalidArgumentError, InvalidConfigError, TopicNotFoundError, UnavailableError
from tidelog.testing import ClusterProcess
from tidelog.v1 import admin_pb2, broker_pb2, records_pb2
from tidelog.v1.admin_pb2_grpc import AdminStub
from tidelog.v1.broker_pb2_grpc import BrokerStub
from tidelog.v1.records_pb2 import RecordBatch


def metadata(address: str) -> broker_pb2.GetMetadataResponse:
    with grpc.insecure_channel(address) as channel:
        response: broker_pb2.GetMetadataResponse = BrokerStub(channel).GetMetadata(
            broker_pb2.GetMetadataRequest(), timeout=5
        )
        return response


def leader_of(address: str, topic: str) -> tuple[int, int]:
    """(leader, leader epoch) of the topic's partition 0 as the broker at `address` reports it; (-1, -1)
    while it does not know the topic yet."""
    topics = {t.name: t for t in metadata(address).topics}
    part = topics[topic].partitions[0] if topic in topics and topics[topic].partitions else None
    return (part.leader, part.leader_epoch) if part is not None else (-1, -1)


def all_up(cluster: ClusterProcess) -> dict[int, str]:
    """The brokers' addresses, once every broker reports all of them."""
    everyone = cluster.addresses
    wait_for(lambda: all(view(a)[0] == everyone for a in everyone.values()), 30, what="all three in every view")
    return everyone


def replicated(cluster: ClusterProcess, topic: str) -> tuple[int, int]:
    """Create `topic` (one partition, factor 3); (its leader, epoch) once its ISR is full."""
    everyone = cluster.addresses
    with AdminClient(everyone[0]) as admin:
        admin.create_topic(topic, 1, replication_factor=3)
    wait_for(lambda: leader_of(everyone[0], topic)[0] >= 0, 30, what="the topic's leader")
    leader, epoch = leader_of(everyone[0], topic)
    wait_for(lambda: isr_of(everyone[leader], topic) == sorted(everyone), 30, what="a full ISR")
    return leader, epoch


def view(address: str) -> tuple[dict[int, str], int]:
    """(the brokers, the controller) as the broker at `address` reports them."""
    answer = metadata(address)
    return {b.id: b.address for b in answer.brokers}, answer.controller_id


def test_every_broker_reports_the_same_members_and_controller_across_a_kill_and_a_pause(
    cluster: ClusterProcess,
) -> None:
    everyone = all_up(cluster)
    wait_for(lambda: len({view(a)[1] for a in everyone.values()}) == 1, 30, what="one controller, agreed")
    controller = view(everyone[0])[1]
    assert controller in everyone

    cluster.kill(controller)  # kill -9: its lease runs out, then another is elected
    rest = {i: a for i, a in everyone.items() if i != controller}

    def new_controller() -> bool:
        views = [view(a) for a in rest.values()]
        return all(members == rest and c in rest for members, c in views) and len({c for _, c in views}) == 1

    wait_for(new_controller, 30, what="the others to drop the killed controller and agree on a new one")

    paused = min(rest)
    awake = {i: a for i, a in rest.items() if i != paused}
    cluster.pause(paused)  # SIGSTOP past its lease: the others see it leave
    wait_for(lambda: all(paused not in view(a)[0] for a in awake.values()), 30, what="the paused broker to drop out")
    cluster.resume(paused)
    wait_for(lambda: all(view(a)[0] == rest for a in rest.values()), 30, what="the resumed broker to register again")

    cluster.restart(controller)  # the killed broker comes back on its port and data
    wait_for(lambda: all(view(a)[0] == everyone for a in everyone.values()), 30, what="all three again")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--cluster", "etcd://127.0.0.1:2379"], "--cluster needs --broker-id"),
        (["--cluster", "http://127.0.0.1:2379", "--broker-id", "1"], "must be etcd://HOST:PORT"),
        (["--cluster", "etcd://127.0.0.1:2379", "--broker-id", "1", "--cluster-lease-s", "1"], "2 or more"),
        (["--replica-lag-time-ms", "500"], "--replica-lag-time-ms must be 1000 or more"),
    ],
)
def test_cluster_flags_are_checked(tmp_path: Path, args: list[str], fragment: str) -> None:
    serve = [sys.executable, "-m", "tidelog", "serve", "--data-dir", str(tmp_path / "d"), "--listen", "127.0.0.1:0"]
    result = subprocess.run([*serve, *args], capture_output=True, text=True, timeout=30)
    assert result.returncode == 1 and fragment in result.stderr, result.stderr


def test_topics_are_placed_over_the_brokers_and_each_partition_answers_on_its_leader(
    cluster: ClusterProcess,
) -> None:
    everyone = all_up(cluster)
    with AdminClient(everyone[1]) as admin:
        admin.create_topic("placed", 6, replication_factor=3)
    with grpc.insecure_channel(everyone[1]) as channel:
        too_wide = admin_pb2.CreateTopicRequest(name="too-wide", partitions=1, replication_factor=4)
        expect_status(
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_REPLICATION_FACTOR",
            lambda: AdminStub(channel).CreateTopic(too_wide, timeout=10),
        )

    def placement(address: str) -> list[broker_pb2.PartitionMetadata]:
        topics = {t.name: t for t in metadata(address).topics}
        return list(topics["placed"].partitions) if "placed" in topics else []

    wait_for(lambda: all(len(placement(a)) == 6 for a in everyone.values()), 30, what="every broker to know the topic")
    partitions = placement(everyone[2])
    assert Counter(p.leader for p in partitions) == {0: 2, 1: 2, 2: 2}
    assert all(sorted(p.replicas) == [0, 1, 2] and sorted(p.isr) == [0, 1, 2] for p in partitions)
    assert all(p.leader_epoch == 0 and p.replicas[0] == p.leader for p in partitions)

    first = partitions[0]
    record = records_pb2.Record(value=b"on the leader")
    with grpc.insecure_channel(everyone[first.leader]) as channel:
        produce = broker_pb2.ProduceRequest(topic="placed", partition=0, records=[record])
        BrokerStub(channel).Produce(produce, timeout=10)

        def readable() -> bool:  # once every in-sync replica has it: the high watermark
            fetched = BrokerStub(channel).Fetch(broker_pb2.FetchRequest(topic="placed", partition=0), timeout=10)
            return [r.value for b in fetched.batches for r in b.records] == [b"on the leader"]

        wait_for(readable, 30, what="the record below the high watermark")
    other = next(i for i in everyone if i != first.leader)
    with grpc.insecure_channel(everyone[other]) as channel:
        produce = broker_pb2.ProduceRequest(topic="placed", partition=0, records=[record])
        err = expect_status(
            grpc.StatusCode.UNAVAILABLE, "NOT_LEADER", lambda: BrokerStub(channel).Produce(produce, timeout=10)
        )
        info = error_info(err).metadata
        assert (info["leader_id"], info["leader_address"]) == (str(first.leader), everyone[first.leader])

    cluster.kill(first.leader)  # its partitions move to the next in-sync replica, under a new epoch
    rest = [a for i, a in everyone.items() if i != first.leader]

    def moved() -> bool:
        now = placement(rest[0])
        return bool(now) and now[0].leader not in (first.leader, -1) and now[0].leader_epoch == 1

    wait_for(moved, 30, what="partition 0 to be led by another in-sync replica in epoch 1")
    assert first.leader not in placement(rest[0])[0].isr

    def short_of_replicas() -> bool:
        with AdminClient(rest[0]) as admin:
            described = admin.describe_cluster()
        return len(described.under_replicated) == 6 and not described.offline and len(described.brokers) == 2

    wait_for(short_of_replicas, 30, what="every partition reported under-replicated, none offline")


def test_a_client_given_every_broker_starts_while_the_first_is_down(cluster: ClusterProcess) -> None:
    all_up(cluster)
    cluster.kill(0)  # the first address of the bootstrap list answers no more

    def described() -> bool:
        try:
            with AdminClient(cluster.bootstrap, timeout=5) as admin:
                return 0 not in admin.describe_cluster().brokers
        except UnavailableError:
            return False

    wait_for(described, 30, what="a client with the bootstrap list to reach another broker")


def test_records_read_on_a_leader_are_on_its_successor_after_a_kill(cluster: ClusterProcess) -> None:
    everyone = all_up(cluster)
    with AdminClient(everyone[0]) as admin:
        admin.create_topic("kept", 1, replication_factor=3)

    wait_for(lambda: all(leader_of(a, "kept")[0] >= 0 for a in everyone.values()), 30, what="the topic on every broker")
    leader, epoch = leader_of(everyone[0], "kept")
    values = [b"record-%d" % i for i in range(50)]

    def read(address: str) -> list[bytes]:
        with grpc.insecure_channel(address) as channel:
            answer = BrokerStub(channel).Fetch(broker_pb2.FetchRequest(topic="kept", partition=0), timeout=5)
            return [r.value for b in answer.batches for r in b.records]

    with grpc.insecure_channel(everyone[leader]) as channel:
        stub = BrokerStub(channel)
        for start in range(0, 50, 10):
            records = [records_pb2.Record(value=v) for v in values[start : start + 10]]
            stub.Produce(broker_pb2.ProduceRequest(topic="kept", partition=0, records=records), timeout=10)
    # Readers see records once every in-sync replica has them: the high watermark.
    wait_for(lambda: read(everyone[leader]) == values, 30, what="the leader's high watermark to reach 50")

    cluster.kill(leader)
    rest = [a for i, a in everyone.items() if i != leader]
    wait_for(lambda: leader_of(rest[0], "kept")[1] > epoch, 30, what="another in-sync replica to lead")
    successor = everyone[leader_of(rest[0], "kept")[0]]

    def successor_has_them() -> bool:
        try:
            return read(successor) == values
        except grpc.RpcError:
            return False

    wait_for(successor_has_them, 30, what="the successor to serve the same 50 records")


def test_every_record_acknowledged_with_acks_all_is_on_the_successor(cluster: ClusterProcess) -> None:
    everyone = all_up(cluster)
    with AdminClient(everyone[0]) as admin:
        admin.create_topic("acked", 1, replication_factor=3)

    wait_for(
        lambda: all(leader_of(a, "acked")[0] >= 0 for a in everyone.values()), 30, what="the topic on every broker"
    )
    leader, epoch = leader_of(everyone[0], "acked")
    acknowledged: list[bytes] = []
    with grpc.insecure_channel(everyone[leader]) as channel:
        stub = BrokerStub(channel)

        def replicated_everywhere() -> bool:  # the followers are fetching: acks=all can be answered
            stub.Produce(
                broker_pb2.ProduceRequest(topic="acked", partition=0, records=[records_pb2.Record(value=b"warm-up")]),
                timeout=30,
            )
            acknowledged.append(b"warm-up")
            return True

        wait_for(replicated_everywhere, 30, what="a first acknowledged record")
        for round_ in range(20):
            values = [b"acked-%d-%d" % (round_, i) for i in range(10)]
            request = broker_pb2.ProduceRequest(
                topic="acked", partition=0, records=[records_pb2.Record(value=v) for v in values]
            )
            stub.Produce(request, timeout=30)  # acks=all, the default: every in-sync replica has them now
            acknowledged += values
    cluster.kill(leader)  # at once after the last acknowledgement
    rest = [a for i, a in everyone.items() if i != leader]
    wait_for(lambda: leader_of(rest[0], "acked")[1] > epoch, 30, what="another in-sync replica to lead")
    successor = everyone[leader_of(rest[0], "acked")[0]]

    def everything_acknowledged_is_there() -> bool:
        try:
            with grpc.insecure_channel(successor) as channel:
                answer = BrokerStub(channel).Fetch(
                    broker_pb2.FetchRequest(topic="acked", partition=0, max_bytes=4 << 20), timeout=5
                )
        except grpc.RpcError:
            return False
        return [r.value for b in answer.batches for r in b.records] == acknowledged

    wait_for(everything_acknowledged_is_there, 30, what="every acknowledged record on the successor")


def test_acks_all_is_refused_below_min_insync_replicas_and_nothing_is_written(cluster: ClusterProcess) -> None:
    everyone = all_up(cluster)
    with AdminClient(everyone[0]) as admin:
        topic = admin.create_topic("guarded", 1, replication_factor=3)
        assert topic.configs["min.insync.replicas"] == "2"  # min(2, replication factor)
        with pytest.raises(InvalidConfigError, match=r"min\.insync\.replicas=4 is invalid"):
            admin.create_topic("impossible", 1, replication_factor=3, configs={"min.insync.replicas": "4"})
    wait_for(lambda: leader_of(everyone[0], "guarded")[0] >= 0, 30, what="the topic's leader")
    leader, _ = leader_of(everyone[0], "guarded")
    for follower in [b for b in everyone if b != leader]:
        cluster.kill(follower)

    def isr() -> list[int]:
        topics = {t.name: t for t in metadata(everyone[leader]).topics}
        return list(topics["guarded"].partitions[0].isr)

    wait_for(lambda: isr() == [leader], 30, what="the killed followers to leave the ISR")
    with grpc.insecure_channel(everyone[leader]) as channel:
        stub = BrokerStub(channel)
        refused = broker_pb2.ProduceRequest(topic="guarded", partition=0, records=[records_pb2.Record(value=b"x")])
        err = expect_status(
            grpc.StatusCode.UNAVAILABLE, "NOT_ENOUGH_REPLICAS", lambda: stub.Produce(refused, timeout=10)
        )
        assert "min.insync.replicas=2" in (err.details() or "")

        led = broker_pb2.ProduceRequest(
            topic="guarded", partition=0, acks=broker_pb2.ACKS_LEADER, records=[records_pb2.Record(value=b"y")]
        )
        assert stub.Produce(led, timeout=10).results[0].base_offset == 0  # the refused record was not written


def isr_of(address: str, topic: str) -> list[int]:
    """The ISR of the topic's partition 0 as the broker at `address` reports it ([] while unknown)."""
    topics = {t.name: t for t in metadata(address).topics}
    parts = topics[topic].partitions if topic in topics else []
    return list(parts[0].isr) if parts else []


def produce_all(address: str, topic: str, value: bytes) -> int:
    """Produce one record with acks=all to the leader at `address`; its offset."""
    with grpc.insecure_channel(address) as channel:
        request = broker_pb2.ProduceRequest(topic=topic, partition=0, records=[records_pb2.Record(value=value)])
        response: broker_pb2.ProduceResponse = BrokerStub(channel).Produce(request, timeout=30)
        return response.results[0].base_offset


def read_all(address: str, topic: str) -> list[bytes]:
    """Every record of partition 0 up to the high watermark of the broker at `address`."""
    with grpc.insecure_channel(address) as channel:
        answer = BrokerStub(channel).Fetch(
            broker_pb2.FetchRequest(topic=topic, partition=0, offset=0, max_records=100_000), timeout=10
        )
        return [r.value for b in answer.batches for r in b.records]


def test_a_killed_follower_restarted_catches_up_and_rejoins_the_isr(cluster: ClusterProcess) -> None:
    everyone = all_up(cluster)
    leader, _ = replicated(cluster, "rejoin")
    follower, other = [b for b in everyone if b != leader]

    acknowledged = [produce_all(everyone[leader], "rejoin", b"before")]
    cluster.kill(follower)
    wait_for(lambda: follower not in isr_of(everyone[leader], "rejoin"), 30, what="the killed follower out of the ISR")
    acknowledged += [produce_all(everyone[leader], "rejoin", f"while-down-{i}".encode()) for i in range(50)]

    cluster.kill(other)  # now below min.insync.replicas=2: refused, and nothing written
    wait_for(lambda: isr_of(everyone[leader], "rejoin") == [leader], 30, what="the ISR down to the leader")
    with grpc.insecure_channel(everyone[leader]) as channel:
        refused = broker_pb2.ProduceRequest(topic="rejoin", partition=0, records=[records_pb2.Record(value=b"no")])
        expect_status(
            grpc.StatusCode.UNAVAILABLE, "NOT_ENOUGH_REPLICAS", lambda: BrokerStub(channel).Produce(refused, timeout=10)
        )

    cluster.restart(follower)  # behind by 50 records: it fetches them, then rejoins
    wait_for(
        lambda: isr_of(everyone[leader], "rejoin") == sorted([leader, follower]),
        30,
        what="the restarted follower back in the ISR",
    )
    acknowledged.append(produce_all(everyone[leader], "rejoin", b"after"))
    assert acknowledged == list(range(52))
    expected = [b"before", *(f"while-down-{i}".encode() for i in range(50)), b"after"]
    assert read_all(everyone[leader], "rejoin") == expected

    cluster.kill(leader)  # the rejoined follower is the only live ISR member: it takes over, with everything
    wait_for(lambda: leader_of(everyone[follower], "rejoin")[0] == follower, 30, what="the follower to lead")
    wait_for(lambda: read_all(everyone[follower], "rejoin") == expected, 30, what="every record on the new leader")


def test_a_follower_that_stops_fetching_leaves_the_isr_while_registered_and_rejoins(tmp_path: Path) -> None:
    """SIGSTOP for longer than the replica lag time, well inside the lease: the leader shrinks its ISR
    by lag (not by the broker leaving), acks=all goes on with the rest, and after SIGCONT it rejoins."""
    with own_cluster(tmp_path, "--replica-lag-time-ms", "2000", lease_s=60) as cluster:
        everyone = all_up(cluster)
        leader, _ = replicated(cluster, "lagging")
        stopped = max(b for b in everyone if b != leader)

        cluster.pause(stopped)
        try:
            wait_for(
                lambda: stopped not in isr_of(everyone[leader], "lagging"),
                30,
                what="the stopped follower out of the ISR",
            )
            assert stopped in view(everyone[leader])[0]  # still registered: it left the ISR by lag
            offsets = [produce_all(everyone[leader], "lagging", f"r{i}".encode()) for i in range(20)]
        finally:
            cluster.resume(stopped)
        wait_for(
            lambda: isr_of(everyone[leader], "lagging") == sorted(everyone), 30, what="the follower back in the ISR"
        )
        assert offsets == list(range(20))
        assert read_all(everyone[leader], "lagging") == [f"r{i}".encode() for i in range(20)]


def stored_batches(cluster: ClusterProcess, broker_id: int, topic: str, below: int) -> list[tuple[int, int, int]]:
    """(base offset, record count, CRC32C) of partition 0's stored batches that end at or below `below`,
    read from the broker's LMDB directly (another process may read it while the broker runs)."""
    store = maintenance.open_existing(cluster.brokers[broker_id].data_dir)
    try:
        topics, _ = store.load()
        topic_id = next(t.id for t, _ in topics if t.name == topic)
        out = []
        for batch in store.scan(topic_id, 0, 0, below):
            if batch.base_offset + batch.count <= below:
                crc = RecordBatch.FromString(batch.value[HEADER_SIZE:]).crc32c
                out.append((batch.base_offset, batch.count, crc))
        return out
    finally:
        store.close()


def test_a_paused_leader_is_fenced_cuts_what_it_alone_wrote_and_rejoins_as_a_follower(
    cluster: ClusterProcess,
) -> None:
    everyone = all_up(cluster)
    old, old_epoch = replicated(cluster, "zombie")
    before = [f"before-{i}".encode() for i in range(10)]
    assert [produce_all(everyone[old], "zombie", v) for v in before] == list(range(10))

    with grpc.insecure_channel(everyone[old]) as channel:
        grpc.channel_ready_future(channel).result(timeout=10)
        cluster.pause(old)  # SIGSTOP past its lease
        try:
            zombie_write = BrokerStub(channel).Produce.future(
                broker_pb2.ProduceRequest(topic="zombie", partition=0, records=[records_pb2.Record(value=b"zombie")]),
                timeout=60,
            )  # queued on the paused broker: it sees this once it wakes, perhaps before it learns it was replaced
            rest = {i: a for i, a in everyone.items() if i != old}
            wait_for(lambda: all(leader_of(a, "zombie")[1] > old_epoch for a in rest.values()), 30, what="a new leader")
            new, new_epoch = leader_of(next(iter(rest.values())), "zombie")
            after = [f"after-{i}".encode() for i in range(10)]
            assert [produce_all(everyone[new], "zombie", v) for v in after] == list(range(10, 20))
        finally:
            cluster.resume(old)
        with pytest.raises(grpc.RpcError) as refused:
            zombie_write.result(timeout=60)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, refused.value  # never acknowledged

    wait_for(lambda: leader_of(everyone[old], "zombie") == (new, new_epoch), 30, what="the old leader to learn")
    wait_for(lambda: isr_of(everyone[new], "zombie") == sorted(everyone), 30, what="the old leader back in the ISR")
    assert read_all(everyone[new], "zombie") == before + after  # and no b"zombie"
    last = produce_all(everyone[new], "zombie", b"last")  # acks=all: every replica holds all of it now
    end = last + 1
    replicas = {b: stored_batches(cluster, b, "zombie", end) for b in everyone}
    assert replicas[old] == replicas[new] and replicas[new] == replicas[min(rest)]
    assert sum(count for _, count, _ in replicas[new]) == end


def test_a_restarted_leader_cuts_the_tail_only_it_has_back_to_its_successors_epoch(tmp_path: Path) -> None:
    """The followers are stopped (inside their lease) while the leader takes records with acks=leader;
    the leader is killed and a follower takes over without them (but perhaps the first, if a fetch was
    already waiting for it). When the old leader comes back, its log runs past where epoch 0 ends on
    the new leader: it cuts those records and copies the new leader's, so the replicas are
    byte-for-byte the same."""
    with own_cluster(tmp_path, lease_s=10) as cluster:
        everyone = all_up(cluster)
        old, _ = replicated(cluster, "tail")
        followers = [b for b in everyone if b != old]
        shared = [produce_all(everyone[old], "tail", f"shared-{i}".encode()) for i in range(5)]
        assert shared == list(range(5))

        for b in followers:
            cluster.pause(b)
        try:
            with grpc.insecure_channel(everyone[old]) as channel:
                stub = BrokerStub(channel)
                for i in range(3):
                    request = broker_pb2.ProduceRequest(
                        topic="tail",
                        partition=0,
                        acks=broker_pb2.ACKS_LEADER,
                        records=[records_pb2.Record(value=f"only-on-old-{i}".encode())],
                    )
                    assert stub.Produce(request, timeout=10).results[0].base_offset == 5 + i
            cluster.kill(old)
        finally:
            for b in followers:
                cluster.resume(b)
        wait_for(lambda: leader_of(everyone[followers[0]], "tail")[0] in followers, 60, what="a follower to lead")
        new, _ = leader_of(everyone[followers[0]], "tail")
        after = [produce_all(everyone[new], "tail", f"after-{i}".encode()) for i in range(5)]
        kept = after[0] - 5  # of the three, what reached the followers before they stopped
        assert kept <= 1 and after == list(range(after[0], after[0] + 5))  # offsets the old leader used

        cluster.restart(old)
        wait_for(lambda: isr_of(everyone[new], "tail") == sorted(everyone), 60, what="the old leader back in the ISR")
        assert "replica_truncated" in cluster.brokers[old].log()
        end = produce_all(everyone[new], "tail", b"last") + 1
        replicas = {b: stored_batches(cluster, b, "tail", end) for b in everyone}
        assert replicas[old] == replicas[new] == replicas[next(b for b in followers if b != new)]
        expected = [
            *(f"shared-{i}".encode() for i in range(5)),
            *(f"only-on-old-{i}".encode() for i in range(kept)),
            *(f"after-{i}".encode() for i in range(5)),
            b"last",
        ]
        assert read_all(everyone[new], "tail") == expected


def test_producer_ids_are_unique_across_the_brokers(cluster: ClusterProcess) -> None:
    """Each leader de-duplicates by producer id: two producers given one id by two brokers would have
    one's batches taken for the other's retries."""
    ids = []
    for address in [*cluster.addresses.values(), *cluster.addresses.values()]:
        with grpc.insecure_channel(address) as channel:
            response = BrokerStub(channel).InitProducer(broker_pb2.InitProducerRequest(), timeout=10)
            ids.append(response.producer_id)
    assert len(set(ids)) == len(ids) and min(ids) > 0
    cluster.restart(0)  # a restarted broker takes a new block: no id handed out again
    with grpc.insecure_channel(cluster.addresses[0]) as channel:
        again = BrokerStub(channel).InitProducer(broker_pb2.InitProducerRequest(), timeout=10).producer_id
    assert again not in ids


def test_a_new_leader_answers_an_idempotent_retry_with_the_original_offsets(cluster: ClusterProcess) -> None:
    """Followers rebuild producer state from the batches they copy: a retry that reaches the new leader
    after a failover (the answer was lost with the old one) is not written twice."""
    everyone = all_up(cluster)
    old, epoch = replicated(cluster, "dedup")

    def batch(sequence: int) -> broker_pb2.ProduceRequest:
        values = [f"seq-{sequence}-{i}".encode() for i in range(3)]
        return broker_pb2.ProduceRequest(
            topic="dedup",
            partition=0,
            producer_id=producer_id,
            sequence=sequence,
            records=[records_pb2.Record(value=v) for v in values],
        )

    with grpc.insecure_channel(everyone[old]) as channel:
        stub = BrokerStub(channel)
        producer_id = stub.InitProducer(broker_pb2.InitProducerRequest(), timeout=10).producer_id
        first = [stub.Produce(batch(s), timeout=30).results[0] for s in (0, 3, 6)]
    assert [r.base_offset for r in first] == [0, 3, 6]
    assert sorted(first[-1].durable_on) == sorted(everyone) and first[-1].leader_epoch == epoch  # the receipt
    cluster.kill(old)
    rest = [a for i, a in everyone.items() if i != old]
    wait_for(lambda: leader_of(rest[0], "dedup")[1] > epoch, 30, what="another in-sync replica to lead")
    new, _ = leader_of(rest[0], "dedup")

    def answer(sequence: int) -> broker_pb2.PartitionResult | None:
        try:
            with grpc.insecure_channel(everyone[new]) as channel:
                result: broker_pb2.PartitionResult = BrokerStub(channel).Produce(batch(sequence), timeout=10).results[0]
                return result
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.UNAVAILABLE:  # the new leader noting its epoch: retry
                return None
            raise

    retried = wait_for(lambda: answer(6), 30, what="the retry answered by the new leader")
    assert retried is not None and retried.base_offset == 6  # the original offsets: not written again
    assert answer(9) is not None and read_all(everyone[new], "dedup") == [
        f"seq-{s}-{i}".encode() for s in (0, 3, 6, 9) for i in range(3)
    ]


def test_after_the_controller_is_killed_another_creates_topics_and_elects_leaders(cluster: ClusterProcess) -> None:
    everyone = all_up(cluster)
    controller = view(everyone[0])[1]
    cluster.kill(controller)
    rest = {i: a for i, a in everyone.items() if i != controller}
    wait_for(lambda: all(view(a)[1] in rest and view(a)[0] == rest for a in rest.values()), 30, what="a new controller")
    new_controller = view(next(iter(rest.values())))[1]
    with AdminClient(",".join(rest.values())) as admin:
        admin.create_topic("after", 2, replication_factor=2)  # two brokers live: a factor of 2 fits
    victim = next(b for b in rest if b != new_controller)

    def leaders() -> dict[int, tuple[int, int]]:
        topics = {t.name: t for t in metadata(rest[new_controller]).topics}
        parts = topics["after"].partitions if "after" in topics else []
        return {p.partition: (p.leader, p.leader_epoch) for p in parts}

    wait_for(lambda: {leader for leader, _ in leaders().values()} == set(rest), 30, what="leaders on both brokers")
    before = leaders()
    cluster.kill(victim)  # the election of its partition must come from the new controller
    wait_for(
        lambda: all(leader == new_controller for leader, _ in leaders().values()), 30, what="the survivor leading all"
    )
    after = leaders()
    assert all(after[p][1] > epoch for p, (leader, epoch) in before.items() if leader == victim)


def checkpointed(cluster: ClusterProcess, broker_id: int, topic: str) -> int:
    """The high watermark of the topic's partition 0 checkpointed in the broker's LMDB (-1: none)."""
    store = maintenance.open_existing(cluster.brokers[broker_id].data_dir)
    try:
        topics, _ = store.load()
        topic_id = next((t.id for t, _ in topics if t.name == topic), None)
        mark = store.high_watermark(topic_id, 0) if topic_id is not None else None
        return -1 if mark is None else mark
    finally:
        store.close()


def test_a_restarted_leader_serves_up_to_its_checkpointed_high_watermark_before_followers_return(
    tmp_path: Path,
) -> None:
    """The leader is killed and restarted while its followers are stopped (inside their lease and lag
    time): without the checkpoint it would hide every record until they fetch again."""
    with own_cluster(tmp_path, "--replica-lag-time-ms", "60000", lease_s=60) as cluster:
        everyone = all_up(cluster)
        leader, _ = replicated(cluster, "marked")
        values = [f"v{i}".encode() for i in range(10)]
        for value in values:
            produce_all(everyone[leader], "marked", value)
        wait_for(lambda: checkpointed(cluster, leader, "marked") == 10, 30, what="the high watermark checkpointed")

        followers = [b for b in everyone if b != leader]
        cluster.kill(leader)
        for b in followers:
            cluster.pause(b)
        try:
            cluster.restart(leader)  # still the leader: its old lease outlives the restart
            assert read_all(everyone[leader], "marked") == values
        finally:
            for b in followers:
                cluster.resume(b)


def test_a_cut_link_takes_the_follower_out_of_the_isr_and_it_rejoins_once_the_link_heals(tmp_path: Path) -> None:
    """A TCP proxy carries the replication from leader 0 (its --replication-advertise): cut, the
    follower (still registered, still running) leaves the ISR by lag, acks=all goes on with the ISR
    that is left; healed, it catches up, rejoins and holds every record."""
    link = TcpProxy().start()
    metrics = f"127.0.0.1:{free_port()}"
    try:
        one = {0: ("--replication-advertise", link.address, "--metrics-listen", metrics)}
        with own_cluster(tmp_path, "--replica-lag-time-ms", "2000", one_broker_args=one) as cluster:
            link.upstream = cluster.addresses[0]
            everyone = all_up(cluster)
            with AdminClient(everyone[0]) as admin:  # partition 0 of factor 2 is placed on brokers 0 and 1
                admin.create_topic("linked", 1, {"min.insync.replicas": "1"}, replication_factor=2)
            wait_for(lambda: isr_of(everyone[0], "linked") == [0, 1], 30, what="follower 1 in the ISR")
            assert leader_of(everyone[0], "linked")[0] == 0
            assert link.connections > 0  # the follower replicates through the link
            first = [produce_all(everyone[0], "linked", f"before-{i}".encode()) for i in range(5)]

            link.cut(hold=True)
            wait_for(lambda: isr_of(everyone[0], "linked") == [0], 30, what="follower 1 out of the ISR")
            assert 1 in view(everyone[0])[0]  # registered all along: it left by lag, not by its lease
            during = [produce_all(everyone[0], "linked", f"cut-{i}".encode()) for i in range(5)]
            seen = scrape(metrics)
            assert seen[("tidelog_under_replicated_partitions", ())] == 1
            assert (
                seen[("tidelog_replica_lag_records", (("partition", "0"), ("replica", "1"), ("topic", "linked")))] == 5
            )

            link.heal()
            wait_for(lambda: isr_of(everyone[0], "linked") == [0, 1], 30, what="follower 1 back in the ISR")
            assert scrape(metrics)[("tidelog_under_replicated_partitions", ())] == 0
            assert first + during == list(range(10))
            expected = [f"{p}-{i}".encode() for p in ("before", "cut") for i in range(5)]
            assert read_all(everyone[0], "linked") == expected
            assert stored_batches(cluster, 1, "linked", 10) == stored_batches(cluster, 0, "linked", 10)
    finally:
        link.close()


def topics_at(address: str) -> dict[str, dict[str, str]]:
    """The topics (and their configs) the broker at `address` lists."""
    with grpc.insecure_channel(address) as channel:
        answer = AdminStub(channel).ListTopics(admin_pb2.ListTopicsRequest(), timeout=5)
    return {t.name: dict(t.configs) for t in answer.topics}


def test_a_topic_deleted_or_altered_on_one_broker_is_so_on_every_broker_even_one_that_was_down(
    cluster: ClusterProcess,
) -> None:
    everyone = all_up(cluster)
    leader, _ = replicated(cluster, "doomed")
    assert produce_all(everyone[leader], "doomed", b"old") == 0
    with AdminClient(everyone[1]) as admin:
        admin.alter_topic_configs("doomed", {"retention.ms": "123456"})
    wait_for(
        lambda: all(topics_at(a).get("doomed", {}).get("retention.ms") == "123456" for a in everyone.values()),
        30,
        what="the new retention.ms on every broker",
    )

    cluster.kill(2)  # down while the topic is deleted: it drops its copy when it is back
    survivors = {b: a for b, a in everyone.items() if b != 2}
    with AdminClient(survivors[0]) as admin:
        admin.delete_topic("doomed")
        with pytest.raises(TopicNotFoundError):
            admin.delete_topic("doomed")
    wait_for(lambda: all("doomed" not in topics_at(a) for a in survivors.values()), 30, what="deleted on both")
    cluster.restart(2)
    wait_for(lambda: "doomed" not in topics_at(everyone[2]), 30, what="the returning broker to drop its copy")

    leader, _ = replicated(cluster, "doomed")  # the name again: a new topic, with none of the old records
    assert produce_all(everyone[leader], "doomed", b"new") == 0
    assert read_all(everyone[leader], "doomed") == [b"new"]


def produced(address: str, topic: str, value: bytes) -> int | None:
    """produce_all's offset, or None while the broker at `address` is not (yet) the leader."""
    try:
        return produce_all(address, topic, value)
    except grpc.RpcError as err:
        if err.code() != grpc.StatusCode.UNAVAILABLE:
            raise
        return None


def test_a_preferred_election_gives_the_lead_back_to_the_first_replica_once_it_is_in_sync(
    cluster: ClusterProcess,
) -> None:
    everyone = all_up(cluster)
    leader, epoch = replicated(cluster, "preferred")
    assert leader == 0  # partition 0's preferred replica
    cluster.kill(0)
    wait_for(lambda: leader_of(everyone[1], "preferred")[0] in (1, 2), 30, what="another leader")
    cluster.restart(0)
    now, _ = leader_of(everyone[1], "preferred")
    wait_for(lambda: isr_of(everyone[now], "preferred") == [0, 1, 2], 30, what="broker 0 back in sync")
    with AdminClient(everyone[1]) as admin:
        (result,) = admin.elect_leaders("preferred")
        assert result.outcome == "elected" and result.leader == 0 and result.leader_epoch > epoch
        offsets: list[int] = []

        def led_by_0() -> bool:  # offset 0 is falsy: wait_for is given whether it was written
            offset = produced(everyone[0], "preferred", b"led by 0")
            offsets.extend([] if offset is None else [offset])
            return bool(offsets)

        wait_for(led_by_0, 30, what="broker 0 leading again")
        assert offsets == [0]
        (again,) = admin.elect_leaders("preferred")
        assert again.outcome == "not_needed"


def test_an_unclean_election_leads_an_offline_partition_from_a_replica_that_was_out_of_sync(
    cluster: ClusterProcess,
) -> None:
    everyone = all_up(cluster)
    with AdminClient(everyone[0]) as admin:  # partition 0 on brokers 0 and 1
        admin.create_topic("unclean", 1, {"min.insync.replicas": "1"}, replication_factor=2)
    wait_for(lambda: isr_of(everyone[0], "unclean") == [0, 1], 30, what="a full ISR")
    assert produce_all(everyone[0], "unclean", b"both have it") == 0
    cluster.kill(1)
    wait_for(lambda: isr_of(everyone[0], "unclean") == [0], 30, what="broker 1 out of the ISR")
    assert produce_all(everyone[0], "unclean", b"only 0 has it") == 1
    cluster.kill(0)
    cluster.restart(1)
    wait_for(lambda: leader_of(everyone[2], "unclean")[0] == -1, 30, what="the partition offline")
    with AdminClient(everyone[2]) as admin:
        wait_for(lambda: 1 in view(everyone[2])[0], 30, what="broker 1 registered")
        (clean,) = admin.elect_leaders("unclean")
        assert clean.outcome == "not_eligible"  # its preferred replica (0) is not live
        (result,) = admin.elect_leaders("unclean", unclean=True)
    assert result.outcome == "elected" and result.leader == 1
    wait_for(lambda: read_all(everyone[1], "unclean") == [b"both have it"], 30, what="broker 1 serving")
    assert produce_all(everyone[1], "unclean", b"after") == 1  # the record only 0 had is gone for good
    cluster.restart(0)
    wait_for(lambda: isr_of(everyone[1], "unclean") == [0, 1], 30, what="broker 0 following, cut back")
    assert stored_batches(cluster, 0, "unclean", 2) == stored_batches(cluster, 1, "unclean", 2)


def test_a_partition_reassigned_to_other_brokers_is_copied_there_and_led_by_them(cluster: ClusterProcess) -> None:
    everyone = all_up(cluster)
    with AdminClient(everyone[0]) as admin:
        admin.create_topic("moving", 1, replication_factor=1)  # on broker 0 only
        wait_for(lambda: leader_of(everyone[0], "moving")[0] == 0, 30, what="broker 0 leading")
        offsets = [produce_all(everyone[0], "moving", f"m{i}".encode()) for i in range(10)]
        admin.reassign_partitions("moving", {0: [2, 1]})

        def moved() -> bool:
            cluster_now = admin.describe_cluster()
            (topic,) = [t for t in metadata(everyone[1]).topics if t.name == "moving"]
            return not cluster_now.reassigning and tuple(topic.partitions[0].replicas) == (2, 1)

        wait_for(moved, 60, what="the move done: replicas 2 and 1")
        with pytest.raises(InvalidArgumentError, match="distinct live brokers"):
            admin.reassign_partitions("moving", {0: [1, 1]})
    assert offsets == list(range(10))
    assert leader_of(everyone[1], "moving")[0] == 2
    assert read_all(everyone[2], "moving") == [f"m{i}".encode() for i in range(10)]
    assert produce_all(everyone[2], "moving", b"on the new replicas") == 10
