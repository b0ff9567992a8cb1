"""Parquet sink: processed and quarantined readings (and held ones) as Snappy Parquet objects in S3.

Contract:
- ``encode_parquet`` is deterministic for a given table (same bytes for the same rows), Snappy (these objects
  are Redshift COPY sources, and Snappy is the Parquet codec the COPY documentation names), row groups of
  at most ``ROW_GROUP_ROWS`` rows, dictionary encoding and statistics on.
- ``write_processed`` writes one object per ``measured_at`` hour, ``write_quarantine`` one per (reason,
  day), ``write_pending`` one object; keys come from ``layout``, so a replay overwrites.
- Each write returns the objects written (url, key, size, rows) for the batch's COPY manifest.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from common.s3 import delete_objects, get_object, put_object
from workers.sinks.layout import (
    partition_by_hour,
    partition_by_reason_day,
    pending_key,
    processed_key,
    quarantine_key,
    s3_url,
)

__all__ = ["ROW_GROUP_ROWS", "ParquetS3", "WrittenObject", "decode_parquet", "encode_parquet"]

ROW_GROUP_ROWS = 131_072


@dataclass(frozen=True, slots=True)
class WrittenObject:
    url: str
    key: str
    size: int
    rows: int


def encode_parquet(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(
        table,
        sink,
        compression="snappy",
        row_group_size=ROW_GROUP_ROWS,
        use_dictionary=True,
        write_statistics=True,
        coerce_timestamps="us",
    )
    return bytes(sink.getvalue())


def decode_parquet(data: bytes) -> pa.Table:
    return pq.read_table(pa.BufferReader(data))


class ParquetS3:
    """Writes the vitals Parquet zones of one bucket."""

    def __init__(self, s3: Any, bucket: str, *, kms_key_id: str | None = None) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.kms_key_id = kms_key_id

    async def _put(self, key: str, table: pa.Table) -> WrittenObject:
        body = await asyncio.to_thread(encode_parquet, table)
        await put_object(
            self.s3, self.bucket, key, body, content_type="application/vnd.apache.parquet", kms_key_id=self.kms_key_id
        )
        return WrittenObject(s3_url(self.bucket, key), key, len(body), table.num_rows)

    async def write_processed(self, batch_id: str, table: pa.Table) -> list[WrittenObject]:
        parts = partition_by_hour(table)
        return list(
            await asyncio.gather(*(self._put(processed_key(batch_id, day, hour), rows) for day, hour, rows in parts))
        )

    async def write_quarantine(self, batch_id: str, table: pa.Table) -> list[WrittenObject]:
        parts = partition_by_reason_day(table)
        return list(
            await asyncio.gather(
                *(self._put(quarantine_key(batch_id, reason, day), rows) for reason, day, rows in parts)
            )
        )

    async def write_pending(self, batch_id: str, table: pa.Table) -> WrittenObject | None:
        if table.num_rows == 0:
            return None
        return await self._put(pending_key(batch_id), table)

    async def read(self, key: str) -> pa.Table | None:
        data = await get_object(self.s3, self.bucket, key)
        return None if data is None else decode_parquet(data)

    async def delete(self, keys: list[str]) -> None:
        if keys:
            await delete_objects(self.s3, self.bucket, keys)
