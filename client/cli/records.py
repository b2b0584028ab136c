"""`tidelog produce` and `tidelog consume`."""

from __future__ import annotations

import collections
import os
import stat
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import BinaryIO

from tidelog import AdminClient, Consumer, Message, Producer, RecordFuture
from tidelog.cli._base import Args, CliError, Exit, exit_code, open_admin, partitions, security
from tidelog.cli.output import ProduceProgress, record_formatter
from tidelog.consumer import OffsetReset
from tidelog.errors import TidelogError

# -- produce ----------------------------------------------------------------------------


class _Deliveries:
    """The futures of sent records, checked a window at a time.

    Waiting for the oldest window once MAX_WINDOWS are open is the backpressure that
    keeps a large file from sitting in memory whole; checking futures in bulk is also
    much cheaper than a delivery callback per record.
    """

    WINDOW_RECORDS = 1000
    WINDOW_BYTES = 1 << 20
    MAX_WINDOWS = 32

    def __init__(self) -> None:
        self.failures: list[TidelogError] = []
        self._windows: collections.deque[list[RecordFuture]] = collections.deque()
        self._current: list[RecordFuture] = []
        self._current_bytes = 0

    def add(self, future: RecordFuture, nbytes: int) -> None:
        self._current.append(future)
        self._current_bytes += nbytes
        if len(self._current) >= self.WINDOW_RECORDS or self._current_bytes >= self.WINDOW_BYTES:
            self._windows.append(self._current)
            self._current, self._current_bytes = [], 0
            if len(self._windows) > self.MAX_WINDOWS:
                self._check(self._windows.popleft())

    def check_all(self) -> None:
        self._windows.append(self._current)
        while self._windows:
            self._check(self._windows.popleft())
        self._current, self._current_bytes = [], 0

    def _check(self, window: list[RecordFuture]) -> None:
        self.failures += [error for future in window if (error := future.exception()) is not None]


@contextmanager
def _input(path: str | None) -> Iterator[tuple[BinaryIO, int | None]]:
    """The lines to produce and their total size when known (a regular file)."""
    if path in (None, "-"):
        yield sys.stdin.buffer, None
        return
    with open(path, "rb") as file:
        info = os.fstat(file.fileno())
        yield file, info.st_size if stat.S_ISREG(info.st_mode) else None


def produce(args: Args) -> int:
    with open_admin(args) as admin:
        partitions(admin, args.topic, args.partition)  # a missing topic fails here, before stdin is read
    deliveries = _Deliveries()
    with (
        _input(args.file) as (lines, size),
        ProduceProgress(size, args.topic) as progress,
        Producer(args.bootstrap, **security(args)) as producer,
    ):
        count = _send_lines(args, producer, lines, progress, deliveries)
        producer.flush()
        deliveries.check_all()
    if deliveries.failures:
        first = deliveries.failures[0]
        message = f"{len(deliveries.failures)} of {count} record(s) not produced: {first}"
        raise CliError(message, exit_code(first))
    print(f"produced {count} record(s) to {args.topic}", file=sys.stderr)
    return Exit.OK


def _send_lines(
    args: Args, producer: Producer, lines: BinaryIO, progress: ProduceProgress, deliveries: _Deliveries
) -> int:
    """Send each line as a record until the input ends or a record fails; returns how many were sent."""
    separator = args.key_separator.encode() if args.key_separator else None
    headers = [(key, value.encode()) for key, value in args.header]
    count = 0
    for line in lines:
        if deliveries.failures:
            break
        value = line[:-1] if line.endswith(b"\n") else line
        value = value[:-1] if value.endswith(b"\r") else value
        key = None
        if separator is not None and separator in value:
            key, _, value = value.partition(separator)
        future = producer.send(args.topic, value, key=key or None, headers=headers, partition=args.partition)
        deliveries.add(future, len(line))
        progress.advance(len(line))
        count += 1
    return count


# -- consume ----------------------------------------------------------------------------


def consume(args: Args) -> int:
    spec = args.format
    if spec == "value" and (args.print_key or args.print_offset):
        spec = "{partition}:{offset}\t" * args.print_offset + "{key}\t" * args.print_key + "{value}"
    formatter = record_formatter(spec)
    if args.group is not None:
        return _consume_in_group(args, formatter)
    with open_admin(args) as admin:
        assigned = partitions(admin, args.topic, args.partition)
        starts, floors = _start_offsets(admin, args, assigned)
    reset: OffsetReset = "earliest" if args.from_beginning or starts else "latest"
    seen = 0
    with Consumer(args.bootstrap, auto_offset_reset=reset, **security(args)) as consumer:
        consumer.assign([(args.topic, p) for p in assigned])
        for partition, offset in starts.items():
            consumer.seek((args.topic, partition), offset)
        if args.timestamp is not None:
            consumer.seek_to_timestamp(args.timestamp)  # each stream starts at the first record at/after it
        out = sys.stdout.buffer
        while args.max is None or seen < args.max:
            messages = consumer.poll(args.idle_timeout)
            if not messages and args.idle_timeout is not None:
                break
            lines = [formatter(m) for m in messages if m.offset >= floors.get(m.partition, 0)]
            lines = lines if args.max is None else lines[: args.max - seen]
            out.write(b"".join(lines))
            out.flush()
            seen += len(lines)
    return Exit.OK


def _consume_in_group(args: Args, formatter: Callable[[Message], bytes]) -> int:
    """Print the group's share of the topic; commit after each printed poll (at-least-once)."""
    if args.offset is not None or args.timestamp is not None or args.partition is not None:
        raise CliError(
            "--group reads the group's partitions from its committed offsets: drop --offset, --timestamp and "
            "--partition (move a group's offsets with `tidelog groups reset-offsets`)",
            Exit.USAGE,
        )
    seen = 0
    reset: OffsetReset = "earliest" if args.from_beginning else "latest"
    with Consumer(
        args.bootstrap,
        topics=[args.topic],
        group=args.group,
        auto_offset_reset=reset,
        enable_auto_commit=False,
        **security(args),
    ) as consumer:
        out = sys.stdout.buffer
        while args.max is None or seen < args.max:
            messages = consumer.poll(args.idle_timeout)
            if not messages and args.idle_timeout is not None:
                break
            if args.max is not None:
                messages = messages[: args.max - seen]
            if not messages:
                continue
            out.write(b"".join(formatter(m) for m in messages))
            out.flush()
            seen += len(messages)
            consumer.commit({(m.topic, m.partition): m.offset + 1 for m in messages})
    return Exit.OK


def _start_offsets(admin: AdminClient, args: Args, assigned: list[int]) -> tuple[dict[int, int], dict[int, int]]:
    """Where --offset seeks each partition, and the lowest offset to print from it ({} without --offset)."""
    if args.offset is None:
        return {}, {}
    bounds = {p.partition: p for p in admin.describe_topic(args.topic).partitions}
    starts: dict[int, int] = {}
    floors: dict[int, int] = {}
    for partition in assigned:
        low, high = bounds[partition].log_start_offset, bounds[partition].high_watermark
        wanted = args.offset if args.offset >= 0 else high + args.offset
        # Seek within the log; an offset past its end is waited for by skipping what comes before it.
        starts[partition] = min(max(wanted, low), high)
        floors[partition] = wanted
    return starts, floors
