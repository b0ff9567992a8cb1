"""The analytics DDL of CONTRACT §10 in both dialects: same marts and analyst views, Redshift SQL sqlglot parses."""

from __future__ import annotations

import re

import pytest
import sqlglot
from sqlglot import exp

from schemas.ddl import CONTRACT_TABLES, MARTS, MATERIALIZED_VIEWS, analytics_files, analytics_statements
from workers.warehouse.refresh import postgres_refresh_sql, redshift_refresh_sql

# Statements sqlglot (redshift dialect) keeps as an opaque Command: it has no grammar for them.
SQLGLOT_UNSUPPORTED = (
    "CREATE ROLE ",
    "CREATE EXTERNAL SCHEMA ",
    "ALTER DEFAULT PRIVILEGES ",
    "GRANT SELECT ON ALL TABLES ",
    "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES ",
    "REVOKE ALL ON ALL TABLES ",
)
LEADER_ONLY = ("GETDATE", "CURRENT_DATE", "CURRENT_TIMESTAMP", "NOW(", "SYSDATE", "CURRENT_SCHEMA", "AGE(")
HIDDEN = {"device_id", "message_id", "birth_date"}


def _creates(dialect: str) -> dict[str, exp.Create]:
    out = {}
    for statement in analytics_statements(dialect):  # type: ignore[arg-type]
        if not statement.upper().startswith("CREATE") or " VIEW " not in statement.upper():
            continue
        if dialect == "postgres":  # view options sqlglot does not read
            statement = statement.replace(" WITH (security_barrier)", "")
        tree = sqlglot.parse_one(statement, read="redshift" if dialect == "redshift" else "postgres")
        assert isinstance(tree, exp.Create), statement[:80]
        name = tree.this.this if isinstance(tree.this, exp.Schema) else tree.this
        out[".".join(p for p in (name.db, name.name) if p)] = tree
    return out


def _columns(tree: exp.Create) -> list[str]:
    query = tree.expression
    select = query if isinstance(query, exp.Select) else query.find(exp.Select)
    assert select is not None
    return [e.alias_or_name for e in select.expressions]


@pytest.fixture(scope="module")
def creates() -> dict[str, dict[str, exp.Create]]:
    return {d: _creates(d) for d in ("postgres", "redshift")}


def test_every_redshift_statement_parses(caplog: pytest.LogCaptureFixture) -> None:
    statements = analytics_statements("redshift")
    assert len(statements) > 20
    opaque = []
    for statement in statements:
        tree = sqlglot.parse_one(statement, read="redshift")
        if isinstance(tree, exp.Command):
            opaque.append(statement)
            assert statement.upper().startswith(SQLGLOT_UNSUPPORTED), f"sqlglot could not parse: {statement[:80]}"
    assert len(opaque) < len(statements) / 2


def test_the_marts_exist_in_both_dialects_with_the_contract_columns(creates: dict[str, dict[str, exp.Create]]) -> None:
    expected = {
        "daily_patient_summary": ["patient_id", "day", "metric", "readings", "min_value", "max_value", "avg_value",
                                  "quarantined", "max_news2"],
        "census_daily": ["day", "encounter_type", "patients_in_house"],
        "avg_vitals_by_diagnosis": ["primary_dx", "metric", "patients", "readings", "avg_value"],
        "claims_denial_rate_monthly": ["month", "denial_reason", "claim_lines", "denied_lines", "denial_rate"],
        "readmissions_30d": ["patient_id", "encounter_id", "discharge_at", "readmission_encounter_id",
                             "days_to_readmission"],
    }  # fmt: skip
    assert set(expected) == set(MARTS)
    for dialect, trees in creates.items():
        for name, columns in expected.items():
            assert _columns(trees[name]) == columns, (dialect, name)
            assert _columns(trees[f"analyst.{name}"]) == columns, (dialect, name)
        materialized = {n for n, t in trees.items() if t.find(exp.MaterializedProperty) is not None}
        assert materialized == set(MATERIALIZED_VIEWS), dialect


def test_analyst_views_match_across_dialects_and_hide_identifiers(creates: dict[str, dict[str, exp.Create]]) -> None:
    views = {d: {n: _columns(t) for n, t in trees.items() if n.startswith("analyst.")} for d, trees in creates.items()}
    assert views["postgres"] == views["redshift"]
    for name, columns in views["postgres"].items():
        assert not HIDDEN & set(columns), name
    assert "birth_year" in views["postgres"]["analyst.dim_patient"]
    facts = {f"analyst.{t}" for t in CONTRACT_TABLES if t not in ("batch_quarantine",)}
    assert facts <= set(views["postgres"])


def test_analyst_patient_ids_are_keyed_hashes(creates: dict[str, dict[str, exp.Create]]) -> None:
    for dialect, trees in creates.items():
        for name, tree in trees.items():
            if not name.startswith("analyst.") or "patient_id" not in _columns(tree):
                continue
            sql = tree.sql(dialect="redshift" if dialect == "redshift" else "postgres")
            assert "pseudonym_key" in sql, (dialect, name)
            assert ("HMAC(" in sql.upper()) if dialect == "postgres" else ("SHA2(" in sql.upper()), (dialect, name)


def test_redshift_materialized_view_reads_tables_only(creates: dict[str, dict[str, exp.Create]]) -> None:
    tree = creates["redshift"]["daily_patient_summary"]
    tables = {t.name for t in tree.expression.find_all(exp.Table)}
    assert tables == {"fact_vitals", "vitals_quarantine", "news2_hourly"}
    sql = tree.expression.sql(dialect="redshift").upper()
    assert not [f for f in LEADER_ONLY if f in sql]
    assert "AUTO REFRESH NO" in tree.sql(dialect="redshift").upper()


def test_every_postgres_mart_has_its_definition_in_a_comment() -> None:
    text = dict(analytics_files("postgres"))["10_marts.sql"]
    for name in MARTS:
        assert re.search(rf"^-- {name}: one row per ", text, re.MULTILINE), name


def test_refresh_statements() -> None:
    assert postgres_refresh_sql("daily_patient_summary", populated=True) == (
        "REFRESH MATERIALIZED VIEW CONCURRENTLY daily_patient_summary"
    )
    assert postgres_refresh_sql("daily_patient_summary", populated=False) == (
        "REFRESH MATERIALIZED VIEW daily_patient_summary"
    )
    # Redshift: REFRESH MATERIALIZED VIEW mv_name [RESTRICT | CASCADE]; no CONCURRENTLY.
    assert redshift_refresh_sql("daily_patient_summary") == "REFRESH MATERIALIZED VIEW daily_patient_summary"
