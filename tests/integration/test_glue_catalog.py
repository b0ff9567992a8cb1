"""The lake in the Glue Data Catalog (moto server's Glue): tables from the bootstrap, partitions from the workers."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas.glue import LAKE_TABLES, PARQUET_SERDE, table_input
from tests.conftest import LocalStack, Resources
from tests.helpers import vitals_dataset, vitals_run
from workers.sinks.glue_catalog import GlueCatalog

pytestmark = pytest.mark.integration


async def partitions(glue: Any, database: str, table: str) -> dict[tuple[str, ...], str]:
    out: dict[tuple[str, ...], str] = {}
    paginator = glue.get_paginator("get_partitions")
    async for page in paginator.paginate(DatabaseName=database, TableName=table):
        for part in page["Partitions"]:
            out[tuple(part["Values"])] = part["StorageDescriptor"]["Location"]
    return out


async def object_partitions(s3: Any, bucket: str, prefix: str, depth: int) -> set[tuple[str, ...]]:
    found: set[tuple[str, ...]] = set()
    paginator = s3.get_paginator("list_objects_v2")
    async for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            segments = obj["Key"][len(prefix) :].split("/")[:depth]
            found.add(tuple(s.partition("=")[2] for s in segments))
    return found


async def test_bootstrap_creates_database_and_parquet_tables(clients: Any, resources: Resources) -> None:
    names = resources.names
    tables = (await clients.glue.get_tables(DatabaseName=names.glue_database))["TableList"]
    by_name = {t["Name"]: t for t in tables}
    assert set(by_name) == {t.name for t in LAKE_TABLES}
    processed = by_name["vitals_processed"]
    assert [k["Name"] for k in processed["PartitionKeys"]] == ["dt", "hour"]
    assert [k["Name"] for k in by_name["vitals_quarantine"]["PartitionKeys"]] == ["reason", "dt"]
    assert processed["StorageDescriptor"]["Location"] == f"s3://{names.bucket}/processed/vitals/"
    assert processed["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"] == PARQUET_SERDE
    columns = {c["Name"]: c["Type"] for c in processed["StorageDescriptor"]["Columns"]}
    assert columns["measured_at"] == "timestamp"
    assert columns["value"] == "double"
    assert by_name["claims"]["StorageDescriptor"]["Location"] == f"s3://{names.bucket}/processed/claims/"


async def test_register_is_batched_cached_and_idempotent(clients: Any, resources: Resources) -> None:
    database, bucket = resources.names.glue_database, resources.names.bucket
    keys = [f"processed/vitals/dt=2026-01-{d:02d}/hour={h:02d}/b.parquet" for d in range(1, 6) for h in range(24)]
    keys += ["quarantine/vitals/reason=spike/dt=2026-01-01/b.parquet", "manifests/vitals/b.manifest"]
    catalog = GlueCatalog(clients.glue, database, bucket)
    assert await catalog.register(keys) == 5 * 24 + 1
    assert catalog.calls == 3  # 120 partitions of one table in calls of at most 100, one for the quarantine
    assert await catalog.register(keys) == 0
    assert catalog.calls == 3  # known partitions: no call at all
    # Another process (or a restart) finds them registered: AlreadyExistsException is success.
    other = GlueCatalog(clients.glue, database, bucket)
    assert await other.register(keys[:3]) == 3
    assert other.pending == 0
    got = await partitions(clients.glue, database, "vitals_processed")
    assert len(got) == 120
    assert got[("2026-01-03", "07")] == f"s3://{bucket}/processed/vitals/dt=2026-01-03/hour=07/"
    assert await partitions(clients.glue, database, "vitals_quarantine") == {
        ("spike", "2026-01-01"): f"s3://{bucket}/quarantine/vitals/reason=spike/dt=2026-01-01/"
    }


async def test_failed_registration_is_retried_with_a_later_batch(clients: Any, resources: Resources) -> None:
    database, bucket = resources.names.glue_database, resources.names.bucket
    await clients.glue.delete_table(DatabaseName=database, Name="vitals_processed")
    catalog = GlueCatalog(clients.glue, database, bucket, retry_after=3600)
    key = "processed/vitals/dt=2026-01-01/hour=00/b.parquet"
    assert await catalog.register([key]) == 0  # the table is missing: the batch goes on, the partition waits
    assert (catalog.pending, catalog.calls) == (1, 1)
    await clients.glue.create_table(DatabaseName=database, TableInput=table_input(LAKE_TABLES[0], bucket))
    assert await catalog.register(["processed/vitals/dt=2026-01-01/hour=01/b.parquet"]) == 0
    assert (catalog.pending, catalog.calls) == (2, 1)  # after a failed call, batches make no call for a while
    catalog.retry_after = 0
    catalog._quiet_until = 0
    assert await catalog.register([]) == 2
    assert await partitions(clients.glue, database, "vitals_processed") == {
        ("2026-01-01", hour): f"s3://{bucket}/processed/vitals/dt=2026-01-01/hour={hour}/" for hour in ("00", "01")
    }


async def test_fleet_across_an_hour_boundary_registers_exactly_the_partitions_with_objects(
    clients: Any, resources: Resources, local_stack: LocalStack
) -> None:
    # Readings from 150 s before to 150 s after a full hour (two hours ago): two dt/hour partitions.
    boundary = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    dataset = vitals_dataset.build(devices=3, start=boundary - timedelta(seconds=150))
    names = resources.names
    landed = await vitals_run.run(clients, resources.env, names, resources.warehouse_url, dataset, local_stack.log_dir)
    assert landed.processed
    with_objects = await object_partitions(clients.s3, names.bucket, "processed/vitals/", 2)
    hours = {(t.strftime("%Y-%m-%d"), t.strftime("%H")) for t in (boundary - timedelta(hours=1), boundary)}
    assert with_objects == hours
    registered = await partitions(clients.glue, names.glue_database, "vitals_processed")
    assert registered == {
        values: f"s3://{names.bucket}/processed/vitals/dt={values[0]}/hour={values[1]}/" for values in with_objects
    }
    q_objects = await object_partitions(clients.s3, names.bucket, "quarantine/vitals/", 2)
    assert q_objects
    q_registered = await partitions(clients.glue, names.glue_database, "vitals_quarantine")
    assert set(q_registered) == q_objects


async def test_a_hanging_glue_call_is_bounded_and_retried_later(clients: Any, resources: Resources) -> None:
    """Glue not answering (injected through a botocore event hook: no emulator hangs on demand)."""
    database, bucket = resources.names.glue_database, resources.names.bucket

    async def hang(**_: Any) -> None:
        await asyncio.sleep(30)

    event = "before-send.glue.BatchCreatePartition"
    clients.glue.meta.events.register(event, hang)
    catalog = GlueCatalog(clients.glue, database, bucket, call_timeout=0.3, retry_after=3600)
    key = "processed/vitals/dt=2026-01-02/hour=05/b.parquet"
    try:
        started = time.monotonic()
        assert await catalog.register([key]) == 0
        assert time.monotonic() - started < 5
        assert catalog.pending == 1
    finally:
        clients.glue.meta.events.unregister(event, hang)
    catalog._quiet_until = 0
    assert await catalog.register([]) == 1
    assert ("2026-01-02", "05") in await partitions(clients.glue, database, "vitals_processed")
