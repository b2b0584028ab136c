"""Wake-ups on the event loop: things that change (a partition, a group member) and waiters on them.

A waiter is one future, resolved straight by the change, so a woken coroutine runs in the very
next loop iteration; no task per waiter as asyncio.wait_for would make. One future can wait on
several sources at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable


class Changes:
    """Something waiters can wait on; `wake()` resolves every waiter registered so far."""

    __slots__ = ("_waiters",)

    def __init__(self) -> None:
        self._waiters: dict[asyncio.Future[bool], None] = {}  # ordered, O(1) removal

    def wake(self) -> None:
        waiters, self._waiters = self._waiters, {}
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(True)

    async def wait_for_change(self, timeout_s: float) -> bool:
        """Wait for the next wake(): True if it came, False if timeout_s passed first."""
        return await wait_any((self,), timeout_s)


async def wait_any(sources: Iterable[Changes], timeout_s: float) -> bool:
    """Wait for a wake() of any of `sources`: True if one came, False if timeout_s passed first."""
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[bool] = loop.create_future()
    sources = tuple(sources)
    for source in sources:
        source._waiters[waiter] = None
    timer = loop.call_later(timeout_s, _time_out, waiter)
    try:
        return await waiter
    finally:
        timer.cancel()
        for source in sources:
            source._waiters.pop(waiter, None)  # timed out, cancelled, or woken by another source


def _time_out(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)
