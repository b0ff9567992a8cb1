"""Drop duplicate readings: same (device_id, metric, measured_at); the first received wins.

Contract:
- Within the batch, the reading with the lowest ``arrival_seq`` of each key is kept; the others are rejected
  with reason ``duplicate``.
- A reading whose key is in ``seen`` (keys already decided: a bounded window of recent keys of the shard and
  the recent warehouse rows of the batch's series) is rejected as ``duplicate`` too: it came later.
- ``kept`` is ordered by series (device_id, metric), then ``measured_at``.
- :class:`KeyWindow` is the bounded per-shard memory of recent keys (an optimisation: the warehouse MERGE
  stays the authority for keys older than the window, so losing it in a crash loses nothing).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas.arrow import KEY_COLUMNS, KEYS
from workers.stages.result import StageResult, with_reason
from workers.stages.series import series_codes, timestamps_us

__all__ = ["KeyWindow", "dedupe"]

_IN_BATCH = "duplicate of an earlier reading in the same batch"
_EARLIER = "duplicate of a reading received in an earlier batch"


def dedupe(readings: pa.Table, seen: pa.Table | None = None) -> StageResult:
    """Keep the first received reading of each key that is not in ``seen``; reject the rest as duplicates."""
    seen_keys = (seen if seen is not None else KEYS.empty_table()).select(list(KEY_COLUMNS))
    if seen_keys.schema != KEYS:  # pragma: no mutate (a cast to an equal schema is the identity)
        seen_keys = seen_keys.cast(KEYS)
    n = readings.num_rows
    if n == 0:
        return StageResult(readings, with_reason(readings, "duplicate", None))  # pragma: no mutate (no rows)
    keys = readings.select(list(KEY_COLUMNS))
    series = series_codes([keys, seen_keys])
    times = timestamps_us([keys, seen_keys])
    arrival = np.concatenate(
        [
            np.asarray(readings.column("arrival_seq").to_numpy(), dtype=np.int64),  # pragma: no mutate (int64 column)
            np.full(seen_keys.num_rows, np.iinfo(np.int64).min, dtype=np.int64),  # pragma: no mutate (inferred int64)
        ]
    )
    order = np.lexsort((arrival, times, series))
    s_series, s_times = series[order], times[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = (s_series[1:] != s_series[:-1]) | (s_times[1:] != s_times[:-1])
    is_reading = order < n
    kept_idx = order[first & is_reading]
    dup_mask = ~first & is_reading
    dup_idx = order[dup_mask]
    group = np.cumsum(first) - 1
    leader = order[np.flatnonzero(first)][group[dup_mask]]
    detail = pc.if_else(pa.array(leader >= n), _EARLIER, _IN_BATCH)
    kept = readings.take(pa.array(kept_idx))
    rejected = with_reason(readings.take(pa.array(dup_idx)), "duplicate", detail)
    return StageResult(kept, rejected)


class KeyWindow:
    """The most recent ``max_keys`` keys of one shard, oldest dropped first (not thread-safe)."""

    def __init__(self, max_keys: int = 200_000) -> None:  # pragma: no mutate (the default size is not a behaviour)
        if max_keys < 0:
            raise ValueError("max_keys must be >= 0")
        self.max_keys = max_keys
        self._tables: list[pa.Table] = []
        self._rows = 0

    def __len__(self) -> int:
        return self._rows

    def add(self, keys: pa.Table) -> None:
        """Remember ``keys`` (a table with at least the key columns) as the newest."""
        if keys.num_rows == 0 or self.max_keys == 0:  # pragma: no mutate (an empty part changes no key)
            return
        table = keys.select(list(KEY_COLUMNS)).cast(KEYS)
        if table.num_rows > self.max_keys:  # pragma: no mutate (>=: slicing off 0 rows is the identity)
            table = table.slice(table.num_rows - self.max_keys)
        self._tables.append(table)
        self._rows += table.num_rows
        while self._rows - self._tables[0].num_rows >= self.max_keys:  # pragma: no mutate (>: trimmed below, same keys)
            self._rows -= self._tables.pop(0).num_rows
        if self._rows > self.max_keys:  # pragma: no mutate (>=: trims 0 rows)
            excess = self._rows - self.max_keys
            self._tables[0] = self._tables[0].slice(excess)
            self._rows -= excess

    def keys(self) -> pa.Table:
        """Every remembered key, as one ``KEYS`` table."""
        if not self._tables:
            return KEYS.empty_table()
        return pa.concat_tables(self._tables)

    def clear(self) -> None:
        self._tables.clear()
        self._rows = 0
