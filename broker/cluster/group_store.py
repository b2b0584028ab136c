"""Consumer groups in a cluster: which broker coordinates each group, and the group's committed
offsets, both in etcd (beside the cluster's watched prefix).

- Claim: the first broker a group's member or admin call reaches creates
  `/{cluster}:groups/{group}/coordinator` = its id, bound to its lease, so the claim dies with the
  broker (or a pause past the lease). The key's create revision fences the claim, as the controller
  key fences the controller: every write of the group's offsets is a transaction that compares it,
  so a coordinator that lost its claim can never write again. The others answer NOT_COORDINATOR
  with the holder's address.
- Generations: `create revision << 24` plus the coordinator's counter. A later claim has a higher
  create revision, so a group's generations only ever grow across coordinator moves, without a write.
- Offsets: one key per partition, read once when the group is claimed (after the claim: every commit
  of the last coordinator is in) and kept in memory; a commit writes only the partitions it raises,
  in one fenced transaction, in the order commits arrive. Stored offsets never move backwards except
  by an admin reset.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from tidelog.broker.cluster.control import ETCD_ERRORS, ControlPlane, etcd_unavailable, topic_partition_of
from tidelog.broker.cluster.etcd import Etcd
from tidelog.broker.errors import BrokerError
from tidelog.broker.groups.offsets import Entries
from tidelog.broker.names import check_group_name
from tidelog.common.reasons import Reason

log = structlog.get_logger("tidelog.cluster.groups")

GENERATION_SHIFT = 24  # room for 16M rebalances under one claim
CLAIM_TRIES = 3


@dataclass
class _Claim:
    lease_id: int
    revision: int  # the coordinator key's create revision: the fence of this claim's writes
    offsets: dict[tuple[int, int], int] = field(default_factory=dict)
    writes: asyncio.Lock = field(default_factory=asyncio.Lock)  # one write at a time, in arrival order

    @property
    def base(self) -> int:
        return self.revision << GENERATION_SHIFT


class EtcdGroups:
    """The GroupPlacement and OffsetStore of a clustered broker (event loop only)."""

    def __init__(self, control: ControlPlane, etcd: Etcd) -> None:
        self._control = control
        self._etcd = etcd
        self._keys = control.keys
        self._claims: dict[str, _Claim] = {}
        self._claiming: dict[str, asyncio.Lock] = {}
        self._listeners: list[Callable[[str], None]] = []
        control.session_listeners.append(self._session_ended)

    # -- GroupPlacement ---------------------------------------------------------------

    @property
    def clustered(self) -> bool:
        return True

    def on_lost(self, listener: Callable[[str], None]) -> None:
        self._listeners.append(listener)

    def coordinates(self, group: str) -> bool:
        claim = self._claims.get(group)
        return claim is not None and claim.lease_id == self._control.lease_id

    async def coordinate(self, group: str) -> int:
        check_group_name(group)  # before a key is named after it
        if self.coordinates(group):
            return self._claims[group].base
        lock = self._claiming.setdefault(group, asyncio.Lock())
        async with lock:
            if self.coordinates(group):  # claimed while this call waited
                return self._claims[group].base
            if group in self._claims:  # a claim under an ended lease
                self._lose(group)
            with etcd_unavailable(f"group {group!r} has no coordinator"):
                return (await self._claim(group)).base

    async def _claim(self, group: str) -> _Claim:
        key, me = self._keys.group_coordinator(group), self._control.broker_id
        for _ in range(CLAIM_TRIES):
            lease_id = self._control.lease_id
            if not lease_id:
                break  # not registered right now: nobody should be sent here
            revision = await self._etcd.create(key, str(me).encode(), lease_id)
            if revision is not None:
                prefix = self._keys.group_offsets(group)
                entries, _ = await self._etcd.list_prefix(prefix)
                offsets = {topic_partition_of(entry.key, prefix): int(entry.value) for entry in entries}
                claim = self._claims[group] = _Claim(lease_id, revision, offsets)
                log.info("group_claimed", group=group, revision=revision, offsets=len(offsets))
                return claim
            holder = await self._etcd.get(key)
            if holder is None:
                continue  # gone meanwhile: claim again
            owner = int(holder.value)
            if owner == me:  # an earlier session of this broker (its lease not expired yet): take it over
                await self._etcd.delete_if_created_at(key, holder.create_revision)
                continue
            raise not_coordinator(group, owner, self._control.brokers().get(owner, ""))
        raise not_coordinator(group, None, "")

    def _session_ended(self) -> None:
        for group in list(self._claims):
            self._lose(group)

    def _lose(self, group: str) -> None:
        if self._claims.pop(group, None) is not None:
            log.info("group_released", group=group)
            for listener in self._listeners:
                listener(group)

    async def release_all(self) -> None:
        """Give up every claim (a clean stop): members find the group's next coordinator at once."""
        claims = list(self._claims.items())
        for group, claim in claims:
            with contextlib.suppress(*ETCD_ERRORS):
                await self._etcd.delete_if_created_at(self._keys.group_coordinator(group), claim.revision)
            self._lose(group)

    # -- OffsetStore ------------------------------------------------------------------

    def committed(self, group: str) -> dict[tuple[int, int], int]:
        claim = self._claims.get(group)
        return dict(claim.offsets) if claim is not None else {}

    def committed_offset(self, group: str, topic_id: int, partition: int) -> int | None:
        claim = self._claims.get(group)
        return claim.offsets.get((topic_id, partition)) if claim is not None else None

    def group_names(self) -> list[str]:
        return sorted(name for name, claim in self._claims.items() if claim.offsets)

    async def all_group_names(self) -> list[str]:
        with etcd_unavailable("the groups cannot be listed"):
            entries, _ = await self._etcd.list_prefix(self._keys.groups)
        names = set()
        for entry in entries:
            name, _, rest = entry.key[len(self._keys.groups) :].decode().partition("/")
            if rest.startswith("offsets/"):
                names.add(name)
        return sorted(names)

    def commit(self, group: str, offsets: Entries) -> asyncio.Future[list[int]]:
        return asyncio.ensure_future(self._commit(group, offsets))

    async def _commit(self, group: str, offsets: Entries) -> list[int]:
        claim = self._held(group)
        async with claim.writes:
            now = dict(claim.offsets)
            stored, puts = [], []
            for topic_id, partition, offset in offsets:
                old = now.get((topic_id, partition))
                if old is not None and old >= offset:
                    stored.append(old)
                    continue
                now[(topic_id, partition)] = offset
                puts.append((self._keys.group_offset(group, topic_id, partition), str(offset).encode()))
                stored.append(offset)
            if puts:
                await self._fenced(group, claim, puts)
                claim.offsets = now
            return stored

    async def reset(self, group: str, offsets: Entries) -> None:
        claim = self._held(group)
        async with claim.writes:
            puts = [(self._keys.group_offset(group, t, p), str(o).encode()) for t, p, o in offsets]
            await self._fenced(group, claim, puts)
            for topic_id, partition, offset in offsets:
                claim.offsets[(topic_id, partition)] = offset

    async def delete(self, group: str) -> bool:
        claim = self._held(group)
        async with claim.writes:
            had = bool(claim.offsets)
            await self._fenced(group, claim, [], delete_prefixes=[self._keys.group_offsets(group)])
            claim.offsets = {}
            return had

    def _held(self, group: str) -> _Claim:
        if not self.coordinates(group):
            raise not_coordinator(group, None, "")
        return self._claims[group]

    async def _fenced(
        self, group: str, claim: _Claim, puts: list[tuple[bytes, bytes]], delete_prefixes: list[bytes] | None = None
    ) -> None:
        """Write only while this broker's claim of the group stands; NOT_COORDINATOR (and the group
        given up) once it does not."""
        fence = {self._keys.group_coordinator(group): claim.revision}
        with etcd_unavailable(f"group {group!r}'s offsets are not written"):
            written = await self._etcd.put_if(created_at=fence, puts=puts, delete_prefixes=delete_prefixes)
        if not written:
            log.warning("group_claim_lost", group=group, revision=claim.revision)
            if self._claims.get(group) is claim:
                self._lose(group)
            raise not_coordinator(group, None, "")


def not_coordinator(group: str, owner: int | None, address: str) -> BrokerError:
    if owner is None:
        where = "its coordinator is moving (a broker stopped or lost its lease); retry shortly"
    else:
        where = f"broker {owner} ({address or 'address unknown'}) does: send it there"
    return BrokerError(
        Reason.NOT_COORDINATOR,
        f"this broker does not coordinate group {group!r}: {where}",
        group=group,
        coordinator_id="" if owner is None else str(owner),
        coordinator_address=address,
    )
