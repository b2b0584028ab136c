"""The Admin service: topic create, delete, list, describe, alter."""

from __future__ import annotations

import grpc
import structlog

from tidelog.broker.api.rpc import Context, Rpc
from tidelog.broker.cluster.control import ControlPlane, etcd_unavailable
from tidelog.broker.cluster.metadata import NO_LEADER, elect
from tidelog.broker.errors import BrokerError, invalid_request, topic_not_found
from tidelog.broker.log import topic_config
from tidelog.broker.log.ops import AclsOp
from tidelog.broker.log.produce import check_partition
from tidelog.broker.log.service import Log
from tidelog.broker.log.topics import TopicState
from tidelog.broker.security import acls
from tidelog.broker.security.access import Access
from tidelog.broker.topic_admin import TopicAdmin
from tidelog.common.reasons import Reason
from tidelog.v1 import admin_pb2

log = structlog.get_logger("tidelog.admin")


_OUTCOMES = {
    "elected": admin_pb2.ELECTION_OUTCOME_ELECTED,
    "not_needed": admin_pb2.ELECTION_OUTCOME_NOT_NEEDED,
    "not_eligible": admin_pb2.ELECTION_OUTCOME_NOT_ELIGIBLE,
}


def topic_message(
    name: str, partitions: int, overrides: dict[str, str], broker_defaults: dict[str, str]
) -> admin_pb2.Topic:
    return admin_pb2.Topic(name=name, partitions=partitions, configs=topic_config.effective(overrides, broker_defaults))


def state_message(topic: TopicState) -> admin_pb2.Topic:
    return topic_message(topic.name, len(topic.partitions), topic.overrides, topic.broker_defaults)


class AdminService:
    def __init__(
        self,
        log_: Log,
        topics: TopicAdmin,
        rpc: Rpc,
        access: Access,
        control: ControlPlane | None = None,
        advertised: str = "",
    ) -> None:
        self._control = control
        self._advertised = advertised
        self._rpc = rpc
        self._access = access
        self._log = log_
        self._registry = log_.registry
        self._topics = topics

    def handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        return {
            "CreateTopic": self._rpc.unary("CreateTopic", admin_pb2.CreateTopicRequest, self.create_topic),
            "DeleteTopic": self._rpc.unary("DeleteTopic", admin_pb2.DeleteTopicRequest, self.delete_topic),
            "ListTopics": self._rpc.unary("ListTopics", admin_pb2.ListTopicsRequest, self.list_topics),
            "DescribeTopic": self._rpc.unary("DescribeTopic", admin_pb2.DescribeTopicRequest, self.describe_topic),
            "AlterTopicConfigs": self._rpc.unary(
                "AlterTopicConfigs", admin_pb2.AlterTopicConfigsRequest, self.alter_configs
            ),
            "CreateAcls": self._rpc.unary("CreateAcls", admin_pb2.CreateAclsRequest, self.create_acls),
            "DeleteAcls": self._rpc.unary("DeleteAcls", admin_pb2.DeleteAclsRequest, self.delete_acls),
            "ListAcls": self._rpc.unary("ListAcls", admin_pb2.ListAclsRequest, self.list_acls),
            "DescribeCluster": self._rpc.unary(
                "DescribeCluster", admin_pb2.DescribeClusterRequest, self.describe_cluster
            ),
            "ElectLeaders": self._rpc.unary("ElectLeaders", admin_pb2.ElectLeadersRequest, self.elect_leaders),
            "ReassignPartitions": self._rpc.unary(
                "ReassignPartitions", admin_pb2.ReassignPartitionsRequest, self.reassign_partitions
            ),
        }

    async def create_topic(self, request: admin_pb2.CreateTopicRequest, context: Context) -> admin_pb2.Topic:
        self._access.require("create", "topic", request.name)
        partitions = request.partitions if request.HasField("partitions") else None
        factor = request.replication_factor if request.HasField("replication_factor") else None
        record = await self._topics.create(request.name, partitions, factor, request.configs)
        return topic_message(record.name, record.partitions, record.configs, self._registry.broker_defaults)

    async def delete_topic(
        self, request: admin_pb2.DeleteTopicRequest, context: Context
    ) -> admin_pb2.DeleteTopicResponse:
        self._access.require("delete", "topic", request.name)
        await self._topics.delete(request.name)
        return admin_pb2.DeleteTopicResponse()

    async def list_topics(self, request: admin_pb2.ListTopicsRequest, context: Context) -> admin_pb2.ListTopicsResponse:
        self._access.require("describe", "cluster")
        return admin_pb2.ListTopicsResponse(topics=[state_message(t) for t in self._registry.sorted()])

    async def describe_topic(
        self, request: admin_pb2.DescribeTopicRequest, context: Context
    ) -> admin_pb2.DescribeTopicResponse:
        self._access.require("describe", "topic", request.name)
        topic = self._registry.get(request.name)
        response = admin_pb2.DescribeTopicResponse(
            topic=state_message(topic),
            partitions=[
                admin_pb2.PartitionInfo(
                    partition=p.partition,
                    log_start_offset=p.log_start_offset,
                    high_watermark=p.high_watermark,
                    size_bytes=p.size_bytes,
                )
                for p in topic.partitions
            ],
        )
        control = self._control
        for info in response.partitions:
            state = control.partition_state(topic.id, info.partition) if control is not None else None
            if state is not None:
                info.leader, info.leader_epoch = state.leader, state.leader_epoch
                info.replicas[:], info.isr[:] = state.replicas, state.isr
        return response

    async def alter_configs(self, request: admin_pb2.AlterTopicConfigsRequest, context: Context) -> admin_pb2.Topic:
        self._access.require("alter", "topic", request.name)
        await self._topics.alter_configs(request.name, request.configs)
        return state_message(self._registry.get(request.name))

    # -- ACLs ----------------------------------------------------------------------------

    def _acl_texts(self, request: admin_pb2.CreateAclsRequest | admin_pb2.DeleteAclsRequest) -> list[str]:
        self._access.require("alter", "cluster")
        if self._access.authorizer is None:
            raise BrokerError(Reason.ACLS_OFF, "this broker runs without ACLs: start it with --acls FILE to use them")
        texts = []
        for acl in request.acls:
            try:
                texts += [rule.text for rule in acls.parse(acl.rule, "the rule")]
            except ValueError as err:
                raise BrokerError(Reason.INVALID_ACL, str(err)) from None
        if not texts:
            raise invalid_request("give at least one rule, as `allow|deny PRINCIPAL OPERATION RESOURCE`")
        return texts

    def _set_stored_acls(self, stored: list[str]) -> None:
        if self._access.authorizer is not None:
            self._access.authorizer.set_added(stored)

    async def create_acls(self, request: admin_pb2.CreateAclsRequest, context: Context) -> admin_pb2.CreateAclsResponse:
        texts = self._acl_texts(request)
        _, stored = await self._log.submit(AclsOp(texts))
        self._set_stored_acls(stored)
        log.info("acls_added", rules=texts)
        return admin_pb2.CreateAclsResponse()

    async def delete_acls(self, request: admin_pb2.DeleteAclsRequest, context: Context) -> admin_pb2.DeleteAclsResponse:
        texts = self._acl_texts(request)
        deleted, stored = await self._log.submit(AclsOp(texts, remove=True))
        self._set_stored_acls(stored)
        log.info("acls_removed", rules=texts, deleted=deleted)
        return admin_pb2.DeleteAclsResponse(deleted=deleted)

    async def list_acls(self, request: admin_pb2.ListAclsRequest, context: Context) -> admin_pb2.ListAclsResponse:
        self._access.require("describe", "cluster")
        authorizer = self._access.authorizer
        if authorizer is None:
            return admin_pb2.ListAclsResponse()
        return admin_pb2.ListAclsResponse(
            acls=[admin_pb2.Acl(rule=r.text, source="file") for r in authorizer.file_rules]
            + [admin_pb2.Acl(rule=r.text, source="added") for r in authorizer.added_rules]
        )

    # -- the cluster ---------------------------------------------------------------------

    async def describe_cluster(
        self, request: admin_pb2.DescribeClusterRequest, context: Context
    ) -> admin_pb2.DescribeClusterResponse:
        self._access.require("describe", "cluster")
        control = self._control
        if control is None:
            return admin_pb2.DescribeClusterResponse(
                brokers=[admin_pb2.ClusterBroker(id=0, address=self._advertised)], controller_id=0
            )
        names = {spec.id: name for name, spec in control.topics().items()}
        controller = control.controller_id()
        response = admin_pb2.DescribeClusterResponse(
            brokers=[admin_pb2.ClusterBroker(id=i, address=a) for i, a in sorted(control.brokers().items())],
            controller_id=controller if controller is not None else -1,
        )
        moving = control.reassignments_by_id()
        for (topic_id, partition), state in sorted(control.partitions_by_id().items()):
            if topic_id not in names:
                continue
            entry = admin_pb2.ClusterPartition(
                topic=names[topic_id],
                partition=partition,
                leader=state.leader,
                replicas=state.replicas,
                isr=state.isr,
                target_replicas=moving.get((topic_id, partition), ()),
            )
            if state.leader == NO_LEADER:
                response.offline.append(entry)
            elif len(state.isr) < len(state.replicas):
                response.under_replicated.append(entry)
            if (topic_id, partition) in moving:
                response.reassigning.append(entry)
        return response

    async def elect_leaders(
        self, request: admin_pb2.ElectLeadersRequest, context: Context
    ) -> admin_pb2.ElectLeadersResponse:
        self._access.require("alter", "cluster")
        topic = self._registry.get(request.topic)
        numbers = list(request.partitions) or range(len(topic.partitions))
        for number in numbers:
            check_partition(topic, number)
        control = self._control
        if control is None:  # a single broker leads everything
            return admin_pb2.ElectLeadersResponse(
                results=[
                    admin_pb2.ElectionResult(
                        partition=n, outcome=admin_pb2.ELECTION_OUTCOME_NOT_NEEDED, leader=0, detail="a single broker"
                    )
                    for n in numbers
                ]
            )
        unclean = request.type == admin_pb2.ELECTION_TYPE_UNCLEAN
        live = set(control.brokers())
        response = admin_pb2.ElectLeadersResponse()
        for number in numbers:
            state = control.partition_state(topic.id, number)
            if state is None:
                continue
            election = elect(state, live, unclean)
            outcome, detail, now = election.outcome, election.detail, state
            if election.state is not None:
                with etcd_unavailable(f"{topic.name}/{number}: no leader elected"):
                    written = await control.alter_partition(topic.id, number, state, election.state)
                if written is None:
                    outcome, detail = "not_eligible", "its state changed meanwhile (another election?): try again"
                else:
                    now = election.state
                    log.warning(
                        "leader_elected", topic=topic.name, partition=number, leader=now.leader, unclean=unclean
                    )
            response.results.append(
                admin_pb2.ElectionResult(
                    partition=number,
                    outcome=_OUTCOMES[outcome],
                    leader=now.leader,
                    leader_epoch=now.leader_epoch,
                    detail=detail,
                )
            )
        return response

    async def reassign_partitions(
        self, request: admin_pb2.ReassignPartitionsRequest, context: Context
    ) -> admin_pb2.ReassignPartitionsResponse:
        self._access.require("alter", "cluster")
        topic = self._registry.get(request.topic)
        control = self._control
        if control is None:
            raise BrokerError(
                Reason.UNSUPPORTED_IN_CLUSTER, "a single broker holds every partition: there is nowhere to move it"
            )
        if not request.partitions:
            raise invalid_request("name at least one partition and its new replicas")
        live = control.brokers()
        for move in request.partitions:
            check_partition(topic, move.partition)
            target = tuple(move.replicas)
            unknown = [b for b in target if b not in live]
            if not target or len(set(target)) != len(target) or unknown:
                raise BrokerError(
                    Reason.INVALID_REPLICATION_FACTOR,
                    f"{topic.name}/{move.partition}: replicas {list(target)} must be distinct live brokers "
                    f"(live: {sorted(live)}{'; not live: ' + str(unknown) if unknown else ''})",
                    topic=topic.name,
                    partition=move.partition,
                )
        for move in request.partitions:
            with etcd_unavailable(f"{topic.name}/{move.partition} is not moved"):
                if not await control.reassign(topic.id, move.partition, tuple(move.replicas)):
                    raise topic_not_found(topic.name)  # deleted meanwhile
            log.info("reassignment_started", topic=topic.name, partition=move.partition, replicas=list(move.replicas))
        return admin_pb2.ReassignPartitionsResponse()
