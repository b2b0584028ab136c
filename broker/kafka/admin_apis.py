"""Kafka's admin APIs: CreateTopics, DeleteTopics and DescribeConfigs over the broker's topics (through
the TopicAdmin the gRPC Admin service uses), ListGroups and DescribeGroups over both kinds of group.

Each topic or group is judged by its ACL before anything is looked up, and one a principal may not see
is answered as Kafka answers it (an authorization error, never whether it exists). Tidelog's own groups
show with protocol type "tidelog" (their members carry no Kafka metadata or assignment); a group that
has only committed offsets is Empty, as in Kafka.
"""

from __future__ import annotations

from typing import Any

from tidelog.broker.errors import BrokerError
from tidelog.broker.groups.coordinator import Coordinator
from tidelog.broker.groups.offsets import OffsetStore
from tidelog.broker.kafka import codes
from tidelog.broker.kafka.caller import Caller
from tidelog.broker.kafka.classic_groups import ClassicGroups
from tidelog.broker.kafka.topics import readable_topic, topic_refusal, topic_uuid
from tidelog.broker.log.topics import TopicRegistry, TopicState
from tidelog.broker.names import check_group_name
from tidelog.broker.security.access import Access
from tidelog.broker.topic_admin import TopicAdmin

Answer = dict[str, Any]
TOPIC_RESOURCE, BROKER_RESOURCE = 2, 4
TOPIC_CONFIG_SOURCE, DEFAULT_CONFIG_SOURCE = 1, 5  # DescribeConfigs' config_source values
TIDELOG_PROTOCOL_TYPE = "tidelog"
_TIDELOG_STATES = {"stable": "Stable", "rebalancing": "PreparingRebalance", "empty": "Empty"}


class KafkaAdminApis:
    def __init__(
        self,
        topics: TopicAdmin,
        registry: TopicRegistry,
        access: Access,
        classic: ClassicGroups,
        coordinator: Coordinator,
        offsets: OffsetStore,
    ) -> None:
        self._topics = topics
        self._registry = registry
        self._access = access
        self._classic = classic
        self._coordinator = coordinator
        self._offsets = offsets

    # -- topics ------------------------------------------------------------------------

    async def create_topics(self, request: Answer, version: int, caller: Caller) -> Answer:
        return {
            "throttle_time_ms": 0,
            "topics": [await self._create(t, request["validate_only"]) for t in request["topics"]],
        }

    async def _create(self, wanted: Answer, validate_only: bool) -> Answer:
        name = wanted["name"]
        answer: Answer = {"name": name, "error_code": codes.NONE, "error_message": None}
        refused, why = topic_refusal(self._access, name, "create")
        if refused != codes.NONE:
            return {**answer, "error_code": refused, "error_message": why}
        if wanted["assignments"]:
            message = "replicas are placed by the broker: give num_partitions (and replication_factor), not assignments"
            return {**answer, "error_code": codes.INVALID_REPLICA_ASSIGNMENT, "error_message": message}
        partitions = None if wanted["num_partitions"] < 0 else wanted["num_partitions"]
        factor = None if wanted["replication_factor"] < 0 else wanted["replication_factor"]
        configs = {c["name"]: c["value"] for c in wanted["configs"] if c["value"] is not None}
        try:
            if validate_only:
                self._topics.check_new(name, partitions, factor, configs)
                if name in self._registry:
                    return {**answer, "error_code": codes.TOPIC_ALREADY_EXISTS}
                return answer
            await self._topics.create(name, partitions, factor, configs)
        except BrokerError as err:
            return {**answer, "error_code": codes.of(err), "error_message": err.message}
        topic = self._registry.get(name)
        return {
            **answer,
            "topic_id": topic_uuid(topic),
            "num_partitions": len(topic.partitions),
            "replication_factor": self._topics.replication_factor(name),
            "configs": _configs(topic),
        }

    async def delete_topics(self, request: Answer, version: int, caller: Caller) -> Answer:
        responses = []
        for name in request["topic_names"]:
            answer: Answer = {"name": name, "error_code": codes.NONE, "error_message": None}
            refused, why = topic_refusal(self._access, name, "delete")
            if refused != codes.NONE:
                responses.append({**answer, "error_code": refused, "error_message": why})
                continue
            try:
                await self._topics.delete(name)
            except BrokerError as err:
                answer.update(error_code=codes.of(err), error_message=err.message)
            responses.append(answer)
        return {"throttle_time_ms": 0, "responses": responses}

    async def describe_configs(self, request: Answer, version: int, caller: Caller) -> Answer:
        results = []
        for resource in request["resources"]:
            kind, name, keys = resource["resource_type"], resource["resource_name"], resource["configuration_keys"]
            result: Answer = {
                "error_code": codes.NONE,
                "error_message": None,
                "resource_type": kind,
                "resource_name": name,
                "configs": [],
            }
            if kind == TOPIC_RESOURCE:
                topic = readable_topic(self._registry, self._access, name, "describe")
                if isinstance(topic, int):
                    result["error_code"] = topic
                else:
                    result["configs"] = [c for c in _configs(topic) if keys is None or c["name"] in keys]
            elif kind == BROKER_RESOURCE:
                if not self._access.permitted("describe", "cluster", ""):
                    result["error_code"] = codes.CLUSTER_AUTHORIZATION_FAILED
            else:
                result.update(error_code=codes.INVALID_REQUEST, error_message=f"resource type {kind}: topics (2) only")
            results.append(result)
        return {"throttle_time_ms": 0, "results": results}

    # -- groups ------------------------------------------------------------------------

    def _groups(self) -> dict[str, tuple[str, str]]:
        """Every group known here, with its (protocol type, Kafka state)."""
        found = {name: ("consumer", "Empty") for name in self._offsets.group_names()}
        for group in self._coordinator.groups():
            found[group.name] = (TIDELOG_PROTOCOL_TYPE, _TIDELOG_STATES.get(group.state, "Stable"))
        for classic in self._classic.groups():
            if classic.members:
                found[classic.name] = (classic.protocol_type or "consumer", classic.state)
        return found

    async def list_groups(self, request: Answer, version: int, caller: Caller) -> Answer:
        states = set(request["states_filter"])
        groups = [
            {"group_id": name, "protocol_type": protocol_type, "group_state": state}
            for name, (protocol_type, state) in sorted(self._groups().items())
            if self._access.permitted("describe", "group", name) and (not states or state in states)
        ]
        return {"throttle_time_ms": 0, "error_code": codes.NONE, "groups": groups}

    async def describe_groups(self, request: Answer, version: int, caller: Caller) -> Answer:
        return {"throttle_time_ms": 0, "groups": [self._describe(name) for name in request["groups"]]}

    def _describe(self, name: str) -> Answer:
        answer: Answer = {
            "error_code": codes.NONE,
            "group_id": name,
            "group_state": "Dead",
            "protocol_type": "",
            "protocol_data": "",
            "members": [],
        }
        try:
            check_group_name(name)
        except BrokerError:
            return {**answer, "error_code": codes.INVALID_GROUP_ID}
        if not self._access.permitted("describe", "group", name):
            return {**answer, "error_code": codes.GROUP_AUTHORIZATION_FAILED}
        classic = self._classic.group(name)
        if classic is not None and classic.members:
            members = [
                {
                    "member_id": m.id,
                    "group_instance_id": None,
                    "client_id": m.client_id,
                    "client_host": m.client_host,
                    "member_metadata": dict(m.protocols).get(classic.protocol or "", b""),
                    "member_assignment": m.assignment,
                }
                for m in classic.members.values()
            ]
            return {
                **answer,
                "group_state": classic.state,
                "protocol_type": classic.protocol_type or "",
                "protocol_data": classic.protocol or "",
                "members": members,
            }
        group = self._coordinator.group(name)
        if group is not None:
            members = [
                {
                    "member_id": m.id,
                    "group_instance_id": None,
                    "client_id": "",
                    "client_host": _host(m.peer),
                    "member_metadata": b"",
                    "member_assignment": b"",
                }
                for m in group.members.values()
            ]
            return {
                **answer,
                "group_state": _TIDELOG_STATES.get(group.state, "Stable"),
                "protocol_type": TIDELOG_PROTOCOL_TYPE,
                "members": members,
            }
        if self._offsets.committed(name):
            return {**answer, "group_state": "Empty", "protocol_type": "consumer"}
        return answer


def _configs(topic: TopicState) -> list[Answer]:
    return [
        {
            "name": key,
            "value": value,
            "read_only": False,
            "is_sensitive": False,
            "synonyms": [],
            "config_source": TOPIC_CONFIG_SOURCE if key in topic.overrides else DEFAULT_CONFIG_SOURCE,
        }
        for key, value in sorted(topic.configs.items())
    ]


def _host(peer: str) -> str:
    """A gRPC peer ("ipv4:127.0.0.1:5000", "ipv6:[::1]:5000") as the host Kafka's tools show."""
    kind, _, address = peer.partition(":")
    if kind not in ("ipv4", "ipv6"):
        return peer
    return address.rsplit(":", 1)[0].strip("[]")
