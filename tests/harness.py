"""The project's tests run the broker the way users' tests do: through client.testing."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import TypeVar

import pytest

from tidelog import AdminClient
from tidelog.testing import BrokerProcess, run_broker, wait_for

ROOT = Path(__file__).resolve().parent.parent

__all__ = ["ROOT", "BrokerProcess", "gather", "new_topic", "run_broker", "wait_for"]

_topic_numbers = itertools.count()

T = TypeVar("T")


def gather(into: list[T], items: Iterable[T]) -> int:
    """Add `items` to `into`; return how many it holds now. For wait_for conditions that poll:
    ``wait_for(lambda: gather(got, consumer.poll(0.1)) >= 10, what="10 records")``."""
    into.extend(items)
    return len(into)


def logged(broker: BrokerProcess, event: str, key: str) -> str:
    """`key` of the broker's first `event` log line (a listener's address on a port the kernel picked)."""

    def found() -> str | None:
        for line in broker.log().splitlines():
            if f'"{event}"' in line:
                return str(json.loads(line)[key])
        return None

    value = wait_for(found, 30, what=f"the {event} log line")
    assert value is not None
    return value


def new_topic(address: str, partitions: int = 1, prefix: str = "t", configs: dict[str, str] | None = None) -> str:
    """Create a topic with a name no other test uses, through the SDK; returns the name."""
    name = f"{prefix}-{next(_topic_numbers)}"
    with AdminClient(address) as admin:
        admin.create_topic(name, partitions, configs)
    return name


NODE_DIR = ROOT / "tests" / "node"


def run_node(script: str, *args: str) -> str:
    node = shutil.which("node")
    if node is None or not (NODE_DIR / "node_modules" / "@grpc" / "grpc-js").exists():
        pytest.fail("node and tests/node/node_modules are set up by `make test`")
    result = subprocess.run([node, script, *args], cwd=NODE_DIR, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return str(result.stdout)
