"""The project's tests run the broker the way users' tests do: through client.testing."""

from __future__ import annotations

import itertools
from pathlib import Path

from tidelog import AdminClient
from tidelog.testing import BrokerProcess, run_broker, wait_for

ROOT = Path(__file__).resolve().parent.parent

__all__ = ["ROOT", "BrokerProcess", "new_topic", "run_broker", "wait_for"]

_topic_numbers = itertools.count()


def new_topic(address: str, partitions: int = 1, prefix: str = "t", configs: dict[str, str] | None = None) -> str:
    """Create a topic with a name no other test uses, through the SDK; returns the name."""
    name = f"{prefix}-{next(_topic_numbers)}"
    with AdminClient(address) as admin:
        admin.create_topic(name, partitions, configs)
    return name
