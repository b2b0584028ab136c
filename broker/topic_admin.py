"""Creating, deleting and reconfiguring topics, on one broker or across the cluster: what the gRPC
Admin service and the Kafka listener's CreateTopics and DeleteTopics share. Callers check ACLs first."""

from __future__ import annotations

from collections.abc import Mapping

import structlog

from tidelog.broker.cluster.control import ControlPlane, TopicExists, TopicMissing, etcd_unavailable
from tidelog.broker.cluster.mirror import TopicMirror
from tidelog.broker.config import Settings
from tidelog.broker.errors import BrokerError, topic_not_found
from tidelog.broker.log import topic_config
from tidelog.broker.log.ops import AlterTopicConfigsOp, CreateTopicOp, DeleteTopicOp
from tidelog.broker.log.purge import TopicPurger
from tidelog.broker.log.service import Log
from tidelog.broker.log.topics import TopicRecord
from tidelog.broker.names import check_topic_name
from tidelog.common.reasons import Reason

log = structlog.get_logger("tidelog.admin")


class TopicAdmin:
    def __init__(
        self,
        settings: Settings,
        log_: Log,
        purger: TopicPurger,
        control: ControlPlane | None = None,
        mirror: TopicMirror | None = None,
    ) -> None:
        self._settings = settings
        self._log = log_
        self._registry = log_.registry
        self._purger = purger
        self._control = control
        self._mirror = mirror  # with `control`: this broker's copies of the cluster's topics

    def check_new(
        self, name: str, partitions: int | None, factor: int | None, configs: Mapping[str, str]
    ) -> tuple[int, int, dict[str, str]]:
        """A new topic's partitions, replication factor and configs, checked (BrokerError if not fit)."""
        check_topic_name(name)
        partitions = 1 if partitions is None else partitions
        limit = self._settings.max_partitions
        if not 1 <= partitions <= limit:
            raise BrokerError(
                Reason.INVALID_PARTITIONS, f"partitions must be between 1 and {limit}, got {partitions}", topic=name
            )
        checked = topic_config.validate(dict(configs))
        factor = self._settings.default_replication_factor if factor is None else factor
        if self._control is None and factor != 1:
            raise BrokerError(
                Reason.INVALID_REPLICATION_FACTOR,
                f"replication factor {factor}: a single broker holds one copy (start brokers with --cluster)",
            )
        return partitions, factor, topic_config.with_min_insync_replicas(checked, factor)

    async def create(
        self, name: str, partitions: int | None, factor: int | None, configs: Mapping[str, str]
    ) -> TopicRecord:
        """A broker's own topic; in a cluster, the cluster's (placed over the live brokers), then here."""
        count, factor, checked = self.check_new(name, partitions, factor, configs)
        control = self._control
        if control is None:
            record: TopicRecord = await self._log.submit(CreateTopicOp(self._registry, name, count, checked))
        else:
            try:
                with etcd_unavailable(f"topic {name!r} is not created"):
                    spec = await control.create_topic(name, count, factor, checked)
            except TopicExists:
                raise BrokerError(Reason.TOPIC_EXISTS, f"topic {name!r} already exists", topic=name) from None
            except ValueError as err:
                raise BrokerError(Reason.INVALID_REPLICATION_FACTOR, str(err)) from None
            op = CreateTopicOp(self._registry, name, count, checked, topic_id=spec.id, if_absent=True)
            record = await self._log.submit(op)
        log.info("topic_created", topic=record.name, partitions=count, configs=checked)
        return record

    def replication_factor(self, name: str) -> int:
        """A topic's replication factor (a single broker's topics have one copy)."""
        spec = self._control.topics().get(name) if self._control is not None else None
        return spec.replication_factor if spec is not None else 1

    async def delete(self, name: str) -> None:
        self._registry.get(name)
        if self._control is not None and self._mirror is not None:  # the cluster's topic, then this copy
            with etcd_unavailable(f"topic {name!r} is not deleted"):
                try:
                    spec = await self._control.delete_topic(name)
                except TopicMissing:
                    raise topic_not_found(name) from None
            await self._mirror.drop(name, spec.id)
            log.info("topic_deleted", topic=name, topic_id=spec.id)
            return
        record: TopicRecord = await self._log.submit(DeleteTopicOp(self._registry, name))
        log.info("topic_deleted", topic=record.name, topic_id=record.id)
        self._purger.start(record.id)

    async def alter_configs(self, name: str, configs: Mapping[str, str]) -> None:
        self._registry.get(name)
        checked = topic_config.validate(dict(configs))
        if "min.insync.replicas" in checked:
            topic_config.with_min_insync_replicas(checked, self.replication_factor(name))
        if self._control is not None and self._mirror is not None:  # the cluster's topic, then this copy
            with etcd_unavailable(f"the configs of topic {name!r} are not changed"):
                try:
                    altered = await self._control.alter_topic_configs(name, checked)
                except TopicMissing:
                    raise topic_not_found(name) from None
            await self._mirror.apply_configs(altered)
        else:
            await self._log.submit(AlterTopicConfigsOp(self._registry, name, checked))
        log.info("topic_configs_altered", topic=name, configs=checked)
