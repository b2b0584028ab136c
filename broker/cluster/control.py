"""A broker's place in a cluster, kept in etcd: its registration, the controller election, and a cache
of the cluster's metadata.

- Registration: `/{cluster}/brokers/{id}` = its advertised address, bound to the broker's lease, so a
  broker that dies (or stops renewing: a long pause) drops out after the lease's TTL.
- Election: `/{cluster}/controller` = the controller's id, created by a transaction that succeeds only
  when the key does not exist, bound to the winner's lease. The key's create revision is the election
  revision, and every controller write is a transaction that compares it: a lock alone is no mutual
  exclusion (a controller paused past its lease would write on when it wakes), the revision is.
- Cache: every key under `/{cluster}/`, listed at one revision and kept by a watch from the next
  one; listed again if etcd has compacted the watched revision away.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any

import aetcd
import grpc
import structlog

from tidelog.broker.cluster.etcd import Entry, Etcd, LeaseLost
from tidelog.broker.cluster.metadata import (
    PartitionState,
    TopicSpec,
    after_broker_loss,
    after_broker_return,
    after_reassignment,
    assign_replicas,
    moving_to,
)
from tidelog.broker.errors import BrokerError
from tidelog.common.reasons import Reason

log = structlog.get_logger("tidelog.cluster")

# After a lost lease, a failed keep-alive stream or etcd out of reach: wait this long, then try again.
RETRY_S = 0.2
# etcd out of reach, or refusing a request (grpc's own errors: the stubs are called directly).
ETCD_ERRORS = (aetcd.exceptions.ClientError, grpc.aio.AioRpcError, OSError)


@contextlib.contextmanager
def etcd_unavailable(what: str) -> Iterator[None]:
    """Answer CLUSTER_UNAVAILABLE (retriable) when etcd fails under a request: `what` could not be done."""
    try:
        yield
    except ETCD_ERRORS as err:
        raise BrokerError(
            Reason.CLUSTER_UNAVAILABLE, f"{what}: the cluster's metadata store (etcd) did not answer ({err}); retry"
        ) from None


@dataclass(frozen=True)
class ClusterKeys:
    cluster: str

    @property
    def prefix(self) -> bytes:
        return f"/{self.cluster}/".encode()

    @property
    def controller(self) -> bytes:
        return self.prefix + b"controller"

    @property
    def brokers(self) -> bytes:
        return self.prefix + b"brokers/"

    def broker(self, broker_id: int) -> bytes:
        return self.brokers + str(broker_id).encode()

    def replication(self, broker_id: int) -> bytes:
        """A broker's replication address, where it differs from its advertised one (under its lease)."""
        return self.prefix + b"replication/" + str(broker_id).encode()

    @property
    def kafka_addresses(self) -> bytes:
        """Brokers' Kafka listener addresses, those that have one (under their leases)."""
        return self.prefix + b"kafka/"

    def kafka_address(self, broker_id: int) -> bytes:
        return self.kafka_addresses + str(broker_id).encode()

    @property
    def topic_ids(self) -> bytes:
        return self.prefix + b"ids/topic"

    @property
    def producer_ids(self) -> bytes:
        return self.prefix + b"ids/producer"

    @property
    def topics(self) -> bytes:
        return self.prefix + b"topics/"

    def topic(self, name: str) -> bytes:
        return self.topics + name.encode()

    @property
    def partitions(self) -> bytes:
        return self.prefix + b"partitions/"

    @property
    def groups(self) -> bytes:
        """Consumer groups: beside the cluster's prefix, not under it, so no broker's metadata watch
        carries every offset commit."""
        return f"/{self.cluster}:groups/".encode()

    def group_coordinator(self, group: str) -> bytes:
        return self.groups + group.encode() + b"/coordinator"

    def group_offsets(self, group: str) -> bytes:
        return self.groups + group.encode() + b"/offsets/"

    def group_offset(self, group: str, topic_id: int, partition: int) -> bytes:
        return self.group_offsets(group) + f"{topic_id}/{partition}".encode()

    def partition(self, topic_id: int, partition: int) -> bytes:
        return self.partitions + f"{topic_id}/{partition}".encode()

    def topic_partitions(self, topic_id: int) -> bytes:
        return self.partitions + f"{topic_id}/".encode()

    @property
    def reassignments(self) -> bytes:
        return self.prefix + b"reassignments/"

    def topic_reassignments(self, topic_id: int) -> bytes:
        return self.reassignments + f"{topic_id}/".encode()

    def reassignment(self, topic_id: int, partition: int) -> bytes:
        return self.topic_reassignments(topic_id) + str(partition).encode()

    @property
    def deleted(self) -> bytes:
        """Tombstones of deleted topics, by id (ids are never reused): every broker drops its copy."""
        return self.prefix + b"deleted/"


def topic_partition_of(key: bytes, prefix: bytes) -> tuple[int, int]:
    """The (topic id, partition) a `{prefix}{topic_id}/{partition}` key names."""
    topic_id, partition = key[len(prefix) :].decode().split("/")
    return int(topic_id), int(partition)


class TopicExists(Exception):
    pass


class TopicMissing(Exception):
    pass


class MetadataCache:
    """Every key under the cluster's prefix, as of `revision` (the event loop's view)."""

    def __init__(self, etcd: Etcd, prefix: bytes) -> None:
        self._etcd = etcd
        self._prefix = prefix
        self.entries: dict[bytes, bytes] = {}
        self.created: dict[bytes, int] = {}  # key -> its create revision
        self.modified: dict[bytes, int] = {}  # key -> its last mod revision
        self.revision = 0
        self.version = 0  # counts the changes applied
        self._changed = asyncio.Event()

    async def run(self) -> None:
        """List, then watch; list again when the watched revision was compacted (until cancelled)."""
        while True:
            try:
                entries, revision = await self._etcd.list_prefix(self._prefix)
                self._replace(entries, revision)
                async for change in self._etcd.watch_prefix(self._prefix, revision + 1):
                    if change.value is None:
                        self.entries.pop(change.key, None)
                        self.created.pop(change.key, None)
                        self.modified.pop(change.key, None)
                    else:
                        if change.key not in self.entries:
                            self.created[change.key] = change.revision
                        self.entries[change.key] = change.value
                        self.modified[change.key] = change.revision
                    self.revision = max(self.revision, change.revision)
                    self._notify()
            except aetcd.exceptions.RevisionCompactedError:
                log.info("metadata_relist", reason="compacted", revision=self.revision)
            except ETCD_ERRORS as err:
                log.warning("metadata_watch_lost", error=str(err), retry_in_s=RETRY_S)
                await asyncio.sleep(RETRY_S)

    def _replace(self, entries: list[Entry], revision: int) -> None:
        self.entries = {e.key: e.value for e in entries}
        self.created = {e.key: e.create_revision for e in entries}
        self.modified = {e.key: e.mod_revision for e in entries}
        self.revision = revision
        self._notify()

    def _notify(self) -> None:
        self.version += 1
        self._changed.set()
        self._changed = asyncio.Event()

    async def changed_since(self, version: int) -> None:
        """Until the cache has changed since it was at `version` (read `version` before looking at the
        cache: a change in between is not missed, as waiting for "the next change" would)."""
        while self.version <= version:
            await self._changed.wait()


@dataclass(frozen=True)
class Election:
    broker_id: int
    revision: int  # the controller key's create revision: the fence of this controller's writes


class ControlPlane:
    """One broker's registration, campaign and metadata cache; `start()` and `stop()` on its event loop."""

    def __init__(
        self,
        etcd: Etcd,
        cluster: str,
        broker_id: int,
        address: str,
        lease_ttl_s: int,
        replication_address: str = "",
        kafka_address: str = "",
    ) -> None:
        self._etcd = etcd
        self.keys = ClusterKeys(cluster)
        self.broker_id = broker_id
        self.address = address
        self._replication_address = replication_address
        self._kafka_address = kafka_address
        self._ttl_s = lease_ttl_s
        self.cache = MetadataCache(etcd, self.keys.prefix)
        self.lease_id = 0
        self.election: Election | None = None  # set while this broker is the controller
        self._tasks: list[asyncio.Task[None]] = []
        self._session_lost = asyncio.Event()
        self.session_listeners: list[Callable[[], None]] = []  # told when a session (and its lease) ends

    async def start(self) -> None:
        await self._etcd.connect()
        self._spawn(self.cache.run())
        self._spawn(self._session())

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self._tasks.append(asyncio.create_task(coro))

    async def stop(self, leave: bool = True) -> None:
        """Stop (once); with `leave`, revoke the lease at once (others need not wait for its TTL)."""
        tasks, self._tasks = self._tasks, []
        if not tasks:
            return
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if leave and self.lease_id:
            with contextlib.suppress(*ETCD_ERRORS):
                await self._etcd.revoke(self.lease_id)
        self.election = None
        await self._etcd.close()

    # -- the session: a lease, the registration under it, and the campaign ---------------

    async def _session(self) -> None:
        while True:
            try:
                self.lease_id = await self._etcd.grant(self._ttl_s)
                if self._replication_address:  # before the registration: a follower never dials the wrong one
                    key = self.keys.replication(self.broker_id)
                    await self._etcd.put(key, self._replication_address.encode(), self.lease_id)
                if self._kafka_address:
                    key = self.keys.kafka_address(self.broker_id)
                    await self._etcd.put(key, self._kafka_address.encode(), self.lease_id)
                await self._etcd.put(self.keys.broker(self.broker_id), self.address.encode(), self.lease_id)
                log.info("broker_registered", broker_id=self.broker_id, lease=f"{self.lease_id:x}")
                async with asyncio.TaskGroup() as group:
                    group.create_task(self._etcd.keep_alive(self.lease_id, self._ttl_s / 3))
                    group.create_task(self._campaign())
            except* LeaseLost as lost:
                log.warning("broker_lease_lost", broker_id=self.broker_id, error=str(lost.exceptions[0]))
            except* ETCD_ERRORS as failed:
                log.warning("cluster_session_failed", broker_id=self.broker_id, error=str(failed.exceptions[0]))
            self.election = None
            self.lease_id = 0
            for listener in self.session_listeners:
                listener()
            await asyncio.sleep(RETRY_S)

    async def _campaign(self) -> None:
        """Become the controller when there is none; stay it while the key is ours."""
        key = self.keys.controller
        while True:
            revision = await self._etcd.create(key, str(self.broker_id).encode(), self.lease_id)
            if revision is None:  # another broker is the controller: campaign again once its key is gone
                current = await self._etcd.get(key)
                seen = current.mod_revision if current is not None else 0
                await self._wait_for(functools.partial(self._gone_since, key, seen))
                continue
            self.election = Election(self.broker_id, revision)
            log.info("controller_elected", broker_id=self.broker_id, election_revision=revision)
            duties = asyncio.create_task(self._lead())
            try:
                await self._wait_for(functools.partial(self._lost, key, revision))
            finally:
                duties.cancel()
                await asyncio.gather(duties, return_exceptions=True)
            log.info("controller_resigned", broker_id=self.broker_id, election_revision=revision)
            self.election = None

    def _gone_since(self, key: bytes, seen: int) -> bool:
        """The cache has caught up with revision `seen` and `key` is not there (any more)."""
        return self.cache.revision >= seen and key not in self.cache.entries

    def _lost(self, key: bytes, revision: int) -> bool:
        """The controller key is no longer the one created at `revision` (as far as the cache knows)."""
        return self.cache.revision >= revision and self.cache.created.get(key) != revision

    async def _wait_for(self, condition: Callable[[], bool]) -> None:
        while True:
            seen = self.cache.version
            if condition():
                return
            await self.cache.changed_since(seen)

    # -- the controller's duties --------------------------------------------------------

    async def _lead(self) -> None:
        """While the controller: bring every partition in line with the live brokers, at each change."""
        while self.election is not None:
            seen = self.cache.version
            await self._reconcile()
            await self.cache.changed_since(seen)

    async def _reconcile(self) -> None:
        live = set(self.brokers())
        for key, state in self.partition_states().items():
            new = after_broker_loss(state, live) or after_broker_return(state, live)
            if new is None:
                continue
            written = await self._fenced_write([(key, new.encode())], {key: self.cache.modified[key]})
            if written:
                log.info(
                    "partition_led", partition=key.decode(), leader=new.leader, epoch=new.leader_epoch, isr=new.isr
                )
            if self.election is None:
                return
        await self._complete_reassignments()

    async def _complete_reassignments(self) -> None:
        """A reassignment whose target replicas are all in sync is done: they become the replicas."""
        for (topic_id, partition), target in self.reassignments_by_id().items():
            key = self.keys.partition(topic_id, partition)
            state = self.partition_state(topic_id, partition)
            done = after_reassignment(state, target) if state is not None else None
            if done is None:
                continue
            move = self.keys.reassignment(topic_id, partition)
            modified = {key: self.cache.modified[key], move: self.cache.modified[move]}
            if await self._fenced_write([(key, done.encode())], modified, deletes=[move]):
                log.info("partition_reassigned", partition=key.decode(), replicas=done.replicas, leader=done.leader)
            if self.election is None:
                return

    async def _fenced_write(
        self, puts: list[tuple[bytes, bytes]], modified_at: dict[bytes, int], deletes: list[bytes] | None = None
    ) -> bool:
        """A controller write: only under this election, and only over the versions it read."""
        election = self.election
        if election is None:
            return False
        fence = {self.keys.controller: election.revision}
        if await self._etcd.put_if(created_at=fence, modified_at=modified_at, puts=puts, deletes=deletes):
            return True
        current = await self._etcd.get(self.keys.controller)
        if current is None or current.create_revision != election.revision:
            log.warning("controller_fenced", broker_id=self.broker_id, election_revision=election.revision)
            self.election = None
        return False  # fenced, or a key changed since it was read: the next change tries again

    # -- topics (any broker) ---------------------------------------------------------

    async def create_topic(
        self, name: str, partitions: int, replication_factor: int, configs: dict[str, str]
    ) -> TopicSpec:
        """Place the replicas over the live brokers and create the topic with its partitions in one
        transaction; TopicExists if another broker created it first, ValueError if too few brokers live."""
        placement = assign_replicas(list(self.brokers()), partitions, replication_factor)
        spec = TopicSpec(await self._bump(self.keys.topic_ids, 1), name, partitions, replication_factor, configs)
        puts = [(self.keys.topic(name), spec.encode())]
        for p, replicas in enumerate(placement):
            state = PartitionState(replicas, replicas[0], 0, replicas)
            puts.append((self.keys.partition(spec.id, p), state.encode()))
        if not await self._etcd.put_if(created_at={self.keys.topic(name): 0}, puts=puts):
            raise TopicExists(name)
        return spec

    async def delete_topic(self, name: str) -> TopicSpec:
        """Delete the topic and its partitions' states, leaving a tombstone of its id (one transaction,
        over the version read); TopicMissing when there is none."""

        def deletion(spec: TopicSpec) -> tuple[TopicSpec, dict[str, Any]]:
            return spec, {
                "puts": [(self.keys.deleted + str(spec.id).encode(), name.encode())],
                "deletes": [self.keys.topic(name)],
                "delete_prefixes": [
                    self.keys.topic_partitions(spec.id),
                    self.keys.topic_reassignments(spec.id),
                ],
            }

        return await self._rewrite_topic(name, deletion)

    async def alter_topic_configs(self, name: str, configs: dict[str, str]) -> TopicSpec:
        """Merge `configs` into the topic's; TopicMissing when there is none."""

        def alteration(spec: TopicSpec) -> tuple[TopicSpec, dict[str, Any]]:
            altered = TopicSpec(spec.id, name, spec.partitions, spec.replication_factor, {**spec.configs, **configs})
            return altered, {"puts": [(self.keys.topic(name), altered.encode())]}

        return await self._rewrite_topic(name, alteration)

    async def _rewrite_topic(
        self, name: str, rewrite: Callable[[TopicSpec], tuple[TopicSpec, dict[str, Any]]]
    ) -> TopicSpec:
        """Read the topic and write what `rewrite` makes of it (put_if's arguments) over the version read,
        reading again after a race; what `rewrite` answered, or TopicMissing."""
        key = self.keys.topic(name)
        while True:
            entry = await self._etcd.get(key)
            if entry is None:
                raise TopicMissing(name)
            result, writes = rewrite(TopicSpec.decode(name, entry.value))
            if await self._etcd.put_if(modified_at={key: entry.mod_revision}, **writes):
                return result

    async def reassign(self, topic_id: int, partition: int, target: tuple[int, ...]) -> bool:
        """Start moving the partition to `target`: its first step, and the target the controller
        completes (compare-and-swap on the partition's state, retried); False when it has none."""
        key = self.keys.partition(topic_id, partition)
        while True:
            entry = await self._etcd.get(key)
            if entry is None:
                return False
            state = PartitionState.decode(entry.value)
            puts = [
                (key, moving_to(state, target).encode()),
                (self.keys.reassignment(topic_id, partition), json.dumps(list(target)).encode()),
            ]
            if await self._etcd.put_if(modified_at={key: entry.mod_revision}, puts=puts):
                return True

    def reassignments_by_id(self) -> dict[tuple[int, int], tuple[int, ...]]:
        """The reassignments under way: (topic id, partition) -> target replicas."""
        prefix = self.keys.reassignments
        return {
            topic_partition_of(key, prefix): tuple(json.loads(value))
            for key, value in self.cache.entries.items()
            if key.startswith(prefix)
        }

    def deleted_topic_ids(self) -> set[int]:
        prefix = self.keys.deleted
        return {int(key[len(prefix) :]) for key in self.cache.entries if key.startswith(prefix)}

    async def producer_id_block(self, size: int) -> range:
        """`size` producer ids no other broker hands out (a producer may meet any partition's leader)."""
        last = await self._bump(self.keys.producer_ids, size)
        return range(last - size + 1, last + 1)

    async def _bump(self, key: bytes, by: int) -> int:
        """Raise the counter at `key` by `by` (compare-and-swap, retried); its new value."""
        while True:
            current = await self._etcd.get(key)
            last = int(current.value) if current is not None else 0
            bump = [(key, str(last + by).encode())]
            if current is None:
                written = await self._etcd.put_if(created_at={key: 0}, puts=bump)
            else:
                written = await self._etcd.put_if(modified_at={key: current.mod_revision}, puts=bump)
            if written:
                return last + by

    def topics(self) -> dict[str, TopicSpec]:
        prefix = self.keys.topics
        return {
            key[len(prefix) :].decode(): TopicSpec.decode(key[len(prefix) :].decode(), value)
            for key, value in self.cache.entries.items()
            if key.startswith(prefix)
        }

    def partition_states(self) -> dict[bytes, PartitionState]:
        prefix = self.keys.partitions
        return {key: PartitionState.decode(v) for key, v in self.cache.entries.items() if key.startswith(prefix)}

    def partitions_by_id(self) -> dict[tuple[int, int], PartitionState]:
        """Every partition's state by (topic id, partition)."""
        prefix = self.keys.partitions
        return {topic_partition_of(key, prefix): state for key, state in self.partition_states().items()}

    def partition_state(self, topic_id: int, partition: int) -> PartitionState | None:
        value = self.cache.entries.get(self.keys.partition(topic_id, partition))
        return PartitionState.decode(value) if value is not None else None

    async def alter_partition(
        self, topic_id: int, partition: int, seen: PartitionState, new: PartitionState
    ) -> int | None:
        """A partition leader's change of its ISR: written only over the state it decided on (`seen`,
        as this broker's cache holds it), so a controller's election in between, or a zombie leader's
        stale view, makes it fail instead of overwriting (Kafka's ZooKeeper-era ISR update, by version).
        The revision of the write, or None when it was refused."""
        key = self.keys.partition(topic_id, partition)
        if self.partition_state(topic_id, partition) != seen:
            return None
        return await self._etcd.put_if_revision(modified_at={key: self.cache.modified[key]}, puts=[(key, new.encode())])

    def partition_revision(self, topic_id: int, partition: int) -> int:
        """The revision of the partition's state as this broker's cache holds it."""
        return self.cache.modified.get(self.keys.partition(topic_id, partition), 0)

    # -- what the broker asks --------------------------------------------------------

    @property
    def is_controller(self) -> bool:
        return self.election is not None

    def controller_id(self) -> int | None:
        value = self.cache.entries.get(self.keys.controller)
        return int(value) if value is not None else None

    def brokers(self) -> dict[int, str]:
        """The registered brokers (those whose lease lives): id -> advertised address."""
        return self._by_broker(self.keys.brokers)

    def _by_broker(self, prefix: bytes) -> dict[int, str]:
        """broker id -> value, of the keys `prefix` + id."""
        return {
            int(key[len(prefix) :]): value.decode()
            for key, value in self.cache.entries.items()
            if key.startswith(prefix)
        }

    def kafka_brokers(self) -> dict[int, str]:
        """The registered brokers' Kafka listener addresses: id -> address."""
        live = self.brokers()
        return {b: address for b, address in self._by_broker(self.keys.kafka_addresses).items() if b in live}

    def replication_address(self, broker_id: int) -> str:
        """Where to replicate from broker `broker_id` ("" when it is not registered)."""
        own = self.cache.entries.get(self.keys.replication(broker_id))
        return own.decode() if own is not None else self.brokers().get(broker_id, "")

    async def controller_write(self, puts: list[tuple[bytes, bytes]]) -> bool:
        """Write as the controller, fenced by the election revision; False (and no longer the controller)
        when another broker holds the election now."""
        election = self.election
        if election is None:
            return False
        written = await self._etcd.put_if_created_at(self.keys.controller, election.revision, puts)
        if not written:
            log.warning("controller_fenced", broker_id=self.broker_id, election_revision=election.revision)
            self.election = None
        return written
