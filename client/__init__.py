"""Tidelog's Python SDK.

    from client import Producer, Consumer, AdminClient

Every client takes the broker address first (``"127.0.0.1:50051"`` by default)
and has an asyncio twin (AsyncProducer, AsyncConsumer, AsyncAdminClient).
Errors are TidelogError subclasses (``client.errors``).
"""

from client.admin import AdminClient, AsyncAdminClient
from client.consumer import AsyncConsumer, Consumer
from client.errors import TidelogError
from client.producer import AsyncProducer, Producer, RecordFuture, RecordFutures
from client.types import Message, MessageBatch, RecordMetadata, TopicDescription, TopicInfo, TopicPartition

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
