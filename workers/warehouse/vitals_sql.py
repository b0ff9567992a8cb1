"""Pure SQL generation for the vitals warehouse load, shared by the PostgreSQL and Redshift loaders.

The load of one batch is one transaction. The two dialects insert the clean rows differently, then share
the rest (see :func:`load_statements`)::

    Redshift (the rows come from S3 by COPY … MANIFEST; every load holds the load lock):
    LOCK load_lock                                            -- one load at a time (UNIQUE is informational)
    CREATE TEMP TABLE vs_clean / vs_quarantine / vs_pending   -- staging, same columns as the Arrow tables
    CREATE TEMP TABLE vs_clean_new AS …                       -- rows not audited, not in fact/quarantine
    INSERT INTO fact_vitals SELECT … FROM vs_clean_new        -- natural key; the first received wins

    PostgreSQL (the rows are in the loader's hands: binary COPY straight into fact_vitals):
    SELECT pg_advisory_xact_lock(<batch>)                     -- one load of a batch at a time
    CREATE TEMP TABLE vs_clean_keys / vs_quarantine / vs_pending  -- only the key columns of the clean rows
    SELECT <staged keys already in fact/quarantine>           -- skipped_keys_sql: the load's duplicates
    COPY fact_vitals FROM STDIN (binary)                      -- the other rows, sorted by the key

    both:
    CREATE TEMP TABLE vs_quarantine_new AS … ; INSERT INTO vitals_quarantine …
    DELETE FROM vitals_pending …                              -- held readings decided by this batch
    CREATE TEMP TABLE vs_pending_new AS … ; INSERT INTO vitals_pending …
    INSERT INTO load_audit …                                  -- only if the batch is not audited yet
    SELECT <staged rows this batch did not insert>            -- duplicates (to filter the processed zone)

Every write is guarded by ``NOT EXISTS (load_audit row of the batch)``, so running the whole sequence
again for an audited batch changes nothing; the final SELECT answers the same both times. The statements
are valid PostgreSQL 15 and Redshift SQL. Literals are quoted with :func:`literal`; identifiers are fixed
here, never taken from data.

Redshift specifics (checked against the Redshift documentation):
- UNIQUE/PRIMARY KEY are informational, and a Serverless workgroup runs SNAPSHOT isolation by default: two
  transactions loading the same batch would both pass the ``NOT EXISTS`` guards. Every Redshift load therefore
  starts with ``LOCK load_lock`` (:data:`LOAD_LOCK`, ACCESS EXCLUSIVE until commit) on a table nobody reads,
  so loads run one after the other (also no SERIALIZABLE conflict storms) and readers are never blocked.
  It must come first: Redshift takes the transaction's snapshot at the first SELECT, DML or CREATE/ALTER/DROP
  TABLE (Isolation levels in Amazon Redshift), not at LOCK, so the load reads what the previous one committed.
- Zone maps prune only on literal predicates: every probe of ``fact_vitals``/``vitals_quarantine``/
  ``vitals_pending`` carries literal ``measured_at`` bounds of the staged rows (``bounds``).
- ``VARCHAR(n)`` counts bytes: ``message_id`` (any string up to 128 characters) is ``VARCHAR(512)`` there.

Why PostgreSQL does not use ``INSERT … ON CONFLICT DO NOTHING RETURNING`` or the MERGE: measured on 1M staged
rows (half present) with fact_vitals' indexes, ON CONFLICT took ~8 s (a speculative-insertion lock per row),
anti-join + MERGE ~5.6 s, INSERT … SELECT ~4.4 s; the key probe (~0.9 s) + a COPY of the new rows sorted
by the key (~3.1 s: COPY batches heap inserts, and sorted rows walk each btree in order) is the fastest, and
the loader knows exactly which rows it inserted: the ones it copied (COPY is all or nothing).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import pyarrow as pa

from schemas.arrow import KEYS, PENDING, PROCESSED_VITALS, QUARANTINED_VITALS, SERIES

__all__ = [
    "CONTEXT_COLUMNS",
    "LOAD_LOCK",
    "PENDING_VITALS",
    "SERIES",
    "Dialect",
    "LoadCounts",
    "audited_sql",
    "batch_lock_sql",
    "batch_rows_sql",
    "context_sql",
    "copy_sql",
    "create_staging_sql",
    "failed_batch_sql",
    "literal",
    "load_statements",
    "pending_sql",
    "series_staging_sql",
    "skipped_keys_sql",
    "stale_pending_sources_sql",
]

Dialect = Literal["postgres", "redshift"]

PENDING_VITALS = PENDING
"""Held readings: rows of ``vitals_pending`` minus ``held_at``."""

KEY = ("device_id", "metric", "measured_at")
FACT_COLUMNS = tuple(f.name for f in PROCESSED_VITALS)
QUARANTINE_COLUMNS = tuple(f.name for f in QUARANTINED_VITALS)
PENDING_COLUMNS = tuple(f.name for f in PENDING_VITALS)
VITAL_COLUMNS = tuple(c for c in FACT_COLUMNS if c != "batch_id")
CONTEXT_COLUMNS = (*VITAL_COLUMNS, "state")

LOAD_LOCK = "LOCK load_lock"
"""Redshift: the first statement of every load transaction (vitals and batch files)."""

_LENGTHS = {
    "device_id": 64,
    "patient_id": 64,
    "metric": 32,
    "loinc_code": 16,
    "unit": 32,
    "message_id": 128,
    "batch_id": 256,
    "source_id": 256,
    "reason": 32,
}

# Redshift VARCHAR(n) is n bytes and a UTF-8 character takes up to 4: the free-text message_id gets 4 x 128
# bytes; the other columns are ASCII by their validation (CONTRACT §2 patterns, the catalogue, generated ids).
_REDSHIFT_BYTES = {**_LENGTHS, "message_id": 512}

STAGING: dict[str, pa.Schema] = {
    "vs_clean": PROCESSED_VITALS,
    "vs_quarantine": QUARANTINED_VITALS,
    "vs_pending": PENDING_VITALS,
    "vs_series": SERIES,
    "vs_clean_keys": KEYS,
}


@dataclass(frozen=True, slots=True)
class LoadCounts:
    """Sizes the audit row needs beyond what the SQL counts itself."""

    rows_in: int
    duplicates_dropped: int  # duplicates the stages removed before the load
    clean: int
    quarantined: int
    pending: int


def literal(value: str) -> str:
    """A SQL string literal (single quotes doubled; NUL and backslashes refused for Redshift safety)."""
    if "\x00" in value or "\\" in value:
        raise ValueError("literal must not contain NUL or backslash")
    return "'" + value.replace("'", "''") + "'"


def _column_type(field: pa.Field, dialect: Dialect) -> str:
    if pa.types.is_string(field.type):
        lengths = _REDSHIFT_BYTES if dialect == "redshift" else _LENGTHS
        if field.name in lengths:
            return f"VARCHAR({lengths[field.name]})"
        return "VARCHAR(65535)" if dialect == "redshift" else "TEXT"
    if pa.types.is_float64(field.type):
        return "DOUBLE PRECISION"
    if pa.types.is_timestamp(field.type):
        return "TIMESTAMPTZ"
    if pa.types.is_int64(field.type):
        return "BIGINT"
    raise TypeError(f"no warehouse type for {field.type}")


def create_staging_sql(table: str, dialect: Dialect) -> str:
    """``CREATE TEMP TABLE`` for one staging table (dropped at commit in PostgreSQL, at session end in Redshift)."""
    schema = STAGING[table]
    columns = ", ".join(f"{f.name} {_column_type(f, dialect)}{'' if f.nullable else ' NOT NULL'}" for f in schema)
    suffix = " ON COMMIT DROP" if dialect == "postgres" else ""
    return f"CREATE TEMP TABLE {table} ({columns}){suffix}"


def copy_sql(table: str, url: str, iam_role: str, *, manifest: bool) -> str:
    """Redshift ``COPY`` of Parquet objects (a manifest, or one object/prefix) into a staging table."""
    columns = ", ".join(f.name for f in STAGING[table])
    return f"COPY {table} ({columns}) FROM {literal(url)} IAM_ROLE {literal(iam_role)} FORMAT AS PARQUET" + (
        " MANIFEST" if manifest else ""
    )


def _key_match(left: str, right: str) -> str:
    return " AND ".join(f"{left}.{c} = {right}.{c}" for c in KEY)


Bounds = tuple[datetime, datetime]
"""Lowest and highest ``measured_at`` of the staged rows (Redshift: literal zone-map bounds of every probe)."""


def _timestamp(moment: datetime) -> str:
    return f"CAST({literal(moment.astimezone(UTC).isoformat(sep=' '))} AS TIMESTAMPTZ)"


def _bounded(alias: str, bounds: Bounds | None) -> str:
    """`` AND alias.measured_at BETWEEN lo AND hi`` (literals), or nothing without bounds."""
    if bounds is None:
        return ""
    return f" AND {alias}.measured_at BETWEEN {_timestamp(bounds[0])} AND {_timestamp(bounds[1])}"


def _exists(table: str, alias: str, bounds: Bounds | None, staged: str = "s") -> str:
    return f"EXISTS (SELECT 1 FROM {table} {alias} WHERE {_key_match(alias, staged)}{_bounded(alias, bounds)})"


def _not_audited(batch_id: str) -> str:
    return f"NOT EXISTS (SELECT 1 FROM load_audit a WHERE a.batch_id = {literal(batch_id)})"


def _ctas(name: str, select: str, dialect: Dialect) -> str:
    suffix = " ON COMMIT DROP" if dialect == "postgres" else ""
    return f"CREATE TEMP TABLE {name}{suffix} AS {select}"


def load_statements(
    batch_id: str,
    pipeline: str,
    counts: LoadCounts,
    dialect: Dialect,
    *,
    loaded: int | None = None,
    bounds: Bounds | None = None,
) -> list[str]:
    """The statements after staging is filled, in order; the last one returns the staged rows not inserted.

    Redshift: the clean rows are staged in ``vs_clean`` and inserted here (``loaded`` must be ``None``); the
    last statement returns every staged clean or quarantined row the batch did not insert. ``bounds``: the
    lowest and highest staged ``measured_at`` (literal bounds on every probe; ``None`` when nothing is staged).
    The caller runs :data:`LOAD_LOCK` first.
    PostgreSQL: the loader has already copied the ``loaded`` new clean rows into ``fact_vitals`` and staged
    only their keys (``vs_clean_keys``); the last statement returns the quarantined rows not inserted (the
    clean ones it skipped are the answer of :func:`skipped_keys_sql`).

    Rows of the last statement are ``(kind, device_id, metric, measured_at)``, ``kind`` ``clean`` or ``quarantine``.
    """
    guard = _not_audited(batch_id)
    fact_cols = ", ".join(FACT_COLUMNS)
    q_cols = ", ".join(QUARANTINE_COLUMNS)
    p_cols = ", ".join(PENDING_COLUMNS)
    if dialect == "postgres":
        bounds = None
    in_fact = _exists("fact_vitals", "f", bounds)
    in_quarantine = _exists("vitals_quarantine", "q", bounds)
    in_pending = _exists("vitals_pending", "p", bounds)
    b = literal(batch_id)
    clean_steps: list[str] = []
    if dialect == "redshift":
        if loaded is not None:
            raise ValueError("Redshift counts the rows its INSERT inserts")
        clean_table = "vs_clean"
        new_clean = f"SELECT {fact_cols} FROM vs_clean s WHERE {guard} AND NOT {in_fact} AND NOT {in_quarantine}"
        # The CTAS already holds exactly the new rows (under the load lock): a plain INSERT, no second anti-join.
        clean_steps = [
            _ctas("vs_clean_new", new_clean, dialect),  # pragma: no mutate (Redshift here: any dialect but postgres)
            f"INSERT INTO fact_vitals ({fact_cols}) SELECT {fact_cols} FROM vs_clean_new",
        ]
        loaded_sql = "(SELECT COUNT(*) FROM vs_clean_new)"
        last = not_inserted_sql(batch_id, bounds=bounds)
    else:
        if loaded is None:
            raise ValueError("PostgreSQL needs the number of rows the loader copied into fact_vitals")
        clean_table = "vs_clean_keys"
        loaded_sql = str(int(loaded))
        last = not_inserted_sql(batch_id, clean=None)
    statements = [
        *clean_steps,
        _ctas(
            "vs_quarantine_new",
            f"SELECT {q_cols} FROM vs_quarantine s WHERE {guard} AND NOT {in_quarantine} AND NOT {in_fact}",
            dialect,
        ),
        f"INSERT INTO vitals_quarantine ({q_cols}) SELECT {q_cols} FROM vs_quarantine_new",
        # Held readings decided by this batch: one join with the keys of both staging tables (no correlated
        # subquery, no OR of two EXISTS probing the staging once per held row).
        (
            f"DELETE FROM vitals_pending USING (SELECT {', '.join(KEY)} FROM {clean_table} UNION ALL "
            f"SELECT {', '.join(KEY)} FROM vs_quarantine) s WHERE {guard}{_bounded('vitals_pending', bounds)} "
            f"AND {_key_match('s', 'vitals_pending')}"
        ),
        _ctas(
            "vs_pending_new",
            f"SELECT {p_cols} FROM vs_pending s WHERE {guard} AND NOT {in_pending} AND NOT {in_fact} "
            f"AND NOT {in_quarantine}",
            dialect,
        ),
        f"INSERT INTO vitals_pending ({p_cols}) SELECT {p_cols} FROM vs_pending_new",
        (
            "INSERT INTO load_audit (batch_id, pipeline, rows_in, rows_loaded, rows_quarantined, rows_duplicate) "
            f"SELECT {b}, {literal(pipeline)}, {int(counts.rows_in)}, c.loaded, c.quarantined, "
            f"{int(counts.duplicates_dropped)} + ({int(counts.clean)} - c.loaded) "
            f"+ ({int(counts.quarantined)} - c.quarantined) + ({int(counts.pending)} - c.pending) "
            f"FROM (SELECT {loaded_sql} AS loaded, "
            "(SELECT COUNT(*) FROM vs_quarantine_new) AS quarantined, "
            "(SELECT COUNT(*) FROM vs_pending_new) AS pending) c "
            f"WHERE {guard}"
        ),
        last,
    ]
    return statements


def batch_lock_sql(batch_id: str) -> str:
    """PostgreSQL: a transaction-scoped advisory lock on the batch, taken before its audit row is checked.

    Two owners loading the same batch concurrently then run one after the other: the second one sees the
    first one's audit row and skips, instead of racing it.
    """
    return f"SELECT pg_advisory_xact_lock(hashtextextended({literal(batch_id)}, 0))"


def skipped_keys_sql() -> str:
    """PostgreSQL: keys in ``vs_clean_keys`` already in ``fact_vitals`` or ``vitals_quarantine`` (once each).

    Those rows are duplicates (first received wins; a late copy of a quarantined reading stays out); the
    loader copies the others into ``fact_vitals``. Two semi-joins, not an OR of EXISTS (which cannot be one).
    """
    in_fact = f"EXISTS (SELECT 1 FROM fact_vitals f WHERE {_key_match('f', 's')})"
    in_quarantine = f"EXISTS (SELECT 1 FROM vitals_quarantine q WHERE {_key_match('q', 's')})"
    keys = "s.device_id, s.metric, s.measured_at"
    return (
        f"SELECT {keys} FROM vs_clean_keys s WHERE {in_fact} "
        f"UNION ALL SELECT {keys} FROM vs_clean_keys s WHERE {in_quarantine} AND NOT {in_fact}"
    )


def not_inserted_sql(batch_id: str, clean: str | None = "vs_clean", *, bounds: Bounds | None = None) -> str:
    """Staged clean/quarantined rows whose key the batch did not insert (duplicates found by the load).

    ``clean``: the staging table holding the clean rows' keys, or ``None`` for the quarantined rows only;
    ``bounds``: literal ``measured_at`` bounds of the probes (Redshift).
    """
    b = literal(batch_id)
    quarantine = (
        "SELECT 'quarantine' AS kind, s.device_id, s.metric, s.measured_at FROM vs_quarantine s WHERE NOT EXISTS "
        f"(SELECT 1 FROM vitals_quarantine q WHERE {_key_match('q', 's')}{_bounded('q', bounds)} AND q.batch_id = {b})"
    )
    if clean is None:
        return quarantine
    return (
        f"SELECT 'clean' AS kind, s.device_id, s.metric, s.measured_at FROM {clean} s WHERE NOT EXISTS "
        f"(SELECT 1 FROM fact_vitals f WHERE {_key_match('f', 's')}{_bounded('f', bounds)} AND f.batch_id = {b}) "
        f"UNION ALL {quarantine}"
    )


def audited_sql(batch_id: str) -> str:
    """One row ``(rows_in, rows_loaded, rows_quarantined, rows_duplicate)`` if the batch is audited."""
    return (
        "SELECT rows_in, rows_loaded, rows_quarantined, rows_duplicate FROM load_audit "
        f"WHERE batch_id = {literal(batch_id)}"
    )


def batch_rows_sql(table: Literal["fact_vitals", "vitals_quarantine"], batch_id: str) -> str:
    """The rows a batch inserted into ``table``, in the Arrow column order of the processed/quarantine zone."""
    columns = FACT_COLUMNS if table == "fact_vitals" else QUARANTINE_COLUMNS
    return (
        f"SELECT {', '.join(columns)} FROM {table} WHERE batch_id = {literal(batch_id)} "
        "ORDER BY device_id, metric, measured_at"
    )


def failed_batch_sql(pipeline: str, source_key: str, reason: str, detail: str) -> str:
    """A ``batch_quarantine`` row for a whole batch that could not be processed (once per source_key/reason)."""
    p, k, r = literal(pipeline), literal(source_key), literal(reason)
    return (
        "INSERT INTO batch_quarantine (pipeline, source_key, line_number, reason, detail) "
        f"SELECT {p}, {k}, NULL, {r}, {literal(detail)} WHERE NOT EXISTS (SELECT 1 FROM batch_quarantine b "
        f"WHERE b.pipeline = {p} AND b.source_key = {k} AND b.reason = {r} AND b.line_number IS NULL)"
    )


def stale_pending_sources_sql(received_before_us: int) -> str:
    """Sources with a held reading received before ``received_before_us`` (UTC epoch µs), ``source_id`` only."""
    moment = datetime.fromtimestamp(received_before_us / 1_000_000, tz=UTC).isoformat(sep=" ")
    return f"SELECT DISTINCT source_id FROM vitals_pending WHERE received_at < CAST({literal(moment)} AS TIMESTAMPTZ)"


def pending_sql(source_id: str) -> str:
    """Held readings of one source, ``PENDING_COLUMNS``."""
    return f"SELECT {', '.join(PENDING_COLUMNS)} FROM vitals_pending WHERE source_id = {literal(source_id)}"


def series_staging_sql(dialect: Dialect) -> str:
    return create_staging_sql("vs_series", dialect)


def context_sql(dialect: Dialect, source_id: str, per_series: int, since_floor: datetime | None = None) -> str:
    """Recent warehouse rows of the series in ``vs_series``: ``CONTEXT_COLUMNS``.

    ``accepted``/``quarantined``: the ``per_series`` newest rows of each series from fact_vitals /
    vitals_quarantine with ``measured_at >= since`` (PostgreSQL: an index-backed LATERAL LIMIT; Redshift:
    ROW_NUMBER over the range, with the literal ``since_floor`` = the lowest ``since`` so that zone maps
    prune). ``pending``: every held row of these series or of ``source_id`` (``""``: of the series only);
    Redshift gets a UNION of a filter and a join (an ``OR`` with a correlated ``EXISTS`` is a pattern it
    refuses).
    """
    k = int(per_series)
    cols = ", ".join(f"x.{c}" for c in VITAL_COLUMNS)
    parts = []
    floor = f" AND t.measured_at >= {_timestamp(since_floor)}" if since_floor is not None else ""
    for table, state in (("fact_vitals", "accepted"), ("vitals_quarantine", "quarantined")):
        if dialect == "postgres":
            parts.append(
                f"SELECT {cols}, '{state}' AS state FROM vs_series s CROSS JOIN LATERAL (SELECT * FROM {table} t "
                "WHERE t.device_id = s.device_id AND t.metric = s.metric AND t.measured_at >= s.since "
                f"ORDER BY t.measured_at DESC LIMIT {k}) x"
            )
        else:
            ranked = ", ".join(f"t.{c}" for c in VITAL_COLUMNS)
            parts.append(
                f"SELECT {cols}, '{state}' AS state FROM (SELECT {ranked}, ROW_NUMBER() OVER "
                "(PARTITION BY t.device_id, t.metric ORDER BY t.measured_at DESC) AS rn "
                f"FROM {table} t JOIN vs_series s ON t.device_id = s.device_id AND t.metric = s.metric "
                f"WHERE t.measured_at >= s.since{floor}) x WHERE x.rn <= {k}"
            )
    if dialect == "postgres":
        parts.append(
            f"SELECT {cols}, 'pending' AS state FROM vitals_pending x WHERE x.source_id = {literal(source_id)} "
            "OR EXISTS (SELECT 1 FROM vs_series s WHERE s.device_id = x.device_id AND s.metric = x.metric)"
        )
    else:
        by_series = (
            f"SELECT {cols} FROM vitals_pending x JOIN (SELECT DISTINCT device_id, metric FROM vs_series) s "
            "ON s.device_id = x.device_id AND s.metric = x.metric"
        )
        by_source = f"SELECT {cols} FROM vitals_pending x WHERE x.source_id = {literal(source_id)} UNION "
        held = f"{by_source if source_id else ''}{by_series}"
        plain = ", ".join(f"p.{c}" for c in VITAL_COLUMNS)
        parts.append(f"SELECT {plain}, 'pending' AS state FROM ({held}) p")
    return " UNION ALL ".join(parts)
