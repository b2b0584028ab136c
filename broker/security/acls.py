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
