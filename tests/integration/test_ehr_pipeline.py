"""The ``ehr`` handler against moto S3 and the private PostgreSQL: SCD2, upserts, quarantine, idempotence."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import orjson
import pytest

from common.errors import TerminalError
from tests.conftest import Resources
from tests.helpers.batch import (
    ENCOUNTERS_HEADER,
    PATIENTS_HEADER,
    T0_US,
    batch_handler,
    csv_bytes,
    encounter,
    fetch,
    list_keys,
    object_batch,
    patient,
    read_parquet,
)
from vitalstream.devstack.clients import AwsClients
from workers.pipelines.ehr import LAKE_TABLES, parse_ehr_file
from workers.pipelines.files import FileBatchHandler

pytestmark = pytest.mark.integration

HOUR_US = 3_600_000_000
PATIENT_ROWS = "SELECT patient_id, birth_date, sex, postal_code, valid_from, valid_to, is_current FROM dim_patient"


@pytest.fixture
async def handler(resources: Resources, clients: AwsClients) -> AsyncIterator[FileBatchHandler]:
    async with batch_handler(resources, clients.s3, "ehr", parse_ehr_file, LAKE_TABLES) as h:
        yield h


def at(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1e6, tz=UTC)


async def test_scd2_new_changed_and_unchanged_patient(handler: FileBatchHandler, resources: Resources) -> None:
    url = resources.warehouse_url
    key = "raw/ehr/patients/day1.csv"
    first = await handler.handle(object_batch("ehr", key, csv_bytes(PATIENTS_HEADER, [patient("P1")]), "e1", T0_US))
    assert (first.rows_in, first.rows_loaded, first.rows_quarantined) == (1, 1, 0)
    rows = await fetch(url, PATIENT_ROWS)
    assert len(rows) == 1
    assert rows[0]["is_current"]
    assert rows[0]["valid_to"] is None
    assert rows[0]["valid_from"] == at(T0_US)

    changed = csv_bytes(PATIENTS_HEADER, [patient("P1", postal_code="10001")])
    await handler.handle(object_batch("ehr", "raw/ehr/patients/day2.csv", changed, "e2", T0_US + HOUR_US))
    rows = await fetch(url, PATIENT_ROWS + " ORDER BY valid_from")
    assert [(r["postal_code"], r["is_current"]) for r in rows] == [("021", False), ("100", True)]
    assert rows[0]["valid_to"] == rows[1]["valid_from"] == at(T0_US + HOUR_US)
    assert rows[1]["valid_to"] is None

    unchanged = csv_bytes(PATIENTS_HEADER, [patient("P1", postal_code="10001", given_name="Other")])
    result = await handler.handle(
        object_batch("ehr", "raw/ehr/patients/day3.csv", unchanged, "e3", T0_US + 2 * HOUR_US)
    )
    assert result.rows_loaded == 1
    assert len(await fetch(url, PATIENT_ROWS)) == 2


async def test_older_file_does_not_override_newer_version(handler: FileBatchHandler, resources: Resources) -> None:
    new = csv_bytes(PATIENTS_HEADER, [patient("P1", sex="male")])
    await handler.handle(object_batch("ehr", "raw/ehr/patients/new.csv", new, "n", T0_US + HOUR_US))
    await handler.handle(
        object_batch("ehr", "raw/ehr/patients/old.csv", csv_bytes(PATIENTS_HEADER, [patient("P1")]), "o")
    )
    rows = await fetch(resources.warehouse_url, PATIENT_ROWS)
    assert [(r["sex"], r["is_current"]) for r in rows] == [("male", True)]


async def test_concurrent_files_and_redeliveries_do_not_collide(
    handler: FileBatchHandler, resources: Resources
) -> None:
    """Two workers on the same batch, and other files touching the same patients, at the same time."""
    same = object_batch("ehr", "raw/ehr/patients/a.csv", csv_bytes(PATIENTS_HEADER, [patient("P1"), patient("P2")]))
    other = object_batch(
        "ehr", "raw/ehr/patients/b.csv", csv_bytes(PATIENTS_HEADER, [patient("P1"), patient("P2", sex="x")]), "b"
    )
    results = await asyncio.gather(handler.handle(same), handler.handle(same), handler.handle(other))
    assert results[0] == results[1]
    assert len(await fetch(resources.warehouse_url, "SELECT * FROM load_audit")) == 2
    current = await fetch(resources.warehouse_url, "SELECT patient_id FROM dim_patient WHERE is_current ORDER BY 1")
    assert current == [{"patient_id": "P1"}, {"patient_id": "P2"}]


async def test_names_and_addresses_never_leave_the_parser(
    handler: FileBatchHandler, resources: Resources, clients: AwsClients
) -> None:
    key = "raw/ehr/patients/phi.csv"
    rows = [patient("P1"), patient("P2", birth_date="1990-02-30")]
    await handler.handle(object_batch("ehr", key, csv_bytes(PATIENTS_HEADER, rows)))
    bucket = resources.names.bucket
    table, raw = await read_parquet(clients.s3, bucket, "processed/ehr/patients/patients/phi.csv/part-00000.parquet")
    assert set(table.column_names) >= {"patient_id", "birth_date", "sex", "postal_code", "source_key", "batch_id"}
    assert not {"family_name", "given_name", "street_address"} & set(table.column_names)
    _, qraw = await read_parquet(clients.s3, bucket, "quarantine/ehr/patients/phi.csv/part-00000.parquet")
    for secret in (b"Zyxwvut", b"Qwertyuiop", b"Evergreen"):
        assert secret not in raw
        assert secret not in qraw
    quarantined = await fetch(resources.warehouse_url, "SELECT line_number, reason, detail FROM batch_quarantine")
    assert quarantined == [
        {"line_number": 3, "reason": "invalid_date", "detail": "birth_date: not an ISO 8601 date (YYYY-MM-DD)"}
    ]
    dumped = str(await fetch(resources.warehouse_url, "SELECT * FROM dim_patient"))
    assert "Zyxwvut" not in dumped
    assert "Evergreen" not in dumped


async def test_bad_rows_do_not_sink_the_file_and_reprocessing_is_idempotent(
    handler: FileBatchHandler, resources: Resources, clients: AwsClients
) -> None:
    url = resources.warehouse_url
    key = "raw/ehr/encounters/2026/01/enc.csv"
    rows = [
        encounter("E1"),
        encounter("E2", discharge_at="2025-12-31T00:00:00Z"),  # before admit
        encounter("E3", admit_at="yesterday"),
        encounter("E4", discharge_at=""),
        encounter("E5", primary_dx="X" * 17),  # longer than varchar(16)
    ]
    batch = object_batch("ehr", key, csv_bytes(ENCOUNTERS_HEADER, rows))
    first = await handler.handle(batch)
    assert (first.rows_in, first.rows_loaded, first.rows_quarantined) == (5, 2, 3)
    again = await handler.handle(batch)
    assert again == first
    facts = await fetch(url, "SELECT encounter_id, length_of_stay_hours FROM fact_encounters ORDER BY 1")
    assert facts == [
        {"encounter_id": "E1", "length_of_stay_hours": 34.0},
        {"encounter_id": "E4", "length_of_stay_hours": None},
    ]
    quarantined = await fetch(url, "SELECT line_number, reason FROM batch_quarantine ORDER BY 1")
    assert quarantined == [
        {"line_number": 3, "reason": "discharge_before_admit"},
        {"line_number": 4, "reason": "invalid_timestamp"},
        {"line_number": 6, "reason": "field_too_long"},
    ]
    assert len(await fetch(url, "SELECT * FROM load_audit")) == 1

    # The same key re-delivered with new content (new ETag): quarantine replaced, not doubled; upsert updates.
    fixed = [encounter("E1", primary_dx="J45"), encounter("E2"), encounter("E3", admit_at="2026-01-01T00:00:00Z")]
    result = await handler.handle(object_batch("ehr", key, csv_bytes(ENCOUNTERS_HEADER, fixed), "etag-2"))
    assert (result.rows_loaded, result.rows_quarantined) == (3, 0)
    assert await fetch(url, "SELECT * FROM batch_quarantine") == []
    assert await fetch(url, "SELECT primary_dx FROM fact_encounters WHERE encounter_id = 'E1'") == [
        {"primary_dx": "J45"}
    ]
    assert len(await fetch(url, "SELECT * FROM fact_encounters")) == 4
    bucket = resources.names.bucket
    assert await list_keys(clients.s3, bucket, "quarantine/ehr/") == []
    assert await list_keys(clients.s3, bucket, "processed/ehr/") == [
        "processed/ehr/encounters/encounters/2026/01/enc.csv/part-00000.parquet"
    ]


async def test_fhir_bundle_loads_patients_and_encounters(
    handler: FileBatchHandler, resources: Resources, clients: AwsClients
) -> None:
    resources_ = [
        {"resourceType": "Patient", "id": "F1", "gender": "female", "birthDate": "1971-03-04",
         "name": [{"family": "Zyxwvut"}], "address": [{"line": ["1 Evergreen"], "postalCode": "94110"}]},
        {"resourceType": "Encounter", "id": "FE1", "subject": {"reference": "Patient/F1"}, "class": {"code": "AMB"},
         "period": {"start": "2026-01-01T10:00:00Z", "end": "2026-01-01T10:30:00Z"},
         "participant": [{"individual": {"reference": "Practitioner/DR9"}}],
         "reasonCode": [{"coding": [{"code": "Z00.0"}]}]},
        {"resourceType": "Observation", "id": "O1"},
    ]  # fmt: skip
    data = b"\n".join(orjson.dumps(r) for r in resources_) + b"\n"
    result = await handler.handle(object_batch("ehr", "raw/ehr/fhir/export/1.ndjson", data))
    # The Observation is skipped and counted (in the log), not quarantined: exports carry dozens of types.
    assert (result.rows_in, result.rows_loaded, result.rows_quarantined) == (2, 2, 0)
    url = resources.warehouse_url
    assert await fetch(url, "SELECT patient_id, sex, postal_code FROM dim_patient") == [
        {"patient_id": "F1", "sex": "female", "postal_code": "941"}
    ]
    assert await fetch(url, "SELECT encounter_id, patient_id, provider_id, encounter_type, primary_dx, "
                            "length_of_stay_hours FROM fact_encounters") == [
        {"encounter_id": "FE1", "patient_id": "F1", "provider_id": "DR9", "encounter_type": "AMB",
         "primary_dx": "Z00.0", "length_of_stay_hours": 0.5}
    ]  # fmt: skip
    keys = await list_keys(clients.s3, resources.names.bucket, "processed/ehr/")
    assert keys == [
        "processed/ehr/encounters/fhir/export/1.ndjson/part-00000.parquet",
        "processed/ehr/patients/fhir/export/1.ndjson/part-00000.parquet",
    ]


@pytest.mark.parametrize(
    ("key", "data", "reason"),
    [
        (
            "raw/ehr/patients/latin1.csv",
            (",".join(PATIENTS_HEADER) + "\nP1,M\xfcller,A,,,,\n").encode("latin-1"),
            "not_utf8",
        ),
        ("raw/ehr/patients/wrong.csv", b"id,name\nP1,x\n", "bad_header"),
        ("raw/ehr/fhir/not.ndjson", b"patient_id,sex\nP1,F\n", "unreadable"),
        ("raw/ehr/other/x.csv", b"a\n1\n", "unknown_prefix"),
    ],
)
async def test_unreadable_file_is_quarantined_whole(
    handler: FileBatchHandler, resources: Resources, key: str, data: bytes, reason: str
) -> None:
    result = await handler.handle(object_batch("ehr", key, data))
    assert (result.rows_in, result.rows_loaded, result.rows_quarantined) == (1, 0, 1)
    rows = await fetch(resources.warehouse_url, "SELECT source_key, line_number, reason FROM batch_quarantine")
    assert rows == [{"source_key": key, "line_number": None, "reason": reason}]
    audit = await fetch(resources.warehouse_url, "SELECT pipeline, rows_quarantined FROM load_audit")
    assert audit == [{"pipeline": "ehr", "rows_quarantined": 1}]


async def test_terminal_failure_quarantines_the_file_and_cleans_processed(
    handler: FileBatchHandler, resources: Resources, clients: AwsClients
) -> None:
    key = "raw/ehr/patients/p.csv"
    bucket = resources.names.bucket
    good = object_batch("ehr", key, csv_bytes(PATIENTS_HEADER, [patient("P1")]))
    await handler.handle(good)
    assert await list_keys(clients.s3, bucket, "processed/ehr/") != []
    failed = object_batch("ehr", key, csv_bytes(PATIENTS_HEADER, [patient("P1")]), "etag-2")
    result = await handler.quarantine(failed, TerminalError("boom"))
    assert (result.rows_in, result.rows_quarantined) == (1, 1)
    rows = await fetch(resources.warehouse_url, "SELECT line_number, reason, detail FROM batch_quarantine")
    assert rows == [
        {"line_number": None, "reason": "unprocessable", "detail": "file: processing failed (TerminalError)"}
    ]
    assert await list_keys(clients.s3, bucket, "processed/ehr/") == []
    assert await list_keys(clients.s3, bucket, "quarantine/ehr/") == [
        "quarantine/ehr/patients/p.csv/part-00000.parquet"
    ]


async def test_kms_key_is_requested_when_configured(resources: Resources, clients: AwsClients) -> None:
    kms_key = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"
    async with batch_handler(resources, clients.s3, "ehr", parse_ehr_file, LAKE_TABLES, kms_key) as handler:
        await handler.handle(object_batch("ehr", "raw/ehr/patients/k.csv", csv_bytes(PATIENTS_HEADER, [patient("P1")])))
    head = await clients.s3.head_object(
        Bucket=resources.names.bucket, Key="processed/ehr/patients/patients/k.csv/part-00000.parquet"
    )
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["SSEKMSKeyId"].endswith("11111111-2222-3333-4444-555555555555")


async def test_ddl_bootstrap_migrates_stored_postal_codes_once(resources: Resources) -> None:
    from vitalstream.devstack.bootstrap import apply_ddl

    url = resources.warehouse_url
    conn = await asyncpg.connect(url)
    try:
        await conn.executemany(
            "INSERT INTO dim_patient (patient_id, postal_code, valid_from, valid_to, is_current) "
            "VALUES ($1, $2, now(), NULL, true)",
            [("M1", "02139"), ("M2", "03601-1234"), ("M3", "SW1A 1AA"), ("M4", "941"), ("M5", None), ("M6", "893")],
        )
    finally:
        await conn.close()
    for _ in range(2):  # idempotent
        await apply_ddl(url)
    rows = await fetch(url, "SELECT patient_id, postal_code FROM dim_patient ORDER BY patient_id")
    assert [(r["patient_id"], r["postal_code"]) for r in rows] == [
        ("M1", "021"), ("M2", "000"), ("M3", None), ("M4", "941"), ("M5", None), ("M6", "000")
    ]  # fmt: skip
