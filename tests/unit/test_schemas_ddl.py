"""Warehouse DDL: both dialects describe the CONTRACT §7 tables identically, and match the Arrow schemas."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
import pytest
import sqlglot
from sqlglot import exp

from schemas import ddl
from schemas.arrow import (
    BATCH_QUARANTINE,
    CLAIMS,
    DETERIORATION_ALERTS,
    ENCOUNTERS,
    NEWS2_HOURLY,
    PATIENTS,
    PROCESSED_VITALS,
    QUARANTINED_VITALS,
    READINGS,
    TIMESTAMP,
)
from schemas.ddl import (
    CONTRACT_TABLES,
    DIALECTS,
    INTERNAL_TABLES,
    Dialect,
    analytics_files,
    analytics_statements,
    ddl_files,
    ddl_statements,
    normalise_type,
    split_statements,
    table_columns,
)

CONTRACT_COLUMNS: dict[str, list[str]] = {
    "fact_vitals": [
        "device_id",
        "patient_id",
        "metric",
        "loinc_code",
        "value",
        "unit",
        "measured_at",
        "received_at",
        "message_id",
        "batch_id",
        "loaded_at",
    ],
    "load_audit": [
        "batch_id",
        "pipeline",
        "rows_in",
        "rows_loaded",
        "rows_quarantined",
        "rows_duplicate",
        "committed_at",
    ],
    "dim_patient": [
        "patient_key",
        "patient_id",
        "birth_date",
        "sex",
        "postal_code",
        "valid_from",
        "valid_to",
        "is_current",
    ],
    "fact_encounters": [
        "encounter_id",
        "patient_id",
        "provider_id",
        "encounter_type",
        "admit_at",
        "discharge_at",
        "length_of_stay_hours",
        "primary_dx",
    ],
    "news2_hourly": [
        "patient_id",
        "hour_start",
        "rr",
        "spo2",
        "sbp",
        "pulse",
        "temp",
        "score_rr",
        "score_spo2",
        "score_sbp",
        "score_pulse",
        "score_temp",
        "total",
        "parameters",
        "any_three",
        "risk",
        "updated_at",
    ],
    "fact_claims": [
        "claim_id",
        "line_number",
        "patient_id",
        "provider_npi",
        "service_date",
        "procedure_code",
        "dx_code",
        "billed_amount",
        "allowed_amount",
        "paid_amount",
        "status",
        "denial_reason",
    ],
}

ARROW_TYPES = {
    pa.string(): "string",
    pa.float64(): "double",
    pa.int64(): "bigint",
    pa.int32(): "integer",
    pa.date32(): "date",
    pa.bool_(): "boolean",
    TIMESTAMP: "timestamptz",
    pa.decimal128(12, 2): "decimal(12,2)",
}


@pytest.fixture(scope="module", params=DIALECTS)
def dialect(request: pytest.FixtureRequest) -> Dialect:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def columns() -> dict[Dialect, dict[str, list[tuple[str, str]]]]:
    return {d: table_columns(d) for d in DIALECTS}


def test_files_are_numbered_and_paired() -> None:
    names = {d: [name for name, _ in ddl_files(d)] for d in DIALECTS}
    assert names["postgres"] == names["redshift"]
    assert names["postgres"] == sorted(names["postgres"])
    assert all(re.fullmatch(r"\d{2}_[a-z][a-z0-9_]*\.sql", n) for n in names["postgres"])


def test_unknown_dialect() -> None:
    with pytest.raises(ValueError, match="unknown dialect"):
        ddl_files("mysql")  # type: ignore[arg-type]


def test_every_statement_parses_and_is_idempotent(dialect: Dialect) -> None:
    statements = ddl_statements(dialect)
    assert statements
    for statement in statements:
        assert not statement.endswith(";")
        tree = sqlglot.parse_one(statement, read=dialect)
        assert isinstance(tree, exp.Create), statement
        assert tree.args.get("exists") is True, f"not IF NOT EXISTS: {statement[:60]}"


def test_same_tables_columns_and_types(columns: dict[Dialect, dict[str, list[tuple[str, str]]]]) -> None:
    assert columns["postgres"] == columns["redshift"]
    assert sorted(columns["postgres"]) == sorted([*CONTRACT_TABLES, *INTERNAL_TABLES])


def test_contract_columns(columns: dict[Dialect, dict[str, list[tuple[str, str]]]]) -> None:
    tables = columns["postgres"]
    for table, expected in CONTRACT_COLUMNS.items():
        assert [name for name, _ in tables[table]] == expected, table
    vitals = dict(tables["fact_vitals"])
    assert vitals["value"] == "double"
    assert {vitals[c] for c in ("measured_at", "received_at", "loaded_at")} == {"timestamptz"}
    claims = dict(tables["fact_claims"])
    assert {claims[c] for c in ("billed_amount", "allowed_amount", "paid_amount")} == {"decimal(12,2)"}
    assert dict(tables["dim_patient"])["patient_key"] == "bigint"
    quarantine = [name for name, _ in tables["vitals_quarantine"]]
    assert quarantine[1:] == [*CONTRACT_COLUMNS["fact_vitals"][:-1], "reason", "detail", "loaded_at"]
    alerts = [name for name, _ in tables["deterioration_alerts"]]
    contract_alerts = ["alert_id", "patient_id", "hour_start", "risk", "total", "raised_at", "published_at"]
    assert alerts[:7] == contract_alerts
    batch = [name for name, _ in tables["batch_quarantine"]]
    assert {"pipeline", "source_key", "line_number", "reason", "detail", "quarantined_at"} <= set(batch)


@pytest.mark.parametrize(
    ("table", "schema", "warehouse_only"),
    [
        ("fact_vitals", PROCESSED_VITALS, {"loaded_at"}),
        ("vitals_quarantine", QUARANTINED_VITALS, {"quarantine_id", "loaded_at"}),
        ("fact_encounters", ENCOUNTERS, set()),
        ("fact_claims", CLAIMS, set()),
        ("batch_quarantine", BATCH_QUARANTINE, {"quarantine_id", "quarantined_at"}),
        ("news2_hourly", NEWS2_HOURLY, set()),
        ("deterioration_alerts", DETERIORATION_ALERTS, set()),
    ],
)
def test_arrow_schema_matches_warehouse(
    columns: dict[Dialect, dict[str, list[tuple[str, str]]]],
    table: str,
    schema: pa.Schema,
    warehouse_only: set[str],
) -> None:
    warehouse = [(n, t) for n, t in columns["postgres"][table] if n not in warehouse_only]
    arrow = [(f.name, ARROW_TYPES[f.type]) for f in schema]
    assert arrow == warehouse


def test_arrow_nullability_matches_not_null(dialect: Dialect) -> None:
    not_null = _not_null_columns(dialect)
    for table, schema in [
        ("fact_vitals", PROCESSED_VITALS),
        ("vitals_quarantine", QUARANTINED_VITALS),
        ("fact_encounters", ENCOUNTERS),
        ("fact_claims", CLAIMS),
        ("batch_quarantine", BATCH_QUARANTINE),
        ("news2_hourly", NEWS2_HOURLY),
        ("deterioration_alerts", DETERIORATION_ALERTS),
    ]:
        assert {f.name for f in schema if not f.nullable} == not_null[table] & set(schema.names), table


def test_patients_schema_carries_no_identifying_fields() -> None:
    assert PATIENTS.names == ["patient_id", "birth_date", "sex", "postal_code"]
    dim = {n for n, _ in table_columns("postgres")["dim_patient"]}
    assert set(PATIENTS.names) <= dim
    assert not {"family_name", "given_name", "street_address"} & dim


def test_readings_schema() -> None:
    assert READINGS.names == [*PROCESSED_VITALS.names[:-1], "arrival_seq", "source_seq"]
    assert READINGS.field("measured_at").type == pa.timestamp("us", tz="UTC")
    assert READINGS.field("patient_id").nullable
    assert READINGS.field("source_seq").nullable
    assert not READINGS.field("arrival_seq").nullable


def test_redshift_physical_design() -> None:
    statements = {_table_name(s): s for s in ddl_statements("redshift")}
    vitals = statements["fact_vitals"]
    assert re.search(r"DISTKEY \(device_id\)", vitals)
    assert re.search(r"SORTKEY \(measured_at\)", vitals)
    for statement in statements.values():
        assert "INDEX" not in statement.upper()
        assert "CHECK" not in statement.upper()
        assert "bigserial" not in statement.lower()
    assert "IDENTITY(1, 1)" in statements["dim_patient"]


def test_postgres_constraints() -> None:
    text = "\n".join(ddl_statements("postgres"))
    assert "UNIQUE (device_id, metric, measured_at)" in text
    assert re.search(r"CREATE UNIQUE INDEX IF NOT EXISTS \w+ ON dim_patient \(patient_id\) WHERE is_current", text)
    assert "PRIMARY KEY (claim_id, line_number)" in text
    assert "CHECK (status IN ('paid', 'denied', 'pending'))" in text
    assert "DEFAULT now()" in text


def test_split_statements() -> None:
    sql = "-- a; comment\nCREATE TABLE a (x text DEFAULT ';');\n/* b; */ SELECT 'it''s; fine';\n\n;  ;"
    assert split_statements(sql) == ["CREATE TABLE a (x text DEFAULT ';')", "SELECT 'it''s; fine'"]
    with pytest.raises(ValueError, match="unterminated"):
        split_statements("SELECT 'x")


def _table_name(statement: str) -> str:
    tree = sqlglot.parse_one(statement, read="redshift")
    return tree.find(exp.Table).name  # type: ignore[union-attr]


def _not_null_columns(dialect: Dialect) -> dict[str, set[str]]:
    result: dict[str, set[str]] = {}
    for statement in ddl_statements(dialect):
        tree = sqlglot.parse_one(statement, read=dialect)
        if not isinstance(tree.this, exp.Schema):
            continue
        primary = {
            ident.name for pk in tree.this.expressions if isinstance(pk, exp.PrimaryKey) for ident in pk.expressions
        }
        names: set[str] = set()
        for col in tree.this.expressions:
            if not isinstance(col, exp.ColumnDef):
                continue
            kinds = [c.args["kind"] for c in col.args.get("constraints", [])]
            if col.name in primary or any(
                isinstance(k, exp.NotNullColumnConstraint | exp.PrimaryKeyColumnConstraint) for k in kinds
            ):
                names.add(col.name)
        result[tree.this.this.name] = names
    return result


def test_only_sql_files_are_read_in_name_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Folders (even one named like a file) and other files are skipped; files come in name order."""
    root = tmp_path / "sql" / "postgres"
    for folder in (root, root / "analytics", root / "migrations", root / "old.sql"):
        folder.mkdir(parents=True)
    (root / "02_b.sql").write_text("CREATE TABLE IF NOT EXISTS b (x int);", encoding="utf-8")
    (root / "01_a.sql").write_text("-- é\nCREATE TABLE IF NOT EXISTS a (x int);", encoding="utf-8")
    (root / "notes.txt").write_text("not SQL; at all", encoding="utf-8")
    (root / "migrations" / "002_z.sql").write_text("UPDATE a SET x = 2", encoding="utf-8")
    (root / "migrations" / "001_y.sql").write_text("UPDATE a SET x = 1; UPDATE b SET x = 1", encoding="utf-8")
    (root / "analytics" / "20_v.sql").write_text("CREATE VIEW v2 AS SELECT 1", encoding="utf-8")
    (root / "analytics" / "10_v.sql").write_text("CREATE VIEW v1 AS SELECT 1", encoding="utf-8")

    def files(package: str) -> Path:
        assert package == "schemas"
        return tmp_path

    monkeypatch.setattr(ddl.resources, "files", files)
    assert [name for name, _ in ddl_files("postgres")] == ["01_a.sql", "02_b.sql"]
    assert ddl_files("postgres")[0][1].startswith("-- é\n")
    assert ddl_statements("postgres") == [
        "CREATE TABLE IF NOT EXISTS a (x int)",
        "CREATE TABLE IF NOT EXISTS b (x int)",
    ]
    assert ddl.migration_statements("postgres") == ["UPDATE a SET x = 1", "UPDATE b SET x = 1", "UPDATE a SET x = 2"]
    assert [name for name, _ in analytics_files("postgres")] == ["10_v.sql", "20_v.sql"]
    assert analytics_statements("postgres") == ["CREATE VIEW v1 AS SELECT 1", "CREATE VIEW v2 AS SELECT 1"]


def test_every_reader_refuses_an_unknown_dialect() -> None:
    expected = "unknown dialect 'mysql'; expected one of ('postgres', 'redshift')"
    for read in (ddl_files, ddl.migration_statements, analytics_files):
        with pytest.raises(ValueError, match=f"^{re.escape(expected)}$"):
            read("mysql")  # type: ignore[arg-type]


def test_migrations_parse_in_their_dialect() -> None:
    for dialect in DIALECTS:
        statements = ddl.migration_statements(dialect)
        assert statements
        for statement in statements:
            assert not isinstance(sqlglot.parse_one(statement, read=dialect), exp.Command), statement


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT 1 -- a tail without a newline", ["SELECT 1"]),
        ("SELECT 1 /*/ still a comment; */; SELECT 2", ["SELECT 1", "SELECT 2"]),
        ("SELECT /* a */ 1; SELECT /* b */ 2", ["SELECT   1", "SELECT   2"]),
        ("SELECT 1 /**/; SELECT 2", ["SELECT 1", "SELECT 2"]),
        ("SELECT 1 /* c */;SELECT 2", ["SELECT 1", "SELECT 2"]),
        ('SELECT "a;b" FROM t; SELECT 2', ['SELECT "a;b" FROM t', "SELECT 2"]),
        ("SELECT ''; SELECT 2", ["SELECT ''", "SELECT 2"]),
        ("SELECT 'a''b'; SELECT 'x'''", ["SELECT 'a''b'", "SELECT 'x'''"]),
    ],
)
def test_split_statements_edges(sql: str, expected: list[str]) -> None:
    assert split_statements(sql) == expected


def test_split_statements_names_the_unterminated_part() -> None:
    with pytest.raises(ValueError, match=r"^unterminated block comment$"):
        split_statements("SELECT 1 /* open")
    with pytest.raises(ValueError, match=r'^unterminated quote "$'):
        split_statements('SELECT "x')


def test_normalise_type() -> None:
    assert normalise_type(exp.DataType.build("DECIMAL(12, 2)")) == "decimal(12,2)"
    assert normalise_type(exp.DataType.build("DECIMAL")) == "decimal"
    assert normalise_type(exp.DataType.build("INT")) == "integer"
    assert normalise_type(exp.DataType.build("UUID")) == "uuid"  # not in the table: its own name, lower case
    with pytest.raises(TypeError, match=r"^expected a sqlglot DataType, got str$"):
        normalise_type("INT")


def test_table_columns_reads_create_table_statements_only(monkeypatch: pytest.MonkeyPatch) -> None:
    statements = [
        "CREATE TABLE IF NOT EXISTS a (x int, y varchar(8))",
        "CREATE VIEW v (z) AS SELECT 1",  # a column list, but not a table
        "CREATE INDEX IF NOT EXISTS a_idx ON a (x)",
        "COMMENT ON TABLE a IS 'not a CREATE'",
        "CREATE TABLE IF NOT EXISTS c AS SELECT 1 AS y",  # a table, but no column definitions to read
        "CREATE TABLE IF NOT EXISTS b (w date)",
    ]
    monkeypatch.setattr(ddl, "ddl_statements", lambda dialect: statements)
    assert table_columns("postgres") == {"a": [("x", "integer"), ("y", "string")], "b": [("w", "date")]}


def test_doubled_quotes_stay_inside_their_literal() -> None:
    assert split_statements("''; SELECT 'it''s; fine'; SELECT 'a'''") == ["''", "SELECT 'it''s; fine'", "SELECT 'a'''"]
    assert split_statements('SELECT "a""b;c"; SELECT 2') == ['SELECT "a""b;c"', "SELECT 2"]
    with pytest.raises(ValueError, match=r"^unterminated quote '$"):
        split_statements("SELECT 'a''")
