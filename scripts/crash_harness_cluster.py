"""Crash harness, cluster mode: produce with acks=all to a topic of replication factor 3 on three
brokers while one broker at a time is SIGKILLed and restarted, or SIGSTOPped past its lease and
SIGCONTed (scripts/cluster_faults.py); then read everything back through the bootstrap list and
judge the history (scripts/history.py), stop the brokers and compare every partition's replicas byte
for byte up to the high watermark (scripts/replicas.py).

python scripts/crash_harness_cluster.py --faults 21 --records 1000000 --partitions 6   # `make test-fault-cluster`

Prints the counts (acknowledged, found, lost, duplicated, reordered, unexpected, half-written,
divergent replicas) and exits 1 if any but the first two is not 0.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.cluster_faults import Faults, high_watermarks, leaders, whole
from scripts.history import Request, Verdict, judge
from scripts.replicas import Divergence, compare
from tidelog import AdminClient, Consumer, Producer, RecordFuture
from tidelog.testing import ClusterProcess, wait_for

TOPIC = "crash"
LEASE_S = 2  # the least a broker takes: a pause waits for the others to see it run out


@dataclass
class Sent:
    """The records one produce request (a batch) carried: values `partition:first` .. `partition:first+count-1`."""

    partition: int
    first: int
    count: int
    future: RecordFuture  # its first record's

    def values(self) -> tuple[bytes, ...]:
        return tuple(b"%d:%d" % (self.partition, n) for n in range(self.first, self.first + self.count))


@dataclass
class Outcome:
    verdict: Verdict
    divergent: list[Divergence]
    faults: Counter[str] = field(default_factory=Counter)  # the kinds performed
    sent: int = 0  # records sent
    leader_changes: int = 0  # the partitions' leader epochs at the end, summed: each failover adds one

    @property
    def ok(self) -> bool:
        return self.verdict.ok and not self.divergent

    def summary(self) -> str:
        return f"{self.verdict.summary()}, divergent replicas {len(self.divergent)}"


def run(
    faults: int,
    records: int,
    partitions: int,
    seed: int,
    workdir: Path,
    say: Callable[[str], None] = print,
    fault_s: float = 2.5,
    timeout_s: float = 120.0,
) -> Outcome:
    """`records` is the least sent, paced over `faults` x `fault_s` seconds; more while faults go on."""
    cluster = ClusterProcess(workdir, 3, "--retention-ms", "-1", lease_s=LEASE_S)
    injector: Faults | None = None
    thread: threading.Thread | None = None
    try:
        cluster.start()
        with AdminClient(cluster.bootstrap) as admin:
            admin.create_topic(TOPIC, partitions, replication_factor=3)
        whole(cluster, TOPIC, partitions, timeout_s)
        sent: list[Sent] = []
        count = [0]
        rng = random.Random(seed)
        injector = Faults(cluster, TOPIC, partitions, faults, records, rng, lambda: count[0], say, timeout_s)
        began = time.monotonic()
        with Producer(cluster.bootstrap, linger_ms=1) as producer:
            thread = injector.start()
            _produce(producer, partitions, records, faults, fault_s, injector, sent, count)
            producer.flush(timeout=timeout_s)
        if injector.error is not None:
            raise RuntimeError(f"a fault failed after {len(injector.performed)}: {injector.error}") from injector.error
        say(f"sent {count[0]} records in {time.monotonic() - began:.1f}s across {len(injector.performed)} faults")
        ends = _acknowledged_ends(sent)
        read, watermarks, led = _read_back(cluster, partitions, ends, timeout_s, say)
        verdict = judge([Request(s.partition, s.values(), s.future.exception(0) is None) for s in sent], read)
        for name, values in (
            ("lost", verdict.lost),
            ("duplicated", verdict.duplicated),
            ("reordered", verdict.reordered),
        ):
            for line in _describe(sent, values):
                say(f"{name}: {line}")
        cluster.stop()
        data_dirs = {broker_id: broker.data_dir for broker_id, broker in cluster.brokers.items()}
        divergent = compare(data_dirs, TOPIC, watermarks, {p: leader for p, (leader, _) in led.items()})
        for divergence in divergent:
            say(f"divergent: {divergence}")
        changes = sum(epoch for _, epoch in led.values())
        return Outcome(verdict, divergent, Counter(injector.performed), count[0], changes)
    finally:
        if injector is not None and thread is not None:
            injector.stop.set()
            thread.join(timeout_s)
        cluster.stop()


def _produce(
    producer: Producer,
    partitions: int,
    records: int,
    faults: int,
    fault_s: float,
    injector: Faults,
    sent: list[Sent],
    count: list[int],
) -> None:
    """Unique values, round robin over the partitions, until the faults are done (however long they
    take) and a fault's share more, at least `records`; paced to spread `records` over the faults'
    expected time (the faults themselves follow the records sent)."""
    rate = records / max(1.0, faults * fault_s)  # records a second
    began = time.monotonic()
    last: dict[int, Sent] = {}
    seq, end = 0, -1
    while end < 0 or seq < end:
        if end < 0 and injector.done.is_set():
            end = max(records, seq + records // (faults + 1))
        partition = seq % partitions
        n = seq // partitions
        future = producer.send(TOPIC, b"%d:%d" % (partition, n), partition=partition)
        previous = last.get(partition)
        if previous is not None and previous.future._batch is future._batch:
            previous.count += 1
        else:
            last[partition] = Sent(partition, n, 1, future)
            sent.append(last[partition])
        seq += 1
        count[0] = seq
        if seq % 1000 == 0:  # pacing, not synchronisation
            ahead = began + seq / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)


def _acknowledged_ends(sent: list[Sent]) -> dict[int, int]:
    """partition -> the offset after its last acknowledged record."""
    ends: dict[int, int] = {}
    for s in sent:
        if s.future.exception(0) is None:
            ends[s.partition] = max(ends.get(s.partition, 0), s.future.result(0).offset + s.count)
    return ends


def _settled(
    cluster: ClusterProcess, partitions: int, acknowledged: dict[int, int], timeout_s: float, say: Callable[[str], None]
) -> tuple[dict[int, tuple[int, int]], dict[int, int]]:
    """The partitions' leaders and high watermarks once the cluster is whole and the high watermarks
    passed the acknowledged records; after `timeout_s`, whatever they are then (what is missing is lost)."""

    def settled() -> tuple[dict[int, tuple[int, int]], dict[int, int]] | None:
        led = leaders(cluster, TOPIC, partitions)
        ends = high_watermarks(cluster, TOPIC, led) if led else None
        return (led, ends) if led and ends and all(ends[p] >= n for p, n in acknowledged.items()) else None

    try:
        found = wait_for(settled, timeout_s, 0.05, "the high watermarks to pass every acknowledged record")
    except AssertionError as error:
        led = whole(cluster, TOPIC, partitions, timeout_s)
        ends = wait_for(lambda: high_watermarks(cluster, TOPIC, led), timeout_s, 0.05, "the high watermarks")
        assert ends is not None
        say(f"{error}: high watermarks {ends}, acknowledged up to {acknowledged}")
        return led, ends
    assert found is not None
    return found


def _describe(sent: list[Sent], values: list[bytes], most: int = 10) -> list[str]:
    """The produce requests that carried `values` (the first `most`) and how each was answered."""
    wanted = {(int(p), int(n)) for p, n in (v.split(b":") for v in values)}
    out = []
    for s in sent:
        hit = [n for n in range(s.first, s.first + s.count) if (s.partition, n) in wanted]
        if hit:
            error = s.future.exception(0)
            answer = f"failed: {error}" if error else f"acknowledged at offset {s.future.result(0).offset}"
            out.append(f"{s.partition}:{hit[0]}..{hit[-1]} of the request {s.partition}:{s.first}+{s.count}, {answer}")
            if len(out) == most:
                break
    return out


def _read_back(
    cluster: ClusterProcess, partitions: int, acknowledged: dict[int, int], timeout_s: float, say: Callable[[str], None]
) -> tuple[dict[int, list[bytes]], dict[int, int], dict[int, tuple[int, int]]]:
    """Every partition's records up to its high watermark (`_settled`), read through the bootstrap list;
    with those high watermarks and the partitions' leaders."""

    led, ends = _settled(cluster, partitions, acknowledged, timeout_s, say)
    read: dict[int, list[bytes]] = {p: [] for p in range(partitions)}
    with Consumer(cluster.bootstrap, auto_offset_reset="earliest", max_bytes=4 << 20) as consumer:
        consumer.assign([(TOPIC, p) for p in range(partitions)])
        deadline = time.monotonic() + timeout_s
        while any(consumer.position((TOPIC, p)) < end for p, end in ends.items()):
            if time.monotonic() > deadline:
                say(f"read back timed out after {timeout_s}s below the high watermarks {ends}")
                break
            for batch in consumer.poll_batches(1):
                read[batch.partition] += batch.values
    return read, ends, led


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faults", type=int, default=20)
    parser.add_argument("--records", type=int, default=1_000_000, help="the least sent; more while faults go on")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--fault-seconds", type=float, default=2.5, help="the pace: `records` over faults x this")
    parser.add_argument("--keep", type=Path, help="keep the brokers' data and logs here (default: a temporary dir)")
    args = parser.parse_args()
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tidelog-crash-cluster-") as scratch:
        workdir = args.keep or Path(scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        outcome = run(args.faults, args.records, args.partitions, args.seed, workdir, fault_s=args.fault_seconds)
    kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(outcome.faults.items()))
    print(f"faults: {kinds}; {outcome.leader_changes} leader changes; {outcome.sent} records sent")
    print(f"{time.monotonic() - began:.0f}s in all")
    print(outcome.summary())
    return 0 if outcome.ok else 1


if __name__ == "__main__":
    sys.exit(main())
