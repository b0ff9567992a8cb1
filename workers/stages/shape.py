"""Pure reshaping between stage outputs and the tables the sinks and the warehouse take."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from schemas.arrow import KEY_COLUMNS, PENDING, PROCESSED_VITALS, QUARANTINED_VITALS, SERIES, TIMESTAMP, VITAL_COLUMNS

__all__ = ["drop_keys", "series_table", "to_pending", "to_processed", "to_quarantined"]


def _const(value: str, n: int) -> pa.Array:
    return pa.repeat(pa.scalar(value, pa.string()), n)  # pragma: no mutate (a str scalar is inferred string)


def to_processed(table: pa.Table, batch_id: str) -> pa.Table:
    """``VITAL_COLUMNS`` rows + ``batch_id`` as ``PROCESSED_VITALS``."""
    out = table.select(list(VITAL_COLUMNS)).append_column("batch_id", _const(batch_id, table.num_rows))
    return out.cast(PROCESSED_VITALS)


def to_quarantined(tables: list[pa.Table], batch_id: str) -> pa.Table:
    """Rejected rows (any schema with the vital columns, ``reason`` and ``detail``) as ``QUARANTINED_VITALS``."""
    parts = [to_processed(t, batch_id).append_column("reason", t.column("reason")).append_column(
        "detail", t.column("detail")).cast(QUARANTINED_VITALS) for t in tables]  # fmt: skip
    return pa.concat_tables([QUARANTINED_VITALS.empty_table(), *parts])


def to_pending(table: pa.Table, batch_id: str, source_id: str) -> pa.Table:
    out = to_processed(table, batch_id).append_column("source_id", _const(source_id, table.num_rows))
    return out.cast(PENDING)


def series_table(readings: pa.Table, lookback_us: int) -> pa.Table:
    """One row per (device_id, metric) of ``readings``: ``since`` = its oldest ``measured_at`` - ``lookback_us``."""
    grouped = (
        readings.select(["device_id", "metric", "measured_at"])
        .group_by(["device_id", "metric"], use_threads=False)  # pragma: no mutate (threads only reorder the series)
        .aggregate([("measured_at", "min")])
    )
    oldest = np.asarray(grouped.column("measured_at_min").cast(pa.int64()).to_numpy())
    since = pa.array(oldest - lookback_us).cast(TIMESTAMP)  # an int64 array of epoch microseconds
    return pa.Table.from_arrays([grouped.column("device_id"), grouped.column("metric"), since], schema=SERIES)


def drop_keys(table: pa.Table, keys: pa.Table) -> pa.Table:
    """``table`` without the rows whose (device_id, metric, measured_at) is in ``keys``; row order kept."""
    if keys.num_rows == 0 or table.num_rows == 0:
        return table
    marked = keys.select(list(KEY_COLUMNS)).cast(pa.schema([table.schema.field(c) for c in KEY_COLUMNS]))
    rows = np.arange(table.num_rows, dtype=np.int64)  # pragma: no mutate (int64 is numpy's default here)
    indexed = table.append_column("_row", pa.array(rows))
    joined = indexed.join(marked, keys=list(KEY_COLUMNS), join_type="left anti").sort_by("_row")
    return joined.drop_columns(["_row"]).cast(table.schema)
