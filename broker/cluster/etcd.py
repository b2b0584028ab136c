"""The control plane's store: etcd's v3 API, through aetcd (its channel and generated stubs).

Only what the control plane needs: a lease kept alive on one stream, puts bound to it, transactions
guarded by a key's create revision (the fence of a controller's writes), reads of a prefix at one
revision, and a watch of the prefix from the revision after.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aetcd
import grpc
import structlog
from aetcd import rpc

from tidelog.common.targets import grpc_target

log = structlog.get_logger("tidelog.cluster.etcd")


class LeaseLost(Exception):
    """The lease expired (or was revoked): every key bound to it is gone."""


@dataclass(frozen=True)
class Entry:
    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int


@dataclass(frozen=True)
class Change:
    """A watched key was put (value is not None) or deleted, at `revision`."""

    key: bytes
    value: bytes | None
    revision: int


def prefix_end(prefix: bytes) -> bytes:
    """The end of the key range of every key that starts with `prefix` (etcd's range_end)."""
    end = bytearray(prefix)
    for i in reversed(range(len(end))):
        if end[i] < 0xFF:
            end[i] += 1
            return bytes(end[: i + 1])
    return b"\x00"


class Etcd:
    def __init__(self, endpoints: str | Sequence[str], timeout_s: float = 5.0) -> None:
        # Several endpoints share one channel: the first that answers, the next when it fails.
        target = grpc_target([endpoints] if isinstance(endpoints, str) else list(endpoints))
        host, _, port = target.rpartition(":")  # aetcd dials f"{host}:{port}": the target, whole
        self._timeout_s = timeout_s  # on every unary call: etcd out of reach must not hang a caller
        self._client = aetcd.Client(host=host, port=int(port), timeout=timeout_s)

    async def connect(self) -> None:
        await self._client.connect()

    async def close(self) -> None:
        """Close the channel; bounded, since aetcd's watcher shutdown can wait on an etcd that is gone."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._client.close(), self._timeout_s)

    # -- leases --

    async def grant(self, ttl_s: int) -> int:
        response = await self._client.leasestub.LeaseGrant(rpc.LeaseGrantRequest(TTL=ttl_s), timeout=self._timeout_s)
        return int(response.ID)

    async def revoke(self, lease_id: int) -> None:
        await self._client.leasestub.LeaseRevoke(rpc.LeaseRevokeRequest(ID=lease_id), timeout=self._timeout_s)

    async def keep_alive(self, lease_id: int, every_s: float, on_renewed: Callable[[], None] | None = None) -> None:
        """Renew the lease every `every_s` on one stream until cancelled; LeaseLost once it has expired."""

        async def requests() -> AsyncIterator[Any]:
            while True:
                yield rpc.LeaseKeepAliveRequest(ID=lease_id)
                await asyncio.sleep(every_s)

        try:
            async for response in self._client.leasestub.LeaseKeepAlive(requests()):
                if response.TTL <= 0:
                    raise LeaseLost(f"lease {lease_id:x} expired")
                if on_renewed is not None:
                    on_renewed()
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.NOT_FOUND:
                raise LeaseLost(f"lease {lease_id:x} is gone: {err.details()}") from None
            raise
        raise LeaseLost(f"the keep-alive stream of lease {lease_id:x} ended")

    # -- reads and writes --

    async def put(self, key: bytes, value: bytes, lease_id: int = 0) -> int:
        """Put `key`; the revision of the write."""
        response = await self._client.kvstub.Put(
            rpc.PutRequest(key=key, value=value, lease=lease_id), timeout=self._timeout_s
        )
        return int(response.header.revision)

    async def get(self, key: bytes) -> Entry | None:
        response = await self._client.kvstub.Range(rpc.RangeRequest(key=key), timeout=self._timeout_s)
        return _entry(response.kvs[0]) if response.kvs else None

    async def list_prefix(self, prefix: bytes) -> tuple[list[Entry], int]:
        """Every key under `prefix`, and the revision they were read at."""
        response = await self._client.kvstub.Range(
            rpc.RangeRequest(key=prefix, range_end=prefix_end(prefix)), timeout=self._timeout_s
        )
        return [_entry(kv) for kv in response.kvs], int(response.header.revision)

    async def create(self, key: bytes, value: bytes, lease_id: int = 0) -> int | None:
        """Put `key` only if it does not exist; its create revision, or None when it exists."""
        request = rpc.TxnRequest(
            compare=[rpc.Compare(key=key, target=rpc.Compare.CREATE, result=rpc.Compare.EQUAL, create_revision=0)],
            success=[rpc.RequestOp(request_put=rpc.PutRequest(key=key, value=value, lease=lease_id))],
        )
        response = await self._client.kvstub.Txn(request, timeout=self._timeout_s)
        return int(response.header.revision) if response.succeeded else None

    async def put_if(
        self,
        *,
        created_at: dict[bytes, int] | None = None,
        modified_at: dict[bytes, int] | None = None,
        puts: list[tuple[bytes, bytes]],
        deletes: list[bytes] | None = None,
        delete_prefixes: list[bytes] | None = None,
    ) -> bool:
        """Write `puts` (and delete the keys `deletes`, and every key under `delete_prefixes`) in one
        transaction only while each key of `created_at` has that create revision (0: does not exist)
        and each of `modified_at` that mod revision; False when one does not."""
        revision = await self.put_if_revision(
            created_at=created_at, modified_at=modified_at, puts=puts, deletes=deletes, delete_prefixes=delete_prefixes
        )
        return revision is not None

    async def put_if_revision(
        self,
        *,
        created_at: dict[bytes, int] | None = None,
        modified_at: dict[bytes, int] | None = None,
        puts: list[tuple[bytes, bytes]],
        deletes: list[bytes] | None = None,
        delete_prefixes: list[bytes] | None = None,
    ) -> int | None:
        """`put_if`, answering the revision of the write (None when a compare failed)."""
        compares = [
            rpc.Compare(key=k, target=rpc.Compare.CREATE, result=rpc.Compare.EQUAL, create_revision=r)
            for k, r in (created_at or {}).items()
        ] + [
            rpc.Compare(key=k, target=rpc.Compare.MOD, result=rpc.Compare.EQUAL, mod_revision=r)
            for k, r in (modified_at or {}).items()
        ]
        success = [rpc.RequestOp(request_put=rpc.PutRequest(key=k, value=v)) for k, v in puts]
        success += [rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=k)) for k in deletes or ()]
        success += [
            rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=p, range_end=prefix_end(p)))
            for p in delete_prefixes or ()
        ]
        request = rpc.TxnRequest(compare=compares, success=success)
        response = await self._client.kvstub.Txn(request, timeout=self._timeout_s)
        return int(response.header.revision) if response.succeeded else None

    async def put_if_created_at(self, fence_key: bytes, create_revision: int, puts: list[tuple[bytes, bytes]]) -> bool:
        """Write `puts` in one transaction only while `fence_key` is the one created at `create_revision`
        (a controller's writes: the fence is its election key); False when fenced out."""
        return await self.put_if(created_at={fence_key: create_revision}, puts=puts)

    async def delete_if_created_at(self, key: bytes, create_revision: int) -> bool:
        """Delete `key` only while it is the one created at `create_revision`."""
        return await self.put_if(created_at={key: create_revision}, puts=[], deletes=[key])

    async def watch_prefix(self, prefix: bytes, start_revision: int) -> AsyncIterator[Change]:
        """The changes under `prefix` from `start_revision` on; aetcd's RevisionCompactedError when etcd
        has compacted that revision away (the caller lists again)."""
        watch = await self._client.watch_prefix(prefix, start_revision=start_revision)
        try:
            async for event in watch:
                kv = event.kv
                deleted = event.kind == aetcd.EventKind.DELETE
                yield Change(bytes(kv.key), None if deleted else bytes(kv.value), int(kv.mod_revision))
        finally:
            await watch.cancel()


def _entry(kv: Any) -> Entry:
    return Entry(bytes(kv.key), bytes(kv.value), int(kv.create_revision), int(kv.mod_revision))
