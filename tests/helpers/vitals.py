"""Builders of vitals test data: envelopes, READINGS tables, context tables, synthetic fleets."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from schemas.arrow import CONTEXT, READINGS, TIMESTAMP, VITAL_COLUMNS
from schemas.catalogue import METRICS
from schemas.envelope import encode_envelope

T0_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
SECOND = 1_000_000


@dataclass(frozen=True)
class R:
    """One reading for table builders (value in the canonical unit)."""

    device_id: str
    metric: str
    at_s: float
    value: float
    received_s: float | None = None
    patient_id: str | None = "p-1"
    message_id: str | None = None


def readings_table(rows: Sequence[R], first_seq: int = 0) -> pa.Table:
    """A READINGS table of ``rows`` in the given (arrival) order."""
    return pa.Table.from_pylist(
        [
            {
                "device_id": r.device_id,
                "patient_id": r.patient_id,
                "metric": r.metric,
                "loinc_code": METRICS[r.metric].loinc_code if r.metric in METRICS else "0-0",
                "value": float(r.value),
                "unit": METRICS[r.metric].canonical_unit if r.metric in METRICS else "?",
                "measured_at": T0_US + int(r.at_s * SECOND),
                "received_at": T0_US + int((r.received_s if r.received_s is not None else r.at_s) * SECOND),
                "message_id": r.message_id or f"m-{r.device_id}-{r.metric}-{r.at_s}-{i}",
                "arrival_seq": first_seq + i,
                "source_seq": None,
            }
            for i, r in enumerate(rows)
        ],
        schema=READINGS,
    )


def series(device: str, metric: str, values: Iterable[float], start_s: float = 0, step_s: float = 1) -> list[R]:
    return [R(device, metric, start_s + i * step_s, v) for i, v in enumerate(values)]


def context_table(rows: Sequence[R], state: str) -> pa.Table:
    """A CONTEXT table of ``rows`` all in ``state`` (accepted / quarantined / pending)."""
    table = readings_table(rows).select(list(VITAL_COLUMNS))
    return table.append_column("state", pa.array([state] * len(rows), pa.string())).cast(CONTEXT)


def concat_context(*tables: pa.Table) -> pa.Table:
    return pa.concat_tables([CONTEXT.empty_table(), *tables])


def us(seconds: float) -> int:
    return T0_US + int(seconds * SECOND)


def values_of(table: pa.Table) -> list[float]:
    return [float(v) for v in table.column("value").to_pylist()]


def envelope(device_id: str, rows: Sequence[R], received_s: float = 0.0, request_id: str | None = None) -> bytes:
    """One Kinesis record of ``rows`` (all of ``device_id``) as the gateway writes it."""
    return encode_envelope(
        request_id or uuid.uuid4().hex,
        device_id,
        us(received_s),
        {
            "message_id": [r.message_id or f"m-{device_id}-{r.metric}-{r.at_s}" for r in rows],
            "patient_id": [r.patient_id for r in rows],
            "metric": [r.metric for r in rows],
            "loinc_code": [METRICS[r.metric].loinc_code for r in rows],
            "value": [float(r.value) for r in rows],
            "unit": [METRICS[r.metric].canonical_unit for r in rows],
            "measured_at_us": [us(r.at_s) for r in rows],
        },
    )


_BASE = {
    "heart_rate": (75.0, 2.0),
    "spo2": (97.0, 0.6),
    "resp_rate": (16.0, 1.0),
    "body_temp": (36.8, 0.05),
    "bp_systolic": (120.0, 3.0),
    "bp_diastolic": (80.0, 2.0),
    "glucose": (105.0, 4.0),
}


def fleet_envelopes(
    devices: int,
    seconds: int,
    *,
    readings_per_envelope: int = 10,
    seed: int = 7,
    start_s: float = 0.0,
    spike_every: int = 0,
    duplicate_every: int = 0,
) -> list[bytes]:
    """Envelopes of a synthetic fleet: each device reports every metric once a second (random walk).

    ``spike_every``: every Nth reading of a series is an isolated spike; ``duplicate_every``: every Nth
    envelope is sent twice (a client retry).
    """
    rng = np.random.default_rng(seed)
    metrics = list(_BASE)
    out: list[bytes] = []
    n_env = 0
    for d in range(devices):
        device = f"dev-{d:05d}"
        level = {m: _BASE[m][0] for m in metrics}
        buffer: list[R] = []
        for s in range(seconds):
            for m in metrics:
                noise = _BASE[m][1]
                level[m] += rng.normal(0, noise * 0.1)
                value = level[m] + rng.normal(0, noise)
                if spike_every and (s + 1) % spike_every == 0 and m == "heart_rate":
                    value += 70.0
                buffer.append(R(device, m, start_s + s, round(value, 2), patient_id=f"p-{d:05d}"))
                if len(buffer) == readings_per_envelope:
                    data = envelope(device, buffer, received_s=start_s + s + 0.2)
                    out.append(data)
                    n_env += 1
                    if duplicate_every and n_env % duplicate_every == 0:
                        out.append(data)
                    buffer = []
        if buffer:
            out.append(envelope(device, buffer, received_s=start_s + seconds))
    return out


__all__ = [
    "SECOND",
    "T0_US",
    "TIMESTAMP",
    "R",
    "concat_context",
    "context_table",
    "envelope",
    "fleet_envelopes",
    "readings_table",
    "series",
    "us",
    "values_of",
]
