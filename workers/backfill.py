"""``vitalstream backfill PIPELINE s3://bucket/prefix``: run objects already in S3 through a pipeline.

Each object is one batch, handled exactly as the live worker would (same handler, same retries, same
idempotency), so a backfill over objects that were already loaded changes nothing:

- ``ehr`` / ``claims``: landing files (``raw/ehr/…``, ``raw/claims/…``); the batch id is the one the
  S3-event source gives the same object version, so an object loaded live is skipped.
- ``vitals``: raw archive objects (``raw/iot/vitals/…/<batch_id>.jsonl.gz``, gzip JSON Lines of envelopes);
  the batch keeps its original id, so only batches the warehouse never committed are loaded.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import re
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from tqdm import tqdm

from common.aws import ClientFactory
from common.errors import TerminalError, TransientError, classify
from common.logging import configure_logging
from common.metrics import new_registry
from common.settings import WorkerSettings
from workers.pipelines.registry import PipelineContext, WorkerClients, build_pipeline
from workers.runtime.backoff import Backoff
from workers.runtime.metrics import WorkerMetrics
from workers.runtime.types import Batch, BatchHandler, BatchResult, SourceRecord, batch_id_for

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
_RAW_PARTITION = re.compile(r"dt=(\d{4}-\d{2}-\d{2})/hour=(\d{2})/")
_BATCH_STEM = re.compile(r"([A-Za-z0-9._-]{1,128})\.jsonl\.gz$")


@dataclass(frozen=True, slots=True)
class S3Object:
    bucket: str
    key: str
    etag: str
    last_modified_us: int


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """(bucket, prefix) of ``s3://bucket/prefix``; raises ValueError otherwise. Pure."""
    parts = urlsplit(uri)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"not an s3:// URI: {uri!r}")
    return parts.netloc, parts.path.lstrip("/")


def object_batch(pipeline: str, obj: S3Object, data: bytes) -> Batch:
    """The batch the live worker would build for ``obj`` (see the module docstring). Pure."""
    if pipeline != "vitals":
        record = SourceRecord(data=data, key=obj.key, position=obj.etag, arrived_at_us=obj.last_modified_us)
        batch_id = batch_id_for(pipeline, obj.key, obj.etag, obj.etag)
        return Batch(batch_id, pipeline, obj.key, (record,), obj.etag, obj.etag)
    lines = [line for line in gzip.decompress(data).split(b"\n") if line.strip()]
    if not lines:
        raise TerminalError("empty raw archive object")
    arrived_us = obj.last_modified_us
    if partition := _RAW_PARTITION.search(obj.key):
        hour = datetime.fromisoformat(f"{partition.group(1)}T{partition.group(2)}:00:00+00:00")
        arrived_us = int(hour.astimezone(UTC).timestamp() * 1_000_000)
    records = tuple(
        SourceRecord(data=line, key=obj.key, position=f"{obj.etag}:{index:08d}", arrived_at_us=arrived_us)
        for index, line in enumerate(lines)
    )
    stem = _BATCH_STEM.search(obj.key)
    batch_id = stem.group(1) if stem else batch_id_for(pipeline, obj.key, obj.etag, obj.etag)
    return Batch(batch_id, pipeline, f"backfill:{obj.key}", records, records[0].position, records[-1].position)


async def list_objects(s3: object, bucket: str, prefix: str) -> AsyncIterator[S3Object]:
    paginator = s3.get_paginator("list_objects_v2")  # type: ignore[attr-defined]
    async for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            if item["Key"].endswith("/"):
                continue
            modified = item["LastModified"]
            yield S3Object(
                bucket,
                item["Key"],
                str(item.get("ETag", "")).strip('"') or "unversioned",
                int(modified.timestamp() * 1_000_000),
            )


async def handle_with_retries(handler: BatchHandler, batch: Batch, backoff: Backoff) -> BatchResult:
    """The runner's policy for one batch: retry transient errors, quarantine on a terminal one."""
    for attempt in range(MAX_ATTEMPTS):
        try:
            return await handler.handle(batch)
        except Exception as exc:
            if classify(exc) is TransientError and attempt + 1 < MAX_ATTEMPTS:
                await asyncio.sleep(backoff.delay(attempt))
                continue
            log.warning("batch quarantined", extra={"batch_id": batch.batch_id, "error_type": type(exc).__name__})
            return await handler.quarantine(batch, exc)
    raise AssertionError("unreachable")


async def backfill(pipeline: str, uri: str, settings: WorkerSettings) -> BatchResult:
    bucket, prefix = parse_s3_uri(uri)
    registry = new_registry()
    metrics = WorkerMetrics(registry, pipeline)
    totals = [0, 0, 0, 0]
    async with AsyncExitStack() as stack:
        factory = ClientFactory(settings.aws_region)
        clients = WorkerClients(
            *[
                await stack.enter_async_context(factory.client(name))
                for name in ("kinesis", "s3", "sqs", "dynamodb", "glue")
            ]
        )
        ctx = PipelineContext(pipeline, "backfill", settings, clients, registry, metrics, stack, asyncio.Event())
        source, handler = await build_pipeline(ctx)
        stack.push_async_callback(source.close)
        objects = [obj async for obj in list_objects(clients.s3, bucket, prefix)]
        backoff = Backoff()
        for obj in tqdm(objects, desc=f"backfill {pipeline}", unit="object", file=sys.stderr):
            response = await clients.s3.get_object(Bucket=obj.bucket, Key=obj.key)
            async with response["Body"] as body:
                data = await body.read()
            try:
                batch = object_batch(pipeline, obj, data)
            except (OSError, EOFError, TerminalError):
                log.warning("object skipped: not a readable raw archive", extra={"source_key": obj.key})
                continue
            result = await handle_with_retries(handler, batch, backoff)
            for index, value in enumerate(
                (result.rows_in, result.rows_loaded, result.rows_quarantined, result.rows_duplicate)
            ):
                totals[index] += value
    return BatchResult(*totals)


def main(pipeline: str, uri: str) -> int:
    settings = WorkerSettings()
    configure_logging(settings.log_level)
    try:
        parse_s3_uri(uri)
    except ValueError as exc:
        print(f"vitalstream backfill: {exc}", file=sys.stderr)
        return 2
    result = asyncio.run(backfill(pipeline, uri, settings))
    print(
        f"backfill {pipeline}: rows_in={result.rows_in} loaded={result.rows_loaded} "
        f"quarantined={result.rows_quarantined} duplicate={result.rows_duplicate}"
    )
    return 0
