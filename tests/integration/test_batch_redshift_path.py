"""The ehr/claims Redshift Data API path, end to end through the stand-in, gives the PostgreSQL path's rows."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import orjson
import pytest

from common.errors import TerminalError
from common.settings import WorkerSettings
from tests.conftest import RedshiftStandIn, Resources
from tests.helpers.batch import (
    CLAIMS_HEADER,
    ENCOUNTERS_HEADER,
    PATIENTS_HEADER,
    T0_US,
    claim,
    csv_bytes,
    encounter,
    list_keys,
    object_batch,
    patient,
)
from vitalstream.devstack.clients import AwsClients
from workers.pipelines import claims, ehr
from workers.pipelines.files import FileBatchHandler, FileSettings
from workers.runtime.types import Batch, BatchResult
from workers.sinks.files_s3 import LakeWriter
from workers.warehouse.file_types import BatchLoader, LoadPlan, LoadSession
from workers.warehouse.open import open_loader
from workers.warehouse.postgres.files import PostgresBatchLoader
from workers.warehouse.redshift.files import RedshiftBatchLoader

pytestmark = pytest.mark.integration

ROLE = "arn:aws:iam::123456789012:role/vitalstream-copy"
URL = f"redshift-data://vitalstream/dev?iam_role={ROLE}"
HOUR_US = 3_600_000_000
QUERIES = {
    "dim_patient": "SELECT patient_id, birth_date, sex, postal_code, valid_from, valid_to, is_current FROM dim_patient "
    "ORDER BY patient_id, valid_from",
    "fact_encounters": "SELECT encounter_id, patient_id, provider_id, encounter_type, admit_at, discharge_at, "
    "length_of_stay_hours, primary_dx FROM fact_encounters ORDER BY encounter_id",
    "fact_claims": "SELECT claim_id, line_number, patient_id, provider_npi, service_date, procedure_code, dx_code, "
    "billed_amount, allowed_amount, paid_amount, status, denial_reason FROM fact_claims ORDER BY 1, 2",
    "batch_quarantine": "SELECT pipeline, source_key, line_number, reason, detail FROM batch_quarantine "
    "ORDER BY 1, 2, 3",
    "load_audit": "SELECT batch_id, pipeline, rows_in, rows_loaded, rows_quarantined, rows_duplicate FROM load_audit "
    "ORDER BY batch_id",
}
FHIR = b"\n".join(
    orjson.dumps(r)
    for r in (
        {"resourceType": "Patient", "id": "F1", "gender": "female", "birthDate": "1971-03-04",
         "address": [{"line": ["742 Evergreen Terrace"], "postalCode": "94110"}]},
        {"resourceType": "Encounter", "id": "FE1", "status": "finished", "subject": {"reference": "Patient/F1"},
         "class": {"code": "IMP"}, "period": {"start": "2026-01-01T10:00:00+01:00"}},
        {"resourceType": "Observation", "id": "o1"},
    )
)  # fmt: skip


def deliveries() -> list[tuple[str, Batch]]:
    """Files in arrival order: new, bad rows, a changed and an unchanged re-delivery, a claim line update."""
    p, e, c = "raw/ehr/patients/", "raw/ehr/encounters/", "raw/claims/2026/01/"
    day1 = [patient("P1"), patient("P2", sex="male"), patient("P3", birth_date="1990-02-30"), patient("P4")]
    files = [
        ("ehr", p + "day1.csv", csv_bytes(PATIENTS_HEADER, day1), 0),
        ("ehr", e + "e1.csv", csv_bytes(ENCOUNTERS_HEADER, [encounter("E1"), encounter("E2", discharge_at=""),
                                                              encounter("E3", admit_at="yesterday")]), 1),
        ("ehr", "raw/ehr/fhir/bulk.ndjson", FHIR, 2),
        ("claims", c + "a.csv", csv_bytes(CLAIMS_HEADER, [claim("C1", 1, status="pending", paid_amount=""),
                                                         claim("C1", 2), claim("C2", 1, status="bogus")]), 3),
        ("ehr", p + "day2.csv", csv_bytes(PATIENTS_HEADER, [patient("P1", postal_code="10001"),
                                                            patient("P2", sex="male")]), 4),
        ("ehr", p + "day3.csv", csv_bytes(PATIENTS_HEADER, [patient("P1", postal_code="10001", given_name="X")]), 5),
        ("claims", c + "b.csv", csv_bytes(CLAIMS_HEADER, [claim("C1", 1, status="Denied", paid_amount="0",
                                                         denial_reason="CO-97")]), 6),
        ("ehr", e + "e1.csv", csv_bytes(ENCOUNTERS_HEADER, [encounter("E1", primary_dx="J45"), encounter("E2")]), 7),
        ("ehr", p + "day0.csv", csv_bytes(PATIENTS_HEADER, [patient("P4", sex="other")]), -1),  # older file
    ]  # fmt: skip
    return [
        (pipeline, object_batch(pipeline, key, data, f"etag-{n}", T0_US + max(n, 0) * HOUR_US - (n < 0) * HOUR_US))
        for n, (pipeline, key, data, _) in ((f[3], f) for f in files)
    ]


def handlers(resources: Resources, s3: Any, loader: BatchLoader) -> dict[str, FileBatchHandler]:
    """Handlers that read in tiny blocks, so files span several chunks (duplicates across chunks included)."""
    lake = LakeWriter(s3, resources.names.bucket)
    small = FileSettings(read_bytes=64)
    return {
        "ehr": FileBatchHandler("ehr", ehr.ehr_parser(128), lake, loader, ehr.LAKE_TABLES, settings=small),
        "claims": FileBatchHandler(
            "claims", claims.claims_parser(128), lake, loader, claims.LAKE_TABLES, settings=small
        ),
    }


async def run_all(by_pipeline: dict[str, FileBatchHandler], batches: Sequence[tuple[str, Batch]]) -> list[BatchResult]:
    return [await by_pipeline[pipeline].handle(batch) for pipeline, batch in batches]


async def snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    conn = await asyncpg.connect(url)
    try:
        return {name: [tuple(r.values()) for r in await conn.fetch(q)] for name, q in QUERIES.items()}
    finally:
        await conn.close()


async def reset(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"TRUNCATE {', '.join(QUERIES)} RESTART IDENTITY")
    finally:
        await conn.close()


class NeverAudited:
    """A loader whose pre-check never sees the audit row: exercises the guard inside the load itself."""

    def __init__(self, inner: BatchLoader) -> None:
        self.inner = inner

    async def audited(self, batch_id: str) -> BatchResult | None:
        return None

    async def load(self, plan: LoadPlan) -> BatchResult:
        return await self.inner.load(plan)

    @asynccontextmanager
    async def session(self, batch_id: str, pipeline: str) -> AsyncIterator[LoadSession]:
        async with self.inner.session(batch_id, pipeline) as session:
            session.audited = None
            yield session

    async def close(self) -> None:
        await self.inner.close()


@pytest.fixture
def redshift_endpoint(redshift: RedshiftStandIn) -> str:
    return redshift.endpoint


async def test_redshift_path_gives_the_same_rows(
    resources: Resources, clients: AwsClients, redshift: RedshiftStandIn
) -> None:
    batches = deliveries()
    url = resources.warehouse_url
    pg = await PostgresBatchLoader.connect(url)
    try:
        expected_results = await run_all(handlers(resources, clients.s3, pg), batches)
    finally:
        await pg.close()
    expected = await snapshot(url)
    # The scenario covers what it claims to.
    assert [r[0] for r in expected["dim_patient"]] == ["F1", "P1", "P1", "P2", "P4"]
    assert [(r[3], r[6]) for r in expected["dim_patient"] if r[0] == "P1"] == [("021", False), ("100", True)]
    assert [r[6] for r in expected["dim_patient"] if r[0] == "P4"] == [True]
    assert {r[0]: r[10] for r in expected["fact_claims"] if r[1] == 1} == {"C1": "denied"}
    assert {r[3] for r in expected["batch_quarantine"]} >= {"invalid_date"}
    assert any(r[0] == "claims" for r in expected["batch_quarantine"])
    # The re-delivered encounters file replaced its quarantine rows (E3 is gone with the old version).
    assert not [r for r in expected["batch_quarantine"] if r[1].endswith("e1.csv")]
    assert len(expected["load_audit"]) == len(batches)

    url = redshift.url
    settings = WorkerSettings(bucket=resources.names.bucket, warehouse_url=URL)
    loader = await open_loader(URL, settings=settings, s3=clients.s3)
    assert isinstance(loader, RedshiftBatchLoader)
    try:
        by_pipeline = handlers(resources, clients.s3, loader)
        assert await run_all(by_pipeline, batches) == expected_results
        assert await snapshot(url) == expected
        prefix = f"staging/claims/{batches[3][1].batch_id}/"
        staged = [k.removeprefix(prefix) for k in await list_keys(clients.s3, resources.names.bucket, prefix)]
        assert [k for k in staged if k.endswith(".manifest")] == ["batch_quarantine.manifest", "claims.manifest"]
        parts = [k for k in staged if not k.endswith(".manifest")]
        assert len([k for k in parts if k.startswith("claims/part-000-")]) > 1  # the file spans several chunks
        assert all(re.fullmatch(r"(claims|batch_quarantine)/part-000-\d{5}\.parquet", k) for k in parts)

        # Replays change nothing: skipped by the handler's pre-check, and by the load's own guard.
        assert await run_all(by_pipeline, batches) == expected_results
        assert await run_all(handlers(resources, clients.s3, NeverAudited(loader)), batches) == expected_results
        assert await snapshot(url) == expected
    finally:
        await loader.close()


@pytest.mark.parametrize("dialect", ["postgres", "redshift"])
async def test_scd2_with_null_attributes(
    resources: Resources, clients: AwsClients, redshift: RedshiftStandIn, dialect: str
) -> None:
    """A patient whose ``sex`` and ``postal_code`` are NULL keeps one version when re-delivered unchanged; a
    NULL becoming a value, and a value becoming NULL, each make a new version."""
    url = redshift.url if dialect == "redshift" else resources.warehouse_url  # the database behind the loader
    await reset(url)
    p = "raw/ehr/patients/"
    files = [
        [patient("N1", sex="", postal_code=""), patient("N2", sex="")],
        [patient("N1", sex="", postal_code="", given_name="Other"), patient("N2", sex="")],  # unchanged
        [patient("N1", sex="", postal_code="10001"), patient("N2", sex="")],  # N1: NULL -> value
        [patient("N1", sex="", postal_code="10001"), patient("N2", sex="", postal_code="")],  # N2: value -> NULL
    ]
    batches = [
        ("ehr", object_batch("ehr", f"{p}n{n}.csv", csv_bytes(PATIENTS_HEADER, rows), f"n{n}", T0_US + n * HOUR_US))
        for n, rows in enumerate(files)
    ]
    if dialect == "redshift":
        settings = WorkerSettings(bucket=resources.names.bucket, warehouse_url=URL)
        loader: BatchLoader = await open_loader(URL, settings=settings, s3=clients.s3)
    else:
        loader = await PostgresBatchLoader.connect(url)
    try:
        by_pipeline = handlers(resources, clients.s3, loader)
        await run_all(by_pipeline, batches[:2])
        rows = (await snapshot(url))["dim_patient"]
        assert [(r[0], r[2], r[3], r[6]) for r in rows] == [("N1", None, None, True), ("N2", None, "021", True)]
        await run_all(by_pipeline, batches[2:])
    finally:
        await loader.close()
    rows = (await snapshot(url))["dim_patient"]
    assert [(r[0], r[2], r[3], r[6]) for r in rows] == [
        ("N1", None, None, False),
        ("N1", None, "100", True),  # Safe Harbor: three digits (CONTRACT §7)
        ("N2", None, "021", False),
        ("N2", None, None, True),
    ]


async def test_loader_opens_its_own_clients(resources: Resources, redshift_endpoint: str) -> None:
    settings = WorkerSettings(bucket=resources.names.bucket, warehouse_url=URL)
    loader = await open_loader(URL, settings=settings)
    try:
        assert await loader.audited("0" * 32) is None
    finally:
        await loader.close()


async def test_redshift_url_without_a_copy_role_fails_at_startup(resources: Resources) -> None:
    with pytest.raises(TerminalError, match="IAM role"):
        await open_loader("redshift-data://vitalstream/dev", settings=WorkerSettings(), s3=object(), redshift=object())
    with pytest.raises(TerminalError, match="unsupported"):
        await open_loader("mysql://x/y")
