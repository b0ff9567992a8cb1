"""DMS CDC files (CSV and Parquet, full load + I/U/D) through the ehr pipeline's file handler and both warehouse
paths: newest change per key wins, deletes stick, identical rows in both dialects."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import asyncpg
import pytest

from common.settings import WorkerSettings
from loadtest.files import PHI_MARKERS, cdc_file
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
P = "raw/ehr/cdc/dbo/patients/"
E = "raw/ehr/cdc/dbo/encounters/"
CURRENT = "SELECT patient_id, birth_date, sex, postal_code, valid_from FROM dim_patient WHERE is_current ORDER BY 1"
QUERIES = {
    "dim_patient": "SELECT patient_id, birth_date, sex, postal_code, valid_from, valid_to, is_current FROM dim_patient "
    "ORDER BY patient_id, valid_from",
    "fact_encounters": "SELECT encounter_id, patient_id, provider_id, encounter_type, admit_at, discharge_at, "
    "length_of_stay_hours, primary_dx FROM fact_encounters ORDER BY encounter_id",
    "cdc_key_state": "SELECT * FROM cdc_key_state ORDER BY 1, 2",
    "batch_quarantine": "SELECT pipeline, source_key, line_number, reason FROM batch_quarantine ORDER BY 1, 2, 3",
}


COUNTS = (
    "SELECT source_table, SUM(rows_inserted), SUM(rows_updated), SUM(rows_deleted), SUM(rows_ignored) "
    "FROM load_audit_changes GROUP BY 1 ORDER BY 1"
)
EXPECTED_COUNTS = [("encounters", 4, 2, 1, 1), ("patients", 5, 3, 1, 2)]


async def _counts(url: str) -> list[tuple[Any, ...]]:
    conn = await asyncpg.connect(url)
    try:
        return [tuple(r.values()) for r in await conn.fetch(COUNTS)]
    finally:
        await conn.close()


def _p(op: str | None, ts: str, pid: str, **over: str) -> dict[str, object]:
    row: dict[str, object] = {"Op": op, "dms_commit_ts": ts, "patient_id": pid, "family_name": "Zyxwvut",
                              "given_name": "Qwertyuiop", "birth_date": "1959-12-31", "sex": "female",
                              "postal_code": "02139", "street_address": "742 Evergreen Terrace"}  # fmt: skip
    return row | over


def _e(op: str | None, ts: str, eid: str, **over: str) -> dict[str, object]:
    row: dict[str, object] = {"Op": op, "dms_commit_ts": ts, "encounter_id": eid, "patient_id": "P1",
                              "provider_id": "DR7", "encounter_type": "inpatient",
                              "admit_at": "2026-01-01T08:00:00Z", "discharge_at": "", "primary_dx": "I10"}  # fmt: skip
    return row | over


def _files() -> list[tuple[str, bytes]]:
    """Full load, then three CDC files (CSV and Parquet), then a late file with changes older than the deletes."""
    t0, t1, t2, t3 = "2026-01-05 10:00:00", "2026-01-05 11:00:00.250000", "2026-01-05 12:00:00", "2026-01-06 09:00:00"
    return [
        (P + "LOAD00000001.csv", cdc_file([_p(None, t0, "P1"), _p(None, t0, "P2", sex="male"),
                                          _p(None, t0, "P3", postal_code="03601")], full_load=True)),
        (E + "LOAD00000001.parquet", cdc_file([_e(None, t0, "E1"), _e(None, t0, "E2"), _e(None, t0, "E3")],
                                              full_load=True, parquet=True)),
        (P + "20260105-110000000.parquet", cdc_file([_p("U", t1, "P1", postal_code="10001"), _p("I", t1, "P4"),
                                                     _p("X", t1, "P9")], parquet=True)),
        (E + "20260105-110000000.csv", cdc_file([_e("U", t1, "E1", discharge_at="2026-01-02T20:00:00+02:00"),
                                                 _e("I", t1, "E4", patient_id="P4")])),
        (P + "20260105-120000000.csv", cdc_file([_p("D", t2, "P2", birth_date="", sex="", postal_code=""),
                                                 _p("U", t2, "P3", sex="other", postal_code="03601"),
                                                 _p("U", t2, "P1", sex="male", postal_code="10001")])),
        (E + "20260105-120000000.csv", cdc_file([_e("D", t2, "E2", admit_at="", patient_id=""),
                                                 _e("U", t2, "E3", primary_dx="J45")])),
        # Late, older than the deletes and updates above: nothing may come back or change.
        (P + "20260105-113000000.csv", cdc_file([_p("U", "2026-01-05 11:30:00", "P2", sex="unknown"),
                                                 _p("U", "2026-01-05 11:30:00", "P3", sex="female")])),
        (E + "20260105-113000000.csv", cdc_file([_e("U", "2026-01-05 11:30:00", "E2", primary_dx="Z00")])),
        (P + "20260106-090000000.csv", cdc_file([_p("I", t3, "P2", sex="male", postal_code="89301")])),
    ]  # fmt: skip


def _batches(files: Sequence[tuple[str, bytes]], tag: str) -> list[Batch]:
    return [object_batch("ehr", key, data, f"{tag}-{n}", T0_US + n) for n, (key, data) in enumerate(files)]


async def _snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    return await snapshot_queries(url, {**QUERIES, "current": CURRENT})


async def _reset(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            f"TRUNCATE {', '.join(QUERIES)}, load_audit, load_audit_changes, cdc_patient_log RESTART IDENTITY"
        )
    finally:
        await conn.close()


async def _run(resources: Resources, s3: Any, loader: BatchLoader, batches: Sequence[Batch]) -> None:
    await run_files(resources, s3, "ehr", ehr.parse_ehr_file, ehr.LAKE_TABLES, loader, batches)


async def test_cdc_newest_change_wins_in_any_order_and_both_dialects(
    resources: Resources, clients: AwsClients, redshift_on_test_db: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)  # every logger: pyx12, python-hl7, botocore, asyncpg, ours
    caplog.set_level(logging.DEBUG, logger="workers")
    files = _files()
    url = resources.warehouse_url
    pg = await PostgresBatchLoader.connect(url)
    try:
        await _run(resources, clients.s3, pg, _batches(files, "a"))

        expected = await _snapshot(url)
        current = {r[0]: (r[1].isoformat(), r[2], r[3]) for r in expected["current"]}
        assert current == {
            "P1": ("1959-12-31", "male", "100"),
            "P2": ("1959-12-31", "male", "000"),  # deleted, then inserted again (t3); 893 is restricted
            "P3": ("1959-12-31", "other", "000"),  # the late older update did not win
            "P4": ("1959-12-31", "female", "021"),
        }
        # P1: full load, postal change (t1), sex change (t2): three versions, the last current.
        assert [(r[3], r[2], r[6]) for r in expected["dim_patient"] if r[0] == "P1"] == [
            ("021", "female", False),
            ("100", "female", False),
            ("100", "male", True),
        ]
        p2 = [r for r in expected["dim_patient"] if r[0] == "P2"]
        # The late older update (11:30) takes its place in the history, closed by the delete (12:00); the
        # insert of the next day opens the current version. It never became current.
        assert [(r[2], r[4].isoformat(), r[5] and r[5].isoformat(), r[6]) for r in p2] == [
            ("male", "2026-01-05T10:00:00+00:00", "2026-01-05T11:30:00+00:00", False),
            ("unknown", "2026-01-05T11:30:00+00:00", "2026-01-05T12:00:00+00:00", False),
            ("male", "2026-01-06T09:00:00+00:00", None, True),
        ]
        encounters = {r[0]: (r[1], r[5] is not None, r[7]) for r in expected["fact_encounters"]}
        assert encounters == {"E1": ("P1", True, "I10"), "E3": ("P1", False, "J45"), "E4": ("P4", False, "I10")}
        assert [(r[1].rsplit("/", 1)[1], r[2], r[3]) for r in expected["batch_quarantine"]] == [
            ("20260105-110000000.parquet", 4, "invalid_op")
        ]

        assert await _counts(url) == EXPECTED_COUNTS
        # Twice (new batch ids, same files): nothing changes.
        await _run(resources, clients.s3, pg, _batches(files, "b"))
        assert await _snapshot(url) == expected

        # Reversed: the same tables, dim_patient history included (rebuilt from the change log).
        await _reset(url)
        await _run(resources, clients.s3, pg, _batches(files[::-1], "c"))
        assert await _snapshot(url) == expected
    finally:
        await pg.close()

    await _reset(url)
    settings = WorkerSettings(bucket=resources.names.bucket, warehouse_url=URL)
    redshift = await open_loader(URL, settings=settings, s3=clients.s3)
    try:
        await _run(resources, clients.s3, redshift, _batches(files, "d"))

        assert await _snapshot(url) == expected
        # Reversed, only the patients (the statement shapes are the same for encounters).
        await _reset(url)
        await _run(resources, clients.s3, redshift, _batches([f for f in files if f[0].startswith(P)][::-1], "f"))
        assert (await _snapshot(url))["dim_patient"] == expected["dim_patient"]
    finally:
        await redshift.close()

    # No PHI past raw/: warehouse, processed/quarantine/staging zones, logs.
    bucket = resources.names.bucket
    tables = (*QUERIES, "load_audit")
    assert await past_raw(url, tables, clients.s3, bucket, caplog.text, PHI_MARKERS) == []
