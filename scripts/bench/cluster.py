"""The benchmark against a cluster: starting one (an etcd and N brokers), a partition's state from
GetMetadata, and the `failover` mode (a leader's kill -9, then a controlled shutdown, under a steady
acks=all producer)."""

from __future__ import annotations

import functools
import itertools
import struct
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc

from tidelog import AdminClient, Consumer, Producer, RecordFuture
from tidelog.bench.stats import Figures
from tidelog.errors import TidelogError
from tidelog.testing import ClusterProcess, wait_for
from tidelog.v1.broker_pb2 import GetMetadataRequest
from tidelog.v1.broker_pb2_grpc import BrokerStub

SEQUENCE = struct.Struct(">q")  # a failover record's number, the first bytes of its value
SETTLE_S = 2.0  # steady sending before each fault, and after the first acknowledgement past it
PHASE_TIMEOUT_S = 60.0  # the longest any wait in the failover mode may take


@contextmanager
def start_cluster(
    brokers: int, fsync: str, lease_s: int, log_level: str = "warning", root: Path | None = None
) -> Iterator[ClusterProcess]:
    """An etcd and `brokers` brokers on 127.0.0.1, each stopped by its PID afterwards; their data and
    logs go under `root` (kept) or a temporary directory (removed)."""
    with tempfile.TemporaryDirectory(prefix="tidelog-bench-cluster-") as tmp:
        base = Path(tmp) if root is None else root
        base.mkdir(parents=True, exist_ok=True)
        cluster = ClusterProcess(base, brokers, "--fsync", fsync, "--log-level", log_level, lease_s=lease_s)
        try:
            cluster.start()
            wait_until(lambda: _members(cluster) == set(cluster.brokers), 30, "every broker to see the others")
            yield cluster
        finally:
            cluster.stop()


@dataclass(frozen=True)
class PartitionState:
    leader: int  # -1 while offline
    epoch: int
    isr: tuple[int, ...]
    addresses: dict[int, str]  # the live brokers as the answering broker sees them


def live_addresses(cluster: ClusterProcess, without: Iterable[int] = ()) -> list[str]:
    """The addresses of the brokers whose process runs (except `without`)."""
    skip = set(without)
    return [
        b.address for i, b in cluster.brokers.items() if i not in skip and b.proc is not None and b.proc.poll() is None
    ]


def partition_state(addresses: Iterable[str], topic: str, partition: int = 0) -> PartitionState | None:
    """The partition as the first broker of `addresses` that answers GetMetadata reports it."""
    for address in addresses:
        try:
            with grpc.insecure_channel(address) as channel:
                answer = BrokerStub(channel).GetMetadata(GetMetadataRequest(topics=[topic]), timeout=2)
        except grpc.RpcError:
            continue
        brokers = {b.id: b.address for b in answer.brokers}
        for t in answer.topics:
            for p in t.partitions:
                if p.partition == partition:
                    return PartitionState(p.leader, p.leader_epoch, tuple(p.isr), brokers)
        return None
    return None


def wait_replicated(cluster: ClusterProcess, topic: str, partitions: int, factor: int, timeout: float = 30) -> None:
    """Until every partition of `topic` has a leader and all `factor` replicas in sync."""

    def replicated() -> bool:
        for partition in range(partitions):
            state = partition_state(live_addresses(cluster), topic, partition)
            if state is None or state.leader < 0 or len(state.isr) < factor:
                return False
        return True

    wait_until(replicated, timeout, f"{topic}: every partition led, {factor} replica(s) in sync")


def leader_address(bootstrap: str, topic: str, partition: int = 0) -> str:
    """The address of the partition's leader (a single broker: itself)."""
    addresses = bootstrap.split(",")

    def led() -> PartitionState | None:
        state = partition_state(addresses, topic, partition)
        return state if state is not None and state.leader >= 0 else None

    state = wait_until(led, 30, f"{topic}/{partition}'s leader")
    assert isinstance(state, PartitionState)
    return state.addresses.get(state.leader, addresses[0])


def wait_until(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.05) -> object:
    """Poll `condition` until it is truthy (returning it); RuntimeError past `timeout` seconds."""
    try:
        return wait_for(condition, timeout, interval, what)
    except AssertionError as err:  # the testing helper's failure is a test's; here it is the bench's
        raise RuntimeError(f"tidelog bench: {err}") from None


def _members(cluster: ClusterProcess) -> set[int]:
    seen: set[int] | None = None
    for address in live_addresses(cluster):
        try:
            with grpc.insecure_channel(address) as channel:
                answer = BrokerStub(channel).GetMetadata(GetMetadataRequest(), timeout=2)
        except grpc.RpcError:
            return set()
        ids = {b.id for b in answer.brokers}
        seen = ids if seen is None else seen & ids
    return seen or set()


class _Acks:
    """Every send's time and every delivery's (time, record number, error), as the I/O thread reports them."""

    def __init__(self) -> None:
        self.sent_at: list[float] = []
        self.delivered: list[tuple[float, int, str | None]] = []
        self.send_errors: list[tuple[float, str]] = []

    def on_delivery(self, number: int, future: RecordFuture) -> None:
        error = future.exception()
        self.delivered.append((time.perf_counter(), number, None if error is None else repr(error)))

    def first_ack_of_sent_after(self, moment: float) -> float | None:
        """When the first record sent after `moment` was acknowledged."""
        times = [t for t, n, e in list(self.delivered) if e is None and self.sent_at[n] > moment]
        return min(times) if times else None

    def longest_gap(self, begin: float, end: float) -> float:
        """The longest time without an acknowledgement, from the last one before `begin` to `end`."""
        times = sorted(t for t, _, e in list(self.delivered) if e is None)
        before = [t for t in times if t < begin]
        inside = [t for t in times if begin <= t <= end]
        points = before[-1:] + inside
        if not points:
            return end - begin
        gaps = [b - a for a, b in itertools.pairwise(points)]
        gaps.append(end - points[-1])
        return max(gaps)

    def errors(self, begin: float, end: float) -> list[str]:
        failed = [e for t, _, e in list(self.delivered) if e is not None and begin <= t < end]
        return failed + [e for t, e in list(self.send_errors) if begin <= t < end]


def failover(
    cluster: ClusterProcess, rate: float, size: int, linger_ms: float, report: Callable[[str], None]
) -> Figures:
    """A 1-partition topic with 3 replicas and a producer (acks=all) sending `rate` records/s: (a) kill -9
    the partition's leader, time the first acknowledgement of a record sent after it, restart the broker
    and wait until it is in sync again; (b) SIGTERM the new leader (a controlled shutdown) and measure the
    longest gap between acknowledgements and the failed sends. Then every acknowledged record is read back."""
    if len(cluster.brokers) < 3:
        raise SystemExit("tidelog bench: --mode failover needs --cluster 3 or more")
    topic = f"bench-failover-{uuid.uuid4().hex[:8]}"
    with AdminClient(cluster.bootstrap) as admin:
        admin.create_topic(topic, 1, replication_factor=3)
    wait_replicated(cluster, topic, 1, 3)
    acks = _Acks()
    stop_sending = threading.Event()
    padding = b"x" * max(0, size - SEQUENCE.size)
    f: Figures = {"lease_s": float(cluster.lease_s), "rate": rate}

    with Producer(cluster.bootstrap, linger_ms=linger_ms) as producer:
        producer.send(topic, b"warm-up", partition=0).result(30)

        def send_at_rate() -> None:
            interval = 1 / rate
            began = time.perf_counter()
            number = 0
            while not stop_sending.is_set():
                delay = began + number * interval - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                acks.sent_at.append(time.perf_counter())
                try:
                    producer.send(
                        topic,
                        SEQUENCE.pack(number) + padding,
                        partition=0,
                        on_delivery=functools.partial(acks.on_delivery, number),
                    )
                except TidelogError as e:
                    acks.send_errors.append((time.perf_counter(), repr(e)))
                number += 1

        sender = threading.Thread(target=send_at_rate, name="bench-failover-sender", daemon=True)
        sender.start()
        try:
            started = time.perf_counter()
            time.sleep(SETTLE_S)

            # (a) kill -9 the leader.
            before = _state(cluster, topic)
            victim = before.leader
            report(f"failover: kill -9 broker {victim} (leader of {topic}/0, epoch {before.epoch})")
            killed = time.perf_counter()
            cluster.kill(victim)
            elected = _wait_new_leader(cluster, topic, victim, before.epoch, without=())
            f["kill_election_s"] = elected - killed
            f["kill_first_ack_s"] = _first_ack_after(acks, killed, "an acknowledgement after the kill")
            time.sleep(SETTLE_S)
            f["kill_max_gap_s"] = acks.longest_gap(killed, time.perf_counter())

            # The killed broker again, until it is back in the ISR.
            restarted = time.perf_counter()
            cluster.restart(victim)
            wait_replicated(cluster, topic, 1, 3, PHASE_TIMEOUT_S)
            in_sync = time.perf_counter()
            f["rejoin_s"] = in_sync - restarted
            time.sleep(SETTLE_S)
            f["rejoin_max_gap_s"] = acks.longest_gap(restarted, time.perf_counter())

            # (b) SIGTERM the leader: a controlled shutdown.
            before = _state(cluster, topic)
            leaving = before.leader
            report(f"failover: SIGTERM broker {leaving} (leader of {topic}/0, epoch {before.epoch})")
            stopping = time.perf_counter()
            stopped_at: list[float] = []

            def stop() -> None:
                cluster.brokers[leaving].stop()
                stopped_at.append(time.perf_counter())

            stopper = threading.Thread(target=stop, name="bench-failover-stop")
            stopper.start()
            handed = _wait_new_leader(cluster, topic, leaving, before.epoch, without=(leaving,))
            f["stop_handover_s"] = handed - stopping
            f["stop_first_ack_s"] = _first_ack_after(acks, stopping, "an acknowledgement after the SIGTERM")
            stopper.join(PHASE_TIMEOUT_S)
            if not stopped_at:
                raise RuntimeError(f"tidelog bench: broker {leaving} did not exit after SIGTERM")
            f["stop_exit_s"] = stopped_at[0] - stopping
            time.sleep(SETTLE_S)
            measured = time.perf_counter()
            f["stop_max_gap_s"] = acks.longest_gap(stopping, measured)
            f["kill_errors"] = len(acks.errors(killed, stopping))
            f["stop_errors"] = len(acks.errors(stopping, measured))
            f["errors_before_kill"] = len(acks.errors(started, killed))

            cluster.restart(leaving)  # everyone back for what follows (untimed)
            wait_replicated(cluster, topic, 1, 3, PHASE_TIMEOUT_S)
        finally:
            stop_sending.set()
            sender.join(30)
        producer.flush(PHASE_TIMEOUT_S)

    f["sent"] = len(acks.sent_at)
    f["acknowledged"] = sum(1 for _, _, e in acks.delivered if e is None)
    f["failed"] = len(acks.delivered) - f["acknowledged"] + len(acks.send_errors)
    f["errors_after_stop"] = len(acks.errors(measured, float("inf")))
    first_errors = acks.errors(started, float("inf"))[:3]
    if first_errors:
        report("failover: first errors: " + "; ".join(first_errors))
    lost, duplicates = _read_back(cluster.bootstrap, topic, {n for _, n, e in acks.delivered if e is None})
    f["lost"], f["duplicates"] = lost, duplicates
    return f


def _state(cluster: ClusterProcess, topic: str) -> PartitionState:
    def full() -> PartitionState | None:
        state = partition_state(live_addresses(cluster), topic)
        return state if state is not None and state.leader >= 0 and len(state.isr) >= 3 else None

    state = wait_until(full, PHASE_TIMEOUT_S, f"{topic}/0 led with 3 in sync")
    assert isinstance(state, PartitionState)
    return state


def _wait_new_leader(cluster: ClusterProcess, topic: str, old: int, epoch: int, without: Iterable[int]) -> float:
    """When a broker other than `without` first reports another leader than `old`, in a later epoch."""

    def moved() -> bool:
        state = partition_state(live_addresses(cluster, without), topic)
        return state is not None and state.leader >= 0 and state.leader != old and state.epoch > epoch

    wait_until(moved, PHASE_TIMEOUT_S, f"a new leader of {topic}/0", interval=0.02)
    return time.perf_counter()


def _first_ack_after(acks: _Acks, moment: float, what: str) -> float:
    """Seconds from `moment` to the acknowledgement of the first record sent after it (waited for)."""
    first = wait_until(lambda: acks.first_ack_of_sent_after(moment), PHASE_TIMEOUT_S, what, interval=0.02)
    assert isinstance(first, float)
    return first - moment


def _read_back(bootstrap: str, topic: str, acknowledged: set[int]) -> tuple[int, int]:
    """(acknowledged records missing from the partition, records stored more than once)."""
    stored: set[int] = set()
    duplicates = 0
    deadline = time.monotonic() + PHASE_TIMEOUT_S
    with Consumer(bootstrap, topics=[topic], auto_offset_reset="earliest", max_bytes=4 << 20) as consumer:
        while time.monotonic() < deadline:
            batches = consumer.poll_batches(2)
            if not batches and acknowledged <= stored:
                break
            for batch in batches:
                for value in batch.values:
                    if len(value) < SEQUENCE.size or value == b"warm-up":
                        continue
                    number = SEQUENCE.unpack_from(value)[0]
                    duplicates += number in stored
                    stored.add(number)
    return len(acknowledged - stored), duplicates
