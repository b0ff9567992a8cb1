"""The batch-file handler shared by the ``ehr`` and ``claims`` pipelines (a ``BatchHandler``).

Per batch (one S3 object for the s3_events source; several records are handled as several files):

1. skip at once if ``load_audit`` already has the ``batch_id`` (a redelivered or replayed message);
2. parse each file with the pipeline's pure parser (in a thread: CPU-bound);
3. lake: put the good rows of every produced table to ``processed/…`` and the rejected rows to
   ``quarantine/…`` (keys derived from the source key: a replay overwrites); delete the objects a table or
   the quarantine no longer has, so the zones always reflect the latest version of the file;
4. warehouse: one transaction (rows, ``batch_quarantine`` replace for the source key, ``load_audit``).

Bad rows and unreadable files are values, never exceptions: the batch commits and the queue moves on.
:meth:`FileBatchHandler.quarantine` (after a terminal error) records the whole file as ``unprocessable``.
Logs carry ids and counts only, never file content.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa

from schemas.arrow import BATCH_QUARANTINE
from workers.runtime.types import Batch, BatchResult, SourceRecord
from workers.sinks.files_layout import processed_key, quarantine_key
from workers.sinks.files_s3 import LakeWriter
from workers.warehouse.file_types import BatchLoader, FileLoad, LoadPlan

__all__ = ["UNPROCESSABLE", "FileBatchHandler", "ParsedFile", "Parser"]

log = logging.getLogger(__name__)

UNPROCESSABLE = "unprocessable"
"""``batch_quarantine.reason`` of a file whose processing failed terminally (after parsing)."""


@dataclass(frozen=True, slots=True)
class ParsedFile:
    """A parser's output: lake table -> good rows (``schemas.arrow`` schema + ``source_line``), rejected rows
    (``line_number``, ``reason``, ``detail``, ``record_id``), and rows superseded within the file."""

    tables: Mapping[str, pa.Table]
    rejected: pa.Table
    duplicates: int = 0


Parser = Callable[[str, bytes], ParsedFile]
"""``(source key, file bytes) -> ParsedFile``; pure, never raises on bad input."""


class FileBatchHandler:
    """Parse -> lake Parquet -> one warehouse transaction, idempotent per ``batch_id``."""

    def __init__(
        self,
        pipeline: str,
        parse: Parser,
        lake: LakeWriter,
        loader: BatchLoader,
        lake_tables: tuple[str, ...],
    ) -> None:
        self.pipeline = pipeline
        self.parse = parse
        self.lake = lake
        self.loader = loader
        self.lake_tables = lake_tables

    async def handle(self, batch: Batch) -> BatchResult:
        done = await self.loader.audited(batch.batch_id)
        if done is not None:
            return done
        files = []
        for record in batch.records:
            parsed = await asyncio.to_thread(self.parse, record.key, record.data)
            files.append(await self._write_lake(batch.batch_id, record, parsed))
        result = await self.loader.load(LoadPlan(batch.batch_id, self.pipeline, tuple(files)))
        self._log("batch file loaded", batch, result)
        return result

    async def quarantine(self, batch: Batch, error: BaseException) -> BatchResult:
        sqlstate = getattr(error, "sqlstate", None)
        detail = f"file: processing failed ({type(error).__name__}{f', SQLSTATE {sqlstate}' if sqlstate else ''})"
        files = []
        for record in batch.records:
            rejected = pa.Table.from_pylist(
                [{"line_number": None, "reason": UNPROCESSABLE, "detail": detail, "record_id": None}]
            )
            files.append(await self._write_lake(batch.batch_id, record, ParsedFile({}, rejected)))
        result = await self.loader.load(LoadPlan(batch.batch_id, self.pipeline, tuple(files)))
        self._log("batch file quarantined whole", batch, result)
        return result

    async def _write_lake(self, batch_id: str, record: SourceRecord, parsed: ParsedFile) -> FileLoad:
        key = record.key
        lineage = {"source_key": key, "batch_id": batch_id}
        for table in self.lake_tables:
            rows = parsed.tables.get(table)
            target = processed_key(self.pipeline, table, key)
            if rows is not None and rows.num_rows:
                await self.lake.put_parquet(target, _with_constants(rows, lineage))
            else:
                await self.lake.delete(target)
        quarantine = _quarantine_rows(self.pipeline, key, parsed.rejected)
        target = quarantine_key(self.pipeline, key)
        if quarantine.num_rows:
            extra = {"record_id": parsed.rejected.column("record_id").cast(pa.string()), "batch_id": batch_id}
            await self.lake.put_parquet(target, _with_constants(quarantine, extra))
        else:
            await self.lake.delete(target)
        return FileLoad(
            source_key=key,
            valid_from=_event_time(record),
            quarantine=quarantine,
            tables={name: rows for name, rows in parsed.tables.items() if rows.num_rows},
            rows_duplicate=parsed.duplicates,
        )

    def _log(self, message: str, batch: Batch, result: BatchResult) -> None:
        log.info(
            message,
            extra={
                "pipeline": self.pipeline,
                "batch_id": batch.batch_id,
                "source_key": batch.source_id,
                "rows_in": result.rows_in,
                "rows_loaded": result.rows_loaded,
                "rows_quarantined": result.rows_quarantined,
                "rows_duplicate": result.rows_duplicate,
            },
        )


def _event_time(record: SourceRecord) -> datetime:
    """The object's event time (start of the SCD2 versions it creates); now if the source had none."""
    if record.arrived_at_us > 0:
        return datetime.fromtimestamp(record.arrived_at_us / 1_000_000, tz=UTC)
    return datetime.now(tz=UTC)


def _quarantine_rows(pipeline: str, source_key: str, rejected: pa.Table) -> pa.Table:
    n = rejected.num_rows
    return pa.Table.from_arrays(
        [
            pa.repeat(pa.scalar(pipeline), n).cast(pa.string()),
            pa.repeat(pa.scalar(source_key), n).cast(pa.string()),
            rejected.column("line_number").cast(pa.int64()),
            rejected.column("reason").cast(pa.string()),
            rejected.column("detail").cast(pa.string()),
        ],
        schema=BATCH_QUARANTINE,
    )


def _with_constants(table: pa.Table, columns: Mapping[str, str | pa.ChunkedArray | pa.Array]) -> pa.Table:
    for name, value in columns.items():
        column = value if not isinstance(value, str) else pa.repeat(pa.scalar(value), table.num_rows)
        table = table.append_column(name, column)
    return table
