"""Kafka's Fetch: stored Kafka batches passed through as they are, gRPC ones converted (log.formats).

A fetch answers at once when it has `min_bytes`, else waits up to `max_wait_ms` for any of its
partitions to grow. Batches come whole, from the one holding the fetch offset (the client skips the
records before it, as with Kafka's brokers); each partition gets up to its `partition_max_bytes`
and the answer up to `max_bytes`, except that the first batch found always comes whole (KIP-74), so
a batch larger than the limits is never stuck.

There are no fetch sessions (KIP-227): session id 0 tells the client every fetch is a full one.
Without transactions, read_committed reads up to the high watermark too.
"""

from __future__ import annotations

import time
from typing import Any

from tidelog.broker import config
from tidelog.broker.errors import BrokerError
from tidelog.broker.kafka import codes
from tidelog.broker.kafka.caller import Caller
from tidelog.broker.kafka.cluster_view import KafkaCluster
from tidelog.broker.kafka.topics import readable_topic
from tidelog.broker.log.service import Log
from tidelog.broker.log.topics import PartitionState, TopicState
from tidelog.broker.log.wakeups import wait_any
from tidelog.broker.metrics import Metrics
from tidelog.broker.security.access import Access


class KafkaFetch:
    def __init__(self, log_: Log, access: Access, metrics: Metrics, cluster: KafkaCluster) -> None:
        self._log = log_
        self._access = access
        self._metrics = metrics
        self._cluster = cluster

    async def __call__(self, request: dict[str, Any], version: int, caller: Caller) -> dict[str, Any]:
        if request["session_id"] != 0:  # only a session this broker made could be named, and it makes none
            return {"error_code": codes.FETCH_SESSION_ID_NOT_FOUND, "session_id": 0, "responses": []}
        wanted = []
        for topic_data in request["topics"]:
            name = topic_data["topic"]
            topic = readable_topic(self._log.registry, self._access, name, "consume")
            wanted.append((name, topic, topic_data["partitions"]))
        max_wait_s = min(max(request["max_wait_ms"], 0), config.MAX_FETCH_WAIT_MS) / 1000
        deadline = time.monotonic() + max_wait_s
        while True:
            responses, size, waiting_on = self._read(wanted, max(request["max_bytes"], 0))
            remaining = deadline - time.monotonic()
            if size >= request["min_bytes"] or remaining <= 0 or not waiting_on:
                throttle_ms = round(self._access.quota_delay("consume", size) * 1000)
                return {
                    "throttle_time_ms": throttle_ms,
                    "error_code": codes.NONE,
                    "session_id": 0,
                    "responses": responses,
                }
            await wait_any(waiting_on, remaining)

    def _read(
        self, wanted: list[tuple[str, TopicState | int, list[dict[str, Any]]]], max_bytes: int
    ) -> tuple[list[dict[str, Any]], int, list[PartitionState]]:
        """Every partition's answer, the bytes in them, and the partitions a wait would be woken by."""
        responses = []
        total = 0
        waiting_on: list[PartitionState] = []
        for name, topic, asked in wanted:
            answers = []
            for fetch in asked:
                index = fetch["partition"]
                answer: dict[str, Any] = {
                    "partition_index": index, "error_code": codes.NONE, "high_watermark": -1,
                    "last_stable_offset": -1, "log_start_offset": -1, "aborted_transactions": None,
                    "preferred_read_replica": -1, "records": b"",
                }  # fmt: skip
                answers.append(answer)
                if isinstance(topic, int):
                    answer["error_code"] = topic
                    continue
                if topic.deleted or not 0 <= index < len(topic.partitions):
                    answer["error_code"] = codes.UNKNOWN_TOPIC_OR_PARTITION
                    continue
                try:
                    self._cluster.refuse_unless_leader(topic, index)
                except BrokerError as err:
                    answer["error_code"] = codes.of(err)
                    continue
                partition = topic.partitions[index]
                answer["high_watermark"] = answer["last_stable_offset"] = partition.high_watermark
                answer["log_start_offset"] = partition.log_start_offset
                offset = fetch["fetch_offset"]
                if not partition.log_start_offset <= offset <= partition.log_end:
                    answer["error_code"] = codes.OFFSET_OUT_OF_RANGE
                    continue
                room = min(fetch["partition_max_bytes"], max_bytes - total)
                if offset >= partition.high_watermark or (room <= 0 and total):
                    waiting_on.append(partition)
                    continue
                read = self._log.read_kafka(topic, partition, offset, max(room, 0))
                if total and read.batches and len(read.batches[0]) > room:
                    continue  # only the first batch of a fetch may pass the limits (KIP-74)
                records = b"".join(read.batches)
                answer["records"] = records
                total += len(records)
                self._metrics.fetched(name, read.next_offset - offset, len(records))
            responses.append({"topic": name, "partitions": answers})
        return responses, total, waiting_on
