"""Crash harness: produce with acknowledgements while the broker is SIGKILLed at random moments,
restarting it each time; then read everything back and judge the history (scripts/history.py).

python scripts/crash_harness.py --kills 20 --records 1000000 --partitions 4     # `make test-fault`

Prints the counts (acknowledged, found, lost, duplicated, reordered, half-written) and exits 1 if
anything acknowledged is missing, doubled or out of order, or a failed request is half present.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.history import Request, Verdict, judge
from tidelog import AdminClient, Consumer, Producer, RecordFuture
from tidelog.testing import BrokerProcess

TOPIC = "crash"


def run(
    kills: int,
    records: int,
    partitions: int,
    seed: int,
    workdir: Path,
    say: Callable[[str], None] = print,
    compression: str = "none",
) -> Verdict:
    rng = random.Random(seed)
    broker = BrokerProcess(workdir / "data", "--retention-ms", "-1").start()
    try:
        with AdminClient(broker.address) as admin:
            admin.create_topic(TOPIC, partitions)
        sent: list[tuple[int, bytes, RecordFuture]] = []
        killer_done = threading.Event()

        def kill_and_restart() -> None:
            for number in range(1, kills + 1):
                time.sleep(rng.uniform(0.05, 0.4))
                broker.kill()
                broker.start()
                say(f"kill {number}/{kills}: restarted")
            killer_done.set()

        killer = threading.Thread(target=kill_and_restart, name="killer")
        # Records flow until the killer is done, however long restarts take, and a kill's share more
        # after its last restart: every kill lands mid-stream. `records` sets the pace (spread over
        # ~0.6 s a kill) and is the least sent; four times it bounds the run.
        spread_s = max(1.0, kills * 0.6)
        limit = 4 * records
        began = time.monotonic()
        with Producer(broker.address, delivery_timeout_ms=120_000, linger_ms=1, compression=compression) as producer:
            killer.start()
            seq, end = 0, limit
            while seq < end:
                if end == limit and killer_done.is_set():
                    end = min(limit, max(records, seq + records // (kills + 1)))
                partition = seq % partitions
                value = b"%d:%d" % (partition, seq)
                sent.append((partition, value, producer.send(TOPIC, value, partition=partition)))
                if seq % 1000 == 999:  # pacing, not synchronisation
                    ahead = began + spread_s * (seq + 1) / records - time.monotonic()
                    if ahead > 0:
                        time.sleep(ahead)
                seq += 1
            killer.join()
            producer.flush(timeout=180)
        say(f"sent {len(sent)} records in {time.monotonic() - began:.1f}s across {kills} kills")
        return judge(_requests(sent), _read_back(broker.address, partitions))
    finally:
        broker.stop()


def _requests(sent: list[tuple[int, bytes, RecordFuture]]) -> list[Request]:
    """The records grouped by the batch (produce request) that carried them, in send order."""
    by_batch: dict[int, tuple[int, list[bytes], bool]] = {}
    for partition, value, future in sent:
        acknowledged = future.exception(0) is None
        entry = by_batch.setdefault(id(future._batch), (partition, [], acknowledged))
        entry[1].append(value)
    return [Request(partition, tuple(values), acknowledged) for partition, values, acknowledged in by_batch.values()]


def _read_back(address: str, partitions: int) -> dict[int, list[bytes]]:
    read: dict[int, list[bytes]] = {p: [] for p in range(partitions)}
    with Consumer(address, auto_offset_reset="earliest", max_bytes=4 << 20) as consumer:
        consumer.assign([(TOPIC, p) for p in range(partitions)])
        ends = consumer.end_offsets()
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            for batch in consumer.poll_batches(5):
                read[batch.partition] += batch.values
    return read


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument(
        "--records", type=int, default=1_000_000, help="the least sent; more while kills go on (at most 4x)"
    )
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--compression", choices=("none", "zstd", "lz4"), default="none", help="the producer's codec")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tidelog-crash-") as workdir:
        verdict = run(args.kills, args.records, args.partitions, args.seed, Path(workdir), compression=args.compression)
    print(verdict.summary())
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
