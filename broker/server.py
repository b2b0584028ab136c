"""Assembles and runs a broker: store, writer, services, health, reflection; `serve` adds the signals.

Every collaborator is built here and handed to those that need it (no module holds wiring), so one
process may hold several brokers, each with its own limits, ACLs, quotas and metrics.
"""

from __future__ import annotations

import asyncio
import functools
import signal

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from tidelog.broker import config
from tidelog.broker.api.admin import AdminService
from tidelog.broker.api.data import BrokerService
from tidelog.broker.api.groups import GroupService
from tidelog.broker.api.replication import ReplicationService
from tidelog.broker.api.rpc import Rpc, StreamLimits, register
from tidelog.broker.background import Background
from tidelog.broker.cluster.control import ControlPlane
from tidelog.broker.cluster.etcd import Etcd
from tidelog.broker.cluster.group_store import EtcdGroups
from tidelog.broker.cluster.membership import Membership, NoFollowers, ReplicaProgress, SingleBroker, holds_replica
from tidelog.broker.cluster.mirror import TopicMirror
from tidelog.broker.cluster.producer_ids import ClusterProducerIds, LocalProducerIds, ProducerIds
from tidelog.broker.cluster.replication import Replication
from tidelog.broker.config import Settings
from tidelog.broker.console.app import Console
from tidelog.broker.console.gateway import Gateway
from tidelog.broker.console.history import History
from tidelog.broker.errors import BrokerError
from tidelog.broker.groups.coordinator import Coordinator
from tidelog.broker.groups.offsets import LocalOffsets, OffsetStore
from tidelog.broker.groups.placement import GroupPlacement, SingleBrokerGroups
from tidelog.broker.groups.protocols import LiveGroups
from tidelog.broker.kafka.apis import KafkaApis, KafkaParts
from tidelog.broker.kafka.classic_groups import ClassicGroups
from tidelog.broker.kafka.cluster_view import KafkaCluster, node_of
from tidelog.broker.kafka.listener import KafkaListener
from tidelog.broker.log.purge import TopicPurger
from tidelog.broker.log.retention import Cleaner
from tidelog.broker.log.service import Log
from tidelog.broker.log.topics import TopicRegistry, TopicState
from tidelog.broker.metrics import Metrics
from tidelog.broker.security.access import Access
from tidelog.broker.security.acls import Authorizer
from tidelog.broker.security.auth import AuthInterceptor, TokenFile, revoked, server_credentials, server_tls
from tidelog.broker.security.quotas import Quotas
from tidelog.broker.storage.disk_reserve import DiskReserve
from tidelog.broker.storage.lmdb_store import LmdbStore
from tidelog.broker.storage.writer import Writer
from tidelog.broker.topic_admin import TopicAdmin
from tidelog.common.reasons import Reason
from tidelog.v1 import admin_pb2, broker_pb2, groups_pb2, replication_pb2

log = structlog.get_logger("tidelog.server")

ADMIN = admin_pb2.DESCRIPTOR.services_by_name["Admin"].full_name
BROKER = broker_pb2.DESCRIPTOR.services_by_name["Broker"].full_name
GROUPS = groups_pb2.DESCRIPTOR.services_by_name["Groups"].full_name
REPLICATION = replication_pb2.DESCRIPTOR.services_by_name["ReplicationService"].full_name
SERVICES = ("", ADMIN, BROKER, GROUPS)
SHUTDOWN_GRACE_S = 5.0
HAND_OVER_TIMEOUT_S = 5.0
HANDED_OVER_GRACE_S = 0.5  # controlled shutdown: how long to wait for the moves to show in the metadata


def inter_broker_credentials(settings: Settings) -> grpc.ChannelCredentials | None:
    """TLS to the other brokers when this one serves TLS (a cluster's brokers serve alike): their
    certificates checked against --inter-broker-tls-ca (or --tls-client-ca, or the system's roots),
    this broker's own presented, for brokers that ask for client certificates."""
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    ca = settings.inter_broker_tls_ca or settings.tls_client_ca
    return grpc.ssl_channel_credentials(
        root_certificates=ca.read_bytes() if ca is not None else None,
        private_key=settings.tls_key.read_bytes(),
        certificate_chain=settings.tls_cert.read_bytes(),
    )


def _server_options(settings: Settings) -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", config.MAX_RECEIVE_BYTES),
        ("grpc.max_send_message_length", config.MAX_RECEIVE_BYTES),
        ("grpc.so_reuseport", 0),
        # Keepalive: find dead clients of idle streams, and refuse clients that ping too often.
        ("grpc.keepalive_time_ms", 60_000),
        ("grpc.keepalive_timeout_ms", 20_000),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.http2.max_ping_strikes", 2),
        # grpc-core queues calls the Python server has not picked up yet and, past 1,000 queued
        # (3,000 hard), cancels them at random: a burst of Subscribe streams (a consumer of
        # thousands of partitions reconnecting) came back CANCELLED. --max-streams is the limit.
        ("grpc.server.max_pending_requests", settings.max_streams),
        ("grpc.server.max_pending_requests_hard_limit", settings.max_streams),
    ]


class Broker:
    """One broker: `await start()` opens its data and listens, `await stop()` drains and closes."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.address = ""  # HOST:PORT once started
        self.tokens = TokenFile(settings.auth_tokens) if settings.auth_tokens else None
        self.metrics = Metrics()
        authorizer = Authorizer(settings.acls) if settings.acls else None
        quotas = Quotas(settings.quotas) if settings.quotas else None
        self.access = Access(authorizer, quotas, self.metrics.throttled)
        self.rpc = Rpc(self.metrics, StreamLimits(settings.max_streams, settings.max_streams_per_connection))
        self.control: ControlPlane | None = None  # with --cluster
        self.mirror: TopicMirror | None = None
        self.replication: Replication | None = None
        self.console: Console | None = None  # with --console-listen
        self.kafka: KafkaListener | None = None  # with --kafka-listen
        self.kafka_expiry = Background()  # its classic groups' session timeouts

    async def start(self) -> str:
        settings, loop = self.settings, asyncio.get_running_loop()
        self.store = store = LmdbStore(
            settings.data_dir,
            sync=settings.fsync == "always",
            map_size=settings.initial_map_size_bytes,
            max_map_size=settings.map_size_bytes,
        )
        registry = TopicRegistry(settings.topic_defaults)
        topics, deleting = store.load()
        for record, stats in topics:
            registry.add(TopicState(record, stats, registry.broker_defaults))
        if self.access.authorizer is not None:
            self.access.authorizer.set_added(store.stored_acls())

        interval = settings.fsync_interval_ms / 1000 if settings.fsync == "interval" else None
        disk_reserve = DiskReserve(settings.data_dir, settings.disk_reserve_bytes)
        disk_reserve.fill()
        self.writer = writer = Writer(store, loop, interval, self.metrics, disk_reserve)
        writer.start()
        log_ = Log(registry, store, writer)
        self.purger = purger = TopicPurger(log_)

        authenticating = self.tokens is not None or self.access.authorizer is not None
        self.server = server = grpc.aio.server(
            interceptors=[AuthInterceptor(self.tokens)] if authenticating else None,
            options=_server_options(settings),
        )
        port = self._listen(server)
        if port == 0 and not settings.listen.endswith(":0"):
            await writer.stop()
            store.close()
            raise SystemExit(f"tidelog: cannot listen on {settings.listen} (in use, or not an address of this host)")
        self.address = f"{settings.listen.rsplit(':', 1)[0]}:{port}"
        advertised = settings.advertise or self.address

        rpc, access = self.rpc, self.access
        self.membership: Membership = SingleBroker(advertised)
        offsets: OffsetStore = LocalOffsets(store, log_.submit)
        placement: GroupPlacement = SingleBrokerGroups()
        self.cluster_groups: EtcdGroups | None = None
        kafka_advertised = ""
        if settings.kafka_listen:  # bound first: the cluster's registration names its address
            # With --tls-cert: SSL, or SASL_SSL with tokens; mTLS with a client CA.
            kafka_tls = (
                server_tls(settings.tls_cert, settings.tls_key, settings.tls_client_ca)
                if settings.tls_cert and settings.tls_key
                else None
            )
            self.kafka = KafkaListener(settings.kafka_listen, kafka_tls)
            bound = await self.kafka.bind()
            kafka_advertised = settings.kafka_advertise or bound
        if settings.cluster:
            etcd = Etcd(settings.cluster)
            self.control = ControlPlane(
                etcd,
                settings.cluster_name,
                settings.broker_id,
                advertised,
                settings.cluster_lease_s,
                settings.replication_advertise,
                kafka_advertised,
            )
            self.membership = self.control
            self.cluster_groups = offsets = placement = EtcdGroups(self.control, etcd)
            self.replication = Replication(
                self.control,
                log_,
                settings.replica_lag_time_ms / 1000,
                settings.inter_broker_token,
                inter_broker_credentials(settings),
            )
            register(server, REPLICATION, ReplicationService(self.replication, rpc, access).handlers())
        followers: ReplicaProgress = self.replication if self.replication is not None else NoFollowers()
        if self.control is not None:
            self.mirror = TopicMirror(self.control, log_, purger)
        topic_admin = TopicAdmin(settings, log_, purger, self.control, self.mirror)
        admin = AdminService(log_, topic_admin, rpc, access, self.control, advertised)
        register(server, ADMIN, admin.handlers())
        producer_ids: ProducerIds = LocalProducerIds(log_) if self.control is None else ClusterProducerIds(self.control)
        data = BrokerService(settings, log_, self.membership, followers, producer_ids, self.metrics, rpc, access)
        register(server, BROKER, data.handlers())
        live_groups = LiveGroups()  # a group's members speak one protocol at a time
        self.coordinator = coordinator = Coordinator(registry, offsets, live=live_groups)
        self.kafka_groups = ClassicGroups(live_groups)
        placement.on_lost(
            lambda group: coordinator.drop(
                group,
                BrokerError(
                    Reason.NOT_COORDINATOR, f"broker {settings.broker_id} no longer coordinates {group!r}; rejoin"
                ),
            )
        )
        self.groups = groups = GroupService(
            log_, offsets, placement, coordinator, self.membership, self.metrics, rpc, access
        )
        register(server, GROUPS, groups.handlers())
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (
                ADMIN,
                BROKER,
                GROUPS,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ),
            server,
        )
        for service in SERVICES:  # until everything below is up
            await self.health.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)
        await server.start()
        groups.start()
        if settings.metrics_listen:
            holds = functools.partial(holds_replica, self.membership)
            self.metrics.watch_state(loop, registry, offsets, coordinator, holds)
            if self.control is not None and self.replication is not None:
                self.metrics.watch_cluster(loop, self.control, self.replication)
            self.metrics.serve(settings.metrics_listen, settings.tls_cert, settings.tls_key, settings.tls_client_ca)
        if settings.console_listen:
            tls = (settings.tls_cert, settings.tls_key) if settings.tls_cert and settings.tls_key else None
            self.console = Console(
                settings.console_listen,
                Gateway(self.address, settings.tls_cert if tls else None),
                History(self.metrics, registry, offsets, functools.partial(holds_replica, self.membership)),
                auth_required=self.tokens is not None,
                clustered=self.control is not None,
                tls=tls,
            )
            await self.console.start()
        if self.kafka is not None:
            placement.on_lost(self.kafka_groups.drop)
            await self._serve_kafka(
                self.kafka,
                kafka_advertised,
                placement,
                KafkaParts(
                    log_,
                    access,
                    self.metrics,
                    producer_ids,
                    self.kafka_groups,
                    offsets,
                    topic_admin,
                    coordinator,
                    self.tokens,
                    settings.kafka_auto_create_topics,
                ),
            )
            self.kafka_expiry.start(self.kafka_groups.expire_periodically())
        self.cleaner = Cleaner(registry, store, writer, settings.cleaner_interval_ms / 1000)
        self.cleaner.start()
        for service in SERVICES:
            await self.health.set(service, health_pb2.HealthCheckResponse.SERVING)
        for topic_id in deleting:
            purger.start(topic_id)
        if self.control is not None:
            await self.control.start()  # registers once it serves: the others may route to it at once
            assert self.mirror is not None
            self.mirror.start()
            assert self.replication is not None
            self.replication.start()
        log.info(
            "serving", listen=self.address, data_dir=str(settings.data_dir), fsync=settings.fsync, topics=len(topics)
        )
        return self.address

    async def _serve_kafka(
        self, listener: KafkaListener, advertised: str, placement: GroupPlacement, parts: KafkaParts
    ) -> None:
        settings = self.settings
        me = node_of(settings.broker_id, advertised)
        cluster = KafkaCluster(me, self.membership, placement, self.control, settings.replication_timeout_ms / 1000)
        await listener.serve(KafkaApis(parts, cluster, f"tidelog-{settings.cluster_name}"))

    def _listen(self, server: grpc.aio.Server) -> int:
        settings = self.settings
        try:
            if settings.tls_cert and settings.tls_key:
                credentials = server_credentials(settings.tls_cert, settings.tls_key, settings.tls_client_ca)
                return int(server.add_secure_port(settings.listen, credentials))
            return int(server.add_insecure_port(settings.listen))
        except RuntimeError:
            return 0

    def reload(self) -> None:
        """Read the token, ACL and quota files again (a file that fails to read keeps what was loaded);
        end the open streams whose token was revoked or whose principal lost a right they need."""
        for source in (self.tokens, self.access.authorizer, self.access.quotas):
            if source is None:
                continue
            try:
                source.reload()
            except (OSError, ValueError) as err:
                log.error("reload_failed", path=str(source.path), error=str(err))
        ended = self.rpc.limits.end_where(lambda grants: revoked(grants, self.tokens, self.access))
        if ended:
            log.info("streams_revoked", streams=ended)

    async def stop(self) -> None:
        log.info("stopping", grace_s=SHUTDOWN_GRACE_S)
        grace_s = SHUTDOWN_GRACE_S
        if self.replication is not None:  # controlled shutdown: others lead before this one goes
            try:
                moved = await asyncio.wait_for(self.replication.hand_over(), HAND_OVER_TIMEOUT_S)
                log.info("handed_over", partitions=moved)
                # What is still open here can only be answered NOT_LEADER now: no need to wait for it.
                grace_s = HANDED_OVER_GRACE_S
            except TimeoutError:  # etcd slow or out of reach: the lease moves the rest
                log.warning("hand_over_unfinished", timeout_s=HAND_OVER_TIMEOUT_S)
            # Long-lived streams move to the new leaders at once rather than at the grace's end.
            self.rpc.limits.end_all(BrokerError(Reason.SHUTTING_DOWN, "the broker is stopping; its partitions moved"))
        await self.health.enter_graceful_shutdown()
        if self.console is not None:
            await self.console.stop()
        if self.kafka is not None:
            await self.kafka.stop()
            await self.kafka_expiry.stop()
        if self.cluster_groups is not None:  # before the members rejoin elsewhere
            try:
                await asyncio.wait_for(self.cluster_groups.release_all(), HAND_OVER_TIMEOUT_S)
            except TimeoutError:
                log.warning("group_release_unfinished", timeout_s=HAND_OVER_TIMEOUT_S)
        self.groups.end_streams()
        await self.server.stop(grace_s)
        await self.groups.stop()
        await self.cleaner.stop()
        await self.purger.stop()
        if self.replication is not None:
            await self.replication.checkpoint()  # a clean restart shows at once what was readable
        await self.writer.stop()
        if self.replication is not None:
            await self.replication.stop()
        if self.mirror is not None:
            await self.mirror.stop()
        if self.control is not None:
            await self.control.stop()  # leaves at once: the others need not wait for the lease
        self.metrics.stop_serving()
        self.store.close()
        log.info("stopped", commits=self.writer.commits, ops=self.writer.ops_committed)


async def serve(settings: Settings) -> None:
    """Run a broker until SIGTERM or SIGINT; SIGHUP reloads its token, ACL and quota files."""
    loop = asyncio.get_running_loop()
    broker = Broker(settings)
    address = await broker.start()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, broker.reload)
    if settings.ready_file is not None:
        settings.ready_file.write_text(address)
    await stop.wait()
    await broker.stop()
