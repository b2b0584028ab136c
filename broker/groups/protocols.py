"""Which protocol a group with live members speaks: Tidelog's broker-run groups (groups.coordinator) or
Kafka's classic groups, whose members assign among themselves (kafka.classic_groups). Both kinds share
the group's committed offsets, so a group moves from one protocol to the other once it is empty; while
it has members, members of the other protocol are refused (Kafka's INCONSISTENT_GROUP_PROTOCOL)."""

from __future__ import annotations

from tidelog.broker.errors import BrokerError
from tidelog.common.reasons import Reason

TIDELOG, KAFKA = "tidelog", "kafka"


class LiveGroups:
    """The event loop's: every group that has members, and its protocol."""

    def __init__(self) -> None:
        self._speaking: dict[str, str] = {}

    def enter(self, group: str, protocol: str) -> None:
        """A member of `protocol` joins; GROUP_PROTOCOL_IN_USE while the group's members speak the other."""
        other = self._speaking.setdefault(group, protocol)
        if other != protocol:
            raise BrokerError(
                Reason.GROUP_PROTOCOL_IN_USE,
                f"group {group!r} has live members of the {other} protocol: a {protocol} consumer may join "
                "once they have left (committed offsets are shared)",
                group=group,
            )

    def leave(self, group: str, protocol: str) -> None:
        """The group has no members of `protocol` any more."""
        if self._speaking.get(group) == protocol:
            del self._speaking[group]
