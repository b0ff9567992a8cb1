"""Several real worker processes sharing one stream: balance, exactly-once, SIGKILL takeover, resharding."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import Resources, with_stream
from tests.helpers.runtime import (
    lease_owners,
    produce,
    sink_counts,
    spawn_worker,
    wait_exit,
    worker_env,
)
from vitalstream.devstack.bootstrap import ensure_stream
from vitalstream.devstack.clients import AwsClients
from vitalstream.devstack.processes import stop_pid

pytestmark = pytest.mark.integration

LEASE = 2.0


async def _eventually(check: Callable[[], Awaitable[bool]], within: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < within:
        if await check():
            return time.monotonic() - started
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what}: not within {within:.0f}s")


def _pid_of(owner: str | None) -> int | None:
    return int(owner.split("-")[-2]) if owner else None


async def test_three_workers_balance_exactly_once_and_survive_sigkill(
    clients: AwsClients, resources: Resources, sink: tuple[str, str], pids: list[int], tmp_path: Path
) -> None:
    dsn, prefix = sink
    res = with_stream(resources, f"{resources.names.stream}-six")
    stream, table = res.names.stream, res.names.lease_table
    await ensure_stream(clients.kinesis, stream, 6)
    pids += [spawn_worker(f"w{i}", worker_env(res.env, dsn=dsn, prefix=prefix), tmp_path) for i in range(3)]

    async def balanced() -> bool:
        owners = await lease_owners(clients.dynamodb, table, stream)
        counts = Counter(_pid_of(owner) for owner, _ in owners.values())
        return len(owners) == 6 and sorted(counts.values()) == [2, 2, 2] and None not in counts

    await _eventually(balanced, 30, "leases balanced 2/2/2")
    assert set(Counter(_pid_of(o) for o, _ in (await lease_owners(clients.dynamodb, table, stream)).values())) == set(
        pids
    )

    produced = await produce(clients.kinesis, stream, keys=60, rounds=10)

    async def consumed(expected: int) -> bool:
        return (await sink_counts(dsn, prefix))[0] >= expected

    await _eventually(lambda: consumed(produced), 30, "every record consumed")
    await asyncio.sleep(1.5)  # late duplicates would show up here
    assert await sink_counts(dsn, prefix) == (produced, produced)  # exactly once under steady state
    assert await balanced()

    victim = pids[0]
    stop_pid(victim, grace=0, sig=signal.SIGKILL)

    async def moved() -> bool:
        owners = await lease_owners(clients.dynamodb, table, stream)
        holders = Counter(_pid_of(owner) for owner, _ in owners.values())
        return victim not in holders and None not in holders and sum(holders.values()) == 6

    elapsed = await _eventually(moved, 6 * LEASE, "victim's shards moved")
    assert elapsed <= 3 * LEASE + 1.0, f"takeover took {elapsed:.1f}s"
    produced += await produce(clients.kinesis, stream, keys=60, rounds=10, start=10)
    await _eventually(lambda: consumed(produced), 30, "every record consumed after the kill")
    distinct, _ = await sink_counts(dsn, prefix)
    assert distinct == produced  # with an idempotent sink nothing is lost

    survivors = pids[1:]
    for pid in survivors:
        os.kill(pid, signal.SIGTERM)
    assert [wait_exit(pid, 10) for pid in survivors] == [0, 0]
    owners = await lease_owners(clients.dynamodb, table, stream)
    assert all(owner is None for owner, _ in owners.values())


async def test_split_and_merge_while_producing_keeps_per_key_order(
    clients: AwsClients, resources: Resources, sink: tuple[str, str], pids: list[int], tmp_path: Path
) -> None:
    dsn, prefix = sink
    stream, table = resources.names.stream, resources.names.lease_table
    pids += [spawn_worker(f"w{i}", worker_env(resources.env, dsn=dsn, prefix=prefix), tmp_path) for i in range(2)]
    keys = 40
    produced = 0

    async def active() -> bool:
        summary = await clients.kinesis.describe_stream_summary(StreamName=stream)
        return bool(summary["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE")

    async def consumed() -> bool:
        return (await sink_counts(dsn, prefix))[0] >= produced

    produced += await produce(clients.kinesis, stream, keys, rounds=10)
    await _eventually(consumed, 30, "workers consuming before the split")
    shards = {s["ShardId"]: s for s in (await clients.kinesis.list_shards(StreamName=stream))["Shards"]}
    ids = sorted(shards)
    low = int(shards[ids[0]]["HashKeyRange"]["StartingHashKey"])
    high = int(shards[ids[0]]["HashKeyRange"]["EndingHashKey"])
    await clients.kinesis.split_shard(StreamName=stream, ShardToSplit=ids[0], NewStartingHashKey=str((low + high) // 2))
    await _eventually(active, 10, "stream active after split")
    produced += await produce(clients.kinesis, stream, keys, rounds=5, start=10)
    await _eventually(consumed, 30, "children consumed after the split")
    produced += await produce(clients.kinesis, stream, keys, rounds=5, start=15)
    await clients.kinesis.merge_shards(StreamName=stream, ShardToMerge=ids[2], AdjacentShardToMerge=ids[3])
    await _eventually(active, 10, "stream active after merge")
    produced += await produce(clients.kinesis, stream, keys, rounds=10, start=20)
    await _eventually(consumed, 60, "every record of parents and children consumed")
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            f"SELECT DISTINCT ON (shard, seq) shard, pkey, data, ord, idx FROM {prefix}_deliveries "
            "ORDER BY shard, seq, ord, idx"
        )
    finally:
        await conn.close()
    assert len(rows) == produced
    by_key: dict[str, list[tuple[int, int, int, str]]] = defaultdict(list)
    for row in rows:
        by_key[row["pkey"]].append((row["ord"], row["idx"], int(row["data"].split(":")[1]), row["shard"]))
    for key, items in by_key.items():
        counters = [counter for _, _, counter, _ in sorted(items)]
        assert counters == list(range(30)), f"{key} consumed out of order"
    owners = await lease_owners(clients.dynamodb, table, stream)
    assert owners[ids[0]][1] == "SHARD_END"
    assert owners[ids[2]][1] == "SHARD_END"
    assert owners[ids[3]][1] == "SHARD_END"
    assert len(owners) == 7
