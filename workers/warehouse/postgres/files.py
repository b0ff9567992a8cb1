"""PostgreSQL loader of batch files (the local Redshift stand-in), over an asyncpg pool.

Contract (:class:`~workers.warehouse.file_types.BatchLoader`): one transaction per batch (a
:class:`PostgresLoadSession`), in this order — advisory lock per batch, skip if ``load_audit`` has the batch,
then per file: advisory lock per source key, delete the file's earlier ``batch_quarantine`` rows, binary COPY
of every chunk's rows into TEMP staging tables (and its rejected rows into ``batch_quarantine``), at the
file's end the last line per natural key merged (SCD2 / upsert), and finally the ``load_audit`` row.
Database errors propagate unchanged (``common.errors.classify`` reads their SQLSTATE).
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import asyncpg
import pyarrow as pa
from pgpq import ArrowToPostgresBinaryEncoder

from schemas.arrow import BATCH_QUARANTINE
from workers.runtime.types import BatchResult
from workers.warehouse.file_tables import QUARANTINE_COLUMNS, SPECS
from workers.warehouse.file_types import LoadPlan, check_chunk, load_plan
from workers.warehouse.postgres import file_sql as sql
from workers.warehouse.postgres.feed_sql import apply_adjudications, feed_statements

__all__ = ["PostgresBatchLoader", "PostgresLoadSession", "encode_binary_copy"]


def encode_binary_copy(table: pa.Table) -> bytes:
    """``table`` as a PostgreSQL binary COPY stream (pgpq)."""
    encoder = ArrowToPostgresBinaryEncoder(table.schema)
    out = bytearray(encoder.write_header())
    for batch in table.to_batches():
        out += encoder.write_batch(batch)
    out += encoder.finish()
    return bytes(out)


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
                await conn.execute(sql.BATCH_SETTING, batch_id)  # recorded by feed_sql's counts
                row = await conn.fetchrow(sql.AUDIT_SELECT, batch_id)
                session.audited = None if row is None else BatchResult(**dict(row))
                yield session
            except BaseException:
                await transaction.rollback()
                raise
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
        self._staged: dict[str, int] = {}  # lake table -> rows staged for the file
        self._loaded = 0
        self._quarantined = 0
        self._duplicates = 0

    async def start_file(self, source_key: str, valid_from: datetime) -> None:
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
            if lake_table not in self._staged:
                await self.conn.execute(sql.create_staging(spec))
                self._staged[lake_table] = 0
            self._staged[lake_table] += rows.num_rows
            rows = _with_lines(rows).select([*spec.column_names, "source_line"])
            await _copy(self.conn, sql.staging_name(spec), rows)
        if quarantine.num_rows:
            self._quarantined += quarantine.num_rows
            await _copy(
                self.conn, "batch_quarantine", quarantine.select(list(QUARANTINE_COLUMNS)).cast(BATCH_QUARANTINE)
            )

    async def end_file(self) -> None:
        if self._file is None:
            raise RuntimeError("end_file without start_file")
        _, valid_from = self._file
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


def _with_lines(rows: pa.Table) -> pa.Table:
    """``rows`` with a ``source_line`` (row order when the producer gave none: later rows win)."""
    if "source_line" in rows.column_names:
        return rows
    return rows.append_column("source_line", pa.array(range(1, rows.num_rows + 1), pa.int64()))


async def _copy(conn: Any, table: str, rows: pa.Table) -> None:
    await conn.copy_to_table(
        table, source=io.BytesIO(encode_binary_copy(rows)), columns=list(rows.column_names), format="binary"
    )
