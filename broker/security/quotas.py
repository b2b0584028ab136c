"""Quotas: produce and consume bytes per second per principal. Over quota the broker delays its
answer (throttles) rather than failing it, like Kafka, and reports the delay.

Quota file (--quotas), one line per principal, `*` for everyone without a line of their own:

    # principal  produce-bytes/s  consume-bytes/s   (-1: no limit)
    *            10485760         20971520
    batch-loader 104857600        -1
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

log = structlog.get_logger("tidelog.quotas")

# A burst of up to this many seconds' worth of quota passes at once.
BURST_S = 1.0


@dataclass(frozen=True)
class Limit:
    produce: float  # bytes/s; < 0: none
    consume: float


def parse(text: str, source: str = "quota file") -> dict[str, Limit]:
    limits: dict[str, Limit] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        try:
            principal, produce, consume = parts[0], int(parts[1]), int(parts[2])
            if len(parts) != 3 or produce < -1 or consume < -1 or produce == 0 or consume == 0:
                raise ValueError
        except (IndexError, ValueError):
            raise ValueError(
                f"{source}:{number}: expected `principal produce-bytes/s consume-bytes/s` (positive, or -1 for none)"
            ) from None
        limits[principal] = Limit(produce, consume)
    return limits


class _Bucket:
    """A token bucket that may go into debt: the debt, over the rate, is how long to wait."""

    def __init__(self, rate: float, clock: Callable[[], float]) -> None:
        self.rate = rate
        self.clock = clock
        self.tokens = rate * BURST_S
        self.updated = clock()

    def take(self, amount: int) -> float:
        now = self.clock()
        self.tokens = min(self.rate * BURST_S, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        self.tokens -= amount
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


class Quotas:
    def __init__(self, path: Path, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self._clock = clock
        self._limits: dict[str, Limit] = {}
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self.reload()

    def reload(self) -> None:
        self._limits = parse(self.path.read_text(), str(self.path))
        self._buckets = {}
        log.info("quotas_loaded", path=str(self.path), principals=len(self._limits))

    def delay(self, principal: str, direction: str, size: int) -> float:
        """Seconds to hold the answer to `principal` after it moved `size` bytes ("produce"/"consume")."""
        limit = self._limits.get(principal) or self._limits.get("*")
        rate = (limit.produce if direction == "produce" else limit.consume) if limit else -1
        if rate < 0:
            return 0.0
        bucket = self._buckets.get((principal, direction))
        if bucket is None or bucket.rate != rate:
            bucket = self._buckets[(principal, direction)] = _Bucket(rate, self._clock)
        return bucket.take(size)
