"""The batch loads' SQL: generated text parses, keys and SCD2 semantics are what the contract says."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlglot

from schemas.arrow import CLAIMS, ENCOUNTERS, PATIENTS
from schemas.ddl import table_columns
from workers.warehouse import file_tables as tables
from workers.warehouse.postgres import file_sql as sql
from workers.warehouse.redshift import file_sql as rs


def parses(statement: str) -> None:
    sqlglot.parse_one(statement, read="postgres")


@pytest.mark.parametrize("spec", list(tables.SPECS.values()), ids=lambda s: s.table)
def test_every_statement_parses(spec: tables.TableSpec) -> None:
    parses(sql.create_staging(spec))
    for statement in sql.merge_statements(spec):
        parses(statement)


def test_specs_follow_the_arrow_schemas_and_the_ddl() -> None:
    ddl = {table: [c for c, _ in cols] for table, cols in table_columns("postgres").items()}
    for spec, schema in ((tables.PATIENTS, PATIENTS), (tables.ENCOUNTERS, ENCOUNTERS), (tables.CLAIMS, CLAIMS)):
        assert spec.column_names == tuple(schema.names)
        assert set(spec.column_names) <= set(ddl[spec.table])
    assert set(tables.QUARANTINE_COLUMNS) <= set(ddl["batch_quarantine"])


def test_upserts_conflict_on_the_natural_key_and_update_everything_else() -> None:
    statement = sql.upsert(tables.CLAIMS)
    assert "ON CONFLICT (claim_id, line_number) DO UPDATE SET" in statement
    assert "status = EXCLUDED.status" in statement
    assert "paid_amount = EXCLUDED.paid_amount" in statement
    assert "claim_id = EXCLUDED" not in statement
    assert "ON CONFLICT (encounter_id)" in sql.upsert(tables.ENCOUNTERS)
    assert "length_of_stay_hours = EXCLUDED.length_of_stay_hours" in sql.upsert(tables.ENCOUNTERS)


def test_scd2_close_only_changed_current_versions_of_older_start() -> None:
    close, insert = sql.merge_statements(tables.PATIENTS)
    assert close.startswith("UPDATE dim_patient AS d SET valid_to = $1, is_current = false")
    assert "d.is_current" in close
    assert "d.valid_from < $1" in close
    for column in ("birth_date", "sex", "postal_code"):
        assert (
            f"(d.{column} <> s.{column} OR (d.{column} IS NULL AND s.{column} IS NOT NULL) "
            f"OR (d.{column} IS NOT NULL AND s.{column} IS NULL))"
        ) in close
    assert "IS DISTINCT FROM" not in close  # Redshift has none
    assert "NOT EXISTS (SELECT 1 FROM dim_patient AS d WHERE d.patient_id = s.patient_id AND d.is_current)" in insert
    assert "$1, NULL, true" in insert


def test_non_scd2_tables_have_a_single_upsert() -> None:
    assert len(sql.merge_statements(tables.ENCOUNTERS)) == 1
    # Claims: the upsert, then the 835 adjudications already received for the staged claims (temp table, update).
    upsert, *apply = sql.merge_statements(tables.CLAIMS)
    assert upsert.startswith("INSERT INTO fact_claims ")
    assert [s.split()[0] for s in apply] == ["DROP", "CREATE", "UPDATE"]
    assert "FROM stage_fact_claims" in apply[1]


def test_staging_is_transaction_scoped() -> None:
    assert sql.create_staging(tables.CLAIMS).startswith("CREATE TEMP TABLE IF NOT EXISTS stage_fact_claims (")
    assert sql.create_staging(tables.CLAIMS).endswith("ON COMMIT DROP")
    assert "billed_amount numeric(12,2)" in sql.create_staging(tables.CLAIMS)


def test_identifiers_are_checked() -> None:
    bad = tables.TableSpec("x", "fact; DROP TABLE y", (("a", "text"),), key=("a",))
    with pytest.raises(ValueError, match="identifier"):
        sql.upsert(bad)


def test_audit_and_quarantine_statements() -> None:
    for statement in (sql.AUDIT_SELECT, sql.AUDIT_INSERT, sql.QUARANTINE_DELETE, sql.SOURCE_LOCK, sql.PATIENT_LOCK):
        parses(statement)
    assert "WHERE pipeline = $1 AND source_key = $2" in sql.QUARANTINE_DELETE


def test_identifier_refusal_names_it() -> None:
    bad = tables.TableSpec("x", "2fact", (("a", "text"),), key=("a",))
    with pytest.raises(ValueError, match=r"^not a plain SQL identifier: '2fact'$"):
        sql.staging_name(bad)


def test_scd2_joins_every_key_column() -> None:
    """The SCD2 statements are generic over the spec: a two-column key joins on both columns."""
    spec = tables.TableSpec("x", "dim_x", (("a", "text"), ("b", "text"), ("c", "text")), key=("a", "b"), scd2=True)
    joined = "d.a = s.a AND d.b = s.b AND d.is_current"
    assert joined in sql.scd2_insert(spec)
    assert "WHERE d.a = s.a AND d.b = s.b AND d.is_current" in sql.scd2_close(spec)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    assert joined in rs.scd2_insert(spec, "b", 0, at)
    assert "AND d.a = s.a AND d.b = s.b AND d.is_current" in rs.scd2_close(spec, "b", 0, at)
    assert "PARTITION BY s.file_index, s.a, s.b ORDER BY" in rs.latest_per_file(spec, "b")
