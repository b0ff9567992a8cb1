"""Roles and the masked analyst schema of CONTRACT §10, as each role sees the warehouse."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.conftest import Resources
from vitalstream.devstack.bootstrap import allow_login, apply_analytics
from vitalstream.devstack.stack import as_user
from workers.warehouse.refresh import refresh_marts

pytestmark = pytest.mark.integration

PATIENTS = ("pt-alpha-001", "pt-bravo-002")
DEVICES = ("dev-xray-91", "dev-yank-92")
BIRTH = dt.date(1961, 7, 14)
T0 = dt.datetime(2026, 1, 1, 10, tzinfo=dt.UTC)


@pytest.fixture
async def owner(resources: Resources) -> AsyncIterator[asyncpg.Connection]:
    """Every table with rows of two patients, marts applied and refreshed; a connection as the owner."""
    await apply_analytics(resources.warehouse_url)
    conn = await asyncpg.connect(resources.warehouse_url)
    await conn.execute("TRUNCATE news2_hourly, deterioration_alerts")
    for i, (patient, device) in enumerate(zip(PATIENTS, DEVICES, strict=True)):
        for table, extra, value in (("fact_vitals", "", 70.0), ("vitals_quarantine", ", reason", 900.0)):
            await conn.execute(
                f"INSERT INTO {table} (device_id, patient_id, metric, loinc_code, value, unit, measured_at,"
                f" received_at, message_id, batch_id{extra}) VALUES ($1, $2, 'heart_rate', '8867-4', $3, '/min',"
                f" $4, $4, $5, 'batch-1'{', $6' if extra else ''})",
                device, patient, value, T0 + dt.timedelta(minutes=i), f"msg-{device}-{table}",
                *(["implausible"] if extra else []),
            )  # fmt: skip
        await conn.execute(
            "INSERT INTO dim_patient (patient_id, birth_date, sex, postal_code, valid_from) VALUES ($1, $2, 'F',"
            " '021', $3)",
            patient, BIRTH, T0,
        )  # fmt: skip
        await conn.execute(
            "INSERT INTO fact_encounters (encounter_id, patient_id, encounter_type, admit_at, discharge_at,"
            " primary_dx) VALUES ($1, $2, 'inpatient', $3, $4, 'I21')",
            f"enc-{i}", patient, T0 - dt.timedelta(hours=1), T0 + dt.timedelta(hours=2),
        )  # fmt: skip
        await conn.execute(
            "INSERT INTO fact_claims (claim_id, line_number, patient_id, service_date, status, denial_reason)"
            " VALUES ($1, 1, $2, '2026-01-01', 'denied', 'CO-50')",
            f"clm-{i}", patient,
        )  # fmt: skip
        await conn.execute(
            "INSERT INTO news2_hourly (patient_id, hour_start, total, parameters, any_three, risk)"
            " VALUES ($1, $2, 3, 1, false, 'low')",
            patient, T0.replace(minute=0),
        )  # fmt: skip
        await conn.execute(
            "INSERT INTO deterioration_alerts (alert_id, patient_id, hour_start, risk, total) VALUES ($1, $2, $3,"
            " 'medium', 5)",
            f"alert-{i}", patient, T0.replace(minute=0),
        )  # fmt: skip
    await refresh_marts(resources.warehouse_url)
    try:
        yield conn
    finally:
        await conn.execute("RESET ROLE")
        await conn.close()


async def public_relations(conn: asyncpg.Connection) -> list[str]:
    rows = await conn.fetch(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'm', 'p', 'f') ORDER BY 1"
    )
    return [r["relname"] for r in rows]


async def analyst_relations(conn: asyncpg.Connection) -> list[str]:
    rows = await conn.fetch(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'analyst' AND c.relkind IN ('r', 'v', 'm') ORDER BY 1"
    )
    return [r["relname"] for r in rows]


async def test_analyst_is_refused_on_every_public_relation(owner: asyncpg.Connection) -> None:
    relations = await public_relations(owner)
    assert {"fact_vitals", "dim_patient", "daily_patient_summary", "census_daily", "readmissions_30d"} <= set(relations)
    await owner.execute("SET ROLE vitalstream_analyst")
    for name in relations:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await owner.fetch(f'SELECT * FROM public."{name}" LIMIT 1')
    for name in ("pseudonym_key",):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await owner.fetch(f"SELECT * FROM vitalstream_private.{name}")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await owner.execute("INSERT INTO fact_encounters (encounter_id, patient_id, admit_at) VALUES ('x', 'y', now())")


async def test_analyst_schema_holds_the_facts_and_marts_without_identifiers(owner: asyncpg.Connection) -> None:
    names = await analyst_relations(owner)
    assert set(names) >= {
        "fact_vitals", "vitals_quarantine", "dim_patient", "fact_encounters", "fact_claims", "news2_hourly",
        "deterioration_alerts",
        "daily_patient_summary", "census_daily", "avg_vitals_by_diagnosis", "claims_denial_rate_monthly",
        "readmissions_30d",
    }  # fmt: skip
    await owner.execute("SET ROLE vitalstream_analyst")
    raw = [*PATIENTS, *DEVICES, BIRTH.isoformat(), "msg-"]
    seen_rows = 0
    for name in names:
        columns = [
            r["column_name"]
            for r in await owner.fetch(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = 'analyst' AND table_name = $1",
                name,
            )
        ]
        assert not {"device_id", "message_id", "birth_date"} & set(columns), name
        for row in await owner.fetch(f"SELECT * FROM analyst.{name}"):
            seen_rows += 1
            text = " ".join(str(v) for v in row.values())
            assert not [r for r in raw if r in text], (name, text)
            if "patient_id" in row and row["patient_id"] is not None:
                assert re.fullmatch(r"[0-9a-f]{64}", row["patient_id"]), name
    assert seen_rows >= 2 * 8
    years = {r["birth_year"] for r in await owner.fetch("SELECT birth_year FROM analyst.dim_patient")}
    assert years == {1961}
    # The same facts: a row for every public row, the same measures.
    assert await owner.fetchval("SELECT sum(readings) FROM analyst.daily_patient_summary") == 2
    assert await owner.fetchval("SELECT count(*) FROM analyst.readmissions_30d") == 2


async def test_keyed_hash_is_stable_keyed_and_not_a_plain_hash(owner: asyncpg.Connection, resources: Resources) -> None:
    key = await owner.fetchval("SELECT key FROM vitalstream_private.pseudonym_key")
    assert len(key) == 32
    expected = {hmac.new(key, p.encode(), hashlib.sha256).hexdigest() for p in PATIENTS}
    await owner.execute("SET ROLE vitalstream_analyst")
    before = {r["patient_id"] for r in await owner.fetch("SELECT patient_id FROM analyst.fact_vitals")}
    assert before == expected
    for plain in (hashlib.sha256, hashlib.md5, hashlib.sha1):
        assert not before & {plain(p.encode()).hexdigest() for p in PATIENTS}
    await owner.execute("RESET ROLE")
    await refresh_marts(resources.warehouse_url)
    await apply_analytics(resources.warehouse_url)  # a re-applied DDL (a new release) keeps the key
    await refresh_marts(resources.warehouse_url)
    await owner.execute("SET ROLE vitalstream_analyst")
    for table in ("fact_vitals", "daily_patient_summary", "dim_patient", "fact_encounters", "readmissions_30d"):
        assert {r["patient_id"] for r in await owner.fetch(f"SELECT patient_id FROM analyst.{table}")} == before
    # One id, one hash, in every view: the analyst can join across them.
    joined = await owner.fetchval(
        "SELECT count(*) FROM analyst.fact_vitals v JOIN analyst.dim_patient p USING (patient_id)"
    )
    assert joined == 2


async def test_clinical_reads_everything_and_loader_writes(owner: asyncpg.Connection, resources: Resources) -> None:
    await owner.execute("SET ROLE vitalstream_clinical")
    for name in await public_relations(owner):
        if name.startswith(("fact_", "dim_", "vitals_", "load_", "batch_", "news2_")) or name in (
            "daily_patient_summary", "census_daily", "avg_vitals_by_diagnosis", "claims_denial_rate_monthly",
            "readmissions_30d",
        ):  # fmt: skip
            await owner.fetch(f"SELECT * FROM public.{name} LIMIT 1")
    assert await owner.fetchval("SELECT count(*) FROM analyst.fact_vitals") == 2
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await owner.execute("DELETE FROM fact_vitals")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await owner.fetch("SELECT * FROM vitalstream_private.pseudonym_key")
    await owner.execute("RESET ROLE")
    # The local stack's workers log in as the loader: they write the tables, and read neither key nor marts' DDL.
    await allow_login(resources.warehouse_url)
    loader = await asyncpg.connect(as_user(resources.warehouse_url, "vitalstream_loader"))
    try:
        assert await loader.fetchval("SELECT current_user") == "vitalstream_loader"
        await loader.execute(
            "INSERT INTO batch_quarantine (pipeline, source_key, reason) VALUES ('ehr', 'raw/ehr/x.csv', 'bad')"
        )
        await loader.execute("DELETE FROM batch_quarantine WHERE source_key = 'raw/ehr/x.csv'")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await loader.fetch("SELECT * FROM vitalstream_private.pseudonym_key")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await loader.execute("REFRESH MATERIALIZED VIEW daily_patient_summary")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await loader.execute("DROP TABLE fact_claims")
    finally:
        await loader.close()
