"""PostgreSQL loader against the real private PostgreSQL: idempotency, duplicates, quarantine, pending."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pyarrow as pa
import pytest

from schemas.arrow import PROCESSED_VITALS, QUARANTINED_VITALS, VITAL_COLUMNS
from tests.conftest import Resources
from tests.helpers.vitals import R, readings_table, series, us
from workers.stages.result import with_reason
from workers.warehouse import vitals_sql as sql
from workers.warehouse.postgres.vitals import PostgresLoader
from workers.warehouse.vitals_types import LoadTables

pytestmark = pytest.mark.integration


def clean_rows(rows: list[R], batch_id: str) -> pa.Table:
    t = readings_table(rows).select(list(VITAL_COLUMNS))
    return t.append_column("batch_id", pa.array([batch_id] * t.num_rows, pa.string())).cast(PROCESSED_VITALS)


def quarantine_rows(rows: list[R], batch_id: str, reason: str) -> pa.Table:
    return with_reason(clean_rows(rows, batch_id), reason, "test").cast(QUARANTINED_VITALS)


def pending_rows(rows: list[R], batch_id: str, source: str = "shard-1") -> pa.Table:
    t = clean_rows(rows, batch_id)
    return t.append_column("source_id", pa.array([source] * t.num_rows, pa.string())).cast(sql.PENDING_VITALS)


def tables(
    clean: pa.Table, quarantined: pa.Table | None = None, pending: pa.Table | None = None, **kw: int
) -> LoadTables:
    q = quarantined if quarantined is not None else QUARANTINED_VITALS.empty_table()
    p = pending if pending is not None else sql.PENDING_VITALS.empty_table()
    rows_in = kw.get("rows_in", clean.num_rows + q.num_rows + p.num_rows)
    return LoadTables(clean, q, p, rows_in=rows_in, duplicates_dropped=kw.get("dups", 0))


@pytest.fixture
async def loader(resources: Resources) -> AsyncIterator[PostgresLoader]:
    conn = await asyncpg.connect(resources.warehouse_url)
    await conn.execute("TRUNCATE vitals_pending")
    await conn.close()
    pg = await PostgresLoader.connect(resources.warehouse_url)
    try:
        yield pg
    finally:
        await pg.close()


async def fetch(url: str, query: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(query))
    finally:
        await conn.close()


async def test_same_batch_twice_loads_once(loader: PostgresLoader, resources: Resources) -> None:
    rows = series("d1", "heart_rate", [70, 71, 72])
    first = await loader.load(
        "b1", "vitals", tables(clean_rows(rows, "b1"), quarantine_rows([R("d1", "spo2", 0, 140)], "b1", "implausible"))
    )
    assert (first.rows_in, first.rows_loaded, first.rows_quarantined, first.rows_duplicate) == (4, 3, 1, 0)
    assert not first.already_loaded
    assert first.not_inserted.num_rows == 0
    again = await loader.load(
        "b1", "vitals", tables(clean_rows(rows, "b1"), quarantine_rows([R("d1", "spo2", 0, 140)], "b1", "implausible"))
    )
    assert again.already_loaded
    assert (again.rows_loaded, again.rows_quarantined) == (3, 1)
    assert again.not_inserted.num_rows == 0
    assert (await fetch(resources.warehouse_url, "SELECT count(*) FROM fact_vitals"))[0][0] == 3
    assert (await fetch(resources.warehouse_url, "SELECT count(*) FROM vitals_quarantine"))[0][0] == 1
    assert (await fetch(resources.warehouse_url, "SELECT count(*) FROM load_audit"))[0][0] == 1
    assert (await loader.audited("b1")) is not None
    assert (await loader.audited("nope")) is None


async def test_late_duplicates_never_reach_fact_vitals(loader: PostgresLoader, resources: Resources) -> None:
    spike = quarantine_rows([R("d1", "heart_rate", 1, 150)], "b1", "spike")
    await loader.load("b1", "vitals", tables(clean_rows([R("d1", "heart_rate", 0, 70)], "b1"), spike))
    # A late copy of the quarantined spike arrives as a clean reading, and a late copy of the clean one.
    late = clean_rows([R("d1", "heart_rate", 1, 71), R("d1", "heart_rate", 0, 99), R("d1", "heart_rate", 2, 72)], "b2")
    outcome = await loader.load("b2", "vitals", tables(late))
    assert (outcome.rows_loaded, outcome.rows_duplicate) == (1, 2)
    assert sorted(outcome.not_inserted.column("measured_at").to_pylist()) == [
        v.as_py() for v in pa.array([us(0), us(1)], pa.timestamp("us", tz="UTC"))
    ]
    rows = await fetch(resources.warehouse_url, "SELECT value, batch_id FROM fact_vitals ORDER BY measured_at")
    assert [(r["value"], r["batch_id"]) for r in rows] == [(70.0, "b1"), (72.0, "b2")]
    q = await fetch(resources.warehouse_url, "SELECT value, reason FROM vitals_quarantine")
    assert [(r["value"], r["reason"]) for r in q] == [(150.0, "spike")]


async def test_pending_rows_are_held_then_released(loader: PostgresLoader, resources: Resources) -> None:
    held = [R("d1", "heart_rate", 5, 110)]
    await loader.load(
        "b1", "vitals", tables(clean_rows(series("d1", "heart_rate", [70, 71]), "b1"), pending=pending_rows(held, "b1"))
    )
    assert (await fetch(resources.warehouse_url, "SELECT count(*) FROM vitals_pending"))[0][0] == 1
    series_t = pa.table(
        {"device_id": ["d1"], "metric": ["heart_rate"], "since": pa.array([us(-3600)], pa.timestamp("us", tz="UTC"))}
    )
    context = await loader.context(series_t, "shard-1", 8)
    states = sorted(zip(context.column("state").to_pylist(), context.column("value").to_pylist(), strict=True))
    assert states == [("accepted", 70.0), ("accepted", 71.0), ("pending", 110.0)]
    # The next batch releases it (accepted) together with its successor.
    await loader.load("b2", "vitals", tables(clean_rows([held[0], R("d1", "heart_rate", 6, 111)], "b2"), rows_in=1))
    assert (await fetch(resources.warehouse_url, "SELECT count(*) FROM vitals_pending"))[0][0] == 0
    rows = await fetch(resources.warehouse_url, "SELECT value, batch_id FROM fact_vitals ORDER BY measured_at")
    assert [(r["value"], r["batch_id"]) for r in rows] == [(70.0, "b1"), (71.0, "b1"), (110.0, "b2"), (111.0, "b2")]
    clean, quarantined = await loader.batch_rows("b2")
    assert clean.schema == PROCESSED_VITALS
    assert clean.column("value").to_pylist() == [110.0, 111.0]
    assert quarantined.num_rows == 0


async def test_replayed_load_reports_the_same_skipped_rows(loader: PostgresLoader, resources: Resources) -> None:
    await loader.load("b1", "vitals", tables(clean_rows([R("d1", "heart_rate", 0, 70)], "b1")))
    rows = [R("d1", "heart_rate", 0, 99), R("d1", "heart_rate", 1, 71), R("d1", "heart_rate", 2, 72)]
    first = await loader.load("b2", "vitals", tables(clean_rows(rows, "b2")))
    again = await loader.load("b2", "vitals", tables(clean_rows(rows, "b2")))
    assert (first.already_loaded, again.already_loaded) == (False, True)
    for outcome in (first, again):
        assert (outcome.rows_loaded, outcome.rows_duplicate) == (2, 1)
        assert outcome.not_inserted.to_pylist() == [
            {
                "kind": "clean",
                "device_id": "d1",
                "metric": "heart_rate",
                "measured_at": clean_rows(rows[:1], "b2")["measured_at"][0].as_py(),
            }
        ]
    fact = await fetch(resources.warehouse_url, "SELECT value, batch_id FROM fact_vitals ORDER BY measured_at")
    assert [(r["value"], r["batch_id"]) for r in fact] == [(70.0, "b1"), (71.0, "b2"), (72.0, "b2")]


async def test_concurrent_loads_of_one_batch_insert_once(loader: PostgresLoader, resources: Resources) -> None:
    rows = clean_rows(series("d1", "heart_rate", [70, 71, 72]), "b1")
    outcomes = await asyncio.gather(*(loader.load("b1", "vitals", tables(rows)) for _ in range(2)))
    assert sorted(o.already_loaded for o in outcomes) == [False, True]
    assert all((o.rows_loaded, o.rows_duplicate, o.not_inserted.num_rows) == (3, 0, 0) for o in outcomes)
    assert (await fetch(resources.warehouse_url, "SELECT count(*) FROM fact_vitals"))[0][0] == 3
