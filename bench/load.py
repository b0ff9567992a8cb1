"""PostgreSQL loader (Arrow -> binary COPY -> MERGE -> audit) vs dlt's merge of the same rows, same database.

Starts a private PostgreSQL, seeds half of 1M readings in both targets, then times the load of all 1M rows
(half already present) by each. Prints ``loader_rows_per_s``, ``dlt_rows_per_s`` and ``load_vs_dlt: <ratio>``.
dlt is a benchmark-only dependency (``dlt[postgres]``).
"""

from __future__ import annotations

import asyncio
import signal
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from schemas.arrow import PENDING, PROCESSED_VITALS, QUARANTINED_VITALS, TIMESTAMP
from vitalstream.devstack.bootstrap import apply_ddl
from vitalstream.devstack.postgres import remove_data_dir, start_postgres
from vitalstream.devstack.processes import stop_pid
from workers.warehouse.postgres.vitals import PostgresLoader
from workers.warehouse.vitals_types import LoadTables

T0_US = 1_767_225_600_000_000
METRICS = ["heart_rate", "spo2", "resp_rate", "body_temp", "bp_systolic", "bp_diastolic", "glucose"]
KEY = ["device_id", "metric", "measured_at"]


def make_rows(n: int, batch_id: str, seed: int = 5) -> pa.Table:
    """``n`` readings with unique keys (devices x metrics x seconds)."""
    rng = np.random.default_rng(seed)
    i = np.arange(n)
    device = i % 2000
    metric = (i // 2000) % len(METRICS)
    second = i // (2000 * len(METRICS))
    devices = pa.array([f"bed-{d:05d}" for d in range(2000)]).take(pa.array(device))
    metrics = pa.array(METRICS).take(pa.array(metric))
    return pa.Table.from_arrays(
        [
            devices,
            pa.array([f"pt-{d:05d}" for d in range(2000)]).take(pa.array(device)),
            metrics,
            pa.array(["8867-4", "59408-5", "9279-1", "8310-5", "8480-6", "8462-4", "2339-0"]).take(pa.array(metric)),
            pa.array(np.round(rng.normal(80, 10, n), 2)),
            pa.array(["/min", "%", "/min", "Cel", "mm[Hg]", "mm[Hg]", "mg/dL"]).take(pa.array(metric)),
            pa.array(T0_US + second * 1_000_000, pa.int64()).cast(TIMESTAMP),
            pa.array(T0_US + second * 1_000_000 + 300_000, pa.int64()).cast(TIMESTAMP),
            pa.array([f"m-{k:09d}" for k in range(n)]),
            pa.array([batch_id] * n),
        ],
        schema=PROCESSED_VITALS,
    )


def _tables(rows: pa.Table) -> LoadTables:
    return LoadTables(rows, QUARANTINED_VITALS.empty_table(), PENDING.empty_table(), rows.num_rows, 0)


async def _ours(url: str, seed: pa.Table, full: pa.Table) -> float:
    loader = await PostgresLoader.connect(url)
    try:
        await loader.load("seed", "bench", _tables(seed))
        started = time.perf_counter()
        outcome = await loader.load("full", "bench", _tables(full))
        elapsed = time.perf_counter() - started
        assert outcome.rows_loaded == full.num_rows - seed.num_rows, outcome
    finally:
        await loader.close()
    return full.num_rows / elapsed


def _dlt(url: str, seed: pa.Table, full: pa.Table, workdir: str) -> float:
    import dlt

    pipeline = dlt.pipeline(
        pipeline_name="bench_vitals",
        pipelines_dir=workdir,
        # trust authentication ignores the password; dlt insists on one being present
        destination=dlt.destinations.postgres(credentials=url.replace("@", ":unused@", 1)),
        dataset_name="dlt_bench",
    )

    def load(rows: pa.Table) -> None:
        resource = dlt.resource(rows, name="fact_vitals", write_disposition="merge", primary_key=KEY)
        pipeline.run(resource, loader_file_format="csv")

    load(seed)
    # Same table shape as fact_vitals: its unique key and secondary indexes (dlt creates none), so both pay
    # the same upkeep.
    asyncio.run(_index_dlt_table(url))
    started = time.perf_counter()
    load(full)
    return full.num_rows / (time.perf_counter() - started)


async def _index_dlt_table(url: str) -> None:
    """Give dlt's table exactly the indexes of our ``fact_vitals`` (read from the catalogue, not a copy)."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename = 'fact_vitals'"
        )
        assert rows, "fact_vitals has no indexes"
        for row in rows:
            name, definition = row["indexname"], row["indexdef"]
            statement = definition.replace(" ON public.fact_vitals ", " ON dlt_bench.fact_vitals ", 1).replace(
                f" INDEX {name} ", f" INDEX IF NOT EXISTS b_{name} ", 1
            )
            if "dlt_bench.fact_vitals" not in statement or f"b_{name}" not in statement:
                raise RuntimeError(f"cannot retarget index definition: {definition}")
            await conn.execute(statement)
        copied = await conn.fetchval(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = 'dlt_bench' AND tablename = 'fact_vitals'"
        )
        if copied < len(rows):
            raise RuntimeError(f"dlt's table has {copied} indexes, fact_vitals {len(rows)}")
    finally:
        await conn.close()


def run(rows: int = 1_000_000) -> dict[str, float]:
    """Start PostgreSQL, measure both loaders, stop it; prints and returns the figures."""
    with tempfile.TemporaryDirectory(prefix="vitalstream-bench-") as tmp:
        base = Path(tmp)
        server = start_postgres(base / "logs", base)
        try:
            asyncio.run(apply_ddl(server.url))
            full = make_rows(rows, "full")
            seed = make_rows(rows, "seed").slice(0, rows // 2)
            ours = asyncio.run(_ours(server.url, seed, full))
            theirs = _dlt(server.url, seed, full, str(base / "dlt"))
        finally:
            stop_pid(server.process.pid, sig=signal.SIGINT)
            remove_data_dir(server.data_dir)
    print(f"loader_rows_per_s: {ours:,.0f}")
    print(f"dlt_rows_per_s: {theirs:,.0f}")
    print(f"load_vs_dlt: {ours / theirs:.2f}")
    return {"loader_rows_per_s": ours, "dlt_rows_per_s": theirs, "load_vs_dlt": ours / theirs}


if __name__ == "__main__":
    run()
