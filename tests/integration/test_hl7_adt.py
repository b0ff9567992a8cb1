"""HL7 v2 ADT through the ehr pipeline's file handler and both warehouse paths: admit, transfer, discharge,
cancel-discharge, cancel-admit, update and merge, delivered in order, shuffled across files and twice."""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from typing import Any

import asyncpg
import pytest

from common.settings import WorkerSettings
from loadtest.files import PHI_MARKERS, Adt, hl7_file
from tests.conftest import Resources
from tests.helpers.batch import T0_US, object_batch, run_files, snapshot_queries
from tests.helpers.phi import past_raw
from vitalstream.devstack.clients import AwsClients
from workers.pipelines import ehr
from workers.runtime.types import Batch
from workers.warehouse.file_types import BatchLoader
from workers.warehouse.open import open_loader
from workers.warehouse.postgres.files import PostgresBatchLoader

pytestmark = pytest.mark.integration

URL = "redshift-data://vitalstream/dev?iam_role=arn:aws:iam::123456789012:role/vitalstream-copy"
QUERIES = {
    "dim_patient": "SELECT patient_id, birth_date, sex, postal_code, valid_from, valid_to, is_current FROM dim_patient "
    "ORDER BY patient_id, valid_from",
    "fact_encounters": "SELECT encounter_id, patient_id, provider_id, encounter_type, admit_at, discharge_at, "
    "length_of_stay_hours, primary_dx FROM fact_encounters ORDER BY encounter_id",
}
UPDATED = {"sex": "M", "postal": "10001"}
# Control ids (MSH-10) deliberately out of time order: MSH-7 alone orders the events.
MESSAGES = [
    Adt("C7", "20260105080000", "A04", "P1", visit="V1", patient_class="O", admit="20260105080000", dx="I10"),
    Adt("C3", "20260105090000+0100", "A01", "P2", visit="V2", admit="20260105075500", dx="J45"),
    Adt("C9", "20260105120000", "A02", "P2", visit="V2", attending="DR9"),
    Adt("C1", "20260106080000", "A08", "P2", visit="V2", attending="DR9", **UPDATED),
    Adt("C8", "20260107080000", "A03", "P2", visit="V2", discharge="20260107073000", attending="DR9", **UPDATED),
    Adt("C2", "20260107090000", "A13", "P2", visit="V2", attending="DR9", **UPDATED),
    Adt("C6", "20260108100000", "A03", "P2", visit="V2", discharge="20260108095900", attending="DR9", **UPDATED),
    Adt("C4", "20260109080000", "A01", "P1", visit="V3", admit="20260109080000"),
    Adt("C5", "20260109083000", "A11", "P1", visit="V3"),
    Adt("C0", "20260110080000", "A40", "P2", prior="P1", **UPDATED),
    Adt("", "20260110090000", "A08", "P2"),  # no MSH-10: quarantined, never applied
]


def _deliveries(seed: int | None) -> list[tuple[str, bytes]]:
    """In order in three files, or shuffled (``seed``) across four files with every framing."""
    messages = list(MESSAGES)
    if seed is None:
        parts = [messages[:4], messages[4:8], messages[8:]]
        framings = ["cr", "cr", "cr"]
    else:
        random.Random(seed).shuffle(messages)
        parts = [messages[0:3], messages[3:6], messages[6:9], messages[9:]]
        framings = ["lf", "mllp", "batch", "crlf"]
    tag = "ordered" if seed is None else f"shuffled{seed}"
    return [
        (f"raw/ehr/hl7/{tag}-{n}.hl7", hl7_file(p, f)) for n, (p, f) in enumerate(zip(parts, framings, strict=True))
    ]


def _batches(files: Sequence[tuple[str, bytes]], tag: str) -> list[Batch]:
    return [object_batch("ehr", key, data, f"{tag}-{n}", T0_US + n) for n, (key, data) in enumerate(files)]


async def _snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    return await snapshot_queries(url, QUERIES)


async def _reset(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("TRUNCATE dim_patient, fact_encounters, adt_event_log, batch_quarantine, load_audit")
    finally:
        await conn.close()


async def _run(resources: Resources, s3: Any, loader: BatchLoader, batches: Sequence[Batch]) -> None:
    await run_files(resources, s3, "ehr", ehr.parse_ehr_file, ehr.LAKE_TABLES, loader, batches)


async def test_adt_sequences_in_any_order_and_both_dialects(
    resources: Resources, clients: AwsClients, redshift_on_test_db: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)  # every logger: pyx12, python-hl7, botocore, asyncpg, ours
    caplog.set_level(logging.DEBUG, logger="workers")
    url = resources.warehouse_url
    pg = await PostgresBatchLoader.connect(url)
    try:
        await _run(resources, clients.s3, pg, _batches(_deliveries(None), "a"))
        expected = await _snapshot(url)
        patients = [
            (r[0], r[2], r[3], r[4].isoformat(), r[5] and r[5].isoformat(), r[6]) for r in expected["dim_patient"]
        ]
        assert patients == [
            ("P1", "female", "021", "2026-01-05T08:00:00+00:00", "2026-01-10T08:00:00+00:00", False),  # merged
            ("P2", "female", "021", "2026-01-05T08:00:00+00:00", "2026-01-06T08:00:00+00:00", False),
            ("P2", "male", "100", "2026-01-06T08:00:00+00:00", None, True),  # A08
        ]
        encounters = [(r[0], r[1], r[2], r[3], r[4].isoformat(), r[5] and r[5].isoformat(), r[7])
                      for r in expected["fact_encounters"]]  # fmt: skip
        assert encounters == [
            ("V1", "P2", "DR7", "outpatient", "2026-01-05T08:00:00+00:00", None, "I10"),  # moved by the A40
            ("V2", "P2", "DR9", "inpatient", "2026-01-05T07:55:00+00:00", "2026-01-08T09:59:00+00:00", "J45"),
        ]  # V3: admitted, then cancelled (A11); V2's first discharge was cancelled (A13), then discharged again
        conn = await asyncpg.connect(url)
        try:
            quarantine = [tuple(r.values()) for r in await conn.fetch(
                "SELECT line_number, reason, detail FROM batch_quarantine")]  # fmt: skip
        finally:
            await conn.close()
        assert [(q[1], q[2].split(":")[0]) for q in quarantine] == [("invalid_message", "message (no MSH-10)")]

        await _run(resources, clients.s3, pg, _batches(_deliveries(None), "b"))  # twice
        assert await _snapshot(url) == expected
        for seed in (1, 2):
            await _reset(url)
            await _run(resources, clients.s3, pg, _batches(_deliveries(seed), f"s{seed}"))
            assert await _snapshot(url) == expected, seed
    finally:
        await pg.close()

    await _reset(url)
    settings = WorkerSettings(bucket=resources.names.bucket, warehouse_url=URL)
    redshift = await open_loader(URL, settings=settings, s3=clients.s3)
    try:
        await _run(resources, clients.s3, redshift, _batches(_deliveries(3), "r"))
        assert await _snapshot(url) == expected
    finally:
        await redshift.close()

    # No PHI past raw/: warehouse, processed/quarantine/staging zones, logs.
    bucket = resources.names.bucket
    tables = ("dim_patient", "fact_encounters", "adt_event_log", "batch_quarantine", "load_audit")
    assert await past_raw(url, tables, clients.s3, bucket, caplog.text, PHI_MARKERS) == []
