"""Judge a produce/consume history: what was lost, duplicated, reordered, unexpected or half-written.

Pure functions over plain data, so hand-made histories test them (tests/unit/test_history.py) and the
crash harness (scripts/crash_harness.py) uses them on real ones. Values identify records: every
value a history sends is unique.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Request:
    """One produce request: its records in send order, and whether the broker acknowledged it."""

    partition: int
    values: tuple[bytes, ...]
    acknowledged: bool


@dataclass
class Verdict:
    acknowledged: int = 0  # records the broker acknowledged
    found: int = 0  # records read back
    lost: list[bytes] = field(default_factory=list)  # acknowledged, not read back
    duplicated: list[bytes] = field(default_factory=list)  # read back more than once
    reordered: list[bytes] = field(default_factory=list)  # read before a record sent (and acknowledged) earlier
    unexpected: list[bytes] = field(default_factory=list)  # read back, never sent (or sent to another partition)
    partial: list[tuple[int, int, int]] = field(default_factory=list)  # (partition, present, of) failed requests

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.reordered or self.unexpected or self.partial)

    def summary(self) -> str:
        return (
            f"acknowledged {self.acknowledged}, found {self.found}, lost {len(self.lost)}, duplicated "
            f"{len(self.duplicated)}, reordered {len(self.reordered)}, unexpected {len(self.unexpected)}, "
            f"half-written requests {len(self.partial)}"
        )


def judge(requests: Sequence[Request], read: Mapping[int, Sequence[bytes]]) -> Verdict:
    """`requests` in send order (per partition); `read`: each partition's values in offset order."""
    verdict = Verdict()
    sent_to: dict[bytes, int] = {}
    for request in requests:
        for value in request.values:
            sent_to[value] = request.partition
        if request.acknowledged:
            verdict.acknowledged += len(request.values)
    position: dict[tuple[int, bytes], int] = {}  # where each value was first read, per partition
    for partition, values in read.items():
        verdict.found += len(values)
        counts = Counter(values)
        verdict.duplicated += [v for v, n in counts.items() if n > 1]
        verdict.unexpected += [v for v in counts if sent_to.get(v) != partition]
        for index, value in enumerate(values):
            position.setdefault((partition, value), index)
    latest: dict[int, int] = {}  # per partition: the read position of the latest acknowledged record so far
    for request in requests:
        p = request.partition
        present = [v for v in request.values if (p, v) in position]
        if request.acknowledged:
            verdict.lost += [v for v in request.values if (p, v) not in position]
            for value in present:
                if position[(p, value)] < latest.get(p, -1):
                    verdict.reordered.append(value)
                latest[p] = max(latest.get(p, -1), position[(p, value)])
        elif present and len(present) != len(request.values):
            verdict.partial.append((request.partition, len(present), len(request.values)))
    return verdict
