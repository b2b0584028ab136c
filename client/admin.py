"""AdminClient and AsyncAdminClient: topics, offsets and metadata."""

from __future__ import annotations

from collections.abc import Mapping

from google.protobuf import empty_pb2
from tidelog.v1 import admin_pb2, admin_pb2_grpc, broker_pb2, broker_pb2_grpc, records_pb2

from client._channel import DEFAULT_BOOTSTRAP, call, open_channel
from client._loop import LoopThread
from client.types import PartitionDescription, TopicDescription, TopicInfo

_POSITIONS = {"earliest": records_pb2.POSITION_EARLIEST, "latest": records_pb2.POSITION_LATEST}


def _topic_info(topic: admin_pb2.Topic) -> TopicInfo:
    return TopicInfo(topic.name, topic.partitions, dict(topic.configs))


class AsyncAdminClient:
    """Manage topics from asyncio code.

    >>> admin = AsyncAdminClient("127.0.0.1:50051")
    >>> await admin.create_topic("orders", partitions=3, configs={"retention.ms": "86400000"})
    """

    def __init__(self, bootstrap: str = DEFAULT_BOOTSTRAP, *, timeout: float = 30.0) -> None:
        self._channel = open_channel(bootstrap)
        self._admin = admin_pb2_grpc.AdminStub(self._channel)
        self._broker = broker_pb2_grpc.BrokerStub(self._channel)
        self._timeout = timeout

    async def create_topic(self, name: str, partitions: int = 1, configs: Mapping[str, str] | None = None) -> TopicInfo:
        """Create a topic; raises TopicExistsError, InvalidNameError, InvalidConfigError."""
        request = admin_pb2.CreateTopicRequest(name=name, partitions=partitions, configs=dict(configs or {}))
        return _topic_info(await call(self._admin.CreateTopic(request, timeout=self._timeout)))

    async def delete_topic(self, name: str) -> None:
        """Delete a topic and its records; raises TopicNotFoundError."""
        await call(self._admin.DeleteTopic(admin_pb2.DeleteTopicRequest(name=name), timeout=self._timeout))

    async def list_topics(self) -> list[TopicInfo]:
        """Every topic, sorted by name."""
        response = await call(self._admin.ListTopics(empty_pb2.Empty(), timeout=self._timeout))
        return [_topic_info(t) for t in response.topics]

    async def describe_topic(self, name: str) -> TopicDescription:
        """A topic with each partition's log start, high watermark and size."""
        response = await call(
            self._admin.DescribeTopic(admin_pb2.DescribeTopicRequest(name=name), timeout=self._timeout)
        )
        return TopicDescription(
            _topic_info(response.topic),
            [
                PartitionDescription(p.partition, p.log_start_offset, p.high_watermark, p.size_bytes)
                for p in response.partitions
            ],
        )

    async def alter_topic_configs(self, name: str, configs: Mapping[str, str]) -> TopicInfo:
        """Change some of a topic's configs; returns the effective configs."""
        request = admin_pb2.AlterTopicConfigsRequest(name=name, configs=dict(configs))
        return _topic_info(await call(self._admin.AlterTopicConfigs(request, timeout=self._timeout)))

    async def list_offset(
        self, topic: str, partition: int, *, position: str = "latest", timestamp_ms: int | None = None
    ) -> int:
        """The offset at `position` ("earliest"/"latest"), or of the first record at or after `timestamp_ms`."""
        request = broker_pb2.ListOffsetsRequest(topic=topic, partition=partition)
        if timestamp_ms is not None:
            request.timestamp_ms = timestamp_ms
        else:
            request.position = _POSITIONS[position]
        response = await call(self._broker.ListOffsets(request, timeout=self._timeout))
        return int(response.offset)

    async def partitions_for(self, topic: str) -> int:
        """How many partitions `topic` has (from GetMetadata)."""
        response = await call(
            self._broker.GetMetadata(broker_pb2.GetMetadataRequest(topics=[topic]), timeout=self._timeout)
        )
        return len(response.topics[0].partitions)

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncAdminClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class AdminClient:
    """Manage topics (blocking). The same methods as AsyncAdminClient.

    >>> with AdminClient("127.0.0.1:50051") as admin:
    ...     admin.create_topic("orders", partitions=3)
    """

    def __init__(self, bootstrap: str = DEFAULT_BOOTSTRAP, *, timeout: float = 30.0) -> None:
        self._loop = LoopThread("tidelog-admin")
        self._async = self._loop.run(self._open(bootstrap, timeout))

    @staticmethod
    async def _open(bootstrap: str, timeout: float) -> AsyncAdminClient:
        return AsyncAdminClient(bootstrap, timeout=timeout)

    def create_topic(self, name: str, partitions: int = 1, configs: Mapping[str, str] | None = None) -> TopicInfo:
        """Create a topic; raises TopicExistsError, InvalidNameError, InvalidConfigError."""
        return self._loop.run(self._async.create_topic(name, partitions, configs))

    def delete_topic(self, name: str) -> None:
        """Delete a topic and its records; raises TopicNotFoundError."""
        self._loop.run(self._async.delete_topic(name))

    def list_topics(self) -> list[TopicInfo]:
        """Every topic, sorted by name."""
        return self._loop.run(self._async.list_topics())

    def describe_topic(self, name: str) -> TopicDescription:
        """A topic with each partition's log start, high watermark and size."""
        return self._loop.run(self._async.describe_topic(name))

    def alter_topic_configs(self, name: str, configs: Mapping[str, str]) -> TopicInfo:
        """Change some of a topic's configs; returns the effective configs."""
        return self._loop.run(self._async.alter_topic_configs(name, configs))

    def list_offset(
        self, topic: str, partition: int, *, position: str = "latest", timestamp_ms: int | None = None
    ) -> int:
        """The offset at `position` ("earliest"/"latest"), or of the first record at or after `timestamp_ms`."""
        return self._loop.run(self._async.list_offset(topic, partition, position=position, timestamp_ms=timestamp_ms))

    def partitions_for(self, topic: str) -> int:
        """How many partitions `topic` has."""
        return self._loop.run(self._async.partitions_for(topic))

    def close(self) -> None:
        if self._loop.loop.is_closed():
            return
        self._loop.run(self._async.close())
        self._loop.close()

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
