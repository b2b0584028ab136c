"""Smoke tests of `tidelog bench --cluster`: replication factors side by side, and the failover mode
(figures present and plausible; never timing assertions)."""

from __future__ import annotations

import json
import shutil
from typing import Any

import pytest

from tidelog.bench import cluster
from tidelog.bench.run import main


@pytest.fixture(autouse=True)
def _etcd() -> None:
    if shutil.which("etcd") is None:
        pytest.fail("etcd is not installed: `make test` installs Debian's etcd-server")


def bench_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    assert main([*args, "--json", "--runs", "1"]) == 0
    report: dict[str, Any] = json.loads(capsys.readouterr().out)
    return report


def test_replication_factors_run_on_the_same_cluster(capsys: pytest.CaptureFixture[str]) -> None:
    report = bench_json(
        capsys, "--cluster", "3", "--replication-factor", "1,3", "--mode", "produce,consume", "--records", "2000"
    )
    figures = report["median"]
    assert set(figures) == {"tidelog rf=1", "tidelog rf=3"}
    for system in figures.values():
        assert system["produce"]["records"] == 2000
        assert system["consume"]["records"] == 2001  # and the warm-up record
        assert system["brokers"]["rss_mb"] > 0
    assert [(r["system"], r["mode"]) for r in report["replication"]] == [
        ("tidelog rf=3", "produce"),
        ("tidelog rf=3", "consume"),
    ]


def test_failover_reports_its_figures(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cluster, "SETTLE_S", 0.5)
    report = bench_json(capsys, "--cluster", "3", "--mode", "failover", "--failover-rate", "500")
    figures = report["median"]["tidelog failover"]["failover"]
    assert figures["lease_s"] == 2
    for key in ("kill_election_s", "kill_first_ack_s", "stop_handover_s", "stop_first_ack_s", "stop_max_gap_s"):
        assert figures[key] > 0, key
    assert figures["sent"] > 0 and figures["acknowledged"] + figures["failed"] == figures["sent"]
    assert figures["lost"] == 0


def test_cluster_options_are_checked() -> None:
    with pytest.raises(SystemExit, match="needs --cluster 3"):
        main(["--mode", "failover"])
    with pytest.raises(SystemExit, match="at least the largest"):
        main(["--cluster", "1", "--replication-factor", "3"])
    with pytest.raises(SystemExit, match="--replication-factor takes"):
        main(["--replication-factor", "0"])
    with pytest.raises(SystemExit, match="does not take --bootstrap"):
        main(["--cluster", "3", "--bootstrap", "127.0.0.1:1"])
