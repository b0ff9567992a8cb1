"""Vectorised helpers shared by stages: integer codes for (device_id, metric) series and key order."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["codes", "series_codes", "timestamps_us"]

Int64s = npt.NDArray[np.int64]


def codes(columns: Sequence[pa.Array | pa.ChunkedArray]) -> Int64s:
    """Dictionary codes over the concatenation of ``columns`` (equal strings get equal codes)."""
    chunks: list[pa.Array] = []
    for column in columns:
        chunks.extend(column.chunks if isinstance(column, pa.ChunkedArray) else [column])
    if not chunks:
        return np.empty(0, dtype=np.int64)
    merged = pa.concat_arrays(chunks) if len(chunks) > 1 else chunks[0]  # pragma: no mutate (one chunk: no copy needed)
    if len(merged) == 0:
        return np.empty(0, dtype=np.int64)
    encoded = pc.dictionary_encode(merged, null_encoding="encode")
    indices = encoded.indices.to_numpy(zero_copy_only=False)  # pragma: no mutate (nulls are encoded: no nulls)
    return np.asarray(indices, dtype=np.int64)


def series_codes(tables: Sequence[pa.Table]) -> Int64s:
    """One int64 code per row of the concatenated ``tables`` for its (device_id, metric) series."""
    devices = codes([t.column("device_id") for t in tables])
    metrics = codes([t.column("metric") for t in tables])
    width = int(metrics.max()) + 1 if len(metrics) else 1  # pragma: no mutate (no rows: any width)
    return devices * width + metrics


def timestamps_us(tables: Sequence[pa.Table], column: str = "measured_at") -> Int64s:
    """The ``column`` timestamps of the concatenated ``tables`` as epoch microseconds."""
    parts: list[Int64s] = []
    for t in tables:
        us = t.column(column).cast(pa.int64()).to_numpy()
        parts.append(np.asarray(us, dtype=np.int64))  # pragma: no mutate (int64 already)
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
