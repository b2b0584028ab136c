"""A part's own background task on the event loop, started and stopped with the part."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


class Background:
    """Holds one task: `start(coro)` runs it, `await stop()` cancels it and waits until it has ended."""

    __slots__ = ("_task",)

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    def start(self, coro: Coroutine[Any, Any, None]) -> None:
        self._task = asyncio.create_task(coro)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
