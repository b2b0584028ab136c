"""Summaries: medians with min-max over runs, latency percentiles, CPU per record."""

from __future__ import annotations

import os
import resource
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

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
    return {"p50_ms": q[499] / 1000, "p99_ms": q[989] / 1000, "p999_ms": q[998] / 1000, "records": len(latencies_us)}


def throughput_figures(records: int, payload_bytes: int, seconds: float) -> Figures:
    return {"records_per_s": records / seconds, "mb_per_s": payload_bytes / seconds / 1e6, "records": records}


def format_number(value: float) -> str:
    """A figure as printed: thousands separated, two decimals below 100."""
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:,.2f}"


def cpu_seconds(pids: Sequence[int]) -> tuple[float, float]:
    """(this process and its finished children, the processes `pids`): CPU seconds used so far, user
    and system (Linux /proc for the others; a process that is gone counts 0)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    client = own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
    ticks = os.sysconf("SC_CLK_TCK")
    others = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        others += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime: the stat file's 14th and 15th
    return client, others


def cpu_figures(before: tuple[float, float], after: tuple[float, float], records: int, brokers: bool) -> Figures:
    """CPU milliseconds per 1,000 records, the clients' (this process and its children) and the brokers'."""
    if records <= 0:
        return {}
    out = {"client_cpu_ms_per_1k": (after[0] - before[0]) * 1e6 / records}
    if brokers:
        out["broker_cpu_ms_per_1k"] = (after[1] - before[1]) * 1e6 / records
    return out
