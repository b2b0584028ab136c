"""The topic a Kafka request names, judged as the gRPC API judges it: the name's rule, then the ACL,
and only then whether it exists, so a principal that may not see a topic cannot learn whether it does."""

from __future__ import annotations

import uuid

from tidelog.broker.errors import BrokerError
from tidelog.broker.kafka import codes
from tidelog.broker.log.topics import TopicRegistry, TopicState
from tidelog.broker.names import check_topic_name
from tidelog.broker.security.access import Access


def topic_refusal(access: Access, name: str | None, operation: str) -> tuple[int, str | None]:
    """The error code (and message) that refuses `operation` on the topic named, before anything is
    looked up (NONE when it may go on): a name against the rule, then the ACL."""
    if name is None:
        return codes.INVALID_TOPIC, "a topic needs a name"
    try:
        check_topic_name(name)
    except BrokerError as err:
        return codes.INVALID_TOPIC, err.message
    if not access.permitted(operation, "topic", name):
        return codes.TOPIC_AUTHORIZATION_FAILED, None
    return codes.NONE, None


def readable_topic(registry: TopicRegistry, access: Access, name: str | None, operation: str) -> TopicState | int:
    """The topic, or the error code that answers for it (the same whether it exists or not, when not allowed)."""
    refused, _ = topic_refusal(access, name, operation)
    if refused != codes.NONE or name is None:  # (a nameless topic is refused)
        return refused
    try:
        return registry.get(name)
    except BrokerError:
        return codes.UNKNOWN_TOPIC_OR_PARTITION


_TOPIC_IDS = uuid.UUID("5d1e6a2c-7b0f-4c41-9a52-6f8e3b7d1c20")  # the namespace of topic ids (uuid5)


def topic_uuid(topic: TopicState) -> uuid.UUID:
    """A Kafka topic id for a Tidelog topic: stable for its life, new when the name is created again."""
    return uuid.uuid5(_TOPIC_IDS, f"{topic.id}:{topic.name}")
