"""Summaries: medians with min-max over runs, latency percentiles."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

Figures = dict[str, float]


@dataclass(frozen=True)
class Summary:
    median: float
    low: float
    high: float

    def format(self) -> str:
        if self.low == self.high:
            return format_number(self.median)
        return f"{format_number(self.median)} ({format_number(self.low)}-{format_number(self.high)})"


def summarize(runs: Sequence[Figures]) -> dict[str, Summary]:
    """Per figure, the median and range over runs (figures every run has)."""
    keys = [key for key in runs[0] if all(key in run for run in runs)]
    return {
        key: Summary(statistics.median(r[key] for r in runs), min(r[key] for r in runs), max(r[key] for r in runs))
        for key in keys
    }


def latency_figures(latencies_us: Sequence[float]) -> Figures:
    """p50, p99 and p99.9 in milliseconds."""
    if len(latencies_us) < 2:
        raise ValueError("need at least two latency samples")
    q = statistics.quantiles(latencies_us, n=1000, method="inclusive")
    return {"p50_ms": q[499] / 1000, "p99_ms": q[989] / 1000, "p999_ms": q[998] / 1000}


def throughput_figures(records: int, payload_bytes: int, seconds: float) -> Figures:
    return {"records_per_s": records / seconds, "mb_per_s": payload_bytes / seconds / 1e6, "records": records}


def format_number(value: float) -> str:
    """A figure as printed: thousands separated, two decimals below 100."""
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:,.2f}"
