"""Every cluster topic in this broker's own store too, under the cluster's topic id: the registry and
the log then serve a cluster topic as they serve a local one (the partitions this broker replicates
hold data; the others stay empty). The mirror follows the cluster's topics: it creates those this
broker lacks, applies their configs, and deletes (then purges) its copy of every topic whose id has
a tombstone, so a broker that was down while a topic was deleted drops it when it returns."""

from __future__ import annotations

from collections.abc import Awaitable

import structlog

from tidelog.broker.background import Background
from tidelog.broker.cluster.control import ControlPlane
from tidelog.broker.cluster.metadata import TopicSpec
from tidelog.broker.errors import BrokerError
from tidelog.broker.log.ops import AlterTopicConfigsOp, CreateTopicOp, DeleteTopicOp
from tidelog.broker.log.purge import TopicPurger
from tidelog.broker.log.service import Log
from tidelog.common.reasons import Reason

log = structlog.get_logger("tidelog.cluster.mirror")


class TopicMirror:
    def __init__(self, control: ControlPlane, log_: Log, purger: TopicPurger) -> None:
        self._control = control
        self._log = log_
        self._purger = purger
        self._background = Background()

    def start(self) -> None:
        self._background.start(self._run())

    async def stop(self) -> None:
        await self._background.stop()

    async def _run(self) -> None:
        while True:
            seen = self._control.cache.version
            await self.catch_up()
            await self._control.cache.changed_since(seen)

    async def catch_up(self) -> None:
        """Drop the tombstoned topics, then create or update every cluster topic here."""
        registry = self._log.registry
        deleted = self._control.deleted_topic_ids()
        for topic in registry.sorted():
            if topic.id in deleted:
                await self._quietly(self.drop(topic.name, topic.id), topic.name)
        for name, spec in self._control.topics().items():
            if name not in registry:
                op = CreateTopicOp(registry, name, spec.partitions, spec.configs, topic_id=spec.id, if_absent=True)
                if await self._quietly(self._log.submit(op), name):
                    log.info("topic_mirrored", topic=name, topic_id=spec.id, partitions=spec.partitions)
            elif registry.get(name).id == spec.id:
                await self._quietly(self.apply_configs(spec), name)

    async def drop(self, name: str, topic_id: int) -> None:
        """Delete this broker's copy of topic `topic_id` (if it still has it) and purge its records."""
        registry = self._log.registry
        if name not in registry or registry.get(name).id != topic_id:
            return
        try:
            await self._log.submit(DeleteTopicOp(registry, name))
        except BrokerError as err:
            if err.reason == Reason.TOPIC_NOT_FOUND:  # dropped meanwhile (the admin call and the mirror)
                return
            raise
        self._purger.start(topic_id)
        log.info("topic_dropped", topic=name, topic_id=topic_id)

    async def apply_configs(self, spec: TopicSpec) -> None:
        """Give this broker's copy the cluster's configs of the topic."""
        registry = self._log.registry
        if spec.name not in registry or registry.get(spec.name).id != spec.id:
            return
        local = registry.get(spec.name).overrides
        changed = {key: value for key, value in spec.configs.items() if local.get(key) != value}
        if changed:
            await self._log.submit(AlterTopicConfigsOp(registry, spec.name, changed))
            log.info("topic_configs_mirrored", topic=spec.name, configs=changed)

    @staticmethod
    async def _quietly(work: Awaitable[object], name: str) -> bool:
        """Await `work`; a refusal is logged (the next change of the metadata tries again)."""
        try:
            await work
        except BrokerError as err:
            log.warning("topic_mirror_failed", topic=name, reason=err.reason, error=err.message)
            return False
        return True
