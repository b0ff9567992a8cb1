"""Pure SQL of the NEWS2 recompute and the alert outbox (CONTRACT §9), for both warehouse dialects.

In the transaction of a vitals batch, after its rows are in ``fact_vitals`` and before its audit row::

    CREATE TEMP TABLE vs_news2_hours AS …   -- (patient, UTC hour) of the NEWS2 readings the batch inserted
                                            -- (PostgreSQL: staged by the loader from the rows it copied)
    <dialect lock>                          -- PostgreSQL: advisory locks per patient-hour, in order;
                                            -- Redshift: none (the load's LOCK load_lock)
    CREATE TEMP TABLE vs_news2 AS …         -- latest reading per parameter of those hours, scored
                                            -- (PostgreSQL: an index probe each; Redshift: a window)
    CREATE TEMP TABLE vs_news2_raised AS …  -- escalations without an alert yet
    INSERT INTO deterioration_alerts …      -- the outbox rows (published_at null)
    MERGE INTO news2_hourly USING vs_news2 …

Every read of ``fact_vitals`` carries literal ``measured_at`` bounds (the batch's hours), so Redshift zone
maps prune blocks and PostgreSQL's (patient_id, metric, measured_at) index serves the per-patient reads.
The scores are CASE expressions generated from :data:`schemas.news2.CHART`: a value scores the
band whose half-step cuts bracket it (``v < CAST('38.05' AS DOUBLE PRECISION)``), which is rounding half up
as a decimal (see ``workers.stages.score_news2``). The first statement is guarded by the batch's audit row,
so an audited batch recomputes nothing and raises nothing; ``alert_id`` is deterministic and an alert is
raised at most once per (patient, hour, risk): a ``medium`` only if the hour has no alert yet, a ``high``
only if it has no ``high``.
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime, timedelta
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc

from schemas.arrow import NEWS2_PARAMETERS, TIMESTAMP
from schemas.news2 import CHART, HOUR_US, Parameter, band_cuts

__all__ = [
    "ALERT_ROWS",
    "HOURS",
    "Dialect",
    "alert_id",
    "hour_bounds",
    "hours_staging_sql",
    "mark_published_sql",
    "news2_rows",
    "news2_statements",
    "raised_alerts_sql",
    "touched_hours",
    "unpublished_sql",
]

Dialect = Literal["postgres", "redshift"]
_METRICS = ", ".join(f"'{p.metric}'" for p in CHART)
_SCORE_COLUMNS = [f"score_{name}" for name in NEWS2_PARAMETERS]

ALERT_ROWS = pa.schema(
    [
        pa.field("alert_id", pa.string(), nullable=False),
        pa.field("patient_id", pa.string(), nullable=False),
        pa.field("hour_start", TIMESTAMP, nullable=False),
        pa.field("risk", pa.string(), nullable=False),
        pa.field("total", pa.int64(), nullable=False),
        *(pa.field(c, pa.int64(), nullable=True) for c in _SCORE_COLUMNS),
        pa.field("raised_at", TIMESTAMP, nullable=False),
    ]
)
"""Alerts as the publisher reads them (the message of CONTRACT §9)."""


def alert_id(patient_id: str, hour_start: datetime, risk: str) -> str:
    """The deterministic id of an alert: MD5 of ``patient|YYYY-MM-DD HH (UTC)|risk`` in UUID layout
    (what :func:`news2_statements` computes in SQL)."""
    hour = hour_start.astimezone(UTC).strftime("%Y-%m-%d %H")
    # usedforsecurity only matters to a FIPS-restricted OpenSSL: the digest is the same
    h = hashlib.md5(f"{patient_id}|{hour}|{risk}".encode(), usedforsecurity=False).hexdigest()  # pragma: no mutate
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _ts(us: int) -> str:
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)
    return f"CAST('{moment.isoformat(sep=' ')}' AS TIMESTAMPTZ)"


def news2_rows(rows: pa.Table) -> pa.Table:
    """The rows of ``rows`` that can change a NEWS2 score: a NEWS2 metric and a patient."""
    if rows.num_rows == 0:
        return rows
    metrics = pa.array([p.metric for p in CHART], pa.string())  # pragma: no mutate (inferred as string anyway)
    keep = pc.and_(pc.is_in(rows.column("metric"), value_set=metrics), pc.is_valid(rows.column("patient_id")))
    return rows.filter(keep)


def hour_bounds(measured_at: pa.Array | pa.ChunkedArray) -> tuple[int, int] | None:
    """``[first hour start, last hour end)`` (epoch µs) of the readings, or ``None`` if there are none."""
    if len(measured_at) == 0 or measured_at.null_count == len(measured_at):
        return None
    bounds = pc.min_max(measured_at.cast(pa.int64()))
    lo, hi = int(bounds["min"].as_py()), int(bounds["max"].as_py())
    return lo - lo % HOUR_US, hi - hi % HOUR_US + HOUR_US


def _hour(column: str) -> str:
    """The UTC hour of a TIMESTAMPTZ column, as TIMESTAMPTZ (same in both dialects, whatever the session zone)."""
    return f"(DATE_TRUNC('hour', {column} AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')"


def _score_case(parameter: Parameter) -> str:
    v = f"v.{parameter.name}"
    bands = zip(band_cuts(parameter), parameter.bands, strict=False)  # pragma: no mutate (strict=None is False)
    whens = [f"WHEN {v} < CAST('{cut}' AS DOUBLE PRECISION) THEN {score}" for cut, (_, score) in bands]
    last = parameter.bands[-1][1]
    return f"CASE WHEN {v} IS NULL THEN NULL {' '.join(whens)} ELSE {last} END AS score_{parameter.name}"


def _not_audited(batch_id_literal: str) -> str:
    return f"NOT EXISTS (SELECT 1 FROM load_audit a WHERE a.batch_id = {batch_id_literal})"


def _ctas(name: str, select: str, dialect: Dialect) -> str:
    suffix = " ON COMMIT DROP" if dialect == "postgres" else ""
    return f"CREATE TEMP TABLE {name}{suffix} AS {select}"


def _latest_values(lo: str, hi: str, dialect: Dialect) -> str:
    """``(patient_id, hour_start, rr, spo2, sbp, pulse, temp)``: the latest value of each parameter of each
    patient-hour in ``vs_news2_hours`` (ties on ``measured_at``: the greater ``device_id``).

    PostgreSQL: one index probe per patient-hour and parameter (``fact_vitals_patient_metric_idx``, read
    backwards, LIMIT 1), so the cost follows the patient-hours, not their readings. Redshift (no indexes): one
    pass over the hours' readings, pruned by the literal bounds on the ``measured_at`` sort key.
    """
    window = (
        "f.measured_at >= h.hour_start AND f.measured_at < h.hour_start + INTERVAL '1 hour' "
        f"AND f.measured_at >= {lo} AND f.measured_at < {hi}"
    )
    if dialect == "postgres":
        probes = ", ".join(
            f"(SELECT f.value FROM fact_vitals f WHERE f.patient_id = h.patient_id AND f.metric = '{p.metric}' "
            f"AND {window} ORDER BY f.measured_at DESC, f.device_id DESC LIMIT 1) AS {p.name}"
            for p in CHART
        )
        # OFFSET 0 keeps the probes in this subquery: pulled up, each would run once per use in the scoring CASEs.
        return f"SELECT h.patient_id, h.hour_start, {probes} FROM vs_news2_hours h OFFSET 0"
    latest = (
        "SELECT h.patient_id, h.hour_start, f.metric, f.value, ROW_NUMBER() OVER (PARTITION BY "
        "h.patient_id, h.hour_start, f.metric ORDER BY f.measured_at DESC, f.device_id DESC) AS rn "
        f"FROM fact_vitals f JOIN vs_news2_hours h ON f.patient_id = h.patient_id AND {window} "
        f"WHERE f.measured_at >= {lo} AND f.measured_at < {hi} AND f.metric IN ({_METRICS})"
    )
    pivot = ", ".join(f"MAX(CASE WHEN x.metric = '{p.metric}' THEN x.value END) AS {p.name}" for p in CHART)
    return f"SELECT x.patient_id, x.hour_start, {pivot} FROM ({latest}) x WHERE x.rn = 1 GROUP BY 1, 2"


def _scored_select(lo: str, hi: str, dialect: Dialect) -> str:
    """The patient-hours of ``vs_news2_hours`` scored from the latest reading of each parameter."""
    values = _latest_values(lo, hi, dialect)
    scores = ", ".join(_score_case(p) for p in CHART)
    names = ", ".join(f"v.{p.name}" for p in CHART)
    scored = f"SELECT v.patient_id, v.hour_start, {names}, {scores} FROM ({values}) v"
    total = " + ".join(f"COALESCE(s.{c}, 0)" for c in _SCORE_COLUMNS)
    present = " + ".join(f"CASE WHEN s.{c} IS NULL THEN 0 ELSE 1 END" for c in _SCORE_COLUMNS)
    three = " OR ".join(f"s.{c} = 3" for c in _SCORE_COLUMNS)
    cols = ", ".join(f"s.{c}" for c in (*NEWS2_PARAMETERS, *_SCORE_COLUMNS))
    summed = (
        f"SELECT s.patient_id, s.hour_start, {cols}, {total} AS total, {present} AS parameters, "
        f"CASE WHEN {three} THEN TRUE ELSE FALSE END AS any_three FROM ({scored}) s"
    )
    all_cols = ", ".join(f"t.{c}" for c in (*NEWS2_PARAMETERS, *_SCORE_COLUMNS, "total", "parameters", "any_three"))
    return (
        f"SELECT t.patient_id, t.hour_start, {all_cols}, CASE WHEN t.total >= 7 THEN 'high' "
        "WHEN t.total >= 5 THEN 'medium' WHEN t.any_three THEN 'low-medium' ELSE 'low' END AS risk "
        f"FROM ({summed}) t"
    )


def _alert_id_sql(patient: str, hour: str, risk: str) -> str:
    digest = f"MD5({patient} || '|' || TO_CHAR({hour} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24') || '|' || {risk})"
    spans = ((1, 8), (9, 4), (13, 4), (17, 4), (21, 12))  # pragma: no mutate (a 13th character of 32 is none)
    parts = [f"SUBSTRING({digest}, {start}, {length})" for start, length in spans]
    return " || '-' || ".join(parts)


HOURS = pa.schema(
    [pa.field("patient_id", pa.string(), nullable=False), pa.field("hour_start", TIMESTAMP, nullable=False)]
)
"""The patient-hours a batch touched (``vs_news2_hours``)."""


def touched_hours(rows: pa.Table) -> pa.Table:
    """:data:`HOURS`: the distinct (patient, UTC hour) of the NEWS2 rows among ``rows``."""
    relevant = news2_rows(rows)
    if relevant.num_rows == 0:
        return HOURS.empty_table()
    us = relevant.column("measured_at").cast(pa.int64()).to_numpy()  # int64, copied from the chunks
    pairs = pa.table({"patient_id": relevant.column("patient_id"), "hour_start": pa.array(us - us % HOUR_US)})
    # not mutated: threads change only the order of the distinct pairs, which the loader stages as a set
    distinct = pairs.group_by(["patient_id", "hour_start"], use_threads=False).aggregate([])  # pragma: no mutate
    return pa.Table.from_arrays(
        [distinct.column("patient_id"), distinct.column("hour_start").cast(TIMESTAMP)], schema=HOURS
    )


def hours_staging_sql() -> str:
    """PostgreSQL: the ``vs_news2_hours`` staging table, filled by the loader (binary COPY of :data:`HOURS`)."""
    return (
        "CREATE TEMP TABLE vs_news2_hours (patient_id VARCHAR(64) NOT NULL, hour_start TIMESTAMPTZ NOT NULL) "
        "ON COMMIT DROP"
    )


def news2_statements(
    batch_id_literal: str,
    lo_us: int,
    hi_us: int,
    dialect: Dialect,
    *,
    now_us: int | None = None,
    hours_staged: bool = False,
    returning: bool = False,
) -> list[str]:
    """The recompute of the batch's patient-hours (``[lo_us, hi_us)`` bounds the batch's ``measured_at``).

    ``batch_id_literal`` is the batch id as a SQL literal; ``now_us`` (default: the clock) becomes
    ``updated_at``/``raised_at``, as a literal (Redshift's GETDATE is not PostgreSQL's now()). The first
    statement fills ``vs_news2_hours`` from the rows the batch inserted, unless ``hours_staged`` (the caller
    staged them: :func:`hours_staging_sql`, :func:`touched_hours`). Leaves ``vs_news2`` (the scored hours) and
    ``vs_news2_raised`` (the alerts this transaction raised, :func:`raised_alerts_sql`) for the caller.

    ``returning`` (Redshift: one ``BatchExecuteStatement`` of at most 20 statements for a batch): four statements
    — the hours as a CTE of the scoring CTAS, the alerts inserted straight from it, the MERGE, and last a SELECT
    of the alerts this transaction raised (``ALERT_ROWS``: the rows whose ``raised_at`` is this call's literal).
    """
    lo, hi = _ts(lo_us), _ts(hi_us)
    hours_select = (
        f"SELECT DISTINCT f.patient_id, {_hour('f.measured_at')} AS hour_start FROM fact_vitals f "
        f"WHERE f.batch_id = {batch_id_literal} AND f.measured_at >= {lo} AND f.measured_at < {hi} "
        f"AND f.metric IN ({_METRICS}) AND f.patient_id IS NOT NULL AND {_not_audited(batch_id_literal)}"
    )
    hours = _ctas("vs_news2_hours", hours_select, dialect)
    if dialect == "postgres":
        # Readings of one patient come from several devices (shards, workers): scorers of a patient-hour take
        # turns, in key order (no deadlock); READ COMMITTED then shows each the other's committed rows.
        locks = [
            "SELECT pg_advisory_xact_lock(k.key) FROM (SELECT DISTINCT hashtextextended(patient_id || '|' || "
            "CAST(hour_start AS TEXT), 13) AS key FROM vs_news2_hours ORDER BY 1) k"
        ]
    else:
        locks = []  # Redshift: every load already holds LOCK load_lock from its first statement (one at a time)
    now = _ts(now_us if now_us is not None else time.time_ns() // 1000)
    score_cols = ", ".join(_SCORE_COLUMNS)
    raised_select = (
        f"SELECT {_alert_id_sql('n.patient_id', 'n.hour_start', 'n.risk')} AS alert_id, n.patient_id, "
        f"n.hour_start, n.risk, n.total, {', '.join('n.' + c for c in _SCORE_COLUMNS)}, {now} AS raised_at "
        "FROM vs_news2 n WHERE n.risk IN ('medium', 'high') AND NOT EXISTS (SELECT 1 FROM deterioration_alerts a "
        "WHERE a.patient_id = n.patient_id AND a.hour_start = n.hour_start AND (a.risk = n.risk OR a.risk = 'high'))"
    )
    raised = _ctas("vs_news2_raised", raised_select, dialect)
    columns = [*NEWS2_PARAMETERS, *_SCORE_COLUMNS, "total", "parameters", "any_three", "risk"]
    merge = (
        "MERGE INTO news2_hourly USING vs_news2 s ON news2_hourly.patient_id = s.patient_id "
        "AND news2_hourly.hour_start = s.hour_start WHEN MATCHED THEN UPDATE SET "
        + ", ".join(f"{c} = s.{c}" for c in columns)
        + f", updated_at = {now} WHEN NOT MATCHED THEN INSERT (patient_id, hour_start, {', '.join(columns)}, "
        f"updated_at) VALUES (s.patient_id, s.hour_start, {', '.join('s.' + c for c in columns)}, {now})"
    )
    if returning:  # the Redshift path (redshift/news2.py): a dialect of None reads as Redshift here
        with_hours = f"WITH vs_news2_hours AS ({hours_select}) {_scored_select(lo, hi, dialect)}"  # pragma: no mutate
        scored = _ctas("vs_news2", with_hours, dialect)  # pragma: no mutate
        insert = (
            "INSERT INTO deterioration_alerts (alert_id, patient_id, hour_start, risk, total, "
            f"{score_cols}, raised_at) {raised_select}"
        )
        returned = (
            f"SELECT {_ALERT_COLUMNS} FROM deterioration_alerts d WHERE d.raised_at = {now} AND EXISTS (SELECT 1 "
            "FROM vs_news2 n WHERE n.patient_id = d.patient_id AND n.hour_start = d.hour_start) "
            "ORDER BY d.raised_at, d.alert_id"
        )
        return [*locks, scored, insert, merge, returned]
    return [
        *([] if hours_staged else [hours]),
        *locks,
        _ctas("vs_news2", _scored_select(lo, hi, dialect), dialect),
        raised,
        "INSERT INTO deterioration_alerts (alert_id, patient_id, hour_start, risk, total, raised_at, "
        f"{score_cols}) SELECT alert_id, patient_id, hour_start, risk, total, raised_at, {score_cols} "
        "FROM vs_news2_raised",
        merge,
    ]


_ALERT_COLUMNS = ", ".join(ALERT_ROWS.names)


def raised_alerts_sql() -> str:
    """The alerts raised by this transaction (``ALERT_ROWS``), oldest first."""
    return f"SELECT {_ALERT_COLUMNS} FROM vs_news2_raised ORDER BY raised_at, alert_id"


def scored_count_sql() -> str:
    """The number of patient-hours this transaction scored."""
    return "SELECT COUNT(*) AS n FROM vs_news2"


def unpublished_sql(raised_before_us: int, limit: int) -> str:
    """Unpublished alerts raised before ``raised_before_us`` (``ALERT_ROWS``), oldest first."""
    return (
        f"SELECT {_ALERT_COLUMNS} FROM deterioration_alerts WHERE published_at IS NULL "
        f"AND raised_at < {_ts(raised_before_us)} ORDER BY raised_at, alert_id LIMIT {int(limit)}"
    )


def oldest_unpublished_sql() -> str:
    """One row ``(oldest)``: the ``raised_at`` of the oldest unpublished alert (null if none), epoch seconds."""
    return (
        "SELECT CAST(EXTRACT(EPOCH FROM MIN(raised_at)) AS DOUBLE PRECISION) AS oldest "
        "FROM deterioration_alerts WHERE published_at IS NULL"
    )


def mark_published_sql(alert_ids: list[str], *, now_us: int | None = None) -> str:
    """Set ``published_at`` of ``alert_ids`` (ids are generated hex, checked here) where it is still null."""
    for value in alert_ids:
        if not all(ch in "0123456789abcdef-" for ch in value):
            raise ValueError("not an alert id")
    now = _ts(now_us if now_us is not None else time.time_ns() // 1000)
    ids = ", ".join(f"'{v}'" for v in alert_ids)
    return f"UPDATE deterioration_alerts SET published_at = {now} WHERE alert_id IN ({ids}) AND published_at IS NULL"
