"""PostgreSQL loader of batch files (the local Redshift stand-in), over an asyncpg pool.

Contract (:class:`~workers.warehouse.file_types.BatchLoader`): one transaction per batch (a
:class:`PostgresLoadSession`), in this order — advisory lock per batch, skip if ``load_audit`` has the batch,
then per file: advisory lock per source key, delete the file's earlier ``batch_quarantine`` rows, every chunk's
rejected rows binary-COPYed into ``batch_quarantine`` and its good rows loaded, and finally the ``load_audit`` row.

Good rows of an upsert table (``fact_claims``, ``fact_encounters``) are merged as each chunk comes, in file
order, so that PostgreSQL works while the next chunk is parsed: the chunk's keys are looked up
(:func:`~workers.warehouse.postgres.file_sql.existing_keys`), rows with new keys are binary-COPYed straight into
the table (no staging, no ``ON CONFLICT``: the cheapest insert PostgreSQL has), rows with existing keys are
staged and upserted. A later line of the file therefore replaces an earlier one in whatever chunk it is; a key
the transaction already wrote (``xmin`` is ours: an earlier chunk of the file) counts as a duplicate, any other
existing key as loaded. The chunk's CPU work (last line per key, binary encoding) runs in a thread while the
connection still COPYs the previous chunk, and the COPY of the new rows is left running when :meth:`add`
returns: the session's next call waits for it (and raises its error), so the database loads one chunk while the
worker reads, writes to the lake and prepares the next (one chunk in flight). A session left with an error first
lets a running COPY end, then rolls back (:meth:`PostgresLoadSession.settle`).
Another batch inserting one of the new keys at the same moment makes the COPY fail with
a unique violation: :class:`ConcurrentKeyError` (transient), the batch is retried and then finds the key.
SCD2 and feed tables (and an upsert table that an earlier file of the same batch wrote, whose ``xmin`` would not
tell the two files apart) are COPYed into TEMP staging tables and merged at the file's end (last line per key).
Database errors propagate unchanged (``common.errors.classify`` reads their SQLSTATE).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import numpy as np
import numpy.typing as npt
import pyarrow as pa

from common.errors import TransientError
from schemas.arrow import BATCH_QUARANTINE
from workers.runtime.types import BatchResult
from workers.warehouse.file_tables import QUARANTINE_COLUMNS, SPECS, TableSpec
from workers.warehouse.file_types import LoadPlan, check_chunk, load_plan
from workers.warehouse.postgres import file_sql as sql
from workers.warehouse.postgres.binary_copy import copy_arrow, encode_binary_copy
from workers.warehouse.postgres.feed_sql import apply_adjudications, feed_statements

__all__ = [
    "ConcurrentKeyError",
    "PostgresBatchLoader",
    "PostgresLoadSession",
    "PreparedChunk",
    "last_per_key",
    "prepare_chunk",
]

SEGMENT_ROWS = 8192
"""Rows per separately encoded piece of a chunk's binary COPY (:class:`PreparedChunk`): a key found to exist
re-encodes only its piece."""
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, header extension length
_COPY_TRAILER = b"\xff\xff"


class ConcurrentKeyError(TransientError):
    """A key this batch inserts was inserted by another batch since it was looked up: retry the batch."""


def _encode_rows(table: pa.Table) -> bytes:
    """The tuples of ``table`` in PostgreSQL binary COPY format (no header, no trailer)."""
    encoded = encode_binary_copy(table)  # pgpq buffers: tuples come out of write_batch and finish alike
    return encoded[len(_COPY_HEADER) : -len(_COPY_TRAILER)]


@dataclass(frozen=True, slots=True)
class PreparedChunk:
    """One chunk of an upsert table made ready for the database (CPU work, done off the event loop while the
    connection still loads the previous chunk): ``rows`` (last line per key, in ``source_line`` order, the
    table's columns + ``source_line``), ``superseded`` rows dropped by that, the binary COPY of its keys with
    their 1-based ``position``, and its table columns' binary COPY tuples in pieces of :data:`SEGMENT_ROWS`
    rows (so that rows found to exist are left out by re-encoding only their pieces)."""

    rows: pa.Table
    superseded: int
    keys: bytes
    segments: tuple[bytes, ...]

    def new_rows(self, spec: TableSpec, existing: npt.NDArray[np.int64]) -> list[bytes]:
        """The binary COPY stream (header, tuples, trailer) of the rows whose 0-based positions are not in
        ``existing``."""
        segments = list(self.segments)
        columns = list(spec.column_names)
        for index in np.unique(existing // SEGMENT_ROWS).tolist():
            start = index * SEGMENT_ROWS
            piece = self.rows.slice(start, SEGMENT_ROWS)
            keep = np.ones(piece.num_rows, dtype=bool)
            keep[existing[(existing >= start) & (existing < start + piece.num_rows)] - start] = False
            segments[index] = _encode_rows(piece.filter(pa.array(keep)).select(columns))
        return [_COPY_HEADER, *segments, _COPY_TRAILER]


def prepare_chunk(spec: TableSpec, rows: pa.Table) -> PreparedChunk:
    """Pure: ``rows`` of an upsert table (with ``source_line``) ready for a chunk merge (:class:`PreparedChunk`)."""
    rows, superseded = last_per_key(_with_lines(rows).select([*spec.column_names, "source_line"]), spec.key)
    position = pa.array(np.arange(1, rows.num_rows + 1, dtype=np.int64))
    keys = encode_binary_copy(rows.select(list(spec.key)).append_column("position", position))
    columns = rows.select(list(spec.column_names))
    segments = tuple(
        _encode_rows(columns.slice(start, SEGMENT_ROWS)) for start in range(0, rows.num_rows, SEGMENT_ROWS)
    )
    return PreparedChunk(rows, superseded, keys, segments)


class PostgresBatchLoader:
    """Loads batches into PostgreSQL; owns its pool (close it with :meth:`close`)."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool

    @classmethod
    async def connect(cls, url: str, *, max_size: int = 4) -> PostgresBatchLoader:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=max_size)
        return cls(pool)

    async def close(self) -> None:
        await self.pool.close()

    async def audited(self, batch_id: str) -> BatchResult | None:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(sql.AUDIT_SELECT, batch_id)
        return None if row is None else BatchResult(**dict(row))

    @asynccontextmanager
    async def session(self, batch_id: str, pipeline: str) -> AsyncIterator[PostgresLoadSession]:
        """One transaction on one pooled connection, rolled back unless :meth:`PostgresLoadSession.commit`."""
        async with self.pool.acquire() as conn:
            transaction = conn.transaction()
            await transaction.start()
            session = PostgresLoadSession(conn, batch_id, pipeline)
            try:
                await conn.execute(sql.SOURCE_LOCK, "batch:" + batch_id)
                await conn.execute(sql.WORK_MEM)
                await conn.execute(sql.JIT_OFF)
                await conn.execute(sql.BATCH_SETTING, batch_id)  # recorded by feed_sql's counts
                row = await conn.fetchrow(sql.AUDIT_SELECT, batch_id)
                session.audited = None if row is None else BatchResult(**dict(row))
                yield session
            except BaseException:
                await session.settle()
                await transaction.rollback()
                raise
            await session.settle()
            if session.committed:
                await transaction.commit()
            else:
                await transaction.rollback()

    async def load(self, plan: LoadPlan) -> BatchResult:
        return await load_plan(self, plan)


class PostgresLoadSession:
    """A :class:`~workers.warehouse.file_types.LoadSession`: binary COPY of every chunk into TEMP staging
    tables inside the open transaction; merges per file; ``load_audit`` last."""

    def __init__(self, conn: Any, batch_id: str, pipeline: str) -> None:
        self.conn = conn
        self.batch_id = batch_id
        self.pipeline = pipeline
        self.audited: BatchResult | None = None
        self.committed = False
        self._file: tuple[str, datetime] | None = None
        self._staged: dict[str, int] = {}  # lake table -> rows staged for the file (merged at its end)
        self._chunked: set[str] = set()  # lake tables the file merges chunk by chunk
        self._written: set[str] = set()  # upsert tables earlier files of the batch wrote
        self._loaded = 0
        self._quarantined = 0
        self._duplicates = 0
        self._pending: asyncio.Future[None] | None = None  # the last chunk's COPY of new rows, still running

    async def _drain(self) -> None:
        """Wait for the COPY still running on the connection (raising its error) before the next statement."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            await pending

    async def settle(self) -> None:
        """Let a running COPY end, whatever its outcome (the transaction is being left: its error is moot)."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            await asyncio.wait([pending])
            if not pending.cancelled():
                pending.exception()  # retrieved: not reported as never retrieved

    async def start_file(self, source_key: str, valid_from: datetime) -> None:
        await self._drain()
        await self.conn.execute(sql.SOURCE_LOCK, source_key)
        await self.conn.execute(sql.QUARANTINE_DELETE, self.pipeline, source_key)
        self._file = (source_key, valid_from)

    async def add(self, tables: Mapping[str, pa.Table], quarantine: pa.Table, duplicates: int = 0) -> None:
        check_chunk(tables)
        self._duplicates += duplicates
        for lake_table, rows in sorted(tables.items()):
            if rows.num_rows == 0:
                continue
            spec = SPECS[lake_table]
            if _upsert_table(spec) and lake_table not in self._written and lake_table not in self._staged:
                prepared = await asyncio.to_thread(prepare_chunk, spec, rows)  # while the last COPY runs
                await self._drain()
                await self._merge_chunk(spec, prepared)
                continue
            await self._drain()
            if lake_table not in self._staged:
                await self.conn.execute(sql.create_staging(spec))
                self._staged[lake_table] = 0
            self._staged[lake_table] += rows.num_rows
            rows = _with_lines(rows).select([*spec.column_names, "source_line"])
            await _copy(self.conn, sql.staging_name(spec), rows)
        if quarantine.num_rows:
            self._quarantined += quarantine.num_rows
            await self._drain()
            await _copy(
                self.conn, "batch_quarantine", quarantine.select(list(QUARANTINE_COLUMNS)).cast(BATCH_QUARANTINE)
            )

    async def _merge_chunk(self, spec: TableSpec, prepared: PreparedChunk) -> None:
        """Merge one chunk of an upsert table (see the module docstring). The COPY of its new rows is left
        running: the next call on the session waits for it (and raises its error), so the database loads
        this chunk while the caller reads, writes and prepares the next one."""
        rows = prepared.rows
        self._duplicates += prepared.superseded
        if spec.lake_table not in self._chunked:
            for statement in sql.create_keys(spec):
                await self.conn.execute(statement)
            self._chunked.add(spec.lake_table)
        else:
            await self.conn.execute(sql.truncate_keys(spec))
        await _copy_bytes(self.conn, sql.keys_name(spec), [prepared.keys], [*spec.key, "position"])
        if spec.lake_table == "claims":  # the file's claims, for the 835 adjudications applied at its end
            await self.conn.execute(sql.keep_keys(spec))
        probes_only, scans_again = sql.INDEX_PROBES
        await self.conn.execute(probes_only)
        found = await self.conn.fetch(sql.existing_keys(spec))
        await self.conn.execute(scans_again)
        ours = sum(1 for row in found if row["ours"])
        self._duplicates += ours
        self._loaded += rows.num_rows - ours
        positions = np.fromiter((row["position"] - 1 for row in found), dtype=np.int64, count=len(found))
        if found:
            existing = np.zeros(rows.num_rows, dtype=bool)
            existing[positions] = True
            await self.conn.execute(sql.create_staging(spec))
            await _copy(self.conn, sql.staging_name(spec), rows.filter(pa.array(existing)))
            await self.conn.execute(sql.upsert_staged(spec))
            await self.conn.execute(sql.truncate_staging(spec))
        if len(found) < rows.num_rows:
            stream = await asyncio.to_thread(prepared.new_rows, spec, positions)
            self._pending = asyncio.ensure_future(_copy_new(self.conn, spec, stream))

    async def end_file(self) -> None:
        if self._file is None:
            raise RuntimeError("end_file without start_file")
        await self._drain()
        _, valid_from = self._file
        for lake_table in sorted(self._chunked):
            spec = SPECS[lake_table]
            if lake_table == "claims":  # the 835 adjudications already received for these claims
                await self.conn.execute(sql.analyze_file_keys(spec))
                for statement in apply_adjudications(sql.file_keys_name(spec)):
                    await self.conn.execute(statement)
            for statement in sql.drop_chunk_tables(spec):
                await self.conn.execute(statement)
            self._written.add(lake_table)
        self._chunked.clear()
        for lake_table in sorted(self._staged):
            spec = SPECS[lake_table]
            staged_rows = self._staged.pop(lake_table)
            feed = feed_statements(spec)
            if feed is not None:  # X12 remittances, DMS changes, HL7 events: their own semantics (feed_sql)
                for statement in feed:
                    await self.conn.execute(statement)
                self._loaded += staged_rows
                await self.conn.execute(sql.drop_staging(spec)[1])
                continue
            if not spec.scd2:
                tag = await self.conn.execute(sql.upsert_latest(spec))
                written = int(str(tag).rsplit(" ", 1)[-1])
                self._loaded += written
                self._duplicates += staged_rows - written
                if lake_table == "claims":  # the 835 adjudications already received for these claims
                    for statement in apply_adjudications(sql.staging_name(spec)):
                        await self.conn.execute(statement)
                await self.conn.execute(sql.drop_staging(spec)[1])
                self._written.add(lake_table)
                continue
            await self.conn.execute(sql.latest(spec))
            staged, latest = await self.conn.fetchrow(sql.staged_counts(spec))
            self._loaded += int(latest)
            self._duplicates += int(staged) - int(latest)
            if spec.scd2:
                await self.conn.execute(sql.PATIENT_LOCK)
            for statement in sql.merge_statements(spec):
                if spec.scd2:
                    await self.conn.execute(statement, valid_from)
                else:
                    await self.conn.execute(statement)
            for statement in sql.drop_staging(spec):
                await self.conn.execute(statement)
        self._file = None

    async def commit(self) -> BatchResult:
        await self._drain()
        result = BatchResult(
            rows_in=self._loaded + self._quarantined + self._duplicates,
            rows_loaded=self._loaded,
            rows_quarantined=self._quarantined,
            rows_duplicate=self._duplicates,
        )
        await self.conn.execute(
            sql.AUDIT_INSERT,
            self.batch_id,
            self.pipeline,
            result.rows_in,
            result.rows_loaded,
            result.rows_quarantined,
            result.rows_duplicate,
        )
        self.committed = True
        return result


def _upsert_table(spec: TableSpec) -> bool:
    return not spec.scd2 and feed_statements(spec) is None


def last_per_key(rows: pa.Table, key: tuple[str, ...]) -> tuple[pa.Table, int]:
    """``rows`` (with ``source_line``) reduced to the greatest ``source_line`` of each key, in ``source_line``
    order; also how many rows that dropped."""
    if rows.num_rows < 2:
        return rows, 0
    lines = rows.column("source_line").to_numpy()
    ordered = rows if bool(np.all(lines[1:] > lines[:-1])) else rows.sort_by("source_line")
    position = pa.array(np.arange(ordered.num_rows, dtype=np.int64))
    last = ordered.select(list(key)).append_column("__position", position)
    kept = last.group_by(list(key), use_threads=False).aggregate([("__position", "max")]).column("__position_max")
    if len(kept) == ordered.num_rows:
        return ordered, 0
    return ordered.take(np.sort(kept.to_numpy())), ordered.num_rows - len(kept)


def _with_lines(rows: pa.Table) -> pa.Table:
    """``rows`` with a ``source_line`` (row order when the producer gave none: later rows win)."""
    if "source_line" in rows.column_names:
        return rows
    return rows.append_column("source_line", pa.array(range(1, rows.num_rows + 1), pa.int64()))


async def _copy_new(conn: Any, spec: TableSpec, stream: list[bytes]) -> None:
    """COPY a chunk's new rows straight into the table; a key inserted meanwhile is :class:`ConcurrentKeyError`."""
    try:
        await _copy_bytes(conn, spec.table, stream, list(spec.column_names))
    except asyncpg.UniqueViolationError as exc:
        raise ConcurrentKeyError(f"{spec.table}: a key was inserted by another batch meanwhile") from exc


async def _copy_bytes(conn: Any, table: str, stream: list[bytes], columns: list[str]) -> None:
    async def pieces() -> AsyncIterator[bytes]:
        for piece in stream:
            yield piece

    await conn.copy_to_table(table, source=pieces(), columns=columns, format="binary")


async def _copy(conn: Any, table: str, rows: pa.Table) -> None:
    await copy_arrow(conn, table, rows)
