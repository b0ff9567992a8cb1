"""X12, HL7 v2 and DMS CDC files through the file handler in 64-byte reads and small row bounds (many chunks per
file, boundaries inside segments, messages and rows) end as the same warehouse rows as read in one chunk; an X12
interchange rejected after its rows were staged leaves nothing of it (the handler redoes the file without it);
an interchange's rejection is never read as the whole file's; a CDC file unreadable in a later block is
quarantined whole with nothing of it visible. PostgreSQL loader, and the Redshift Data API loader (stand-in)
for the tiny-chunk run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg
import pytest

from common.settings import WorkerSettings
from loadtest.files import Adjudication, Adt, Claim, ClaimLine, cdc_file, hl7_file, x12_835, x12_837
from tests.conftest import WAREHOUSE_TABLES, Resources
from tests.helpers.batch import T0_US, list_keys, object_batch, read_parquet, snapshot_queries
from vitalstream.devstack.clients import AwsClients
from workers.pipelines import claims, ehr
from workers.pipelines.files import FileBatchHandler, FileSettings, StreamParser
from workers.runtime.types import BatchResult
from workers.sinks.files_s3 import LakeWriter
from workers.warehouse.file_types import BatchLoader
from workers.warehouse.open import open_loader
from workers.warehouse.postgres.files import PostgresBatchLoader

pytestmark = pytest.mark.integration

REDSHIFT = "redshift-data://vitalstream/dev?iam_role=arn:aws:iam::123456789012:role/vitalstream-copy"
TINY = FileSettings(read_bytes=64, ratio_floor=4096)
QUERIES = {
    "fact_claims": "SELECT * FROM fact_claims ORDER BY claim_id, line_number",
    "claim_adjudications": "SELECT * FROM claim_adjudications ORDER BY 1, 2",
    "batch_quarantine": "SELECT pipeline, source_key, line_number, reason, detail FROM batch_quarantine "
    "ORDER BY 1, 2, 3, 4, 5",
    "dim_patient": "SELECT patient_id, birth_date, sex, postal_code, valid_from, valid_to, is_current FROM dim_patient "
    "ORDER BY patient_id, valid_from",
    "fact_encounters": "SELECT * FROM fact_encounters ORDER BY encounter_id",
    "adt_event_log": "SELECT * FROM adt_event_log ORDER BY message_control_id",
    "cdc_key_state": "SELECT * FROM cdc_key_state ORDER BY 1, 2",
    "load_audit": "SELECT batch_id, rows_in, rows_loaded, rows_quarantined, rows_duplicate FROM load_audit ORDER BY 1",
}
_LINES = (ClaimLine("99213", "150.00"), ClaimLine("85025", "40.00", dx_pointer=2))
GOOD = x12_837([Claim(f"A{i}", lines=_LINES) for i in range(5)], control=1)
BAD_SE = x12_837([Claim(f"E{i}", lines=_LINES) for i in range(8)], control=3, break_se_count=True)
X12 = (
    GOOD
    + x12_835([Adjudication("A1", "1", ((1, "150", "100", "120", None),)),
               Adjudication("A2", "4", (), claim_adjustment=("CO", "50", "150"))], control=2)
    + BAD_SE
    + x12_837([Claim("A0", lines=(ClaimLine("99214", "99.00"),)), Claim("BAD", lines=(ClaimLine(billed="1.234"),))],
              control=4)
)  # fmt: skip
ADT = [
    Adt(f"M{i:02d}", f"202601{5 + (29 - i) % 20:02d}1015", ("A01", "A02", "A03", "A08", "A05")[i % 5], f"P{i % 4}",
        visit=f"V{i % 4}", dx="I10")
    for i in range(30)
]  # fmt: skip
CDC_ROWS = [
    {"Op": "IUD"[i % 3], "dms_commit_ts": f"2026-01-05 10:00:{i % 60:02d}.{i:06d}", "patient_id": f"P{i % 9}",
     "family_name": "Zyxwvut", "given_name": "Qwertyuiop", "birth_date": f"19{50 + i % 40}-12-31", "sex": "female",
     "postal_code": "02139", "street_address": "742 Evergreen Terrace"}
    for i in range(60)
]  # fmt: skip
FILES = {
    "raw/claims/x12/mixed.x12": X12,
    "raw/ehr/hl7/adt.hl7": hl7_file(ADT, "crlf"),
    "raw/ehr/cdc/dbo/patients/20260105-1000000000.csv": cdc_file(CDC_ROWS),
    "raw/ehr/cdc/dbo/patients/20260105-1100000000.parquet": cdc_file(CDC_ROWS[::-1], parquet=True),
}


async def _reset(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"TRUNCATE {', '.join(WAREHOUSE_TABLES)} RESTART IDENTITY")
    finally:
        await conn.close()


async def _load(
    resources: Resources, s3: Any, parsers: Mapping[str, StreamParser], settings: FileSettings | None,
    files: Mapping[str, bytes], *, redshift: bool = False,
) -> list[BatchResult]:  # fmt: skip
    if redshift:
        worker = WorkerSettings(bucket=resources.names.bucket, warehouse_url=REDSHIFT)
        loader: BatchLoader = await open_loader(REDSHIFT, settings=worker, s3=s3)
    else:
        loader = await PostgresBatchLoader.connect(resources.warehouse_url)
    lake = LakeWriter(s3, resources.names.bucket)
    try:
        results = []
        for n, (key, data) in enumerate(files.items()):
            pipeline = "claims" if key.startswith("raw/claims/") else "ehr"
            tables = claims.LAKE_TABLES if pipeline == "claims" else ehr.LAKE_TABLES
            handler = FileBatchHandler(pipeline, parsers[pipeline], lake, loader, tables, settings=settings)
            results.append(await handler.handle(object_batch(pipeline, key, data, f"etag-{n}", T0_US + n)))
        return results
    finally:
        await loader.close()


async def _lake_claim_ids(s3: Any, bucket: str) -> set[str]:
    ids: set[str] = set()
    for key in await list_keys(s3, bucket, "processed/claims/"):
        table, _ = await read_parquet(s3, bucket, key)
        if "claim_id" in table.column_names:
            ids |= set(table.column("claim_id").to_pylist())
    return ids


async def test_feeds_in_tiny_chunks_end_as_read_whole(
    resources: Resources, clients: AwsClients, redshift_on_test_db: str
) -> None:
    url, bucket = resources.warehouse_url, resources.names.bucket
    whole = {"claims": claims.claims_parser(), "ehr": ehr.ehr_parser()}
    tiny = {"claims": claims.claims_parser(2048, x12_rows=4), "ehr": ehr.ehr_parser(512, hl7_rows=3)}

    whole_results = await _load(resources, clients.s3, whole, None, FILES)
    expected = await snapshot_queries(url, QUERIES)
    assert {r[0] for r in expected["fact_claims"]} == {"A0", "A1", "A2", "A3", "A4"}
    assert len(expected["fact_claims"]) == 10
    assert [r[5] for r in expected["fact_claims"] if r[:2] == ("A0", 1)] == ["99214"]  # interchange 4's line wins
    quarantined = {(r[1].rsplit("/", 1)[1], r[3]) for r in expected["batch_quarantine"]}
    assert ("mixed.x12", "invalid_envelope") in quarantined
    assert ("mixed.x12", "invalid_claim") in quarantined
    assert len(expected["adt_event_log"]) == 24
    assert expected["dim_patient"]
    assert expected["fact_encounters"]
    assert expected["cdc_key_state"]

    await _reset(url)
    tiny_results = await _load(resources, clients.s3, tiny, TINY, FILES)
    assert await snapshot_queries(url, QUERIES) == expected
    assert tiny_results == whole_results
    # Interchange 3 (E0..E7) was staged in early chunks before its SE count failed: nothing of it is left.
    assert not any(i.startswith("E") for i in await _lake_claim_ids(clients.s3, bucket))
    assert len(await list_keys(clients.s3, bucket, "processed/claims/x12/mixed.x12/")) > 1
    # The Redshift Data API path (through the stand-in), in tiny chunks too: the same rows.
    await _reset(url)
    await _load(resources, clients.s3, tiny, TINY, FILES, redshift=True)
    assert await snapshot_queries(url, QUERIES) == expected


async def test_an_interchange_rejection_is_not_the_whole_file(resources: Resources, clients: AwsClients) -> None:
    """One good interchange and one whose envelope fails: the only rejected row has a null line, yet the good
    interchange loads."""
    files: Sequence[tuple[str, bytes]] = [("raw/claims/x12/two.x12", GOOD + BAD_SE)]
    [result] = await _load(resources, clients.s3, {"claims": claims.parse_claims_file}, None, dict(files))
    assert (result.rows_loaded, result.rows_quarantined) == (10, 1)
    snap = await snapshot_queries(resources.warehouse_url, QUERIES)
    assert len(snap["fact_claims"]) == 10
    assert [(r[2], r[3]) for r in snap["batch_quarantine"]] == [(None, "invalid_envelope")]


async def test_a_cdc_file_unreadable_in_a_later_block_leaves_nothing(resources: Resources, clients: AwsClients) -> None:
    key = "raw/ehr/cdc/dbo/patients/20260105-1200000000.csv"
    data = cdc_file(CDC_ROWS) + b'I,2026-01-05 10:00:00,P1,a,b,c,d,e,f,"g,too,many\n'
    parse = {"ehr": ehr.ehr_parser(512)}
    [result] = await _load(resources, clients.s3, parse, TINY, {key: data})
    assert (result.rows_loaded, result.rows_quarantined) == (0, 1)
    snap = await snapshot_queries(resources.warehouse_url, QUERIES)
    assert snap["cdc_key_state"] == []
    assert snap["dim_patient"] == []
    assert [(r[2], r[3]) for r in snap["batch_quarantine"]] == [(None, "unreadable")]
    assert await list_keys(clients.s3, resources.names.bucket, "processed/ehr/") == []
