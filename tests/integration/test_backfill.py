"""``vitalstream backfill``: objects already in S3 run through the pipeline once, however often it runs."""

from __future__ import annotations

import gzip
import time

import asyncpg
import pytest

from schemas.envelope import encode_envelope
from tests.conftest import Resources
from tests.helpers.batch import CLAIMS_HEADER, claim, csv_bytes
from tests.helpers.processes import run_cli
from vitalstream.devstack.clients import AwsClients
from workers.backfill import parse_s3_uri

pytestmark = pytest.mark.integration


def test_parse_s3_uri() -> None:
    assert parse_s3_uri("s3://lake/raw/claims/") == ("lake", "raw/claims/")
    assert parse_s3_uri("s3://lake") == ("lake", "")
    for bad in ("lake/raw", "https://lake/raw", "s3:///raw"):
        with pytest.raises(ValueError, match="s3://"):
            parse_s3_uri(bad)


async def _count(url: str, sql: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval(sql))
    finally:
        await conn.close()


async def test_backfill_claims_loads_each_file_once(clients: AwsClients, resources: Resources) -> None:
    bucket = resources.names.bucket
    rows = [claim("C1", 1), claim("C1", 2), claim("C2", 1, status="bogus")]
    await clients.s3.put_object(Bucket=bucket, Key="raw/claims/2026-11-01.csv", Body=csv_bytes(CLAIMS_HEADER, rows))
    await clients.s3.put_object(
        Bucket=bucket, Key="raw/claims/2026-11-02.csv", Body=csv_bytes(CLAIMS_HEADER, [claim("C3")])
    )
    for _ in range(2):
        result = run_cli("backfill", "claims", f"s3://{bucket}/raw/claims/", env=resources.env)
        assert result.returncode == 0, result.stderr
    assert "backfill claims: files=2 rows_in=4 loaded=3 quarantined=1 duplicate=0 files_quarantined=0" in result.stdout
    assert "backfill: 2/2 objects" in result.stderr  # not a terminal: plain progress lines
    assert await _count(resources.warehouse_url, "SELECT count(*) FROM fact_claims") == 3
    assert await _count(resources.warehouse_url, "SELECT count(*) FROM batch_quarantine") == 1
    assert await _count(resources.warehouse_url, "SELECT count(*) FROM load_audit WHERE pipeline='claims'") == 2


async def test_backfill_vitals_replays_an_unloaded_raw_archive_once(clients: AwsClients, resources: Resources) -> None:
    bucket = resources.names.bucket
    now_us = int(time.time() * 1_000_000) - 3_600_000_000
    envelopes = [
        encode_envelope(
            f"req-{n}",
            "bf-dev-1",
            now_us,
            {
                "message_id": [f"m-{n}-{i}" for i in range(3)],
                "patient_id": ["pt-1"] * 3,
                "metric": ["heart_rate"] * 3,
                "loinc_code": ["8867-4"] * 3,
                "value": [70.0 + i for i in range(3)],
                "unit": ["/min"] * 3,
                "measured_at_us": [now_us + (n * 3 + i) * 1_000_000 for i in range(3)],
            },
        )
        for n in range(4)
    ]
    key = "raw/iot/vitals/dt=2026-11-25/hour=10/lostbatch01.jsonl.gz"
    await clients.s3.put_object(Bucket=bucket, Key=key, Body=gzip.compress(b"\n".join(envelopes) + b"\n"))
    for _ in range(2):
        result = run_cli("backfill", "vitals", f"s3://{bucket}/raw/iot/vitals/", env=resources.env)
        assert result.returncode == 0, result.stderr
    loaded = await _count(resources.warehouse_url, "SELECT count(*) FROM fact_vitals WHERE device_id = 'bf-dev-1'")
    pending = await _count(resources.warehouse_url, "SELECT count(*) FROM vitals_pending")
    assert loaded + pending == 12
    assert await _count(resources.warehouse_url, "SELECT count(*) FROM load_audit WHERE batch_id = 'lostbatch01'") == 1
