"""The ``claims`` pipeline against moto S3/SQS and the private PostgreSQL."""

from __future__ import annotations

import asyncio
import gzip
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from decimal import Decimal

import pytest
from prometheus_client import CollectorRegistry

from common.settings import WorkerSettings
from tests.conftest import Resources
from tests.helpers.batch import CLAIMS_HEADER, batch_handler, claim, csv_bytes, fetch, list_keys, object_batch
from vitalstream.devstack.clients import AwsClients
from workers.pipelines import claims as claims_pipeline
from workers.pipelines.files import FileBatchHandler, FileSettings
from workers.pipelines.registry import PipelineContext, WorkerClients
from workers.runtime.flush import FlushPolicy
from workers.runtime.metrics import WorkerMetrics
from workers.runtime.runner import Runner
from workers.sinks.files_s3 import LakeWriter
from workers.warehouse.postgres.files import PostgresBatchLoader

pytestmark = pytest.mark.integration

CLAIM_ROWS = (
    "SELECT claim_id, line_number, status, billed_amount, allowed_amount, paid_amount, denial_reason "
    "FROM fact_claims ORDER BY claim_id, line_number"
)


@pytest.fixture
async def handler(resources: Resources, clients: AwsClients) -> AsyncIterator[FileBatchHandler]:
    async with batch_handler(
        resources, clients.s3, "claims", claims_pipeline.parse_claims_file, claims_pipeline.LAKE_TABLES
    ) as h:
        yield h


async def test_later_file_updates_the_claim_line(handler: FileBatchHandler, resources: Resources) -> None:
    url = resources.warehouse_url
    first = csv_bytes(CLAIMS_HEADER, [claim("C1", 1, status="pending", paid_amount=""), claim("C1", 2)])
    await handler.handle(object_batch("claims", "raw/claims/2026/01/a.csv", first))
    later = csv_bytes(CLAIMS_HEADER, [claim("C1", 1, status="Denied", paid_amount="0", denial_reason="CO-97")])
    result = await handler.handle(object_batch("claims", "raw/claims/2026/01/b.csv", later))
    assert (result.rows_in, result.rows_loaded) == (1, 1)
    assert await fetch(url, CLAIM_ROWS) == [
        {"claim_id": "C1", "line_number": 1, "status": "denied", "billed_amount": Decimal("150.00"),
         "allowed_amount": Decimal("120.50"), "paid_amount": Decimal("0.00"), "denial_reason": "CO-97"},
        {"claim_id": "C1", "line_number": 2, "status": "paid", "billed_amount": Decimal("150.00"),
         "allowed_amount": Decimal("120.50"), "paid_amount": Decimal("100.25"), "denial_reason": None},
    ]  # fmt: skip


async def test_bad_rows_are_quarantined_and_the_rest_loads(
    handler: FileBatchHandler, resources: Resources, clients: AwsClients
) -> None:
    rows = [
        claim("C1", 1),
        claim("C2", 1, status="approved"),
        claim("C3", 1, provider_npi="12345"),
        claim("C4", 1, billed_amount="12.345"),
        claim("C5", 1, service_date="2026-02-30"),
        ["C6", "1", "P1"],  # wrong number of fields
        claim("C7", 1, denial_reason="x" * 300),
        claim("C1", 1, paid_amount="99.99"),  # same line later in the file: last wins
    ]
    key = "raw/claims/bad.csv"
    batch = object_batch("claims", key, csv_bytes(CLAIMS_HEADER, rows))
    result = await handler.handle(batch)
    assert (result.rows_in, result.rows_loaded, result.rows_quarantined, result.rows_duplicate) == (8, 1, 6, 1)
    assert await handler.handle(batch) == result
    url = resources.warehouse_url
    assert await fetch(url, "SELECT claim_id, paid_amount FROM fact_claims") == [
        {"claim_id": "C1", "paid_amount": Decimal("99.99")}
    ]
    quarantined = await fetch(url, "SELECT line_number, reason FROM batch_quarantine ORDER BY line_number")
    assert quarantined == [
        {"line_number": 3, "reason": "invalid_status"},
        {"line_number": 4, "reason": "invalid_npi"},
        {"line_number": 5, "reason": "invalid_amount"},
        {"line_number": 6, "reason": "invalid_date"},
        {"line_number": 7, "reason": "malformed_row"},
        {"line_number": 8, "reason": "field_too_long"},
    ]
    audit = await fetch(url, "SELECT rows_in, rows_loaded, rows_quarantined, rows_duplicate FROM load_audit")
    assert audit == [{"rows_in": 8, "rows_loaded": 1, "rows_quarantined": 6, "rows_duplicate": 1}]
    bucket = resources.names.bucket
    assert await list_keys(clients.s3, bucket, "processed/claims/") == ["processed/claims/bad.csv/part-00000.parquet"]
    assert await list_keys(clients.s3, bucket, "quarantine/claims/") == ["quarantine/claims/bad.csv/part-00000.parquet"]


async def test_object_landing_in_raw_claims_reaches_fact_claims(clients: AwsClients, resources: Resources) -> None:
    """End to end: S3 put -> ObjectCreated on SQS -> S3EventsSource -> runner -> claims handler -> PostgreSQL."""
    settings = WorkerSettings()
    assert settings.claims_queue == resources.names.claims_queue
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry, "claims")
    body = csv_bytes(CLAIMS_HEADER, [claim("E2E", 1), claim("E2E", 2, status="oops")])
    key = "raw/claims/2026/01/e2e batch.csv"
    async with AsyncExitStack() as stack:
        worker_clients = WorkerClients(clients.kinesis, clients.s3, clients.sqs, clients.dynamodb)
        stop = asyncio.Event()
        ctx = PipelineContext(
            name="claims",
            worker_id="test-worker",
            settings=settings,
            clients=worker_clients,
            registry=registry,
            metrics=metrics,
            stack=stack,
            stopping=stop,
        )
        source, handler = await claims_pipeline.build(ctx)
        runner = Runner(source, handler, FlushPolicy(max_age=0.5), metrics, pipeline="claims", poll_interval=0.5)
        task = asyncio.create_task(runner.run(stop))
        try:
            await clients.s3.put_object(Bucket=resources.names.bucket, Key=key, Body=body)
            deadline = time.monotonic() + 30
            rows: list[dict[str, object]] = []
            while time.monotonic() < deadline and not rows:
                await asyncio.sleep(0.3)
                rows = await fetch(resources.warehouse_url, "SELECT pipeline FROM load_audit")
        finally:
            stop.set()
            await asyncio.wait_for(task, timeout=30)
    url = resources.warehouse_url
    assert await fetch(url, "SELECT claim_id, line_number FROM fact_claims") == [{"claim_id": "E2E", "line_number": 1}]
    assert await fetch(url, "SELECT source_key, line_number, reason FROM batch_quarantine") == [
        {"source_key": key, "line_number": 3, "reason": "invalid_status"}
    ]
    queue_url = (await clients.sqs.get_queue_url(QueueName=resources.names.claims_queue))["QueueUrl"]
    attrs = await clients.sqs.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )
    assert attrs["Attributes"] == {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0"}


@pytest.fixture
async def small_chunks(resources: Resources, clients: AwsClients) -> AsyncIterator[FileBatchHandler]:
    """A claims handler reading 1 KiB at a time and parsing 2 KiB blocks: small files span many chunks."""
    loader = await PostgresBatchLoader.connect(resources.warehouse_url)
    lake = LakeWriter(clients.s3, resources.names.bucket)
    settings = FileSettings(read_bytes=1024, ratio_floor=4096)
    try:
        yield FileBatchHandler(
            "claims", claims_pipeline.claims_parser(2048), lake, loader, claims_pipeline.LAKE_TABLES, settings=settings
        )
    finally:
        await loader.close()


async def test_a_shorter_version_of_a_file_removes_the_parts_of_the_longer_one(
    small_chunks: FileBatchHandler, resources: Resources, clients: AwsClients
) -> None:
    key, bucket = "raw/claims/daily.csv", resources.names.bucket
    long = csv_bytes(CLAIMS_HEADER, [claim(f"C{i}", 1) for i in range(200)])
    await small_chunks.handle(object_batch("claims", key, long, etag="v1"))
    first = await list_keys(clients.s3, bucket, "processed/claims/daily.csv/")
    assert len(first) > 5
    short = csv_bytes(CLAIMS_HEADER, [claim(f"C{i}", 1) for i in range(30)] + [claim("C0", 1, status="nope")])
    result = await small_chunks.handle(object_batch("claims", key, short, etag="v2"))
    assert (result.rows_loaded, result.rows_quarantined) == (30, 1)
    second = await list_keys(clients.s3, bucket, "processed/claims/daily.csv/")
    assert second == first[: len(second)]
    assert len(second) < len(first)
    assert len(await list_keys(clients.s3, bucket, "quarantine/claims/daily.csv/")) == 1


async def test_a_fault_found_mid_file_quarantines_the_whole_file_and_nothing_else_of_it(
    small_chunks: FileBatchHandler, resources: Resources, clients: AwsClients
) -> None:
    key, bucket = "raw/claims/latin1.csv", resources.names.bucket
    good = csv_bytes(CLAIMS_HEADER, [claim(f"C{i}", 1) for i in range(300)])
    data = good + "C999,1,P1,,2026-01-05,99213,I10,1.00,1.00,1.00,paid,M\xfcller\r\n".encode("latin-1")
    result = await small_chunks.handle(object_batch("claims", key, data))
    assert (result.rows_in, result.rows_loaded, result.rows_quarantined) == (1, 0, 1)
    url = resources.warehouse_url
    assert await fetch(url, "SELECT count(*) AS n FROM fact_claims") == [{"n": 0}]
    assert await fetch(url, "SELECT line_number, reason FROM batch_quarantine") == [
        {"line_number": None, "reason": "not_utf8"}
    ]
    assert await list_keys(clients.s3, bucket, "processed/claims/latin1.csv/") == []
    assert await list_keys(clients.s3, bucket, "quarantine/claims/latin1.csv/") == [
        "quarantine/claims/latin1.csv/part-00000.parquet"
    ]


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("bomb.csv.gz", gzip.compress(b"claim_id" + b" " * 2_000_000), "decompression_limit"),
        ("cut.csv.gz", gzip.compress(csv_bytes(CLAIMS_HEADER, [claim("C1")]))[:-12], "unreadable"),
        ("bad.csv.gz", b"\x1f\x8b\x08\x00garbage-not-deflate", "unreadable"),
    ],
)
async def test_gzip_faults_quarantine_the_file_whole(
    small_chunks: FileBatchHandler, resources: Resources, name: str, data: bytes, reason: str
) -> None:
    result = await small_chunks.handle(object_batch("claims", f"raw/claims/{name}", data))
    assert (result.rows_loaded, result.rows_quarantined) == (0, 1)
    assert await fetch(resources.warehouse_url, "SELECT line_number, reason FROM batch_quarantine") == [
        {"line_number": None, "reason": reason}
    ]


async def test_gzip_by_magic_without_the_suffix(small_chunks: FileBatchHandler, resources: Resources) -> None:
    data = gzip.compress(csv_bytes(CLAIMS_HEADER, [claim(f"C{i}", 1) for i in range(100)]))
    result = await small_chunks.handle(object_batch("claims", "raw/claims/packed.csv", data))
    assert (result.rows_loaded, result.rows_quarantined) == (100, 0)
