"""Tidelog through its Kafka listener, with confluent-kafka (librdkafka) as the client: `tidelog bench
--kafka` runs it beside the gRPC path and the peers, in the same run and on the same broker settings.

It plays a peer's part (bench.peers.Peer): produce, consume and e2e, each with the client's and the
broker's CPU per 1,000 records. Produce uses librdkafka's batching (linger, acks=all, idempotent, as a
Kafka user runs it); consume reads one partition from the start; e2e stamps each value with the send
time and reads it back on a consumer assigned at the end.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from tidelog import AdminClient
from tidelog.bench.peers import OP_TIMEOUT, STAMP, WARMUP, e2e_count, pace
from tidelog.bench.stats import cpu_figures, cpu_seconds, latency_figures, throughput_figures
from tidelog.testing import BrokerProcess, wait_for

TIMEOUT_S = OP_TIMEOUT


class KafkaPath:
    def __init__(self, fsync: str, linger_ms: float = 5) -> None:
        self.name = "tidelog via Kafka (confluent-kafka)"
        self._fsync = fsync
        self._linger_ms = linger_ms
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._broker: BrokerProcess | None = None
        self._kafka = ""
        self._topics = 0
        self._written: tuple[str, int] | None = None  # the last produce's topic and records

    def __enter__(self) -> KafkaPath:
        try:
            import confluent_kafka  # noqa: F401
        except ImportError:
            raise SystemExit("tidelog bench --kafka needs confluent-kafka: pip install 'tidelog[bench]'") from None
        self._tmp = tempfile.TemporaryDirectory(prefix="tidelog-bench-kafka-")
        broker = BrokerProcess(
            Path(self._tmp.name) / "data",
            "--fsync",
            self._fsync,
            "--kafka-listen",
            "127.0.0.1:0",
        )
        self._broker = broker.start()
        self._kafka = wait_for(lambda: _kafka_address(broker.log()), 30, what="the Kafka listener") or ""
        return self

    def __exit__(self, *exc: object) -> None:
        if self._broker is not None:
            self._broker.stop()
            self._broker = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def _pids(self) -> list[int]:
        proc = self._broker.proc if self._broker is not None else None
        return [proc.pid] if proc is not None else []

    def _new_topic(self) -> str:
        assert self._broker is not None, "use it in a `with` block"
        self._topics += 1
        name = f"bench-kafka-{self._topics}"
        with AdminClient(self._broker.address) as admin:
            admin.create_topic(name)
        return name

    def produce(self, records: int, size: int) -> dict[str, float]:
        import confluent_kafka

        topic = self._new_topic()
        producer = confluent_kafka.Producer(
            {
                "bootstrap.servers": self._kafka,
                "linger.ms": self._linger_ms,
                "acks": "all",
                "enable.idempotence": True,
                "queue.buffering.max.messages": 1_000_000,
            }
        )
        value = b"x" * size
        producer.produce(topic, value, partition=0)  # warm-up, untimed: metadata, a producer id, a connection
        producer.flush(TIMEOUT_S)
        before = cpu_seconds(self._pids())
        began = time.perf_counter()
        for _ in range(records):
            while True:
                try:
                    producer.produce(topic, value, partition=0)
                    break
                except BufferError:  # librdkafka's queue is full: let deliveries drain it
                    producer.poll(0.001)
        if producer.flush(TIMEOUT_S):
            raise RuntimeError(f"{self.name}: deliveries still pending after {TIMEOUT_S:.0f} s")
        elapsed = time.perf_counter() - began
        self._written = (topic, records + 1)
        return throughput_figures(records, records * size, elapsed) | cpu_figures(
            before, cpu_seconds(self._pids()), records, True
        )

    def consume(self, records: int, size: int) -> dict[str, float]:
        import confluent_kafka

        if self._written is None:
            raise RuntimeError(f"{self.name}: consume needs a produce first")
        topic, expected = self._written
        consumer = confluent_kafka.Consumer(
            {
                "bootstrap.servers": self._kafka,
                "group.id": "bench",
                "enable.auto.commit": False,
                "fetch.max.bytes": 64 << 20,
                "max.partition.fetch.bytes": 16 << 20,
                # librdkafka stops fetching for fetch.queue.backoff.ms (1 s) once its queue holds
                # queued.min.messages (100,000): a pause of a second per fetch of small records.
                "queued.min.messages": 1_000_000,
                "fetch.queue.backoff.ms": 10,
            }
        )
        consumer.assign([confluent_kafka.TopicPartition(topic, 0, 0)])
        first = consumer.poll(TIMEOUT_S)  # the warm-up record, untimed: a connection, the first fetch
        if first is None or first.error() is not None:
            raise RuntimeError(f"{self.name}: consume got no first record: {first and first.error()}")
        expected -= 1
        seen = payload = 0
        before = cpu_seconds(self._pids())
        began = time.perf_counter()
        deadline = began + TIMEOUT_S
        try:
            while seen < expected and time.perf_counter() < deadline:
                # (consume() waits to fill its batch: never ask for more than is left)
                for message in consumer.consume(min(10_000, expected - seen), timeout=1.0):
                    if message.error() is None:
                        seen += 1
                        payload += len(message.value() or b"")
        finally:
            elapsed = time.perf_counter() - began
            consumer.close()
        if seen != expected:
            raise RuntimeError(f"{self.name}: consume read {seen} records, produce wrote {expected}")
        return throughput_figures(seen, payload, elapsed) | cpu_figures(before, cpu_seconds(self._pids()), seen, True)

    def e2e(self, rate: float, seconds: float, size: int) -> dict[str, float]:
        import confluent_kafka

        topic = self._new_topic()
        count = e2e_count(rate, seconds)
        padding = b"x" * max(0, size - STAMP.size)
        consumer = confluent_kafka.Consumer(
            {
                "bootstrap.servers": self._kafka,
                "group.id": "bench-e2e",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 100,
                "fetch.min.bytes": 1,
            }
        )
        consumer.assign([confluent_kafka.TopicPartition(topic, 0, 0)])
        latencies_us: list[float] = []
        failures: list[BaseException] = []
        live = threading.Event()  # the reader has seen the warm-up record: both clients are connected

        def read() -> None:
            try:
                deadline = time.perf_counter() + seconds + TIMEOUT_S
                while len(latencies_us) < count and time.perf_counter() < deadline:
                    message = consumer.poll(0.1)  # (consume() would wait to fill its batch)
                    now = time.perf_counter_ns()
                    value = message.value() if message is not None and message.error() is None else None
                    if value and value[: STAMP.size] == WARMUP:
                        live.set()
                    elif value:
                        latencies_us.append((now - STAMP.unpack_from(value)[0]) / 1000)
            except BaseException as err:
                failures.append(err)

        producer = confluent_kafka.Producer(
            {"bootstrap.servers": self._kafka, "linger.ms": 0, "acks": "all", "enable.idempotence": True}
        )
        reader = threading.Thread(target=read, name="kafka-e2e-reader", daemon=True)
        reader.start()
        producer.produce(topic, WARMUP + padding, partition=0)  # metadata, a producer id, connections
        producer.flush(TIMEOUT_S)
        if not live.wait(TIMEOUT_S):
            raise RuntimeError(f"{self.name}: e2e reader never saw the warm-up record")
        before = cpu_seconds(self._pids())

        def send(_: int) -> None:
            producer.produce(topic, STAMP.pack(time.perf_counter_ns()) + padding, partition=0)
            producer.poll(0)

        pace(rate, count, send)
        producer.flush(TIMEOUT_S)
        reader.join(seconds + TIMEOUT_S)
        consumer.close()
        if failures or len(latencies_us) != count:
            raise RuntimeError(f"{self.name}: e2e read {len(latencies_us)}/{count}: {failures[:1]}")
        return latency_figures(latencies_us) | cpu_figures(before, cpu_seconds(self._pids()), count, True)


def _kafka_address(log: str) -> str | None:
    for line in log.splitlines():
        if '"kafka_serving"' in line:
            found: Any = json.loads(line).get("listen")
            return str(found)
    return None
