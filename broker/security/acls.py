"""Authorization: ACLs per principal on `cluster`, `topic` and `group` resources.

ACL file (--acls), one rule per line, `#` comments:

    allow alice produce topic:orders
    allow alice consume topic:orders-*      # a trailing * makes a prefix pattern
    allow alice consume group:billing
    deny  mallory * topic:*                 # * as the operation: every operation
    allow ops * cluster                     # ListTopics, ListGroups and every topic and group

Operations: produce, consume, create, delete, alter, describe (implied by the others but create, as
in Kafka). With ACLs on, what no rule allows is denied, a deny beats any allow, and a refusal says
the same whether the resource exists or not.
The principal is the token's (--auth-tokens) or the client certificate's CN (mTLS).
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from tidelog.broker.errors import BrokerError
from tidelog.broker.names import check_group_name, check_topic_name
from tidelog.common.reasons import Reason

log = structlog.get_logger("tidelog.acls")

OPERATIONS = frozenset({"produce", "consume", "create", "delete", "alter", "describe"})
RESOURCE_TYPES = frozenset({"cluster", "topic", "group"})
IMPLIES_DESCRIBE = frozenset({"describe", "produce", "consume", "alter", "delete"})

# The principal of the call being handled (set by the authentication interceptor).
current_principal: contextvars.ContextVar[str | None] = contextvars.ContextVar("principal", default=None)


@dataclass
class CallGrants:
    """Who a call is and what it was allowed to do: judged again when tokens or ACLs are reloaded,
    so a stream whose principal lost its token or its rights ends (broker.rpc)."""

    principal: str | None
    token_hash: str | None  # None: not authenticated by a token (mTLS, or authentication off)
    checks: list[tuple[str, str, str]] = field(default_factory=list)  # (operation, resource type, name)


current_grants: contextvars.ContextVar[CallGrants | None] = contextvars.ContextVar("grants", default=None)


@dataclass(frozen=True)
class Rule:
    allow: bool
    principal: str  # or "*": any authenticated principal
    operation: str  # or "*"
    resource_type: str
    pattern: str  # "name", "prefix*" or "*"; "" for cluster

    @property
    def text(self) -> str:
        """The rule as a line of the ACL file."""
        resource = self.resource_type if self.resource_type == "cluster" else f"{self.resource_type}:{self.pattern}"
        return f"{'allow' if self.allow else 'deny'} {self.principal} {self.operation} {resource}"

    def matches(self, principal: str, operation: str, resource_type: str, name: str) -> bool:
        if self.principal not in ("*", principal) or self.operation not in ("*", operation):
            return False
        if self.resource_type == "cluster":
            return True  # the cluster covers every resource
        if self.resource_type != resource_type:
            return False
        if self.pattern.endswith("*"):
            return name.startswith(self.pattern[:-1])
        return name == self.pattern


def parse(text: str, source: str = "ACL file") -> list[Rule]:
    rules = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        where = f"{source}:{number}"
        if len(parts) != 4 or parts[0] not in ("allow", "deny"):
            raise ValueError(f"{where}: expected `allow|deny PRINCIPAL OPERATION RESOURCE`, got {line!r}")
        effect, principal, operation, resource = parts
        if operation != "*" and operation not in OPERATIONS:
            raise ValueError(f"{where}: unknown operation {operation!r}: use {', '.join(sorted(OPERATIONS))} or *")
        resource_type, _, pattern = resource.partition(":")
        if resource_type not in RESOURCE_TYPES or (resource_type != "cluster" and not pattern):
            raise ValueError(f"{where}: resource must be `cluster`, `topic:PATTERN` or `group:PATTERN`")
        rules.append(Rule(effect == "allow", principal, operation, resource_type, pattern))
    return rules


class Authorizer:
    """The rules of the ACL file (reloaded on SIGHUP) and those added by CreateAcls (kept in LMDB)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file_rules: list[Rule] = []
        self.added_rules: list[Rule] = []
        self.reload()

    @property
    def rules(self) -> list[Rule]:
        return [*self.file_rules, *self.added_rules]

    def reload(self) -> None:
        self.file_rules = parse(self.path.read_text(), str(self.path))
        log.info("acls_loaded", path=str(self.path), rules=len(self.file_rules))

    def set_added(self, texts: list[str]) -> None:
        self.added_rules = parse("\n".join(texts), "stored ACLs")

    def allowed(self, principal: str, operation: str, resource_type: str, name: str) -> bool:
        # As in Kafka, being allowed to do anything with a resource lets one describe it.
        granting = IMPLIES_DESCRIBE if operation == "describe" else {operation}
        allows = any(r.allow and r.matches(principal, op, resource_type, name) for r in self.rules for op in granting)
        denies = any(not r.allow and r.matches(principal, operation, resource_type, name) for r in self.rules)
        return allows and not denies

    def may_produce_somewhere(self, principal: str) -> bool:
        """Kafka's rule for an idempotent producer id: produce on some topic (a cluster rule counts).
        Each allowing rule is judged on the topic name its pattern names (a prefix: the prefix itself)."""
        for rule in self.rules:
            if not rule.allow or rule.operation not in ("*", "produce") or rule.principal not in ("*", principal):
                continue
            name = "" if rule.resource_type == "cluster" else rule.pattern.removesuffix("*")
            if rule.resource_type in ("cluster", "topic") and self.allowed(principal, "produce", "topic", name):
                return True
        return False


# Set by the server when --acls is given; None: every authenticated call may do anything.
authorizer: Authorizer | None = None

_NAME_CHECKS = {"topic": check_topic_name, "group": check_group_name}


def _principal() -> str:
    return current_principal.get() or "anonymous"


def _refusal(principal: str, operation: str, what: str) -> BrokerError:
    return BrokerError(
        Reason.NOT_AUTHORIZED,
        f"principal {principal!r} may not {operation} {what}: ask for an ACL that allows it",
        principal=principal,
        operation=operation,
    )


def require(operation: str, resource_type: str, name: str = "") -> None:
    """Refuse the call being handled unless its principal may do `operation` on the resource.

    The name is checked first (INVALID_NAME says nothing of what exists); the refusal is worded the
    same whether the resource exists or not. What was allowed is recorded for a later reload to judge.
    """
    if resource_type in _NAME_CHECKS:
        _NAME_CHECKS[resource_type](name)
    grants = current_grants.get()
    if grants is not None:
        grants.checks.append((operation, resource_type, name))
    if authorizer is None:
        return
    principal = _principal()
    if not authorizer.allowed(principal, operation, resource_type, name):
        what = "the cluster" if resource_type == "cluster" else f"{resource_type} {name!r}"
        raise _refusal(principal, operation, what)


def permitted(operation: str, resource_type: str, name: str) -> bool:
    """May the call's principal do this? For leaving out what it may not see (no error, no trace)."""
    return authorizer is None or authorizer.allowed(_principal(), operation, resource_type, name)


def require_produce_somewhere() -> None:
    """InitProducer: an idempotent producer id is for a principal that may produce to some topic."""
    grants = current_grants.get()
    if grants is not None:
        grants.checks.append(("produce", "any-topic", ""))
    if authorizer is None:
        return
    principal = _principal()
    if not authorizer.may_produce_somewhere(principal):
        raise _refusal(principal, "produce", "any topic, so it gets no idempotent producer id")


def still_allowed(checks: list[tuple[str, str, str]], principal: str | None) -> bool:
    """Whether every check a call passed passes again (after the ACLs were reloaded)."""
    if authorizer is None:
        return True
    who = principal or "anonymous"
    for operation, resource_type, name in checks:
        if resource_type == "any-topic":
            if not authorizer.may_produce_somewhere(who):
                return False
        elif not authorizer.allowed(who, operation, resource_type, name):
            return False
    return True
