"""SQL of the X12 and DMS CDC semantics on PostgreSQL (CONTRACT §8), run after the staging COPY of a feed table.

Contract (same semantics as :mod:`workers.warehouse.redshift.feed_sql`):
- ``remittances`` (835): the newest adjudication of each (claim_id, line_number) by ``remit_order`` is kept in
  ``claim_adjudications`` (an older remittance delivered later changes nothing), then applied to the
  ``fact_claims`` lines of the claims it names (:func:`apply_adjudications`). A remittance for a claim not loaded
  yet waits there and is applied when the claim's 837 arrives: the claims upsert is followed by the same apply.
  A line-0 adjudication (a CLP without service lines) applies to every line of the claim without its own.
- ``patient_changes`` / ``encounter_changes`` (DMS): per key the change with the greatest (``dms_commit_ts``,
  ``change_seq``) of the batch is applied only if it is newer than ``cdc_key_state.last_commit_ts`` of the key
  (newest change wins, so a late or re-delivered file never resurrects a row); ``cdc_key_state`` is updated in
  the same transaction. Patients: every change is also kept in ``cdc_patient_log`` and the patient's
  ``dim_patient`` versions are rebuilt from it in commit-time order (:func:`history`): the current version is
  the newest change's (none after a delete), and the history is the same whatever order files arrive in.
  A patient fed by CDC gets its ``dim_patient`` rows from the log only (rows another feed wrote for the same
  ``patient_id`` are replaced; their ``patient_key`` changes on every rebuild). Encounters: ``D``
  deletes the ``fact_encounters`` row, anything else upserts it. ``load_audit_changes`` gets the batch's rows
  inserted / updated / deleted / ignored per source table (the batch id comes from the transaction-local
  setting ``vitalstream.batch_id`` the loader sets).
"""

from __future__ import annotations

from workers.warehouse.adt_sql import adt_statements
from workers.warehouse.file_tables import ADT_EVENTS, ENCOUNTER_CHANGES, PATIENT_CHANGES, REMITTANCES, TableSpec

__all__ = ["apply_adjudications", "feed_statements"]

_ADJUDICATED = ("status", "allowed_amount", "paid_amount", "denial_reason")


def _stage(spec: TableSpec) -> str:
    return f"stage_{spec.table}"


def apply_adjudications(claims_stage: str) -> tuple[str, str, str]:
    """Set the adjudicated columns of ``fact_claims`` lines whose claim_id is in ``claims_stage`` from
    ``claim_adjudications`` (the line's own row, else the claim's line-0 row)."""
    cols = ", ".join(f"a.{c}" for c in _ADJUDICATED)
    pick = (
        "CREATE TEMP TABLE claims_apply ON COMMIT DROP AS SELECT claim_id, line_number, "
        f"{', '.join(_ADJUDICATED)} FROM (SELECT f.claim_id, f.line_number, {cols}, ROW_NUMBER() OVER ("
        "PARTITION BY f.claim_id, f.line_number ORDER BY a.line_number DESC) AS rn FROM fact_claims AS f "
        "JOIN claim_adjudications AS a ON a.claim_id = f.claim_id AND (a.line_number = f.line_number "
        f"OR a.line_number = 0) WHERE f.claim_id IN (SELECT claim_id FROM {claims_stage})) AS x WHERE x.rn = 1"
    )
    sets = ", ".join(f"{c} = s.{c}" for c in _ADJUDICATED)
    update = (
        f"UPDATE fact_claims AS d SET {sets} FROM claims_apply AS s "
        "WHERE d.claim_id = s.claim_id AND d.line_number = s.line_number"
    )
    return "DROP TABLE IF EXISTS claims_apply", pick, update


def _remittances() -> tuple[str, ...]:
    cols = ", ".join(c for c, _ in REMITTANCES.columns)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in (*_ADJUDICATED, "remit_order"))
    keep = (
        f"INSERT INTO claim_adjudications ({cols}) SELECT DISTINCT ON (claim_id, line_number) {cols} "
        f"FROM {_stage(REMITTANCES)} ORDER BY claim_id, line_number, remit_order DESC "
        f"ON CONFLICT (claim_id, line_number) DO UPDATE SET {updates} "
        "WHERE claim_adjudications.remit_order < EXCLUDED.remit_order"
    )
    return (keep, *apply_adjudications(_stage(REMITTANCES)))


def _newest(spec: TableSpec, source_table: str) -> tuple[str, str]:
    """The batch's newest change per key, kept only when newer than the key's last applied change."""
    key = spec.key[0]
    cols = ", ".join(c for c, _ in spec.columns)
    return (
        "DROP TABLE IF EXISTS cdc_new",
        f"CREATE TEMP TABLE cdc_new ON COMMIT DROP AS SELECT {cols} FROM (SELECT {cols}, ROW_NUMBER() OVER "
        f"(PARTITION BY {key} ORDER BY dms_commit_ts DESC, change_seq DESC) AS rn FROM {_stage(spec)}) AS x "
        f"WHERE x.rn = 1 AND NOT EXISTS (SELECT 1 FROM cdc_key_state AS k WHERE k.source_table = '{source_table}' "
        f"AND k.key_value = x.{key} AND k.last_commit_ts >= x.dms_commit_ts)",
    )


def _counts(spec: TableSpec, source_table: str, target: str, match: str) -> str:
    """``load_audit_changes`` of the batch (its id from the transaction setting ``vitalstream.batch_id``),
    computed from ``cdc_new`` before it is applied; ``target``/``match`` find the row a change hits."""
    key = spec.key[0]
    return (
        "INSERT INTO load_audit_changes (batch_id, source_table, rows_inserted, rows_updated, rows_deleted, "
        f"rows_ignored) SELECT current_setting('vitalstream.batch_id'), '{source_table}', "
        f"COALESCE(SUM(CASE WHEN n.op <> 'D' AND t.{key} IS NULL THEN 1 ELSE 0 END), 0), "
        f"COALESCE(SUM(CASE WHEN n.op <> 'D' AND t.{key} IS NOT NULL THEN 1 ELSE 0 END), 0), "
        f"COALESCE(SUM(CASE WHEN n.op = 'D' AND t.{key} IS NOT NULL THEN 1 ELSE 0 END), 0), "
        f"(SELECT COUNT(*) FROM {_stage(spec)}) - COUNT(n.{key}) "
        f"FROM cdc_new AS n LEFT JOIN {target} AS t ON t.{key} = n.{key}{match} "
        "ON CONFLICT (batch_id, source_table) DO UPDATE SET "
        "rows_inserted = load_audit_changes.rows_inserted + EXCLUDED.rows_inserted, "
        "rows_updated = load_audit_changes.rows_updated + EXCLUDED.rows_updated, "
        "rows_deleted = load_audit_changes.rows_deleted + EXCLUDED.rows_deleted, "
        "rows_ignored = load_audit_changes.rows_ignored + EXCLUDED.rows_ignored"
    )


def _remember(spec: TableSpec, source_table: str) -> str:
    return (
        "INSERT INTO cdc_key_state (source_table, key_value, last_commit_ts, last_op) "
        f"SELECT '{source_table}', {spec.key[0]}, dms_commit_ts, op FROM cdc_new "
        "ON CONFLICT (source_table, key_value) DO UPDATE SET last_commit_ts = EXCLUDED.last_commit_ts, "
        "last_op = EXCLUDED.last_op"
    )


_ATTRS = ("birth_date", "sex", "postal_code")


def history(key_source: str, log_new: str) -> tuple[str, ...]:
    """Rebuild the ``dim_patient`` versions of the patients in ``key_source`` from ``cdc_patient_log``: a
    version starts at a change whose attributes differ from the previous change (or follow a delete) and
    ends at the next version's start or at a delete; the last one, if not deleted, is current.
    ``log_new`` holds the batch's changes, added to the log first (one per patient and commit time)."""
    names = ("patient_id", "dms_commit_ts", "op", *_ATTRS)
    cols = ", ".join(names)
    differs = " OR ".join(f"NOT ({c} = p_{c} OR ({c} IS NULL AND p_{c} IS NULL))" for c in _ATTRS)
    lags = ", ".join(
        f"LAG({c}) OVER (PARTITION BY patient_id ORDER BY dms_commit_ts) AS p_{c}" for c in ("op", *_ATTRS)
    )
    return (
        f"INSERT INTO cdc_patient_log ({cols}) SELECT {', '.join(f'n.{c}' for c in names)} "
        f"FROM {log_new} AS n LEFT JOIN cdc_patient_log AS l ON l.patient_id = n.patient_id "
        "AND l.dms_commit_ts = n.dms_commit_ts WHERE l.patient_id IS NULL",
        f"DELETE FROM dim_patient WHERE patient_id IN (SELECT patient_id FROM {key_source})",
        "DROP TABLE IF EXISTS cdc_bounds",
        f"CREATE TEMP TABLE cdc_bounds ON COMMIT DROP AS SELECT {cols} FROM (SELECT {cols}, {lags} "
        f"FROM cdc_patient_log WHERE patient_id IN (SELECT patient_id FROM {key_source})) AS x "
        f"WHERE op = 'D' OR p_op IS NULL OR p_op = 'D' OR {differs}",
        "INSERT INTO dim_patient (patient_id, birth_date, sex, postal_code, valid_from, valid_to, is_current) "
        "SELECT patient_id, birth_date, sex, postal_code, dms_commit_ts, next_ts, "
        "CASE WHEN next_ts IS NULL THEN true ELSE false END FROM (SELECT patient_id, op, birth_date, sex, "
        "postal_code, dms_commit_ts, LEAD(dms_commit_ts) OVER (PARTITION BY patient_id ORDER BY dms_commit_ts) "
        "AS next_ts FROM cdc_bounds) AS y WHERE op <> 'D' ORDER BY patient_id, dms_commit_ts",
    )


def _patient_changes() -> tuple[str, ...]:
    cols = ", ".join(c for c, _ in PATIENT_CHANGES.columns)
    log_new = (
        "DROP TABLE IF EXISTS cdc_log_new",
        f"CREATE TEMP TABLE cdc_log_new ON COMMIT DROP AS SELECT {cols} FROM (SELECT {cols}, ROW_NUMBER() OVER "
        f"(PARTITION BY patient_id, dms_commit_ts ORDER BY change_seq DESC) AS rn FROM {_stage(PATIENT_CHANGES)}) "
        "AS x WHERE x.rn = 1",
    )
    lock = "SELECT pg_advisory_xact_lock(hashtextextended('vitalstream:dim_patient', 0))"
    counts = _counts(PATIENT_CHANGES, "patients", "dim_patient", " AND t.is_current")
    return (
        lock,
        *_newest(PATIENT_CHANGES, "patients"),
        counts,
        *log_new,
        *history("cdc_log_new", "cdc_log_new"),
        _remember(PATIENT_CHANGES, "patients"),
    )


def _encounter_changes() -> tuple[str, ...]:
    cols = [c for c, _ in ENCOUNTER_CHANGES.columns if c not in ("op", "dms_commit_ts", "change_seq")]
    delete = "DELETE FROM fact_encounters WHERE encounter_id IN (SELECT encounter_id FROM cdc_new WHERE op = 'D')"
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in cols if c != "encounter_id")
    upsert = (
        f"INSERT INTO fact_encounters ({', '.join(cols)}) SELECT {', '.join(cols)} FROM cdc_new WHERE op <> 'D' "
        f"ORDER BY encounter_id ON CONFLICT (encounter_id) DO UPDATE SET {updates}"
    )
    counts = _counts(ENCOUNTER_CHANGES, "encounters", "fact_encounters", "")
    return (
        *_newest(ENCOUNTER_CHANGES, "encounters"),
        counts,
        delete,
        upsert,
        _remember(ENCOUNTER_CHANGES, "encounters"),
    )


def feed_statements(spec: TableSpec) -> tuple[str, ...] | None:
    """What to run after the staging COPY of a feed table (no parameters), or None for other tables."""
    if spec.lake_table == REMITTANCES.lake_table:
        return _remittances()
    if spec.lake_table == PATIENT_CHANGES.lake_table:
        return _patient_changes()
    if spec.lake_table == ENCOUNTER_CHANGES.lake_table:
        return _encounter_changes()
    if spec.lake_table == ADT_EVENTS.lake_table:
        lock = "SELECT pg_advisory_xact_lock(hashtextextended('vitalstream:dim_patient', 0))"
        return (lock, *adt_statements("postgres", _stage(ADT_EVENTS), "TRUE"))
    return None
