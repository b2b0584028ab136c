"""The benchmark modes against a Tidelog broker, through the SDK as users drive it."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import random
import struct
import threading
import time
import uuid
from dataclasses import dataclass

from tidelog import AdminClient, AsyncConsumer, Consumer, Producer
from tidelog.bench.stats import Figures, latency_figures, throughput_figures

STAMP = struct.Struct(">q")  # perf_counter_ns at send, the first bytes of an e2e value


@dataclass(frozen=True)
class Workload:
    records: int = 500_000
    size: int = 100
    partitions: int = 1
    producers: int = 1
    keys: bool = False
    linger_ms: float = 5
    batch_bytes: int = 256 << 10
    duration: float | None = None  # produce for this long instead of a count
    rate: float = 5000  # e2e records/s
    seconds: float = 5  # e2e duration
    subscribers: int = 8  # fanout readers
    send_many: int = 0  # produce keyless records through send_many() in calls of this many (0: send() each)
    group: bool = False  # consume as the one member of a new consumer group
    per_record: bool = False  # consume Message by Message through poll(), not batch by batch
    # The producer's codec; given (even "none"), values are compressible JSON events, not one byte repeated.
    compression: str | None = None


def compressible_values(size: int, count: int = 8192) -> list[bytes]:
    """`count` distinct JSON events of `size` bytes, which compress as real ones do (not one byte
    repeated, which any codec shrinks to nothing); more of them than a batch holds, so a batch never
    repeats one."""
    rng = random.Random(size)
    out = []
    for i in range(count):
        event = {"id": i, "user": f"user-{rng.randrange(500)}", "action": rng.choice(["view", "click", "buy"]),
                 "amount": round(rng.random() * 100, 2), "pad": ""}  # fmt: skip
        text = json.dumps(event)
        filler = "".join(rng.choice("abcdefghij") for _ in range(max(0, size - len(text))))
        out.append(json.dumps({**event, "pad": filler}).encode()[:size].ljust(size, b" "))
    return out


def stored_bytes(bootstrap: str, topic: str) -> int:
    """What the topic takes on disk (every partition, from its leader)."""
    with AdminClient(bootstrap) as admin:
        return sum(p.size_bytes for p in admin.describe_topic(topic).partitions)


def _send_all(bootstrap: str, topic: str, w: Workload, share: int, start: threading.Barrier | None = None) -> Figures:
    pool = compressible_values(w.size) if w.compression is not None else [b"x" * w.size]
    value = pool[0]
    partition = 0 if w.partitions == 1 else None  # None: keys hash, keyless records stick to a partition per batch
    keys = [b"key-%d" % i for i in range(1024)] if w.keys else None
    codec = w.compression or "none"
    with Producer(bootstrap, linger_ms=w.linger_ms, batch_bytes=w.batch_bytes, compression=codec) as producer:
        producer.send(topic, value, partition=partition).result(30)  # metadata and connection warm-up
        if start is not None:
            start.wait()
        batched = bool(w.send_many and not keys)
        chunk = w.send_many if batched else 1000
        ring = pool * (1 + chunk // len(pool)) * 2  # any window of `chunk` values is a slice of it
        send = producer.send
        deadline = None if w.duration is None else time.perf_counter() + w.duration
        began = time.perf_counter()
        sent = 0
        while (sent < share) if deadline is None else (time.perf_counter() < deadline):
            n = chunk if deadline is not None else min(chunk, share - sent)
            first = sent % len(pool)
            values = ring[first : first + n]  # the next values of the pool, round and round
            if batched:
                producer.send_many(topic, values, partition=partition)
            elif keys:
                for i, v in enumerate(values, sent):
                    send(topic, v, key=keys[i & 1023], partition=partition)
            else:
                for v in values:
                    send(topic, v, partition=partition)
            sent += n
        producer.flush()
        ended = time.perf_counter()
    return {"began": began, "ended": ended, "records": sent}


def _producer_process(bootstrap: str, topic: str, w: Workload, share: int, start: object, out: object) -> None:
    out.put(_send_all(bootstrap, topic, w, share, start))  # type: ignore[attr-defined, arg-type]


def produce(bootstrap: str, topic: str, w: Workload) -> Figures:
    """Acknowledged writes: records/s from the first send to the last acknowledgement."""
    if w.producers == 1:
        result = _send_all(bootstrap, topic, w, w.records)
        records = int(result["records"])
        return throughput_figures(records, records * w.size, result["ended"] - result["began"])
    ctx = multiprocessing.get_context("spawn")  # each producer its own process: its own GIL
    start, out = ctx.Barrier(w.producers), ctx.Queue()
    workers = [
        ctx.Process(target=_producer_process, args=(bootstrap, topic, w, w.records // w.producers, start, out))
        for _ in range(w.producers)
    ]
    for worker in workers:
        worker.start()
    results = [out.get(timeout=600) for _ in workers]
    for worker in workers:
        worker.join(30)
    records = int(sum(r["records"] for r in results))
    elapsed = max(r["ended"] for r in results) - min(r["began"] for r in results)
    return throughput_figures(records, records * w.size, elapsed)


def consume(bootstrap: str, topic: str, w: Workload, expected: int) -> Figures:
    """A catch-up read of `expected` records from the start of every partition, every value in hand
    (batch by batch through poll_batches(), or with `per_record` Message by Message through poll());
    with `group`, through Groups.Consume."""
    membership = {"group": f"bench-{uuid.uuid4().hex[:8]}"} if w.group else {}
    with Consumer(bootstrap, topics=[topic], auto_offset_reset="earliest", max_bytes=4 << 20, **membership) as consumer:
        began = time.perf_counter()
        seen = payload = 0
        while seen < expected:
            if w.per_record:  # what `for message in consumer` does, each value in hand
                messages = consumer.poll(10)
                if not messages:
                    raise RuntimeError(f"consume stalled at {seen}/{expected} records")
                for message in messages:
                    payload += len(message.value)
                seen += len(messages)
                continue
            batches = consumer.poll_batches(10)
            if not batches:
                raise RuntimeError(f"consume stalled at {seen}/{expected} records")
            for batch in batches:
                values = batch.values
                seen += len(values)
                payload += len(values) * w.size
        return throughput_figures(seen, payload, time.perf_counter() - began)


def fanout(bootstrap: str, topic: str, w: Workload, expected: int) -> Figures:
    """`subscribers` readers of the same partitions at once; records/s delivered in total and per reader."""

    async def read_all() -> float:
        consumers = [
            AsyncConsumer(bootstrap, topics=[topic], auto_offset_reset="earliest", max_bytes=4 << 20)
            for _ in range(w.subscribers)
        ]
        for consumer in consumers:
            await consumer.start()

        async def drain(consumer: AsyncConsumer) -> None:
            seen = 0
            while seen < expected:
                batches = await consumer.getmany_batches(10)
                if not batches:
                    raise RuntimeError(f"fanout stalled at {seen}/{expected} records")
                seen += sum(len(batch.values) for batch in batches)

        began = time.perf_counter()
        try:
            await asyncio.gather(*(drain(c) for c in consumers))
            return time.perf_counter() - began
        finally:
            await asyncio.gather(*(c.close() for c in consumers))

    elapsed = asyncio.run(read_all())
    total = expected * w.subscribers
    figures = throughput_figures(total, total * w.size, elapsed)
    figures["per_subscriber_records_per_s"] = expected / elapsed
    return figures


def end_to_end(bootstrap: str, topic: str, w: Workload) -> Figures:
    """Send at a fixed rate with the send time in the value; the subscriber measures arrival."""
    count = int(w.rate * w.seconds)
    padding = b"x" * max(0, w.size - STAMP.size)
    latencies_us: list[float] = []
    with Consumer(bootstrap, topics=[topic]) as consumer, Producer(bootstrap, linger_ms=w.linger_ms) as producer:
        consumer.position((topic, 0))  # the subscription is live before the first send
        producer.send(topic, STAMP.pack(time.perf_counter_ns()) + padding, partition=0).result(30)
        while not consumer.poll(1):  # the warm-up record arrived
            pass

        def send_at_rate() -> None:
            interval = 1 / w.rate
            began = time.perf_counter()
            for i in range(count):
                delay = began + i * interval - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                producer.send(topic, STAMP.pack(time.perf_counter_ns()) + padding, partition=0)

        sender = threading.Thread(target=send_at_rate, name="bench-sender")
        sender.start()
        while len(latencies_us) < count:
            messages = consumer.poll(10)
            if not messages:
                raise RuntimeError(f"end-to-end stalled at {len(latencies_us)}/{count} records")
            now = time.perf_counter_ns()
            latencies_us += [(now - STAMP.unpack_from(m.value)[0]) / 1000 for m in messages]
        sender.join()
    return latency_figures(latencies_us)
