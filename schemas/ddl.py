"""Warehouse DDL (CONTRACT §7), one file set per dialect, shipped as package data.

Contract:
- Files live in ``schemas/sql/<dialect>/*.sql``, applied in file-name order; every statement is idempotent
  (``CREATE TABLE IF NOT EXISTS`` / ``CREATE INDEX IF NOT EXISTS``) so applying them twice is harmless.
- ``ddl_statements`` needs nothing beyond the standard library; ``table_columns`` needs ``sqlglot``
  (a development dependency) and is meant for tests and tooling.
- The analytics layer of CONTRACT §10 (marts, roles, grants, the masked ``analyst`` schema; on Redshift also the
  Spectrum external schema) lives in ``schemas/sql/<dialect>/analytics/*.sql``: applied after the tables, in
  file-name order, by ``analytics_statements``; idempotent too (``CREATE OR REPLACE`` / ``IF NOT EXISTS`` /
  guarded ``DO`` blocks, grants). Bodies are single-quoted (the splitter does not read dollar quoting).
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Literal

__all__ = [
    "CONTRACT_TABLES",
    "DIALECTS",
    "INTERNAL_TABLES",
    "MARTS",
    "MATERIALIZED_VIEWS",
    "Dialect",
    "analytics_files",
    "analytics_statements",
    "ddl_files",
    "ddl_statements",
    "migration_statements",
    "normalise_type",
    "table_columns",
]

Dialect = Literal["postgres", "redshift"]
DIALECTS: tuple[Dialect, ...] = ("postgres", "redshift")
# The warehouse tables of CONTRACT §7 and the pipeline's own bookkeeping tables (DDL files are applied by name).
CONTRACT_TABLES: tuple[str, ...] = (
    "fact_vitals",
    "vitals_quarantine",
    "load_audit",
    "dim_patient",
    "fact_encounters",
    "fact_claims",
    "batch_quarantine",
    "news2_hourly",
    "deterioration_alerts",
)
INTERNAL_TABLES: tuple[str, ...] = (
    "vitals_pending",
    "claim_adjudications",
    "load_lock",
    "cdc_key_state",
    "load_audit_changes",
    "cdc_patient_log",
    "adt_event_log",
)
# The marts of CONTRACT §10 and which of them are materialized (refreshed by `vitalstream warehouse refresh`).
MARTS: tuple[str, ...] = (
    "daily_patient_summary",
    "census_daily",
    "avg_vitals_by_diagnosis",
    "claims_denial_rate_monthly",
    "readmissions_30d",
)
MATERIALIZED_VIEWS: tuple[str, ...] = ("daily_patient_summary",)


def ddl_files(dialect: Dialect) -> list[tuple[str, str]]:
    """Return ``[(file name, SQL text)]`` of ``dialect`` in application (name) order."""
    if dialect not in DIALECTS:
        raise ValueError(f"unknown dialect {dialect!r}; expected one of {DIALECTS}")
    return _read(dialect)


def _read(*folder: str) -> list[tuple[str, str]]:
    """``[(file name, text)]`` of the ``.sql`` files in ``schemas/sql/<folder…>``, by name."""
    path = resources.files("schemas").joinpath("sql", *folder)
    files = [f for f in path.iterdir() if f.is_file() and f.name.endswith(".sql")]
    # not mutated: the codec's name (UTF-8 = utf-8; None = the locale's, UTF-8 wherever this runs)
    by_name = sorted(files, key=lambda f: f.name)  # pragma: no mutate (paths of one folder sort as their names)
    return [(f.name, f.read_text(encoding="utf-8")) for f in by_name]  # pragma: no mutate (the codec, see above)


def migration_statements(dialect: Dialect) -> list[str]:
    """Data migrations of ``dialect`` (``sql/<dialect>/migrations/*.sql``, name order), each idempotent: they
    run after the DDL on every bootstrap."""
    if dialect not in DIALECTS:
        raise ValueError(f"unknown dialect {dialect!r}; expected one of {DIALECTS}")
    return [stmt for _, text in _read(dialect, "migrations") for stmt in split_statements(text)]


def analytics_files(dialect: Dialect) -> list[tuple[str, str]]:
    """Return ``[(file name, SQL text)]`` of the analytics layer of ``dialect`` in application order."""
    if dialect not in DIALECTS:
        raise ValueError(f"unknown dialect {dialect!r}; expected one of {DIALECTS}")
    return _read(dialect, "analytics")


def analytics_statements(dialect: Dialect) -> list[str]:
    """Return every analytics statement of ``dialect`` (after the tables) without trailing ``;``."""
    return [stmt for _, text in analytics_files(dialect) for stmt in split_statements(text)]


# One token of SQL text, tried in this order: a line comment, a block comment, a quoted string or identifier (a
# doubled quote, 'it''s', reads as one closing and another opening: the same text), an unterminated comment or
# quote, a run of plain text, any other single character (``;``, a lone ``-`` or ``/``). Scanning by tokens, not by
# an index the loop moves itself, leaves no way to loop forever.
_SQL_TOKEN = re.compile(r"""--[^\n]*|/\*.*?\*/|'[^']*'|"[^"]*"|/\*|['"]|[^-/;'"]+|.""", re.DOTALL)


def split_statements(sql: str) -> list[str]:
    """Split SQL text on ``;`` outside quotes and comments; drop comments and empty statements.

    Returned statements carry no trailing ``;``. Supports ``--`` line comments, ``/* */`` block comments,
    single-quoted strings (with ``''`` escapes) and double-quoted identifiers; not dollar quoting.
    """
    statements: list[str] = []
    current: list[str] = []
    for part in _SQL_TOKEN.findall(sql):
        if part == "/*":
            raise ValueError("unterminated block comment")
        if part in ("'", '"'):
            raise ValueError(f"unterminated quote {part}")
        if part.startswith("--"):
            continue
        if part.startswith("/*"):
            current.append(" ")
        elif part == ";":
            statements.append("".join(current))
            current = []
        else:
            current.append(part)
    statements.append("".join(current))
    return [s.strip() for s in statements if s.strip()]


def ddl_statements(dialect: Dialect) -> list[str]:
    """Return every DDL statement of ``dialect`` in application order, without trailing ``;``."""
    return [stmt for _, text in ddl_files(dialect) for stmt in split_statements(text)]


_TYPE_NAMES: dict[str, str] = {
    "BIGINT": "bigint",
    "BIGSERIAL": "bigint",
    "INT": "integer",
    "SERIAL": "integer",
    "SMALLINT": "smallint",
    "SMALLSERIAL": "smallint",
    "VARCHAR": "string",
    "NVARCHAR": "string",
    "CHAR": "string",
    "NCHAR": "string",
    "TEXT": "string",
    "BPCHAR": "string",
    "DOUBLE": "double",
    "FLOAT": "real",
    "BOOLEAN": "boolean",
    "DATE": "date",
    "TIMESTAMP": "timestamp",
    "TIMESTAMPTZ": "timestamptz",
}


def normalise_type(dtype: object) -> str:
    """Map a sqlglot ``DataType`` to a dialect-neutral name (``string``, ``double``, ``decimal(12,2)`` …)."""
    from sqlglot import exp

    if not isinstance(dtype, exp.DataType):
        raise TypeError(f"expected a sqlglot DataType, got {type(dtype).__name__}")
    name = str(dtype.this.name)
    if name == "DECIMAL":
        params = ",".join(p.sql() for p in dtype.expressions)
        return f"decimal({params})" if params else "decimal"
    return _TYPE_NAMES.get(name, name.lower())


def table_columns(dialect: Dialect) -> dict[str, list[tuple[str, str]]]:
    """Parse the DDL of ``dialect`` with sqlglot and return ``table -> [(column, normalised type)]``.

    Raises ``sqlglot.errors.ParseError`` if a statement does not parse in its dialect.
    """
    import sqlglot
    from sqlglot import exp

    tables: dict[str, list[tuple[str, str]]] = {}
    for statement in ddl_statements(dialect):
        tree = sqlglot.parse_one(statement, read=dialect)
        if not isinstance(tree, exp.Create) or str(tree.kind).upper() != "TABLE":
            continue
        schema = tree.this
        if not isinstance(schema, exp.Schema):
            continue
        table = schema.this.name
        tables[table] = [
            (col.name, normalise_type(col.args["kind"])) for col in schema.expressions if isinstance(col, exp.ColumnDef)
        ]
    return tables
