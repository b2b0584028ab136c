"""The latency-throughput curve of `tidelog bench --rates ... --plot FILE.png` (matplotlib, a bench extra)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tidelog.bench.stats import Figures, summarize

Results = dict[str, dict[str, list[Figures]]]
_PERCENTILES = (("p50_ms", "p50", "-"), ("p99_ms", "p99", "--"), ("p999_ms", "p99.9", ":"))


def latency_curve(results: Results, rates: Sequence[float], path: Path, title: str) -> None:
    """p50, p99 and p99.9 end-to-end latency against the offered rate, one colour per system."""
    import matplotlib

    matplotlib.use("Agg")  # a file, no display
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(9, 5.5))
    colours: Any = plt.get_cmap("tab10")
    for index, (system, modes) in enumerate(results.items()):
        points = [(rate, summarize(modes[f"e2e@{rate:g}"])) for rate in rates if f"e2e@{rate:g}" in modes]
        if not points:
            continue
        for key, label, style in _PERCENTILES:
            xs = [rate for rate, s in points if key in s]
            ys = [s[key].median for _, s in points if key in s]
            axes.plot(xs, ys, style, marker="o", color=colours(index), label=f"{system} {label}")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("offered rate (records/s)")
    axes.set_ylabel("end-to-end latency (ms), median of runs")
    axes.set_title(title, fontsize=7, loc="left", wrap=True)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
