"""SQL of the X12 / DMS CDC semantics (workers.warehouse.{postgres,redshift}.feed_sql): parses in its dialect,
every Redshift write is guarded by the batch's audit row, and the shapes Redshift refuses are absent."""

from __future__ import annotations

import pytest
import sqlglot

from workers.warehouse import file_tables as tables
from workers.warehouse.adt_sql import adt_statements
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


def _tree(statement: str, dialect: str) -> sqlglot.exp.Expression:
    return sqlglot.parse_one(statement.replace(" ON COMMIT DROP", ""), read=dialect)


def _strings(statement: str, dialect: str) -> set[str]:
    return {lit.this for lit in _tree(statement, dialect).find_all(sqlglot.exp.Literal) if lit.is_string}


def test_postgres_dim_patient_writers_share_one_lock_and_adt_runs_unguarded() -> None:
    """CDC, ADT and the file SCD2 merges of dim_patient take the same advisory lock (one writer at a time)."""
    patients = pg.feed_statements(tables.PATIENT_CHANGES)
    adt = pg.feed_statements(tables.ADT_EVENTS)
    assert patients is not None
    assert adt is not None
    assert patients[0] == pg_files.PATIENT_LOCK
    assert adt == (pg_files.PATIENT_LOCK, *adt_statements("postgres", "stage_adt_events", "TRUE"))
    assert "'vitalstream:dim_patient'" in pg_files.PATIENT_LOCK


@pytest.mark.parametrize(
    ("spec", "source_table", "target"),
    [(tables.PATIENT_CHANGES, "patients", "dim_patient"), (tables.ENCOUNTER_CHANGES, "encounters", "fact_encounters")],
)
def test_cdc_key_state_and_audit_name_the_source_table(spec: tables.TableSpec, source_table: str, target: str) -> None:
    pg_statements = pg.feed_statements(spec)
    assert pg_statements is not None
    rs_statements = rs.feed_statements(spec, GUARD, "b1")
    assert rs_statements is not None
    for dialect, statements in (("postgres", list(pg_statements)), ("redshift", rs_statements)):
        audit = next(s for s in statements if s.startswith("INSERT INTO load_audit_changes"))
        joined = _tree(audit, dialect).find(sqlglot.exp.Join)
        assert joined is not None
        assert joined.this.name == target
        assert source_table in _strings(audit, dialect)
        state = [s for s in statements if "cdc_key_state" in s]
        assert state
        assert all(source_table in _strings(s, dialect) for s in state if "SELECT" in s and "'" in s)
    upsert = next(s for s in pg_statements if s.startswith("INSERT INTO cdc_key_state"))
    assert f"SELECT '{source_table}', {spec.key[0]}, dms_commit_ts, op FROM cdc_new" in upsert


def test_postgres_cdc_audit_adds_up_on_conflict_and_remittances_keep_the_newest() -> None:
    statements = pg.feed_statements(tables.ENCOUNTER_CHANGES)
    assert statements is not None
    audit = _tree(next(s for s in statements if s.startswith("INSERT INTO load_audit_changes")), "postgres")
    conflict = audit.args["conflict"]
    assert [k.name for k in conflict.args["conflict_keys"]] == ["batch_id", "source_table"]
    assert {e.sql() for e in conflict.args["expressions"]} == {
        f"{c} = load_audit_changes.{c} + EXCLUDED.{c}"
        for c in ("rows_inserted", "rows_updated", "rows_deleted", "rows_ignored")
    }
    upsert = _tree(next(s for s in statements if s.startswith("INSERT INTO fact_encounters")), "postgres")
    columns = [c.name for c in upsert.this.expressions]
    assert columns == [c for c, _ in tables.ENCOUNTER_CHANGES.columns if c not in ("op", "dms_commit_ts", "change_seq")]
    assert {e.this.name for e in upsert.args["conflict"].args["expressions"]} == set(columns) - {"encounter_id"}
    remits = pg.feed_statements(tables.REMITTANCES)
    assert remits is not None
    keep = _tree(remits[0], "postgres")
    assert {e.this.name for e in keep.args["conflict"].args["expressions"]} == {
        "status", "allowed_amount", "paid_amount", "denial_reason", "remit_order",
    }  # fmt: skip
    assert keep.args["conflict"].args["where"].sql() == ("WHERE claim_adjudications.remit_order < EXCLUDED.remit_order")
    assert remits[1:] == pg.apply_adjudications("stage_claim_remittances")
    assert remits[1] == "DROP TABLE IF EXISTS claims_apply"


@pytest.mark.parametrize("dialect", ["postgres", "redshift"])
def test_adt_visits_fold_the_event_codes_of_the_contract(dialect: str) -> None:
    statements = adt_statements(dialect, "stage_adt_events", "TRUE")  # type: ignore[arg-type]
    visits = next(s for s in statements if s.startswith("CREATE TEMP TABLE adt_visits"))
    assert _strings(visits, dialect) == {"A01", "A02", "A03", "A04", "A08", "A11", "A13", "A40"}
    bounds = next(s for s in statements if s.startswith("CREATE TEMP TABLE adt_bounds"))
    assert _strings(bounds, dialect) == {"U", "D", "A40"}
    temps = [s for s in statements if s.startswith("CREATE TEMP TABLE")]
    if dialect == "postgres":  # dropped at commit, and any left by an earlier file of the transaction first
        assert all(" ON COMMIT DROP AS " in s for s in temps)
        drops = [s.split()[-1] for s in statements if s.startswith("DROP TABLE IF EXISTS")]
        assert drops == [s.split()[3] for s in temps]
    else:
        assert not any("ON COMMIT DROP" in s or s.startswith("DROP") for s in statements)


KEYS = {
    "claim_adjudications": ["claim_id", "line_number"],
    "cdc_key_state": ["source_table", "key_value"],
    "fact_encounters": ["encounter_id"],
}


@pytest.mark.parametrize("spec", FEEDS[:3], ids=lambda s: s.lake_table)
def test_redshift_merges_match_on_the_key_and_update_every_other_column(spec: tables.TableSpec) -> None:
    statements = rs.feed_statements(spec, GUARD, "b1")
    assert statements is not None
    merges = [_tree(s, "redshift") for s in statements if s.startswith("MERGE INTO")]
    assert merges
    for merge in merges:
        target = merge.this.name
        on = sorted(c.name for c in merge.args["on"].find_all(sqlglot.exp.Column) if c.table == target)
        assert on == sorted(KEYS[target])
        matched, inserted = merge.args["whens"].expressions
        updated = [e.this.name for e in matched.args["then"].expressions]
        columns = [c.name for c in inserted.args["then"].this.expressions]
        values = [v.name for v in inserted.args["then"].expression.expressions]
        assert columns == values
        assert updated == [c for c in columns if c not in KEYS[target]]
