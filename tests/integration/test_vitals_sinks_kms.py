"""Every vitals lake write requests SSE-KMS when a key is configured, and none when it is not."""

from __future__ import annotations

import time

import pyarrow as pa
import pytest

from schemas.arrow import PROCESSED_VITALS
from tests.conftest import Resources
from vitalstream.devstack.clients import AwsClients
from workers.sinks.manifest_s3 import ManifestEntry, ManifestS3
from workers.sinks.parquet_s3 import ParquetS3
from workers.sinks.raw_archive_s3 import RawArchiveS3

pytestmark = pytest.mark.integration

KEY = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"


def _row_table() -> pa.Table:
    now_us = int(time.time() * 1_000_000)
    row = {
        "device_id": "d1",
        "patient_id": "p1",
        "metric": "heart_rate",
        "loinc_code": "8867-4",
        "value": 70.0,
        "unit": "/min",
        "measured_at": now_us,
        "received_at": now_us,
        "message_id": "m1",
        "batch_id": "b1",
    }
    return pa.Table.from_pylist([row]).cast(PROCESSED_VITALS)


@pytest.mark.parametrize("kms_key", [KEY, None])
async def test_lake_writes_request_sse_kms_when_configured(
    clients: AwsClients, resources: Resources, kms_key: str | None
) -> None:
    bucket = resources.names.bucket
    raw = await RawArchiveS3(clients.s3, bucket, kms_key_id=kms_key).write("b1", [(b'{"v":1}', int(time.time() * 1e6))])
    written = await ParquetS3(clients.s3, bucket, kms_key_id=kms_key).write_processed("b1", _row_table())
    manifest = await ManifestS3(clients.s3, bucket, kms_key_id=kms_key).write(
        "b1", [ManifestEntry(w.url, w.size) for w in written]
    )
    keys = [*raw, *(w.url for w in written), manifest]
    assert len(keys) == 3
    for key in keys:
        head = await clients.s3.head_object(Bucket=bucket, Key=key.removeprefix(f"s3://{bucket}/"))
        if kms_key:
            assert head["ServerSideEncryption"] == "aws:kms"
            assert head["SSEKMSKeyId"] == kms_key
        else:
            assert head.get("ServerSideEncryption") in (None, "AES256")
