"""What the console's charts draw: records/s per topic and lag per group over the last minutes.

Sampled on the event loop from the broker's own counters and state (no Prometheus needed) and kept
in memory for a window. The samples hold every topic and group; what a viewer is shown of them is
filtered by what their token may list, at request time.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import Counter

from tidelog.broker.background import Background
from tidelog.broker.groups.offsets import OffsetStore
from tidelog.broker.log.topics import TopicRegistry
from tidelog.broker.metrics import Metrics, group_lags

SAMPLE_EVERY_S = 2.0
WINDOW_S = 600.0


@dataclass(frozen=True, slots=True)
class Sample:
    at: float  # Unix seconds
    produced: dict[str, float]  # topic -> records appended since the broker started
    fetched: dict[str, float]  # topic -> records sent to readers since the broker started
    lag: dict[str, int]  # group -> records behind, over its committed partitions


def _per_topic(counter: Counter) -> dict[str, float]:
    return {
        sample.labels["topic"]: sample.value
        for family in counter.collect()
        for sample in family.samples
        if sample.name.endswith("_total")
    }


class Samples:
    """A ring of the latest samples; `topic_rates()` and `group_lag()` turn it into series."""

    def __init__(self, size: int) -> None:
        self._samples: collections.deque[Sample] = collections.deque(maxlen=max(2, size))

    def add(self, sample: Sample) -> None:
        self._samples.append(sample)

    def _pairs(self) -> Iterator[tuple[Sample, Sample]]:
        return itertools.pairwise(list(self._samples))

    def topic_rates(self, topics: set[str]) -> dict[str, list[tuple[float, float, float]]]:
        """topic -> [(at, records/s in, records/s out)] over the window."""
        out: dict[str, list[tuple[float, float, float]]] = {name: [] for name in topics}
        for before, after in self._pairs():
            span = after.at - before.at
            if span <= 0:
                continue
            for name in topics:
                rate_in = (after.produced.get(name, 0.0) - before.produced.get(name, 0.0)) / span
                rate_out = (after.fetched.get(name, 0.0) - before.fetched.get(name, 0.0)) / span
                out[name].append((after.at, max(0.0, rate_in), max(0.0, rate_out)))
        return out

    def group_lag(self, groups: set[str]) -> dict[str, list[tuple[float, int]]]:
        """group -> [(at, total lag)] over the window (only samples where the group had offsets)."""
        out: dict[str, list[tuple[float, int]]] = {name: [] for name in groups}
        for sample in self._samples:
            for name in groups:
                if name in sample.lag:
                    out[name].append((sample.at, sample.lag[name]))
        return out


class History(Samples):
    """Samples taken every `every_s` on the event loop, from the broker's counters and group offsets."""

    def __init__(
        self,
        metrics: Metrics,
        registry: TopicRegistry,
        offsets: OffsetStore,
        holds: Callable[[int, int], bool],
        every_s: float = SAMPLE_EVERY_S,
        window_s: float = WINDOW_S,
    ) -> None:
        super().__init__(int(window_s / every_s))
        self._metrics = metrics
        self._registry = registry
        self._offsets = offsets
        self._holds = holds
        self._every_s = every_s
        self._background = Background()

    def start(self) -> None:
        self.sample()
        self._background.start(self._run())

    async def stop(self) -> None:
        await self._background.stop()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._every_s)
            self.sample()

    def sample(self) -> None:
        by_id = {topic.id: topic for topic in self._registry.sorted()}
        lag: dict[str, int] = {}
        for group, _, _, behind in group_lags(by_id, self._offsets, self._holds):
            lag[group] = lag.get(group, 0) + behind
        produced, fetched = _per_topic(self._metrics.produced_records), _per_topic(self._metrics.fetched_records)
        self.add(Sample(time.time(), produced, fetched, lag))
