"""The Prometheus endpoint after a workload: counts, offsets, group lag and histograms."""

from __future__ import annotations

import socket
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.harness import BrokerProcess, gather, new_topic, wait_for
from tidelog import Consumer, Producer


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def scrape(address: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = urllib.request.urlopen(f"http://{address}/metrics", timeout=10).read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_after_a_workload(tmp_path: Path) -> None:
    metrics_address = f"127.0.0.1:{free_port()}"
    broker = BrokerProcess(tmp_path / "data", "--metrics-listen", metrics_address, "--retention-ms", "-1").start()
    try:
        topic = new_topic(broker.address, partitions=2)
        with Producer(broker.address) as producer:
            producer.send_many(topic, [b"x" * 10] * 300, partition=0)
            producer.send_many(topic, [b"y" * 10] * 200, partition=1)
            producer.flush()
        with Consumer(
            broker.address, topics=[topic], group="metered", auto_offset_reset="earliest", enable_auto_commit=False
        ) as consumer:
            got: list[bytes] = []
            wait_for(lambda: gather(got, (m.value for m in consumer.poll(0.1))) >= 500, what="500 records")
            consumer.commit({(topic, 0): 300, (topic, 1): 150})
            samples = scrape(metrics_address)
            assert samples[("tidelog_group_members", (("group", "metered"),))] == 1
            assert samples[("tidelog_open_streams", (("method", "Consume"),))] >= 1

        with Consumer(broker.address, topics=[topic], auto_offset_reset="earliest") as plain:
            read: list[bytes] = []
            wait_for(lambda: gather(read, (m.value for m in plain.poll(0.1))) >= 500, what="500 records, again")
            streams = scrape(metrics_address)
            # Both partitions on one stream: a consumer costs the broker one stream, not one per partition.
            assert streams[("tidelog_open_streams", (("method", "SubscribePartitions"),))] == 1

        def value(name: str, **labels: str) -> float:
            return samples[(name, tuple(sorted(labels.items())))]

        assert value("tidelog_produced_records_total", topic=topic) == 500
        assert value("tidelog_fetched_records_total", topic=topic) == 500  # scraped before the plain consumer
        assert value("tidelog_partition_high_watermark", topic=topic, partition="0") == 300
        assert value("tidelog_partition_high_watermark", topic=topic, partition="1") == 200
        assert value("tidelog_group_lag", group="metered", topic=topic, partition="1") == 50
        assert value("tidelog_request_seconds_count", method="CreateTopic") == 1
        assert value("tidelog_commit_ops_count") >= 3  # the topic, the records, the commit
        assert value("tidelog_commit_seconds_count") == value("tidelog_commit_ops_count")
    finally:
        broker.stop()
