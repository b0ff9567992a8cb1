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

from typing import Literal

import pyarrow as pa

from workers.formats.cdc import read_cdc
from workers.formats.common import REJECTED
from workers.formats.encounters import parse_encounters
from workers.formats.fhir import parse_fhir
from workers.formats.hl7 import read_hl7
from workers.formats.patients import parse_patients
from workers.pipelines.feeds import chunks_of, collect
from workers.pipelines.files import FileBatchHandler, ParsedFile
from workers.pipelines.registry import PipelineContext
from workers.runtime.types import BatchHandler, Source
from workers.sinks.files_s3 import LakeWriter
from workers.sources.s3_events import S3EventsSource
from workers.warehouse.open import open_loader

__all__ = ["LAKE_TABLES", "UNKNOWN_PREFIX", "build", "parse_ehr_file", "route"]

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


def parse_ehr_file(key: str, data: bytes) -> ParsedFile:
    """Pure: route ``key`` and parse ``data`` with the matching stage."""
    kind = route(key)
    if kind == "hl7":
        return collect(read_hl7(key, chunks_of(data)))
    if kind == "cdc":
        return collect(read_cdc(key, chunks_of(data)))
    if kind == "patients":
        result = parse_patients(data)
        return ParsedFile({"patients": result.good}, result.rejected, result.duplicates)
    if kind == "encounters":
        result = parse_encounters(data)
        return ParsedFile({"encounters": result.good}, result.rejected, result.duplicates)
    if kind == "fhir":
        fhir = parse_fhir(data)
        return ParsedFile({"patients": fhir.patients, "encounters": fhir.encounters}, fhir.rejected, fhir.duplicates)
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
        ctx.clients.sqs, ctx.clients.s3, queue=settings.ehr_queue, pipeline=PIPELINE, metrics=ctx.metrics
    )
    lake = LakeWriter(ctx.clients.s3, settings.bucket, settings.kms_key_id)
    return source, FileBatchHandler(PIPELINE, parse_ehr_file, lake, loader, LAKE_TABLES)
