"""PHI audit helpers: marker strings the test inputs carry, the PHI-bearing gateway requests, log capture as the
JSON formatter writes it, and scans of the warehouse and the lake for the markers."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import asyncpg
import httpx
import orjson
import pyarrow.parquet as pq

from common.logging import configure_logging
from loadtest.files import PHI_MARKERS
from tests.helpers.gateway import Gateway, reading

__all__ = [
    "ADDRESS",
    "IDENTITY_MARKERS",
    "NAME",
    "SSN",
    "capture_logs",
    "hits",
    "lake_text",
    "past_raw",
    "phi_readings",
    "post_phi_requests",
    "warehouse_text",
]

NAME = "Jonathan Q. Privatesson"
ADDRESS = "1600 Secretive Avenue"
SSN = "078-05-1120"
IDENTITY_MARKERS = (*PHI_MARKERS, "Privatesson", "Secretive", "DISPLAY-")
"""Names, street lines, cities, phones, SSNs, birth dates as sent and display texts: they may stand in raw/
only, nowhere else (logs, metric labels, answers, ``batch_quarantine``, the warehouse, processed/quarantine)."""


def phi_readings(device: str, value: float, message_id: str) -> list[dict[str, Any]]:
    """One accepted reading (``value``, ``message_id``: stored as sent) and seven refused ones whose fields carry
    a name, a street line, an SSN or a birth date (each with its reject code in the comment)."""
    return [
        reading(device, value=value, message_id=message_id),  # accepted
        reading(device, metric=NAME),  # unknown_metric
        reading(device, unit=ADDRESS),  # unknown_unit
        reading(device, patient_id=f"{NAME}"),  # invalid_value
        reading(device, measured_at=f"19840229 {NAME}"),  # invalid_timestamp
        reading(device, value=f"{SSN}"),  # invalid_type
        {**reading(device), "name": NAME},  # extra_field
        reading(f"{NAME}"),  # a malformed device id
    ]


async def post_phi_requests(
    http: httpx.AsyncClient, gateway: Gateway, device: str, readings: list[dict[str, Any]], other_device: str
) -> list[httpx.Response]:
    """``readings`` as one request (202), then refusals whose bodies or headers carry PHI: a cut JSON body and a
    JSON array (400), a name as the token (401), a name as a text body (415), a reading of ``other_device`` (403)."""
    headers = gateway.headers(device)
    return [
        await http.post("/v1/vitals", content=orjson.dumps({"readings": readings}), headers=headers),
        await http.post("/v1/vitals", content=f'{{"name": "{NAME}", '.encode(), headers=headers),
        await http.post("/v1/vitals", content=orjson.dumps([NAME]), headers=headers),
        await http.post(
            "/v1/vitals",
            content=orjson.dumps(reading(device)),
            headers={"Authorization": f"Bearer {NAME}", "Content-Type": "application/json"},
        ),
        await http.post("/v1/vitals", content=NAME.encode(), headers=gateway.headers(device, "text/plain")),
        await http.post("/v1/vitals", content=orjson.dumps(reading(other_device, message_id=SSN)), headers=headers),
    ]


@contextmanager
def capture_logs() -> Iterator[io.StringIO]:
    """Every log line of this process, as ``configure_logging("DEBUG")`` writes it (JSON formatter on the root
    logger, the AWS and asyncio libraries at WARNING); the handlers and levels are restored afterwards."""
    stream = io.StringIO()
    root = logging.getLogger()
    noisy = [logging.getLogger(name) for name in ("botocore", "aiobotocore", "urllib3", "asyncio")]
    saved = root.handlers[:], root.level, [logger.level for logger in noisy]
    configure_logging("DEBUG", stream)
    try:
        yield stream
    finally:
        root.handlers[:], level, levels = saved
        root.setLevel(level)
        for logger, previous in zip(noisy, levels, strict=True):
            logger.setLevel(previous)


def hits(where: str, text: str, markers: Iterable[str]) -> list[str]:
    """``where: marker`` for each marker found in ``text``."""
    return [f"{where}: {marker}" for marker in markers if marker in text]


async def warehouse_text(url: str, tables: Sequence[str]) -> dict[str, str]:
    """Every row of every table as JSON text, by table."""
    conn = await asyncpg.connect(url)
    try:
        return {
            table: "\n".join(r["j"] for r in await conn.fetch(f"SELECT row_to_json(t)::text AS j FROM {table} AS t"))
            for table in tables
        }
    finally:
        await conn.close()


async def lake_text(s3: Any, bucket: str, prefixes: Sequence[str]) -> dict[str, str]:
    """Every Parquet object under ``prefixes``, decoded (schema and rows) to text, by key."""
    out: dict[str, str] = {}
    paginator = s3.get_paginator("list_objects_v2")
    for prefix in prefixes:
        async for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                response = await s3.get_object(Bucket=bucket, Key=item["Key"])
                async with response["Body"] as body:
                    data = bytes(await body.read())
                if item["Key"].endswith(".parquet"):
                    table = pq.read_table(io.BytesIO(data))
                    out[item["Key"]] = f"{table.schema}\n{table.to_pylist()}"
                else:
                    out[item["Key"]] = data.decode("utf-8", errors="replace")
    return out


async def past_raw(
    url: str, tables: Sequence[str], s3: Any, bucket: str, logs: str, markers: Iterable[str]
) -> list[str]:
    """Where ``markers`` stand past raw/: in the warehouse ``tables``, the processed/, quarantine/ and staging/
    zones (Parquet decoded) and ``logs``. The zones must hold something."""
    markers = tuple(markers)
    found = [hit for table, text in (await warehouse_text(url, tables)).items() for hit in hits(table, text, markers)]
    lake = await lake_text(s3, bucket, ("processed/", "quarantine/", "staging/"))
    assert lake, "the lake zones were written"
    found += [hit for key, text in lake.items() for hit in hits(key, text, markers)]
    return found + hits("logs", logs, markers)
