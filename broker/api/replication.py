"""The ReplicationService: followers fetch from leaders (broker to broker; clients do not call it)."""

from __future__ import annotations

import grpc

from tidelog.broker.api.rpc import Context, Rpc
from tidelog.broker.cluster.replication import Replication
from tidelog.broker.security.access import Access
from tidelog.v1 import replication_pb2


class ReplicationService:
    def __init__(self, replication: Replication, rpc: Rpc, access: Access) -> None:
        self._replication = replication
        self._rpc = rpc
        self._access = access

    def handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        return {
            "ReplicaFetch": self._rpc.unary("ReplicaFetch", replication_pb2.ReplicaFetchRequest, self.replica_fetch)
        }

    async def replica_fetch(
        self, request: replication_pb2.ReplicaFetchRequest, context: Context
    ) -> replication_pb2.ReplicaFetchResponse:
        self._access.require("alter", "cluster")  # brokers only: a client principal has no business here
        return await self._replication.fetch(request)
