"""Helpers for the batch (ehr / claims) pipeline tests: CSV builders, one-object batches, warehouse reads."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pyarrow as pa
import pyarrow.parquet as pq

from tests.conftest import Resources
from workers.formats.claims import HEADER as CLAIMS_HEADER
from workers.formats.encounters import HEADER as ENCOUNTERS_HEADER
from workers.formats.patients import HEADER as PATIENTS_HEADER
from workers.pipelines.files import FileBatchHandler, ParsedFile
from workers.runtime.types import Batch, SourceRecord, make_batch
from workers.sinks.files_s3 import LakeWriter
from workers.warehouse.postgres.files import PostgresBatchLoader

__all__ = [
    "CLAIMS_HEADER",
    "ENCOUNTERS_HEADER",
    "PATIENTS_HEADER",
    "T0_US",
    "batch_handler",
    "claim",
    "csv_bytes",
    "encounter",
    "fetch",
    "list_keys",
    "object_batch",
    "patient",
    "read_parquet",
]

T0_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z


def csv_bytes(header: Sequence[str], rows: Sequence[Mapping[str, str] | Sequence[str]] | Sequence[Any]) -> bytes:
    """An RFC 4180 file (CRLF, minimal quoting) with ``header`` and ``rows`` (dicts fill missing with '')."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([row.get(c, "") for c in header] if isinstance(row, Mapping) else list(row))
    return out.getvalue().encode()


def patient(patient_id: str, **over: str) -> dict[str, str]:
    row = {
        "patient_id": patient_id,
        "family_name": "Zyxwvut",
        "given_name": "Qwertyuiop",
        "birth_date": "1980-02-29",
        "sex": "female",
        "postal_code": "02139",
        "street_address": "742 Evergreen Terrace",
    }
    return row | over


def encounter(encounter_id: str, patient_id: str = "P1", **over: str) -> dict[str, str]:
    row = {
        "encounter_id": encounter_id,
        "patient_id": patient_id,
        "provider_id": "DR7",
        "encounter_type": "inpatient",
        "admit_at": "2026-01-01T08:00:00Z",
        "discharge_at": "2026-01-02T20:00:00+02:00",
        "primary_dx": "I10",
    }
    return row | over


def claim(claim_id: str, line: int = 1, **over: str) -> dict[str, str]:
    row = {
        "claim_id": claim_id,
        "line_number": str(line),
        "patient_id": "P1",
        "provider_npi": "1234567893",
        "service_date": "2026-01-05",
        "procedure_code": "99213",
        "dx_code": "I10",
        "billed_amount": "150.00",
        "allowed_amount": "120.50",
        "paid_amount": "100.25",
        "status": "paid",
        "denial_reason": "",
    }
    return row | over


def object_batch(pipeline: str, key: str, data: bytes, etag: str = "etag-1", arrived_at_us: int = T0_US) -> Batch:
    """The batch the s3_events source makes of one object."""
    return make_batch(pipeline, key, [SourceRecord(data=data, key=key, position=etag, arrived_at_us=arrived_at_us)])


@asynccontextmanager
async def batch_handler(
    resources: Resources,
    s3: Any,
    pipeline: str,
    parse: Callable[[str, bytes], ParsedFile],
    lake_tables: tuple[str, ...],
    kms_key_id: str | None = None,
) -> AsyncIterator[FileBatchHandler]:
    """A :class:`FileBatchHandler` on the test's bucket and the real PostgreSQL loader."""
    loader = await PostgresBatchLoader.connect(resources.warehouse_url)
    try:
        yield FileBatchHandler(pipeline, parse, LakeWriter(s3, resources.names.bucket, kms_key_id), loader, lake_tables)
    finally:
        await loader.close()


async def fetch(url: str, query: str, *args: Any) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(url)
    try:
        return [dict(r) for r in await conn.fetch(query, *args)]
    finally:
        await conn.close()


async def list_keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    response = await s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(obj["Key"] for obj in response.get("Contents", []))


async def read_parquet(s3: Any, bucket: str, key: str) -> tuple[pa.Table, bytes]:
    response = await s3.get_object(Bucket=bucket, Key=key)
    async with response["Body"] as body:
        data = bytes(await body.read())
    return pq.read_table(io.BytesIO(data)), data


async def run_files(
    resources: Resources,
    s3: Any,
    pipeline: str,
    parse: Any,
    lake_tables: tuple[str, ...],
    loader: Any,
    batches: Sequence[Batch],
) -> None:
    """Handle ``batches`` in order through a :class:`FileBatchHandler` of ``pipeline`` on ``loader``."""
    handler = FileBatchHandler(pipeline, parse, LakeWriter(s3, resources.names.bucket), loader, lake_tables)
    for batch in batches:
        await handler.handle(batch)


async def snapshot_queries(url: str, queries: Mapping[str, str]) -> dict[str, list[tuple[Any, ...]]]:
    """Every query's rows as tuples, by name."""
    conn = await asyncpg.connect(url)
    try:
        return {name: [tuple(r.values()) for r in await conn.fetch(q)] for name, q in queries.items()}
    finally:
        await conn.close()
