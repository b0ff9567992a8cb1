"""The marts of CONTRACT §10 on generated data with known answers, and `vitalstream warehouse refresh`."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg
import pytest

from tests.conftest import Resources
from vitalstream.devstack.bootstrap import apply_analytics
from workers.warehouse.refresh import refresh_marts

pytestmark = pytest.mark.integration

UTC = dt.UTC
DAY = dt.timedelta(days=1)


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


@pytest.fixture
async def wh(resources: Resources) -> AsyncIterator[asyncpg.Connection]:
    """Empty warehouse tables with the marts applied; a connection as the owner."""
    await apply_analytics(resources.warehouse_url)
    conn = await asyncpg.connect(resources.warehouse_url)
    await conn.execute("TRUNCATE news2_hourly")
    await conn.execute("SET TIME ZONE 'America/New_York'")  # the marts must not depend on the session zone
    try:
        yield conn
    finally:
        await conn.close()


async def add_vitals(conn: asyncpg.Connection, rows: Sequence[tuple[Any, ...]], table: str = "fact_vitals") -> None:
    """rows: (device_id, patient_id, metric, value, measured_at)."""
    extra = ", reason" if table == "vitals_quarantine" else ""
    await conn.executemany(
        f"INSERT INTO {table} (device_id, patient_id, metric, loinc_code, value, unit, measured_at, received_at,"
        f" message_id, batch_id{extra}) VALUES ($1, $2, $3, '0-0', $4, 'u', $5, $5, $6, 'b'{', $7' if extra else ''})",
        [(*r, f"m-{i}-{r[0]}", *(["implausible"] if extra else [])) for i, r in enumerate(rows)],
    )


async def add_encounters(conn: asyncpg.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """rows: (encounter_id, patient_id, encounter_type, admit_at, discharge_at, primary_dx)."""
    await conn.executemany(
        "INSERT INTO fact_encounters (encounter_id, patient_id, encounter_type, admit_at, discharge_at, primary_dx)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        rows,
    )


async def add_news2(conn: asyncpg.Connection, rows: Sequence[tuple[str, dt.datetime, int]]) -> None:
    await conn.executemany(
        "INSERT INTO news2_hourly (patient_id, hour_start, total, parameters, any_three, risk)"
        " VALUES ($1, $2, $3, 1, false, 'low')",
        rows,
    )


async def test_daily_patient_summary_known_answers(wh: asyncpg.Connection, resources: Resources) -> None:
    await add_vitals(
        wh,
        [
            ("d1", "p1", "heart_rate", 60.0, at("2026-01-01T00:00:00+00:00")),
            ("d1", "p1", "heart_rate", 80.0, at("2026-01-01T23:59:59.999+00:00")),
            ("d2", "p1", "heart_rate", 100.0, at("2026-01-01T12:00:00+00:00")),  # a second device, same patient
            ("d1", "p1", "heart_rate", 70.0, at("2026-01-02T00:00:00+00:00")),  # next UTC day
            ("d1", "p1", "spo2", 97.0, at("2026-01-01T20:30:00-05:00")),  # 01:30 UTC on the 2nd
            ("d3", "p2", "heart_rate", 90.0, at("2026-01-01T10:00:00+00:00")),
            ("d9", None, "heart_rate", 50.0, at("2026-01-01T10:00:00+00:00")),  # no patient: its own group
        ],
    )
    await add_vitals(
        wh,
        [
            ("d1", "p1", "heart_rate", 400.0, at("2026-01-01T05:00:00+00:00")),
            ("d1", "p1", "glucose", 5000.0, at("2026-01-01T05:00:00+00:00")),  # quarantined only
        ],
        table="vitals_quarantine",
    )
    await add_news2(
        wh,
        [
            ("p1", at("2026-01-01T03:00:00+00:00"), 2),
            ("p1", at("2026-01-01T23:00:00+00:00"), 6),
            ("p1", at("2026-01-02T00:00:00+00:00"), 1),
        ],
    )
    assert await refresh_marts(resources.warehouse_url) == ["daily_patient_summary"]
    rows = await wh.fetch(
        "SELECT patient_id, day, metric, readings, min_value, max_value, avg_value, quarantined, max_news2"
        " FROM daily_patient_summary ORDER BY patient_id NULLS LAST, day, metric"
    )
    d1, d2 = dt.date(2026, 1, 1), dt.date(2026, 1, 2)
    assert [tuple(r) for r in rows] == [
        ("p1", d1, "glucose", 0, None, None, None, 1, 6),
        ("p1", d1, "heart_rate", 3, 60.0, 100.0, 80.0, 1, 6),
        ("p1", d2, "heart_rate", 1, 70.0, 70.0, 70.0, 0, 1),
        ("p1", d2, "spo2", 1, 97.0, 97.0, 97.0, 0, 1),
        ("p2", d1, "heart_rate", 1, 90.0, 90.0, 90.0, 0, None),
        (None, d1, "heart_rate", 1, 50.0, 50.0, 50.0, 0, None),
    ]


DIRECT = """
SELECT patient_id, (measured_at AT TIME ZONE 'UTC')::date AS day, metric, count(*) AS readings,
       min(value) AS min_value, max(value) AS max_value, avg(value) AS avg_value
FROM fact_vitals GROUP BY 1, 2, 3
"""


async def test_daily_patient_summary_equals_direct_aggregation_after_refresh(
    wh: asyncpg.Connection, resources: Resources
) -> None:
    rng = random.Random(7)
    start = at("2026-01-01T00:00:00+00:00")
    rows = [
        (f"d{rng.randrange(12)}", f"p{rng.randrange(5)}", rng.choice(["heart_rate", "spo2", "resp_rate"]),
         round(rng.uniform(10, 150), 3), start + dt.timedelta(seconds=rng.randrange(4 * 86400)))
        for _ in range(3000)
    ]  # fmt: skip
    await add_vitals(wh, list({(r[0], r[2], r[4]): r for r in rows}.values()))
    await refresh_marts(resources.warehouse_url)
    first = await _summary_vs_direct(wh)
    # Readings that arrive later appear after the next refresh, and only then.
    await add_vitals(wh, [("late", "p1", "heart_rate", 42.0, start + dt.timedelta(days=9))])
    assert await wh.fetchval("SELECT count(*) FROM daily_patient_summary WHERE min_value = 42") == 0
    await refresh_marts(resources.warehouse_url)
    await refresh_marts(resources.warehouse_url)  # idempotent
    second = await _summary_vs_direct(wh)
    assert len(second) == len(first) + 1


async def _summary_vs_direct(conn: asyncpg.Connection) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    direct = {tuple(r)[:3]: tuple(r)[3:] for r in await conn.fetch(DIRECT)}
    summary = {
        tuple(r)[:3]: tuple(r)[3:]
        for r in await conn.fetch(
            "SELECT patient_id, day, metric, readings, min_value, max_value, avg_value FROM daily_patient_summary"
        )
    }
    assert summary.keys() == direct.keys()
    for key, (readings, low, high, mean) in direct.items():
        assert summary[key][:3] == (readings, low, high), key
        assert summary[key][3] == pytest.approx(mean, rel=1e-12), key
    return summary


async def test_refresh_does_not_wait_for_loading_workers_or_readers(
    wh: asyncpg.Connection, resources: Resources
) -> None:
    await add_vitals(wh, [("d1", "p1", "heart_rate", 60.0, at("2026-01-01T00:00:00+00:00"))])
    await refresh_marts(resources.warehouse_url)
    loader = await asyncpg.connect(resources.warehouse_url)
    reader = await asyncpg.connect(resources.warehouse_url)
    try:
        # A worker's batch transaction is open (rows written, not committed) and a dashboard is mid-query.
        load = loader.transaction()
        await load.start()
        await add_vitals(loader, [("d1", "p1", "heart_rate", 61.0, at("2026-01-01T00:01:00+00:00"))])
        read = reader.transaction()
        await read.start()
        assert await reader.fetchval("SELECT sum(readings) FROM daily_patient_summary") == 1
        await asyncio.wait_for(refresh_marts(resources.warehouse_url), timeout=20)
        await read.rollback()
        await load.commit()
        assert await wh.fetchval("SELECT sum(readings) FROM daily_patient_summary") == 1  # uncommitted then
        await refresh_marts(resources.warehouse_url)
        assert await wh.fetchval("SELECT sum(readings) FROM daily_patient_summary") == 2
    finally:
        await loader.close()
        await reader.close()


async def test_refresh_populates_an_unpopulated_view(wh: asyncpg.Connection, resources: Resources) -> None:
    await add_vitals(wh, [("d1", "p1", "heart_rate", 60.0, at("2026-01-01T00:00:00+00:00"))])
    await wh.execute("REFRESH MATERIALIZED VIEW daily_patient_summary WITH NO DATA")
    await refresh_marts(resources.warehouse_url)
    assert await wh.fetchval("SELECT count(*) FROM daily_patient_summary") == 1


async def test_census_daily(wh: asyncpg.Connection) -> None:
    today = dt.datetime.now(UTC).date()
    base = today - 5 * DAY

    def t(day: int, hh: int, mm: int = 0) -> dt.datetime:
        return dt.datetime.combine(base + day * DAY, dt.time(hh, mm), tzinfo=UTC)

    await add_encounters(
        wh,
        [
            ("e1", "pa", "inpatient", t(0, 10), t(2, 0), "I21"),  # discharged at midnight: in house on day 2
            ("e2", "pb", "inpatient", t(1, 23), None, "J18"),  # never discharged: in house to today
            ("e3", "pa", "emergency", t(3, 12), t(3, 15), "R07"),
            ("e4", "pa", "inpatient", t(4, 8), t(4, 9), "I21"),
            ("e5", "pa", "inpatient", t(4, 14), t(4, 20), "I21"),  # twice on one day: one patient
            ("e6", "pc", "outpatient", t(1, 9), t(1, 10), None),
            ("e7", "pd", "inpatient", t(2, 0, 0) - dt.timedelta(microseconds=1), t(2, 0, 0), "X"),  # 1 µs on day 1
        ],
    )
    rows = await wh.fetch("SELECT day, encounter_type, patients_in_house FROM census_daily")
    got = {(r["day"], r["encounter_type"]): r["patients_in_house"] for r in rows}
    expected_in = {0: 1, 1: 3, 2: 3, 3: 1, 4: 2, 5: 1}  # pa; pa+pb+pd; pa+pb+pd; pb; pb+pa; pb
    expected = {}
    for day in range(6):
        expected[(base + day * DAY, "inpatient")] = expected_in[day]
        expected[(base + day * DAY, "emergency")] = 1 if day == 3 else 0
        expected[(base + day * DAY, "outpatient")] = 1 if day == 1 else 0
    assert got == expected


async def test_avg_vitals_by_diagnosis(wh: asyncpg.Connection) -> None:
    await add_encounters(
        wh,
        [
            ("e1", "pa", "inpatient", at("2026-01-01T10:00:00+00:00"), at("2026-01-02T10:00:00+00:00"), "I21"),
            ("e2", "pa", "emergency", at("2026-01-01T12:00:00+00:00"), at("2026-01-01T13:00:00+00:00"), "I21"),
            ("e3", "pb", "inpatient", at("2026-01-01T00:00:00+00:00"), None, "I21"),  # open: every later reading
            ("e4", "pb", "inpatient", at("2025-12-01T00:00:00+00:00"), at("2025-12-02T00:00:00+00:00"), "J18"),
            ("e5", "pc", "outpatient", at("2026-01-01T00:00:00+00:00"), at("2026-01-09T00:00:00+00:00"), None),
        ],
    )
    await add_vitals(
        wh,
        [
            ("d1", "pa", "heart_rate", 80.0, at("2026-01-01T10:00:00+00:00")),  # at admission: in
            ("d1", "pa", "heart_rate", 100.0, at("2026-01-01T12:30:00+00:00")),  # in e1 and e2 (same dx): once
            ("d1", "pa", "heart_rate", 90.0, at("2026-01-02T10:00:00+00:00")),  # at discharge: in
            ("d1", "pa", "heart_rate", 999.0, at("2026-01-02T10:00:01+00:00")),  # after discharge: out
            ("d1", "pa", "heart_rate", 999.0, at("2026-01-01T09:59:59+00:00")),  # before admission: out
            ("d2", "pb", "heart_rate", 60.0, at("2026-03-01T00:00:00+00:00")),  # open encounter: in
            ("d2", "pb", "spo2", 95.0, at("2025-12-01T12:00:00+00:00")),  # J18
            ("d3", "pc", "heart_rate", 999.0, at("2026-01-03T00:00:00+00:00")),  # encounter without dx: out
            ("d4", "pz", "heart_rate", 999.0, at("2026-01-01T11:00:00+00:00")),  # no encounter at all: out
        ],
    )
    rows = await wh.fetch(
        "SELECT primary_dx, metric, patients, readings, avg_value FROM avg_vitals_by_diagnosis ORDER BY 1, 2"
    )
    assert [tuple(r) for r in rows] == [("I21", "heart_rate", 2, 4, 82.5), ("J18", "spo2", 1, 1, 95.0)]


async def test_claims_denial_rate_monthly(wh: asyncpg.Connection) -> None:
    jan, feb = dt.date(2026, 1, 1), dt.date(2026, 2, 1)
    lines = [
        ("c1", 1, jan.replace(day=3), "paid", "CO-45"),  # paid with an adjustment: not a denial
        ("c1", 2, jan.replace(day=3), "denied", "CO-50"),
        ("c2", 1, jan.replace(day=31), "denied", "CO-50"),
        ("c3", 1, jan.replace(day=15), "denied", "PR-1"),
        ("c4", 1, jan.replace(day=20), "pending", None),
        ("c5", 1, jan.replace(day=21), "denied", "CO-97"),  # denied, then paid by a later file (below)
        ("c6", 1, feb.replace(day=2), "paid", None),  # a month without denials: no row
    ]
    await wh.executemany(
        "INSERT INTO fact_claims (claim_id, line_number, patient_id, service_date, status, denial_reason)"
        " VALUES ($1, $2, 'pa', $3, $4, $5)",
        lines,
    )
    # A later file with the same line replaces it, as the claims loader does (one row per line, latest wins).
    await wh.execute(
        "INSERT INTO fact_claims (claim_id, line_number, patient_id, service_date, status, denial_reason)"
        " VALUES ('c5', 1, 'pa', '2026-01-21', 'paid', NULL) ON CONFLICT (claim_id, line_number)"
        " DO UPDATE SET status = EXCLUDED.status, denial_reason = EXCLUDED.denial_reason"
    )
    rows = await wh.fetch(
        "SELECT month, denial_reason, claim_lines, denied_lines, denial_rate FROM claims_denial_rate_monthly"
        " ORDER BY 1, 2"
    )
    assert [tuple(r) for r in rows] == [(jan, "CO-50", 6, 2, 2 / 6), (jan, "PR-1", 6, 1, 1 / 6)]


async def test_readmissions_30d(wh: asyncpg.Connection) -> None:
    discharged = at("2026-01-01T12:00:00+00:00")
    await add_encounters(
        wh,
        [
            ("a1", "pa", "inpatient", at("2025-12-28T08:00:00+00:00"), discharged, "I21"),
            # day 30 (30.25 days later, the 31st of January): a readmission
            ("a2", "pa", "inpatient", at("2026-01-31T18:00:00+00:00"), at("2026-02-02T00:00:00+00:00"), "I21"),
            ("b1", "pb", "inpatient", at("2025-12-28T08:00:00+00:00"), discharged, "I21"),
            # day 31 (only 30.8 days later, but the 1st of February): not a readmission
            ("b2", "pb", "inpatient", at("2026-02-01T08:00:00+00:00"), None, "I21"),
            ("c1", "pc", "inpatient", at("2025-12-28T08:00:00+00:00"), discharged, "J18"),
            ("c2", "pc", "emergency", at("2026-01-02T08:00:00+00:00"), at("2026-01-02T09:00:00+00:00"), "R07"),
            ("c3", "pc", "IMP", at("2026-01-05T08:00:00+00:00"), at("2026-01-06T08:00:00+00:00"), "J18"),
            ("c4", "pc", "inpatient", at("2026-01-10T08:00:00+00:00"), at("2026-01-11T08:00:00+00:00"), "J18"),
            ("d1", "pd", "inpatient", at("2026-01-01T08:00:00+00:00"), None, "I21"),  # no discharge yet: no row
            ("e1", "pe", "inpatient", at("2026-01-01T08:00:00+00:00"), discharged, "I21"),
            ("e2", "pf", "inpatient", at("2026-01-02T08:00:00+00:00"), None, "I21"),  # another patient
        ],
    )
    rows = await wh.fetch(
        "SELECT patient_id, encounter_id, discharge_at, readmission_encounter_id, days_to_readmission"
        " FROM readmissions_30d ORDER BY encounter_id"
    )
    assert [tuple(r) for r in rows] == [
        ("pa", "a1", discharged, "a2", 30),
        ("pa", "a2", at("2026-02-02T00:00:00+00:00"), None, None),
        ("pb", "b1", discharged, None, None),
        ("pc", "c1", discharged, "c3", 4),  # the emergency visit is not an inpatient admission; first one wins
        ("pc", "c3", at("2026-01-06T08:00:00+00:00"), "c4", 4),
        ("pc", "c4", at("2026-01-11T08:00:00+00:00"), None, None),
        ("pe", "e1", discharged, None, None),
    ]


async def test_marts_ddl_is_idempotent(wh: asyncpg.Connection, resources: Resources) -> None:
    await add_vitals(wh, [("d1", "p1", "heart_rate", 60.0, at("2026-01-01T00:00:00+00:00"))])
    await refresh_marts(resources.warehouse_url)
    await apply_analytics(resources.warehouse_url)
    assert await wh.fetchval("SELECT count(*) FROM daily_patient_summary") == 1  # kept, not recreated empty
