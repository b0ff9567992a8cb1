"""`vitalstream warehouse refresh`: the command, its loop, and the Redshift Data API path (through the stand-in)."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import subprocess
import sys

import asyncpg
import pytest

from tests.conftest import Resources
from vitalstream.devstack.bootstrap import apply_analytics
from vitalstream.devstack.redshift_data import start_redshift_data
from workers.warehouse.refresh import refresh_marts

pytestmark = pytest.mark.integration


async def _one_reading(url: str) -> asyncpg.Connection:
    await apply_analytics(url)
    conn = await asyncpg.connect(url)
    await conn.execute(
        "INSERT INTO fact_vitals (device_id, patient_id, metric, loinc_code, value, unit, measured_at, received_at,"
        " message_id, batch_id) VALUES ('d', 'p', 'heart_rate', '8867-4', 61, '/min', $1, $1, 'm', 'b')",
        dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    )
    return conn


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "vitalstream", *args]


async def test_command_refreshes_once_and_in_a_loop(resources: Resources) -> None:
    conn = await _one_reading(resources.warehouse_url)
    env = {**os.environ, **resources.env}
    try:
        once = await asyncio.to_thread(
            subprocess.run, _cli("warehouse", "refresh"), env=env, capture_output=True, text=True, timeout=60
        )
        assert once.returncode == 0, once.stderr
        assert once.stdout.startswith("refreshed daily_patient_summary in ")
        assert await conn.fetchval("SELECT sum(readings) FROM daily_patient_summary") == 1
        loop = await asyncio.create_subprocess_exec(
            *_cli("warehouse", "refresh", "--every", "1"), env=env, stdout=asyncio.subprocess.PIPE
        )
        assert loop.stdout is not None
        try:
            first = await asyncio.wait_for(loop.stdout.readline(), timeout=30)
            assert first.startswith(b"refreshed daily_patient_summary")
            await conn.execute("DELETE FROM fact_vitals")
            for _ in range(100):  # a later tick empties the summary
                if not await conn.fetchval("SELECT count(*) FROM daily_patient_summary"):
                    break
                await asyncio.sleep(0.2)
            assert await conn.fetchval("SELECT count(*) FROM daily_patient_summary") == 0
        finally:
            loop.send_signal(signal.SIGTERM)
            out, _ = await asyncio.wait_for(loop.communicate(), timeout=20)
        assert loop.returncode == 0
        assert out.count(b"refreshed daily_patient_summary") >= 1  # after the first line read above
    finally:
        await conn.close()


def test_command_reports_an_unreachable_warehouse(resources: Resources) -> None:
    env = {**os.environ, **resources.env, "VITALSTREAM_WAREHOUSE_URL": "postgresql://nobody@127.0.0.1:1/none"}
    result = subprocess.run(_cli("warehouse", "refresh"), env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1  # transient: a scheduler retries
    assert "refresh failed" in result.stderr
    assert "Traceback" not in result.stderr


async def test_redshift_data_api_path(resources: Resources, monkeypatch: pytest.MonkeyPatch) -> None:
    conn = await _one_reading(resources.warehouse_url)
    stand_in, endpoint = await start_redshift_data(resources.warehouse_url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_REDSHIFT_DATA", endpoint)
    try:
        await conn.execute("REFRESH MATERIALIZED VIEW daily_patient_summary WITH NO DATA")
        views = await refresh_marts("redshift-data://vitalstream/dev?secret_arn=arn:aws:secretsmanager:r:1:secret:x")
        assert views == ["daily_patient_summary"]
        assert await conn.fetchval("SELECT sum(readings) FROM daily_patient_summary") == 1
        (statement,) = stand_in.statements.values()
        assert statement.sqls == ["REFRESH MATERIALIZED VIEW daily_patient_summary"]
    finally:
        await stand_in.close()
        await conn.close()
