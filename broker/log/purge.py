"""The purge of a deleted topic's data, in the background, in small writer ops (the writer stays responsive)."""

from __future__ import annotations

import asyncio

import structlog

from tidelog.broker.errors import BrokerError
from tidelog.broker.log.ops import PurgeTopicOp
from tidelog.broker.log.service import Log
from tidelog.common.reasons import Reason

log = structlog.get_logger("tidelog.purge")

# A purge the disk or map refused tries again, backing off to this.
PURGE_RETRY_MAX_S = 10.0


class TopicPurger:
    """Deletes a deleted topic's records in the background, in small writer ops."""

    def __init__(self, log_: Log) -> None:
        self._log = log_
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, topic_id: int) -> None:
        task = asyncio.create_task(self._purge(topic_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _purge(self, topic_id: int) -> None:
        failures = 0
        while True:
            try:
                if await self._log.submit(PurgeTopicOp(topic_id)):
                    break
                failures = 0
            except BrokerError as err:
                if err.reason == Reason.SHUTTING_DOWN:
                    return  # carried on at the next start
                failures += 1
                delay = min(PURGE_RETRY_MAX_S, 0.1 * 2**failures)
                log.warning("topic_purge_paused", topic_id=topic_id, reason=err.reason, retry_in_s=delay)
                await asyncio.sleep(delay)
        log.info("topic_purged", topic_id=topic_id)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
