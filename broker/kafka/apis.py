"""Kafka requests answered: a frame's header read, its body decoded, the answer encoded.

Unknown API keys and versions this broker does not speak close the connection (as Kafka's broker
does), except ApiVersions, which answers a version it does not speak in version 0 with
UNSUPPORTED_VERSION and its ranges (KIP-511), so a newer client can settle on one it does.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from tidelog.broker.cluster.producer_ids import ProducerIds
from tidelog.broker.errors import BrokerError
from tidelog.broker.groups.coordinator import Coordinator
from tidelog.broker.groups.offsets import OffsetStore
from tidelog.broker.kafka import codes, messages
from tidelog.broker.kafka.admin_apis import KafkaAdminApis
from tidelog.broker.kafka.caller import Caller, Session
from tidelog.broker.kafka.classic_groups import ClassicGroups
from tidelog.broker.kafka.cluster_view import KafkaCluster
from tidelog.broker.kafka.fetch import KafkaFetch
from tidelog.broker.kafka.group_apis import KafkaGroupApis
from tidelog.broker.kafka.produce import KafkaProduce
from tidelog.broker.kafka.producers import KafkaProducerIds
from tidelog.broker.kafka.sasl import KafkaSasl
from tidelog.broker.kafka.schema import Message, decode, encode
from tidelog.broker.kafka.topics import readable_topic, topic_uuid
from tidelog.broker.kafka.wire import Reader, Writer
from tidelog.broker.log.service import Log
from tidelog.broker.log.topics import TopicState
from tidelog.broker.metrics import Metrics
from tidelog.broker.security.access import Access
from tidelog.broker.security.auth import TokenFile
from tidelog.broker.topic_admin import TopicAdmin

LATEST, EARLIEST = -1, -2  # ListOffsets' special timestamps
_BEFORE_AUTHENTICATION = frozenset(
    m.api_key
    for m in (messages.API_VERSIONS_REQUEST, messages.SASL_HANDSHAKE_REQUEST, messages.SASL_AUTHENTICATE_REQUEST)
)
Handler = Callable[[dict[str, Any], int, Caller], Awaitable[dict[str, Any] | None]]


@dataclass(frozen=True)
class Header:
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None


class Refused(Exception):
    """A request this listener will not answer: the connection is closed."""


@dataclass(frozen=True)
class KafkaParts:
    """The broker's parts the Kafka APIs answer from."""

    log: Log
    access: Access
    metrics: Metrics
    producer_ids: ProducerIds
    groups: ClassicGroups
    offsets: OffsetStore
    topics: TopicAdmin
    coordinator: Coordinator  # Tidelog's own groups (listed and described beside the classic ones)
    tokens: TokenFile | None  # SASL/PLAIN's passwords (--auth-tokens): required when given
    auto_create_topics: bool = False  # --kafka-auto-create-topics


class KafkaApis:
    def __init__(self, parts: KafkaParts, cluster: KafkaCluster, cluster_id: str) -> None:
        self._log = parts.log
        self._registry = parts.log.registry
        self._access = parts.access
        self._cluster = cluster
        self._cluster_id = cluster_id
        self._metrics = parts.metrics
        self._topic_admin = parts.topics
        self._auto_create = parts.auto_create_topics
        self._sasl = KafkaSasl(parts.tokens)
        groups = KafkaGroupApis(parts.groups, parts.offsets, self._registry, parts.access, cluster)
        admin = KafkaAdminApis(
            parts.topics, self._registry, parts.access, parts.groups, parts.coordinator, parts.offsets
        )
        self._handlers: dict[int, Handler] = {
            messages.API_VERSIONS_REQUEST.api_key: self.api_versions,
            messages.METADATA_REQUEST.api_key: self.metadata,
            messages.LIST_OFFSETS_REQUEST.api_key: self.list_offsets,
            messages.PRODUCE_REQUEST.api_key: KafkaProduce(parts.log, parts.access, parts.metrics, cluster),
            messages.FETCH_REQUEST.api_key: KafkaFetch(parts.log, parts.access, parts.metrics, cluster),
            messages.INIT_PRODUCER_ID_REQUEST.api_key: KafkaProducerIds(parts.producer_ids, parts.access),
            messages.FIND_COORDINATOR_REQUEST.api_key: groups.find_coordinator,
            messages.JOIN_GROUP_REQUEST.api_key: groups.join_group,
            messages.SYNC_GROUP_REQUEST.api_key: groups.sync_group,
            messages.HEARTBEAT_REQUEST.api_key: groups.heartbeat,
            messages.LEAVE_GROUP_REQUEST.api_key: groups.leave_group,
            messages.OFFSET_COMMIT_REQUEST.api_key: groups.offset_commit,
            messages.OFFSET_FETCH_REQUEST.api_key: groups.offset_fetch,
            messages.CREATE_TOPICS_REQUEST.api_key: admin.create_topics,
            messages.DELETE_TOPICS_REQUEST.api_key: admin.delete_topics,
            messages.DESCRIBE_CONFIGS_REQUEST.api_key: admin.describe_configs,
            messages.LIST_GROUPS_REQUEST.api_key: admin.list_groups,
            messages.DESCRIBE_GROUPS_REQUEST.api_key: admin.describe_groups,
            messages.SASL_HANDSHAKE_REQUEST.api_key: self._sasl.handshake,
            messages.SASL_AUTHENTICATE_REQUEST.api_key: self._sasl.authenticate,
        }

    async def handle(self, frame: bytes, session: Session) -> bytes | None:
        """The response frame's body (header included) for a request frame, None when the request
        is not to be answered (a Produce with acks=0); Refused to close the connection instead.
        A throttled answer sets the session's mute_s: the listener reads the next request that late."""
        reader = Reader(frame)
        header = Header(reader.int16(), reader.int16(), reader.int32(), reader.string(nullable=True))
        pair = messages.APIS.get(header.api_key)
        if pair is None:
            raise Refused(f"API key {header.api_key} is not one this broker speaks")
        request, response = pair
        low, high = request.valid
        if not low <= header.api_version <= high:
            if header.api_key == messages.API_VERSIONS_REQUEST.api_key:
                return self._respond(header, response, 0, {"error_code": codes.UNSUPPORTED_VERSION, **self._ranges()})
            raise Refused(f"{request.name} version {header.api_version} is outside {low}-{high}")
        caller = Caller(header.client_id or "", session)
        if self._sasl.required and header.api_key not in _BEFORE_AUTHENTICATION and not session.authenticated:
            raise Refused(f"{request.name} before authenticating: this listener needs SASL/PLAIN with a token")
        if not self._sasl.still_valid(caller):
            raise Refused(f"the token {session.principal} authenticated with is no longer valid")
        if request.is_flexible(header.api_version):
            reader.tagged_fields()
        body = decode(request, header.api_version, frame, reader.pos)
        began = time.perf_counter()
        answer = await self._handlers[header.api_key](body, header.api_version, caller)
        self._metrics.kafka_request(
            request.name.removesuffix("Request"), header.api_version, time.perf_counter() - began
        )
        if answer is None:
            return None
        session.mute_s = answer.get("throttle_time_ms", 0) / 1000
        return self._respond(header, response, header.api_version, answer)

    @staticmethod
    def _respond(header: Header, response: Message, version: int, answer: dict[str, Any]) -> bytes:
        out = Writer()
        out.int32(header.correlation_id)
        # Flexible responses have a header with tagged fields, but ApiVersions' never does (KIP-511).
        if response.is_flexible(version) and header.api_key != messages.API_VERSIONS_REQUEST.api_key:
            out.no_tagged_fields()
        out.raw(encode(response, version, answer))
        return out.getvalue()

    # -- the APIs ----------------------------------------------------------------------

    @staticmethod
    def _ranges() -> dict[str, Any]:
        return {
            "api_keys": [
                {"api_key": key, "min_version": request.valid[0], "max_version": request.valid[1]}
                for key, (request, _) in messages.APIS.items()
            ]
        }

    async def api_versions(self, request: dict[str, Any], version: int, caller: Caller) -> dict[str, Any]:
        return {"error_code": codes.NONE, **self._ranges()}

    async def metadata(self, request: dict[str, Any], version: int, caller: Caller) -> dict[str, Any]:
        wanted = request["topics"]
        if wanted is None:  # every topic the principal may see
            names = [t.name for t in self._registry.sorted() if self._access.permitted("describe", "topic", t.name)]
            topics = [self._topic_metadata(name) for name in names]
        else:
            if self._auto_create and request["allow_auto_topic_creation"]:
                for name in {t["name"] for t in wanted if t["name"] and t["name"] not in self._registry}:
                    await self._create(name)
            topics = [self._topic_metadata(t["name"], t["topic_id"]) for t in wanted]
        return {
            "brokers": [
                {"node_id": n.node_id, "host": n.host, "port": n.port, "rack": None} for n in self._cluster.nodes()
            ],
            "cluster_id": self._cluster_id,
            "controller_id": self._cluster.controller_id(),
            "topics": topics,
        }

    async def _create(self, name: str) -> None:
        """Auto-creation: a topic the principal may create, with the broker's defaults. What fails (a bad
        name, a refusal, a race with another creation) leaves Metadata to answer for the topic as it is."""
        if not self._access.permitted("create", "topic", name):
            return
        with contextlib.suppress(BrokerError):
            await self._topic_admin.create(name, None, None, {})

    def _topic_metadata(self, name: str | None, topic_id: uuid.UUID | None = None) -> dict[str, Any]:
        if name is None:  # v10+: asked by id
            return {"error_code": codes.UNKNOWN_TOPIC_ID, "name": None, "topic_id": topic_id, "partitions": []}
        topic = readable_topic(self._registry, self._access, name, "describe")
        if isinstance(topic, int):
            return {"error_code": topic, "name": name, "partitions": []}
        partitions = self._cluster.partitions(topic)
        return {"error_code": codes.NONE, "name": name, "topic_id": topic_uuid(topic), "partitions": partitions}

    async def list_offsets(self, request: dict[str, Any], version: int, caller: Caller) -> dict[str, Any]:
        """Offsets by time: -1 the high watermark, -2 the log start, else the first record at or after it."""
        topics = []
        for wanted in request["topics"]:
            name = wanted["name"]
            topic = readable_topic(self._registry, self._access, name, "describe")
            answers = []
            for asked in wanted["partitions"]:
                index = asked["partition_index"]
                answer: dict[str, Any] = {"partition_index": index, "timestamp": -1, "offset": -1}
                if isinstance(topic, int):
                    answer["error_code"] = topic
                elif not 0 <= index < len(topic.partitions):
                    answer["error_code"] = codes.UNKNOWN_TOPIC_OR_PARTITION
                else:
                    try:
                        self._cluster.refuse_unless_leader(topic, index)
                        answer.update(self._offset_at(topic, index, asked["timestamp"]))
                    except BrokerError as err:
                        answer["error_code"] = codes.of(err)
                answers.append(answer)
            topics.append({"name": name, "partitions": answers})
        return {"topics": topics}

    def _offset_at(self, topic: TopicState, index: int, timestamp: int) -> dict[str, Any]:
        partition = topic.partitions[index]
        epoch = self._cluster.leader_epoch(topic, index)
        if timestamp == LATEST:
            return {"offset": partition.high_watermark, "leader_epoch": epoch}
        if timestamp == EARLIEST:
            return {"offset": partition.log_start_offset, "leader_epoch": epoch}
        if timestamp < 0:
            return {"error_code": codes.UNSUPPORTED_VERSION}  # -3 and below: asks of later versions
        offset, found_at = self._log.offset_for_time(topic, partition, timestamp)
        if found_at < 0:  # nothing at or after it: Kafka answers -1, -1
            return {"offset": -1, "timestamp": -1}
        return {"offset": offset, "timestamp": found_at, "leader_epoch": epoch}
