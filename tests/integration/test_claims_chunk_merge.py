"""The PostgreSQL batch loader merges upsert tables chunk by chunk (new keys COPYed straight in, existing keys
upserted): last line per key wins across chunks, counts exact, a second file of the batch, a concurrent insert."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg
import pyarrow as pa
import pytest

from common.errors import TransientError, classify
from schemas.arrow import BATCH_QUARANTINE
from tests.conftest import WAREHOUSE_TABLES
from tests.helpers.batch import CLAIMS_HEADER, claim, csv_bytes, fetch
from workers.formats.claims import parse_claims
from workers.warehouse.file_tables import CLAIMS
from workers.warehouse.postgres import file_sql as sql
from workers.warehouse.postgres.files import ConcurrentKeyError, PostgresBatchLoader, last_per_key

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ROWS = "SELECT claim_id, line_number, status, paid_amount::text AS paid FROM fact_claims ORDER BY 1, 2"


@pytest.fixture
async def warehouse(warehouse_schema: str) -> str:
    conn = await asyncpg.connect(warehouse_schema)
    try:
        await conn.execute(f"TRUNCATE {', '.join(WAREHOUSE_TABLES)} RESTART IDENTITY")
    finally:
        await conn.close()
    return warehouse_schema


def chunk(first_line: int, *rows: dict[str, str]) -> pa.Table:
    """Good claims rows as the parser gives them, numbered from ``first_line`` in the file."""
    good = parse_claims(csv_bytes(CLAIMS_HEADER, rows)).good
    lines = pa.array(range(first_line, first_line + good.num_rows), pa.int64())
    return good.set_column(good.schema.get_field_index("source_line"), "source_line", lines)


def quarantine() -> pa.Table:
    return BATCH_QUARANTINE.empty_table()


async def load(loader: PostgresBatchLoader, batch_id: str, files: dict[str, list[pa.Table]]) -> tuple[int, int, int]:
    async with loader.session(batch_id, "claims") as session:
        for key, chunks in files.items():
            await session.start_file(key, T0)
            for rows in chunks:
                await session.add({"claims": rows}, quarantine())
            await session.end_file()
        result = await session.commit()
    return result.rows_in, result.rows_loaded, result.rows_duplicate


async def test_last_line_wins_across_chunks_and_counts_are_exact(warehouse: str) -> None:
    loader = await PostgresBatchLoader.connect(warehouse)
    try:
        await load(loader, "b0", {"old.csv": [chunk(2, claim("C0", 1, status="pending", paid_amount=""))]})
        first = chunk(2, claim("C1", 1, paid_amount="1.00"), claim("C2", 1, paid_amount="2.00"),
                      claim("C0", 1, paid_amount="3.00"))  # fmt: skip
        second = chunk(5, claim("C1", 1, paid_amount="4.00"), claim("C3", 1, paid_amount="5.00"))
        third = chunk(7, claim("C0", 1, status="denied", paid_amount="0"), claim("C1", 1, paid_amount="6.00"))
        counts = await load(loader, "b1", {"new.csv": [first, second, third]})
    finally:
        await loader.close()
    # C0 existed before the file (loaded once, then a duplicate), C1 three times (loaded once, 2 duplicates).
    assert counts == (7, 4, 3)
    assert await fetch(warehouse, ROWS) == [
        {"claim_id": "C0", "line_number": 1, "status": "denied", "paid": "0.00"},
        {"claim_id": "C1", "line_number": 1, "status": "paid", "paid": "6.00"},
        {"claim_id": "C2", "line_number": 1, "status": "paid", "paid": "2.00"},
        {"claim_id": "C3", "line_number": 1, "status": "paid", "paid": "5.00"},
    ]


async def test_a_chunk_with_its_own_duplicates_keeps_its_last_line(warehouse: str) -> None:
    later, earlier = chunk(9, claim("C1", 1, paid_amount="9.00")), chunk(2, claim("C1", 1, paid_amount="2.00"))
    rows = pa.concat_tables([later, earlier])
    loader = await PostgresBatchLoader.connect(warehouse)
    try:
        counts = await load(loader, "b1", {"a.csv": [rows]})
    finally:
        await loader.close()
    assert counts == (2, 1, 1)
    assert await fetch(warehouse, ROWS) == [{"claim_id": "C1", "line_number": 1, "status": "paid", "paid": "9.00"}]


def test_last_per_key_orders_by_source_line() -> None:
    rows = pa.table({"k": ["a", "b", "a", "c", "b"], "source_line": pa.array([5, 2, 9, 1, 3], pa.int64())})
    kept, dropped = last_per_key(rows, ("k",))
    assert dropped == 2
    assert kept.to_pylist() == [{"k": "c", "source_line": 1}, {"k": "b", "source_line": 3},
                                {"k": "a", "source_line": 9}]  # fmt: skip


async def test_a_second_file_of_the_batch_counts_its_own_lines_as_loaded(warehouse: str) -> None:
    loader = await PostgresBatchLoader.connect(warehouse)
    try:
        counts = await load(loader, "b1", {
            "a.csv": [chunk(2, claim("C1", 1, paid_amount="1.00")), chunk(3, claim("C1", 1, paid_amount="2.00"))],
            "b.csv": [chunk(2, claim("C1", 1, paid_amount="3.00"), claim("C2", 1)),
                      chunk(4, claim("C1", 1, paid_amount="4.00"))],
        })  # fmt: skip
    finally:
        await loader.close()
    # a.csv: C1 loaded + 1 duplicate; b.csv (merged at its end): C1 and C2 loaded, C1 once a duplicate.
    assert counts == (5, 3, 2)
    assert [r["paid"] for r in await fetch(warehouse, ROWS)] == ["4.00", "100.25"]


async def test_a_key_inserted_meanwhile_by_another_batch_is_a_transient_error(warehouse: str) -> None:
    loader = await PostgresBatchLoader.connect(warehouse)
    other = await asyncpg.connect(warehouse)
    try:
        async with loader.session("b1", "claims") as session:
            await session.start_file("a.csv", T0)
            await session.add({"claims": chunk(2, claim("C0", 1))}, quarantine())  # the transaction has an xid
            transaction = other.transaction()
            await transaction.start()
            await other.execute(
                "INSERT INTO fact_claims (claim_id, line_number, patient_id, service_date, status) "
                "VALUES ('C1', 1, 'P9', '2026-01-01', 'pending')"
            )
            await session.add({"claims": chunk(3, claim("C1", 1))}, quarantine())  # its COPY left running
            ending = asyncio.ensure_future(session.end_file())
            await asyncio.sleep(0.5)
            assert not ending.done()  # the COPY waits for the other transaction
            await transaction.commit()
            with pytest.raises(ConcurrentKeyError) as caught:
                await ending
        assert classify(caught.value) is TransientError
        # The retry finds the key and updates it.
        counts = await load(loader, "b1", {"a.csv": [chunk(2, claim("C0", 1)), chunk(3, claim("C1", 1))]})
    finally:
        await other.close()
        await loader.close()
    assert counts == (2, 2, 0)
    assert [(r["claim_id"], r["status"]) for r in await fetch(warehouse, ROWS)] == [("C0", "paid"), ("C1", "paid")]


async def test_the_key_lookup_probes_the_primary_key_with_statistics_of_an_empty_table(warehouse: str) -> None:
    conn = await asyncpg.connect(warehouse)
    try:
        await conn.execute("ANALYZE fact_claims")  # empty: a sequential scan per key looks cheapest
        async with conn.transaction():
            for statement in sql.create_keys(CLAIMS):
                await conn.execute(statement)
            await conn.execute(
                f"INSERT INTO {sql.keys_name(CLAIMS)} SELECT 'C' || i, 1, i FROM generate_series(1, 999) i"
            )
            probes_only, scans_again = sql.INDEX_PROBES
            await conn.execute(probes_only)
            plan = "\n".join(row[0] for row in await conn.fetch("EXPLAIN " + sql.existing_keys(CLAIMS)))
            await conn.execute(scans_again)
            assert await conn.fetchval("SHOW enable_seqscan") == "on"
    finally:
        await conn.close()
    assert "Index Scan using fact_claims_natural_key on fact_claims" in plan


async def test_the_key_lookup_probes_only_keys_between_the_tables_least_and_greatest(warehouse: str) -> None:
    loader = await PostgresBatchLoader.connect(warehouse)
    try:
        await load(loader, "b0", {"old.csv": [chunk(2, claim("C1", 1), claim("C2", 1), claim("C3", 1))]})
    finally:
        await loader.close()
    keys = [("C0", 1), ("C1", 0), ("C1", 1), ("C2", 5), ("C3", 1), ("C3", 2), ("C4", 1)]
    conn = await asyncpg.connect(warehouse)
    try:
        async with conn.transaction():
            for statement in sql.create_keys(CLAIMS):
                await conn.execute(statement)
            await conn.executemany(
                f"INSERT INTO {sql.keys_name(CLAIMS)} VALUES ($1, $2, $3)",
                [(claim_id, line, position) for position, (claim_id, line) in enumerate(keys, 1)],
            )
            found = sorted(row["position"] for row in await conn.fetch(sql.existing_keys(CLAIMS)))
            plan = "\n".join(row[0] for row in await conn.fetch("EXPLAIN ANALYZE " + sql.existing_keys(CLAIMS)))
    finally:
        await conn.close()
    assert found == [3, 5]  # the table's least and greatest keys themselves
    # (C1, 1) .. (C3, 1): three keys probed, the four outside left out.
    assert "Rows Removed by Filter: 4" in plan
    assert "loops=3)" in plan


async def abandoned(loader: PostgresBatchLoader) -> None:
    async with loader.session("b1", "claims") as session:
        await session.start_file("a.csv", T0)
        await session.add({"claims": chunk(2, *(claim(f"X{i}") for i in range(20_000)))}, quarantine())
        await asyncio.sleep(0.01)  # the COPY of the chunk's new rows has started
        raise LookupError("left mid-file")


async def test_a_session_left_while_a_copy_runs_rolls_back_cleanly(warehouse: str) -> None:
    loader = await PostgresBatchLoader.connect(warehouse, max_size=1)
    try:
        with pytest.raises(LookupError, match="left mid-file"):
            await abandoned(loader)
        counts = await load(loader, "b2", {"b.csv": [chunk(2, claim("C1", 1))]})  # the same connection, usable
    finally:
        await loader.close()
    assert counts == (1, 1, 0)
    assert [r["claim_id"] for r in await fetch(warehouse, ROWS)] == ["C1"]
