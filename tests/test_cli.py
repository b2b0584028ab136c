"""The `tidelog` command line against the real broker."""

from __future__ import annotations

import socket
import subprocess
import sys

from tests.harness import ROOT, BrokerProcess


def tidelog(*args: str, stdin: str = "", check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "broker", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=check,
    )


def test_topics_produce_consume(broker: BrokerProcess) -> None:
    b = ("-b", broker.address)
    assert (
        "created topic cli-topic"
        in tidelog("topics", "create", "cli-topic", "-p", "2", "-c", "retention.ms=-1", *b).stdout
    )
    assert "cli-topic\t2" in tidelog("topics", "list", *b).stdout
    described = tidelog("topics", "describe", "cli-topic", *b).stdout
    assert "retention.ms=-1" in described

    tidelog("produce", "cli-topic", "--partition", "1", *b, stdin="one\ntwo\nthree\n")
    out = tidelog("consume", "cli-topic", "--from-beginning", "--max-messages", "3", "--print-offset", *b).stdout
    assert out.splitlines() == ["1:0\tone", "1:1\ttwo", "1:2\tthree"]

    failed = tidelog("topics", "create", "cli-topic", *b, check=False)
    assert failed.returncode == 1 and "TOPIC_EXISTS" in failed.stderr and "Traceback" not in failed.stderr
    assert "deleted topic cli-topic" in tidelog("topics", "delete", "cli-topic", *b).stdout
    missing = tidelog("consume", "cli-topic", "--from-beginning", "--idle-timeout", "1", *b, check=False)
    assert missing.returncode == 1 and "TOPIC_NOT_FOUND" in missing.stderr


def test_serve_refuses_bad_or_busy_addresses(tmp_path) -> None:  # type: ignore[no-untyped-def]
    for bad in ("127.0.0.1:99999", "no-port", "127.0.0.1:http"):
        result = tidelog("serve", "--data-dir", str(tmp_path / "d"), "--listen", bad, check=False)
        assert result.returncode != 0 and "HOST:PORT" in result.stderr, bad
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        address = f"127.0.0.1:{busy.getsockname()[1]}"
        result = tidelog("serve", "--data-dir", str(tmp_path / "d"), "--listen", address, check=False)
    assert result.returncode != 0 and "cannot listen" in result.stderr
