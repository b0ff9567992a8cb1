"""Writes the batch pipelines' Parquet to the data lake (processed and quarantine zones).

Contract: puts overwrite (keys come from :mod:`workers.sinks.files_layout`); with a KMS key configured every put
requests SSE-KMS under it; deleting a missing key is not an error (S3 semantics).
"""

from __future__ import annotations

import io
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from common.s3 import delete_objects, put_object

__all__ = ["LakeWriter", "parquet_bytes"]


def parquet_bytes(table: pa.Table) -> bytes:
    """``table`` as a Snappy-compressed Parquet file (pure): a codec Redshift's Parquet COPY documents."""
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="snappy")
    return sink.getvalue()


class LakeWriter:
    """Parquet puts and deletes in one bucket through an injected aiobotocore S3 client."""

    def __init__(self, s3: Any, bucket: str, kms_key_id: str | None = None) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.kms_key_id = kms_key_id

    async def put_parquet(self, key: str, table: pa.Table) -> None:
        await put_object(
            self.s3,
            self.bucket,
            key,
            parquet_bytes(table),
            content_type="application/vnd.apache.parquet",
            kms_key_id=self.kms_key_id,
        )

    async def delete(self, key: str) -> None:
        await self.s3.delete_object(Bucket=self.bucket, Key=key)

    async def delete_many(self, keys: list[str]) -> None:
        if keys:
            await delete_objects(self.s3, self.bucket, keys)

    async def list_keys(self, prefix: str) -> list[str]:
        """Every key under ``prefix`` (paginated)."""
        keys: list[str] = []
        paginator = self.s3.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            keys += [item["Key"] for item in page.get("Contents", [])]
        return keys
