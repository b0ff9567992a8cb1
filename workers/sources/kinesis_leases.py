"""Shard leases in DynamoDB: one item per (pipeline, stream, shard); every write is conditional (fencing).

Item (hash key ``shard_id`` = ``<pipeline>/<stream>/<shardId>``, so pipelines and streams share a table)::

    pipeline, stream, shard        identifiers (S)
    owner                          worker id (S), absent when free
    lease_counter                  N, +1 on every take / renew / release: the fencing token
    heartbeat_at                   N, epoch seconds of the last write by the owner (informational)
    checkpoint                     S, last committed sequence number, or "SHARD_END"; absent = TRIM_HORIZON
    pending_first, pending_last    S, the batch being processed (recorded before side effects)
    parent_shard_ids               L of S
    shard_end                      BOOL, the shard was consumed to its end and checkpointed

Expiry is judged the KCL way, without trusting other hosts' clocks: a lease whose counter has not changed
for ``lease_seconds`` of *our* monotonic time is expired and may be taken. A write conditional on
``owner = me AND lease_counter = held`` fails once anybody else took the lease: :class:`LeaseLostError`.
The balancing decision (:func:`plan`) is pure.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from botocore.exceptions import ClientError

from workers.runtime.types import LeaseLostError

SHARD_END = "SHARD_END"


@dataclass(frozen=True, slots=True)
class Lease:
    """A snapshot of one lease item."""

    key: str
    shard: str
    owner: str | None = None
    counter: int = 0
    checkpoint: str | None = None
    pending_first: str | None = None
    pending_last: str | None = None
    parents: tuple[str, ...] = ()

    @property
    def ended(self) -> bool:
        return self.checkpoint == SHARD_END


def parse_item(item: Mapping[str, Any]) -> Lease:
    def s(name: str) -> str | None:
        value = item.get(name)
        return str(value["S"]) if value and "S" in value else None

    return Lease(
        key=str(item["shard_id"]["S"]),
        shard=s("shard") or str(item["shard_id"]["S"]).rsplit("/", 1)[-1],
        owner=s("owner"),
        counter=int(item.get("lease_counter", {}).get("N", "0")),
        checkpoint=s("checkpoint"),
        pending_first=s("pending_first"),
        pending_last=s("pending_last"),
        parents=tuple(str(v["S"]) for v in item.get("parent_shard_ids", {}).get("L", [])),
    )


def _is_conditional_failure(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


class LeaseTable:
    """Conditional reads and writes of one pipeline's leases on one stream."""

    def __init__(self, dynamodb: Any, table: str, *, pipeline: str, stream: str, worker_id: str) -> None:
        self.dynamodb = dynamodb
        self.table = table
        self.pipeline = pipeline
        self.stream = stream
        self.worker_id = worker_id

    def key(self, shard: str) -> str:
        return f"{self.pipeline}/{self.stream}/{shard}"

    async def list(self) -> list[Lease]:
        """Every lease of this pipeline and stream (strongly consistent scan)."""
        leases: list[Lease] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "ConsistentRead": True,
            "FilterExpression": "begins_with(shard_id, :prefix)",
            "ExpressionAttributeValues": {":prefix": {"S": f"{self.pipeline}/{self.stream}/"}},
        }
        while True:
            page = await self.dynamodb.scan(**kwargs)
            leases += [parse_item(item) for item in page.get("Items", [])]
            if not page.get("LastEvaluatedKey"):
                return sorted(leases, key=lambda lease: lease.shard)
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    async def get(self, shard: str) -> Lease | None:
        item = await self.dynamodb.get_item(
            TableName=self.table, Key={"shard_id": {"S": self.key(shard)}}, ConsistentRead=True
        )
        return parse_item(item["Item"]) if "Item" in item else None

    async def create(self, shard: str, parents: Iterable[str]) -> bool:
        """Create a free lease for a newly seen shard; False when it already exists."""
        item = {
            "shard_id": {"S": self.key(shard)},
            "pipeline": {"S": self.pipeline},
            "stream": {"S": self.stream},
            "shard": {"S": shard},
            "lease_counter": {"N": "0"},
            "parent_shard_ids": {"L": [{"S": parent} for parent in parents]},
            "shard_end": {"BOOL": False},
        }
        try:
            await self.dynamodb.put_item(
                TableName=self.table, Item=item, ConditionExpression="attribute_not_exists(shard_id)"
            )
        except ClientError as exc:
            if _is_conditional_failure(exc):
                return False
            raise
        return True

    async def take(self, lease: Lease) -> Lease:
        """Become the owner of ``lease`` if nobody wrote it since it was observed (free, expired or stolen)."""
        return await self._update(
            lease,
            "SET #owner = :me, lease_counter = :next, heartbeat_at = :now",
            "lease_counter = :seen",
            {":seen": {"N": str(lease.counter)}},
        )

    async def renew(self, lease: Lease) -> Lease:
        return await self._update(lease, "SET lease_counter = :next, heartbeat_at = :now", _OWNED, {})

    async def begin(self, lease: Lease, first: str, last: str) -> None:
        """Record the pending range before any side effect (the counter is not bumped)."""
        await self._update(
            lease,
            "SET pending_first = :first, pending_last = :last, heartbeat_at = :now",
            _OWNED,
            {":first": {"S": first}, ":last": {"S": last}},
            bump=False,
        )

    async def checkpoint(self, lease: Lease, position: str, *, shard_end: bool = False) -> Lease:
        """Checkpoint ``position`` and clear the pending range; at shard end also give the lease up."""
        if shard_end:
            return await self._update(
                lease,
                "SET checkpoint = :end, shard_end = :true, lease_counter = :next, heartbeat_at = :now "
                "REMOVE pending_first, pending_last, #owner",
                _OWNED,
                {":end": {"S": SHARD_END}, ":true": {"BOOL": True}},
            )
        return await self._update(
            lease,
            "SET checkpoint = :cp, heartbeat_at = :now REMOVE pending_first, pending_last",
            _OWNED,
            {":cp": {"S": position}},
            bump=False,
        )

    async def release(self, lease: Lease) -> Lease:
        """Give the lease up (checkpoint and pending range stay): another worker may take it at once."""
        return await self._update(lease, "SET lease_counter = :next REMOVE #owner", _OWNED, {})

    async def _update(
        self, lease: Lease, update: str, condition: str, values: dict[str, Any], *, bump: bool = True
    ) -> Lease:
        names = {"#owner": "owner"} if "#owner" in update + condition else {}
        all_values: dict[str, Any] = {
            ":me": {"S": self.worker_id},
            ":held": {"N": str(lease.counter)},
            ":next": {"N": str(lease.counter + 1)},
            ":now": {"N": f"{time.time():.3f}"},
            **values,
        }
        expression = f"{update}"
        used = {name for name in all_values if name in expression or name in condition}
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "Key": {"shard_id": {"S": lease.key}},
            "UpdateExpression": update,
            "ConditionExpression": condition,
            "ExpressionAttributeValues": {name: all_values[name] for name in sorted(used)},
            "ReturnValues": "ALL_NEW",
        }
        if names:
            kwargs["ExpressionAttributeNames"] = names
        try:
            response = await self.dynamodb.update_item(**kwargs)
        except ClientError as exc:
            if _is_conditional_failure(exc):
                raise LeaseLostError(lease.shard) from exc
            raise
        updated = parse_item(response["Attributes"])
        return updated if bump else replace(updated, counter=lease.counter)


_OWNED = "#owner = :me AND lease_counter = :held"


# -- balancing (pure) ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Plan:
    take: tuple[Lease, ...] = ()  # free or expired leases to take
    steal: Lease | None = None  # one lease of an over-loaded worker


def eligible(lease: Lease, by_shard: Mapping[str, Lease], stream_shards: set[str]) -> bool:
    """A shard may be processed once every parent is checkpointed at SHARD_END (or no longer exists)."""
    if lease.ended:
        return False
    for parent in lease.parents:
        parent_lease = by_shard.get(parent)
        if parent_lease is None:
            if parent in stream_shards:
                return False  # not discovered yet: wait for its lease
            continue  # trimmed from the stream: nothing left to read
        if not parent_lease.ended:
            return False
    return True


def targets(workers: Iterable[str], total: int, held: Mapping[str, int] | None = None) -> dict[str, int]:
    """Fair share per worker: ``total // n``, plus one for ``total % n`` of them - those already holding the
    most (ties by id), so that a remainder never causes a steal."""
    counts = held or {}
    ordered = sorted(set(workers), key=lambda worker: (-counts.get(worker, 0), worker))
    base, extra = divmod(total, len(ordered))
    return {worker: base + (1 if rank < extra else 0) for rank, worker in enumerate(ordered)}


def plan(leases: Iterable[Lease], me: str, expired: set[str], stream_shards: set[str]) -> Plan:
    """What ``me`` should take now so that N workers on S eligible shards each hold about S/N.

    ``expired`` holds keys of leases whose counter did not move for a lease period (their owner is dead).
    Free and expired leases are taken up to the target at once; if still short, ONE lease is stolen from the
    worker most above its own target (KCL-style), so balance converges in a few rounds without thrashing.
    """
    all_leases = list(leases)
    by_shard = {lease.shard: lease for lease in all_leases}
    candidates = [lease for lease in all_leases if eligible(lease, by_shard, stream_shards)]
    if not candidates:
        return Plan()
    live = {lease.owner for lease in candidates if lease.owner and lease.key not in expired}
    counts: dict[str, int] = {}
    for lease in candidates:
        if lease.owner in live:
            counts[lease.owner] = counts.get(lease.owner, 0) + 1
    share = targets(live | {me}, len(candidates), counts)
    mine = [lease for lease in candidates if lease.owner == me]
    need = share[me] - len(mine)
    if need <= 0:
        return Plan()
    free = [lease for lease in candidates if lease.owner is None or (lease.owner != me and lease.key in expired)]
    take = tuple(free[:need])
    if len(take) >= need:
        return Plan(take=take)
    held: dict[str, list[Lease]] = {}
    for lease in candidates:
        if lease.owner and lease.owner != me and lease.key not in expired:
            held.setdefault(lease.owner, []).append(lease)
    surplus = sorted(((len(ls) - share[owner], owner) for owner, ls in held.items()), reverse=True)
    # Steal only when the victim is above target and we'd stay at or below ours: never ping-pong.
    if surplus and surplus[0][0] > 0 and len(mine) + len(take) < share[me]:
        victim = surplus[0][1]
        return Plan(take=take, steal=held[victim][-1])
    return Plan(take=take)
