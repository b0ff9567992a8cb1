"""Large batch files through the real ``claims`` / ``ehr`` workers (moto S3/SQS, private PostgreSQL).

The files are generated on the fly, tens of MB (CI); the chunk size is set small (``VITALSTREAM_FILE_CHUNK_BYTES``)
so each file spans dozens of chunks. The 1 GB / 500 MB forms run in ``make bigfiles`` (bench/bigfiles.py).
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import Resources
from tests.helpers.batch import PATIENTS_HEADER, csv_bytes, fetch, list_keys, patient
from tests.helpers.bigfiles import BAD_LINES, Expected, write_claims, write_fhir
from vitalstream.devstack.clients import AwsClients
from vitalstream.devstack.processes import free_port, spawn

pytestmark = pytest.mark.integration

CHUNK = 512 * 1024
REPO = Path(__file__).resolve().parents[2]


def _worker(pipeline: str, resources: Resources, tmp_path: Path, name: str) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "VITALSTREAM_"))}
    env.update(resources.env)
    env.update(
        {
            "VITALSTREAM_FILE_CHUNK_BYTES": str(CHUNK),
            "VITALSTREAM_FILE_VISIBILITY_SECONDS": "4",
            "VITALSTREAM_METRICS_PORT": str(free_port()),
            "VITALSTREAM_LOG_LEVEL": "INFO",
        }
    )
    argv = [sys.executable, "-m", "vitalstream", "worker", pipeline]
    return spawn(name, argv, tmp_path, env=env, cwd=REPO).pid


async def _until(check: Callable[[], Awaitable[bool]], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _kill(pid: int) -> None:
    os.killpg(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


async def _audits(url: str) -> list[dict[str, object]]:
    return await fetch(url, "SELECT rows_in, rows_loaded, rows_quarantined, rows_duplicate FROM load_audit")


async def test_claims_files_load_exactly_once_across_a_sigkill_mid_file(
    resources: Resources, clients: AwsClients, tmp_path: Path, pids: list[int]
) -> None:
    bucket, url = resources.names.bucket, resources.warehouse_url
    plain, packed = io.BytesIO(), io.BytesIO()
    expected = write_claims(plain, 300_000)
    write_claims(packed, 300_000, compress=True)
    assert expected.bytes > 20 * 2**20  # dozens of chunks
    await clients.s3.put_object(Bucket=bucket, Key="raw/claims/big.csv", Body=plain.getvalue())

    pid = _worker("claims", resources, tmp_path, "claims-1")
    pids.append(pid)
    parts = "processed/claims/big.csv/part-"

    async def mid_file() -> bool:
        return len(await list_keys(clients.s3, bucket, parts)) >= 3

    await _until(mid_file, 90, "the first parts of the file")
    _kill(pid)
    # Nothing of the half-read file is in the warehouse.
    assert await _audits(url) == []
    assert await fetch(url, "SELECT count(*) AS n FROM fact_claims") == [{"n": 0}]

    pid = _worker("claims", resources, tmp_path, "claims-2")
    pids.append(pid)
    await clients.s3.put_object(Bucket=bucket, Key="raw/claims/big.csv.gz", Body=packed.getvalue())

    async def both_loaded() -> bool:
        return len(await _audits(url)) == 2

    await _until(both_loaded, 240, "both files committed")
    rows_in = expected.rows
    loaded = expected.good_keys
    assert await _audits(url) == [
        {"rows_in": rows_in, "rows_loaded": loaded, "rows_quarantined": len(expected.bad),
         "rows_duplicate": expected.duplicates},
    ] * 2  # fmt: skip
    # The same claims in both files: one row per (claim_id, line_number), the later line of a duplicate wins.
    assert await fetch(url, "SELECT count(*) AS n FROM fact_claims") == [{"n": loaded}]
    assert await fetch(url, "SELECT paid_amount FROM fact_claims WHERE claim_id = 'C000024999'") == [
        {"paid_amount": Decimal("99.99")}
    ]
    quarantined = await fetch(
        url, "SELECT source_key, line_number, reason FROM batch_quarantine ORDER BY source_key, line_number"
    )
    assert quarantined == [
        {"source_key": key, "line_number": line, "reason": reason}
        for key in ("raw/claims/big.csv", "raw/claims/big.csv.gz")
        for line, reason in sorted(BAD_LINES.items())
        if line <= expected.rows + 1
    ]
    # The lake: one part per chunk, every good row exactly once per file (no part left from the killed run).
    for key in ("big.csv", "big.csv.gz"):
        keys = await list_keys(clients.s3, bucket, f"processed/claims/{key}/part-")
        assert len(keys) > 20
        assert keys == [f"processed/claims/{key}/part-{i:05d}.parquet" for i in range(len(keys))]
        total = 0
        for part in keys:
            response = await clients.s3.get_object(Bucket=bucket, Key=part)
            async with response["Body"] as body:
                total += pq.read_metadata(io.BytesIO(await body.read())).num_rows
        assert total == expected.rows - len(expected.bad)  # duplicates across chunks are resolved by the merge
    _kill(pid)


PHI = ("Zyxwvut", "Qwertyuiop", "Evergreen", "DISPLAY-")
"""Names, street lines and display texts the inputs carry; none may reach the warehouse, the lake or the logs."""


async def _load_fhir(resources: Resources, clients: AwsClients, tmp_path: Path, pids: list[int]) -> Expected:
    plain = io.BytesIO()
    expected = write_fhir(plain, 60_000, compress=True)
    bucket = resources.names.bucket
    await clients.s3.put_object(Bucket=bucket, Key="raw/ehr/fhir/bulk/all.ndjson.gz", Body=plain.getvalue())
    patients = csv_bytes(PATIENTS_HEADER, [patient("CSV1"), patient("CSV2", birth_date="1999-02-30")])
    await clients.s3.put_object(Bucket=bucket, Key="raw/ehr/patients/p.csv", Body=patients)
    pid = _worker("ehr", resources, tmp_path, "ehr-1")
    pids.append(pid)

    async def loaded() -> bool:
        return len(await _audits(resources.warehouse_url)) == 2

    await _until(loaded, 120, "the FHIR and CSV files committed")
    _kill(pid)
    return expected


async def test_fhir_bulk_export_gz_streams_and_skips_other_resource_types(
    resources: Resources, clients: AwsClients, tmp_path: Path, pids: list[int]
) -> None:
    expected = await _load_fhir(resources, clients, tmp_path, pids)
    url = resources.warehouse_url
    fhir = {
        "rows_in": expected.good_keys,
        "rows_loaded": expected.good_keys,
        "rows_quarantined": 0,
        "rows_duplicate": 0,
    }
    assert fhir in await _audits(url)
    assert await fetch(url, "SELECT count(*) AS n FROM dim_patient") == [{"n": 20_001}]
    assert await fetch(url, "SELECT count(*) AS n FROM fact_encounters") == [{"n": 20_000}]
    assert await fetch(url, "SELECT DISTINCT postal_code FROM dim_patient ORDER BY 1") == [
        {"postal_code": "021"}, {"postal_code": "941"}
    ]  # fmt: skip
    assert await fetch(url, "SELECT line_number, reason FROM batch_quarantine") == [
        {"line_number": 3, "reason": "invalid_date"}
    ]
    log = (tmp_path / "ehr-1.log").read_text()
    assert '"resources_skipped":{"Observation":20000}' in log


async def test_no_name_street_or_display_text_reaches_warehouse_lake_or_logs(
    resources: Resources, clients: AwsClients, tmp_path: Path, pids: list[int]
) -> None:
    await _load_fhir(resources, clients, tmp_path, pids)
    url, bucket = resources.warehouse_url, resources.names.bucket
    found: list[str] = []
    for table in ("dim_patient", "fact_encounters", "batch_quarantine", "load_audit"):
        rows = await fetch(url, f"SELECT row_to_json(t)::text AS j FROM {table} AS t")
        assert rows
        found += [f"{table}: {marker}" for row in rows for marker in PHI if marker in row["j"]]
    keys = [k for zone in ("processed/", "quarantine/") for k in await list_keys_all(clients.s3, bucket, zone)]
    assert len(keys) >= 4
    for key in keys:
        response = await clients.s3.get_object(Bucket=bucket, Key=key)
        async with response["Body"] as body:
            table = pq.read_table(io.BytesIO(await body.read()))
        text = str(table.to_pylist()) + str(table.schema)
        found += [f"{key}: {marker}" for marker in PHI if marker in text]
    log = (tmp_path / "ehr-1.log").read_text()
    assert "batch file loaded" in log
    found += [f"log: {marker}" for marker in PHI if marker in log]
    assert found == []


async def list_keys_all(s3: object, bucket: str, prefix: str) -> list[str]:
    keys: list[str] = []
    paginator = s3.get_paginator("list_objects_v2")  # type: ignore[attr-defined]
    async for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        keys += [item["Key"] for item in page.get("Contents", [])]
    return keys
