"""PostgreSQL loader: Arrow -> key probe -> binary COPY (pgpq) of the new rows into fact_vitals -> quarantine -> audit.

All of one batch happens in one transaction on one pooled connection, under an advisory lock on the batch;
staging tables are ``ON COMMIT DROP`` (TEMP: unlogged, no indexes). The clean rows' keys are staged and
probed against ``fact_vitals``/``vitals_quarantine`` (:func:`sql.skipped_keys_sql`); the other rows, sorted by
the natural key (btree upkeep in key order), go into ``fact_vitals`` by one binary COPY, so the rows the
batch inserted are exactly the rows copied. ``synchronous_commit`` is left as the server has it: a commit
must be durable before the pipeline checkpoints.
Reads (context, batch rows) stream out as CSV through ``COPY … TO STDOUT`` and are parsed column-wise by
pyarrow, never row by row in Python.
"""

from __future__ import annotations

import io
from typing import Any

import asyncpg
import pyarrow as pa
import pyarrow.csv as pacsv

from common.errors import TransientError
from schemas.arrow import CONTEXT, KEY_COLUMNS, KEYS, PROCESSED_VITALS, QUARANTINED_VITALS
from workers.warehouse import vitals_sql as sql
from workers.warehouse.postgres import news2 as postgres_news2
from workers.warehouse.postgres.binary_copy import copy_arrow
from workers.warehouse.vitals_types import NOT_INSERTED, LoadOutcome, LoadTables

__all__ = ["PostgresLoader", "copy_arrow", "read_csv_query"]

_UNIQUE_VIOLATION = "23505"
_ANALYZE_ROWS = 1_000


def _epoch_select(query: str, schema: pa.Schema) -> str:
    columns = []
    for field in schema:
        if pa.types.is_timestamp(field.type):
            columns.append(f"(EXTRACT(EPOCH FROM q.{field.name}) * 1000000)::bigint AS {field.name}")
        else:
            columns.append(f"q.{field.name}")
    return f"SELECT {', '.join(columns)} FROM ({query}) q"


async def read_csv_query(conn: Any, query: str, schema: pa.Schema) -> pa.Table:
    """Run ``query`` (columns named as ``schema``) through ``COPY TO STDOUT`` CSV into an Arrow table."""
    buffer = io.BytesIO()
    await conn.copy_from_query(_epoch_select(query, schema), output=buffer, format="csv")
    if buffer.tell() == 0:
        return schema.empty_table()
    types = {f.name: (pa.int64() if pa.types.is_timestamp(f.type) else f.type) for f in schema}
    table = pacsv.read_csv(
        io.BytesIO(buffer.getvalue()),
        read_options=pacsv.ReadOptions(column_names=schema.names),
        convert_options=pacsv.ConvertOptions(
            column_types=types, strings_can_be_null=True, quoted_strings_can_be_null=False
        ),
    )
    columns = [
        table.column(f.name).cast(f.type) if pa.types.is_timestamp(f.type) else table.column(f.name) for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def _new_rows(clean: pa.Table, skipped: pa.Table) -> pa.Table:
    """``clean`` without the ``skipped`` keys, sorted by the natural key (each index then fills in order)."""
    if skipped.num_rows:
        clean = clean.join(skipped, list(KEY_COLUMNS), join_type="left anti")
    if clean.num_rows > 1:
        clean = clean.sort_by([(c, "ascending") for c in KEY_COLUMNS])
    return clean.select(PROCESSED_VITALS.names).cast(PROCESSED_VITALS)


def _outcome(
    audit: Any, *, already: bool, not_inserted: pa.Table, news2: postgres_news2.News2Result = postgres_news2.NOTHING
) -> LoadOutcome:
    return LoadOutcome(
        rows_in=int(audit["rows_in"]),
        rows_loaded=int(audit["rows_loaded"]),
        rows_quarantined=int(audit["rows_quarantined"]),
        rows_duplicate=int(audit["rows_duplicate"]),
        already_loaded=already,
        not_inserted=not_inserted,
        news2_scored=news2.scored,
        raised=news2.raised,
    )


class PostgresLoader:
    """The vitals warehouse loader on PostgreSQL 15+ (asyncpg pool)."""

    dialect: sql.Dialect = "postgres"

    def __init__(self, pool: Any) -> None:
        self.pool = pool

    @classmethod
    async def connect(cls, url: str, *, min_size: int = 1, max_size: int = 4) -> PostgresLoader:
        pool = await asyncpg.create_pool(url, min_size=min_size, max_size=max_size, command_timeout=300)
        return cls(pool)

    async def close(self) -> None:
        await self.pool.close()

    async def audited(self, batch_id: str) -> LoadOutcome | None:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(sql.audited_sql(batch_id))
        if row is None:
            return None
        return _outcome(row, already=True, not_inserted=NOT_INSERTED.empty_table())

    async def load(self, batch_id: str, pipeline: str, tables: LoadTables) -> LoadOutcome:
        counts = sql.LoadCounts(
            rows_in=tables.rows_in,
            duplicates_dropped=tables.duplicates_dropped,
            clean=tables.clean.num_rows,
            quarantined=tables.quarantined.num_rows,
            pending=tables.pending.num_rows,
        )
        clean = tables.clean.select(PROCESSED_VITALS.names).cast(PROCESSED_VITALS)
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                await conn.execute(sql.batch_lock_sql(batch_id))
                already = await conn.fetchrow(sql.audited_sql(batch_id)) is not None
                await conn.execute("SET LOCAL jit = off")  # short statements: JIT compile time dominates
                for name, table, schema in (
                    ("vs_clean_keys", clean, KEYS),
                    ("vs_quarantine", tables.quarantined, QUARANTINED_VITALS),
                    ("vs_pending", tables.pending, sql.PENDING_VITALS),
                ):
                    await conn.execute(sql.create_staging_sql(name, "postgres"))
                    await copy_arrow(conn, name, table.select(schema.names).cast(schema))
                    if table.num_rows >= _ANALYZE_ROWS:
                        await conn.execute(f"ANALYZE {name}")  # temp tables have no statistics otherwise
                news2 = postgres_news2.NOTHING
                if already:
                    not_inserted = await read_csv_query(
                        conn, sql.not_inserted_sql(batch_id, "vs_clean_keys"), NOT_INSERTED
                    )
                else:
                    not_inserted, news2 = await self._insert(conn, batch_id, pipeline, counts, clean)
                audit = await conn.fetchrow(sql.audited_sql(batch_id))
        except asyncpg.PostgresError as exc:
            if getattr(exc, "sqlstate", None) == _UNIQUE_VIOLATION:
                # A key committed concurrently by another batch (or owner): retry, the probe then sees it.
                raise TransientError(f"concurrent load of batch {batch_id}") from exc
            raise
        if audit is None:
            raise RuntimeError(f"batch {batch_id} has no audit row after its load")
        return _outcome(audit, already=already, not_inserted=not_inserted, news2=news2)

    @staticmethod
    async def _insert(
        conn: Any, batch_id: str, pipeline: str, counts: sql.LoadCounts, clean: pa.Table
    ) -> tuple[pa.Table, postgres_news2.News2Result]:
        """Copy the batch's new clean rows into fact_vitals, then run the shared statements; the rows not inserted."""
        skipped = KEYS.empty_table()
        if clean.num_rows:
            skipped = await read_csv_query(conn, sql.skipped_keys_sql(), KEYS)
        new = _new_rows(clean, skipped)
        await copy_arrow(conn, "fact_vitals", new)
        statements = sql.load_statements(batch_id, pipeline, counts, "postgres", loaded=new.num_rows)
        for statement in statements[:-2]:
            await conn.execute(statement)
        news2 = await postgres_news2.recompute(conn, sql.literal(batch_id), new)  # before the audit row
        await conn.execute(statements[-2])
        not_quarantined = await read_csv_query(conn, statements[-1], NOT_INSERTED)
        kinds = pa.array(["clean"] * skipped.num_rows, pa.string())
        skipped_clean = pa.Table.from_arrays([kinds, *skipped.columns], schema=NOT_INSERTED)
        return pa.concat_tables([skipped_clean, not_quarantined]), news2

    async def context(self, series: pa.Table, source_id: str, per_series: int) -> pa.Table:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(sql.series_staging_sql("postgres"))
            await copy_arrow(conn, "vs_series", series.select(sql.SERIES.names).cast(sql.SERIES))
            table = await read_csv_query(conn, sql.context_sql("postgres", source_id, per_series), CONTEXT)
        return table

    async def pending(self, source_id: str) -> pa.Table:
        async with self.pool.acquire() as conn:
            return await read_csv_query(conn, sql.pending_sql(source_id), sql.PENDING_VITALS)

    async def stale_pending_sources(self, received_before_us: int) -> list[str]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(sql.stale_pending_sources_sql(received_before_us))
        return sorted(str(row["source_id"]) for row in rows)

    async def record_failed_batch(self, pipeline: str, source_key: str, reason: str, detail: str) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute(sql.failed_batch_sql(pipeline, source_key, reason, detail))

    async def batch_rows(self, batch_id: str) -> tuple[pa.Table, pa.Table]:
        async with self.pool.acquire() as conn:
            clean = await read_csv_query(conn, sql.batch_rows_sql("fact_vitals", batch_id), PROCESSED_VITALS)
            quarantined = await read_csv_query(
                conn, sql.batch_rows_sql("vitals_quarantine", batch_id), QUARANTINED_VITALS
            )
        return clean, quarantined
