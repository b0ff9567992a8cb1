"""Test-only pipeline for the runtime's integration tests: Kinesis source + Runner + a recording handler.

``python -m tests.helpers.runtime`` runs one real worker process through ``workers.main`` (signals, metrics
server, grace period) with pipeline ``recorder``: every record of every handled batch is appended to
``<prefix>_deliveries`` in PostgreSQL (so a test can count deliveries per record: exactly once or not), and
every batch to ``<prefix>_batches`` with a global order number (so a test can check ordering across shards
and processes). Environment: the usual ``VITALSTREAM_*``/``AWS_*`` plus ``TEST_SINK_DSN``,
``TEST_SINK_PREFIX`` and optionally ``TEST_HANDLER_DELAY`` (seconds slept per batch: a slow sink).
"""

from __future__ import annotations

import asyncio
import os
import sys

import asyncpg

from workers.runtime.types import Batch, BatchHandler, BatchResult, Source

PIPELINE = "recorder"


async def create_sink(conn: asyncpg.Connection, prefix: str) -> None:
    await conn.execute(
        f"""
        CREATE SEQUENCE IF NOT EXISTS {prefix}_ord;
        CREATE TABLE IF NOT EXISTS {prefix}_batches (
            ord bigint PRIMARY KEY, batch_id text, shard text, worker text, replay boolean, n int,
            first_pos text, last_pos text, at timestamptz DEFAULT clock_timestamp());
        CREATE TABLE IF NOT EXISTS {prefix}_deliveries (
            shard text, seq text, pkey text, data text, batch_id text, ord bigint, idx int);
        """
    )


async def drop_sink(conn: asyncpg.Connection, prefix: str) -> None:
    await conn.execute(
        f"DROP TABLE IF EXISTS {prefix}_batches, {prefix}_deliveries; DROP SEQUENCE IF EXISTS {prefix}_ord"
    )


class RecordingHandler:
    """Idempotence is left to the reader (distinct (shard, seq)); every delivery is recorded."""

    def __init__(self, pool: asyncpg.Pool, prefix: str, worker: str, delay: float = 0.0) -> None:
        self.pool = pool
        self.prefix = prefix
        self.worker = worker
        self.delay = delay

    async def handle(self, batch: Batch) -> BatchResult:
        if self.delay:
            await asyncio.sleep(self.delay)
        async with self.pool.acquire() as conn, conn.transaction():
            ord_ = await conn.fetchval(f"SELECT nextval('{self.prefix}_ord')")
            await conn.execute(
                f"INSERT INTO {self.prefix}_batches (ord, batch_id, shard, worker, replay, n, first_pos, last_pos)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                ord_, batch.batch_id, batch.source_id, self.worker, batch.replay, len(batch.records),
                batch.first_position, batch.last_position,
            )  # fmt: skip
            rows = [
                (batch.source_id, r.position, r.key, r.data.decode(), batch.batch_id, ord_, i)
                for i, r in enumerate(batch.records)
            ]
            await conn.copy_records_to_table(f"{self.prefix}_deliveries", records=rows)
        n = len(batch.records)
        return BatchResult(rows_in=n, rows_loaded=n, rows_quarantined=0, rows_duplicate=0)

    async def quarantine(self, batch: Batch, error: BaseException) -> BatchResult:
        n = len(batch.records)
        return BatchResult(rows_in=n, rows_loaded=0, rows_quarantined=n, rows_duplicate=0)


async def build(ctx: object) -> tuple[Source, BatchHandler]:
    from workers.pipelines.registry import PipelineContext
    from workers.sources.kinesis import build_source

    assert isinstance(ctx, PipelineContext)
    pool = await asyncpg.create_pool(os.environ["TEST_SINK_DSN"], min_size=1, max_size=2)
    ctx.stack.push_async_callback(pool.close)
    handler = RecordingHandler(
        pool, os.environ["TEST_SINK_PREFIX"], ctx.worker_id, float(os.environ.get("TEST_HANDLER_DELAY", "0"))
    )
    return await build_source(ctx), handler


def main() -> int:
    from workers.main import main as worker_main
    from workers.pipelines.registry import register

    register(PIPELINE, build)
    return worker_main(PIPELINE)


if __name__ == "__main__":
    sys.exit(main())


# -- helpers for the tests that drive real worker processes -------------------------------------------


def worker_env(base: dict[str, str], *, dsn: str, prefix: str, **overrides: str) -> dict[str, str]:
    """Environment of one ``python -m tests.helpers.runtime`` process (short leases, fast flushes)."""
    from vitalstream.devstack.processes import free_port

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "VITALSTREAM_"))}
    env.update(base)
    env.update(
        {
            "TEST_SINK_DSN": dsn,
            "TEST_SINK_PREFIX": prefix,
            "VITALSTREAM_LEASE_SECONDS": "2",
            "VITALSTREAM_FLUSH_SECONDS": "0.5",
            "VITALSTREAM_SHUTDOWN_GRACE_SECONDS": "8",
            "VITALSTREAM_METRICS_PORT": str(free_port()),
            "VITALSTREAM_LOG_LEVEL": "INFO",
        }
    )
    env.update(overrides)
    return env


def spawn_worker(name: str, env: dict[str, str], log_dir: object) -> int:
    """Start one recorder worker in its own session; returns its pid (stop it by pid)."""
    from pathlib import Path

    from vitalstream.devstack.processes import spawn

    repo = Path(__file__).resolve().parents[2]
    return spawn(name, [sys.executable, "-m", "tests.helpers.runtime"], Path(str(log_dir)), env=env, cwd=repo).pid


async def sink_counts(dsn: str, prefix: str) -> tuple[int, int]:
    """(distinct records consumed, total deliveries)."""
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(f"SELECT count(DISTINCT (shard, seq)) AS d, count(*) AS n FROM {prefix}_deliveries")
        assert row is not None
        return int(row["d"]), int(row["n"])
    finally:
        await conn.close()


def wait_exit(pid: int, within: float) -> int | None:
    """Wait for our child ``pid`` to exit; its exit code, or None if still running after ``within`` s."""
    import time

    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    return None


async def lease_owners(dynamodb: object, table: str, stream: str) -> dict[str, tuple[str | None, str | None]]:
    """shard -> (owner, checkpoint) of the recorder pipeline's leases on ``stream``."""
    from workers.sources.kinesis_leases import LeaseTable

    leases = await LeaseTable(dynamodb, table, pipeline=PIPELINE, stream=stream, worker_id="observer").list()
    return {lease.shard: (lease.owner, lease.checkpoint) for lease in leases}


async def produce(kinesis: object, stream: str, keys: int, rounds: int, start: int = 0) -> int:
    """``rounds`` PutRecords calls, each with one record per key ``dev-K`` whose data is ``dev-K:I``
    (I increasing per key, so per-key order is checkable). Returns the number of records written."""
    client: object = kinesis
    for i in range(start, start + rounds):
        entries = [{"Data": f"dev-{k}:{i}".encode(), "PartitionKey": f"dev-{k}"} for k in range(keys)]
        response = await client.put_records(StreamName=stream, Records=entries)  # type: ignore[attr-defined]
        assert response["FailedRecordCount"] == 0
    return keys * rounds
