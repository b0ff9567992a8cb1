"""A reading held for its spike decision is decided within the hold limit, even across a worker crash."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import Resources
from tests.helpers import vitals_dataset, vitals_run
from tests.helpers.processes import gateway_role, running, worker_role
from vitalstream.devstack.clients import AwsClients

pytestmark = pytest.mark.e2e


async def _fetch(url: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


async def _wait_for(url: str, sql: str, within: float) -> list[asyncpg.Record]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        rows = await _fetch(url, sql)
        if rows:
            return rows
        await asyncio.sleep(0.3)
    raise AssertionError(f"nothing for {sql!r} within {within}s")


async def test_held_reading_is_released_after_a_crash_on_a_quiet_shard(
    clients: AwsClients, resources: Resources, tmp_path: Path
) -> None:
    start = datetime.now(UTC) - timedelta(minutes=10)
    values = [70.0, 71.0, 69.0, 70.0, 72.0, 140.0]  # the newest is far from the rest: held, not yet decided
    readings = [
        {
            "device_id": "hold-dev",
            "metric": "heart_rate",
            "value": v,
            "measured_at": (start + timedelta(seconds=10 * i)).isoformat(),
        }
        for i, v in enumerate(values)
    ]
    dataset = vitals_dataset.Dataset(phase1=[("hold-dev", {"readings": readings})])
    tokens = await vitals_run.register(clients, resources.names.device_table, dataset)
    env = {**resources.env, **vitals_run.FAST_WORKER_ENV, "VITALSTREAM_SPIKE_HOLD_SECONDS": "4"}
    gateway = gateway_role(resources.env, tmp_path)
    worker = worker_role("vitals", env, tmp_path)
    with running(gateway, worker):
        await vitals_run.post_all(gateway.health_url.removesuffix("/readyz"), tokens, dataset.phase1)
        held = await _wait_for(resources.warehouse_url, "SELECT value FROM vitals_pending", within=30)
        assert [row["value"] for row in held] == [140.0]
        worker.kill()  # before the hold expires; the shard then stays quiet
        await asyncio.to_thread(worker.start)
        loaded = await _wait_for(resources.warehouse_url, "SELECT value FROM fact_vitals WHERE value = 140", within=40)
    assert len(loaded) == 1
    assert await _fetch(resources.warehouse_url, "SELECT 1 FROM vitals_pending") == []
    assert len(await _fetch(resources.warehouse_url, "SELECT 1 FROM fact_vitals")) == len(values)
