"""The ``claims`` pipeline: S3 ObjectCreated events (SQS ``claims_queue``) for ``raw/claims/…`` CSV ->
``processed/claims/…`` + ``quarantine/claims/…`` Parquet -> ``fact_claims`` (upsert on (claim_id, line_number):
a later file updates the line), ``batch_quarantine``, ``load_audit`` in one transaction (CONTRACT §6-§8).

Objects under ``raw/claims/x12/`` are X12 005010 interchanges (:mod:`workers.formats.x12`): 837 lines land in
the ``claims`` lake table, 835 adjudications in ``remittances`` (applied to ``fact_claims`` by the loader).
"""

from __future__ import annotations

from collections.abc import Iterator

from workers.formats.claims import parse_claims_stream
from workers.formats.common import DEFAULT_BLOCK_BYTES
from workers.formats.x12 import MAX_ROWS as X12_ROWS
from workers.formats.x12 import read_x12
from workers.pipelines.feeds import parsed
from workers.pipelines.files import FileBatchHandler, FileSettings, ParsedFile, StreamParser
from workers.pipelines.registry import PipelineContext
from workers.runtime.types import BatchHandler, Source
from workers.sinks.files_s3 import LakeWriter
from workers.sources.s3_events import S3EventsSource
from workers.warehouse.open import open_loader

__all__ = ["LAKE_TABLES", "build", "claims_parser", "parse_claims_file"]

PIPELINE = "claims"
LAKE_TABLES = ("claims", "remittances")


def is_x12(key: str) -> bool:
    """True for a key under ``raw/claims/x12/`` (any bucket prefix before ``raw/``)."""
    return "/claims/x12/" in f"/{key}"


def claims_parser(block_size: int = DEFAULT_BLOCK_BYTES, *, x12_rows: int = X12_ROWS) -> StreamParser:
    """Pure :data:`StreamParser`: claims CSV in blocks of ``block_size`` bytes; X12 under ``raw/claims/x12/``
    in chunks of about ``x12_rows`` rows (:func:`workers.formats.x12.read_x12`)."""

    def parse(key: str, chunks: Iterator[bytes]) -> Iterator[ParsedFile]:
        if is_x12(key):  # a chunk per bounded run of interchanges; last line per key wins by source_line
            yield from parsed(read_x12(key, chunks, max_rows=x12_rows))
            return
        for result in parse_claims_stream(chunks, block_size=block_size):
            yield ParsedFile({"claims": result.good}, result.rejected, result.duplicates)

    return parse


parse_claims_file = claims_parser()


async def build(ctx: PipelineContext) -> tuple[Source, BatchHandler]:
    """S3-events source on ``settings.claims_queue`` + the claims file handler (loader closed via ``ctx.stack``)."""
    settings = ctx.settings
    loader = await open_loader(settings.warehouse_url.get_secret_value(), settings=settings, s3=ctx.clients.s3)
    ctx.stack.push_async_callback(loader.close)
    source = S3EventsSource(
        ctx.clients.sqs,
        ctx.clients.s3,
        queue=settings.claims_queue,
        pipeline=PIPELINE,
        metrics=ctx.metrics,
        visibility_timeout=settings.file_visibility_seconds,
    )
    lake = LakeWriter(ctx.clients.s3, settings.bucket, settings.kms_key_id)
    files = FileSettings(read_bytes=settings.file_chunk_bytes, max_ratio=settings.file_max_ratio)
    parse = claims_parser(settings.file_chunk_bytes)
    return source, FileBatchHandler(PIPELINE, parse, lake, loader, LAKE_TABLES, settings=files)
