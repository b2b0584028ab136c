"""The project's tests run the broker the way users' tests do: through client.testing."""

from __future__ import annotations

from pathlib import Path

from client.testing import BrokerProcess, run_broker, wait_for

ROOT = Path(__file__).resolve().parent.parent

__all__ = ["ROOT", "BrokerProcess", "run_broker", "wait_for"]
