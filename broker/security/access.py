"""What the services ask of security about the call being handled: may its principal do this (ACLs),
and how long to hold its answer (quotas). One object per broker, built by the server from its settings
and handed to every service, so that two brokers in one process keep their own rules."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from tidelog.broker.errors import BrokerError
from tidelog.broker.names import check_group_name, check_topic_name
from tidelog.broker.security.acls import Authorizer, current_grants, current_principal
from tidelog.broker.security.quotas import Quotas
from tidelog.common.reasons import Reason

_NAME_CHECKS = {"topic": check_topic_name, "group": check_group_name}
ThrottleObserver = Callable[[str, str, float], None]  # (principal, direction, seconds held)


def _principal() -> str:
    return current_principal.get() or "anonymous"


def _refusal(principal: str, operation: str, what: str) -> BrokerError:
    return BrokerError(
        Reason.NOT_AUTHORIZED,
        f"principal {principal!r} may not {operation} {what}: ask for an ACL that allows it",
        principal=principal,
        operation=operation,
    )


class Access:
    """ACLs (None: every authenticated call may do anything) and quotas (None: no limits)."""

    def __init__(
        self,
        authorizer: Authorizer | None = None,
        quotas: Quotas | None = None,
        on_throttle: ThrottleObserver | None = None,
    ) -> None:
        self.authorizer = authorizer
        self.quotas = quotas
        self._on_throttle = on_throttle

    def require(self, operation: str, resource_type: str, name: str = "") -> None:
        """Refuse the call being handled unless its principal may do `operation` on the resource.

        The name is checked first (INVALID_NAME says nothing of what exists); the refusal is worded the
        same whether the resource exists or not. What was allowed is recorded for a later reload to judge.
        """
        if resource_type in _NAME_CHECKS:
            _NAME_CHECKS[resource_type](name)
        grants = current_grants.get()
        if grants is not None:
            grants.checks.append((operation, resource_type, name))
        if self.authorizer is None:
            return
        principal = _principal()
        if not self.authorizer.allowed(principal, operation, resource_type, name):
            what = "the cluster" if resource_type == "cluster" else f"{resource_type} {name!r}"
            raise _refusal(principal, operation, what)

    def permitted(self, operation: str, resource_type: str, name: str) -> bool:
        """May the call's principal do this? For leaving out what it may not see (no error, no trace)."""
        return self.authorizer is None or self.authorizer.allowed(_principal(), operation, resource_type, name)

    def require_produce_somewhere(self) -> None:
        """InitProducer: an idempotent producer id is for a principal that may produce to some topic."""
        grants = current_grants.get()
        if grants is not None:
            grants.checks.append(("produce", "any-topic", ""))
        if self.authorizer is None:
            return
        principal = _principal()
        if not self.authorizer.may_produce_somewhere(principal):
            raise _refusal(principal, "produce", "any topic, so it gets no idempotent producer id")

    def still_allowed(self, checks: list[tuple[str, str, str]], principal: str | None) -> bool:
        """Whether every check a call passed passes again (after the ACLs were reloaded)."""
        if self.authorizer is None:
            return True
        who = principal or "anonymous"
        for operation, resource_type, name in checks:
            if resource_type == "any-topic":
                if not self.authorizer.may_produce_somewhere(who):
                    return False
            elif not self.authorizer.allowed(who, operation, resource_type, name):
                return False
        return True

    async def throttle(self, direction: str, size: int) -> float:
        """Hold the call being handled as long as its principal's quota needs; the seconds held."""
        delay = self.quota_delay(direction, size)
        if delay > 0:
            await asyncio.sleep(delay)
        return delay

    def quota_delay(self, direction: str, size: int) -> float:
        """The seconds the call's principal is over its quota after moving `size` bytes (counted, not
        held: the Kafka listener answers at once and mutes the connection that long, as Kafka does)."""
        if self.quotas is None or size <= 0:
            return 0.0
        principal = _principal()
        delay = self.quotas.delay(principal, direction, size)
        if delay > 0 and self._on_throttle is not None:
            self._on_throttle(principal, direction, delay)
        return delay
