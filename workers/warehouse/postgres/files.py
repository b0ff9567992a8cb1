"""PostgreSQL loader of batch files (the local Redshift stand-in), over an asyncpg pool.

Contract (:class:`~workers.warehouse.file_types.BatchLoader`): one transaction per batch, in this order —
advisory lock per source key, skip if ``load_audit`` has the batch, then per file: binary COPY of each table
into a TEMP staging table + SCD2 merge / upsert, replace the file's ``batch_quarantine`` rows, and finally the
``load_audit`` row. Database errors propagate unchanged (``common.errors.classify`` reads their SQLSTATE).
"""

from __future__ import annotations

import io
from typing import Any

import asyncpg
import pyarrow as pa
from pgpq import ArrowToPostgresBinaryEncoder

from schemas.arrow import BATCH_QUARANTINE
from workers.runtime.types import BatchResult
from workers.warehouse.file_tables import QUARANTINE_COLUMNS, SPECS
from workers.warehouse.file_types import FileLoad, LoadPlan, check_plan
from workers.warehouse.postgres import file_sql as sql

__all__ = ["PostgresBatchLoader", "encode_binary_copy"]


def encode_binary_copy(table: pa.Table) -> bytes:
    """``table`` as a PostgreSQL binary COPY stream (pgpq)."""
    encoder = ArrowToPostgresBinaryEncoder(table.schema)
    out = bytearray(encoder.write_header())
    for batch in table.to_batches():
        out += encoder.write_batch(batch)
    out += encoder.finish()
    return bytes(out)


class PostgresBatchLoader:
    """Loads :class:`LoadPlan` s into PostgreSQL; owns its pool (close it with :meth:`close`)."""

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

    async def load(self, plan: LoadPlan) -> BatchResult:
        check_plan(plan)
        result = plan.result()
        async with self.pool.acquire() as conn, conn.transaction():
            for key in sorted({f.source_key for f in plan.files}):
                await conn.execute(sql.SOURCE_LOCK, key)
            row = await conn.fetchrow(sql.AUDIT_SELECT, plan.batch_id)
            if row is not None:
                return BatchResult(**dict(row))
            await conn.execute(sql.BATCH_SETTING, plan.batch_id)
            for file in plan.files:
                await self._load_file(conn, plan.pipeline, file)
            await conn.execute(
                sql.AUDIT_INSERT,
                plan.batch_id,
                plan.pipeline,
                result.rows_in,
                result.rows_loaded,
                result.rows_quarantined,
                result.rows_duplicate,
            )
        return result

    async def _load_file(self, conn: Any, pipeline: str, file: FileLoad) -> None:
        for lake_table, rows in sorted(file.tables.items()):
            if rows.num_rows == 0:
                continue
            spec = SPECS[lake_table]
            if spec.scd2:
                await conn.execute(sql.PATIENT_LOCK)
            staging = sql.staging_name(spec)
            await conn.execute(sql.create_staging(spec))
            await conn.execute(f"TRUNCATE {staging}")
            await self._copy(conn, staging, rows.select(list(spec.column_names)))
            for statement in sql.merge_statements(spec):
                if spec.scd2:
                    await conn.execute(statement, file.valid_from)
                else:
                    await conn.execute(statement)
        await conn.execute(sql.QUARANTINE_DELETE, pipeline, file.source_key)
        if file.quarantine.num_rows:
            await self._copy(conn, "batch_quarantine", file.quarantine.select(list(QUARANTINE_COLUMNS)))

    @staticmethod
    async def _copy(conn: Any, table: str, rows: pa.Table) -> None:
        if table == "batch_quarantine":
            rows = rows.cast(BATCH_QUARANTINE)
        await conn.copy_to_table(
            table, source=io.BytesIO(encode_binary_copy(rows)), columns=list(rows.column_names), format="binary"
        )
