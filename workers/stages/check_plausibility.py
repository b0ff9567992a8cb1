"""Quarantine physiologically implausible values (CONTRACT §3 ranges, inclusive, canonical unit).

Contract: a reading is kept iff its metric is in the catalogue and ``min <= value <= max`` (NaN and
infinities are implausible). Rejected rows get reason ``implausible`` and a detail naming the range.
Row order is preserved.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas.catalogue import METRICS, plausible_bounds
from workers.stages.result import StageResult, with_reason

__all__ = ["Bounds", "check_plausibility", "default_bounds"]

Bounds = tuple[Mapping[str, float], Mapping[str, float]]


def default_bounds() -> Bounds:
    return plausible_bounds()


def _fmt(x: float) -> str:
    return f"{x:g}"


def check_plausibility(readings: pa.Table, bounds: Bounds | None = None) -> StageResult:
    """Split ``readings`` into plausible (kept) and implausible (rejected) rows."""
    lows, highs = bounds if bounds is not None else plausible_bounds()
    names = sorted(set(lows) & set(highs))
    lo = np.array([lows[m] for m in names] + [np.nan], dtype=np.float64)  # pragma: no mutate (float64 anyway)
    hi = np.array([highs[m] for m in names] + [np.nan], dtype=np.float64)  # pragma: no mutate (float64 anyway)
    details = [
        f"value outside plausible range [{_fmt(lows[m])}, {_fmt(highs[m])}] {METRICS[m].canonical_unit}"
        if m in METRICS
        else f"value outside plausible range [{_fmt(lows[m])}, {_fmt(highs[m])}]"
        for m in names
    ] + ["unknown metric"]
    index = pc.index_in(readings.column("metric"), value_set=pa.array(names, pa.string()))
    idx = np.asarray(index.fill_null(len(names)).to_numpy(zero_copy_only=False), dtype=np.int64)  # pragma: no mutate
    values = np.asarray(readings.column("value").to_numpy(zero_copy_only=False), dtype=np.float64)  # pragma: no mutate
    with np.errstate(invalid="ignore"):  # pragma: no mutate (NaN comparisons do not warn either way)
        ok = (values >= lo[idx]) & (values <= hi[idx])
    mask = pa.array(ok)
    bad = np.flatnonzero(~ok)
    # The "no mutate" lines above: the dtypes given are the ones numpy infers (index_in's int32 indexes the
    # same); below, the details are never empty, so pa.string() is what pyarrow infers.
    detail = pa.array(details, pa.string())  # pragma: no mutate
    rejected = with_reason(readings.take(pa.array(bad)), "implausible", detail.take(pa.array(idx[bad])))
    return StageResult(readings.filter(mask), rejected)
