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
import time
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
from workers.runtime.memory import tune_allocator
from workers.runtime.metrics import WorkerMetrics
from workers.runtime.types import Batch, BatchHandler, BatchResult, ObjectRef, SourceRecord, batch_id_for

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
    size: int = 0


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """(bucket, prefix) of ``s3://bucket/prefix``; raises ValueError otherwise. Pure."""
    parts = urlsplit(uri)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"not an s3:// URI: {uri!r}")
    return parts.netloc, parts.path.lstrip("/")


def object_batch(pipeline: str, obj: S3Object, data: bytes = b"") -> Batch:
    """The batch the live worker would build for ``obj`` (see the module docstring). Pure.

    ``ehr`` / ``claims``: the record references the object (the handler streams it; ``data`` is not needed).
    """
    if pipeline != "vitals":
        ref = ObjectRef(obj.bucket, obj.key, None, obj.size)
        record = SourceRecord(data=b"", key=obj.key, position=obj.etag, arrived_at_us=obj.last_modified_us, ref=ref)
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
                int(item.get("Size", 0)),
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


@dataclass(slots=True)
class Summary:
    """What a backfill did (the final summary line)."""

    files: int = 0
    bytes: int = 0
    rows_in: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    rows_duplicate: int = 0
    files_quarantined: int = 0
    files_skipped: int = 0

    def add(self, result: BatchResult) -> None:
        self.rows_in += result.rows_in
        self.rows_loaded += result.rows_loaded
        self.rows_quarantined += result.rows_quarantined
        self.rows_duplicate += result.rows_duplicate

    def line(self, pipeline: str) -> str:
        return (
            f"backfill {pipeline}: files={self.files} rows_in={self.rows_in} loaded={self.rows_loaded} "
            f"quarantined={self.rows_quarantined} duplicate={self.rows_duplicate} "
            f"files_quarantined={self.files_quarantined} files_skipped={self.files_skipped}"
        )


class Progress:
    """Objects and bytes done: a tqdm bar (rate, time left) on a terminal, else a plain line every
    ``every`` seconds."""

    def __init__(self, total_objects: int, total_bytes: int, *, tty: bool, every: float = 10.0) -> None:
        self.total_objects = total_objects
        self.total_bytes = total_bytes
        self.every = every
        self.objects = 0
        self.bytes = 0
        self._last = time.monotonic()
        self._bar = (
            tqdm(total=total_bytes, unit="B", unit_scale=True, unit_divisor=1024, desc="backfill", file=sys.stderr)
            if tty
            else None
        )

    def advance(self, size: int) -> None:
        self.objects += 1
        self.bytes += size
        if self._bar is not None:
            self._bar.set_postfix_str(f"{self.objects}/{self.total_objects} objects", refresh=False)
            self._bar.update(size)
        elif time.monotonic() - self._last >= self.every or self.objects == self.total_objects:
            self._last = time.monotonic()
            print(
                f"backfill: {self.objects}/{self.total_objects} objects, "
                f"{self.bytes / 2**20:.1f}/{self.total_bytes / 2**20:.1f} MiB",
                file=sys.stderr,
                flush=True,
            )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


async def backfill(
    pipeline: str, uri: str, settings: WorkerSettings, *, concurrency: int = 4, tty: bool | None = None
) -> Summary:
    """Run every object under ``uri`` through ``pipeline``, ``concurrency`` objects at a time."""
    bucket, prefix = parse_s3_uri(uri)
    registry = new_registry()
    metrics = WorkerMetrics(registry, pipeline)
    summary = Summary()
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
        progress = Progress(len(objects), sum(o.size for o in objects), tty=sys.stderr.isatty() if tty is None else tty)
        backoff = Backoff()
        queue: asyncio.Queue[S3Object] = asyncio.Queue()
        for obj in objects:
            queue.put_nowait(obj)

        async def one(obj: S3Object) -> None:
            data = b""
            if pipeline == "vitals":
                response = await clients.s3.get_object(Bucket=obj.bucket, Key=obj.key)
                async with response["Body"] as body:
                    data = await body.read()
            try:
                batch = object_batch(pipeline, obj, data)
            except (OSError, EOFError, TerminalError):
                log.warning("object skipped: not a readable raw archive", extra={"source_key": obj.key})
                summary.files_skipped += 1
                return
            summary.add(await handle_with_retries(handler, batch, backoff))
            summary.files += 1

        async def work() -> None:
            while not queue.empty():
                obj = queue.get_nowait()
                await one(obj)
                progress.advance(obj.size)

        try:
            await asyncio.gather(*(work() for _ in range(max(1, concurrency))))
        finally:
            progress.close()
        summary.files_quarantined = int(getattr(handler, "files_quarantined", 0))
    return summary


def main(pipeline: str, uri: str, concurrency: int = 4) -> int:
    settings = WorkerSettings()
    configure_logging(settings.log_level)
    tune_allocator()
    try:
        parse_s3_uri(uri)
    except ValueError as exc:
        print(f"vitalstream backfill: {exc}", file=sys.stderr)
        return 2
    summary = asyncio.run(backfill(pipeline, uri, settings, concurrency=concurrency))
    print(summary.line(pipeline))
    return 0
