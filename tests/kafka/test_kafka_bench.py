"""`tidelog bench --kafka`'s Kafka path, small: its figures come back whole (the benchmark must not rot)."""

from __future__ import annotations

from tidelog.bench.kafka_path import KafkaPath


def test_the_kafka_path_produces_consumes_and_times_end_to_end() -> None:
    with KafkaPath("interval") as path:
        produced = path.produce(2_000, 100)
        consumed = path.consume(2_000, 100)
        e2e = path.e2e(500, 0.5, 100)
    assert produced["records"] == 2_000 and produced["records_per_s"] > 0 and produced["broker_cpu_ms_per_1k"] >= 0
    assert consumed["records"] == 2_000 and consumed["mb_per_s"] > 0
    assert e2e["records"] == 250 and 0 < e2e["p50_ms"] <= e2e["p99_ms"]
