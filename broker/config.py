"""Broker settings: flags, with environment variables as their defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

FsyncMode = Literal["always", "interval"]

# Upper bounds of the limits a request may ask for (0 = the default).
DEFAULT_FETCH_MAX_BYTES = 1 << 20
MAX_FETCH_MAX_BYTES = 64 << 20
DEFAULT_FETCH_MAX_RECORDS = 100_000
MAX_FETCH_MAX_RECORDS = 1_000_000
MAX_FETCH_WAIT_MS = 60_000
# gRPC receive limit: well above the largest max.message.bytes a topic may set.
MAX_RECEIVE_BYTES = 128 << 20


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("./data")
    listen: str = "127.0.0.1:50051"
    advertise: str = ""
    fsync: FsyncMode = "always"
    fsync_interval_ms: int = 1000
    map_size_bytes: int = 64 << 30  # the most the map may grow to
    initial_map_size_bytes: int = 64 << 20
    disk_reserve_bytes: int = 64 << 20  # held back on the disk for deletes (broker.disk_reserve)
    max_partitions: int = 10_000
    subscribe_heartbeat_ms: int = 5000
    ready_file: Path | None = None
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: str = "info"
    retention_ms: int = 604_800_000  # for topics that do not set retention.ms
    retention_bytes: int = -1
    cleaner_interval_ms: int = 10_000
    metrics_listen: str = ""  # HOST:PORT of the Prometheus endpoint; empty: none
    console_listen: str = ""  # HOST:PORT of the web console; empty: none
    kafka_listen: str = ""  # HOST:PORT of the Kafka wire-protocol listener; empty: none
    kafka_advertise: str = ""  # HOST:PORT Metadata names for this broker; empty: the listen address
    kafka_auto_create_topics: bool = False  # Metadata creates the topics it is asked for that do not exist
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None  # require client certificates signed by this CA (mTLS)
    auth_tokens: Path | None = None  # principal -> sha256(token) file; empty: no authentication
    acls: Path | None = None  # ACL file; empty: every authenticated call may do anything
    quotas: Path | None = None  # quota file; empty: no quotas
    max_streams: int = 100_000
    max_streams_per_connection: int = 20_000
    cluster: tuple[str, ...] = ()  # etcd endpoints (HOST:PORT); empty: a single broker, no etcd
    cluster_name: str = "tidelog"  # the etcd key prefix
    broker_id: int = 0
    cluster_lease_s: int = 10  # a broker silent this long (dead, or paused) leaves the cluster
    default_replication_factor: int = 1  # for CreateTopic without one
    replication_timeout_ms: int = 30_000  # acks=all: how long a produce waits for the in-sync replicas
    replica_lag_time_ms: int = 10_000  # a follower not caught up for this long leaves the ISR
    inter_broker_token: str = ""  # the bearer token this broker replicates with (a cluster with tokens)
    inter_broker_tls_ca: Path | None = None  # checks the other brokers' certificates (default tls_client_ca)
    replication_advertise: str = ""  # where the other brokers replicate from (default: the advertised address)

    @property
    def topic_defaults(self) -> dict[str, str]:
        """Topic configs whose defaults the broker's flags set."""
        return {"retention.ms": str(self.retention_ms), "retention.bytes": str(self.retention_bytes)}

    @property
    def advertised_address(self) -> str:
        return self.advertise or self.listen


def check_listen(address: str) -> str:
    """HOST:PORT (IPv6 hosts in brackets) with a port from 0 to 65535; raises ValueError."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"listen address {address!r} must be HOST:PORT with a port from 0 to 65535")
    return address


def env_default(name: str, default: str) -> str:
    return os.environ.get(name, default)


def parse_cluster(value: str) -> tuple[str, ...]:
    """`etcd://HOST:PORT[,HOST:PORT...]` as its endpoints; raises ValueError."""
    scheme, sep, rest = value.partition("://")
    if not sep or scheme != "etcd" or not rest:
        raise ValueError(f"--cluster {value!r} must be etcd://HOST:PORT[,HOST:PORT...]")
    return tuple(check_listen(endpoint) for endpoint in rest.split(","))
