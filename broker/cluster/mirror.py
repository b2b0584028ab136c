"""Every cluster topic in this broker's own store too, under the cluster's topic id: the registry and
the log then serve a cluster topic as they serve a local one (the partitions this broker replicates
hold data; the others stay empty)."""

from __future__ import annotations

import asyncio

import structlog

from tidelog.broker.cluster.control import ControlPlane
from tidelog.broker.errors import BrokerError
from tidelog.broker.log.ops import CreateTopicOp
from tidelog.broker.log.service import Log

log = structlog.get_logger("tidelog.cluster.mirror")


class TopicMirror:
    def __init__(self, control: ControlPlane, log_: Log) -> None:
        self._control = control
        self._log = log_
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            seen = self._control.cache.version
            await self.catch_up()
            await self._control.cache.changed_since(seen)

    async def catch_up(self) -> None:
        """Create here every cluster topic this broker does not have yet."""
        registry = self._log.registry
        for name, spec in self._control.topics().items():
            if name in registry:
                continue
            op = CreateTopicOp(registry, name, spec.partitions, spec.configs, topic_id=spec.id, if_absent=True)
            try:
                await self._log.submit(op)
                log.info("topic_mirrored", topic=name, topic_id=spec.id, partitions=spec.partitions)
            except BrokerError as err:
                log.warning("topic_mirror_failed", topic=name, reason=err.reason, error=err.message)
