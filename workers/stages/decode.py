"""Decode Kinesis envelopes (``schemas.envelope``) into one ``READINGS`` table.

Contract:
- Input: the records' bytes in source order, with their source positions (Kinesis sequence numbers).
- ``arrival_seq`` numbers readings in arrival order (record order, then order within the envelope), so a
  lower value means "received first". ``received_at`` is the envelope's gateway receive time.
- An envelope that does not decode, or whose columns do not convert to the ``READINGS`` types, or that has
  a null in a non-nullable column, is rejected whole (``DecodeResult.rejected``: its record index and a
  reason); the other envelopes of the batch go on. Readings are never rejected one by one here.
- Columns are built once for the whole batch (Python lists extended per *envelope*, not per reading).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from schemas.arrow import READINGS, TIMESTAMP
from schemas.envelope import READING_COLUMNS, EnvelopeError, decode_envelope

__all__ = ["DecodeResult", "RejectedRecord", "decode"]

_DETAIL_MAX = 200  # pragma: no mutate (a bound: no EnvelopeError message comes near it)
_NOT_NULL = tuple(f.name for f in READINGS if not f.nullable)


@dataclass(frozen=True, slots=True)
class RejectedRecord:
    """A record that is not a usable envelope: ``index`` into the batch's records, ``reason``, ``detail``."""

    index: int
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class DecodeResult:
    readings: pa.Table
    rejected: tuple[RejectedRecord, ...]


_TYPES: dict[str, pa.DataType] = {
    "message_id": pa.string(),
    "patient_id": pa.string(),
    "metric": pa.string(),
    "loinc_code": pa.string(),
    "value": pa.float64(),
    "unit": pa.string(),
    "measured_at_us": TIMESTAMP,
}


def _build(envelopes: Sequence[dict[str, Any]], positions: Sequence[str | None]) -> pa.Table:
    """One ``READINGS`` table for ``envelopes`` (raises ``pa.ArrowException``/``TypeError``/``ValueError``)."""
    columns: dict[str, list[Any]] = {name: [] for name in READING_COLUMNS}
    counts = np.empty(len(envelopes), dtype=np.int64)
    received = np.empty(len(envelopes), dtype=np.int64)
    device_ids: list[str] = []
    for i, env in enumerate(envelopes):
        readings = env["readings"]
        for name in READING_COLUMNS:
            columns[name].extend(readings[name])
        counts[i] = len(readings["metric"])
        received[i] = env["received_at_us"]
        device_ids.append(env["device_id"])
    total = int(counts.sum())
    owner = np.repeat(np.arange(len(envelopes), dtype=np.int64), counts)  # pragma: no mutate (int64 is the default)
    devices = pa.array(device_ids, pa.string())  # pragma: no mutate (the schema casts an untyped empty array)
    arrays = {name: pa.array(columns[name], type=_TYPES[name]) for name in READING_COLUMNS}
    table = pa.Table.from_arrays(
        [
            devices.take(owner),
            arrays["patient_id"],
            arrays["metric"],
            arrays["loinc_code"],
            arrays["value"],
            arrays["unit"],
            arrays["measured_at_us"],
            pa.array(received[owner], pa.int64()).cast(TIMESTAMP),  # pragma: no mutate (int64 array)
            arrays["message_id"],
            pa.array(np.arange(total, dtype=np.int64)),  # pragma: no mutate (int64 is the default)
            pa.array(positions, pa.string()).take(owner),  # pragma: no mutate (the schema casts an all-null array)
        ],
        schema=READINGS,
    )
    for name in _NOT_NULL:
        if table.column(name).null_count:
            raise ValueError(f"null in non-nullable column {name}")  # pragma: no mutate (only the type is reported)
    return table


def decode(payloads: Sequence[bytes], positions: Sequence[str | None] | None = None) -> DecodeResult:
    """Decode every record of a batch into one ``READINGS`` table; bad records are rejected whole."""
    if positions is None:
        positions = [None] * len(payloads)
    envelopes: list[dict[str, Any]] = []
    kept_positions: list[str | None] = []
    kept_index: list[int] = []
    rejected: list[RejectedRecord] = []
    for index, data in enumerate(payloads):
        try:
            envelopes.append(dict(decode_envelope(data)))
        except EnvelopeError as exc:
            rejected.append(RejectedRecord(index, "malformed_envelope", str(exc)[:_DETAIL_MAX]))
            continue
        kept_positions.append(positions[index])
        kept_index.append(index)
    try:
        table = _build(envelopes, kept_positions)  # pragma: no mutate (if it fails, the slow path: same result)
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        # Slow path, only when some envelope is bad: find it envelope by envelope.
        good: list[dict[str, Any]] = []
        good_positions: list[str | None] = []
        kept = zip(envelopes, kept_positions, kept_index, strict=True)  # pragma: no mutate (equal lengths)
        for env, position, index in kept:
            try:
                _build([env], [position])
            except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
                rejected.append(RejectedRecord(index, "invalid_envelope", type(exc).__name__))
                continue
            good.append(env)
            good_positions.append(position)
        table = _build(good, good_positions)
    rejected.sort(key=lambda r: r.index)
    return DecodeResult(readings=table, rejected=tuple(rejected))
