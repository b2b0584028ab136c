"""Which broker coordinates a consumer group. A single broker coordinates every group; in a cluster
the first broker a group's member (or admin call) reaches claims it in etcd (cluster/group_store.py),
and the others answer NOT_COORDINATOR with its address.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class GroupPlacement(Protocol):
    @property
    def clustered(self) -> bool:
        """Partitions may be led by other brokers: members in a cluster read them with Subscribe."""
        ...

    async def coordinate(self, group: str) -> int:
        """Make sure this broker coordinates `group` (claiming it when no broker does); the base of the
        group's generations under this claim (higher than under any earlier one). NOT_COORDINATOR
        when another broker does."""
        ...

    def coordinates(self, group: str) -> bool:
        """This broker coordinates `group` now (as far as it knows, without asking)."""
        ...

    def on_lost(self, listener: Callable[[str], None]) -> None:
        """Call `listener(group)` when this broker stops coordinating a group it held."""
        ...


class SingleBrokerGroups:
    """A single broker's: every group is its own, under generation base 0."""

    @property
    def clustered(self) -> bool:
        return False

    async def coordinate(self, group: str) -> int:
        return 0

    def coordinates(self, group: str) -> bool:
        return True

    def on_lost(self, listener: Callable[[str], None]) -> None:
        pass
