"""X12 837P/837I/835 through the claims pipeline's file handler, the lake and both warehouse paths (PostgreSQL
loader; Redshift Data API loader through the stand-in): CONTRACT §8 semantics, identical rows."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from common.settings import WorkerSettings
from loadtest.files import PHI_MARKERS, Adjudication, Claim, ClaimLine, Separators, x12_835, x12_837
from tests.conftest import Resources
from tests.helpers.batch import T0_US, object_batch, run_files, snapshot_queries
from tests.helpers.phi import past_raw
from vitalstream.devstack.clients import AwsClients
from workers.pipelines import claims
from workers.runtime.types import Batch
from workers.warehouse.file_types import BatchLoader
from workers.warehouse.open import open_loader
from workers.warehouse.postgres.files import PostgresBatchLoader

pytestmark = pytest.mark.integration

URL = "redshift-data://vitalstream/dev?iam_role=arn:aws:iam::123456789012:role/vitalstream-copy"
QUERIES = {
    "fact_claims": "SELECT claim_id, line_number, patient_id, provider_npi, service_date, procedure_code, dx_code, "
    "billed_amount, allowed_amount, paid_amount, status, denial_reason FROM fact_claims ORDER BY 1, 2",
    "batch_quarantine": "SELECT pipeline, source_key, line_number, reason, detail FROM batch_quarantine "
    "ORDER BY 1, 2, 3, 4",
    "claim_adjudications": "SELECT * FROM claim_adjudications ORDER BY 1, 2",
}
PREFIX = "raw/claims/x12/"
D = Decimal


def _files() -> dict[str, bytes]:
    """837P with three claims (one whose patient is not the subscriber), an 837I, then an 835 that pays X1,
    denies X2 (CO-50) and reverses X3's first payment and corrects it — with odd separators in the 837I."""
    p837 = x12_837(
        [
            Claim("X1", lines=(ClaimLine("99213", "150.00"), ClaimLine("85025", "40.00", dx_pointer=2))),
            Claim("X2", member_id="SUB22", patient_member_id="DEP22", rendering_npi=None),
            Claim("X3", member_id="SUB33", lines=(ClaimLine("99214", "200.00", "20260107"),)),
        ],
        control=11,
    )
    odd = Separators(element="|", component="^", repetition="~", segment="!", newline="\r\n")
    i837 = x12_837([Claim("I1", lines=(ClaimLine("99283", "900.00"),))], institutional=True, control=12, sep=odd)
    remit = x12_835(
        [
            Adjudication("X1", "1", ((1, "150.00", "100.00", "120.00", ("CO", "45", "30.00")),
                                     (2, "40.00", "30.00", "30.00", None))),
            Adjudication("X2", "4", ((1, "150.00", "0.00", "0.00", ("CO", "50", "150.00")),)),
            Adjudication("X3", "1", ((1, "200.00", "50.00", "60.00", ("CO", "45", "140.00")),)),
            Adjudication("X3", "22", ((1, "-200.00", "-50.00", "-60.00", ("CR", "45", "-140.00")),)),
            Adjudication("X3", "1", ((1, "200.00", "80.00", "90.00", ("CO", "45", "110.00")),)),
        ],
        control=13,
    )  # fmt: skip
    return {
        PREFIX + "p837.x12": p837,
        PREFIX + "i837.x12": i837,
        PREFIX + "remit.x12": remit,
        PREFIX + "bad-se.x12": x12_837([Claim("BAD1")], control=14, break_se_count=True),
        PREFIX + "v4010.x12": x12_837([Claim("OLD1")], control=15, version="00401"),
    }


EXPECTED_CLAIMS = [
    ("I1", 1, "MEM0001", "1234567893", "2026-01-05", "99283", "I10", D("900.00"), None, None, "pending", None),
    ("X1", 1, "MEM0001", "1234567893", "2026-01-05", "99213", "I10", D("150.00"), D("120.00"), D("100.00"), "paid",
     None),
    ("X1", 2, "MEM0001", "1234567893", "2026-01-05", "85025", "E119", D("40.00"), D("30.00"), D("30.00"), "paid",
     None),
    ("X2", 1, "DEP22", "1992753880", "2026-01-05", "99213", "I10", D("150.00"), D("0.00"), D("0.00"), "denied",
     "CO-50"),
    ("X3", 1, "SUB33", "1234567893", "2026-01-07", "99214", "I10", D("200.00"), D("90.00"), D("80.00"), "paid",
     None),
]  # fmt: skip


def _batches(order: Sequence[str], files: dict[str, bytes]) -> list[Batch]:
    return [object_batch("claims", key, files[key], f"etag-{n}", T0_US + n) for n, key in enumerate(order)]


async def _snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    return await snapshot_queries(url, QUERIES)


async def _reset(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("TRUNCATE fact_claims, batch_quarantine, claim_adjudications, load_audit")
    finally:
        await conn.close()


async def _run(resources: Resources, s3: Any, loader: BatchLoader, batches: Sequence[Batch]) -> None:
    await run_files(resources, s3, "claims", claims.parse_claims_file, claims.LAKE_TABLES, loader, batches)


async def test_x12_claims_end_as_adjudicated_in_both_dialects(
    resources: Resources, clients: AwsClients, redshift_on_test_db: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)  # every logger: pyx12, python-hl7, botocore, asyncpg, ours
    caplog.set_level(logging.DEBUG, logger="workers")
    files = _files()
    in_order = list(files)
    remit_first = [PREFIX + "remit.x12", PREFIX + "i837.x12", PREFIX + "p837.x12", PREFIX + "bad-se.x12",
                   PREFIX + "v4010.x12"]  # fmt: skip
    url = resources.warehouse_url
    pg = await PostgresBatchLoader.connect(url)
    try:
        await _run(resources, clients.s3, pg, _batches(in_order, files))
        expected = await _snapshot(url)
        rows = [(*r[:4], r[4].isoformat(), *r[5:]) for r in expected["fact_claims"]]
        assert rows == EXPECTED_CLAIMS
        quarantine = {(r[1].rsplit("/", 1)[1], r[2], r[3]) for r in expected["batch_quarantine"]}
        assert quarantine == {("bad-se.x12", None, "invalid_envelope"), ("v4010.x12", None, "unsupported_version")}
        # Re-delivery (new batch ids: the same objects written again) changes nothing.
        await _run(resources, clients.s3, pg, _batches(in_order, files)[::-1])
        assert await _snapshot(url) == expected
        # The 835 before its claims: kept, then applied when the claims arrive.
        await _reset(url)
        await _run(resources, clients.s3, pg, [object_batch("claims", k, files[k], f"r-{k}") for k in remit_first])
        assert await _snapshot(url) == expected
    finally:
        await pg.close()

    await _reset(url)
    settings = WorkerSettings(bucket=resources.names.bucket, warehouse_url=URL)
    redshift = await open_loader(URL, settings=settings, s3=clients.s3)
    try:
        await _run(resources, clients.s3, redshift, _batches(in_order, files))
        assert await _snapshot(url) == expected
        await _reset(url)
        await _run(resources, clients.s3, redshift,
                   [object_batch("claims", k, files[k], f"rs-{k}") for k in remit_first])  # fmt: skip
        assert await _snapshot(url) == expected
    finally:
        await redshift.close()

    # No PHI past raw/: warehouse, processed/quarantine/staging zones, logs.
    bucket = resources.names.bucket
    tables = ("fact_claims", "batch_quarantine", "claim_adjudications", "load_audit")
    assert await past_raw(url, tables, clients.s3, bucket, caplog.text, PHI_MARKERS) == []


def test_a_bad_claim_is_quarantined_alone() -> None:
    data = x12_837([Claim("OK1"), Claim("BAD2", rendering_npi="12345"), Claim("OK3")], control=21)
    [parsed] = claims.parse_claims_file(PREFIX + "mixed.x12", iter([data]))
    assert sorted(parsed.tables["claims"].column("claim_id").to_pylist()) == ["OK1", "OK3"]
    [bad] = parsed.rejected.to_pylist()
    position = next(i for i, s in enumerate(data.decode().split("~\n"), start=1) if s.startswith("CLM*BAD2"))
    detail = "837P claim: NM109 NPI: not 10 digits"
    assert bad == {"line_number": position, "reason": "invalid_claim", "detail": detail, "record_id": "BAD2"}
