"""Kafka's InitProducerId, for idempotent producers: an id from the same source as the gRPC API's
InitProducer (so ids never collide across protocols), at epoch 0.

As Kafka's broker does for a producer without a transactional id, every call gets a new id, also one
that names its old id and epoch (version 3+, KIP-360): so no client can bump, and fence, another's
epoch. Epochs still matter to the log: a producer may bump its own (librdkafka does, after an
unresolved failure) and start its sequences again at 0 (log.ops). Transactional ids are refused:
this broker has no transactions yet.
"""

from __future__ import annotations

from typing import Any

from tidelog.broker.cluster.producer_ids import ProducerIds
from tidelog.broker.errors import BrokerError
from tidelog.broker.kafka import codes
from tidelog.broker.kafka.caller import Caller
from tidelog.broker.security.access import Access


class KafkaProducerIds:
    def __init__(self, producer_ids: ProducerIds, access: Access) -> None:
        self._producer_ids = producer_ids
        self._access = access

    async def __call__(self, request: dict[str, Any], version: int, caller: Caller) -> dict[str, Any]:
        answer = {"throttle_time_ms": 0, "error_code": codes.NONE, "producer_id": -1, "producer_epoch": -1}
        if request["transactional_id"] is not None:
            return {**answer, "error_code": codes.TRANSACTIONAL_ID_AUTHORIZATION_FAILED}
        try:
            self._access.require_produce_somewhere()
        except BrokerError:
            return {**answer, "error_code": codes.CLUSTER_AUTHORIZATION_FAILED}
        try:
            new_id = await self._producer_ids.next_id()
        except BrokerError as err:
            return {**answer, "error_code": codes.of(err)}
        return {**answer, "producer_id": new_id, "producer_epoch": 0}
