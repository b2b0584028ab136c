"""The topic a Kafka request names, judged as the gRPC API judges it: the name's rule, then the ACL,
and only then whether it exists, so a principal that may not see a topic cannot learn whether it does."""

from __future__ import annotations

from tidelog.broker.errors import BrokerError
from tidelog.broker.kafka import codes
from tidelog.broker.log.topics import TopicRegistry, TopicState
from tidelog.broker.names import check_topic_name
from tidelog.broker.security.access import Access


def readable_topic(registry: TopicRegistry, access: Access, name: str | None, operation: str) -> TopicState | int:
    """The topic, or the error code that answers for it (the same whether it exists or not, when not allowed)."""
    if name is None:
        return codes.INVALID_TOPIC
    try:
        check_topic_name(name)
    except BrokerError:
        return codes.INVALID_TOPIC
    if not access.permitted(operation, "topic", name):
        return codes.TOPIC_AUTHORIZATION_FAILED
    try:
        return registry.get(name)
    except BrokerError:
        return codes.UNKNOWN_TOPIC_OR_PARTITION
