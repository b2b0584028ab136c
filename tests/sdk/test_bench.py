"""Smoke tests: every benchmark mode runs briefly and reports its figures (never timing assertions)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.harness import BrokerProcess
from tidelog.bench.run import main, ratio_rows


def bench_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    assert main([*args, "--json", "--runs", "1"]) == 0
    report: dict[str, Any] = json.loads(capsys.readouterr().out)
    return report


def test_every_mode_reports_its_figures(broker: BrokerProcess, capsys: pytest.CaptureFixture[str]) -> None:
    report = bench_json(
        capsys,
        "--bootstrap", broker.address,
        "--mode", "produce,consume,e2e,fanout",
        "--records", "3000", "--rate", "1000", "--seconds", "0.3", "--subscribers", "3", "--partitions", "2",
    )  # fmt: skip
    figures = report["median"]["tidelog"]
    assert figures["produce"]["records"] == 3000
    assert figures["consume"]["records"] == 3001  # and the warm-up record
    assert figures["fanout"]["records"] == 3 * 3001
    assert 0 < figures["e2e"]["p50_ms"] <= figures["e2e"]["p99_ms"] <= figures["e2e"]["p999_ms"]
    assert figures["produce"]["records_per_s"] > 0 and figures["consume"]["mb_per_s"] > 0


def test_keys_duration_and_producer_processes(broker: BrokerProcess, capsys: pytest.CaptureFixture[str]) -> None:
    keyed = bench_json(capsys, "--bootstrap", broker.address, "--mode", "produce", "--duration", "0.2", "--keys")
    assert keyed["median"]["tidelog"]["produce"]["records"] >= 1000
    two = bench_json(
        capsys, "--bootstrap", broker.address, "--mode", "produce", "--records", "2000", "--producers", "2"
    )
    assert two["median"]["tidelog"]["produce"]["records"] == 2000
    grouped = bench_json(capsys, "--bootstrap", broker.address, "--mode", "consume", "--records", "2000", "--group")
    assert grouped["median"]["tidelog"]["consume"]["records"] >= 2000
    one_by_one = bench_json(
        capsys, "--bootstrap", broker.address, "--mode", "consume", "--records", "2000", "--per-record"
    )
    assert one_by_one["median"]["tidelog"]["consume"]["records"] >= 2000


def test_the_table_and_bad_options(broker: BrokerProcess, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--bootstrap", broker.address, "--mode", "consume", "--records", "500", "--runs", "2"]) == 0
    out = capsys.readouterr().out
    assert "tidelog bench: 500 records of 100 B" in out and "consume" in out
    with pytest.raises(SystemExit, match="--mode takes"):
        main(["--mode", "everything"])


def test_advantage_ratios_favour_tidelog_above_one() -> None:
    results = {
        "tidelog": {"produce": [{"records_per_s": 300.0}], "e2e": [{"p50_ms": 1.0, "p99_ms": 2.0}]},
        "peer": {"produce": [{"records_per_s": 100.0}], "e2e": [{"p50_ms": 2.0, "p99_ms": 1.0}]},
    }
    assert ratio_rows(results) == [
        ("peer", "produce", "records_per_s", 3.0),
        ("peer", "e2e", "p50_ms", 2.0),
        ("peer", "e2e", "p99_ms", 0.5),
    ]


def test_compression_reports_the_wire_and_the_disk(broker: BrokerProcess, capsys: pytest.CaptureFixture[str]) -> None:
    figures = {}
    for codec in ("none", "zstd"):
        report = bench_json(
            capsys, "--bootstrap", broker.address, "--mode", "produce,consume", "--records", "3000",
            "--compression", codec, "--send-many", "500",
        )  # fmt: skip
        figures[codec] = report["median"]["tidelog"]
        assert figures[codec]["consume"]["records"] == 3001
    # Compressible values take less room than their payload once compressed (not so without a codec).
    zstd = figures["zstd"]["produce"]
    assert zstd["disk_mb"] < 3000 * 100 / 1e6 / 2 < figures["none"]["produce"]["disk_mb"]
    assert zstd["wire_mb_per_s"] < zstd["mb_per_s"]


def test_every_mode_reports_cpu_per_record(capsys: pytest.CaptureFixture[str]) -> None:
    report = bench_json(
        capsys, "--mode", "produce,consume,e2e", "--records", "2000", "--rate", "500", "--seconds", "0.2"
    )
    for mode in ("produce", "consume", "e2e"):
        figures = report["median"]["tidelog"][mode]
        # The broker's share is read in clock ticks (10 ms): a short run may use less than one.
        assert figures["client_cpu_ms_per_1k"] > 0 and figures["broker_cpu_ms_per_1k"] >= 0, mode


def test_a_latency_curve_over_rates_and_its_plot(
    broker: BrokerProcess, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pytest.importorskip("matplotlib", reason="matplotlib is a bench extra: pip install 'tidelog[bench]'")
    plot = tmp_path / "curve.png"
    report = bench_json(
        capsys, "--bootstrap", broker.address, "--mode", "e2e", "--rates", "400,800", "--seconds", "0.25",
        "--plot", str(plot),
    )  # fmt: skip
    curve = report["median"]["tidelog"]
    assert sorted(curve) == ["e2e@400", "e2e@800"]
    assert all(0 < curve[m]["p50_ms"] <= curve[m]["p99_ms"] for m in curve)
    assert plot.read_bytes().startswith(b"\x89PNG")
    with pytest.raises(SystemExit, match="--plot draws the --rates curve"):
        main(["--mode", "e2e", "--plot", str(plot)])
    with pytest.raises(SystemExit, match="--rates takes"):
        main(["--mode", "e2e", "--rates", "fast"])
