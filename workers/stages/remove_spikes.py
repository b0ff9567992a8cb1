"""Quarantine isolated spikes (CONTRACT §4); never a sustained change, never ordinary variability.

Per series (device_id, metric), readings are ordered by ``measured_at`` together with the recent context
from the warehouse (accepted readings, and pending ones held by earlier batches). An undecided reading ``x``
(new, or pending) with previous reading ``p`` and next reading ``n`` in that order is a spike iff

- ``|x - p| > T`` and ``|x - n| > T``, on the same side (both neighbours above, or both below), and
- the neighbours agree: ``|p - n| <= agree_fraction * T``,

where ``T = max(floor[metric], k[metric] * 1.4826 * MAD)`` and MAD is the median absolute deviation of up
to ``window`` readings of the series preceding ``x``; with fewer than ``min_context`` preceding readings
there is no baseline and nothing is a spike. A reading without a previous reading is accepted, except a
pending one (held earlier against context not loaded now): it stays held until a successor or the limit.
So a run of two or more readings at a new level is never a spike: each of them has a neighbour at its level.

The newest reading of a series has no next reading yet: if it is far from its previous one (a *candidate*)
it is held (returned in ``held``, to be stored as pending) until its successor arrives in a later batch or
``hold_us`` has passed since its ``received_at`` (then it is accepted: there is no evidence against it).
A reading that is not far from its previous one can never be a spike and is accepted at once.
Spikes are removed from the sequence and the rest is evaluated again (up to three passes), so the reading
after a spike is compared with the spike's (agreeing) neighbours, not with the spike.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from schemas.arrow import CONTEXT, VITAL_COLUMNS
from schemas.catalogue import spike_floors
from workers.stages.result import with_reason
from workers.stages.series import series_codes, timestamps_us

__all__ = ["SpikeConfig", "SpikeResult", "remove_spikes"]

MAD_SCALE = 1.4826
_PASSES = 3


@dataclass(frozen=True, slots=True)
class SpikeConfig:
    """Tuning of spike detection; ``threshold_mads`` and ``floors`` are per metric name."""

    floors: Mapping[str, float] = field(default_factory=spike_floors)
    threshold_mads: Mapping[str, float] = field(default_factory=lambda: dict.fromkeys(spike_floors(), 3.5))
    window: int = 8
    agree_fraction: float = 0.5
    hold_us: int = 60_000_000
    min_context: int = 3

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError("window must be >= 1")
        if self.hold_us < 0:
            raise ValueError("hold_us must be >= 0")


@dataclass(frozen=True, slots=True)
class SpikeResult:
    """``accepted``: new readings and released pending ones (``VITAL_COLUMNS``, by series and time);
    ``quarantined``: spikes (plus ``reason``/``detail``); ``held``: new readings to store as pending;
    ``still_pending``: pending readings of the context that stay held."""

    accepted: pa.Table
    quarantined: pa.Table
    held: pa.Table
    still_pending: int


@dataclass(frozen=True, slots=True)
class _Pass:
    positions: npt.NDArray[np.int64]  # sorted positions of candidates far from their previous reading
    spike: npt.NDArray[np.bool_]
    held: npt.NDArray[np.bool_]
    threshold: npt.NDArray[np.float64]
    deviation: npt.NDArray[np.float64]


def _per_metric(metric: pa.ChunkedArray | pa.Array, values: Mapping[str, float], missing: float) -> np.ndarray:
    names = sorted(values)
    table = np.array([values[m] for m in names] + [missing], dtype=np.float64)  # pragma: no mutate (floats anyway)
    idx = pc.index_in(metric, value_set=pa.array(names, pa.string())).fill_null(len(names))
    return table[np.asarray(idx.to_numpy(zero_copy_only=False), dtype=np.int64)]  # pragma: no mutate (any int)


def _evaluate(
    alive: npt.NDArray[np.int64],
    series: np.ndarray,
    values: np.ndarray,
    undecided: np.ndarray,
    pending: np.ndarray,
    floor: np.ndarray,
    mads: np.ndarray,
    received: np.ndarray,
    now_us: int,
    config: SpikeConfig,
) -> _Pass:
    ss, vv = series[alive], values[alive]
    m = len(alive)
    same = ss[1:] == ss[:-1]
    has_prev = np.zeros(m, dtype=bool)
    has_prev[1:] = same
    has_next = np.zeros(m, dtype=bool)
    has_next[:-1] = same
    prev_v = np.empty(m)
    prev_v[0] = np.nan  # pragma: no mutate (a first reading's previous value is never read: has_prev is False)
    prev_v[1:] = vv[:-1]
    next_v = np.empty(m)
    next_v[-1:] = np.nan  # pragma: no mutate (a last reading's next value is never read: has_next is False)
    next_v[:-1] = vv[1:]
    with np.errstate(invalid="ignore"):  # pragma: no mutate (silences warnings only)
        d_prev = np.abs(vv - prev_v)
        # A reading exactly at the floor is never far (threshold >= floor): > or >= give the same decisions.
        cand = undecided[alive] & has_prev & (d_prev > floor[alive])  # pragma: no mutate (see above)
    orphans = pending[alive] & ~has_prev  # held before against context that is not loaded now
    cand |= orphans
    ci = np.flatnonzero(cand)
    if len(ci) == 0:
        empty_b = np.zeros(0, dtype=bool)
        return _Pass(ci, empty_b, empty_b, np.zeros(0), np.zeros(0))  # pragma: no mutate (empty: never read)
    window = ci[:, None] - np.arange(1, config.window + 1)[None, :]
    valid = window >= 0
    window = np.where(valid, window, 0)  # pragma: no mutate (any in-range index: invalid slots stay invalid)
    valid &= ss[window] == ss[ci][:, None]
    context = np.where(valid, vv[window], np.nan)
    enough = valid.sum(axis=1) >= config.min_context
    with np.errstate(invalid="ignore"), warnings.catch_warnings():  # pragma: no mutate (silences warnings only)
        # All-NaN rows (orphans) give NaN, handled below.
        warnings.simplefilter("ignore", RuntimeWarning)  # pragma: no mutate (silences warnings only)
        median = np.nanmedian(context, axis=1)
        mad = np.nanmedian(np.abs(context - median[:, None]), axis=1)
    positions = alive[ci]
    threshold = np.maximum(floor[positions], np.nan_to_num(mads[positions] * MAD_SCALE * mad))
    x, p, n = vv[ci], prev_v[ci], next_v[ci]
    orphan = orphans[ci]
    with np.errstate(invalid="ignore"):  # pragma: no mutate (silences warnings only)
        far_prev = (d_prev[ci] > threshold) | orphan
        d_next = np.abs(x - n)
        agree = np.abs(p - n) <= config.agree_fraction * threshold
        same_side = np.sign(x - p) == np.sign(x - n)
        spike = far_prev & ~orphan & enough & has_next[ci] & (d_next > threshold) & agree & same_side
    held = far_prev & ~has_next[ci] & ((now_us - received[positions]) < config.hold_us)
    deviation = np.minimum(d_prev[ci], d_next)  # read for spikes only (they have a next reading)
    return _Pass(positions.astype(np.int64), spike, held, threshold, deviation)


def _spike_detail(deviation: np.ndarray, threshold: np.ndarray) -> pa.Array:
    dev = pc.cast(pc.round(pa.array(deviation), 2), pa.string())
    thr = pc.cast(pc.round(pa.array(threshold), 2), pa.string())
    return pc.binary_join_element_wise(
        "isolated spike: deviates ", dev, " from both neighbours, which agree (threshold ", thr, ")", ""
    )


def remove_spikes(
    readings: pa.Table, context: pa.Table | None = None, *, now_us: int, config: SpikeConfig | None = None
) -> SpikeResult:
    """Decide the new ``readings`` (and the context's pending readings): accept, quarantine, or hold."""
    config = config or SpikeConfig()
    context = context if context is not None else CONTEXT.empty_table()
    state = context.column("state")
    pending = context.filter(pc.equal(state, "pending")).select(list(VITAL_COLUMNS))
    accepted_ctx = context.filter(pc.equal(state, "accepted")).select(list(VITAL_COLUMNS))
    new = readings.select(list(VITAL_COLUMNS))
    schema = new.schema
    undecided_rows = pa.concat_tables([new, pending.cast(schema)])
    n_new, n_und = new.num_rows, undecided_rows.num_rows
    if n_und == 0:
        empty = schema.empty_table()
        no_spikes = with_reason(empty, "spike", None)  # pragma: no mutate (no rows: the reason is not seen)
        return SpikeResult(empty, no_spikes, empty, 0)
    tables = [undecided_rows, accepted_ctx.cast(schema)]
    series = series_codes(tables)
    times = timestamps_us(tables)
    values = np.concatenate(
        [np.asarray(t.column("value").to_numpy(), dtype=np.float64) for t in tables]  # pragma: no mutate (float64)
    )
    metric_chunks = [*tables[0].column("metric").chunks, *tables[1].column("metric").chunks]
    metric = pa.chunked_array(metric_chunks, pa.string())  # pragma: no mutate (string chunks; never none: n_und > 0)
    accepted_received = np.zeros(tables[1].num_rows, dtype=np.int64)  # pragma: no mutate (never read: not undecided)
    received = np.concatenate([timestamps_us([undecided_rows], "received_at"), accepted_received])
    order = np.lexsort((times, series))
    s_series, s_values = series[order], values[order]
    s_undecided = order < n_und
    s_pending = (order >= n_new) & s_undecided
    s_floor = _per_metric(metric, config.floors, np.inf)[order]  # pragma: no mutate (NaN compares false like +inf)
    s_mads = _per_metric(metric, config.threshold_mads, 3.5)[order]
    s_received = received[order]

    alive = np.ones(len(order), dtype=bool)
    spike_pos: list[np.ndarray] = []
    spike_dev: list[np.ndarray] = []
    spike_thr: list[np.ndarray] = []
    for _ in range(_PASSES):
        result = _evaluate(
            np.flatnonzero(alive),
            s_series,
            s_values,
            s_undecided,
            s_pending,
            s_floor,
            s_mads,
            s_received,
            now_us,
            config,
        )
        held_pos = result.positions[result.held]
        if not result.spike.any():
            break
        found = result.positions[result.spike]
        alive[found] = False  # pragma: no mutate (None is False in a bool array)
        spike_pos.append(found)
        spike_dev.append(result.deviation[result.spike])
        spike_thr.append(result.threshold[result.spike])

    held_mask = np.zeros(len(order), dtype=bool)
    held_mask[held_pos] = True
    accepted_idx = order[s_undecided & alive & ~held_mask]
    held_idx = order[held_mask]
    spikes = np.concatenate(spike_pos) if spike_pos else np.zeros(0, dtype=np.int64)
    quarantined = with_reason(
        undecided_rows.take(pa.array(order[spikes])),
        "spike",
        _spike_detail(
            np.concatenate(spike_dev) if spike_dev else np.zeros(0),
            np.concatenate(spike_thr) if spike_thr else np.zeros(0),
        ),
    )
    return SpikeResult(
        accepted=undecided_rows.take(pa.array(accepted_idx)),
        quarantined=quarantined,
        held=undecided_rows.take(pa.array(held_idx[held_idx < n_new])),
        still_pending=int((held_idx >= n_new).sum()),
    )
