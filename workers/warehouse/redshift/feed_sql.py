"""SQL of the X12 and DMS CDC semantics on Redshift (Data API), after the staging COPY of a feed table.

Same semantics as :mod:`workers.warehouse.postgres.feed_sql` (read its contract), in Redshift's dialect: MERGE
from temporary tables instead of ``ON CONFLICT``, ``ROW_NUMBER`` instead of ``DISTINCT ON``, no correlated
subquery with an inequality (a LEFT JOIN to the key state instead). Every write is guarded by the batch's
``load_audit`` row (``guard``), so an audited batch re-run changes nothing. Staging tables carry ``file_index``
and ``row_index`` (:mod:`workers.warehouse.redshift.file_sql`): between two files of one batch with the same
commit time the earlier file wins, as on PostgreSQL, where files are applied one after the other.
"""

from __future__ import annotations

from workers.warehouse.adt_sql import adt_statements
from workers.warehouse.file_tables import ADT_EVENTS, ENCOUNTER_CHANGES, PATIENT_CHANGES, REMITTANCES, TableSpec
from workers.warehouse.file_types import CLAIM_STATUSES
from workers.warehouse.vitals_sql import literal

__all__ = ["apply_adjudications", "feed_statements"]

_ADJUDICATED = ("status", "allowed_amount", "paid_amount", "denial_reason")
_CHANGE = ("op", "dms_commit_ts", "change_seq")


def _stage(spec: TableSpec) -> str:
    return f"rs_{spec.table}"


def apply_adjudications(claims_stage: str, name: str, guard: str) -> tuple[str, str]:
    """Set the adjudicated columns of the ``fact_claims`` lines of the claims in ``claims_stage`` from
    ``claim_adjudications`` (the line's own row, else the claim's line-0 row); ``name`` is the temp table."""
    cols = ", ".join(f"a.{c}" for c in _ADJUDICATED)
    pick = (
        f"CREATE TEMP TABLE {name} AS SELECT claim_id, line_number, {', '.join(_ADJUDICATED)} FROM ("
        f"SELECT f.claim_id, f.line_number, {cols}, ROW_NUMBER() OVER (PARTITION BY f.claim_id, f.line_number "
        "ORDER BY a.line_number DESC) AS rn FROM fact_claims AS f JOIN claim_adjudications AS a "
        "ON a.claim_id = f.claim_id AND (a.line_number = f.line_number OR a.line_number = 0) "
        f"WHERE f.claim_id IN (SELECT claim_id FROM {claims_stage}) AND {guard}) AS x WHERE x.rn = 1"
    )
    sets = ", ".join(f"{c} = s.{c}" for c in _ADJUDICATED)
    update = (
        f"UPDATE fact_claims SET {sets} FROM {name} AS s "
        f"WHERE fact_claims.claim_id = s.claim_id AND fact_claims.line_number = s.line_number AND {guard}"
    )
    return pick, update


def _merge(target: str, source: str, key: tuple[str, ...], columns: tuple[str, ...]) -> str:
    on = " AND ".join(f"{target}.{k} = s.{k}" for k in key)
    updates = ", ".join(f"{c} = s.{c}" for c in columns if c not in key)
    return (
        f"MERGE INTO {target} USING {source} AS s ON {on} WHEN MATCHED THEN UPDATE SET {updates} "
        f"WHEN NOT MATCHED THEN INSERT ({', '.join(columns)}) VALUES ({', '.join(f's.{c}' for c in columns)})"
    )


def _remittances(guard: str) -> list[str]:
    cols = tuple(c for c, _ in REMITTANCES.columns)
    stage = _stage(REMITTANCES)
    statuses = ", ".join(literal(s) for s in CLAIM_STATUSES)
    newest = (
        f"CREATE TEMP TABLE {stage}_new AS SELECT {', '.join(f'x.{c}' for c in cols)} FROM (SELECT "
        f"{', '.join(f's.{c}' for c in cols)}, ROW_NUMBER() OVER (PARTITION BY s.claim_id, s.line_number "
        f"ORDER BY s.remit_order DESC, s.file_index DESC, s.row_index DESC) AS rn FROM {stage} AS s "
        f"WHERE s.status IN ({statuses}) AND {guard}) AS x LEFT JOIN claim_adjudications AS t "
        "ON t.claim_id = x.claim_id AND t.line_number = x.line_number "
        "WHERE x.rn = 1 AND (t.remit_order IS NULL OR t.remit_order < x.remit_order)"
    )
    merge = _merge("claim_adjudications", f"{stage}_new", REMITTANCES.key, cols)
    return [newest, merge, *apply_adjudications(stage, f"{stage}_apply", guard)]


def _newest(spec: TableSpec, source_table: str, guard: str) -> list[str]:
    """``<stage>_new``: the batch's newest change per key, newer than the key's last applied change; and
    ``<stage>_state``: the key state rows it writes."""
    key = spec.key[0]
    stage = _stage(spec)
    cols = tuple(c for c, _ in spec.columns)
    newest = (
        f"CREATE TEMP TABLE {stage}_new AS SELECT {', '.join(f'x.{c}' for c in cols)} FROM (SELECT "
        f"{', '.join(f's.{c}' for c in cols)}, ROW_NUMBER() OVER (PARTITION BY s.{key} "
        f"ORDER BY s.dms_commit_ts DESC, s.file_index ASC, s.change_seq DESC) AS rn FROM {stage} AS s "
        f"WHERE {guard}) AS x LEFT JOIN cdc_key_state AS k ON k.source_table = {literal(source_table)} "
        f"AND k.key_value = x.{key} WHERE x.rn = 1 AND (k.last_commit_ts IS NULL OR k.last_commit_ts < x.dms_commit_ts)"
    )
    state = (
        f"CREATE TEMP TABLE {stage}_state AS SELECT CAST({literal(source_table)} AS VARCHAR(32)) AS source_table, "
        f"{key} AS key_value, dms_commit_ts AS last_commit_ts, op AS last_op FROM {stage}_new"
    )
    return [newest, state]


def _counts(spec: TableSpec, source_table: str, batch_id: str, guard: str, target: str, match: str) -> str:
    """The batch's ``load_audit_changes`` row of ``source_table``, from ``<stage>_new`` before it is applied."""
    key = spec.key[0]
    stage = _stage(spec)
    return (
        "INSERT INTO load_audit_changes (batch_id, source_table, rows_inserted, rows_updated, rows_deleted, "
        f"rows_ignored) SELECT {literal(batch_id)}, {literal(source_table)}, "
        f"COALESCE(SUM(CASE WHEN n.op <> 'D' AND t.{key} IS NULL THEN 1 ELSE 0 END), 0), "
        f"COALESCE(SUM(CASE WHEN n.op <> 'D' AND t.{key} IS NOT NULL THEN 1 ELSE 0 END), 0), "
        f"COALESCE(SUM(CASE WHEN n.op = 'D' AND t.{key} IS NOT NULL THEN 1 ELSE 0 END), 0), "
        f"(SELECT COUNT(*) FROM {stage}) - COUNT(n.{key}) "
        f"FROM {stage}_new AS n LEFT JOIN {target} AS t ON t.{key} = n.{key}{match} WHERE {guard}"
    )


def _remember(spec: TableSpec) -> str:
    return _merge("cdc_key_state", f"{_stage(spec)}_state", ("source_table", "key_value"),
                  ("source_table", "key_value", "last_commit_ts", "last_op"))  # fmt: skip


_ATTRS = ("birth_date", "sex", "postal_code")


def _history(stage: str, guard: str) -> list[str]:
    """Rebuild the CDC patients' ``dim_patient`` versions from ``cdc_patient_log`` (postgres ``feed_sql.history``)."""
    cols = ("patient_id", "dms_commit_ts", "op", *_ATTRS)
    listed = ", ".join(cols)
    differs = " OR ".join(f"NOT ({c} = p_{c} OR ({c} IS NULL AND p_{c} IS NULL))" for c in _ATTRS)
    lags = ", ".join(
        f"LAG({c}) OVER (PARTITION BY patient_id ORDER BY dms_commit_ts) AS p_{c}" for c in ("op", *_ATTRS)
    )
    return [
        f"CREATE TEMP TABLE {stage}_log AS SELECT {', '.join(f'x.{c}' for c in cols)} FROM (SELECT "
        f"{', '.join(f's.{c}' for c in cols)}, ROW_NUMBER() OVER (PARTITION BY s.patient_id, s.dms_commit_ts "
        f"ORDER BY s.file_index ASC, s.change_seq DESC) AS rn FROM {stage} AS s WHERE {guard}) AS x "
        "WHERE x.rn = 1",
        f"INSERT INTO cdc_patient_log ({listed}) SELECT {', '.join(f'n.{c}' for c in cols)} FROM {stage}_log AS n "
        "LEFT JOIN cdc_patient_log AS l ON l.patient_id = n.patient_id AND l.dms_commit_ts = n.dms_commit_ts "
        f"WHERE l.patient_id IS NULL AND {guard}",
        f"DELETE FROM dim_patient WHERE patient_id IN (SELECT patient_id FROM {stage}_log) AND {guard}",
        f"CREATE TEMP TABLE {stage}_bounds AS SELECT {listed} FROM (SELECT {listed}, {lags} FROM cdc_patient_log "
        f"WHERE patient_id IN (SELECT patient_id FROM {stage}_log)) AS x "
        f"WHERE (op = 'D' OR p_op IS NULL OR p_op = 'D' OR {differs}) AND {guard}",
        "INSERT INTO dim_patient (patient_id, birth_date, sex, postal_code, valid_from, valid_to, is_current) "
        "SELECT patient_id, birth_date, sex, postal_code, dms_commit_ts, next_ts, "
        "CASE WHEN next_ts IS NULL THEN true ELSE false END FROM (SELECT patient_id, op, birth_date, sex, "
        "postal_code, dms_commit_ts, LEAD(dms_commit_ts) OVER (PARTITION BY patient_id ORDER BY dms_commit_ts) "
        f"AS next_ts FROM {stage}_bounds) AS y WHERE op <> 'D' AND {guard}",
    ]


def _patient_changes(guard: str, batch_id: str) -> list[str]:
    counts = _counts(PATIENT_CHANGES, "patients", batch_id, guard, "dim_patient", " AND t.is_current")
    newest = _newest(PATIENT_CHANGES, "patients", guard)
    history = _history(_stage(PATIENT_CHANGES), guard)
    return [*newest, counts, *history, _remember(PATIENT_CHANGES)]


def _encounter_changes(guard: str, batch_id: str) -> list[str]:
    stage = _stage(ENCOUNTER_CHANGES)
    cols = tuple(c for c, _ in ENCOUNTER_CHANGES.columns if c not in _CHANGE)
    delete = (
        f"DELETE FROM fact_encounters WHERE encounter_id IN (SELECT encounter_id FROM {stage}_new WHERE op = 'D') "
        f"AND {guard}"
    )
    upserts = f"CREATE TEMP TABLE {stage}_upsert AS SELECT {', '.join(cols)} FROM {stage}_new WHERE op <> 'D'"
    merge = _merge("fact_encounters", f"{stage}_upsert", ("encounter_id",), cols)
    counts = _counts(ENCOUNTER_CHANGES, "encounters", batch_id, guard, "fact_encounters", "")
    newest = _newest(ENCOUNTER_CHANGES, "encounters", guard)
    return [*newest, counts, delete, upserts, merge, _remember(ENCOUNTER_CHANGES)]


def feed_statements(spec: TableSpec, guard: str, batch_id: str) -> list[str] | None:
    """What to run after the staging COPY of a feed table, or None for other tables. ``guard`` is the SQL
    condition that batch ``batch_id`` is not audited yet."""
    if spec.lake_table == REMITTANCES.lake_table:
        return _remittances(guard)
    if spec.lake_table == PATIENT_CHANGES.lake_table:
        return _patient_changes(guard, batch_id)
    if spec.lake_table == ENCOUNTER_CHANGES.lake_table:
        return _encounter_changes(guard, batch_id)
    if spec.lake_table == ADT_EVENTS.lake_table:
        return adt_statements("redshift", _stage(ADT_EVENTS), guard)  # pragma: no mutate (not "postgres": Redshift)
    return None
