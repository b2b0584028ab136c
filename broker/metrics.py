"""Prometheus metrics (`--metrics-listen HOST:PORT`, prometheus-client).

Counters and histograms are updated where the work happens, once per request or commit, never per
record. Gauges of state (partition offsets and sizes, group lag) are read at scrape time: the HTTP
thread asks the event loop for a snapshot, since only the loop may touch that state.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIServer

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from tidelog.broker.cluster.control import ControlPlane
    from tidelog.broker.cluster.replication import Replication
    from tidelog.broker.groups.coordinator import Coordinator
    from tidelog.broker.groups.offsets import OffsetStore
    from tidelog.broker.log.topics import TopicRegistry, TopicState

log = structlog.get_logger("tidelog.metrics")

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.produced_records = Counter(
            "tidelog_produced_records", "Records appended, per topic", ["topic"], registry=r
        )
        self.produced_bytes = Counter(
            "tidelog_produced_bytes", "Record bytes appended, per topic", ["topic"], registry=r
        )
        self.fetched_records = Counter(
            "tidelog_fetched_records",
            "Records sent to readers (Fetch, Subscribe, groups), per topic",
            ["topic"],
            registry=r,
        )
        self.fetched_bytes = Counter(
            "tidelog_fetched_bytes", "Batch bytes sent to readers, per topic", ["topic"], registry=r
        )
        self.request_seconds = Histogram(
            "tidelog_request_seconds",
            "Time to answer a request, per RPC (ProduceStream: per request on the stream)",
            ["method"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.commit_ops = Histogram(
            "tidelog_commit_ops",
            "Write ops per group commit",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, 4096),
            registry=r,
        )
        self.commit_seconds = Histogram(
            "tidelog_commit_seconds", "Time of a group commit, fsync included", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.kafka_requests = Counter(
            "tidelog_kafka_requests",
            "Kafka requests answered, per API and version (what Kafka clients negotiated)",
            ["api", "version"],
            registry=r,
        )
        self.throttle_seconds = Counter(
            "tidelog_throttle_seconds",
            "Time answers were held back by quotas, per principal and direction",
            ["principal", "direction"],
            registry=r,
        )
        self.open_streams = Gauge("tidelog_open_streams", "Open streams, per RPC", ["method"], registry=r)
        self._http: WSGIServer | None = None

    def stop_serving(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None

    def produced(self, topic: str, records: int, size: int) -> None:
        self.produced_records.labels(topic).inc(records)
        self.produced_bytes.labels(topic).inc(size)

    def fetched(self, topic: str, records: int, size: int) -> None:
        if records > 0:
            self.fetched_records.labels(topic).inc(records)
            self.fetched_bytes.labels(topic).inc(size)

    def watch_state(
        self,
        loop: asyncio.AbstractEventLoop,
        registry: TopicRegistry,
        offsets: OffsetStore,
        coordinator: Coordinator,
        holds: Callable[[int, int], bool] = lambda topic_id, partition: True,
    ) -> None:
        """`holds(topic_id, partition)`: this broker has a replica (group lag is reported only for those)."""
        self.registry.register(_StateCollector(loop, registry, offsets, coordinator, holds))

    def watch_cluster(self, loop: asyncio.AbstractEventLoop, control: ControlPlane, replication: Replication) -> None:
        self.registry.register(_ClusterCollector(loop, control, replication))

    def throttled(self, principal: str, direction: str, seconds: float) -> None:
        self.throttle_seconds.labels(principal, direction).inc(seconds)

    def observe(self, method: str, seconds: float) -> None:
        self.request_seconds.labels(method).observe(seconds)

    def kafka_request(self, api: str, version: int, seconds: float) -> None:
        """A Kafka request answered: counted per API and version, timed as `kafka.<API>`."""
        self.kafka_requests.labels(api, str(version)).inc()
        self.request_seconds.labels(f"kafka.{api}").observe(seconds)

    def stream_opened(self, method: str, delta: int) -> None:
        self.open_streams.labels(method).inc(delta)

    def serve(
        self, address: str, tls_cert: Path | None = None, tls_key: Path | None = None, client_ca: Path | None = None
    ) -> None:
        """HTTP on `address`; HTTPS with the broker's certificate when it has one (client certificates
        required with `client_ca`, as on the gRPC listener)."""
        host, _, port = address.rpartition(":")
        self._http, _ = start_http_server(
            int(port),
            host.strip("[]") or "127.0.0.1",
            registry=self.registry,
            certfile=str(tls_cert) if tls_cert else None,
            keyfile=str(tls_key) if tls_key else None,
            client_cafile=str(client_ca) if client_ca else None,
            client_auth_required=client_ca is not None,
        )
        log.info("metrics_serving", listen=address, tls=tls_cert is not None)


def _on_loop(loop: asyncio.AbstractEventLoop, snapshot: Callable[[], list[Metric]]) -> Iterator[Metric]:
    """`snapshot()` run on the event loop (only it may read the broker's state), for a scrape."""

    async def run() -> list[Metric]:
        return snapshot()

    try:
        metrics = asyncio.run_coroutine_threadsafe(run(), loop).result(timeout=5)
    except Exception:  # the loop is stopping or busy: a scrape without state beats a failed one
        log.warning("metrics_snapshot_failed")
        return iter(())
    return iter(metrics)


class _ClusterCollector(Collector):
    """Replication health, Kafka's way: each leader reports its under-replicated partitions and its
    followers' lag, the controller the partitions that have no leader (so sums over brokers are true)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, control: ControlPlane, replication: Replication) -> None:
        self._loop = loop
        self._control = control
        self._replication = replication

    def collect(self) -> Iterator[Metric]:
        return _on_loop(self._loop, self._snapshot)

    def _snapshot(self) -> list[Metric]:
        me, registered = self._control.broker_id, self._control.brokers()
        states = self._control.partitions_by_id().values()
        under = GaugeMetricFamily(
            "tidelog_under_replicated_partitions", "Partitions led here whose ISR is smaller than their replicas"
        )
        under.add_metric([], sum(1 for s in states if s.leader == me and len(s.isr) < len(s.replicas)))
        offline = GaugeMetricFamily(
            "tidelog_offline_partitions", "Partitions without a live leader (reported by the controller; 0 elsewhere)"
        )
        leaderless = sum(1 for s in states if s.leader not in registered)
        offline.add_metric([], leaderless if self._control.is_controller else 0)
        lag = GaugeMetricFamily(
            "tidelog_replica_lag_records",
            "Records a follower is behind the leader's log end (reported by the leader)",
            labels=["topic", "partition", "replica"],
        )
        for (topic, partition), followers in sorted(self._replication.follower_lag().items()):
            for replica, behind in sorted(followers.items()):
                lag.add_metric([topic, str(partition), str(replica)], behind)
        return [under, offline, lag]


class _StateCollector(Collector):
    """Partition offsets and sizes and group lag, read on the event loop at scrape time."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        registry: TopicRegistry,
        offsets: OffsetStore,
        coordinator: Coordinator,
        holds: Callable[[int, int], bool],
    ) -> None:
        self._holds = holds
        self._loop = loop
        self._registry = registry
        self._offsets = offsets
        self._coordinator = coordinator

    def collect(self) -> Iterator[Metric]:
        return _on_loop(self._loop, self._snapshot)

    def _snapshot(self) -> list[Metric]:
        labels = ["topic", "partition"]
        end = GaugeMetricFamily("tidelog_partition_high_watermark", "Offset after the last record", labels=labels)
        start = GaugeMetricFamily("tidelog_partition_log_start_offset", "First offset still kept", labels=labels)
        size = GaugeMetricFamily("tidelog_partition_size_bytes", "Stored bytes", labels=labels)
        topics = self._registry.sorted()
        by_id = {topic.id: topic for topic in topics}
        for topic in topics:
            for p in topic.partitions:
                key = [topic.name, str(p.partition)]
                end.add_metric(key, p.high_watermark)
                start.add_metric(key, p.log_start_offset)
                size.add_metric(key, p.size_bytes)
        lag = GaugeMetricFamily(
            "tidelog_group_lag", "Records between a group's committed offset and the end", labels=["group", *labels]
        )
        members = GaugeMetricFamily("tidelog_group_members", "Live members of a group", labels=["group"])
        for group in self._coordinator.groups():
            members.add_metric([group.name], len(group.members))
        for group_name, topic_name, partition, behind in group_lags(by_id, self._offsets, self._holds):
            lag.add_metric([group_name, topic_name, str(partition)], behind)
        return [end, start, size, lag, members]


def group_lags(
    by_id: dict[int, TopicState], offsets: OffsetStore, holds: Callable[[int, int], bool]
) -> Iterator[tuple[str, str, int, int]]:
    """(group, topic, partition, records behind the end) for each committed offset of a partition held here."""
    for name in offsets.group_names():
        for (topic_id, partition), offset in offsets.committed(name).items():
            topic = by_id.get(topic_id)
            if topic is not None and partition < len(topic.partitions) and holds(topic_id, partition):
                yield name, topic.name, partition, max(0, topic.partitions[partition].high_watermark - offset)
