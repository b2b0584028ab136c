"""Tidelog's Python SDK.

    from tidelog import Producer, Consumer, AdminClient

Every client takes the broker address first (``"127.0.0.1:50051"`` by default)
and has an asyncio twin (AsyncProducer, AsyncConsumer, AsyncAdminClient).
Errors are TidelogError subclasses (``tidelog.errors``).
"""

from tidelog.admin import AdminClient, AsyncAdminClient
from tidelog.consumer import AsyncConsumer, Consumer
from tidelog.errors import TidelogError
from tidelog.producer import AsyncProducer, Producer, RecordFuture, RecordFutures
from tidelog.types import Message, MessageBatch, RecordMetadata, TopicDescription, TopicInfo, TopicPartition

__all__ = [
    "AdminClient",
    "AsyncAdminClient",
    "AsyncConsumer",
    "AsyncProducer",
    "Consumer",
    "Message",
    "MessageBatch",
    "Producer",
    "RecordFuture",
    "RecordFutures",
    "RecordMetadata",
    "TidelogError",
    "TopicDescription",
    "TopicInfo",
    "TopicPartition",
]
