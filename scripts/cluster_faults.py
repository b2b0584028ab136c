"""The faults of the cluster crash harness (scripts/crash_harness_cluster.py), and what it asks of the
cluster: one broker at a time is SIGKILLed and restarted (at once, or once the others saw its lease
run out), or SIGSTOPped until the others saw its lease run out and then SIGCONTed. The faults are
spread over the records sent (each starts at a random record of its share); each waits until records
were sent while the broker was out, and is over once the cluster is whole again: every broker live
in every broker's view, and every partition led, with a full ISR, as all agree.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc

from tidelog.testing import ClusterProcess, wait_for
from tidelog.v1 import broker_pb2, records_pb2
from tidelog.v1.broker_pb2_grpc import BrokerStub

KILL = "kill"  # SIGKILL, restarted at once (perhaps inside its lease)
KILL_FAILOVER = "kill-failover"  # SIGKILL, restarted once its lease ran out and its partitions moved
PAUSE = "pause"  # SIGSTOP past its lease (a zombie when it wakes), then SIGCONT
KINDS = (KILL, KILL_FAILOVER, PAUSE)


def metadata(address: str, topic: str = "") -> broker_pb2.GetMetadataResponse | None:
    """The broker's view of the cluster (and of `topic`); None while it does not answer."""
    try:
        with grpc.insecure_channel(address) as channel:
            answer: broker_pb2.GetMetadataResponse = BrokerStub(channel).GetMetadata(
                broker_pb2.GetMetadataRequest(topics=[topic] if topic else []), timeout=2
            )
            return answer
    except grpc.RpcError:
        return None


def _check_alive(cluster: ClusterProcess, but: int | None = None) -> None:
    """A broker process that exited without being killed is a crash: raise at once, with its log's end."""
    for broker_id, broker in cluster.brokers.items():
        if broker_id != but and broker.proc is not None and broker.proc.poll() is not None:
            raise RuntimeError(f"broker {broker_id} exited with {broker.proc.returncode}:\n{broker.log()[-4000:]}")


def leaders(cluster: ClusterProcess, topic: str, partitions: int) -> dict[int, tuple[int, int]] | None:
    """partition -> (leader, leader epoch) once the cluster is whole: every broker lists every broker
    as live, and every partition of `topic` has a leader and a full ISR, the same in every view."""
    _check_alive(cluster)
    everyone = set(cluster.brokers)
    views = []
    for address in cluster.addresses.values():
        answer = metadata(address, topic)
        if answer is None or {b.id for b in answer.brokers} != everyone:
            return None
        parts = [p for t in answer.topics if t.name == topic for p in t.partitions]
        if len(parts) != partitions or any(p.leader < 0 or set(p.isr) != everyone for p in parts):
            return None
        views.append({p.partition: (p.leader, p.leader_epoch) for p in parts})
    return views[0] if all(view == views[0] for view in views) else None


def whole(cluster: ClusterProcess, topic: str, partitions: int, timeout_s: float) -> dict[int, tuple[int, int]]:
    """Wait until the cluster is whole (`leaders`); its partitions' leaders then."""
    led = wait_for(lambda: leaders(cluster, topic, partitions), timeout_s, 0.05, "the cluster to be whole")
    assert led is not None
    return led


def high_watermarks(cluster: ClusterProcess, topic: str, led: dict[int, tuple[int, int]]) -> dict[int, int] | None:
    """partition -> its high watermark, as its leader (`led`: from `leaders`) answers; None if one does not."""
    out = {}
    addresses = cluster.addresses
    try:
        for partition, (leader, _) in led.items():
            with grpc.insecure_channel(addresses[leader]) as channel:
                request = broker_pb2.ListOffsetsRequest(
                    topic=topic, partition=partition, position=records_pb2.POSITION_LATEST
                )
                out[partition] = BrokerStub(channel).ListOffsets(request, timeout=5).offset
    except grpc.RpcError:
        return None
    return out


def dropped_out(cluster: ClusterProcess, broker_id: int) -> bool:
    """Every other broker answers, and none lists `broker_id` as live any more: its lease ran out."""
    _check_alive(cluster, but=broker_id)
    for other, address in cluster.addresses.items():
        if other != broker_id:
            answer = metadata(address)
            if answer is None or broker_id in {b.id for b in answer.brokers}:
                return False
    return True


@dataclass
class Faults:
    """Performs `count` faults on a thread, one broker at a time, spread over the first `spread`
    records the producer sends (`sent()`: how many it has queued so far); `done` is set once they are
    over, or failed (`error`)."""

    cluster: ClusterProcess
    topic: str
    partitions: int
    count: int
    spread: int
    rng: random.Random
    sent: Callable[[], int]
    say: Callable[[str], None]
    timeout_s: float = 120.0  # for each condition waited on
    performed: list[str] = field(default_factory=list)  # the kinds, in order
    error: Exception | None = None
    done: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self._run, name="faults", daemon=True)
        thread.start()
        return thread

    def _run(self) -> None:
        # Every kind as often as the others (so a few faults already have each), in a random order.
        kinds = [KINDS[i % len(KINDS)] for i in range(self.count)]
        self.rng.shuffle(kinds)
        share = self.spread / (self.count + 1)
        try:
            for number, kind in enumerate(kinds, 1):
                # At a random record of its share of the stream; at once if slow restarts held it back.
                self._reach(round(share * (number - self.rng.random() / 2)))
                broker_id = self.rng.choice(sorted(self.cluster.brokers))
                began = time.monotonic()
                self._fault(kind, broker_id)
                self.performed.append(kind)
                took = time.monotonic() - began
                self.say(f"fault {number}/{self.count} at record {self.sent()}: {kind} broker {broker_id}, {took:.1f}s")
        except Exception as error:
            self.error = error
        finally:
            self.done.set()

    def _fault(self, kind: str, broker_id: int) -> None:
        if kind == PAUSE:
            self.cluster.pause(broker_id)
            sent_before = self.sent()
            try:
                self._wait(lambda: dropped_out(self.cluster, broker_id), f"paused broker {broker_id} to drop out")
                self._wait(lambda: self.sent() > sent_before, f"records sent while broker {broker_id} is paused")
            finally:
                self.cluster.resume(broker_id)
        else:
            self.cluster.kill(broker_id)
            sent_before = self.sent()
            if kind == KILL_FAILOVER:
                self._wait(lambda: dropped_out(self.cluster, broker_id), f"killed broker {broker_id} to drop out")
            self._wait(lambda: self.sent() > sent_before, f"records sent while broker {broker_id} is down")
            self.cluster.restart(broker_id, timeout=self.timeout_s)
        self._wait(lambda: leaders(self.cluster, self.topic, self.partitions), "the cluster to be whole again")

    def _reach(self, record: int) -> None:
        self._wait(lambda: self.sent() >= record, f"record {record} to be sent")

    def _wait(self, condition: Callable[[], object], what: str) -> None:
        def holds() -> object:
            if self.stop.is_set():
                raise RuntimeError(f"stopped while waiting for {what}")
            return condition()

        wait_for(holds, self.timeout_s, interval=0.05, what=what)
