"""NEWS2 early-warning score per patient-hour (CONTRACT §9: RCP NEWS2 2017, SpO2 scale 1, air, alert).

Contract:
- :data:`schemas.news2.CHART` is the chart as data: per parameter, its metric, the decimals it is rounded to
  and its bands ``(upper bound inclusive of the rounded value, score)`` in ascending order (the last band is
  unbounded).
- A value is rounded half up as a decimal number: the decimal of a double is its shortest round-trip spelling
  (``repr``), so 38.05 rounds to 38.1 although the double is 38.04999…. No rounding is computed: "rounded value
  <= b" is "decimal < b + half a step", and for a double ``v`` and a short decimal ``t`` (a band boundary plus
  half a step: ``8.5``, ``38.05``) ``decimal(v) < t`` holds exactly when ``v < float(t)``: ``float`` rounds
  monotonically, and ``v == float(t)`` only when ``repr(v) == t`` because doubles near ``t`` are far closer
  together than ``t``'s last digit. :func:`band_cuts` gives those half-step cuts; the SQL of both warehouse
  dialects is generated from the same cuts (``workers.warehouse.news2_sql``).
- :func:`latest_per_hour` picks, for each (``patient_id``, UTC hour of ``measured_at``), the latest reading
  (by ``measured_at``, ties by the greater ``device_id``) of each NEWS2 metric; readings without a patient and
  other metrics are ignored. :func:`score_news2` scores such rows (:data:`HOURLY_VALUES`) into
  :data:`schemas.arrow.NEWS2_SCORES`; an absent parameter has null value and null score.
- ``risk``: ``high`` if total >= 7; ``medium`` if 5-6; ``low-medium`` if a single parameter scores 3 and total
  < 5; else ``low``. Pure pyarrow/numpy: no per-row Python.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas.arrow import NEWS2_SCORES, TIMESTAMP
from schemas.news2 import CHART, HOUR_US, RISKS, Parameter, band_cuts

__all__ = [
    "CHART",
    "HOURLY_VALUES",
    "RISKS",
    "Parameter",
    "band_cuts",
    "hour_start_us",
    "latest_per_hour",
    "risk_of",
    "score_news2",
    "score_values",
]

HIGH_TOTAL = 7
MEDIUM_TOTAL = 5


HOURLY_VALUES = pa.schema(
    [
        pa.field("patient_id", pa.string(), nullable=False),
        pa.field("hour_start", TIMESTAMP, nullable=False),
        *(pa.field(p.name, pa.float64(), nullable=True) for p in CHART),
    ]
)
"""The values a patient-hour is scored from (canonical units; null when the parameter is absent)."""


def _cut_array(parameter: Parameter) -> np.ndarray:
    return np.array([float(c) for c in band_cuts(parameter)], dtype=np.float64)  # pragma: no mutate (floats anyway)


def score_values(parameter: Parameter, values: np.ndarray) -> np.ndarray:
    """Scores (int64) of finite ``values``: the band is the number of cuts ``<= value``."""
    scores = np.array([score for _, score in parameter.bands], dtype=np.int64)  # pragma: no mutate (ints anyway)
    return scores[np.searchsorted(_cut_array(parameter), values, side="right")]


def hour_start_us(measured_at: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """UTC hour start (epoch µs) of each timestamp."""
    raw = measured_at.cast(pa.int64()).to_numpy(zero_copy_only=False)  # pragma: no mutate (either way)
    us = np.asarray(raw, dtype=np.int64)  # pragma: no mutate (int64 already)
    return us - np.mod(us, HOUR_US)


def latest_per_hour(readings: pa.Table) -> pa.Table:
    """:data:`HOURLY_VALUES` rows from readings (``patient_id``, ``device_id``, ``metric``, ``value``,
    ``measured_at``): the latest value of each NEWS2 metric per patient and UTC hour."""
    metrics = pa.array([p.metric for p in CHART], pa.string())  # pragma: no mutate (strings inferred)
    index = pc.index_in(readings.column("metric"), value_set=metrics)
    keep = pc.and_(pc.is_valid(index), pc.is_valid(readings.column("patient_id")))
    rows = readings.filter(keep)
    if rows.num_rows == 0:
        return HOURLY_VALUES.empty_table()
    indices = pc.index_in(rows.column("metric"), value_set=metrics)
    param = np.asarray(indices.to_numpy(zero_copy_only=False))  # pragma: no mutate (no nulls)
    hour = hour_start_us(rows.column("measured_at"))
    measured = rows.column("measured_at").cast(pa.int64())
    at_raw = measured.to_numpy(zero_copy_only=False)  # pragma: no mutate (either way)
    at = np.asarray(at_raw, dtype=np.int64)  # pragma: no mutate (int64 already)
    patient_codes = pc.dictionary_encode(rows.column("patient_id").combine_chunks())
    codes = patient_codes.indices.to_numpy(zero_copy_only=False)  # pragma: no mutate (no nulls)
    patients = np.asarray(codes, dtype=np.int64)  # pragma: no mutate (any int sorts the same)
    ranks = pc.rank(rows.column("device_id"), sort_keys="ascending", tiebreaker="dense")  # pragma: no mutate (stable)
    device_rank = np.asarray(ranks.to_numpy(), dtype=np.int64)  # pragma: no mutate (int64)
    # Sort by (patient, hour, parameter, measured_at, device); the last row of each group is the latest.
    order = np.lexsort((device_rank, at, param, hour, patients))
    group = np.stack([patients[order], hour[order], param[order]])
    # Equivalent mutants below: numpy writes repeated indices in order, so any extra row chosen from a group is
    # overwritten in `wide` by the group's latest row, which is always chosen.
    last = np.ones(order.size, dtype=bool)
    last[:-1] = np.any(group[:, 1:] != group[:, :-1], axis=0)  # pragma: no mutate (see above)
    chosen = order[last]
    all_values = rows.column("value").to_numpy(zero_copy_only=False)  # pragma: no mutate (either way)
    values = np.asarray(all_values, dtype=np.float64)[chosen]  # pragma: no mutate (float64 already)
    # Pivot: one output row per (patient, hour).
    ph = np.stack([patients[chosen], hour[chosen]])
    first = np.ones(chosen.size, dtype=bool)
    first[1:] = np.any(ph[:, 1:] != ph[:, :-1], axis=0)  # pragma: no mutate (sorted: no group recurs)
    out_row = np.cumsum(first) - 1
    n = int(out_row[-1]) + 1  # rows is not empty
    wide = np.full((len(CHART), n), np.nan)  # pragma: no mutate (absent slots are masked)
    present = np.zeros((len(CHART), n), dtype=bool)
    wide[param[chosen], out_row] = values
    present[param[chosen], out_row] = True
    heads = chosen[first]
    columns: list[pa.Array] = [
        patient_codes.dictionary.take(pa.array(patients[heads])),
        pa.array(hour[heads], pa.int64()).cast(TIMESTAMP),  # pragma: no mutate (int64)
    ]
    for i in range(len(CHART)):
        columns.append(pa.array(wide[i], pa.float64(), mask=~present[i]))  # pragma: no mutate (float64)
    return pa.Table.from_arrays(columns, schema=HOURLY_VALUES)


def risk_of(total: np.ndarray, any_three: np.ndarray) -> pa.Array:
    """The risk band of each (total, any single parameter scored 3)."""
    code = np.where(total >= HIGH_TOTAL, 3, np.where(total >= MEDIUM_TOTAL, 2, np.where(any_three, 1, 0)))
    return pa.array(np.asarray(RISKS, dtype=object)[code], pa.string())  # pragma: no mutate (strings either way)


def score_news2(hourly: pa.Table) -> pa.Table:
    """Score :data:`HOURLY_VALUES` rows into :data:`schemas.arrow.NEWS2_SCORES` (row order kept)."""
    n = hourly.num_rows
    total = np.zeros(n, dtype=np.int64)  # pragma: no mutate (sums of ints)
    any_three = np.zeros(n, dtype=bool)
    parameters = np.zeros(n, dtype=np.int64)  # pragma: no mutate (sums of ints)
    scored: list[pa.Array] = []
    for p in CHART:
        column = hourly.column(p.name)
        values = np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)  # pragma: no mutate (float64)
        is_valid = pc.is_valid(column).to_numpy(zero_copy_only=False)  # pragma: no mutate (no nulls)
        present = np.asarray(is_valid, dtype=bool)  # pragma: no mutate (bools already)
        valid = present & np.isfinite(values)
        scores = np.where(valid, score_values(p, np.where(valid, values, 0.0)), 0)  # pragma: no mutate (placeholder)
        total += scores
        any_three |= valid & (scores == 3)
        parameters += valid
        scored.append(pa.array(scores.astype(np.int32), pa.int32(), mask=~valid))  # pragma: no mutate (small ints)
    columns = [
        hourly.column("patient_id"),
        hourly.column("hour_start"),
        *(hourly.column(p.name).cast(pa.float64()) for p in CHART),
        *scored,
        pa.array(total.astype(np.int32), pa.int32()),  # pragma: no mutate (small ints)
        pa.array(parameters.astype(np.int32), pa.int32()),  # pragma: no mutate (small ints)
        pa.array(any_three, pa.bool_()),  # pragma: no mutate (bools)
        risk_of(total, any_three),
    ]
    return pa.Table.from_arrays(columns, schema=NEWS2_SCORES)
