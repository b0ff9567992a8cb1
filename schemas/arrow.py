"""Arrow schemas of the tables the workers build, stage and write (Parquet, warehouse COPY).

Contract:
- Timestamps are ``timestamp[us, tz=UTC]``; a non-nullable field here is ``NOT NULL`` in the warehouse.
- ``PROCESSED_VITALS`` has the columns of ``fact_vitals`` in warehouse order, minus ``loaded_at``;
  ``QUARANTINED_VITALS`` adds ``reason`` and ``detail`` (``vitals_quarantine`` minus its surrogate key and
  ``loaded_at``). ``BATCH_QUARANTINE`` is ``batch_quarantine`` minus its surrogate key and ``quarantined_at``.
- ``NEWS2_HOURLY`` and ``DETERIORATION_ALERTS`` are the tables of CONTRACT §9 in warehouse order;
  ``NEWS2_SCORES`` is ``NEWS2_HOURLY`` minus ``updated_at`` (what scoring produces).
- ``PATIENTS``, ``ENCOUNTERS`` and ``CLAIMS`` are the validated batch rows, pseudonymised: no names and
  no street addresses.
"""

from __future__ import annotations

import pyarrow as pa

__all__ = [
    "BATCH_QUARANTINE",
    "CLAIMS",
    "CONTEXT",
    "CONTEXT_STATES",
    "DETERIORATION_ALERTS",
    "ENCOUNTERS",
    "KEYS",
    "KEY_COLUMNS",
    "MONEY",
    "NEWS2_HOURLY",
    "NEWS2_PARAMETERS",
    "NEWS2_SCORES",
    "PATIENTS",
    "PENDING",
    "PROCESSED_VITALS",
    "QUARANTINED_VITALS",
    "QUARANTINE_REASONS",
    "READINGS",
    "SERIES",
    "TIMESTAMP",
    "VITAL_COLUMNS",
]

TIMESTAMP = pa.timestamp("us", tz="UTC")
MONEY = pa.decimal128(12, 2)
QUARANTINE_REASONS: tuple[str, ...] = ("implausible", "spike")
"""Values of ``vitals_quarantine.reason``."""

_VITALS_FIELDS = [
    pa.field("device_id", pa.string(), nullable=False),
    pa.field("patient_id", pa.string(), nullable=True),
    pa.field("metric", pa.string(), nullable=False),
    pa.field("loinc_code", pa.string(), nullable=False),
    pa.field("value", pa.float64(), nullable=False),
    pa.field("unit", pa.string(), nullable=False),
    pa.field("measured_at", TIMESTAMP, nullable=False),
    pa.field("received_at", TIMESTAMP, nullable=False),
    pa.field("message_id", pa.string(), nullable=False),
]

READINGS = pa.schema(
    [
        *_VITALS_FIELDS,
        pa.field("arrival_seq", pa.int64(), nullable=False),
        pa.field("source_seq", pa.string(), nullable=True),
    ]
)
"""Decoded readings the vitals stages operate on.

``arrival_seq`` orders readings by arrival within a batch (lower = received first: "first received wins");
``source_seq`` is the Kinesis sequence number of the record the reading came in (null for other sources).
"""

PROCESSED_VITALS = pa.schema([*_VITALS_FIELDS, pa.field("batch_id", pa.string(), nullable=False)])
"""Clean readings: Parquet in ``processed/vitals/`` and rows of ``fact_vitals``."""

QUARANTINED_VITALS = pa.schema(
    [
        *PROCESSED_VITALS,
        pa.field("reason", pa.string(), nullable=False),
        pa.field("detail", pa.string(), nullable=True),
    ]
)
"""Quarantined readings: Parquet in ``quarantine/vitals/`` and rows of ``vitals_quarantine``."""

KEY_COLUMNS: tuple[str, ...] = ("device_id", "metric", "measured_at")
"""The natural key of a reading (CONTRACT §4)."""

KEYS = pa.schema([READINGS.field(name) for name in KEY_COLUMNS])

VITAL_COLUMNS: tuple[str, ...] = tuple(f.name for f in PROCESSED_VITALS if f.name != "batch_id")
"""The columns of a reading as stored (``fact_vitals`` minus ``batch_id`` and ``loaded_at``)."""

CONTEXT_STATES: tuple[str, ...] = ("accepted", "quarantined", "pending")
CONTEXT = pa.schema([*(READINGS.field(name) for name in VITAL_COLUMNS), pa.field("state", pa.string(), nullable=False)])
"""Recent warehouse rows of the batch's series: ``accepted`` (fact_vitals), ``quarantined``
(vitals_quarantine) and ``pending`` (vitals_pending: held, undecided readings)."""

PENDING = pa.schema([*PROCESSED_VITALS, pa.field("source_id", pa.string(), nullable=False)])
"""Held readings (``vitals_pending`` minus ``held_at``)."""

SERIES = pa.schema([READINGS.field("device_id"), READINGS.field("metric"), pa.field("since", TIMESTAMP)])
"""The batch's series with the oldest ``measured_at`` of warehouse context to load for each."""

PATIENTS = pa.schema(
    [
        pa.field("patient_id", pa.string(), nullable=False),
        pa.field("birth_date", pa.date32(), nullable=True),
        pa.field("sex", pa.string(), nullable=True),
        pa.field("postal_code", pa.string(), nullable=True),
    ]
)
"""Patient attributes that reach the warehouse (input of the ``dim_patient`` SCD2 merge)."""

ENCOUNTERS = pa.schema(
    [
        pa.field("encounter_id", pa.string(), nullable=False),
        pa.field("patient_id", pa.string(), nullable=False),
        pa.field("provider_id", pa.string(), nullable=True),
        pa.field("encounter_type", pa.string(), nullable=True),
        pa.field("admit_at", TIMESTAMP, nullable=False),
        pa.field("discharge_at", TIMESTAMP, nullable=True),
        pa.field("length_of_stay_hours", pa.float64(), nullable=True),
        pa.field("primary_dx", pa.string(), nullable=True),
    ]
)
"""Rows of ``fact_encounters``; ``length_of_stay_hours`` is null while ``discharge_at`` is."""

CLAIMS = pa.schema(
    [
        pa.field("claim_id", pa.string(), nullable=False),
        pa.field("line_number", pa.int32(), nullable=False),
        pa.field("patient_id", pa.string(), nullable=False),
        pa.field("provider_npi", pa.string(), nullable=True),
        pa.field("service_date", pa.date32(), nullable=False),
        pa.field("procedure_code", pa.string(), nullable=True),
        pa.field("dx_code", pa.string(), nullable=True),
        pa.field("billed_amount", MONEY, nullable=True),
        pa.field("allowed_amount", MONEY, nullable=True),
        pa.field("paid_amount", MONEY, nullable=True),
        pa.field("status", pa.string(), nullable=False),
        pa.field("denial_reason", pa.string(), nullable=True),
    ]
)
"""Rows of ``fact_claims``; ``status`` is one of ``paid``, ``denied``, ``pending``."""

BATCH_QUARANTINE = pa.schema(
    [
        pa.field("pipeline", pa.string(), nullable=False),
        pa.field("source_key", pa.string(), nullable=False),
        pa.field("line_number", pa.int64(), nullable=True),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("detail", pa.string(), nullable=True),
    ]
)
"""Rejected batch rows (``line_number`` set) and whole files (``line_number`` null)."""

NEWS2_PARAMETERS: tuple[str, ...] = ("rr", "spo2", "sbp", "pulse", "temp")
"""The NEWS2 parameters scored (CONTRACT §9), in column order: respiration rate, SpO2, systolic BP, pulse,
temperature."""

NEWS2_SCORES = pa.schema(
    [
        pa.field("patient_id", pa.string(), nullable=False),
        pa.field("hour_start", TIMESTAMP, nullable=False),
        *(pa.field(name, pa.float64(), nullable=True) for name in NEWS2_PARAMETERS),
        *(pa.field(f"score_{name}", pa.int32(), nullable=True) for name in NEWS2_PARAMETERS),
        pa.field("total", pa.int32(), nullable=False),
        pa.field("parameters", pa.int32(), nullable=False),
        pa.field("any_three", pa.bool_(), nullable=False),
        pa.field("risk", pa.string(), nullable=False),
    ]
)
"""Scored patient-hours: the values scored (canonical units, null when absent) and their scores."""

NEWS2_HOURLY = pa.schema([*NEWS2_SCORES, pa.field("updated_at", TIMESTAMP, nullable=False)])
"""Rows of ``news2_hourly``: one per (``patient_id``, ``hour_start``)."""

DETERIORATION_ALERTS = pa.schema(
    [
        pa.field("alert_id", pa.string(), nullable=False),
        pa.field("patient_id", pa.string(), nullable=False),
        pa.field("hour_start", TIMESTAMP, nullable=False),
        pa.field("risk", pa.string(), nullable=False),
        pa.field("total", pa.int32(), nullable=False),
        pa.field("raised_at", TIMESTAMP, nullable=False),
        pa.field("published_at", TIMESTAMP, nullable=True),
        *(pa.field(f"score_{name}", pa.int32(), nullable=True) for name in NEWS2_PARAMETERS),
    ]
)
"""Rows of ``deterioration_alerts`` (the transactional outbox of alerts): the contract's columns, then the
parameter scores at the time the alert was raised (the published message carries them)."""
