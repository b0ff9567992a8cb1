"""The ``ehr`` pipeline: S3 ObjectCreated events (SQS ``ehr_queue``) for ``raw/ehr/…`` -> parse by kind ->
``processed/ehr/{patients,encounters}/…`` + ``quarantine/ehr/…`` Parquet -> ``dim_patient`` (SCD2),
``fact_encounters`` (upsert), ``batch_quarantine``, ``load_audit`` in one transaction (CONTRACT §6-§8).

Routing is by the key's folder (:func:`route`): ``…/patients/`` CSV, ``…/encounters/`` CSV, ``…/fhir/``
NDJSON, ``…/cdc/<schema>/{patients,encounters}/`` AWS DMS files (:mod:`workers.formats.cdc`: changes in the
``patient_changes`` / ``encounter_changes`` lake tables, applied newest-first by the loader). An object under
none of them is quarantined whole (``unknown_prefix``). ``…/hl7/`` holds HL7 v2 ADT messages
(:mod:`workers.formats.hl7`: the ``adt_events`` lake table, folded into dim_patient / fact_encounters).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import pyarrow as pa

from workers.formats.cdc import read_cdc
from workers.formats.common import DEFAULT_BLOCK_BYTES, REJECTED
from workers.formats.encounters import parse_encounters_stream
from workers.formats.fhir import parse_fhir_stream
from workers.formats.hl7 import MAX_ROWS as HL7_ROWS
from workers.formats.hl7 import read_hl7
from workers.formats.patients import parse_patients_stream
from workers.pipelines.feeds import parsed
from workers.pipelines.files import FileBatchHandler, FileSettings, ParsedFile, StreamParser
from workers.pipelines.registry import PipelineContext
from workers.runtime.types import BatchHandler, Source
from workers.sinks.files_s3 import LakeWriter
from workers.sources.s3_events import S3EventsSource
from workers.warehouse.open import open_loader

__all__ = ["LAKE_TABLES", "UNKNOWN_PREFIX", "build", "ehr_parser", "parse_ehr_file", "route"]

PIPELINE = "ehr"
LAKE_TABLES = ("patients", "encounters", "patient_changes", "encounter_changes", "adt_events")
UNKNOWN_PREFIX = "unknown_prefix"
_KINDS = ("patients", "encounters", "fhir", "cdc", "hl7")
Kind = Literal["patients", "encounters", "fhir", "cdc", "hl7"]


def route(key: str) -> Kind | None:
    """The feed of an object key: the folder after ``ehr/`` (``raw/ehr/patients/x.csv`` -> ``patients``)."""
    parts = key.split("/")
    for index, part in enumerate(parts[:-1]):
        if part == "ehr" and index + 1 < len(parts) - 1 and parts[index + 1] in _KINDS:
            return parts[index + 1]  # type: ignore[return-value]
    return None


def ehr_parser(block_size: int = DEFAULT_BLOCK_BYTES, *, hl7_rows: int = HL7_ROWS) -> StreamParser:
    """Pure :data:`StreamParser`: route the key, then parse the chunks with the matching reader (CSV, FHIR and
    DMS CSV in blocks of ``block_size`` bytes, HL7 in chunks of ``hl7_rows`` messages)."""

    def parse(key: str, chunks: Iterator[bytes]) -> Iterator[ParsedFile]:
        kind = route(key)
        if kind == "hl7":  # a chunk per hl7_rows messages (ordered by MSH-7 and folded per patient in SQL)
            yield from parsed(read_hl7(key, chunks, max_rows=hl7_rows))
        elif kind == "cdc":  # a chunk per CSV block / Parquet row group (ordered by dms_commit_ts in SQL)
            yield from parsed(read_cdc(key, chunks, block_size=block_size))
        elif kind == "patients":
            for result in parse_patients_stream(chunks, block_size=block_size):
                yield ParsedFile({"patients": result.good}, result.rejected, result.duplicates)
        elif kind == "encounters":
            for result in parse_encounters_stream(chunks, block_size=block_size):
                yield ParsedFile({"encounters": result.good}, result.rejected, result.duplicates)
        elif kind == "fhir":
            for fhir in parse_fhir_stream(chunks, block_size=block_size):
                tables = {"patients": fhir.patients, "encounters": fhir.encounters}
                yield ParsedFile(tables, fhir.rejected, fhir.duplicates, fhir.skipped)
        else:
            yield _unknown_prefix()

    return parse


parse_ehr_file = ehr_parser()


def _unknown_prefix() -> ParsedFile:
    rejected = pa.Table.from_pylist(
        [
            {
                "line_number": None,
                "reason": UNKNOWN_PREFIX,
                "detail": "key: not under raw/ehr/{patients,encounters,fhir,cdc,hl7}/",
                "record_id": None,
            }
        ],
        schema=REJECTED,
    )
    return ParsedFile({}, rejected)


async def build(ctx: PipelineContext) -> tuple[Source, BatchHandler]:
    """S3-events source on ``settings.ehr_queue`` + the EHR file handler (loader closed via ``ctx.stack``)."""
    settings = ctx.settings
    loader = await open_loader(settings.warehouse_url.get_secret_value(), settings=settings, s3=ctx.clients.s3)
    ctx.stack.push_async_callback(loader.close)
    source = S3EventsSource(
        ctx.clients.sqs,
        ctx.clients.s3,
        queue=settings.ehr_queue,
        pipeline=PIPELINE,
        metrics=ctx.metrics,
        visibility_timeout=settings.file_visibility_seconds,
    )
    lake = LakeWriter(ctx.clients.s3, settings.bucket, settings.kms_key_id)
    files = FileSettings(read_bytes=settings.file_chunk_bytes, max_ratio=settings.file_max_ratio)
    parse = ehr_parser(settings.file_chunk_bytes)
    return source, FileBatchHandler(PIPELINE, parse, lake, loader, LAKE_TABLES, settings=files)
