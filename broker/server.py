"""Assembles and runs the broker: store, writer, services, health, reflection, signals."""

from __future__ import annotations

import asyncio
import signal

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from tidelog.broker import config
from tidelog.broker.api import rpc
from tidelog.broker.api.admin import AdminService, TopicPurger
from tidelog.broker.api.data import BrokerService
from tidelog.broker.api.groups import GroupService
from tidelog.broker.api.rpc import register
from tidelog.broker.config import Settings
from tidelog.broker.groups.coordinator import Coordinator
from tidelog.broker.log.retention import Cleaner
from tidelog.broker.log.topics import TopicRegistry, TopicState
from tidelog.broker.metrics import Metrics
from tidelog.broker.security import acls, quotas
from tidelog.broker.security.acls import Authorizer
from tidelog.broker.security.auth import AuthInterceptor, TokenFile, revoked, server_credentials
from tidelog.broker.security.quotas import Quotas
from tidelog.broker.storage.disk_reserve import DiskReserve
from tidelog.broker.storage.lmdb_store import Store
from tidelog.broker.storage.writer import Writer
from tidelog.v1 import admin_pb2, broker_pb2, groups_pb2

log = structlog.get_logger("tidelog.server")

ADMIN = admin_pb2.DESCRIPTOR.services_by_name["Admin"].full_name
BROKER = broker_pb2.DESCRIPTOR.services_by_name["Broker"].full_name
GROUPS = groups_pb2.DESCRIPTOR.services_by_name["Groups"].full_name
SHUTDOWN_GRACE_S = 5.0


def _reload(tokens: TokenFile | None, authorizer: Authorizer | None, limits: Quotas | None) -> None:
    """SIGHUP: read the token, ACL and quota files again; a file that fails to read keeps what was loaded.
    Open streams whose token was revoked, or whose principal lost a right they need, end."""
    for source in (tokens, authorizer, limits):
        if source is None:
            continue
        try:
            source.reload()
        except (OSError, ValueError) as err:
            log.error("reload_failed", path=str(source.path), error=str(err))
    ended = rpc.stream_limits.end_where(lambda grants: revoked(grants, tokens))
    if ended:
        log.info("streams_revoked", streams=ended)


async def serve(settings: Settings) -> None:
    loop = asyncio.get_running_loop()
    store = Store(
        settings.data_dir,
        sync=settings.fsync == "always",
        map_size=settings.initial_map_size_bytes,
        max_map_size=settings.map_size_bytes,
    )
    registry = TopicRegistry(settings.topic_defaults)
    topics, deleting = store.load()
    for record, stats in topics:
        registry.add(TopicState(record, stats, registry.broker_defaults))

    interval = settings.fsync_interval_ms / 1000 if settings.fsync == "interval" else None
    metrics = Metrics()
    rpc.observer = metrics
    rpc.stream_limits = rpc.StreamLimits(settings.max_streams, settings.max_streams_per_connection)
    disk_reserve = DiskReserve(settings.data_dir, settings.disk_reserve_bytes)
    disk_reserve.fill()
    writer = Writer(store, registry, loop, interval, metrics, disk_reserve)
    writer.start()
    purger = TopicPurger(writer)

    tokens = TokenFile(settings.auth_tokens) if settings.auth_tokens else None
    acls.authorizer = Authorizer(settings.acls) if settings.acls else None
    if acls.authorizer is not None:
        acls.authorizer.set_added(store.stored_acls())
    quotas.active = Quotas(settings.quotas) if settings.quotas else None
    quotas.on_throttle = metrics.throttled
    authenticating = tokens is not None or acls.authorizer is not None
    server = grpc.aio.server(
        interceptors=[AuthInterceptor(tokens)] if authenticating else None,
        options=[
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
        ],
    )
    try:
        if settings.tls_cert and settings.tls_key:
            credentials = server_credentials(settings.tls_cert, settings.tls_key, settings.tls_client_ca)
            port = server.add_secure_port(settings.listen, credentials)
        else:
            port = server.add_insecure_port(settings.listen)
    except RuntimeError:
        port = 0
    if port == 0 and not settings.listen.endswith(":0"):
        await writer.stop()
        store.close()
        raise SystemExit(f"tidelog: cannot listen on {settings.listen} (in use, or not an address of this host)")
    host = settings.listen.rsplit(":", 1)[0]
    bound = f"{host}:{port}"
    advertised = settings.advertise or bound

    register(server, ADMIN, AdminService(settings, registry, writer, purger).handlers())
    register(server, BROKER, BrokerService(settings, registry, store, writer, advertised, metrics).handlers())
    coordinator = Coordinator(registry)
    groups = GroupService(registry, store, writer, coordinator, metrics)
    register(server, GROUPS, groups.handlers())
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (ADMIN, BROKER, GROUPS, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
        server,
    )
    for service in ("", ADMIN, BROKER, GROUPS):  # until everything below is up
        await health_servicer.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)
    await server.start()
    groups.start()
    if settings.metrics_listen:
        metrics.watch_state(loop, registry, store, coordinator)
        metrics.serve(settings.metrics_listen, settings.tls_cert, settings.tls_key, settings.tls_client_ca)
    cleaner = Cleaner(registry, store, writer, settings.cleaner_interval_ms / 1000)
    cleaner.start()
    for service in ("", ADMIN, BROKER, GROUPS):
        await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    for topic_id in deleting:
        purger.start(topic_id)

    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, _reload, tokens, acls.authorizer, quotas.active)
    log.info(
        "serving",
        listen=bound,
        data_dir=str(settings.data_dir),
        fsync=settings.fsync,
        topics=len(topics),
    )
    if settings.ready_file is not None:
        settings.ready_file.write_text(bound)

    await stop.wait()
    log.info("stopping", grace_s=SHUTDOWN_GRACE_S)
    await health_servicer.enter_graceful_shutdown()
    groups.end_streams()
    await server.stop(SHUTDOWN_GRACE_S)
    await groups.stop()
    await cleaner.stop()
    await purger.stop()
    await writer.stop()
    store.close()
    log.info("stopped", commits=writer.commits, ops=writer.ops_committed)
