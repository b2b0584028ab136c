"""The `tidelog` command line against the real broker.

Every command is the real `python -m tidelog ...` process. Commands that do not
depend on each other run concurrently (`tidelog_all`) to keep the file fast.
"""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest

from tests.harness import ROOT, BrokerProcess, new_topic, wait_for
from tidelog import Producer
from tidelog.cli.main import build_parser
from tidelog.cli.output import ProduceProgress, Table, print_tables, record_formatter
from tidelog.common.partitioner import partition_for_key


@dataclass
class Result:
    code: int
    raw: bytes
    err: str

    @property
    def out(self) -> str:
        return self.raw.decode("utf-8", "surrogateescape")

    def json(self) -> Any:
        return json.loads(self.raw)

    def json_lines(self) -> list[Any]:
        return [json.loads(line) for line in self.raw.splitlines()]


def _popen(args: Sequence[str], env: dict[str, str] | None) -> subprocess.Popen[bytes]:
    environ = {k: v for k, v in os.environ.items() if k != "TIDELOG_BOOTSTRAP"}
    return subprocess.Popen(
        [sys.executable, "-m", "tidelog", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env={**environ, **(env or {})},
    )


def _result(proc: subprocess.Popen[bytes], stdin: bytes = b"") -> Result:
    out, err = proc.communicate(stdin, timeout=30)
    return Result(proc.returncode, out, err.decode())


def tidelog(*args: str, stdin: bytes | str = b"", env: dict[str, str] | None = None, code: int | None = 0) -> Result:
    """Run one command; assert its exit status is `code` (None: any)."""
    result = _result(_popen(args, env), stdin.encode() if isinstance(stdin, str) else stdin)
    if code is not None:
        assert result.code == code, f"{args} exited {result.code}: {result.err}"
    return result


def tidelog_all(*commands: Sequence[str]) -> list[Result]:
    """Run several commands at once; their results in order."""
    return tidelog_all_with_input(*((args, "") for args in commands))


def tidelog_all_with_input(*commands: tuple[Sequence[str], str]) -> list[Result]:
    procs = [(_popen(args, None), stdin) for args, stdin in commands]
    return [_result(proc, stdin.encode()) for proc, stdin in procs]


def at_most(records: int) -> tuple[str, ...]:
    """--max, with an idle timeout so that missing records fail the test instead of hanging it."""
    return ("--max", str(records), "--idle-timeout", "10")


def assert_error(result: Result, code: int, *fragments: str) -> None:
    """Failed with `code`, and said so in one `tidelog: ...` line (never a traceback)."""
    assert result.code == code, (result.code, result.err)
    assert result.err.startswith("tidelog: ") and result.err.count("\n") == 1, result.err
    for fragment in fragments:
        assert fragment in result.err


def assert_usage_error(result: Result, fragment: str) -> None:
    assert result.code == 2 and "usage: tidelog" in result.err and fragment in result.err, result.err


def closed_address() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


# -- topics -----------------------------------------------------------------------------


def test_topics_create_list_alter_describe_delete(broker: BrokerProcess) -> None:
    b = ("-b", broker.address)
    name = "cli-topics"
    created = tidelog("topics", "create", name, "-p", "2", "-c", "retention.ms=-1", "--json", *b).json()
    assert created["name"] == name and created["partitions"] == 2 and created["configs"]["retention.ms"] == "-1"

    listed, table, again, tolerated, altered = tidelog_all(
        ("topics", "list", "--json", *b),
        ("topics", "list", *b),
        ("topics", "create", name, *b),
        ("topics", "create", name, "--if-not-exists", "-p", "5", *b),
        ("topics", "alter", name, "-c", "retention.bytes=1000", "--config", "cleanup.policy=compact", "--json", *b),
    )
    assert {"name": name, "partitions": 2} in [{k: t[k] for k in ("name", "partitions")} for t in listed.json()]
    # Not a terminal: tab-separated, a header row first.
    assert table.out.splitlines()[0] == "NAME\tPARTITIONS" and f"{name}\t2" in table.out.splitlines()
    assert_error(again, 4, "TOPIC_EXISTS", name)
    assert tolerated.code == 0 and f"topic {name} already exists" in tolerated.out
    assert altered.code == 0, altered.err
    assert {k: altered.json()["configs"][k] for k in ("retention.ms", "retention.bytes", "cleanup.policy")} == {
        "retention.ms": "-1",
        "retention.bytes": "1000",
        "cleanup.policy": "compact",
    }

    described, described_text, bad_config = tidelog_all(
        ("topics", "describe", name, "--json", *b),
        ("topics", "describe", name, *b),
        ("topics", "alter", name, "-c", "no.such.key=1", *b),
    )
    description = described.json()
    assert description["topic"] == name and description["configs"]["retention.bytes"] == "1000"
    assert description["partitions"] == [
        {"partition": p, "log_start_offset": 0, "high_watermark": 0, "size_bytes": 0} for p in (0, 1)
    ]
    partitions_tsv, configs_tsv = described_text.out.split("\n\n")
    assert partitions_tsv.splitlines() == [
        "PARTITION\tLOG_START\tHIGH_WATERMARK\tRECORDS\tSIZE_BYTES",
        "0\t0\t0\t0\t0",
        "1\t0\t0\t0\t0",
    ]
    assert "cleanup.policy\tcompact" in configs_tsv.splitlines()
    assert_error(bad_config, 1, "UNKNOWN_CONFIG")

    assert f"deleted topic {name}" in tidelog("topics", "delete", name, *b).out
    gone, tolerated_gone = tidelog_all(
        ("topics", "delete", name, *b),
        ("topics", "delete", name, "--if-exists", "--json", *b),
    )
    assert_error(gone, 3, "TOPIC_NOT_FOUND")
    assert tolerated_gone.code == 0 and tolerated_gone.json() == {"name": name, "deleted": False}


# -- produce and consume ----------------------------------------------------------------


def test_produce_a_file_with_keys_and_headers_then_consume_as_json_and_template(
    broker: BrokerProcess, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    b = ("-b", broker.address)
    topic = topic_factory(partitions=2)
    records = tmp_path / "records.txt"
    records.write_bytes(b"k1|one\nk2|h\xc3\xa9llo\r\nno separator here\n|keyless\n\xff|bin\xfe\nlast|no newline")
    produced = tidelog(
        "produce", topic, "--file", str(records), "-K", "|", "-H", "trace=abc", "--header", "eq=a=b", "-p", "1", *b
    )
    assert f"produced 6 record(s) to {topic}" in produced.err

    as_json, as_template, as_values, compat = tidelog_all(
        ("consume", topic, "--from-beginning", *at_most(6), "--format", "json", *b),
        (
            "consume",
            topic,
            "--from-beginning",
            *at_most(6),
            "--format",
            r"{partition}:{offset}\t{key}={value}|{headers}",
            *b,
        ),
        ("consume", topic, "--partition", "1", "--from-beginning", *at_most(6), *b),
        (
            "consume",
            topic,
            "--from-beginning",
            "--max-messages",
            "1",
            "--idle-timeout",
            "10",
            "--print-offset",
            "--print-key",
            *b,
        ),
    )
    rows = as_json.json_lines()
    assert [(r["topic"], r["partition"], r["offset"]) for r in rows] == [(topic, 1, i) for i in range(6)]
    assert all(isinstance(r["timestamp_ms"], int) and r["timestamp_ms"] > 0 for r in rows)
    headers = [{"key": "trace", "value": "abc"}, {"key": "eq", "value": "a=b"}]
    assert all(r["headers"] == headers for r in rows)
    assert [(r.get("key"), r.get("value")) for r in rows[:4]] == [
        ("k1", "one"),
        ("k2", "héllo"),
        (None, "no separator here"),
        (None, "keyless"),
    ]
    # Not UTF-8: base64 under key_base64 / value_base64 instead of key / value.
    assert "key" not in rows[4] and "value" not in rows[4]
    assert base64.b64decode(rows[4]["key_base64"]) == b"\xff"
    assert base64.b64decode(rows[4]["value_base64"]) == b"bin\xfe"
    assert (rows[5]["key"], rows[5]["value"]) == ("last", "no newline")

    assert as_template.raw.splitlines()[:3] == [
        b"1:0\tk1=one|trace=abc,eq=a=b",
        "1:1\tk2=héllo|trace=abc,eq=a=b".encode(),
        b"1:2\t=no separator here|trace=abc,eq=a=b",
    ]
    assert as_template.raw.splitlines()[4] == b"1:4\t\xff=bin\xfe|trace=abc,eq=a=b"  # bytes pass through
    assert as_values.raw == "one\nhéllo\nno separator here\nkeyless\n".encode() + b"bin\xfe\nno newline\n"
    assert compat.out == "1:0\tk1\tone\n"


def test_produce_from_stdin_spreads_over_partitions_and_reports_rejected_records(
    broker: BrokerProcess, topic_factory: Callable[..., str]
) -> None:
    b = ("-b", broker.address)
    topic = topic_factory(partitions=3)
    compacted = topic_factory(configs={"cleanup.policy": "compact"})
    lines = "".join(f"key{i}\t{i}\n" for i in range(30))
    produced, rejected = tidelog_all_with_input(
        (("produce", topic, "--key-separator", r"\t", *b), lines),
        (("produce", compacted, *b), "no key\nnor here\n"),
    )
    assert produced.code == 0 and f"produced 30 record(s) to {topic}" in produced.err
    assert_error(rejected, 1, "2 of 2 record(s) not produced", "KEY_REQUIRED")

    consumed = tidelog("consume", topic, "--from-beginning", *at_most(30), "--format", "{partition} {key} {value}", *b)
    rows = [line.split() for line in consumed.out.splitlines()]
    assert sorted(int(value) for _, _, value in rows) == list(range(30))
    assert all(int(p) == partition_for_key(key.encode(), 3) for p, key, _ in rows)  # the key picks the partition


def test_consume_from_an_offset_a_timestamp_a_partition_or_the_end(
    broker: BrokerProcess, topic_factory: Callable[..., str]
) -> None:
    b = ("-b", broker.address)
    topic = topic_factory(partitions=2)
    timestamps = {0: [1000, 2000, 3000], 1: [1500, 2500]}
    with Producer(broker.address) as producer:
        futures = [
            producer.send(topic, f"p{p}-{ts}".encode(), partition=p, timestamp_ms=ts)
            for p, stamps in timestamps.items()
            for ts in stamps
        ]
        producer.flush()
    assert [f.result(10).offset for f in futures] == [0, 1, 2, 0, 1]

    fmt = ("--format", "{partition}:{offset}:{value}:{timestamp_ms}")
    at_time, at_offset, past_end, from_end, latest, one_partition = tidelog_all(
        ("consume", topic, "--timestamp", "2000", *at_most(3), *fmt, *b),
        ("consume", topic, "--offset", "1", "--partition", "0", *at_most(2), *fmt, *b),
        # Partition 1 has no offset 2 yet: nothing of it is printed, only partition 0's record.
        ("consume", topic, "--offset", "2", *at_most(1), *fmt, *b),
        ("consume", topic, "-o", "-1", *at_most(2), *fmt, *b),
        ("consume", topic, "--idle-timeout", "0.5", *b),  # default: only records written from now on
        ("consume", topic, "--from-beginning", "-p", "1", *at_most(2), *fmt, *b),
    )
    assert sorted(at_time.out.splitlines()) == ["0:1:p0-2000:2000", "0:2:p0-3000:3000", "1:1:p1-2500:2500"]
    assert at_offset.out.splitlines() == ["0:1:p0-2000:2000", "0:2:p0-3000:3000"]
    assert past_end.code == 0 and past_end.out.splitlines() == ["0:2:p0-3000:3000"]
    assert sorted(from_end.out.splitlines()) == ["0:2:p0-3000:3000", "1:1:p1-2500:2500"]
    assert latest.code == 0 and latest.out == ""
    assert one_partition.out.splitlines() == ["1:0:p1-1500:1500", "1:1:p1-2500:2500"]


def test_consume_in_a_group_then_describe_reset_and_delete_it(
    broker: BrokerProcess, topic_factory: Callable[..., str]
) -> None:
    b = ("-b", broker.address)
    topic = topic_factory(partitions=2)
    with Producer(broker.address) as producer:
        for i in range(6):
            producer.send(topic, b"v%d" % i, partition=i % 2)
        producer.flush()

    first = tidelog("consume", topic, "--group", "cli-g", "--from-beginning", *at_most(4), *b)
    rest = tidelog("consume", topic, "--group", "cli-g", *at_most(2), *b)  # resumes after what was printed
    assert sorted(first.out.splitlines() + rest.out.splitlines()) == [f"v{i}" for i in range(6)]

    listed, described = tidelog_all(("groups", "list", "--json", *b), ("groups", "describe", "cli-g", "--json", *b))
    assert {"name": "cli-g", "members": 0, "generation": 0, "state": "empty"} in listed.json()
    lags = {(p["topic"], p["partition"]): (p["committed_offset"], p["lag"]) for p in described.json()["partitions"]}
    assert lags == {(topic, 0): (3, 0), (topic, 1): (3, 0)}

    reset = tidelog("groups", "reset-offsets", "cli-g", "--topic", topic, "--to-earliest", "-p", "1", "--json", *b)
    assert reset.json() == [{"topic": topic, "partition": 1, "offset": 0}]
    again = tidelog("consume", topic, "--group", "cli-g", "--format", "{partition}:{value}", *at_most(3), *b)
    assert again.out.splitlines() == ["1:v1", "1:v3", "1:v5"]

    deleted = tidelog("groups", "delete", "cli-g", *b)
    assert deleted.out == "deleted group cli-g\n"
    assert_error(tidelog("groups", "describe", "cli-g", *b, code=None), 3, "cli-g")
    assert_error(tidelog("consume", topic, "--group", "cli-g", "--offset", "1", *b, code=None), 2, "--group")


def test_bootstrap_comes_from_the_environment_unless_given(
    broker: BrokerProcess, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory()
    from_env = tidelog("topics", "list", "--json", env={"TIDELOG_BOOTSTRAP": broker.address})
    assert topic in [t["name"] for t in from_env.json()]
    flag_wins = tidelog("topics", "describe", topic, "-b", broker.address, env={"TIDELOG_BOOTSTRAP": closed_address()})
    assert flag_wins.out.startswith("PARTITION\t")


class _Drained:
    """A running command's stdout lines and stderr, read on threads while it runs."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None and proc.stderr is not None
        self.proc = proc
        self.lines: list[bytes] = []
        self._err: list[bytes] = []
        self._threads = [
            threading.Thread(target=self._read_lines, args=(proc.stdout,), daemon=True),
            threading.Thread(target=self._read_all, args=(proc.stderr,), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _read_lines(self, stream: IO[bytes]) -> None:
        for line in stream:  # each line as soon as the command has written it
            self.lines.append(line)

    def _read_all(self, stream: IO[bytes]) -> None:
        self._err.append(stream.read())

    def finish(self, timeout: float) -> Result:
        """Wait for the command to exit by itself and for its output to be read to its end."""
        code = self.proc.wait(timeout)
        for thread in self._threads:
            thread.join(10)
            assert not thread.is_alive(), "the command's output was not read to its end"
        return Result(code, b"".join(self.lines), b"".join(self._err).decode())


def test_consume_prints_only_the_records_on_stdout_across_a_broker_restart(own_broker: BrokerProcess) -> None:
    """The broker goes away under `tidelog consume`: the SDK's "subscription lost" warnings go to stderr,
    and stdout, a pipe, holds the records, in order, one a line, and nothing else."""
    own_broker.start()
    topic = new_topic(own_broker.address, prefix="cli-restart")
    before = [f"before-{i}" for i in range(5)]
    after = [f"after-{i}" for i in range(5)]

    def produce(values: list[str], first_offset: int) -> None:
        with Producer(own_broker.address) as producer:
            futures = [producer.send(topic, value.encode(), partition=0) for value in values]
            producer.flush()
        assert [f.result(10).offset for f in futures] == list(range(first_offset, first_offset + len(values)))

    produce(before, 0)
    total = len(before) + len(after)
    consume = _popen(
        ("consume", topic, "--from-beginning", "--max", str(total), "--idle-timeout", "30", "-b", own_broker.address),
        None,
    )
    try:
        output = _Drained(consume)
        wait_for(lambda: len(output.lines) >= len(before), 30, what="the records from before the restart on stdout")
        own_broker.kill()
        own_broker.start()  # the same port and data
        produce(after, len(before))
        result = output.finish(60)  # it ends by itself at --max; --idle-timeout bounds it otherwise
    finally:
        if consume.poll() is None:
            consume.kill()
            consume.wait(10)

    assert result.code == 0, result.err
    assert result.raw == b"".join(f"{value}\n".encode() for value in [*before, *after]), result.err
    assert "subscription lost" in result.err, result.err  # the warnings were written: to stderr


# -- exit codes -------------------------------------------------------------------------


def test_exit_codes(broker: BrokerProcess, topic_factory: Callable[..., str]) -> None:
    b = ("-b", broker.address)
    topic = topic_factory(partitions=2)
    down = ("-b", closed_address(), "--timeout", "2")
    unreachable, produce_down, consume_down, no_topic, produce_no_topic, no_partition, usage = tidelog_all(
        ("topics", "list", *down),
        ("produce", topic, *down),
        ("consume", topic, *down),
        ("consume", "cli-no-such-topic", *b),
        ("produce", "cli-no-such-topic", *b),
        ("consume", topic, "--partition", "2", *b),
        ("consume", topic, "--from-beginning", "--offset", "3", *b),
    )
    for result in (unreachable, produce_down, consume_down):
        assert_error(result, 5, "UNAVAILABLE")
    assert_error(no_topic, 3, "TOPIC_NOT_FOUND")
    assert_error(produce_no_topic, 3, "TOPIC_NOT_FOUND")
    assert_error(no_partition, 1, "no partition 2")
    assert_usage_error(usage, "not allowed with")


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["consume", "t", "--from-beginning", "--timestamp", "5"], "not allowed with"),
        (["consume", "t", "--offset", "1", "--timestamp", "5"], "not allowed with"),
        (["consume", "t", "--format", "jsno"], "unknown format 'jsno'"),
        (["consume", "t", "--format", "{nope}"], "unknown field 'nope'"),
        (["consume", "t", "--max", "-1"], ">= 0"),
        (["consume", "t", "--idle-timeout", "0"], "> 0"),
        (["consume", "t", "--timestamp", "yesterday"], "ISO 8601"),
        (["produce", "t", "--header", "no-equals"], "KEY=VALUE"),
        (["topics", "create", "t", "-c", "novalue"], "KEY=VALUE"),
        (["topics", "alter", "t"], "--config"),
    ],
)
def test_usage_errors_exit_2(argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(argv)
    assert exited.value.code == 2 and fragment in capsys.readouterr().err


def test_timestamps_are_milliseconds_or_iso_8601() -> None:
    parse = build_parser().parse_args
    assert parse(["consume", "t", "--timestamp", "2500"]).timestamp == 2500
    assert parse(["consume", "t", "--timestamp", "1970-01-01T00:00:02.500Z"]).timestamp == 2500
    assert parse(["consume", "t", "--timestamp", "1970-01-01T01:00:02.5+01:00"]).timestamp == 2500
    assert parse(["consume", "t", "--timestamp", "1970-01-01 00:00:02.5"]).timestamp == 2500  # UTC if no zone


def test_interrupt_exits_130(broker: BrokerProcess, topic_factory: Callable[..., str]) -> None:
    topic = topic_factory()
    tidelog("produce", topic, "-b", broker.address, stdin="ready\n")
    proc = _popen(("consume", topic, "--from-beginning", "-b", broker.address), None)
    watchdog = threading.Timer(30, proc.kill)  # a consumer that never prints must not hang the test
    watchdog.start()
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"  # running, waiting for more
    finally:
        watchdog.cancel()
    proc.send_signal(signal.SIGINT)
    result = _result(proc)
    assert result.code == 130 and "Traceback" not in result.err


# -- output details (in process: a terminal is needed) ---------------------------------


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_tables_are_drawn_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    print_tables([Table("orders", ("NAME", "PARTITIONS"), [["orders", 3]], frozenset({1}))])
    drawn = terminal.getvalue()
    assert "orders" in drawn and "PARTITIONS" in drawn and "\t" not in drawn and "│" in drawn


def test_progress_bar_only_on_a_terminal_for_a_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ProduceProgress, "DELAY_S", 0.0)
    for stderr, total, drawn in ((_Terminal(), 4096, True), (_Terminal(), None, False), (io.StringIO(), 4096, False)):
        monkeypatch.setattr(sys, "stderr", stderr)
        with ProduceProgress(total, "orders") as progress:
            for _ in range(4):
                progress.advance(1024)
        assert ("orders" in stderr.getvalue()) is drawn


def test_record_templates() -> None:
    with pytest.raises(ValueError, match="unknown format"):
        record_formatter("valeu")
    with pytest.raises(ValueError, match="unknown field"):
        record_formatter("{offset} {nope}")
    assert record_formatter(r"{offset:>3}\t{key}\n") is not None


def test_serve_refuses_bad_or_busy_addresses(tmp_path: Path) -> None:
    for bad in ("127.0.0.1:99999", "no-port", "127.0.0.1:http"):
        result = tidelog("serve", "--data-dir", str(tmp_path / "d"), "--listen", bad, code=None)
        assert result.code != 0 and "HOST:PORT" in result.err, bad
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        address = f"127.0.0.1:{busy.getsockname()[1]}"
        result = tidelog("serve", "--data-dir", str(tmp_path / "d"), "--listen", address, code=None)
    assert result.code != 0 and "cannot listen" in result.err


def test_cluster_describe_shows_a_single_broker_as_a_cluster_of_one(broker: BrokerProcess) -> None:
    described = json.loads(tidelog("cluster", "describe", "--json", "-b", broker.address).out)
    assert described == {
        "brokers": [{"id": 0, "address": broker.address}],
        "controller_id": 0,
        "under_replicated": [],
        "offline": [],
        "reassigning": [],
    }
    table = tidelog("cluster", "describe", "-b", broker.address).out
    assert broker.address in table and "controller" in table


def test_cluster_elect_leaders_and_reassign_on_a_single_broker(broker: BrokerProcess) -> None:
    tidelog("topics", "create", "solo", "-p", "2", "-b", broker.address)
    elected = json.loads(tidelog("cluster", "elect-leaders", "solo", "--json", "-b", broker.address).out)
    assert [(e["partition"], e["outcome"], e["leader"]) for e in elected] == [
        (0, "not_needed", 0),
        (1, "not_needed", 0),
    ]
    refused = tidelog("cluster", "reassign", "solo", "0=1", "-b", broker.address, code=None)
    assert refused.code != 0 and "single broker" in refused.err
    bad = tidelog("cluster", "reassign", "solo", "zero=1", "-b", broker.address, code=None)
    assert bad.code != 0 and "PARTITION=BROKER,BROKER" in bad.err
