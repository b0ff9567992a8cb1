"""Object keys of the vitals data lake (CONTRACT §6), pure functions of the batch and the rows.

Every key ends in ``<batch_id>.<ext>`` inside its partition, so a replay of a batch overwrites the same
objects instead of adding new ones.

- ``raw/iot/vitals/dt=YYYY-MM-DD/hour=HH/<batch_id>.jsonl.gz`` by record arrival time (UTC)
- ``processed/vitals/dt=YYYY-MM-DD/hour=HH/<batch_id>.parquet`` by ``measured_at`` (UTC)
- ``quarantine/vitals/reason=R/dt=YYYY-MM-DD/<batch_id>.parquet`` by reason and ``measured_at`` day
- ``staging/vitals/pending/<batch_id>.parquet`` held readings, the COPY source of ``vitals_pending``
- ``manifests/vitals/<batch_id>.manifest`` the Redshift COPY manifest of the batch's processed files
- ``manifests/vitals-quarantine/<batch_id>.manifest`` the COPY manifest of the batch's quarantine objects
  (its own prefix: ``manifests/vitals/`` keeps one manifest per batch, CONTRACT §6)
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "HOUR_US",
    "hour_partition",
    "manifest_key",
    "partition_by_hour",
    "partition_by_reason_day",
    "pending_key",
    "processed_key",
    "quarantine_key",
    "quarantine_manifest_key",
    "raw_key",
    "s3_url",
]

HOUR_US = 3_600_000_000
_BATCH_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


def _check(batch_id: str) -> str:
    if not _BATCH_ID.match(batch_id):
        raise ValueError("batch_id must be 1-128 characters of [A-Za-z0-9._-]")
    return batch_id


def hour_partition(epoch_us: int) -> tuple[str, str]:
    """``(YYYY-MM-DD, HH)`` of an epoch-microsecond instant, UTC."""
    moment = datetime.fromtimestamp(epoch_us // 1_000_000, tz=UTC)
    return moment.strftime("%Y-%m-%d"), moment.strftime("%H")


def raw_key(pipeline_path: str, batch_id: str, arrived_hour_us: int) -> str:
    """Raw archive key, e.g. ``raw/iot/vitals/dt=2026-01-01/hour=07/<batch_id>.jsonl.gz``."""
    day, hour = hour_partition(arrived_hour_us)
    return f"raw/{pipeline_path}/dt={day}/hour={hour}/{_check(batch_id)}.jsonl.gz"


def processed_key(batch_id: str, day: str, hour: str) -> str:
    return f"processed/vitals/dt={day}/hour={hour}/{_check(batch_id)}.parquet"


def quarantine_key(batch_id: str, reason: str, day: str) -> str:
    if not re.match(r"^[a-z_]{1,32}$", reason):
        raise ValueError("reason must be lower-case letters and underscores")
    return f"quarantine/vitals/reason={reason}/dt={day}/{_check(batch_id)}.parquet"


def pending_key(batch_id: str) -> str:
    return f"staging/vitals/pending/{_check(batch_id)}.parquet"


def manifest_key(batch_id: str) -> str:
    return f"manifests/vitals/{_check(batch_id)}.manifest"


def quarantine_manifest_key(batch_id: str) -> str:
    return f"manifests/vitals-quarantine/{_check(batch_id)}.manifest"


def s3_url(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def _hours(table: pa.Table, column: str) -> npt.NDArray[np.int64]:
    micros = table.column(column).cast(pa.int64()).to_numpy(zero_copy_only=False)
    return np.asarray(micros, dtype=np.int64) // HOUR_US


def partition_by_hour(table: pa.Table, column: str = "measured_at") -> list[tuple[str, str, pa.Table]]:
    """Split ``table`` by the UTC hour of ``column``: ``[(day, hour, rows)]`` in time order, row order kept."""
    if table.num_rows == 0:
        return []
    hours = _hours(table, column)
    order = np.argsort(hours, kind="stable")
    sorted_hours = hours[order]
    starts = np.flatnonzero(np.r_[True, sorted_hours[1:] != sorted_hours[:-1]])
    ends = np.r_[starts[1:], len(order)]
    out = []
    for start, end in zip(starts, ends, strict=True):
        day, hour = hour_partition(int(sorted_hours[start]) * HOUR_US)
        rows = table if len(starts) == 1 else table.take(pa.array(order[start:end]))
        out.append((day, hour, rows))
    return out


def partition_by_reason_day(table: pa.Table, column: str = "measured_at") -> list[tuple[str, str, pa.Table]]:
    """Split quarantined rows by ``reason`` and UTC day of ``column``: ``[(reason, day, rows)]``."""
    out: list[tuple[str, str, pa.Table]] = []
    if table.num_rows == 0:
        return out
    for reason in sorted(set(pc.unique(table.column("reason")).to_pylist())):
        rows = table.filter(pc.equal(table.column("reason"), reason))
        days: dict[str, list[pa.Table]] = {}
        for day, _hour, part in partition_by_hour(rows, column):
            days.setdefault(day, []).append(part)
        out.extend((reason, day, pa.concat_tables(parts)) for day, parts in days.items())
    return out
