"""Binary COPY of Arrow tables into PostgreSQL (``workers.warehouse.postgres.binary_copy``): every row arrives
when the table is sent in several pieces, and a COPY leaves none of its data for Python's cyclic collector (the
worker's memory stays flat over a long file, see bench/batchfiles.py)."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import AsyncIterator

import asyncpg
import pyarrow as pa
import pytest

from workers.warehouse.postgres.binary_copy import binary_copy_pieces, copy_arrow

pytestmark = pytest.mark.integration

TABLE = "CREATE TEMP TABLE copied (id bigint NOT NULL, note text, amount numeric(12, 2))"


def rows(n: int, start: int = 0) -> pa.Table:
    ids = list(range(start, start + n))
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "note": pa.array([None if i % 7 == 0 else f"note {i:08d} " + "x" * 40 for i in ids], pa.string()),
            "amount": pa.array([None if i % 5 == 0 else i % 100_000 for i in ids], pa.decimal128(12, 2)),
        }
    )


@pytest.fixture
async def conn(warehouse_schema: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(warehouse_schema)
    await connection.execute(TABLE)
    try:
        yield connection
    finally:
        await connection.close()


async def test_a_table_sent_in_pieces_arrives_whole(conn: asyncpg.Connection) -> None:
    table = rows(40_000)
    pieces = [piece async for piece in binary_copy_pieces(table, batch_rows=16_384)]
    assert len(pieces) == 2 + 3  # header, three record batches, trailer
    await copy_arrow(conn, "copied", table)
    count, ids, notes, amount = await conn.fetchrow(
        "SELECT count(*), sum(id), count(note), sum(amount)::text FROM copied"
    )
    assert (count, ids, notes) == (40_000, sum(range(40_000)), 40_000 - len(range(0, 40_000, 7)))
    assert amount == str(sum(i % 100_000 for i in range(40_000) if i % 5) // 1) + ".00"
    assert await conn.fetchval("SELECT note FROM copied WHERE id = 1") == "note 00000001 " + "x" * 40


async def test_a_copy_leaves_no_data_for_the_cyclic_collector(conn: asyncpg.Connection) -> None:
    table = rows(60_000)  # about 5 MiB encoded
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    tracemalloc.start()
    try:
        await copy_arrow(conn, "copied", table)  # warm-up: codecs, statement caches
        before, _ = tracemalloc.get_traced_memory()
        for start in (1, 2, 3):
            await copy_arrow(conn, "copied", rows(60_000, start * 100_000))
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        if enabled:
            gc.enable()
    assert after - before < 2 * 1024 * 1024, f"{(after - before) / 2**20:.1f} MiB left after three COPYs"
    assert await conn.fetchval("SELECT count(*) FROM copied") == 240_000
