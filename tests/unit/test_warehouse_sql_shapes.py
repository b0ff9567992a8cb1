"""Every warehouse SQL generator, read as structure: each statement sequence resolves against the DDL's tables and
the temporary tables the sequence creates, and every statement is spelled the repository's way.

The statements only run in integration tests (PostgreSQL, the Redshift stand-in); these checks let the unit
tests (and so ``make mutate``) see a misspelt table, alias or column, a statement read before the temp table it
needs exists, and a change of spelling (SQL reads keywords and unquoted identifiers in any case, but the
generators' text is what tests, logs and the Data API's ClientToken see: one spelling keeps it one statement).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from tests.helpers.sql_shape import run_through, style_errors
from workers.runtime.types import BatchResult
from workers.warehouse import file_tables as tables
from workers.warehouse import news2_sql, vitals_sql
from workers.warehouse.postgres import file_sql as pg_files
from workers.warehouse.redshift import file_sql as rs_files

T0_US = 1_767_225_600_000_000  # 2026-01-01T00:00Z
HOUR_US = 3_600_000_000
T0 = datetime(2026, 1, 1, tzinfo=UTC)
BOUNDS = (datetime(2026, 1, 1, 7, tzinfo=UTC), datetime(2026, 1, 1, 8, 59, tzinfo=UTC))
COUNTS = vitals_sql.LoadCounts(rows_in=10, duplicates_dropped=1, clean=6, quarantined=2, pending=1)
DIALECTS: tuple[vitals_sql.Dialect, ...] = ("postgres", "redshift")


def _staged(*files: rs_files.StagedFile, quarantine: bool = True) -> rs_files.StagedBatch:
    names = set().union(*(f.lake_tables for f in files))
    manifests = {t: f"s3://lake/staging/{t}.manifest" for t in names}
    if quarantine:
        manifests[rs_files.QUARANTINE] = "s3://lake/staging/batch_quarantine.manifest"
    return rs_files.StagedBatch("b-1", "ehr", "arn:aws:iam::1:role/copy", files, manifests, BatchResult(7, 4, 2, 1))


def sequences() -> Iterator[tuple[str, vitals_sql.Dialect, list[str]]]:
    """``(name, dialect, statements)``: each generator's output in the order a transaction runs it."""
    for d in DIALECTS:
        staging = [vitals_sql.create_staging_sql(t, d) for t in vitals_sql.STAGING]
        loaded = 5 if d == "postgres" else None
        yield f"vitals-{d}", d, [*staging, *vitals_sql.load_statements("b-1", "vitals", COUNTS, d, loaded=loaded)]
        yield (
            f"vitals-bounded-{d}",
            d,
            [*staging, *vitals_sql.load_statements("b-1", "vitals", COUNTS, d, loaded=loaded, bounds=BOUNDS)],
        )
        yield f"context-{d}", d, [vitals_sql.series_staging_sql(d), vitals_sql.context_sql(d, "shard-0", 16, T0)]
        yield f"context-series-only-{d}", d, [vitals_sql.series_staging_sql(d), vitals_sql.context_sql(d, "", 16)]
        news2 = news2_sql.news2_statements("'b-1'", T0_US, T0_US + 2 * HOUR_US, d, now_us=T0_US)
        yield f"news2-{d}", d, [*news2, news2_sql.raised_alerts_sql(), news2_sql.scored_count_sql()]
        yield (
            f"reads-{d}",
            d,
            [
                vitals_sql.audited_sql("b-1"),
                vitals_sql.batch_rows_sql("fact_vitals", "b-1"),
                vitals_sql.batch_rows_sql("vitals_quarantine", "b-1"),
                vitals_sql.pending_sql("shard-0"),
                vitals_sql.stale_pending_sources_sql(T0_US),
                vitals_sql.failed_batch_sql("vitals", "shard:1-2", "batch_failed", "ValueError"),
                news2_sql.unpublished_sql(T0_US, 50),
                news2_sql.oldest_unpublished_sql(),
                news2_sql.mark_published_sql(["0a-1"], now_us=T0_US),
            ],
        )
    yield (
        "news2-returning-redshift",
        "redshift",
        news2_sql.news2_statements("'b-1'", T0_US, T0_US + HOUR_US, "redshift", now_us=T0_US, returning=True),
    )
    yield (
        "news2-hours-staged-postgres",
        "postgres",
        [
            news2_sql.hours_staging_sql(),
            *news2_sql.news2_statements("'b-1'", T0_US, T0_US + HOUR_US, "postgres", now_us=T0_US, hours_staged=True),
        ],
    )
    yield (
        "vitals-keys-postgres",
        "postgres",
        [
            vitals_sql.batch_lock_sql("b-1"),
            vitals_sql.create_staging_sql("vs_clean_keys", "postgres"),
            vitals_sql.create_staging_sql("vs_quarantine", "postgres"),
            vitals_sql.skipped_keys_sql(),
            vitals_sql.not_inserted_sql("b-1", "vs_clean_keys"),
        ],
    )
    for spec in tables.SPECS.values():
        files = [
            pg_files.BATCH_SETTING,
            pg_files.SOURCE_LOCK,
            pg_files.create_staging(spec),
            pg_files.latest(spec),
            pg_files.staged_counts(spec),
            *pg_files.merge_statements(spec),
            *pg_files.drop_staging(spec),
        ]
        if spec not in tables.FEED_TABLES:
            files.insert(3, pg_files.upsert_latest(spec))
        yield f"files-{spec.table}-postgres", "postgres", files
        one = rs_files.StagedFile("raw/x/a.csv", T0, frozenset({spec.lake_table}))
        yield f"files-{spec.table}-redshift", "redshift", rs_files.load_statements(_staged(one))
    for spec in (tables.SPECS["claims"], tables.SPECS["encounters"]):  # the chunk-by-chunk merge of an upsert table
        chunked = [
            *pg_files.create_keys(spec),
            pg_files.truncate_keys(spec),
            pg_files.keep_keys(spec),
            pg_files.existing_keys(spec),  # between INDEX_PROBES (SET statements: nothing to resolve)
            pg_files.create_staging(spec),
            pg_files.upsert_staged(spec),
            pg_files.truncate_staging(spec),
            pg_files.analyze_file_keys(spec),
            *pg_files.drop_chunk_tables(spec),
        ]
        yield f"files-chunked-{spec.table}-postgres", "postgres", chunked
    yield (
        "files-audit-postgres",
        "postgres",
        [pg_files.PATIENT_LOCK, pg_files.QUARANTINE_DELETE, pg_files.AUDIT_INSERT, pg_files.AUDIT_SELECT],
    )
    ehr = (
        rs_files.StagedFile("raw/ehr/a.ndjson", T0, frozenset({"patients", "encounters"})),
        rs_files.StagedFile("raw/ehr/b.csv", T0 + timedelta(hours=1), frozenset({"patients"})),
    )
    yield "files-ehr-redshift", "redshift", rs_files.load_statements(_staged(*ehr))
    claims = rs_files.StagedFile("raw/claims/c.csv", T0, frozenset({"claims"}))
    yield "files-claims-unquarantined-redshift", "redshift", rs_files.load_statements(_staged(claims, quarantine=False))
    remits = rs_files.StagedFile("raw/claims/r.x12", T0, frozenset({"remittances"}))
    yield "files-remittances-then-claims-redshift", "redshift", rs_files.load_statements(_staged(remits, claims))
    adt = rs_files.StagedFile("raw/hl7/a.hl7", T0, frozenset({"adt_events"}))
    yield "files-adt-then-claims-redshift", "redshift", rs_files.load_statements(_staged(adt, claims))
    empty = rs_files.StagedFile("raw/ehr/empty.csv", T0, frozenset())
    yield "files-quarantine-only-redshift", "redshift", rs_files.load_statements(_staged(empty))


# Names only at collection: the statements are generated inside each test, so that the test exercises the
# generators (and ``make mutate`` maps them to it), not the module import.
NAMES = [name for name, _, _ in sequences()]


def _sequence(name: str) -> tuple[vitals_sql.Dialect, list[str]]:
    return next((dialect, statements) for n, dialect, statements in sequences() if n == name)


@pytest.mark.parametrize("name", NAMES)
def test_each_sequence_resolves_against_the_warehouse(name: str) -> None:
    dialect, statements = _sequence(name)
    run_through(statements, dialect)


@pytest.mark.parametrize("name", NAMES)
def test_each_statement_is_spelled_one_way(name: str) -> None:
    dialect, statements = _sequence(name)
    for statement in statements:
        assert style_errors(statement, dialect) == [], statement


@pytest.mark.parametrize("name", NAMES)
def test_temp_tables_are_dropped_at_commit_on_postgres(name: str) -> None:
    """PostgreSQL keeps a session's temp tables past commit (and pooled sessions live long): every temp table
    of a load is ``ON COMMIT DROP``; Redshift has no such clause (one Data API call is one session)."""
    dialect, statements = _sequence(name)
    for statement in statements:
        if statement.startswith("CREATE TEMP TABLE"):
            assert ("ON COMMIT DROP" in statement) == (dialect == "postgres"), statement


def test_the_shape_checks_bite() -> None:
    """The readers above reject what they guard against (a wrong column, a table read before it exists, case)."""
    with pytest.raises(Exception, match=r"Unknown column|could not be resolved"):
        run_through(["SELECT f.no_such_column FROM fact_vitals f"], "postgres")
    with pytest.raises(Exception, match=r"vs_clean_new|could not be resolved|Unknown table"):
        run_through(["SELECT device_id FROM vs_clean_new"], "redshift")
    with pytest.raises(AssertionError):
        run_through(["INSERT INTO fact_vitals (device_id, nope) SELECT device_id, metric FROM fact_vitals"], "postgres")
    with pytest.raises(AssertionError):
        run_through(["SELECT XX(device_id) FROM fact_vitals"], "postgres")
    with pytest.raises(AssertionError):
        run_through(["SELECT (SELECT COUNT(*) FROM vs_clean_new) AS n"], "redshift")
    assert style_errors("SELECT device_id,, metric FROM fact_vitals", "postgres") == ["an empty list item"]
    assert style_errors("select device_id from fact_vitals", "postgres") == ["keyword select", "keyword from"]
    assert style_errors("SELECT DEVICE_ID FROM fact_vitals", "postgres") == ["identifier DEVICE_ID"]
    assert style_errors("CREATE TEMP TABLE s (a text, b BIGINT)", "postgres") == ["data types in two cases"]
