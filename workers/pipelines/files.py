"""The batch-file handler shared by the ``ehr`` and ``claims`` pipelines (a ``BatchHandler``), streaming.

Per batch (one S3 object for the s3_events source and for backfill):

1. skip at once if ``load_audit`` already has the ``batch_id`` (a redelivered or replayed message);
2. open ONE warehouse :class:`~workers.warehouse.file_types.LoadSession` (one transaction);
3. stream the object (``SourceRecord.ref``, read by :func:`workers.sources.s3_events.read_object`; or the
   record's ``data``), gunzip on the fly (``.gz`` or gzip magic, ratio-limited), and run the pipeline's pure
   :data:`StreamParser` on it in a worker thread: one :class:`ParsedFile` per chunk;
4. per chunk, as it comes: lake Parquet parts (``…/part-NNNNN.parquet``, deterministic keys: a replay
   overwrites them) of the good rows of every table and of the rejected rows, then the chunk loaded into the
   session (PostgreSQL: upsert tables merged in the transaction, the others COPYed into its staging tables;
   Redshift: staged Parquet parts) -- while the thread parses the next chunks;
5. at the file's end: parts left from an earlier, longer version of the file are deleted, the session merges
   what it staged; then ``commit`` writes ``load_audit`` -- nothing of the file is visible before that.

Rows with a NUL character in a text field (which neither PostgreSQL nor Redshift text can hold) are moved to
the rejected rows (``malformed_row``) as each chunk is parsed, so that one cannot fail the file's load.
Memory is bounded by the chunk size and a queue of two parsed chunks, whatever the file's size. A file that
cannot be read (not UTF-8, wrong header, corrupt gzip, too high a compression ratio, ...) -- even when
found mid-file -- is quarantined whole: the session is abandoned and the batch redone with only that file's
whole-file row. A part of a file whose rows were staged before it was found invalid (an X12 interchange
larger than the reader's row bound that then fails its envelope: :class:`ParsedFile` ``retracts``) is
handled the same way: the batch is redone and that part's chunks are dropped, so nothing of it is visible
and the rest of the file loads. Bad rows and unreadable files are values, never exceptions: the batch
commits and the queue moves on. :meth:`FileBatchHandler.quarantine` (after a terminal error) records the whole file as
``unprocessable``. Logs carry ids and counts only, never file content.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from schemas.arrow import BATCH_QUARANTINE
from workers.formats.common import REJECTED, without_nul
from workers.formats.decompress import DecompressionError, maybe_gunzip
from workers.runtime.types import Batch, BatchResult, SourceRecord
from workers.sinks.files_layout import part_key, part_prefix
from workers.sinks.files_s3 import LakeWriter
from workers.sources.s3_events import read_object
from workers.warehouse.file_types import BatchLoader, LoadSession

__all__ = [
    "UNPROCESSABLE",
    "FileBatchHandler",
    "FileSettings",
    "ParsedFile",
    "Parser",
    "StreamParser",
    "whole_file",
]

log = logging.getLogger(__name__)

UNPROCESSABLE = "unprocessable"
"""``batch_quarantine.reason`` of a file whose processing failed terminally (after parsing)."""


@dataclass(frozen=True, slots=True)
class ParsedFile:
    """A parser's output for one chunk: lake table -> good rows (``schemas.arrow`` schema + ``source_line``),
    rejected rows (``line_number`` absolute in the file, ``reason``, ``detail``, ``record_id``), rows
    superseded within the chunk, and resources skipped by type (counted, not quarantined).

    ``rejects_file``: True when this chunk rejects the WHOLE file (its ``rejected`` is then the file's one
    row; it is the last chunk a parser yields; earlier chunks of the file are discarded); False when its rows
    are rejected alone, even a row with a null ``line_number`` (e.g. an X12 interchange); None (the CSV and
    FHIR readers) infers it: exactly one rejected row with a null ``line_number`` rejects the file.

    ``part`` / ``retracts`` (X12 interchanges): a reader that must release rows of a part of the file (an
    interchange larger than its row bound) before it knows whether the part is valid tags those chunks with
    the part's ordinal; a later chunk with ``retracts`` = that ordinal rejects the part whole. The handler then
    redoes the file, dropping every chunk of that part (see :class:`FileBatchHandler`)."""

    tables: Mapping[str, pa.Table]
    rejected: pa.Table
    duplicates: int = 0
    skipped: Mapping[str, int] = field(default_factory=dict)
    rejects_file: bool | None = None
    part: int | None = None
    retracts: int | None = None

    @property
    def file_rejected(self) -> bool:
        if self.rejects_file is not None:
            return self.rejects_file
        return bool(self.rejected.num_rows == 1 and self.rejected.column("line_number").null_count == 1)


Parser = Callable[[str, bytes], ParsedFile]
"""``(source key, file bytes) -> ParsedFile``; pure, never raises on bad input (whole file in memory)."""

StreamParser = Callable[[str, Iterator[bytes]], Iterator[ParsedFile]]
"""``(source key, decompressed byte chunks) -> one ParsedFile per parsed chunk``; pure, never raises on bad
input, memory bounded by its own block size."""


def whole_file(parse: Parser) -> StreamParser:
    """Adapt a whole-file :data:`Parser` (reads the file into memory: for small formats only)."""

    def stream(key: str, chunks: Iterator[bytes]) -> Iterator[ParsedFile]:
        yield parse(key, b"".join(chunks))

    return stream


@dataclass(frozen=True, slots=True)
class FileSettings:
    """How files are read: S3 read size, decompression-ratio limit (zip bombs) and its floor."""

    read_bytes: int = 4 * 1024 * 1024
    max_ratio: float = 200.0
    ratio_floor: int = 64 * 1024 * 1024


class _Unreadable(Exception):
    def __init__(self, key: str, rejected: pa.Table) -> None:
        super().__init__(key)
        self.key = key
        self.rejected = rejected


class _Retracted(Exception):
    """A part of file ``key`` whose chunks were already staged was rejected whole: redo without them."""

    def __init__(self, key: str, part: int) -> None:
        super().__init__(key)
        self.key = key
        self.part = part


class FileBatchHandler:
    """Stream -> parse per chunk -> lake parts + warehouse staging -> one commit, idempotent per ``batch_id``."""

    def __init__(
        self,
        pipeline: str,
        parse: StreamParser,
        lake: LakeWriter,
        loader: BatchLoader,
        lake_tables: tuple[str, ...],
        *,
        s3: Any = None,
        settings: FileSettings | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.parse = parse
        self.lake = lake
        self.loader = loader
        self.lake_tables = lake_tables
        self.s3 = s3 if s3 is not None else lake.s3
        self.settings = settings or FileSettings()
        self.files_quarantined = 0
        """Files quarantined whole by this handler (for the backfill summary)."""

    async def handle(self, batch: Batch) -> BatchResult:
        done = await self.loader.audited(batch.batch_id)
        if done is not None:
            return done
        unreadable: dict[str, pa.Table] = {}
        dropped: dict[str, frozenset[int]] = {}
        while True:
            try:
                result, skipped = await self._run(batch, unreadable, dropped)
            except _Unreadable as exc:
                unreadable[exc.key] = exc.rejected
                continue
            except _Retracted as exc:  # at most once per part of the file
                dropped[exc.key] = dropped.get(exc.key, frozenset()) | {exc.part}
                continue
            break
        self.files_quarantined += len(unreadable)
        self._log("batch file loaded", batch, result, skipped)
        return result

    async def quarantine(self, batch: Batch, error: BaseException) -> BatchResult:
        sqlstate = getattr(error, "sqlstate", None)
        detail = f"file: processing failed ({type(error).__name__}{f', SQLSTATE {sqlstate}' if sqlstate else ''})"
        rejected = pa.Table.from_pylist(
            [{"line_number": None, "reason": UNPROCESSABLE, "detail": detail, "record_id": None}], schema=REJECTED
        )
        result, _ = await self._run(batch, {record.key: rejected for record in batch.records})
        self.files_quarantined += len(batch.records)
        self._log("batch file quarantined whole", batch, result, {})
        return result

    # -- one attempt at the batch ---------------------------------------------------------------------------

    async def _run(
        self,
        batch: Batch,
        unreadable: Mapping[str, pa.Table],
        dropped: Mapping[str, frozenset[int]] | None = None,
    ) -> tuple[BatchResult, dict[str, int]]:
        skipped: dict[str, int] = {}
        async with self.loader.session(batch.batch_id, self.pipeline) as session:
            if session.audited is not None:
                return session.audited, skipped
            for record in batch.records:
                await session.start_file(record.key, _event_time(record))
                if record.key in unreadable:
                    await self._whole_file(batch.batch_id, record, session, unreadable[record.key])
                else:
                    drop = (dropped or {}).get(record.key, frozenset())
                    await self._stream_file(batch.batch_id, record, session, skipped, drop)
                await session.end_file()
            return await session.commit(), skipped

    async def _whole_file(self, batch_id: str, record: SourceRecord, session: LoadSession, rejected: pa.Table) -> None:
        written = await self._write_part(batch_id, record.key, 0, ParsedFile({}, rejected))
        await self._remove_stale(record.key, written)
        await session.add({}, _quarantine_rows(self.pipeline, record.key, rejected))

    async def _stream_file(
        self,
        batch_id: str,
        record: SourceRecord,
        session: LoadSession,
        skipped: dict[str, int],
        drop: frozenset[int],
    ) -> None:
        """Stage the file chunk by chunk; chunks of a part in ``drop`` (retracted in an earlier attempt) are
        left out."""
        written: set[str] = set()
        staged_parts: set[int] = set()
        index = 0
        async with contextlib.aclosing(self._parsed(record)) as chunks:
            async for parsed in chunks:
                if parsed.file_rejected:
                    raise _Unreadable(record.key, parsed.rejected)
                if parsed.part is not None:
                    if parsed.part in drop:
                        continue
                    staged_parts.add(parsed.part)
                if parsed.retracts is not None and parsed.retracts in staged_parts:
                    raise _Retracted(record.key, parsed.retracts)
                written |= await self._write_part(batch_id, record.key, index, parsed)
                tables = {name: rows for name, rows in parsed.tables.items() if rows.num_rows}
                quarantine = _quarantine_rows(self.pipeline, record.key, parsed.rejected)
                await session.add(tables, quarantine, parsed.duplicates)
                for kind, count in parsed.skipped.items():
                    skipped[kind] = skipped.get(kind, 0) + count
                index += 1
        await self._remove_stale(record.key, written)

    # -- reading and parsing --------------------------------------------------------------------------------

    def _raw(self, record: SourceRecord) -> AsyncIterator[bytes]:
        if record.ref is not None:
            return read_object(self.s3, record.ref, self.settings.read_bytes)
        return _memory_chunks(record.data, self.settings.read_bytes)

    async def _parsed(self, record: SourceRecord) -> AsyncGenerator[ParsedFile]:
        """The parser's chunks, produced in a thread (CPU-bound) while this task writes the previous ones."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[ParsedFile | BaseException | None] = asyncio.Queue(maxsize=2)
        stop = threading.Event()
        raw = self._raw(record)
        settings = self.settings

        def pull() -> Iterator[bytes]:
            while True:
                if stop.is_set():
                    raise _Stopped
                chunk = asyncio.run_coroutine_threadsafe(_next_or_none(raw), loop).result()
                if chunk is None:
                    return
                yield chunk

        def push(item: ParsedFile | BaseException | None) -> None:
            future = asyncio.run_coroutine_threadsafe(queue.put(item), loop)
            while True:
                try:
                    future.result(timeout=0.5)
                    return
                except TimeoutError:
                    if stop.is_set():
                        future.cancel()
                        raise _Stopped from None

        def produce() -> None:
            try:
                chunks = maybe_gunzip(
                    record.key, pull(), max_ratio=settings.max_ratio, ratio_floor=settings.ratio_floor
                )
                for parsed in self.parse(record.key, chunks):
                    if not parsed.file_rejected:
                        tables, rejected = without_nul(parsed.tables, parsed.rejected)
                        parsed = dataclasses.replace(parsed, tables=tables, rejected=rejected)
                    push(parsed)
                    if parsed.file_rejected:
                        break
                push(None)
            except _Stopped:
                return
            except DecompressionError as exc:
                rejected = pa.Table.from_pylist(
                    [{"line_number": None, "reason": exc.reason, "detail": exc.detail, "record_id": None}],
                    schema=REJECTED,
                )
                with contextlib.suppress(_Stopped):
                    push(ParsedFile({}, rejected))
                    push(None)
            except BaseException as exc:  # handed to the consumer, which raises it there
                with contextlib.suppress(_Stopped):
                    push(exc)

        producer = asyncio.ensure_future(asyncio.to_thread(produce))
        try:
            while True:
                item = await queue.get()
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            while not queue.empty():
                queue.get_nowait()
            await asyncio.gather(producer, return_exceptions=True)
            await _close(raw)

    # -- lake -------------------------------------------------------------------------------------------------

    async def _write_part(self, batch_id: str, key: str, index: int, parsed: ParsedFile) -> set[str]:
        """Put chunk ``index`` 's Parquet parts (tables with rows, rejected rows if any); their keys."""
        lineage = {"source_key": key, "batch_id": batch_id}
        puts: list[tuple[str, pa.Table]] = []
        for table in self.lake_tables:
            rows = parsed.tables.get(table)
            if rows is not None and rows.num_rows:
                puts.append((part_key(self.pipeline, table, key, index), _with_constants(rows, lineage)))
        quarantine = _quarantine_rows(self.pipeline, key, parsed.rejected)
        if quarantine.num_rows:
            extra = {"record_id": parsed.rejected.column("record_id").cast(pa.string()), "batch_id": batch_id}
            puts.append((part_key(self.pipeline, None, key, index), _with_constants(quarantine, extra)))
        await asyncio.gather(*(self.lake.put_parquet(target, rows) for target, rows in puts))
        return {target for target, _ in puts}

    async def _remove_stale(self, key: str, written: set[str]) -> None:
        """Delete the parts of ``key`` this run did not write (an earlier version had more, or other tables)."""
        for table in (*self.lake_tables, None):
            prefix = part_prefix(self.pipeline, table, key)
            stale = [k for k in await self.lake.list_keys(prefix) if k not in written]
            await self.lake.delete_many(stale)

    def _log(self, message: str, batch: Batch, result: BatchResult, skipped: Mapping[str, int]) -> None:
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
                "resources_skipped": dict(sorted(skipped.items())),
            },
        )


class _Stopped(Exception):
    """The consumer went away: the producer thread stops."""


async def _next_or_none(chunks: AsyncIterator[bytes]) -> bytes | None:
    try:
        return await anext(chunks)
    except StopAsyncIteration:
        return None


async def _close(chunks: AsyncIterator[bytes]) -> None:
    closer = getattr(chunks, "aclose", None)
    if closer is not None:
        with contextlib.suppress(Exception):
            await closer()


async def _memory_chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    view = memoryview(data)
    for start in range(0, len(view), size):
        yield bytes(view[start : start + size])


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
