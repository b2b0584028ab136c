"""The SDK in a cluster: given a bootstrap list, clients send each partition's requests to its leader,
and follow the leadership when it moves (a kill -9)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from tests.certs import CertificateAuthority
from tests.cluster.conftest import own_cluster
from tests.errors_util import error_info
from tests.harness import ROOT, run_node, wait_for
from tidelog import AdminClient, Consumer, Producer, RecordFuture, TopicPartition
from tidelog.errors import NotEnoughReplicasError, TidelogError
from tidelog.producer._batch import DeliveryCallback
from tidelog.testing import ClusterProcess
from tidelog.v1 import broker_pb2, groups_pb2
from tidelog.v1.broker_pb2_grpc import BrokerStub
from tidelog.v1.groups_pb2_grpc import GroupsStub


def leaders(address: str, topic: str) -> dict[int, tuple[int, int]]:
    """partition -> (leader, epoch) as the broker at `address` reports them ({} while unknown)."""
    with grpc.insecure_channel(address) as channel:
        answer = BrokerStub(channel).GetMetadata(broker_pb2.GetMetadataRequest(topics=[topic]), timeout=5)
    return {p.partition: (p.leader, p.leader_epoch) for t in answer.topics for p in t.partitions if p.leader >= 0}


def read_partition(address: str, topic: str, partition: int) -> list[bytes]:
    """Every record of a partition, read from the broker at `address` (its leader)."""
    with grpc.insecure_channel(address) as channel:
        answer = BrokerStub(channel).Fetch(
            broker_pb2.FetchRequest(topic=topic, partition=partition, max_records=1_000_000, max_bytes=64 << 20),
            timeout=10,
        )
    return [r.value for b in answer.batches for r in b.records]


class Stream:
    """Unique records sent round-robin to a topic's partitions, and what came of each."""

    def __init__(self, producer: Producer, topic: str, partitions: int) -> None:
        self._producer, self._topic, self._partitions = producer, topic, partitions
        self._lock = threading.Lock()
        self._sent = 0
        self.acknowledged: list[list[bytes]] = [[] for _ in range(partitions)]
        self.failures: list[BaseException] = []
        self.mark = threading.Event()  # set it: acknowledgements from then on are counted
        self._after_mark = 0

    def send(self, n: int) -> None:
        for _ in range(n):
            partition, value = self._sent % self._partitions, f"{self._topic}-{self._sent}".encode()
            self._producer.send(self._topic, value, partition=partition).add_done_callback(
                self._on_delivery(partition, value)
            )
            self._sent += 1

    def _on_delivery(self, partition: int, value: bytes) -> DeliveryCallback:
        def delivered(future: RecordFuture) -> None:
            error = future.exception()
            with self._lock:
                if error is not None:
                    self.failures.append(error)
                    return
                self.acknowledged[partition].append(value)
                if self.mark.is_set():
                    self._after_mark += 1

        return delivered

    def acknowledged_after_mark(self) -> int:
        with self._lock:
            return self._after_mark


def members(address: str) -> set[int]:
    with grpc.insecure_channel(address) as channel:
        answer = BrokerStub(channel).GetMetadata(broker_pb2.GetMetadataRequest(), timeout=5)
    return {b.id for b in answer.brokers}


def create(cluster: ClusterProcess, topic: str, partitions: int) -> dict[int, tuple[int, int]]:
    everyone = cluster.addresses
    wait_for(lambda: all(members(a) == set(everyone) for a in everyone.values()), 30, what="all three everywhere")
    with AdminClient(cluster.bootstrap) as admin:
        admin.create_topic(topic, partitions, replication_factor=3)
    led = wait_for(lambda: led_by(everyone[0], topic, partitions, set(everyone)), 30, what="every partition led")
    assert led is not None
    return led


def led_by(address: str, topic: str, partitions: int, brokers: set[int]) -> dict[int, tuple[int, int]] | None:
    """The topic's leaders as `address` reports them, once every partition is led by one of `brokers`."""
    led = leaders(address, topic)
    return led if len(led) == partitions and all(leader in brokers for leader, _ in led.values()) else None


def test_a_producer_given_the_bootstrap_list_sends_each_partition_to_its_leader(cluster: ClusterProcess) -> None:
    led = create(cluster, "spread", 6)
    assert {leader for leader, _ in led.values()} == set(cluster.addresses)  # leaders on every broker
    with Producer(cluster.addresses[0]) as producer:  # one bootstrap broker: it learns the others
        futures = [producer.send("spread", f"r{i}".encode(), partition=i % 6) for i in range(600)]
        producer.flush()
        assert producer.metrics()["broker_connections"] == 3
    offsets = [f.result(10) for f in futures]
    assert all(m.offset == i // 6 for i, m in enumerate(offsets))
    for partition, (leader, _) in led.items():
        expected = [f"r{i}".encode() for i in range(partition, 600, 6)]
        assert read_partition(cluster.addresses[leader], "spread", partition) == expected


def test_a_producer_follows_the_leadership_across_a_kill_and_loses_nothing_acknowledged(
    cluster: ClusterProcess,
) -> None:
    led = create(cluster, "moving", 3)
    victim = led[0][0]
    with Producer(cluster.bootstrap, linger_ms=1) as producer:
        stream = Stream(producer, "moving", 3)
        stream.send(300)
        producer.flush()
        cluster.kill(victim)  # a leader of partition 0, mid-stream
        stream.mark.set()

        def delivered_on_the_new_leaders() -> bool:  # keep sending until records land after the failover
            stream.send(30)
            producer.flush()
            return stream.acknowledged_after_mark() >= 300

        wait_for(delivered_on_the_new_leaders, 60, interval=0, what="300 records acknowledged after the kill")
    survivors = {b: a for b, a in cluster.addresses.items() if b != victim}
    now = wait_for(
        lambda: led_by(next(iter(survivors.values())), "moving", 3, set(survivors)), 30, what="survivors leading"
    )
    assert now is not None and now[0][1] > led[0][1]  # a new epoch
    for partition, (leader, _) in now.items():
        stored = read_partition(survivors[leader], "moving", partition)
        expected = stream.acknowledged[partition]
        assert len(stored) == len(set(stored)), f"partition {partition} holds a record twice"
        assert [v for v in stored if v in set(expected)] == expected  # every acknowledged one, in order


def test_a_consumer_reads_every_partition_from_its_leader_and_follows_it_across_a_kill(
    cluster: ClusterProcess,
) -> None:
    led = create(cluster, "read", 3)
    with Producer(cluster.bootstrap) as producer:
        for i in range(300):
            producer.send("read", f"a{i}".encode(), partition=i % 3)
    with Consumer(cluster.addresses[0]) as fresh:  # knows no leader yet: follows NOT_LEADER
        assert fresh.end_offsets(*[("read", p) for p in range(3)]) == {TopicPartition("read", p): 100 for p in range(3)}
    seen: dict[int, list[bytes]] = {0: [], 1: [], 2: []}

    def read_until(count: int, consumer: Consumer) -> None:
        def enough() -> bool:
            for message in consumer.poll(timeout=0.2):
                seen[message.partition].append(message.value)
            return sum(map(len, seen.values())) >= count

        wait_for(enough, 60, interval=0, what=f"{count} records read")

    with Consumer(cluster.addresses[led[0][0]], topics=["read"], auto_offset_reset="earliest") as consumer:
        read_until(300, consumer)
        cluster.kill(led[0][0])  # the broker the consumer bootstrapped from, and a leader
        with Producer(",".join(a for b, a in cluster.addresses.items() if b != led[0][0])) as producer:
            for i in range(300):
                producer.send("read", f"b{i}".encode(), partition=i % 3)
        read_until(600, consumer)
    for partition in range(3):
        expected = [f"{p}{i}".encode() for p in "ab" for i in range(partition, 300, 3)]
        assert seen[partition] == expected  # every record once, in order, across the move


def test_a_leader_stopped_with_sigterm_hands_its_partitions_over_and_no_send_fails(cluster: ClusterProcess) -> None:
    """Controlled shutdown: the stopping broker moves its leaderships to in-sync replicas first, so a
    producer re-routes on NOT_LEADER at once and no record fails (no lease to wait out)."""
    led = create(cluster, "handover", 3)
    stopping = led[0][0]
    with Producer(cluster.bootstrap, linger_ms=1) as producer:
        stream = Stream(producer, "handover", 3)
        stream.send(300)
        stopper = threading.Thread(target=cluster.brokers[stopping].stop)  # SIGTERM, mid-stream
        stopper.start()

        def sent_past_the_stop() -> bool:
            stream.send(30)
            if not stopper.is_alive():
                stream.mark.set()
            return stream.acknowledged_after_mark() >= 300

        wait_for(sent_past_the_stop, 60, interval=0, what="300 records acknowledged after the stop")
        producer.flush()
        stopper.join()
    assert stream.failures == []
    assert "leadership_handed_over" in cluster.brokers[stopping].log()
    survivors = {b: a for b, a in cluster.addresses.items() if b != stopping}
    now = wait_for(lambda: led_by(next(iter(survivors.values())), "handover", 3, set(survivors)), 30, what="moved")
    assert now is not None
    for partition, (leader, _) in now.items():
        stored = read_partition(survivors[leader], "handover", partition)
        assert stored == stream.acknowledged[partition]  # once each, in order: the idempotent retries were answered


def test_acks_leader_goes_through_below_min_insync_replicas_and_acks_all_fails(cluster: ClusterProcess) -> None:
    with pytest.raises(ValueError, match="acks must be 'all' or 'leader'"):
        Producer(cluster.bootstrap, acks="some")
    led = create(cluster, "acks", 1)
    leader = led[0][0]
    for b in cluster.addresses:
        if b != leader:
            cluster.kill(b)
    wait_for(lambda: members(cluster.addresses[leader]) == {leader}, 30, what="the followers gone")
    with Producer(cluster.addresses[leader], acks="leader") as producer:
        assert producer.send("acks", b"one copy").result(30).offset == 0
    with (
        Producer(cluster.addresses[leader], delivery_timeout_ms=2_000, retry_backoff_max_ms=200) as producer,
        pytest.raises(NotEnoughReplicasError),
    ):
        producer.send("acks", b"needs two").result(30)


def test_a_node_client_finds_the_leader_in_the_metadata_and_the_not_leader_details(cluster: ClusterProcess) -> None:
    """Any language's stubs get what the SDK uses: GetMetadata's leaders, and NOT_LEADER's ErrorInfo."""
    led = create(cluster, "from-node", 1)
    stdout = run_node("cluster_routing.js", cluster.addresses[0], str(ROOT / "protos"), "from-node")
    answer = json.loads(stdout)
    assert answer["code"] == grpc.StatusCode.UNAVAILABLE.value[0] and answer["reason"] == "NOT_LEADER"
    assert answer["leader"] == answer["metadata_leader"] == led[0][0]
    assert sorted(answer["isr"]) == sorted(cluster.addresses) and answer["offset"] == 0
    assert sorted(answer["durable_on"]) == sorted(cluster.addresses)  # acks=all: the receipt names all three


def coordinator_of(address: str, group: str) -> int:
    """The broker coordinating a live group, as the broker at `address` knows it."""
    with grpc.insecure_channel(address) as channel:
        try:
            GroupsStub(channel).DescribeGroup(groups_pb2.DescribeGroupRequest(group=group), timeout=5)
        except grpc.RpcError as err:
            info = error_info(err)
            assert info.reason == "NOT_COORDINATOR", err
            return int(info.metadata["coordinator_id"])
    return next(b for b, a in members_addresses(address).items() if a == address)


def members_addresses(address: str) -> dict[int, str]:
    with grpc.insecure_channel(address) as channel:
        answer = BrokerStub(channel).GetMetadata(broker_pb2.GetMetadataRequest(), timeout=5)
    return {b.id: b.address for b in answer.brokers}


def test_a_group_reads_partitions_led_anywhere_from_their_leaders(cluster: ClusterProcess) -> None:
    everyone = cluster.addresses
    wait_for(lambda: all(members(a) == set(everyone) for a in everyone.values()), 30, what="all three everywhere")
    with AdminClient(cluster.bootstrap) as admin:
        admin.create_topic("narrow", 3, replication_factor=1)  # one partition on each broker
    wait_for(lambda: led_by(everyone[0], "narrow", 3, set(everyone)), 30, what="narrow led")
    with Producer(cluster.bootstrap) as producer:
        for i in range(30):
            producer.send("narrow", f"g{i}".encode(), partition=i % 3)
    got: list[bytes] = []
    with Consumer(everyone[0], group="g", topics=["narrow"], auto_offset_reset="earliest") as consumer:

        def all_read() -> bool:
            got.extend(m.value for m in consumer.poll(timeout=0.2))
            return len(got) >= 30

        wait_for(all_read, 60, what="the group to read all 30 records")
        consumer.commit()
    assert sorted(got) == sorted(f"g{i}".encode() for i in range(30))
    with AdminClient(everyone[1]) as admin:  # not necessarily the coordinator: it is told where that is
        assert admin.group_offsets("g") == {TopicPartition("narrow", p): 10 for p in range(3)}

    # A member that cannot read partitions itself (no can_subscribe) is refused what its coordinator lacks.
    coordinator = everyone[coordinator_of(everyone[0], "g")]
    join = groups_pb2.JoinGroup(group="g2", topics=["narrow"])
    with grpc.insecure_channel(coordinator) as channel:
        stream = GroupsStub(channel).Consume(iter([groups_pb2.ConsumeRequest(join=join)]), timeout=10)
        with pytest.raises(grpc.RpcError) as refused:
            next(stream)
    assert "holds no replica of narrow/" in str(refused.value.details())


def test_a_group_processes_every_record_across_a_coordinator_kill_and_its_offsets_never_go_back(
    cluster: ClusterProcess,
) -> None:
    create(cluster, "work", 6)
    processed: set[bytes] = set()
    read_after_kill: list[tuple[int, int]] = []  # (partition, offset) of what members got after the kill
    lock, stop, killed = threading.Lock(), threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def member() -> None:
        try:
            with Consumer(
                cluster.bootstrap,
                group="g",
                topics=["work"],
                auto_offset_reset="earliest",
                auto_commit_interval_ms=100,
                session_timeout_ms=3000,
            ) as consumer:
                while not stop.is_set():
                    messages = consumer.poll(timeout=0.2)
                    with lock:
                        processed.update(m.value for m in messages)
                        if killed.is_set():
                            read_after_kill.extend((m.partition, m.offset) for m in messages)
        except BaseException as err:
            failures.append(err)

    seen: dict[TopicPartition, list[int]] = {}  # every committed offset observed, in order

    def observe() -> None:
        with AdminClient(cluster.bootstrap, timeout=2) as admin:
            while not stop.is_set():
                try:
                    offsets = admin.group_offsets("g")
                except TidelogError:
                    continue  # the coordinator is moving
                for tp, offset in offsets.items():
                    history = seen.setdefault(tp, [])
                    if not history or history[-1] != offset:
                        history.append(offset)

    def committed_beyond(floor: dict[TopicPartition, int]) -> bool:
        return len(seen) == 6 and all(history[-1] > floor.get(tp, 0) for tp, history in list(seen.items()))

    threads = [threading.Thread(target=member) for _ in range(2)] + [threading.Thread(target=observe)]
    with Producer(cluster.bootstrap, linger_ms=1) as producer:
        stream = Stream(producer, "work", 6)
        for thread in threads:
            thread.start()
        try:

            def sent_until(condition: Callable[[], bool]) -> Callable[[], bool]:
                def step() -> bool:
                    stream.send(60)
                    producer.flush()
                    return condition()

                return step

            wait_for(sent_until(lambda: committed_beyond({})), 60, interval=0, what="commits on every partition")
            victim = coordinator_of(cluster.addresses[0], "g")
            before = {tp: history[-1] for tp, history in list(seen.items())}
            killed.set()
            cluster.kill(victim)
            survivors = [a for b, a in cluster.addresses.items() if b != victim]
            wait_for(
                sent_until(lambda: committed_beyond(before) and coordinator_of(survivors[0], "g") != victim),
                90,
                interval=0,
                what="commits past the kill, through another coordinator",
            )
            acknowledged = {v for values in stream.acknowledged for v in values}

            def all_processed() -> bool:
                with lock:
                    return acknowledged <= processed

            wait_for(all_processed, 60, what=f"the group to process all {len(acknowledged)} acknowledged records")
        finally:
            stop.set()
            for thread in threads:
                thread.join(30)
    assert not failures and not stream.failures
    for tp, history in seen.items():
        assert history == sorted(history), f"{tp}: committed offsets went back: {history}"
    # The new coordinator started the members at the committed offsets, not at the log start again.
    again = [(p, o) for p, o in read_after_kill if o < before[TopicPartition("work", p)]]
    assert not again, f"records below the offsets committed before the kill were read again: {again[:5]}"


def test_brokers_with_tokens_replicate_with_their_own(tmp_path: Path) -> None:
    """--auth-tokens on every broker: replication authenticates with --inter-broker-token-file, so an
    acks=all produce (which waits for both followers) is answered."""
    tokens = tmp_path / "tokens"
    lines = [f"{who} {hashlib.sha256(secret.encode()).hexdigest()}" for who, secret in [("broker", "b"), ("app", "a")]]
    tokens.write_text("\n".join(lines) + "\n")
    broker_token = tmp_path / "broker.token"
    broker_token.write_text("b\n")
    with own_cluster(tmp_path / "c", "--auth-tokens", str(tokens), "--inter-broker-token-file", str(broker_token)) as c:
        with AdminClient(c.bootstrap, token="a") as admin:
            wait_for(lambda: len(admin.describe_cluster().brokers) == 3, 30, what="all three registered")
            admin.create_topic("secured", 1, replication_factor=3)
        with Producer(c.bootstrap, token="a", delivery_timeout_ms=60_000) as producer:
            metadata = producer.send("secured", b"replicated", partition=0).result(60)
        assert metadata.offset == 0
        with Consumer(c.bootstrap, token="a", topics=["secured"], auto_offset_reset="earliest") as consumer:
            got = wait_for(lambda: consumer.poll(timeout=0.5), 30, what="the record read back")
        assert got is not None and [m.value for m in got] == [b"replicated"]


def test_brokers_with_tls_replicate_over_tls_with_their_own_certificates(tmp_path: Path) -> None:
    """mTLS on every broker: a follower connects to its leader with TLS, presents its certificate
    (its principal), and checks the leader's against the CA; acks=all (both followers) is answered."""
    ca = CertificateAuthority(tmp_path)
    cert, key = ca.issue("broker", server=True)
    app_cert, app_key = ca.issue("app")
    tls = ("--tls-cert", str(cert), "--tls-key", str(key), "--tls-client-ca", str(ca.pem))
    credentials = grpc.ssl_channel_credentials(ca.pem.read_bytes(), app_key.read_bytes(), app_cert.read_bytes())
    security = {"tls_ca_file": str(ca.pem), "tls_cert_file": str(app_cert), "tls_key_file": str(app_key)}
    if shutil.which("etcd") is None:
        pytest.fail("etcd is not installed: `make test` installs Debian's etcd-server")
    cluster = ClusterProcess(tmp_path / "c", 3, *tls, credentials=credentials)
    try:
        cluster.start()
        with AdminClient(cluster.bootstrap, timeout=30, **security) as admin:
            wait_for(lambda: len(admin.describe_cluster().brokers) == 3, 30, what="all three registered")
            admin.create_topic("private", 1, replication_factor=3)
        with Producer(cluster.bootstrap, delivery_timeout_ms=60_000, **security) as producer:  # type: ignore[arg-type]
            metadata = producer.send("private", b"over tls", partition=0).result(60)
        assert metadata.offset == 0 and sorted(metadata.durable_on) == [0, 1, 2]
    finally:
        cluster.stop()


def test_describe_topic_shows_each_partitions_leader_replicas_isr_and_its_leaders_figures(
    cluster: ClusterProcess,
) -> None:
    everyone = cluster.addresses
    wait_for(lambda: all(members(a) == set(everyone) for a in everyone.values()), 30, what="all three everywhere")
    with AdminClient(everyone[0]) as admin:
        admin.create_topic("spread", 3, replication_factor=1)  # broker 0 holds partition 0 only
    led = wait_for(lambda: led_by(everyone[0], "spread", 3, set(everyone)), 30, what="every partition led")
    assert led is not None
    with Producer(cluster.bootstrap) as producer:
        for i in range(30):
            producer.send("spread", b"x", partition=i % 3)
    with AdminClient(everyone[0]) as admin:
        described = admin.describe_topic("spread").partitions
    assert [(p.partition, p.leader, p.replicas, p.isr) for p in described] == [
        (p, led[p][0], (led[p][0],), (led[p][0],)) for p in range(3)
    ]
    assert [p.high_watermark for p in described] == [10, 10, 10]  # each from its leader, not broker 0's copy
    cli = subprocess.run(
        [sys.executable, "-m", "tidelog", "topics", "describe", "spread", "--json", "-b", everyone[1]],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    partitions = json.loads(cli.stdout)["partitions"]
    assert [(p["leader"], p["high_watermark"]) for p in partitions] == [(led[p][0], 10) for p in range(3)]


def test_compressed_batches_are_replicated_as_sent_and_read_from_the_next_leader(cluster: ClusterProcess) -> None:
    led = create(cluster, "squeezed", 1)
    sent = [json.dumps({"n": i, "kind": "compressible"}).encode() for i in range(300)]
    with Producer(cluster.bootstrap, compression="zstd") as producer:
        producer.send_many("squeezed", sent, partition=0).result(60)
    cluster.kill(led[0][0])
    survivors = ",".join(a for b, a in cluster.addresses.items() if b != led[0][0])
    got: list[bytes] = []
    with Consumer(survivors, topics=["squeezed"], auto_offset_reset="earliest") as consumer:

        def all_read() -> bool:
            got.extend(m.value for m in consumer.poll(timeout=0.2))
            return len(got) >= 300

        wait_for(all_read, 60, what="300 compressed records from the next leader")
    assert got == sent
