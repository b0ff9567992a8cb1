"""The warehouse tables the batch pipelines feed, as specs shared by both dialects' file loaders.

Contract: :data:`SPECS` maps a lake table (``patients``, ``encounters``, ``claims``) to its warehouse table,
columns in Arrow schema order with their staging type, natural key and whether it is SCD type 2.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ADT_EVENTS",
    "CLAIMS",
    "ENCOUNTERS",
    "ENCOUNTER_CHANGES",
    "FEED_TABLES",
    "PATIENTS",
    "PATIENT_CHANGES",
    "QUARANTINE_COLUMNS",
    "REMITTANCES",
    "SPECS",
    "TableSpec",
]


@dataclass(frozen=True, slots=True)
class TableSpec:
    """A warehouse table fed from a lake table: columns ``(name, staging type)`` in Arrow schema order."""

    lake_table: str
    table: str
    columns: tuple[tuple[str, str], ...]
    key: tuple[str, ...]
    scd2: bool = False

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)

    @property
    def attributes(self) -> tuple[str, ...]:
        return tuple(name for name in self.column_names if name not in self.key)


PATIENTS = TableSpec(
    "patients",
    "dim_patient",
    (("patient_id", "text"), ("birth_date", "date"), ("sex", "text"), ("postal_code", "text")),
    key=("patient_id",),
    scd2=True,
)
ENCOUNTERS = TableSpec(
    "encounters",
    "fact_encounters",
    (
        ("encounter_id", "text"),
        ("patient_id", "text"),
        ("provider_id", "text"),
        ("encounter_type", "text"),
        ("admit_at", "timestamptz"),
        ("discharge_at", "timestamptz"),
        ("length_of_stay_hours", "double precision"),
        ("primary_dx", "text"),
    ),
    key=("encounter_id",),
)
CLAIMS = TableSpec(
    "claims",
    "fact_claims",
    (
        ("claim_id", "text"),
        ("line_number", "integer"),
        ("patient_id", "text"),
        ("provider_npi", "text"),
        ("service_date", "date"),
        ("procedure_code", "text"),
        ("dx_code", "text"),
        ("billed_amount", "numeric(12,2)"),
        ("allowed_amount", "numeric(12,2)"),
        ("paid_amount", "numeric(12,2)"),
        ("status", "text"),
        ("denial_reason", "text"),
    ),
    key=("claim_id", "line_number"),
)
_CHANGE_COLUMNS = (("op", "text"), ("dms_commit_ts", "timestamptz"), ("change_seq", "bigint"))
REMITTANCES = TableSpec(
    "remittances",
    "claim_remittances",
    (
        ("claim_id", "text"),
        ("line_number", "integer"),
        ("status", "text"),
        ("allowed_amount", "numeric(12,2)"),
        ("paid_amount", "numeric(12,2)"),
        ("denial_reason", "text"),
        ("remit_order", "text"),
    ),
    key=("claim_id", "line_number"),
)
"""835 service-line adjudications (X12): applied to ``fact_claims`` through ``claim_adjudications``."""
PATIENT_CHANGES = TableSpec("patient_changes", "cdc_patients", (*_CHANGE_COLUMNS, *PATIENTS.columns),
                            key=("patient_id",))  # fmt: skip
"""DMS CDC changes of the source ``patients`` table: applied to ``dim_patient`` (newest change per key wins)."""
ENCOUNTER_CHANGES = TableSpec("encounter_changes", "cdc_encounters", (*_CHANGE_COLUMNS, *ENCOUNTERS.columns),
                              key=("encounter_id",))  # fmt: skip
"""DMS CDC changes of the source ``encounters`` table: applied to ``fact_encounters``."""
ADT_EVENTS = TableSpec(
    "adt_events",
    "adt_events",
    (
        ("message_control_id", "text"),
        ("message_ts", "timestamptz"),
        ("event", "text"),
        ("patient_id", "text"),
        ("prior_patient_id", "text"),
        ("encounter_id", "text"),
        ("encounter_type", "text"),
        ("provider_id", "text"),
        ("admit_at", "timestamptz"),
        ("discharge_at", "timestamptz"),
        ("primary_dx", "text"),
        ("birth_date", "date"),
        ("sex", "text"),
        ("postal_code", "text"),
    ),
    key=("message_control_id",),
)
"""HL7 v2 ADT messages: logged in ``adt_event_log``, folded into ``dim_patient`` and ``fact_encounters``."""
FEED_TABLES = (REMITTANCES, PATIENT_CHANGES, ENCOUNTER_CHANGES, ADT_EVENTS)
"""Lake tables whose warehouse semantics are not a plain upsert / SCD2 (``postgres/feed_sql``,
``redshift/feed_sql``); their ``table`` names only the staging table."""

SPECS: dict[str, TableSpec] = {
    spec.lake_table: spec
    for spec in (PATIENTS, ENCOUNTERS, CLAIMS, REMITTANCES, PATIENT_CHANGES, ENCOUNTER_CHANGES, ADT_EVENTS)
}
"""Lake table name -> warehouse spec."""

QUARANTINE_COLUMNS = ("pipeline", "source_key", "line_number", "reason", "detail")
