"""Tidelog benchmark: produce and consume throughput and end-to-end latency through the Python SDK.

Starts its own broker (temp data dir, 127.0.0.1, a free port) unless --bootstrap is given, and prints
records/s, MB/s and latency percentiles. Example:

    python scripts/bench.py --records 500000 --size 100 --partitions 1
    python scripts/bench.py --mode e2e --rate 5000 --seconds 5 --fsync interval
"""

from __future__ import annotations

import argparse
import json
import statistics
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc
from tidelog.v1.broker_pb2 import SubscribeRequest
from tidelog.v1.broker_pb2_grpc import BrokerStub

from client import AdminClient, Consumer, Producer
from tests.harness import BrokerProcess

STAMP = struct.Struct(">q")


def produce(bootstrap: str, topic: str, args: argparse.Namespace) -> dict[str, float]:
    value = b"x" * args.size
    with Producer(bootstrap, linger_ms=args.linger_ms, batch_bytes=args.batch_bytes) as producer:
        producer.send(topic, value).result(30)  # metadata and connection warm-up
        started = time.perf_counter()
        for i in range(args.records):
            producer.send(topic, value, partition=i % args.partitions if args.partitions > 1 else 0)
        producer.flush()
        elapsed = time.perf_counter() - started
    return {"records_per_s": args.records / elapsed, "mb_per_s": args.records * args.size / elapsed / 1e6}


def consume(bootstrap: str, topic: str, args: argparse.Namespace) -> dict[str, float]:
    total = args.records + 1  # the warm-up record
    with Consumer(bootstrap, topics=[topic], auto_offset_reset="earliest", max_bytes=4 << 20) as consumer:
        started = time.perf_counter()
        seen = 0
        size = 0
        while seen < total:
            messages = consumer.poll(10)
            if not messages:
                raise SystemExit(f"consume stalled at {seen}/{total}")
            seen += len(messages)
            size += sum(len(m.value or b"") for m in messages)
        elapsed = time.perf_counter() - started
    return {"records_per_s": seen / elapsed, "mb_per_s": size / elapsed / 1e6}


def end_to_end(bootstrap: str, topic: str, args: argparse.Namespace) -> dict[str, float]:
    """Send at a fixed rate with the send time in the value; the consumer measures arrival."""
    latencies_us: list[float] = []
    count = int(args.rate * args.seconds)
    padding = b"x" * max(0, args.size - STAMP.size)
    with Consumer(bootstrap, topics=[topic]) as consumer, Producer(bootstrap, linger_ms=args.linger_ms) as producer:
        producer.send(topic, STAMP.pack(time.perf_counter_ns()) + padding).result(30)
        while not consumer.poll(1):  # wait until the subscription is live and saw the warm-up record
            pass

        def send_at_rate() -> None:
            interval = 1 / args.rate
            start = time.perf_counter()
            for i in range(count):
                delay = start + i * interval - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                producer.send(topic, STAMP.pack(time.perf_counter_ns()) + padding, partition=0)

        sender = threading.Thread(target=send_at_rate)
        sender.start()
        while len(latencies_us) < count:
            messages = consumer.poll(10)
            if not messages:
                raise SystemExit(f"end-to-end stalled at {len(latencies_us)}/{count}")
            now = time.perf_counter_ns()
            latencies_us += [(now - STAMP.unpack_from(m.value or b"")[0]) / 1000 for m in messages]
        sender.join()
    quantiles = statistics.quantiles(latencies_us, n=1000)
    return {"p50_ms": quantiles[499] / 1000, "p99_ms": quantiles[989] / 1000, "p999_ms": quantiles[998] / 1000}


class IdleSubscribers:
    """N live Subscribe streams on a topic nobody writes to: what idle consumers cost the broker."""

    def __init__(self, bootstrap: str, count: int) -> None:
        with AdminClient(bootstrap) as admin:
            admin.create_topic("bench-idle")
        self._channel = grpc.insecure_channel(bootstrap)
        stub = BrokerStub(self._channel)
        self._streams = [stub.Subscribe(SubscribeRequest(topic="bench-idle")) for _ in range(count)]
        for stream in self._streams:
            next(stream)  # live

    def close(self) -> None:
        for stream in self._streams:
            stream.cancel()
        self._channel.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("throughput", "e2e", "all"), default="all")
    parser.add_argument("--bootstrap", help="use a running broker instead of starting one")
    parser.add_argument("--records", type=int, default=500_000)
    parser.add_argument("--size", type=int, default=100, help="value bytes per record")
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--linger-ms", type=float, default=5)
    parser.add_argument("--batch-bytes", type=int, default=256 << 10)
    parser.add_argument("--rate", type=float, default=5000, help="e2e: records per second")
    parser.add_argument("--seconds", type=float, default=5, help="e2e: how long to send")
    parser.add_argument("--fsync", choices=("always", "interval"), default="always")
    parser.add_argument("--idle-subscribers", type=int, default=0, help="hold this many idle Subscribe streams open")
    parser.add_argument("--runs", type=int, default=1, help="repeat and report the median (min-max)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="tidelog-bench-") as tmp:
        broker = None
        bootstrap = args.bootstrap
        if bootstrap is None:
            broker = BrokerProcess(Path(tmp) / "data", "--fsync", args.fsync, "--log-level", "warning").start()
            bootstrap = broker.address
        idle = IdleSubscribers(bootstrap, args.idle_subscribers) if args.idle_subscribers else None
        try:
            results: dict[str, list[dict[str, float]]] = {}
            for run in range(args.runs):
                with AdminClient(bootstrap) as admin:
                    admin.create_topic(f"bench-{run}", partitions=args.partitions)
                    admin.create_topic(f"bench-e2e-{run}")
                if args.mode in ("throughput", "all"):
                    results.setdefault("produce", []).append(produce(bootstrap, f"bench-{run}", args))
                    results.setdefault("consume", []).append(consume(bootstrap, f"bench-{run}", args))
                if args.mode in ("e2e", "all"):
                    results.setdefault("e2e", []).append(end_to_end(bootstrap, f"bench-e2e-{run}", args))
        finally:
            if idle is not None:
                idle.close()
            if broker is not None:
                broker.stop()
    report(results, args)


def report(results: dict[str, list[dict[str, float]]], args: argparse.Namespace) -> None:
    summary = {
        name: {key: statistics.median(r[key] for r in runs) for key in runs[0]} for name, runs in results.items()
    }
    if args.json:
        print(json.dumps({"settings": vars(args), "median": summary, "runs": results}, indent=2))
        return
    print(
        f"tidelog bench: {args.records} records of {args.size} B, {args.partitions} partition(s), "
        f"fsync={args.fsync}, linger={args.linger_ms} ms, batch={args.batch_bytes} B, runs={args.runs}, "
        f"idle subscribers={args.idle_subscribers}"
    )
    for name, runs in results.items():
        cells = []
        for key, median in summary[name].items():
            values = [r[key] for r in runs]
            spread = f" ({min(values):,.2f}-{max(values):,.2f})" if len(values) > 1 else ""
            cells.append(f"{key}={median:,.2f}{spread}")
        label = f"e2e @ {args.rate:,.0f} rec/s" if name == "e2e" else name
        print(f"  {label:<22} " + "  ".join(cells))


if __name__ == "__main__":
    main()
