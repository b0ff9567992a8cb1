"""Arrow schemas of the lake tables the X12 and DMS CDC feeds add (CONTRACT §8), shared by readers and loaders.

- ``REMITTANCES``: one row per adjudicated 835 service line (``line_number`` 0: a claim paid or denied
  without service lines, applying to every line of the claim). ``remit_order`` orders remittances of a line
  (``<BPR16 or DTM*405 date YYYYMMDD>:<ISA13>:<segment position, 12 digits>``, compared as text): the
  greatest one is the line's adjudication. A reversal (CLP02 = 22) not followed by a correction is a row with
  ``status`` ``pending`` and null amounts.
- ``ADT_EVENTS``: one row per usable HL7 v2 ADT message (``workers.formats.hl7``), pseudonymised.
- ``PATIENT_CHANGES`` / ``ENCOUNTER_CHANGES``: DMS rows with ``op`` (``I``, ``U``, ``D``; ``L`` for a
  full-load row) and ``dms_commit_ts``, then the pseudonymised columns of ``PATIENTS`` / ``ENCOUNTERS``.
  ``change_seq`` is the row's position in its file (later wins between equal commit times).
"""

from __future__ import annotations

import pyarrow as pa

from schemas.arrow import ENCOUNTERS, MONEY, PATIENTS, TIMESTAMP

__all__ = ["ADT_EVENTS", "CHANGE_OPS", "ENCOUNTER_CHANGES", "PATIENT_CHANGES", "REMITTANCES"]

REMITTANCES = pa.schema(
    [
        pa.field("claim_id", pa.string(), nullable=False),
        pa.field("line_number", pa.int32(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("allowed_amount", MONEY, nullable=True),
        pa.field("paid_amount", MONEY, nullable=True),
        pa.field("denial_reason", pa.string(), nullable=True),
        pa.field("remit_order", pa.string(), nullable=False),
    ]
)

CHANGE_OPS = ("I", "U", "D", "L")
_CHANGE = [
    pa.field("op", pa.string(), nullable=False),
    pa.field("dms_commit_ts", TIMESTAMP, nullable=False),
    pa.field("change_seq", pa.int64(), nullable=False),
]
PATIENT_CHANGES = pa.schema([*_CHANGE, *(f.with_nullable(f.name != "patient_id") for f in PATIENTS)])
ENCOUNTER_CHANGES = pa.schema([*_CHANGE, *(f.with_nullable(f.name != "encounter_id") for f in ENCOUNTERS)])
"""A ``D`` row carries only its key: every other entity column is nullable here."""

ADT_EVENTS = pa.schema(
    [
        pa.field("message_control_id", pa.string(), nullable=False),
        pa.field("message_ts", TIMESTAMP, nullable=False),
        pa.field("event", pa.string(), nullable=False),
        pa.field("patient_id", pa.string(), nullable=False),
        pa.field("prior_patient_id", pa.string(), nullable=True),
        pa.field("encounter_id", pa.string(), nullable=True),
        pa.field("encounter_type", pa.string(), nullable=True),
        pa.field("provider_id", pa.string(), nullable=True),
        pa.field("admit_at", TIMESTAMP, nullable=True),
        pa.field("discharge_at", TIMESTAMP, nullable=True),
        pa.field("primary_dx", pa.string(), nullable=True),
        pa.field("birth_date", pa.date32(), nullable=True),
        pa.field("sex", pa.string(), nullable=True),
        pa.field("postal_code", pa.string(), nullable=True),
    ]
)
