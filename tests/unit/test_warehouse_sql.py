"""SQL generation: statement shapes, idempotence guards, literal quoting; Redshift SQL parses in sqlglot."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone

import pyarrow as pa
import pytest
import sqlglot
from sqlglot import exp
from sqlglot.optimizer.qualify import qualify

from schemas.ddl import table_columns
from workers.warehouse import vitals_sql as sql

COUNTS = sql.LoadCounts(rows_in=10, duplicates_dropped=1, clean=6, quarantined=2, pending=1)


@pytest.mark.parametrize("dialect", ["postgres", "redshift"])
def test_every_generated_statement_parses(dialect: sql.Dialect) -> None:
    statements = [
        *(sql.create_staging_sql(t, dialect) for t in sql.STAGING),
        *sql.load_statements("b-1", "vitals", COUNTS, dialect, loaded=5 if dialect == "postgres" else None),
        sql.context_sql(dialect, "shard-0", 16),
        sql.audited_sql("b-1"),
        sql.batch_rows_sql("fact_vitals", "b-1"),
        sql.pending_sql("shard-0"),
        sql.stale_pending_sources_sql(1_764_000_000_000_000),
        sql.failed_batch_sql("vitals", "shard:1-2", "batch_failed", "ValueError"),
    ]
    if dialect == "postgres":
        statements += [sql.batch_lock_sql("b-1"), sql.skipped_keys_sql(), sql.not_inserted_sql("b-1", "vs_clean_keys")]
    if dialect == "redshift":
        statements.append(
            sql.copy_sql("vs_clean", "s3://b/manifests/vitals/b-1.manifest", "arn:aws:iam::1:role/r", manifest=True)
        )
    for statement in statements:
        tree = sqlglot.parse_one(statement, read=dialect)
        assert tree is not None, statement
        # sqlglot has no PostgreSQL ON COMMIT DROP; every Redshift statement must parse structurally.
        tolerated = dialect == "postgres" and "ON COMMIT DROP" in statement
        assert not isinstance(tree, exp.Command) or tolerated, statement


BOUNDS = (datetime(2026, 1, 1, 7, tzinfo=UTC), datetime(2026, 1, 1, 8, 59, tzinfo=UTC))
PROBED = ("fact_vitals", "vitals_quarantine", "vitals_pending")


def test_redshift_load_inserts_the_ctas_rows_without_a_second_anti_join() -> None:
    statements = sql.load_statements("b-1", "vitals", COUNTS, "redshift", bounds=BOUNDS)
    assert not any(s.startswith("MERGE") for s in statements)
    assert "INSERT INTO fact_vitals (device_id" in statements[1]
    assert statements[1].endswith("FROM vs_clean_new")
    assert not any("ON COMMIT DROP" in s or s.startswith("ANALYZE") for s in statements)


def test_redshift_probes_carry_literal_measured_at_bounds() -> None:
    """Zone maps prune only on literals: every read of a history table is bounded by the staged range."""
    statements = sql.load_statements("b-1", "vitals", COUNTS, "redshift", bounds=BOUNDS)
    probes = 0
    for statement in statements:
        tree = sqlglot.parse_one(statement, read="redshift")
        for select in tree.find_all(exp.Select):
            source = select.args.get("from_") or select.args.get("from")
            tables = [t.name for t in source.find_all(exp.Table)] if source else []
            if not set(tables) & set(PROBED):
                continue
            probes += 1
            where = select.args["where"].sql("redshift")
            assert "measured_at BETWEEN CAST('2026-01-01 07:00:00+00:00' AS TIMESTAMP" in where, statement[:80]
        if statement.startswith("DELETE FROM vitals_pending"):
            probes += 1
            assert "vitals_pending.measured_at BETWEEN CAST('2026-01-01 07:00:00+00:00'" in statement
    assert probes >= 10
    # Without bounds (nothing staged) the statements stay valid; PostgreSQL never gets them (its indexes seek).
    assert "BETWEEN" not in " ".join(sql.load_statements("b-1", "vitals", COUNTS, "redshift"))
    assert "BETWEEN" not in " ".join(sql.load_statements("b-1", "vitals", COUNTS, "postgres", loaded=5, bounds=BOUNDS))


def test_redshift_context_has_a_literal_floor_and_no_correlated_or_exists() -> None:
    text = sql.context_sql("redshift", "shard-0", 8, BOUNDS[0])
    assert " OR EXISTS" not in text
    assert "OR " not in text.replace("ORDER", "")
    assert text.count("t.measured_at >= CAST('2026-01-01 07:00:00+00:00' AS TIMESTAMPTZ)") == 2
    assert "x.source_id = 'shard-0' UNION SELECT" in text
    assert "x.source_id" not in sql.context_sql("redshift", "", 8, BOUNDS[0])
    assert isinstance(sqlglot.parse_one(text, read="redshift"), exp.Union)


def test_redshift_varchar_lengths_are_bytes() -> None:
    """message_id is up to 128 characters of any script: 512 bytes on Redshift, 128 characters on PostgreSQL."""
    assert "message_id VARCHAR(512)" in sql.create_staging_sql("vs_clean", "redshift")
    assert "message_id VARCHAR(128)" in sql.create_staging_sql("vs_clean", "postgres")


def test_postgres_load_copies_new_rows_itself_and_staging_drops_at_commit() -> None:
    statements = sql.load_statements("b-1", "vitals", COUNTS, "postgres", loaded=5)
    assert not any(s.startswith(("MERGE", "ANALYZE")) or "vs_clean_new" in s for s in statements)
    audit = next(s for s in statements if "load_audit (" in s)
    assert "SELECT 5 AS loaded" in audit
    assert "1 + (6 - c.loaded)" in audit
    # Held readings decided by the batch: keyed on the staged clean keys and the quarantined rows.
    deletes = [s for s in statements if s.startswith("DELETE FROM vitals_pending")]
    [delete] = deletes  # one join with the keys of both staging tables
    assert "FROM vs_clean_keys UNION ALL SELECT device_id, metric, measured_at FROM vs_quarantine" in delete
    # The last statement answers for the quarantined rows only: the loader knows the clean rows it skipped.
    assert statements[-1].startswith("SELECT 'quarantine' AS kind")
    assert "UNION" not in statements[-1]
    assert sql.create_staging_sql("vs_clean_keys", "postgres") == (
        "CREATE TEMP TABLE vs_clean_keys (device_id VARCHAR(64) NOT NULL, metric VARCHAR(32) NOT NULL, "
        "measured_at TIMESTAMPTZ NOT NULL) ON COMMIT DROP"
    )
    with pytest.raises(ValueError, match="number of rows"):
        sql.load_statements("b-1", "vitals", COUNTS, "postgres")
    with pytest.raises(ValueError, match="INSERT inserts"):
        sql.load_statements("b-1", "vitals", COUNTS, "redshift", loaded=5)


def test_postgres_skipped_keys_probe_fact_and_quarantine_once_each() -> None:
    skipped = sql.skipped_keys_sql()
    first, second = skipped.split(" UNION ALL ")
    assert "FROM vs_clean_keys s WHERE EXISTS (SELECT 1 FROM fact_vitals f" in first
    assert "vitals_quarantine" not in first
    assert "EXISTS (SELECT 1 FROM vitals_quarantine q" in second
    assert "AND NOT EXISTS (SELECT 1 FROM fact_vitals f" in second
    assert sql.batch_lock_sql("o'b") == "SELECT pg_advisory_xact_lock(hashtextextended('o''b', 0))"


def test_audit_counts_duplicates_from_the_stages_and_the_load() -> None:
    audit = next(s for s in sql.load_statements("b-1", "vitals", COUNTS, "redshift") if "load_audit (" in s)
    assert "1 + (6 - c.loaded) + (2 - c.quarantined) + (1 - c.pending)" in audit
    assert "'vitals', 10," in audit


def test_copy_statement() -> None:
    text = sql.copy_sql("vs_pending", "s3://b/staging/vitals/pending/b.parquet", "arn:r", manifest=False)
    assert text.startswith("COPY vs_pending (device_id,")
    assert text.endswith("IAM_ROLE 'arn:r' FORMAT AS PARQUET")
    assert sql.copy_sql("vs_clean", "s3://m", "arn:r", manifest=True).endswith("FORMAT AS PARQUET MANIFEST")


def test_literals_are_quoted_and_refuse_backslashes() -> None:
    assert sql.literal("o'brien") == "'o''brien'"
    with pytest.raises(ValueError, match="backslash"):
        sql.literal("a\\b")


def test_context_sql_dialects() -> None:
    assert "LATERAL" in sql.context_sql("postgres", "s", 8)
    redshift = sql.context_sql("redshift", "s", 8)
    assert "LATERAL" not in redshift
    assert "ROW_NUMBER() OVER" in redshift
    assert "rn <= 8" in redshift


def _warehouse_schema(dialect: sql.Dialect) -> dict[str, dict[str, str]]:
    """The warehouse tables (from the DDL files) and the loads' staging tables, column names only."""
    tables = {name: {column: "TEXT" for column, _ in columns} for name, columns in table_columns(dialect).items()}
    for name, schema in sql.STAGING.items():
        tables[name] = {field.name: "TEXT" for field in schema}
    for new, staged in (
        ("vs_clean_new", "vs_clean"),
        ("vs_quarantine_new", "vs_quarantine"),
        ("vs_pending_new", "vs_pending"),
    ):
        tables[new] = tables[staged]
    return tables


@pytest.mark.parametrize("dialect", ["postgres", "redshift"])
def test_every_column_reference_resolves_against_the_warehouse_tables(dialect: sql.Dialect) -> None:
    """Each statement's tables, aliases and columns exist (sqlglot qualify against the DDL): a wrong alias or
    column name fails here, not only against a database. SQL identifiers are case-insensitive, so a mutant
    that only changes their case (or a keyword's) is the same statement."""
    schema = _warehouse_schema(dialect)
    statements = [
        *sql.load_statements("b-1", "vitals", COUNTS, dialect, loaded=5 if dialect == "postgres" else None),
        sql.context_sql(dialect, "shard-0", 16),
        sql.skipped_keys_sql(),
        sql.not_inserted_sql("b-1"),
        sql.not_inserted_sql("b-1", "vs_clean_keys"),
        sql.not_inserted_sql("b-1", None),
        sql.audited_sql("b-1"),
        sql.batch_rows_sql("fact_vitals", "b-1"),
        sql.batch_rows_sql("vitals_quarantine", "b-1"),
        sql.pending_sql("shard-0"),
        sql.stale_pending_sources_sql(1_764_000_000_000_000),
        sql.failed_batch_sql("vitals", "shard:1-2", "batch_failed", "ValueError"),
    ]
    for statement in statements:
        tree = sqlglot.parse_one(statement.replace(" ON COMMIT DROP", ""), read=dialect)
        assert not isinstance(tree, exp.Command), statement
        qualify(tree, schema=schema, dialect=dialect, validate_qualify_columns=True)


def _columns(create: str, dialect: sql.Dialect) -> dict[str, tuple[str, bool]]:
    """``column -> (type, NOT NULL)`` of a CREATE TABLE statement."""
    tree = sqlglot.parse_one(create.replace(" ON COMMIT DROP", ""), read=dialect)
    return {
        c.name: (
            c.args["kind"].sql(dialect),
            any(isinstance(k.kind, exp.NotNullColumnConstraint) for k in c.constraints),
        )
        for c in tree.this.expressions
    }


def test_staging_types_and_nullability_per_dialect() -> None:
    pg = _columns(sql.create_staging_sql("vs_quarantine", "postgres"), "postgres")
    rs = _columns(sql.create_staging_sql("vs_quarantine", "redshift"), "redshift")
    assert pg["detail"] == ("TEXT", False)  # free text: unbounded, nullable
    assert rs["detail"] == ("VARCHAR(65535)", False)
    assert pg["measured_at"] == ("TIMESTAMPTZ", True)
    assert rs["measured_at"] == ("TIMESTAMP WITH TIME ZONE", True)  # sqlglot's Redshift spelling of TIMESTAMPTZ
    for columns in (pg, rs):
        assert columns["value"] == ("DOUBLE PRECISION", True)
        assert columns["reason"] == ("VARCHAR(32)", True)
        assert columns["patient_id"] == ("VARCHAR(64)", False)
    assert _columns(sql.series_staging_sql("postgres"), "postgres")["since"] == ("TIMESTAMPTZ", False)
    assert sql.series_staging_sql("redshift") == sql.create_staging_sql("vs_series", "redshift")
    assert sql._column_type(pa.field("n", pa.int64()), "redshift") == "BIGINT"
    with pytest.raises(TypeError, match=r"^no warehouse type for bool$"):
        sql._column_type(pa.field("b", pa.bool_()), "postgres")


def test_time_literals_are_utc_whatever_the_process_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        plus_two = timezone(timedelta(hours=2))
        bounds = (datetime(2026, 1, 1, 9, tzinfo=plus_two), datetime(2026, 1, 1, 10, 59, tzinfo=plus_two))
        statements = sql.load_statements("b-1", "vitals", COUNTS, "redshift", bounds=bounds)
        assert (
            "BETWEEN CAST('2026-01-01 07:00:00+00:00' AS TIMESTAMPTZ) AND CAST('2026-01-01 08:59:00+00:00'"
            in (statements[0])
        )
        stale = sql.stale_pending_sources_sql(1_767_225_600_250_000)  # 2026-01-01T00:00:00.25Z
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert stale == (
        "SELECT DISTINCT source_id FROM vitals_pending "
        "WHERE received_at < CAST('2026-01-01 00:00:00.250000+00:00' AS TIMESTAMPTZ)"
    )


def test_batch_rows_read_the_table_in_zone_column_order() -> None:
    for table, columns in (("fact_vitals", sql.FACT_COLUMNS), ("vitals_quarantine", sql.QUARANTINE_COLUMNS)):
        tree = sqlglot.parse_one(sql.batch_rows_sql(table, "o'b"), read="postgres")
        assert [c.name for c in tree.selects] == list(columns)
        assert [t.name for t in tree.find_all(exp.Table)] == [table]
        assert tree.args["where"].this.sql() == "batch_id = 'o''b'"
        assert [(o.this.name, bool(o.args.get("desc"))) for o in tree.args["order"].expressions] == [
            ("device_id", False),
            ("metric", False),
            ("measured_at", False),
        ]
    assert "detail" in sql.QUARANTINE_COLUMNS
    assert "detail" not in sql.FACT_COLUMNS


@pytest.mark.parametrize("dialect", ["postgres", "redshift"])
def test_context_branches_read_their_table_and_say_their_state(dialect: sql.Dialect) -> None:
    tree = sqlglot.parse_one(sql.context_sql(dialect, "shard-0", 8), read=dialect)
    branches = list(tree.flatten()) if isinstance(tree, exp.Union) else [tree]
    assert len(branches) == 3
    found = {}
    for branch in branches:
        assert [c.alias_or_name for c in branch.selects] == list(sql.CONTEXT_COLUMNS)
        state = branch.selects[-1].this.name
        found[state] = {t.name for t in branch.find_all(exp.Table)} - {"vs_series"}
    assert found == {"accepted": {"fact_vitals"}, "quarantined": {"vitals_quarantine"}, "pending": {"vitals_pending"}}
    pending = next(b for b in branches if b.selects[-1].this.name == "pending")
    if dialect == "postgres":  # one scan of the held rows: the source's, or any of a staged series
        assert isinstance(pending.args["where"].this, exp.Or)
        assert pending.args["where"].this.left.sql() == "x.source_id = 'shard-0'"
    else:  # Redshift refuses an OR with a correlated EXISTS: a UNION of the two
        assert not list(pending.find_all(exp.Or))
        assert isinstance(pending.find(exp.Subquery).this, exp.Union)


def test_refusals_say_exactly_why() -> None:
    for bad in ("a\x00b", "a\\b"):
        with pytest.raises(ValueError, match=r"^literal must not contain NUL or backslash$"):
            sql.literal(bad)
    with pytest.raises(ValueError, match=r"^Redshift counts the rows its INSERT inserts$"):
        sql.load_statements("b-1", "vitals", COUNTS, "redshift", loaded=5)
    with pytest.raises(ValueError, match=r"^PostgreSQL needs the number of rows the loader copied into fact_vitals$"):
        sql.load_statements("b-1", "vitals", COUNTS, "postgres")
