"""`tidelog serve`, `verify` and `backup`: the commands that run or read a broker's data directory."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import re
from pathlib import Path

from tidelog.broker.config import Settings, check_listen, env_default, parse_cluster


def add_serve(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    parser = commands.add_parser("serve", help="run the broker")
    parser.add_argument(
        "--config",
        type=Path,
        default=env_path("TIDELOG_CONFIG"),
        help="a TOML file of serve settings, keyed by flag name (`retention-ms = 86400000`); flags beat it, "
        "it beats the environment",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(env_default("TIDELOG_DATA_DIR", "./data")),
        help="LMDB data directory (env TIDELOG_DATA_DIR; default ./data)",
    )
    parser.add_argument(
        "--listen",
        default=env_default("TIDELOG_LISTEN", "127.0.0.1:50051"),
        help="HOST:PORT to listen on (env TIDELOG_LISTEN; default %(default)s)",
    )
    parser.add_argument(
        "--cluster",
        default=env_default("TIDELOG_CLUSTER", ""),
        help="join a cluster coordinated by etcd: etcd://HOST:PORT[,HOST:PORT...] (default: a single broker)",
    )
    parser.add_argument(
        "--broker-id",
        type=int,
        default=int(env_default("TIDELOG_BROKER_ID", "-1")),
        help="this broker's id in the cluster (0 or more, unique; needed with --cluster)",
    )
    parser.add_argument(
        "--cluster-name",
        default=env_default("TIDELOG_CLUSTER_NAME", "tidelog"),
        help="the cluster's key prefix in etcd (default %(default)s)",
    )
    parser.add_argument(
        "--cluster-lease-s",
        type=int,
        default=int(env_default("TIDELOG_CLUSTER_LEASE_S", "10")),
        help="a broker silent this long (dead or paused) leaves the cluster (2 or more; default %(default)s)",
    )
    parser.add_argument(
        "--default-replication-factor",
        type=int,
        default=int(env_default("TIDELOG_DEFAULT_REPLICATION_FACTOR", "1")),
        help="copies of each partition of a topic created without a replication factor (default %(default)s)",
    )
    parser.add_argument(
        "--replication-timeout-ms",
        type=int,
        default=int(env_default("TIDELOG_REPLICATION_TIMEOUT_MS", "30000")),
        help="acks=all: how long a produce waits for the in-sync replicas (default %(default)s)",
    )
    parser.add_argument(
        "--replica-lag-time-ms",
        type=int,
        default=int(env_default("TIDELOG_REPLICA_LAG_TIME_MS", "10000")),
        help="a follower that has not caught up with its leader for this long leaves the ISR (default %(default)s)",
    )
    parser.add_argument(
        "--advertise",
        default=env_default("TIDELOG_ADVERTISE", ""),
        help="address clients are told to use (GetMetadata); default: the listen address",
    )
    parser.add_argument(
        "--replication-advertise",
        default=env_default("TIDELOG_REPLICATION_ADVERTISE", ""),
        help="address the other brokers replicate from (a network of their own); default: --advertise",
    )
    parser.add_argument(
        "--fsync",
        choices=("always", "interval"),
        default=env_default("TIDELOG_FSYNC", "always"),
        help="always: acknowledge after fsync (default); interval: fsync every --fsync-interval-ms",
    )
    parser.add_argument("--fsync-interval-ms", type=int, default=int(env_default("TIDELOG_FSYNC_INTERVAL_MS", "1000")))
    parser.add_argument(
        "--map-size-gb",
        type=float,
        default=float(env_default("TIDELOG_MAP_SIZE_GB", "64")),
        help="the most the LMDB map may grow to (address space, not disk; default %(default)s)",
    )
    parser.add_argument(
        "--initial-map-size-mb",
        type=float,
        default=float(env_default("TIDELOG_INITIAL_MAP_SIZE_MB", "64")),
        help="where the map starts (at least twice the data already there); it doubles when full",
    )
    parser.add_argument(
        "--disk-reserve-mb",
        type=float,
        default=float(env_default("TIDELOG_DISK_RESERVE_MB", "64")),
        help="disk space held back so that deletes and retention can commit on a full disk "
        "(at most 10%% of the filesystem; 0 = none; default %(default)s)",
    )
    parser.add_argument(
        "--retention-ms",
        type=int,
        default=int(env_default("TIDELOG_RETENTION_MS", "604800000")),
        help="retention.ms of topics that do not set it (-1 = forever; default %(default)s, 7 days)",
    )
    parser.add_argument(
        "--retention-bytes",
        type=int,
        default=int(env_default("TIDELOG_RETENTION_BYTES", "-1")),
        help="retention.bytes per partition of topics that do not set it (-1 = no limit; the default)",
    )
    parser.add_argument(
        "--cleaner-interval-ms",
        type=int,
        default=int(env_default("TIDELOG_CLEANER_INTERVAL_MS", "10000")),
        help="how often retention runs (default %(default)s)",
    )
    parser.add_argument(
        "--metrics-listen",
        default=env_default("TIDELOG_METRICS_LISTEN", ""),
        metavar="HOST:PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (default: off)",
    )
    parser.add_argument(
        "--kafka-listen",
        default=env_default("TIDELOG_KAFKA_LISTEN", ""),
        metavar="HOST:PORT",
        help="speak the Kafka wire protocol on HOST:PORT too (default: off; off loopback it needs --tls-cert, "
        "or --insecure)",
    )
    parser.add_argument(
        "--kafka-advertise",
        default=env_default("TIDELOG_KAFKA_ADVERTISE", ""),
        metavar="HOST:PORT",
        help="the address Kafka Metadata hands out for this broker (default: the --kafka-listen address)",
    )
    parser.add_argument(
        "--kafka-auto-create-topics",
        action="store_true",
        help="create a topic a Kafka client's Metadata asks for when it does not exist (as Kafka's "
        "auto.create.topics.enable; default: off), with the default partitions and replication factor",
    )
    parser.add_argument(
        "--console-listen",
        default=env_default("TIDELOG_CONSOLE_LISTEN", ""),
        metavar="HOST:PORT",
        help="serve the web console at http://HOST:PORT/ (default: off; beyond loopback only with TLS and tokens)",
    )
    parser.add_argument(
        "--tls-cert", type=Path, default=env_path("TIDELOG_TLS_CERT"), help="serve TLS with this PEM certificate"
    )
    parser.add_argument(
        "--tls-key", type=Path, default=env_path("TIDELOG_TLS_KEY"), help="the certificate's PEM private key"
    )
    parser.add_argument(
        "--tls-client-ca",
        type=Path,
        default=env_path("TIDELOG_TLS_CLIENT_CA"),
        help="require client certificates signed by this PEM CA (mTLS)",
    )
    parser.add_argument(
        "--insecure", action="store_true", help="allow plaintext on a non-loopback address (not recommended)"
    )
    parser.add_argument(
        "--auth-tokens",
        type=Path,
        default=env_path("TIDELOG_AUTH_TOKENS"),
        help="require bearer tokens: a file of `principal sha256-hex-of-token` lines (reloaded on SIGHUP)",
    )
    parser.add_argument(
        "--inter-broker-token-file",
        type=Path,
        default=env_path("TIDELOG_INTER_BROKER_TOKEN_FILE"),
        help="a cluster with --auth-tokens: the token (in this file, not on the command line) this broker "
        "sends to the others when it replicates; its principal needs alter on the cluster under ACLs",
    )
    parser.add_argument(
        "--inter-broker-tls-ca",
        type=Path,
        default=env_path("TIDELOG_INTER_BROKER_TLS_CA"),
        help="a cluster with --tls-cert: the CA that signed the other brokers' certificates, which this "
        "broker checks when it replicates from them (default: --tls-client-ca, else the system's roots); "
        "it presents its own certificate",
    )
    parser.add_argument(
        "--acls",
        type=Path,
        default=env_path("TIDELOG_ACLS"),
        help="authorize by this ACL file (needs --auth-tokens or --tls-client-ca; reloaded on SIGHUP)",
    )
    parser.add_argument(
        "--quotas",
        type=Path,
        default=env_path("TIDELOG_QUOTAS"),
        help="produce/consume bytes per second per principal: a file of `principal produce consume` lines",
    )
    parser.add_argument("--max-partitions", type=int, default=10_000, help="most partitions a topic may have")
    parser.add_argument("--max-streams", type=int, default=100_000, help="most open streams in total")
    parser.add_argument(
        "--max-streams-per-connection", type=int, default=20_000, help="most open streams from one connection"
    )
    parser.add_argument("--heartbeat-ms", type=int, default=5000, help="Subscribe heartbeat during silence")
    parser.add_argument("--ready-file", type=Path, help="write the bound HOST:PORT here once serving")
    parser.add_argument(
        "--log-format", choices=("auto", "json", "console"), default=env_default("TIDELOG_LOG_FORMAT", "auto")
    )
    parser.add_argument("--log-level", default=env_default("TIDELOG_LOG_LEVEL", "info"))
    parser.set_defaults(run=serve)
    return parser


def require_address(flag: str, value: str) -> None:
    """Exit with a clear message unless `value` is a HOST:PORT to listen on (`flag` names it, if given)."""
    try:
        check_listen(value)
    except ValueError as err:
        raise SystemExit(f"tidelog: {flag + ': ' if flag else ''}{err}") from None


def serve(args: argparse.Namespace) -> int:
    from tidelog.broker.security.acls import Authorizer
    from tidelog.broker.security.auth import TokenFile, is_loopback
    from tidelog.broker.security.quotas import Quotas
    from tidelog.broker.server import serve as run_broker
    from tidelog.broker.storage.lmdb_store import FormatMismatch
    from tidelog.cli import logs

    require_address("", args.listen)
    if args.fsync_interval_ms < 1:
        raise SystemExit("tidelog: --fsync-interval-ms must be >= 1")
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,100}", args.cluster_name):
        raise SystemExit("tidelog: --cluster-name: use 1-100 characters of A-Z a-z 0-9 . _ - (it names etcd keys)")
    if bool(args.tls_cert) != bool(args.tls_key):
        raise SystemExit("tidelog: --tls-cert and --tls-key go together")
    if args.tls_client_ca and not args.tls_cert:
        raise SystemExit("tidelog: --tls-client-ca needs --tls-cert and --tls-key")
    if args.inter_broker_tls_ca and not args.tls_cert:
        raise SystemExit("tidelog: --inter-broker-tls-ca needs --tls-cert and --tls-key (brokers replicate over TLS)")
    if args.replication_advertise:
        require_address("--replication-advertise", args.replication_advertise)
    paths = (args.tls_cert, args.tls_key, args.tls_client_ca, args.auth_tokens, args.acls, args.quotas)
    for path in (*paths, args.inter_broker_token_file, args.inter_broker_tls_ca):
        if path is not None and not path.is_file():
            raise SystemExit(f"tidelog: {path}: no such file")
    if args.inter_broker_token_file is not None and not args.inter_broker_token_file.read_text().strip():
        raise SystemExit(f"tidelog: {args.inter_broker_token_file}: the inter-broker token file is empty")
    if not args.tls_cert and not args.insecure and not is_loopback(args.listen):
        raise SystemExit(
            f"tidelog: refusing plaintext on {args.listen}, which is not a loopback address: give --tls-cert and "
            "--tls-key (and --tls-client-ca for mTLS), or --insecure if the network is yours alone"
        )
    if args.acls is not None and args.auth_tokens is None and args.tls_client_ca is None:
        raise SystemExit("tidelog: --acls needs principals: give --auth-tokens or --tls-client-ca too")
    try:
        if args.auth_tokens is not None:
            TokenFile(args.auth_tokens)
        if args.acls is not None:
            Authorizer(args.acls)
        if args.quotas is not None:
            Quotas(args.quotas)
    except ValueError as err:
        raise SystemExit(f"tidelog: {err}") from None
    if args.metrics_listen:
        require_address("--metrics-listen", args.metrics_listen)
        if not args.tls_cert and not args.insecure and not is_loopback(args.metrics_listen):
            raise SystemExit(
                f"tidelog: refusing plaintext metrics on {args.metrics_listen}, which is not a loopback address: "
                "with --tls-cert and --tls-key the metrics are served over HTTPS, or give --insecure if the network "
                "is yours alone"
            )
    if args.console_listen:
        require_address("--console-listen", args.console_listen)
        if not is_loopback(args.console_listen) and not (args.tls_cert and args.auth_tokens):
            raise SystemExit(
                f"tidelog: refusing the console on {args.console_listen}, which is not a loopback address: beyond "
                "loopback it needs --tls-cert and --tls-key (it is served over HTTPS) and --auth-tokens (it asks for "
                "one)"
            )
        if args.tls_client_ca:
            raise SystemExit(
                "tidelog: --console-listen with --tls-client-ca is not supported yet: the console signs in with tokens"
            )
    if args.kafka_listen:
        require_address("--kafka-listen", args.kafka_listen)
        if args.kafka_advertise:
            require_address("--kafka-advertise", args.kafka_advertise)
        if not args.tls_cert and not is_loopback(args.kafka_listen) and not args.insecure:
            raise SystemExit(
                f"tidelog: refusing plaintext Kafka on {args.kafka_listen}, which is not a loopback address: give "
                "--tls-cert and --tls-key (clients connect with SSL, or SASL_SSL with --auth-tokens), or --insecure "
                "if the network is yours alone"
            )
    cluster: tuple[str, ...] = ()
    if args.cluster:
        try:
            cluster = parse_cluster(args.cluster)
        except ValueError as err:
            raise SystemExit(f"tidelog: {err}") from None
        if args.broker_id < 0:
            raise SystemExit("tidelog: --cluster needs --broker-id N (0 or more, unique in the cluster)")
        if args.cluster_lease_s < 2:
            raise SystemExit("tidelog: --cluster-lease-s must be 2 or more (etcd's election timeout is ~1 s)")
    if args.replica_lag_time_ms < 1000:  # above twice a follower's long poll (500 ms), as in Kafka
        raise SystemExit("tidelog: --replica-lag-time-ms must be 1000 or more")
    if args.replication_timeout_ms < 1:
        raise SystemExit("tidelog: --replication-timeout-ms must be >= 1")
    if args.default_replication_factor < 1:
        raise SystemExit("tidelog: --default-replication-factor must be 1 or more")
    if args.max_streams < 1 or args.max_streams_per_connection < 1:
        raise SystemExit("tidelog: --max-streams and --max-streams-per-connection must be >= 1")
    if args.disk_reserve_mb < 0:
        raise SystemExit("tidelog: --disk-reserve-mb must be >= 0 (0 = no reserve)")
    if args.cleaner_interval_ms < 1:
        raise SystemExit("tidelog: --cleaner-interval-ms must be >= 1")
    if args.retention_ms < -1 or args.retention_bytes < -1:
        raise SystemExit("tidelog: --retention-ms and --retention-bytes must be >= -1 (-1 = no limit)")
    settings = Settings(
        data_dir=args.data_dir,
        listen=args.listen,
        advertise=args.advertise,
        fsync=args.fsync,
        fsync_interval_ms=args.fsync_interval_ms,
        map_size_bytes=int(args.map_size_gb * (1 << 30)),
        initial_map_size_bytes=max(1 << 20, int(args.initial_map_size_mb * (1 << 20))),
        disk_reserve_bytes=int(args.disk_reserve_mb * (1 << 20)),
        max_partitions=args.max_partitions,
        subscribe_heartbeat_ms=args.heartbeat_ms,
        ready_file=args.ready_file,
        log_format=args.log_format,
        log_level=args.log_level,
        retention_ms=args.retention_ms,
        retention_bytes=args.retention_bytes,
        cleaner_interval_ms=args.cleaner_interval_ms,
        metrics_listen=args.metrics_listen,
        console_listen=args.console_listen,
        kafka_listen=args.kafka_listen,
        kafka_advertise=args.kafka_advertise,
        kafka_auto_create_topics=args.kafka_auto_create_topics,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tls_client_ca=args.tls_client_ca,
        auth_tokens=args.auth_tokens,
        acls=args.acls,
        quotas=args.quotas,
        max_streams=args.max_streams,
        max_streams_per_connection=args.max_streams_per_connection,
        cluster=cluster,
        cluster_name=args.cluster_name,
        broker_id=max(args.broker_id, 0),
        cluster_lease_s=args.cluster_lease_s,
        default_replication_factor=args.default_replication_factor,
        replication_timeout_ms=args.replication_timeout_ms,
        replica_lag_time_ms=args.replica_lag_time_ms,
        inter_broker_token=args.inter_broker_token_file.read_text().strip() if args.inter_broker_token_file else "",
        inter_broker_tls_ca=args.inter_broker_tls_ca,
        replication_advertise=args.replication_advertise,
    )
    logs.configure(settings.log_format, settings.log_level)
    try:
        asyncio.run(run_broker(settings))
    except FormatMismatch as err:
        raise SystemExit(f"tidelog: {err}") from None
    return 0


def add_maintenance(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    data_dir = argparse.ArgumentParser(add_help=False)
    data_dir.add_argument(
        "--data-dir",
        type=Path,
        default=Path(env_default("TIDELOG_DATA_DIR", "./data")),
        help="the broker's data directory (env TIDELOG_DATA_DIR; default ./data); the broker may be running",
    )
    verify = commands.add_parser(
        "verify", parents=[data_dir], help="check every stored batch (CRC32C, offsets) and the partition stats"
    )
    verify.add_argument("--json", action="store_true", help="print the report as JSON")
    verify.set_defaults(run=_verify)
    backup = commands.add_parser("backup", parents=[data_dir], help="a hot, compacted copy of the data directory")
    backup.add_argument("destination", type=Path, help="a new or empty directory")
    backup.set_defaults(run=_backup)


def _verify(args: argparse.Namespace) -> int:
    from tidelog.broker.storage import maintenance
    from tidelog.broker.storage.lmdb_store import FormatMismatch

    try:
        store = maintenance.open_existing(args.data_dir)
    except (FileNotFoundError, FormatMismatch) as err:
        raise SystemExit(f"tidelog: {err}") from None
    try:
        report = maintenance.verify(store)
    finally:
        store.close()
    if args.json:
        print(json.dumps(dataclasses.asdict(report), indent=2))
    else:
        print(
            f"{report.topics} topic(s), {report.partitions} partition(s), {report.batches} batch(es), "
            f"{report.records} record(s), {report.bytes} bytes: "
            + ("no problems" if not report.problems else f"{len(report.problems)} problem(s)")
        )
        for problem in report.problems:
            print(f"  {problem}")
    return 1 if report.problems else 0


def _backup(args: argparse.Namespace) -> int:
    from tidelog.broker.storage import maintenance
    from tidelog.broker.storage.lmdb_store import FormatMismatch

    try:
        store = maintenance.open_existing(args.data_dir)
    except (FileNotFoundError, FormatMismatch) as err:
        raise SystemExit(f"tidelog: {err}") from None
    try:
        size = maintenance.backup(store, args.destination)
    except (FileExistsError, OSError) as err:
        raise SystemExit(f"tidelog: {err}") from None
    finally:
        store.close()
    print(f"backed up {args.data_dir} to {args.destination} ({size} bytes)")
    return 0


def env_path(name: str) -> Path | None:
    value = env_default(name, "")
    return Path(value) if value else None
