"""The short forms of `make loadtest` and `make chaos`, and proof that the reconciliation bites.

One local stack (``dev up`` with durable kinesalite, two vitals workers) for the module. Correctness only:
every run must reconcile (0 missing, 0 unexpected, 0 doubled); no speed is asserted.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from loadtest import chaos, load
from loadtest.driver import run_fleet
from loadtest.fleet import campaign_mix, make_fleet
from loadtest.journal import Journal
from loadtest.reconcile import audit_totals, read_journal, reconcile, render
from loadtest.registry import register
from loadtest.stack import Stack, environment

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(tmp_path_factory.mktemp("campaign"))
    running.up(chaos.CHAOS_SETTINGS)
    try:
        running.add_worker("vitals", "worker-vitals-2")
        yield running
    finally:
        running.down()


async def test_reconciliation_bites(stack: Stack, tmp_path: Path) -> None:
    env = stack.env
    url = env["VITALSTREAM_WAREHOUSE_URL"]
    fleet = make_fleet(4, seed=8, prefix="bite", mix=campaign_mix())
    with environment(env):
        tokens = await register(fleet)
    journal = Journal(tmp_path, "bite")
    conn = await asyncpg.connect(url)
    before = await audit_totals(conn)
    await run_fleet(env["VITALSTREAM_GATEWAY_URL"], fleet, tokens, journal, rate=2.0, duration=6)
    journal.close()
    report = await reconcile("bite", read_journal(tmp_path), url, "bite-", before, wait=60)
    assert report.ok, render(report)
    assert report.fact_rows > 0
    assert report.duplicates_removed == report.truth.duplicates

    def run_cli() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "loadtest.reconcile", "--journal", str(tmp_path), "--prefix", "bite-",
             "--warehouse-url", url, "--wait", "1"],
            capture_output=True, text=True, check=False, timeout=120, env={**os.environ, **env},
        )  # fmt: skip

    assert run_cli().returncode == 0
    try:
        victim = await conn.fetchrow("SELECT * FROM fact_vitals WHERE device_id LIKE 'bite-%' LIMIT 1")
        await conn.execute(
            "DELETE FROM fact_vitals WHERE device_id = $1 AND metric = $2 AND measured_at = $3",
            victim["device_id"], victim["metric"], victim["measured_at"],
        )  # fmt: skip
        deleted = run_cli()
        assert deleted.returncode == 1, deleted.stdout
        assert "MISSING                 1" in deleted.stdout, deleted.stdout
        # Into the wrong table: missing from fact_vitals, unexpected in vitals_quarantine.
        await conn.execute(
            "INSERT INTO vitals_quarantine (device_id, patient_id, metric, loinc_code, value, unit, measured_at,"
            " received_at, message_id, batch_id, reason, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9,"
            " 'behind-its-back', 'spike', 'inserted by the test')",
            *(victim[c] for c in ("device_id", "patient_id", "metric", "loinc_code", "value", "unit", "measured_at",
                                  "received_at", "message_id")),
        )  # fmt: skip
        misplaced = run_cli()
        assert misplaced.returncode == 1, misplaced.stdout
        assert "UNEXPECTED              1" in misplaced.stdout
        assert "MISSING                 1" in misplaced.stdout
        # Back in fact_vitals as well: the reading is now there twice.
        await conn.execute(
            "INSERT INTO fact_vitals (device_id, patient_id, metric, loinc_code, value, unit, measured_at, received_at,"
            " message_id, batch_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'behind-its-back')",
            *(victim[c] for c in ("device_id", "patient_id", "metric", "loinc_code", "value", "unit", "measured_at",
                                  "received_at", "message_id")),
        )  # fmt: skip
        doubled = run_cli()
        assert doubled.returncode == 1, doubled.stdout
        assert "DOUBLED                 1" in doubled.stdout, doubled.stdout
        # A reading nobody sent.
        await conn.execute("DELETE FROM vitals_quarantine WHERE batch_id = 'behind-its-back'")
        await conn.execute(
            "INSERT INTO fact_vitals (device_id, patient_id, metric, loinc_code, value, unit, measured_at, received_at,"
            " message_id, batch_id) VALUES ($1, $2, 'heart_rate', '8867-4', 72, '/min', now(), now(), 'x',"
            " 'behind-its-back')",
            victim["device_id"], victim["patient_id"],
        )  # fmt: skip
        inserted = run_cli()
        assert inserted.returncode == 1, inserted.stdout
        assert "UNEXPECTED              1" in inserted.stdout, inserted.stdout
        assert "MISSING                 0" in inserted.stdout
    finally:
        await conn.close()


async def test_load_shape_short_form_reconciles(stack: Stack, tmp_path: Path) -> None:
    code, report = await load.run("spike", users=8, duration=10, processes=2, reports=tmp_path, seed=3, env=stack.env)
    assert report is not None, _locust_log(tmp_path)
    assert code == 0, render(report)
    assert report.truth.readings_accepted > 0
    assert report.fact_rows > 0


def _locust_log(reports: Path) -> str:
    return "".join(path.read_text()[-3000:] for path in reports.glob("run-*/locust.log"))


@pytest.mark.parametrize("name", chaos.SHORT)
async def test_chaos_short_form_reconciles(stack: Stack, tmp_path: Path, name: str) -> None:
    outcome = await chaos.run_scenario(stack, chaos.SCENARIOS[name], "t", tmp_path, devices=8, duration=8, seed=4)
    assert outcome.report.ok, render(outcome.report)
    assert outcome.report.truth.readings_accepted > 0
    assert outcome.events, "the fault was not injected"
