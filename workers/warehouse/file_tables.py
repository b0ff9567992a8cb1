"""The warehouse tables the batch pipelines feed, as specs shared by both dialects' file loaders.

Contract: :data:`SPECS` maps a lake table (``patients``, ``encounters``, ``claims``) to its warehouse table,
columns in Arrow schema order with their staging type, natural key and whether it is SCD type 2.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CLAIMS", "ENCOUNTERS", "PATIENTS", "QUARANTINE_COLUMNS", "SPECS", "TableSpec"]


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
SPECS: dict[str, TableSpec] = {spec.lake_table: spec for spec in (PATIENTS, ENCOUNTERS, CLAIMS)}
"""Lake table name -> warehouse spec."""

QUARANTINE_COLUMNS = ("pipeline", "source_key", "line_number", "reason", "detail")
