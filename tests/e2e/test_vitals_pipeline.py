"""Gateway → kinesalite → vitals worker → S3 → PostgreSQL, with the real processes (CONTRACT §4)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import RedshiftStandIn, Resources
from tests.helpers import vitals_dataset, vitals_run
from vitalstream.devstack.clients import AwsClients
from vitalstream.devstack.stack import REDSHIFT_URL

pytestmark = pytest.mark.e2e


def _assert_matches(landed: vitals_run.Landed, dataset: vitals_dataset.Dataset) -> None:
    assert landed.quarantine == dataset.quarantined
    assert set(landed.fact) == set(dataset.clean)
    for key, expected in dataset.clean.items():
        assert landed.fact[key][0] == pytest.approx(expected, abs=1e-6), key
    assert landed.processed.keys() == landed.fact.keys()
    # Nothing lost, nothing twice: every accepted reading is loaded once, quarantined, or a counted duplicate.
    audit = landed.audit
    assert audit["loaded"] == len(landed.fact)
    assert audit["quarantined"] == len(landed.quarantine)
    assert audit["loaded"] + audit["quarantined"] + audit["duplicate"] == landed.accepted == dataset.readings_sent


# The Redshift variant costs ~50 s (CI runs the Redshift variant of the heaviest e2e test, test_dev_stack, which
# takes every pipeline through the Data API path): `make e2e-redshift` runs it.
REDSHIFT_CAMPAIGN = pytest.mark.skipif(
    not os.environ.get("VITALSTREAM_E2E_REDSHIFT"), reason="Redshift variant: make e2e-redshift"
)


@pytest.mark.parametrize("warehouse", ["postgres", pytest.param("redshift", marks=REDSHIFT_CAMPAIGN)])
async def test_fleet_lands_once_with_canonical_values_and_right_quarantine(
    clients: AwsClients, resources: Resources, tmp_path: Path, warehouse: str, redshift: RedshiftStandIn
) -> None:
    """Both warehouses: ``redshift`` runs the worker on the Data API path against the strict stand-in."""
    dataset = vitals_dataset.build()
    env, url = resources.env, resources.warehouse_url
    if warehouse == "redshift":
        env = {**env, "VITALSTREAM_WAREHOUSE_URL": REDSHIFT_URL, "AWS_ENDPOINT_URL_REDSHIFT_DATA": redshift.endpoint}
        url = redshift.url
    landed = await vitals_run.run(clients, env, resources.names, url, dataset, tmp_path)
    _assert_matches(landed, dataset)
    # First received wins: the late copies (other values, new message ids) did not replace the originals.
    first_hr = next(k for k in dataset.clean if k[1] == "heart_rate")
    assert landed.fact[first_hr][0] == dataset.clean[first_hr]


async def test_sigkill_five_times_gives_the_same_rows_as_an_undisturbed_run(
    clients: AwsClients, resources: Resources, tmp_path: Path
) -> None:
    dataset = vitals_dataset.build(devices=4, seed=23)
    calm = await vitals_run.run(
        clients, resources.env, resources.names, resources.warehouse_url, dataset, tmp_path / "calm"
    )
    await _reset(clients, resources)
    killed = await vitals_run.run(
        clients, resources.env, resources.names, resources.warehouse_url, dataset, tmp_path / "killed", kills=5
    )
    assert killed.worker_starts == 6
    assert {k: v[0] for k, v in killed.fact.items()} == {k: v[0] for k, v in calm.fact.items()}
    assert {k: v[1] for k, v in killed.fact.items()} == {k: v[1] for k, v in calm.fact.items()}
    assert killed.quarantine == calm.quarantine
    assert killed.processed == calm.processed
    _assert_matches(killed, dataset)


async def _reset(clients: AwsClients, resources: Resources) -> None:
    """Empty the warehouse, the lake, the stream and the leases, keeping the same names."""
    import asyncpg

    from tests.conftest import WAREHOUSE_TABLES
    from vitalstream.devstack.bootstrap import ensure_stream

    conn = await asyncpg.connect(resources.warehouse_url)
    try:
        await conn.execute(f"TRUNCATE {', '.join(WAREHOUSE_TABLES)}")
        for extra in ("vitals_pending",):
            if await conn.fetchval("SELECT to_regclass($1)", extra):
                await conn.execute(f"TRUNCATE {extra}")
    finally:
        await conn.close()
    names = resources.names
    paginator = clients.s3.get_paginator("list_objects_v2")
    async for page in paginator.paginate(Bucket=names.bucket):
        for obj in page.get("Contents", []):
            await clients.s3.delete_object(Bucket=names.bucket, Key=obj["Key"])
    await clients.kinesis.delete_stream(StreamName=names.stream, EnforceConsumerDeletion=True)
    for _ in range(100):
        if names.stream not in (await clients.kinesis.list_streams())["StreamNames"]:
            break
    await ensure_stream(clients.kinesis, names.stream)
    scan = await clients.dynamodb.scan(TableName=names.lease_table)
    for item in scan.get("Items", []):
        await clients.dynamodb.delete_item(TableName=names.lease_table, Key={"shard_id": item["shard_id"]})
