"""SQL of the X12 / DMS CDC semantics (workers.warehouse.{postgres,redshift}.feed_sql): parses in its dialect,
every Redshift write is guarded by the batch's audit row, and the shapes Redshift refuses are absent."""

from __future__ import annotations

import pytest
import sqlglot

from workers.warehouse import file_tables as tables
from workers.warehouse.postgres import feed_sql as pg
from workers.warehouse.postgres import file_sql as pg_files
from workers.warehouse.redshift import feed_sql as rs

GUARD = "NOT EXISTS (SELECT 1 FROM load_audit AS a WHERE a.batch_id = 'b1')"
FEEDS = [tables.REMITTANCES, tables.PATIENT_CHANGES, tables.ENCOUNTER_CHANGES, tables.ADT_EVENTS]


@pytest.mark.parametrize("spec", FEEDS, ids=lambda s: s.lake_table)
def test_postgres_statements_parse(spec: tables.TableSpec) -> None:
    statements = pg_files.merge_statements(spec)
    assert statements == pg.feed_statements(spec)
    for statement in statements:
        sqlglot.parse_one(statement, read="postgres")


@pytest.mark.parametrize("spec", FEEDS, ids=lambda s: s.lake_table)
def test_redshift_statements_parse_and_are_guarded(spec: tables.TableSpec) -> None:
    statements = rs.feed_statements(spec, GUARD, "b1")
    assert statements
    guarded: set[str] = set()  # temp tables empty once the batch is audited
    for statement in statements:
        sqlglot.parse_one(statement, read="redshift")
        assert "ON CONFLICT" not in statement
        assert "DISTINCT ON" not in statement
        if statement.startswith("CREATE TEMP TABLE"):
            name = statement.split()[3]
            sources = {w.rstrip(")") for w in statement.split(" FROM ")[1:] for w in w.split()[:1]}
            if GUARD in statement or sources & guarded:
                guarded.add(name)
        elif statement.startswith(("UPDATE", "INSERT", "DELETE")):
            assert GUARD in statement, statement
        elif statement.startswith("MERGE INTO"):  # Redshift MERGE takes a table source, here a guarded one
            assert statement.split(" USING ")[1].split()[0] in guarded, statement
        else:
            raise AssertionError(f"unexpected statement kind: {statement[:40]}")


def test_other_tables_have_no_feed_statements() -> None:
    assert pg.feed_statements(tables.CLAIMS) is None
    assert rs.feed_statements(tables.PATIENTS, GUARD, "b1") is None
