"""SQL of the HL7 v2 ADT semantics (CONTRACT §8), for both dialects, run after the staging COPY of ``adt_events``.

Event-sourced, so that the result depends on the set of messages received, never on their arrival order:

1. ``adt_event_log`` keeps every message once (by MSH-10): a re-delivered message changes nothing.
2. The ``dim_patient`` versions of every patient the batch touches (``patient_id`` and, for A40,
   ``prior_patient_id``) are rebuilt from the log in MSH-7 order (then MSH-10): a version starts at a message
   whose PID attributes differ from the previous message's and ends at the next version's start; an A40 ends
   the merged patient's last version at the merge (no current version is left for it).
3. The ``fact_encounters`` rows of every visit of those patients are rebuilt from the log: a visit exists when
   its latest A01/A04/A11 is not an A11 (cancel admit); ``discharge_at`` is PV1-45 (else MSH-7) of its latest
   A03 unless an A13 (cancel discharge) is later; ``admit_at`` the latest PV1-44 (else the admitting message's
   MSH-7); ``encounter_type``, ``provider_id``, ``primary_dx`` the latest values sent (A01-A04, A08); the
   patient the latest message's, moved to the surviving patient when an A40 merged it.

HL7 owns the history of the patients and visits it carries: rows another feed wrote for the same
``patient_id`` / ``encounter_id`` are replaced on rebuild (and ``patient_key`` changes).
``guard`` (Redshift) is the condition that the batch is not audited yet; PostgreSQL passes ``TRUE``.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["adt_statements"]

Dialect = Literal["postgres", "redshift"]
_LOG_COLUMNS = (
    "message_control_id", "message_ts", "event", "patient_id", "prior_patient_id", "encounter_id", "encounter_type",
    "provider_id", "admit_at", "discharge_at", "primary_dx", "birth_date", "sex", "postal_code",
)  # fmt: skip
_ATTRS = ("birth_date", "sex", "postal_code")
_ORDER = "message_ts DESC, message_control_id DESC"


def _temp(dialect: Dialect, name: str, query: str) -> list[str]:
    if dialect == "postgres":
        return [f"DROP TABLE IF EXISTS {name}", f"CREATE TEMP TABLE {name} ON COMMIT DROP AS {query}"]
    return [f"CREATE TEMP TABLE {name} AS {query}"]


def _latest(column: str, events: str, name: str) -> str:
    """Derived table ``name(encounter_id, value)``: the latest non-null ``column`` per visit among ``events``."""
    return (
        f"(SELECT encounter_id, value FROM (SELECT encounter_id, {column} AS value, ROW_NUMBER() OVER "
        f"(PARTITION BY encounter_id ORDER BY {_ORDER}) AS rn FROM adt_visit_events WHERE {column} IS NOT NULL "
        f"AND event IN ({events})) AS q WHERE q.rn = 1) AS {name}"
    )


def adt_statements(dialect: Dialect, stage: str, guard: str) -> list[str]:
    """Every statement after the staging COPY into ``stage`` (columns of ``schemas.feeds.ADT_EVENTS``)."""
    cols = ", ".join(_LOG_COLUMNS)
    out = _temp(
        dialect,
        "adt_new",
        f"SELECT {', '.join(f'x.{c}' for c in _LOG_COLUMNS)} FROM (SELECT {', '.join(f's.{c}' for c in _LOG_COLUMNS)}, "
        f"ROW_NUMBER() OVER (PARTITION BY s.message_control_id ORDER BY s.message_ts DESC, s.event DESC) AS rn "
        f"FROM {stage} AS s WHERE {guard}) AS x LEFT JOIN adt_event_log AS l "
        "ON l.message_control_id = x.message_control_id WHERE x.rn = 1 AND l.message_control_id IS NULL",
    )
    out.append(f"INSERT INTO adt_event_log ({cols}) SELECT {cols} FROM adt_new WHERE {guard}")
    out += _temp(
        dialect,
        "adt_patients",
        "SELECT patient_id FROM adt_new UNION SELECT prior_patient_id FROM adt_new WHERE prior_patient_id IS NOT NULL",
    )
    # dim_patient: PID attributes of every message, plus an end at each A40 for the merged patient.
    out.append(f"DELETE FROM dim_patient WHERE patient_id IN (SELECT patient_id FROM adt_patients) AND {guard}")
    changes = (
        "SELECT patient_id, message_ts, message_control_id, 'U' AS op, birth_date, sex, postal_code "
        "FROM adt_event_log WHERE patient_id IN (SELECT patient_id FROM adt_patients) "
        "UNION ALL SELECT prior_patient_id, message_ts, message_control_id, 'D', NULL, NULL, NULL "
        "FROM adt_event_log WHERE event = 'A40' AND prior_patient_id IN (SELECT patient_id FROM adt_patients)"
    )
    window = "PARTITION BY patient_id ORDER BY message_ts, message_control_id"
    lags = ", ".join(f"LAG({c}) OVER ({window}) AS p_{c}" for c in ("op", *_ATTRS))
    differs = " OR ".join(f"NOT ({c} = p_{c} OR ({c} IS NULL AND p_{c} IS NULL))" for c in _ATTRS)
    listed = "patient_id, message_ts, message_control_id, op, birth_date, sex, postal_code"
    out += _temp(
        dialect,
        "adt_bounds",
        f"SELECT {listed} FROM (SELECT {listed}, {lags} FROM ({changes}) AS c) AS x "
        f"WHERE op = 'D' OR p_op IS NULL OR p_op = 'D' OR {differs}",
    )
    out.append(
        "INSERT INTO dim_patient (patient_id, birth_date, sex, postal_code, valid_from, valid_to, is_current) "
        "SELECT patient_id, birth_date, sex, postal_code, message_ts, next_ts, "
        "CASE WHEN next_ts IS NULL THEN true ELSE false END FROM (SELECT patient_id, op, birth_date, sex, "
        f"postal_code, message_ts, LEAD(message_ts) OVER ({window}) AS next_ts FROM adt_bounds) AS y "
        f"WHERE op <> 'D' AND {guard}"
    )
    # fact_encounters: every visit of the touched patients, folded from the log.
    out += _temp(
        dialect,
        "adt_visit_events",
        f"SELECT {cols} FROM adt_event_log WHERE encounter_id IN (SELECT encounter_id FROM adt_event_log "
        "WHERE patient_id IN (SELECT patient_id FROM adt_patients) AND encounter_id IS NOT NULL)",
    )
    out.append(
        f"DELETE FROM fact_encounters WHERE encounter_id IN (SELECT encounter_id FROM adt_visit_events) AND {guard}"
    )
    live = "'A01', 'A02', 'A03', 'A04', 'A08'"
    every = f"{live}, 'A11', 'A13'"
    # Seconds since the epoch: EXTRACT(EPOCH FROM timestamptz) exists in both dialects (DATEDIFF only in Redshift).
    hours = "(EXTRACT(EPOCH FROM discharge_at) - EXTRACT(EPOCH FROM admit_at)) / 3600.0"
    visits = (
        "SELECT adm.encounter_id, COALESCE(m.survivor, pat.value) AS patient_id, prov.value AS provider_id, "
        "typ.value AS encounter_type, COALESCE(adm_at.value, adm.message_ts) AS admit_at, "
        "CASE WHEN dis.event = 'A03' THEN COALESCE(dis.discharge_at, dis.message_ts) END AS discharge_at, "
        "dx.value AS primary_dx FROM "
        f"(SELECT encounter_id, event, message_ts FROM (SELECT encounter_id, event, message_ts, ROW_NUMBER() OVER "
        f"(PARTITION BY encounter_id ORDER BY {_ORDER}) AS rn FROM adt_visit_events "
        "WHERE event IN ('A01', 'A04', 'A11')) AS q WHERE q.rn = 1) AS adm "
        f"LEFT JOIN (SELECT encounter_id, event, message_ts, discharge_at FROM (SELECT encounter_id, event, "
        f"message_ts, discharge_at, ROW_NUMBER() OVER (PARTITION BY encounter_id ORDER BY {_ORDER}) AS rn "
        "FROM adt_visit_events WHERE event IN ('A03', 'A13')) AS q WHERE q.rn = 1) AS dis "
        "ON dis.encounter_id = adm.encounter_id "
        f"LEFT JOIN {_latest('patient_id', every, 'pat')} ON pat.encounter_id = adm.encounter_id "
        f"LEFT JOIN {_latest('provider_id', live, 'prov')} ON prov.encounter_id = adm.encounter_id "
        f"LEFT JOIN {_latest('encounter_type', live, 'typ')} ON typ.encounter_id = adm.encounter_id "
        f"LEFT JOIN {_latest('admit_at', live, 'adm_at')} ON adm_at.encounter_id = adm.encounter_id "
        f"LEFT JOIN {_latest('primary_dx', live, 'dx')} ON dx.encounter_id = adm.encounter_id "
        "LEFT JOIN (SELECT prior_patient_id, survivor FROM (SELECT prior_patient_id, patient_id AS survivor, "
        f"ROW_NUMBER() OVER (PARTITION BY prior_patient_id ORDER BY {_ORDER}) AS rn FROM adt_event_log "
        "WHERE event = 'A40') AS q WHERE q.rn = 1) AS m ON m.prior_patient_id = pat.value "
        "WHERE adm.event <> 'A11'"
    )
    out += _temp(dialect, "adt_visits", visits)
    out.append(
        "INSERT INTO fact_encounters (encounter_id, patient_id, provider_id, encounter_type, admit_at, discharge_at, "
        "length_of_stay_hours, primary_dx) SELECT encounter_id, patient_id, provider_id, encounter_type, admit_at, "
        f"discharge_at, CASE WHEN discharge_at >= admit_at THEN {hours} END, primary_dx FROM adt_visits "
        f"WHERE patient_id IS NOT NULL AND {guard}"
    )
    return out
