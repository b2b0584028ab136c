"""The benchmark's peers (scripts/bench/peers.py): each starts, produces, reads back and measures e2e.

Skipped where a peer's server or Python client is not installed (`make bench-peers` installs them).
No timing assertions: only the shapes of the figures and that every record was read.
"""

from __future__ import annotations

import os

import pytest

from tidelog.bench import peers

THROUGHPUT = {"records_per_s", "mb_per_s", "records"}
LATENCY = {"p50_ms", "p99_ms", "p999_ms"}


def _require(spec: str) -> None:
    problem = peers.missing_requirements(spec)
    if problem is not None:
        pytest.skip(problem)


@pytest.mark.parametrize("spec,fsync", [("redis", "always"), ("redis", "interval"), ("nats", "always")])
def test_peer_modes(spec: str, fsync: str) -> None:
    _require(spec)
    with peers.open_peer(spec, fsync) as peer:
        assert peer.name.startswith(spec)
        produced = peer.produce(2000, 100)
        assert set(produced) == THROUGHPUT
        assert produced["records"] == 2000
        assert produced["records_per_s"] > 0
        assert produced["mb_per_s"] == pytest.approx(produced["records_per_s"] * 100 / 1e6)

        consumed = peer.consume(2000, 100)
        assert set(consumed) == THROUGHPUT
        assert consumed["records"] == 2000
        assert consumed["mb_per_s"] == pytest.approx(consumed["records_per_s"] * 100 / 1e6)

        latency = peer.e2e(500, 0.5, 100)
        assert set(latency) == LATENCY
        assert 0 < latency["p50_ms"] <= latency["p99_ms"] <= latency["p999_ms"]

        # A second produce replaces what consume reads back.
        assert peer.produce(300, 50)["records"] == 300
        assert peer.consume(300, 50)["records"] == 300


@pytest.mark.parametrize("spec", peers.PEER_NAMES)
def test_peer_stops_its_server_and_removes_its_dir(spec: str) -> None:
    _require(spec)
    peer = peers.RedisPeer("always") if spec == "redis" else peers.NatsPeer("always")
    with peer:
        server = peer._server
        assert server is not None and server._proc is not None
        pid, data = server._proc.pid, server.dir
        assert data.is_dir()
        os.kill(pid, 0)  # running
    assert not data.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # stopped and reaped: no such process


def test_failed_start_names_binary_command_and_log() -> None:
    _require("redis")
    peer = peers.RedisPeer("always")
    peer.appendfsync = "sometimes"  # redis-server refuses the option and exits
    with pytest.raises(RuntimeError) as failure, peer:
        pass
    message = str(failure.value)
    assert "redis-server" in message
    assert "--appendfsync sometimes" in message
    assert "log tail" in message and "appendfsync" in message.split("log tail", 1)[1]


def test_open_peer_and_requirements_reject_unknown_names() -> None:
    with pytest.raises(ValueError, match="unknown peer"):
        peers.open_peer("kafka", "always")
    with pytest.raises(ValueError, match="fsync"):
        peers.open_peer("redis", "sometimes")
    with pytest.raises(ValueError, match="unknown peer"):
        peers.missing_requirements("kafka")
    for spec in peers.PEER_NAMES:
        problem = peers.missing_requirements(spec)
        assert problem is None or "make bench-peers" in problem
