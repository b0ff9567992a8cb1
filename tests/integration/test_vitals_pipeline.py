"""The vitals handler end to end on moto S3 + PostgreSQL: zones, idempotent replays, spikes across batches."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Sequence

import asyncpg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from common.settings import WorkerSettings
from tests.conftest import Resources
from tests.helpers.vitals import R, envelope, fleet_envelopes, series, us
from workers.pipelines.vitals import VitalsHandler, build_handler
from workers.runtime.types import SourceRecord, make_batch
from workers.warehouse.postgres.vitals import PostgresLoader

pytestmark = pytest.mark.integration


def records(payloads: Sequence[bytes], start: int = 0, arrived_s: float = 0.0) -> list[SourceRecord]:
    return [SourceRecord(p, "k", f"{start + i:020d}", us(arrived_s)) for i, p in enumerate(payloads)]


@pytest.fixture
async def handler(resources: Resources, clients: object) -> AsyncIterator[VitalsHandler]:
    conn = await asyncpg.connect(resources.warehouse_url)
    await conn.execute("TRUNCATE vitals_pending")
    await conn.close()
    loader = await PostgresLoader.connect(resources.warehouse_url)
    settings = WorkerSettings(bucket=resources.names.bucket, warehouse_url=resources.warehouse_url)
    try:
        yield build_handler(settings, clients.s3, loader)  # type: ignore[attr-defined]
    finally:
        await loader.close()


async def scalar(url: str, query: str) -> object:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval(query)
    finally:
        await conn.close()


async def processed_rows(s3: object, bucket: str) -> pa.Table:
    keys: list[str] = []
    paginator = s3.get_paginator("list_objects_v2")  # type: ignore[attr-defined]
    async for page in paginator.paginate(Bucket=bucket, Prefix="processed/vitals/"):
        keys += [o["Key"] for o in page.get("Contents", [])]
    tables = []
    for key in keys:
        body = await (await s3.get_object(Bucket=bucket, Key=key))["Body"].read()  # type: ignore[attr-defined]
        tables.append(pq.read_table(io.BytesIO(body)))
    return pa.concat_tables(tables) if tables else pa.table({})


async def test_fleet_batch_lands_once_in_every_zone(
    handler: VitalsHandler, resources: Resources, clients: object
) -> None:
    payloads = fleet_envelopes(5, 20, spike_every=7, duplicate_every=4)
    batch = make_batch("vitals", "shard-0", records(payloads, arrived_s=30))
    first = await handler.handle(batch)
    assert first.rows_in == 5 * 20 * 7 + (len(payloads) - 70) * 10
    assert first.rows_duplicate >= (len(payloads) - 70) * 10
    replay = await handler.handle(make_batch("vitals", "shard-0", batch.records, replay=True))
    assert replay == first
    url = resources.warehouse_url
    fact = await scalar(url, "SELECT count(*) FROM fact_vitals")
    quarantined = await scalar(url, "SELECT count(*) FROM vitals_quarantine")
    pending = await scalar(url, "SELECT count(*) FROM vitals_pending")
    assert fact == first.rows_loaded
    assert quarantined == first.rows_quarantined
    assert first.rows_in == first.rows_loaded + first.rows_quarantined + first.rows_duplicate + pending
    assert await scalar(url, "SELECT count(*) FROM vitals_quarantine WHERE reason = 'spike'") == 5 * 2
    processed = await processed_rows(clients.s3, resources.names.bucket)
    assert processed.num_rows == fact


async def test_spike_and_sustained_change_across_batches(handler: VitalsHandler, resources: Resources) -> None:
    url = resources.warehouse_url
    # Batch 1 ends with a candidate (held); batch 2 shows it was isolated.
    b1 = make_batch(
        "vitals", "shard-0", records([envelope("d1", series("d1", "heart_rate", [70, 71, 69, 70, 150]))], 0, 5)
    )
    r1 = await handler.handle(b1)
    assert (r1.rows_in, r1.rows_loaded) == (5, 4)
    assert await scalar(url, "SELECT count(*) FROM vitals_pending") == 1
    b2 = make_batch(
        "vitals", "shard-0", records([envelope("d1", series("d1", "heart_rate", [71, 70], start_s=5))], 1, 7)
    )
    r2 = await handler.handle(b2)
    assert (r2.rows_loaded, r2.rows_quarantined) == (2, 1)
    assert await scalar(url, "SELECT reason FROM vitals_quarantine") == "spike"
    # A sustained change split over two batches: never quarantined.
    b3 = make_batch(
        "vitals", "shard-0", records([envelope("d1", series("d1", "heart_rate", [70, 110], start_s=7))], 2, 9)
    )
    await handler.handle(b3)
    b4 = make_batch(
        "vitals", "shard-0", records([envelope("d1", series("d1", "heart_rate", [111, 109, 110], start_s=9))], 3, 12)
    )
    await handler.handle(b4)
    assert await scalar(url, "SELECT count(*) FROM vitals_quarantine") == 1
    assert await scalar(url, "SELECT count(*) FROM fact_vitals WHERE value >= 109") == 4
    # A late copy of the spike is a duplicate, and its processed zone file is rewritten without it.
    b5 = make_batch("vitals", "shard-0", records([envelope("d1", [R("d1", "heart_rate", 4, 72)])], 4, 300))
    r5 = await handler.handle(b5)
    assert (r5.rows_loaded, r5.rows_duplicate) == (0, 1)
    assert await scalar(url, "SELECT count(*) FROM fact_vitals") == 4 + 2 + 1 + 4


async def test_held_reading_released_after_hold_limit(handler: VitalsHandler, resources: Resources) -> None:
    b1 = make_batch("vitals", "shard-9", records([envelope("d2", series("d2", "spo2", [97, 97, 98, 80]))], 0, 4))
    await handler.handle(b1)
    assert await scalar(resources.warehouse_url, "SELECT count(*) FROM vitals_pending") == 1
    assert await handler.release_held("shard-9", now_us=us(30)) == 0
    assert await handler.release_held("shard-9", now_us=us(70)) == 1
    assert await scalar(resources.warehouse_url, "SELECT count(*) FROM vitals_pending") == 0
    assert await scalar(resources.warehouse_url, "SELECT count(*) FROM fact_vitals WHERE value = 80") == 1
    # Releasing again changes nothing.
    assert await handler.release_held("shard-9", now_us=us(90)) == 0
