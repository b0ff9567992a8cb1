"""NEWS2 recompute SQL: parses in both dialects, reads fact_vitals only within literal time bounds, scores from
the chart's half-step cuts; touched hours and alert ids."""

from __future__ import annotations

import hashlib
import re
import time
from datetime import UTC, datetime, timedelta, timezone

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


def _tree(statement: str, dialect: str = "postgres") -> sqlglot.exp.Expression:
    return sqlglot.parse_one(statement.replace(" ON COMMIT DROP", ""), read=dialect)


def test_alert_id_is_the_md5_of_patient_utc_hour_and_risk_whatever_the_zones(monkeypatch: pytest.MonkeyPatch) -> None:
    """The id is ``MD5(patient|YYYY-MM-DD HH in UTC|risk)`` in UUID layout, in Python and in the SQL alike."""
    monkeypatch.setenv("TZ", "Asia/Kolkata")  # a process zone that is not UTC: only the UTC hour counts
    time.tzset()
    try:
        hour = datetime(2026, 1, 1, 5, tzinfo=timezone(timedelta(hours=2)))  # 03:00 UTC
        digest = hashlib.md5(b"p-1|2026-01-01 03|high", usedforsecurity=False).hexdigest()
        expected = f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:]}"
        assert news2_sql.alert_id("p-1", hour, "high") == expected
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    statements = news2_sql.news2_statements("'b'", T0_US, T0_US + HOUR_US, "postgres")
    raised = next(s for s in statements if s.startswith("CREATE TEMP TABLE vs_news2_raised"))
    alert = next(a for a in _tree(raised).find_all(sqlglot.exp.Alias) if a.alias == "alert_id").this
    substrings = sorted(alert.find_all(sqlglot.exp.Substring), key=lambda s: int(s.args["start"].name))
    spans = [(int(s.args["start"].name), int(s.args["length"].name)) for s in substrings]
    assert [s.args["start"].name for s in alert.find_all(sqlglot.exp.Substring)] == ["21", "17", "13", "9", "1"]
    assert "-".join(digest[start - 1 : start - 1 + length] for start, length in spans) == expected
    md5 = next(alert.find_all(sqlglot.exp.MD5))
    parts = [p.sql("postgres") for p in md5.this.flatten()] if isinstance(md5.this, sqlglot.exp.DPipe) else []
    assert parts == [
        "n.patient_id",
        "'|'",
        "TO_CHAR(n.hour_start AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24')",
        "'|'",
        "n.risk",
    ]
    assert [p.sql("postgres") for p in alert.flatten() if not isinstance(p, sqlglot.exp.Substring)] == ["'-'"] * 4


def test_mark_published_sets_the_clock_on_the_listed_unpublished_alerts(monkeypatch: pytest.MonkeyPatch) -> None:
    ids = ["0123abcd-ef01-2345-6789-abcdef012345", "ffffffff-0000-1111-2222-333333333333"]
    update = _tree(news2_sql.mark_published_sql(ids, now_us=T0_US + 1))
    assert isinstance(update, sqlglot.exp.Update)
    assert update.this.name == "deterioration_alerts"
    [assignment] = update.expressions
    assert assignment.sql() == "published_at = CAST('2026-01-01 00:00:00.000001+00:00' AS TIMESTAMPTZ)"
    where = update.args["where"].this
    assert isinstance(where, sqlglot.exp.And)
    assert [v.name for v in where.left.expressions] == ids
    assert where.left.this.name == "alert_id"
    assert where.right.sql() == "published_at IS NULL"
    # Without ``now_us``: the clock, in whole microseconds.
    monkeypatch.setattr(news2_sql.time, "time_ns", lambda: T0_US * 1000 + 123_456_789)
    assert "CAST('2026-01-01 00:00:00.123456+00:00' AS TIMESTAMPTZ)" in news2_sql.mark_published_sql(ids[:1])
    for bad in ("0123ABCD", "x'; DROP TABLE news2_hourly; --", "g"):
        with pytest.raises(ValueError, match=r"^not an alert id$"):
            news2_sql.mark_published_sql([ids[0], bad])


def test_unpublished_and_oldest_read_the_unpublished_outbox_oldest_first() -> None:
    select = _tree(news2_sql.unpublished_sql(T0_US + HOUR_US, 25))
    assert [c.name for c in select.selects] == news2_sql.ALERT_ROWS.names
    assert select.args["from_" if "from_" in select.args else "from"].this.name == "deterioration_alerts"
    assert {c.sql() for c in select.args["where"].this.flatten()} == {
        "published_at IS NULL",
        "raised_at < CAST('2026-01-01 01:00:00+00:00' AS TIMESTAMPTZ)",
    }
    assert [(o.this.name, bool(o.args.get("desc"))) for o in select.args["order"].expressions] == [
        ("raised_at", False),
        ("alert_id", False),
    ]
    assert select.args["limit"].expression.name == "25"
    oldest = news2_sql.oldest_unpublished_sql()
    assert oldest == (
        "SELECT CAST(EXTRACT(EPOCH FROM MIN(raised_at)) AS DOUBLE PRECISION) AS oldest "
        "FROM deterioration_alerts WHERE published_at IS NULL"
    )
    assert news2_sql.scored_count_sql() == "SELECT COUNT(*) AS n FROM vs_news2"
    assert news2_sql.raised_alerts_sql() == (
        f"SELECT {', '.join(news2_sql.ALERT_ROWS.names)} FROM vs_news2_raised ORDER BY raised_at, alert_id"
    )
    assert news2_sql.hours_staging_sql() == (
        "CREATE TEMP TABLE vs_news2_hours (patient_id VARCHAR(64) NOT NULL, hour_start TIMESTAMPTZ NOT NULL) "
        "ON COMMIT DROP"
    )


def test_one_relevant_reading_and_all_null_times() -> None:
    one = readings_table([R("d", "heart_rate", 3700, 71)])
    hours = news2_sql.touched_hours(one)
    assert hours.column("hour_start").cast(pa.int64()).to_pylist() == [T0_US + HOUR_US]
    assert hours.column("patient_id").to_pylist() == ["p-1"]
    assert news2_sql.hour_bounds(one.column("measured_at")) == (T0_US + HOUR_US, T0_US + 2 * HOUR_US)
    assert news2_sql.hour_bounds(pa.array([None, None], pa.timestamp("us", tz="UTC"))) is None
    assert news2_sql.hour_bounds(pa.array([], pa.timestamp("us", tz="UTC"))) is None
    assert news2_sql.news2_rows(one.slice(0, 0)).num_rows == 0


@pytest.mark.parametrize("dialect", ["postgres", "redshift"])
def test_each_score_is_a_case_over_the_chart_bands(dialect: str) -> None:
    """score_<p>: NULL for no reading, then the band score under each cut in order, the last band's otherwise."""
    statements = news2_sql.news2_statements("'b'", T0_US, T0_US + HOUR_US, dialect, now_us=T0_US)  # type: ignore[arg-type]
    scored = _tree(next(s for s in statements if s.startswith("CREATE TEMP TABLE vs_news2 ")), dialect)
    cases = {a.alias: a.this for a in scored.find_all(sqlglot.exp.Alias) if isinstance(a.this, sqlglot.exp.Case)}
    for parameter in CHART:
        case = cases[f"score_{parameter.name}"]
        null, *bands = case.args["ifs"]
        assert null.this.sql() == f"v.{parameter.name} IS NULL"
        assert isinstance(null.args["true"], sqlglot.exp.Null)
        found = []
        for band in bands:
            assert isinstance(band.this, sqlglot.exp.LT)
            assert band.this.this.sql() == f"v.{parameter.name}"
            found.append((band.this.expression.this.name, int(band.args["true"].name)))
        scores = [score for _, score in parameter.bands]
        assert found == list(zip(band_cuts(parameter), scores[:-1], strict=True))
        assert int(case.args["default"].name) == scores[-1]


def test_the_recompute_stamps_the_clock_when_no_time_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(news2_sql.time, "time_ns", lambda: T0_US * 1000 + 123_456_789)
    merge = news2_sql.news2_statements("'b'", T0_US, T0_US + HOUR_US, "postgres")[-1]
    assert merge.count("CAST('2026-01-01 00:00:00.123456+00:00' AS TIMESTAMPTZ)") == 2


def test_latest_values_are_index_probes_on_postgres_and_a_window_on_redshift() -> None:
    pg = news2_sql.news2_statements("'b'", T0_US, T0_US + HOUR_US, "postgres", now_us=T0_US + 1)
    rs = news2_sql.news2_statements("'b'", T0_US, T0_US + HOUR_US, "redshift", now_us=T0_US + 1)
    pg_scored = next(s for s in pg if s.startswith("CREATE TEMP TABLE vs_news2 "))
    rs_scored = next(s for s in rs if s.startswith("CREATE TEMP TABLE vs_news2 "))
    assert pg_scored.count("ORDER BY f.measured_at DESC, f.device_id DESC LIMIT 1") == len(CHART)
    assert "OFFSET 0" in pg_scored
    assert "ROW_NUMBER()" not in pg_scored
    assert "ROW_NUMBER() OVER (PARTITION BY h.patient_id, h.hour_start, f.metric" in rs_scored
    assert "LIMIT" not in rs_scored
    for statements in (pg, rs):  # the given time stamps the hourly rows, not the clock
        assert statements[-1].count("CAST('2026-01-01 00:00:00.000001+00:00' AS TIMESTAMPTZ)") == 2
    with pytest.raises(ValueError, match=r"^not an alert id$"):
        news2_sql.mark_published_sql(["X"])
