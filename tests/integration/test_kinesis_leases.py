"""Kinesis source against kinesalite + moto DynamoDB, in process: fencing, pending-range replay, SHARD_END."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from common.metrics import new_registry
from tests.conftest import Resources
from vitalstream.devstack.clients import AwsClients
from workers.runtime.metrics import WorkerMetrics
from workers.runtime.types import Delivery, LeaseLostError, make_batch
from workers.sources.kinesis import KinesisConfig, KinesisSource
from workers.sources.kinesis_leases import SHARD_END, LeaseTable

pytestmark = pytest.mark.integration

FAST = KinesisConfig(lease_seconds=1.0, discover_every=1.0, busy_poll=0.05, idle_poll=0.1)


def _source(clients: AwsClients, resources: Resources, worker: str) -> KinesisSource:
    return KinesisSource(
        clients.kinesis,
        clients.dynamodb,
        stream=resources.names.stream,
        lease_table=resources.names.lease_table,
        pipeline="t",
        metrics=WorkerMetrics(new_registry(), "t"),
        worker_id=worker,
        config=FAST,
    )


async def _collect(source: KinesisSource, until: int, within: float = 15.0) -> list[Delivery]:
    got: list[Delivery] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline and (until == 0 or sum(len(d.records) for d in got) < until):
        got += await source.poll(0.2)
    return got


async def _put(clients: AwsClients, stream: str, n: int, key: str = "dev-1") -> None:
    for i in range(n):
        await clients.kinesis.put_record(StreamName=stream, Data=f"{key}:{i}".encode(), PartitionKey=key)


async def test_stolen_lease_cannot_checkpoint(clients: AwsClients, resources: Resources) -> None:
    stream = resources.names.stream
    await _put(clients, stream, 5)
    a = _source(clients, resources, "worker-a")
    try:
        deliveries = await _collect(a, 5)
        data = [d for d in deliveries if d.records]
        shard = data[0].source_id
        batch = make_batch("t", shard, data[0].records)
        await a.begin(batch)
        # Worker B steals the lease with a conditional write on the counter it observed.
        b_table = LeaseTable(clients.dynamodb, resources.names.lease_table, pipeline="t", stream=stream, worker_id="b")
        observed = await b_table.get(shard)
        assert observed is not None
        assert observed.owner == "worker-a"
        stolen = await b_table.take(observed)
        assert stolen.owner == "b"
        assert stolen.pending_last == batch.last_position  # B would replay exactly this range
        with pytest.raises(LeaseLostError):
            await a.settle(batch, committed=True)
        after = await b_table.get(shard)
        assert after is not None
        assert after.checkpoint is None  # the fenced checkpoint was refused
        assert after.owner == "b"
        with pytest.raises(LeaseLostError):
            await a.begin(batch)
        # A's runner is told to drop what it buffered for that shard.
        revoked = [d for d in await _collect(a, 0, within=0.5) if d.revoked]
        assert [d.source_id for d in revoked] == [shard]
    finally:
        await a.close()


async def test_lease_retaken_by_the_same_worker_id_fences_the_old_counter(
    clients: AwsClients, resources: Resources
) -> None:
    """A worker whose lease expired and was taken again under the SAME worker id (a restarted process reusing
    its id) holds an old counter: its checkpoint is refused on the counter alone."""
    stream = resources.names.stream
    await _put(clients, stream, 5)
    slow = KinesisConfig(lease_seconds=60.0, discover_every=60.0, busy_poll=0.05, idle_poll=0.1)  # no renewal here
    a = KinesisSource(
        clients.kinesis,
        clients.dynamodb,
        stream=stream,
        lease_table=resources.names.lease_table,
        pipeline="t",
        metrics=WorkerMetrics(new_registry(), "t"),
        worker_id="worker-a",
        config=slow,
    )
    try:
        data = [d for d in await _collect(a, 5) if d.records]
        shard = data[0].source_id
        batch = make_batch("t", shard, data[0].records)
        await a.begin(batch)
        again = LeaseTable(
            clients.dynamodb, resources.names.lease_table, pipeline="t", stream=stream, worker_id="worker-a"
        )
        observed = await again.get(shard)
        assert observed is not None
        assert observed.owner == "worker-a"
        retaken = await again.take(observed)  # as after expiry: same owner, counter + 1
        assert retaken.owner == "worker-a"
        assert retaken.counter == observed.counter + 1
        with pytest.raises(LeaseLostError):
            await a.settle(batch, committed=True)
        after = await again.get(shard)
        assert after is not None
        assert after.checkpoint is None  # the old ownership's checkpoint was refused
        assert after.pending_last == batch.last_position  # the new ownership replays exactly this range
        assert after.counter == retaken.counter
    finally:
        await a.close()


async def test_takeover_replays_exactly_the_pending_batch(clients: AwsClients, resources: Resources) -> None:
    stream = resources.names.stream
    await _put(clients, stream, 8)
    a = _source(clients, resources, "worker-a")
    deliveries = await _collect(a, 8)
    data = next(d for d in deliveries if d.records)
    shard = data.source_id
    first = make_batch("t", shard, data.records[:3])
    await a.begin(first)
    await a.settle(first, committed=True)
    pending = make_batch("t", shard, data.records[3:6])
    await a.begin(pending)
    # A "crashes" after side effects began; simulate by cancelling without releasing the pending range.
    await a.close()  # releases the lease; checkpoint and pending range stay
    b = _source(clients, resources, "worker-b")
    try:
        got = await _collect(b, 5, within=10)
        mine = [d for d in got if d.source_id == shard and d.records]
        assert mine[0].replay
        assert mine[0].whole
        replayed = make_batch("t", shard, mine[0].records, replay=True)
        assert replayed.batch_id == pending.batch_id
        assert [r.position for r in replayed.records] == [r.position for r in pending.records]
        rest = [r.position for d in mine[1:] for r in d.records]
        assert rest == [r.position for r in data.records[6:]]
    finally:
        await b.close()


async def test_split_parent_reaches_shard_end_before_children(clients: AwsClients, resources: Resources) -> None:
    stream = resources.names.stream
    await _put(clients, stream, 3, key="dev-x")
    shards = (await clients.kinesis.list_shards(StreamName=stream))["Shards"]
    target = shards[0]
    low, high = int(target["HashKeyRange"]["StartingHashKey"]), int(target["HashKeyRange"]["EndingHashKey"])
    await clients.kinesis.split_shard(
        StreamName=stream, ShardToSplit=target["ShardId"], NewStartingHashKey=str((low + high) // 2)
    )
    a = _source(clients, resources, "worker-a")
    table = LeaseTable(clients.dynamodb, resources.names.lease_table, pipeline="t", stream=stream, worker_id="obs")
    try:
        seen: list[Delivery] = []

        async def settle_all(deliveries: Sequence[Delivery]) -> None:
            for delivery in deliveries:
                if delivery.records:
                    batch = make_batch("t", delivery.source_id, delivery.records)
                    await a.begin(batch)
                    await a.settle(batch, committed=True)

        loop = asyncio.get_running_loop()
        deadline = loop.time() + 15
        while loop.time() < deadline:
            got = await a.poll(0.2)
            seen += got
            await settle_all(got)
            lease = await table.get(target["ShardId"])
            if lease is not None and lease.checkpoint == SHARD_END and len(a.held_shards) >= 5:
                break
        lease = await table.get(target["ShardId"])
        assert lease is not None
        assert lease.checkpoint == SHARD_END
        assert lease.owner is None
        assert any(d.end and d.source_id == target["ShardId"] for d in seen)
        children = [s for s in (await table.list()) if target["ShardId"] in s.parents]
        assert len(children) == 2
        assert {c.shard for c in children} <= set(a.held_shards)
    finally:
        await a.close()


async def test_children_are_not_taken_while_the_parent_has_unsettled_records(
    clients: AwsClients, resources: Resources
) -> None:
    """Parent before child at the source: while the parent's records are delivered but not settled, the parent is
    not at SHARD_END, so no child lease is owned or held and no child record is delivered - over several lease
    periods. Settling the parent then lets the children start."""
    stream = resources.names.stream
    shards = (await clients.kinesis.list_shards(StreamName=stream))["Shards"]
    target = shards[0]
    low, high = int(target["HashKeyRange"]["StartingHashKey"]), int(target["HashKeyRange"]["EndingHashKey"])
    for i in range(3):  # into the parent, explicitly
        await clients.kinesis.put_record(
            StreamName=stream, Data=f"p:{i}".encode(), PartitionKey="p", ExplicitHashKey=str(low + i)
        )
    await clients.kinesis.split_shard(
        StreamName=stream, ShardToSplit=target["ShardId"], NewStartingHashKey=str((low + high) // 2)
    )
    for _ in range(200):  # the split is applied once the stream is ACTIVE again
        summary = await clients.kinesis.describe_stream_summary(StreamName=stream)
        if summary["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE":
            break
        await asyncio.sleep(0.05)
    for i in range(3):  # into the children (one in each half)
        await clients.kinesis.put_record(
            StreamName=stream, Data=f"c:{i}".encode(), PartitionKey="c", ExplicitHashKey=str(high - i)
        )
        await clients.kinesis.put_record(
            StreamName=stream, Data=f"c:{i}".encode(), PartitionKey="c", ExplicitHashKey=str(low + i)
        )
    parent = target["ShardId"]
    a = _source(clients, resources, "worker-a")
    table = LeaseTable(clients.dynamodb, resources.names.lease_table, pipeline="t", stream=stream, worker_id="obs")
    try:
        held_back: list[Delivery] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 4 * FAST.lease_seconds  # several discoveries and balancing rounds
        while loop.time() < deadline:
            got = await a.poll(0.2)
            held_back += [d for d in got if d.records]
            children = [lease for lease in await table.list() if parent in lease.parents]
            assert len(children) in (0, 2)
            assert all(c.owner is None for c in children), children
            assert not {c.shard for c in children} & set(a.held_shards)
        assert {d.source_id for d in held_back} == {parent}  # nothing from any child
        assert sorted(r.data for d in held_back for r in d.records) == [b"p:0", b"p:1", b"p:2"]
        lease = await table.get(parent)
        assert lease is not None
        assert lease.checkpoint != SHARD_END

        for delivery in held_back:
            batch = make_batch("t", delivery.source_id, delivery.records)
            await a.begin(batch)
            await a.settle(batch, committed=True)
        child_records: list[Delivery] = []
        deadline = loop.time() + 15
        while loop.time() < deadline and sum(len(d.records) for d in child_records) < 6:
            child_records += [d for d in await a.poll(0.2) if d.records and d.source_id != parent]
        lease = await table.get(parent)
        assert lease is not None
        assert lease.checkpoint == SHARD_END
        assert sum(len(d.records) for d in child_records) == 6
    finally:
        await a.close()
