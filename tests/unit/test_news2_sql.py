"""NEWS2 recompute SQL: parses in both dialects, reads fact_vitals only within literal time bounds, scores from
the chart's half-step cuts; touched hours and alert ids."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pyarrow as pa
import pytest
import sqlglot

from schemas.news2 import CHART, band_cuts
from tests.helpers.vitals import T0_US, R, readings_table
from workers.warehouse import news2_sql

HOUR_US = 3_600_000_000


@pytest.mark.parametrize("dialect", ["postgres", "redshift"])
def test_statements_parse_and_bound_every_fact_read(dialect: news2_sql.Dialect) -> None:
    statements = news2_sql.news2_statements("'b-1'", T0_US, T0_US + 2 * HOUR_US, dialect, now_us=T0_US)
    assert len(statements) == (6 if dialect == "postgres" else 5)
    for statement in statements:
        sqlglot.parse_one(statement, read=dialect)
    reads = [s for s in statements if "FROM fact_vitals" in s]
    assert len(reads) == 2
    for statement in reads:  # zone maps (Redshift) / index ranges: literal bounds on measured_at
        assert "f.measured_at >= CAST('2026-01-01 00:00:00+00:00' AS TIMESTAMPTZ)" in statement
        assert "f.measured_at < CAST('2026-01-01 02:00:00+00:00' AS TIMESTAMPTZ)" in statement
    assert not any(s.startswith("LOCK") for s in statements)  # Redshift: the load's LOCK load_lock serialises
    assert statements[-1].startswith("MERGE INTO news2_hourly USING vs_news2")
    assert "NOT EXISTS (SELECT 1 FROM load_audit a WHERE a.batch_id = 'b-1')" in statements[0]
    staged = news2_sql.news2_statements("'b-1'", T0_US, T0_US + HOUR_US, "postgres", hours_staged=True)
    assert len(staged) == 5
    assert not any("CREATE TEMP TABLE vs_news2_hours" in s for s in staged)


def test_scores_use_the_chart_cuts() -> None:
    scored = news2_sql.news2_statements("'b'", T0_US, T0_US + HOUR_US, "postgres")[2]
    for parameter in CHART:
        for cut in band_cuts(parameter):
            assert f"v.{parameter.name} < CAST('{cut}' AS DOUBLE PRECISION)" in scored
    assert "CAST('38.05' AS DOUBLE PRECISION) THEN 0" in scored  # 38.0 scores 0, 38.05 (38.04999…) scores 1


def test_touched_hours_and_bounds() -> None:
    rows = readings_table(
        [R("d", "heart_rate", 10, 70), R("d", "heart_rate", 3700, 71), R("e", "spo2", 20, 97),
         R("d", "glucose", 7300, 90), R("x", "spo2", 30, 95, patient_id=None), R("d", "resp_rate", 15, 16)]
    )  # fmt: skip
    hours = news2_sql.touched_hours(rows).sort_by([("hour_start", "ascending")])
    assert hours.schema == news2_sql.HOURS
    stamps = hours.column("hour_start").cast(pa.int64()).to_pylist()
    assert sorted(zip(hours.column("patient_id").to_pylist(), stamps, strict=True)) == [
        ("p-1", T0_US), ("p-1", T0_US + HOUR_US),
    ]  # fmt: skip
    assert news2_sql.hour_bounds(news2_sql.news2_rows(rows).column("measured_at")) == (T0_US, T0_US + 2 * HOUR_US)
    assert news2_sql.touched_hours(readings_table([R("d", "glucose", 1, 90)])).num_rows == 0


def test_alert_id_is_deterministic_and_uuid_shaped() -> None:
    hour = datetime(2026, 1, 1, 5, tzinfo=UTC)
    first = news2_sql.alert_id("p-1", hour, "high")
    assert first == news2_sql.alert_id("p-1", hour, "high")
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", first)
    assert first != news2_sql.alert_id("p-1", hour, "medium")
    with pytest.raises(ValueError, match="alert id"):
        news2_sql.mark_published_sql(["x'; DROP TABLE news2_hourly; --"])
