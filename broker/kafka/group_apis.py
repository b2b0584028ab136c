"""Kafka's group APIs: FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup (the classic
protocol, kafka.classic_groups), and OffsetCommit and OffsetFetch over the committed offsets Tidelog's
own groups use too (groups.offsets): a group can move between the protocols and resume where it was.

Each request checks the group's ACL (consume; describe to find its coordinator or read its offsets)
before it looks anything up. A commit sets an offset exactly, as Kafka's do (a consumer that seeks
back commits back); commit metadata strings are not kept (they read back as "").
"""

from __future__ import annotations

from typing import Any

from tidelog.broker.errors import BrokerError
from tidelog.broker.groups.offsets import OffsetStore
from tidelog.broker.kafka import codes
from tidelog.broker.kafka.caller import Caller
from tidelog.broker.kafka.classic_groups import ClassicGroups, GroupError, Join
from tidelog.broker.kafka.cluster_view import KafkaCluster
from tidelog.broker.kafka.topics import readable_topic
from tidelog.broker.log.topics import TopicRegistry
from tidelog.broker.names import check_group_name
from tidelog.broker.security.access import Access

Answer = dict[str, Any]
GROUP_KEY, TRANSACTION_KEY = 0, 1


class KafkaGroupApis:
    def __init__(
        self,
        groups: ClassicGroups,
        offsets: OffsetStore,
        registry: TopicRegistry,
        access: Access,
        cluster: KafkaCluster,
    ) -> None:
        self._groups = groups
        self._offsets = offsets
        self._registry = registry
        self._access = access
        self._cluster = cluster

    def _refusal(self, group: str, operation: str, here: bool = True) -> int:
        """The error code that refuses `group` to this principal (or, `here`, the group to this broker,
        which does not coordinate it), or NONE."""
        try:
            check_group_name(group)
        except BrokerError:
            return codes.INVALID_GROUP_ID
        if not self._access.permitted(operation, "group", group):
            return codes.GROUP_AUTHORIZATION_FAILED
        return codes.NOT_COORDINATOR if here and not self._cluster.coordinates(group) else codes.NONE

    async def find_coordinator(self, request: Answer, version: int, caller: Caller) -> Answer:
        keys = request["coordinator_keys"] if version >= 4 else [request["key"]]
        found = []
        for key in keys:
            answer = {"key": key, "node_id": -1, "host": "", "port": -1, "error_code": codes.NONE}
            if request["key_type"] == TRANSACTION_KEY:
                answer["error_code"] = codes.COORDINATOR_NOT_AVAILABLE
                answer["error_message"] = "this broker has no transactions yet"
            elif (refused := self._refusal(key, "describe", here=False)) != codes.NONE:
                answer["error_code"] = refused
            else:
                node = await self._cluster.coordinator(key)
                if isinstance(node, int):
                    answer["error_code"] = node
                else:
                    answer.update(node_id=node.node_id, host=node.host, port=node.port)
            found.append(answer)
        if version >= 4:
            return {"coordinators": found}
        return found[0]

    async def join_group(self, request: Answer, version: int, caller: Caller) -> Answer:
        refused = {"member_id": request["member_id"], "generation_id": -1, "leader": "", "protocol_name": None}
        if (code := self._refusal(request["group_id"], "consume")) != codes.NONE:
            return {**refused, "error_code": code}
        join = Join(
            group=request["group_id"],
            member_id=request["member_id"],
            client_id=caller.client_id,
            client_host=caller.host,
            session_timeout_ms=request["session_timeout_ms"],
            rebalance_timeout_ms=request["rebalance_timeout_ms"],
            protocol_type=request["protocol_type"],
            protocols=[(p["name"], p["metadata"]) for p in request["protocols"]],
            version=version,
        )
        try:
            return await self._groups.join(join)
        except GroupError as err:
            return {**refused, "error_code": err.code}

    async def sync_group(self, request: Answer, version: int, caller: Caller) -> Answer:
        if (code := self._refusal(request["group_id"], "consume")) != codes.NONE:
            return {"error_code": code, "assignment": b""}
        assignments = {a["member_id"]: a["assignment"] for a in request["assignments"]}
        try:
            return await self._groups.sync(
                request["group_id"], request["generation_id"], request["member_id"], assignments
            )
        except GroupError as err:
            return {"error_code": err.code, "assignment": b""}

    async def heartbeat(self, request: Answer, version: int, caller: Caller) -> Answer:
        if (code := self._refusal(request["group_id"], "consume")) != codes.NONE:
            return {"error_code": code}
        try:
            self._groups.heartbeat(request["group_id"], request["generation_id"], request["member_id"])
        except GroupError as err:
            return {"error_code": err.code}
        return {"error_code": codes.NONE}

    async def leave_group(self, request: Answer, version: int, caller: Caller) -> Answer:
        if (code := self._refusal(request["group_id"], "consume")) != codes.NONE:
            return {"error_code": code, "members": []}
        leaving = [m["member_id"] for m in request["members"]] if version >= 3 else [request["member_id"]]
        answers = []
        for member_id in leaving:
            try:
                self._groups.leave(request["group_id"], member_id)
                answers.append({"member_id": member_id, "group_instance_id": None, "error_code": codes.NONE})
            except GroupError as err:
                answers.append({"member_id": member_id, "group_instance_id": None, "error_code": err.code})
        top = answers[0]["error_code"] if version < 3 and answers else codes.NONE
        return {"error_code": top, "members": answers}

    async def offset_commit(self, request: Answer, version: int, caller: Caller) -> Answer:
        group = request["group_id"]
        code = self._refusal(group, "consume")
        if code == codes.NONE:
            try:
                self._groups.check_commit(group, request["generation_id_or_member_epoch"], request["member_id"])
            except GroupError as err:
                code = err.code
        entries: list[tuple[int, int, int]] = []
        topics = []
        for wanted in request["topics"]:
            topic = readable_topic(self._registry, self._access, wanted["name"], "consume")
            answers = []
            for asked in wanted["partitions"]:
                index, offset, error = asked["partition_index"], asked["committed_offset"], code
                if error != codes.NONE:
                    pass
                elif isinstance(topic, int):
                    error = topic
                elif not 0 <= index < len(topic.partitions):
                    error = codes.UNKNOWN_TOPIC_OR_PARTITION
                elif offset >= 0:  # (-1: no position to commit; Kafka's clients do not send it)
                    entries.append((topic.id, index, offset))
                answers.append({"partition_index": index, "error_code": error})
            topics.append({"name": wanted["name"], "partitions": answers})
        if entries:
            try:
                await self._offsets.reset(group, entries)
            except BrokerError as err:
                failed = codes.of(err)
                for topic_answer in topics:
                    for partition_answer in topic_answer["partitions"]:
                        if partition_answer["error_code"] == codes.NONE:
                            partition_answer["error_code"] = failed
        return {"throttle_time_ms": 0, "topics": topics}

    async def offset_fetch(self, request: Answer, version: int, caller: Caller) -> Answer:
        if version < 8:
            found = self._group_offsets(request["group_id"], request["topics"])
            if version < 2 and found["error_code"] != codes.NONE:  # v0-1 carry errors per partition only
                for topic in found["topics"]:
                    for partition in topic["partitions"]:
                        partition["error_code"] = found["error_code"]
            return {"throttle_time_ms": 0, **found}
        groups = [
            {"group_id": g["group_id"], **self._group_offsets(g["group_id"], g["topics"])} for g in request["groups"]
        ]
        return {"throttle_time_ms": 0, "groups": groups}

    def _group_offsets(self, group: str, wanted: list[Answer] | None) -> Answer:
        if (code := self._refusal(group, "describe")) != codes.NONE:
            return {"error_code": code, "topics": []}
        if wanted is None:  # every partition the group has an offset for, in topics the principal may see
            by_id = {t.id: t for t in self._registry.sorted() if self._access.permitted("describe", "topic", t.name)}
            committed: dict[str, list[int]] = {}
            for topic_id, partition in sorted(self._offsets.committed(group)):
                if topic_id in by_id:
                    committed.setdefault(by_id[topic_id].name, []).append(partition)
            wanted = [{"name": name, "partition_indexes": parts} for name, parts in committed.items()]
        topics = []
        for asked in wanted:
            topic = readable_topic(self._registry, self._access, asked["name"], "describe")
            answers = []
            for index in asked["partition_indexes"]:
                answer = {"partition_index": index, "committed_offset": -1, "metadata": "", "error_code": codes.NONE}
                if isinstance(topic, int):
                    answer["error_code"] = topic
                else:
                    offset = self._offsets.committed_offset(group, topic.id, index)
                    answer["committed_offset"] = -1 if offset is None else offset
                answers.append(answer)
            topics.append({"name": asked["name"], "partitions": answers})
        return {"error_code": codes.NONE, "topics": topics}
