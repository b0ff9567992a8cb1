"""Held spike decisions are released within bounds even when no worker owns their source any more."""

from __future__ import annotations

import time

import asyncpg
import pytest

from common.settings import WorkerSettings
from schemas.envelope import encode_envelope
from tests.conftest import Resources
from vitalstream.devstack.clients import AwsClients
from workers.pipelines.vitals import build_handler, release_due
from workers.runtime.types import SourceRecord, make_batch
from workers.warehouse.postgres.vitals import PostgresLoader

pytestmark = pytest.mark.integration

HOLD_US = 5_000_000


def _envelope(now_us: int, values: list[float]) -> bytes:
    n = len(values)
    return encode_envelope(
        "req-1",
        "orphan-dev",
        now_us,
        {
            "message_id": [f"m-{i}" for i in range(n)],
            "patient_id": ["pt"] * n,
            "metric": ["heart_rate"] * n,
            "loinc_code": ["8867-4"] * n,
            "value": values,
            "unit": ["/min"] * n,
            "measured_at_us": [now_us - (n - i) * 10_000_000 for i in range(n)],
        },
    )


async def _rows(url: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


async def test_overdue_hold_of_an_unowned_source_is_released(clients: AwsClients, resources: Resources) -> None:
    settings = WorkerSettings(spike_hold_seconds=HOLD_US / 1_000_000)
    loader = await PostgresLoader.connect(resources.warehouse_url)
    try:
        now_us = int(time.time() * 1_000_000)
        record = SourceRecord(_envelope(now_us, [70, 71, 69, 70, 72, 140]), "orphan-dev", "1", now_us)
        await build_handler(settings, clients.s3, loader).handle(make_batch("vitals", "shardId-parent", [record]))
        assert [r["value"] for r in await _rows(resources.warehouse_url, "SELECT value FROM vitals_pending")] == [140]

        # A new worker that never saw the source and does not own it (the parent shard ended).
        fresh = build_handler(settings, clients.s3, loader)
        assert await release_due(fresh, owned=[], now_us=now_us + HOLD_US + 1) == 0  # due, but not overdue yet
        assert await loader.stale_pending_sources(now_us + 1) == ["shardId-parent"]
        assert await release_due(fresh, owned=[], now_us=now_us + 2 * HOLD_US + 10_000_001) == 1
        assert await release_due(fresh, owned=[], now_us=now_us + 2 * HOLD_US + 10_000_001) == 0
    finally:
        await loader.close()
    assert await _rows(resources.warehouse_url, "SELECT 1 FROM vitals_pending") == []
    loaded = await _rows(resources.warehouse_url, "SELECT value FROM fact_vitals ORDER BY measured_at")
    assert [r["value"] for r in loaded] == [70, 71, 69, 70, 72, 140]


async def test_owned_source_is_released_as_soon_as_its_hold_expires(clients: AwsClients, resources: Resources) -> None:
    settings = WorkerSettings(spike_hold_seconds=HOLD_US / 1_000_000)
    loader = await PostgresLoader.connect(resources.warehouse_url)
    try:
        now_us = int(time.time() * 1_000_000)
        record = SourceRecord(_envelope(now_us, [70, 71, 69, 70, 72, 140]), "orphan-dev", "1", now_us)
        await build_handler(settings, clients.s3, loader).handle(make_batch("vitals", "shardId-0", [record]))
        fresh = build_handler(settings, clients.s3, loader)
        assert await release_due(fresh, owned=["shardId-0"], now_us=now_us + HOLD_US - 1_000_000) == 0
        assert await release_due(fresh, owned=["shardId-0"], now_us=now_us + HOLD_US + 1) == 1
    finally:
        await loader.close()
