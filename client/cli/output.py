"""How the `tidelog` client commands print: tables, JSON, consumed records and a progress bar.

Tables are drawn with rich when stdout is a terminal and printed as tab-separated
lines (a header row first) when it is not. rich is imported only when something
is actually drawn: it costs import time every command would otherwise pay.
"""

from __future__ import annotations

import base64
import json
import re
import sys
import time
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from tidelog.types import Message, PartitionDescription, TopicDescription, TopicInfo

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "0": "\0", "\\": "\\"}
RECORD_FIELDS = ("topic", "partition", "offset", "timestamp_ms", "key", "value", "headers")


def unescape(text: str) -> str:
    """Honour \\t, \\n, \\r, \\0 and \\\\ in a command-line argument (shells pass them literally)."""
    return re.sub(r"\\([tnr0\\])", lambda m: _ESCAPES[m.group(1)], text)


@dataclass
class Table:
    title: str | None
    columns: Sequence[str]
    rows: Sequence[Sequence[object]]
    # Right-aligned on a terminal; in TSV every cell is plain text.
    numeric: AbstractSet[int] = frozenset()


def print_tables(tables: Sequence[Table]) -> None:
    if sys.stdout.isatty():
        _rich_tables(tables)
        return
    for i, table in enumerate(tables):
        if i:
            sys.stdout.write("\n")
        rows: list[Sequence[object]] = [table.columns, *table.rows]
        for row in rows:
            sys.stdout.write("\t".join(str(cell) for cell in row) + "\n")


def _rich_tables(tables: Sequence[Table]) -> None:
    from rich.console import Console
    from rich.table import Table as RichTable

    console = Console()
    for table in tables:
        rich_table = RichTable(title=table.title, title_justify="left", title_style="bold")
        for i, column in enumerate(table.columns):
            rich_table.add_column(column, justify="right" if i in table.numeric else "left")
        for row in table.rows:
            rich_table.add_row(*(str(cell) for cell in row))
        console.print(rich_table)


def print_json(data: object) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


def human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def topic_json(topic: TopicInfo) -> dict[str, object]:
    return {"name": topic.name, "partitions": topic.partitions, "configs": dict(sorted(topic.configs.items()))}


def description_json(description: TopicDescription) -> dict[str, object]:
    def partition(p: PartitionDescription) -> dict[str, object]:
        out: dict[str, object] = {
            "partition": p.partition,
            "log_start_offset": p.log_start_offset,
            "high_watermark": p.high_watermark,
            "size_bytes": p.size_bytes,
        }
        if p.replicas:  # a cluster's
            out |= {"leader": p.leader, "replicas": list(p.replicas), "isr": list(p.isr)}
        return out

    return {
        "topic": description.topic.name,
        "configs": dict(sorted(description.topic.configs.items())),
        "partitions": [partition(p) for p in description.partitions],
    }


def configs_table(topic: TopicInfo, title: str) -> Table:
    return Table(title, ("KEY", "VALUE"), [[k, v] for k, v in sorted(topic.configs.items())])


def description_tables(description: TopicDescription) -> list[Table]:
    topic = description.topic
    human = sys.stdout.isatty()
    clustered = any(p.replicas for p in description.partitions)
    columns = ("PARTITION", "LOG_START", "HIGH_WATERMARK", "RECORDS", "SIZE" if human else "SIZE_BYTES")
    rows: list[list[object]] = [
        [
            p.partition,
            p.log_start_offset,
            p.high_watermark,
            p.high_watermark - p.log_start_offset,
            human_bytes(p.size_bytes) if human else p.size_bytes,
            *([p.leader, ",".join(map(str, p.replicas)), ",".join(map(str, p.isr))] if clustered else []),
        ]
        for p in description.partitions
    ]
    partitions = Table(
        f"{topic.name}: {topic.partitions} partition(s)",
        (*columns, *(("LEADER", "REPLICAS", "ISR") if clustered else ())),
        rows,
        numeric=frozenset(range(6 if clustered else 5)),
    )
    return [partitions, configs_table(topic, "configs")]


# -- consumed records -------------------------------------------------------------------

Formatter = Callable[[Message], bytes]


def _text(data: bytes | None) -> str:
    # surrogateescape: bytes that are not UTF-8 go back out unchanged when the line is encoded.
    return "" if data is None else data.decode("utf-8", "surrogateescape")


def _format_value(message: Message) -> bytes:
    return (message.value or b"") + b"\n"


def _json_bytes(name: str, data: bytes | None) -> dict[str, str | None]:
    """{name: text} when `data` is UTF-8 (or None), else {name_base64: base64}."""
    if data is None:
        return {name: None}
    try:
        return {name: data.decode("utf-8")}
    except UnicodeDecodeError:
        return {f"{name}_base64": base64.b64encode(data).decode("ascii")}


def _format_json(message: Message) -> bytes:
    record: dict[str, Any] = {
        "topic": message.topic,
        "partition": message.partition,
        "offset": message.offset,
        "timestamp_ms": message.timestamp_ms,
        **_json_bytes("key", message.key),
        **_json_bytes("value", message.value),
        "headers": [{"key": key, **_json_bytes("value", value)} for key, value in message.headers],
    }
    return json.dumps(record, ensure_ascii=False).encode() + b"\n"


def _template_formatter(template: str) -> Formatter:
    def render(message: Message) -> bytes:
        line = template.format(
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            timestamp_ms=message.timestamp_ms,
            key=_text(message.key),
            value=_text(message.value),
            headers=",".join(f"{k}={_text(v)}" for k, v in message.headers),
        )
        return line.encode("utf-8", "surrogateescape")

    return render


def record_formatter(spec: str) -> Formatter:
    """`value`, `json`, or a str.format template over RECORD_FIELDS; ValueError if unusable."""
    if spec == "value":
        return _format_value
    if spec == "json":
        return _format_json
    template = unescape(spec)
    if not re.search(r"(?<!\{)\{[^{}]*\}", template):
        raise ValueError(f"unknown format {spec!r}: use value, json or a template such as '{{key}}\\t{{value}}\\n'")
    if not template.endswith("\n"):
        template += "\n"
    formatter = _template_formatter(template)
    try:
        template.format(
            **{name: 0 if name in ("partition", "offset", "timestamp_ms") else "" for name in RECORD_FIELDS}
        )
    except (KeyError, IndexError, AttributeError) as err:
        raise ValueError(f"unknown field {err} in format; fields: {', '.join(RECORD_FIELDS)}") from None
    except ValueError as err:
        raise ValueError(f"bad format {spec!r}: {err}") from None
    return formatter


# -- produce progress -------------------------------------------------------------------


class ProduceProgress:
    """A byte progress bar on stderr for a produce from a file; drawn only on a terminal and once it runs long."""

    DELAY_S = 0.5

    def __init__(self, total_bytes: int | None, label: str) -> None:
        self._enabled = total_bytes is not None and sys.stderr.isatty()
        self._total = total_bytes or 0
        self._label = label
        self._done = 0
        self._shown = 0
        self._step = max(1, self._total // 500)
        self._started = time.monotonic()
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    def advance(self, nbytes: int) -> None:
        if not self._enabled:
            return
        self._done += nbytes
        if self._done - self._shown < self._step:
            return
        if self._bar is None:
            if time.monotonic() - self._started < self.DELAY_S:
                return
            self._start()
        assert self._bar is not None and self._task is not None
        self._bar.update(self._task, completed=self._done)
        self._shown = self._done

    def _start(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        self._task = self._bar.add_task(self._label, total=self._total, completed=self._done)
        self._bar.start()

    def __enter__(self) -> ProduceProgress:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._bar is not None:
            assert self._task is not None
            if kind is None:
                self._bar.update(self._task, completed=self._total)
            self._bar.stop()
