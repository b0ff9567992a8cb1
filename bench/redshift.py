"""Statements and bytes one vitals batch sends through the Redshift Data API (pure: no service is called).

A one-hour batch of 2,000 devices x 7 metrics at one reading a minute (840,000 readings; 14,000 series; a few
quarantined under both reasons and a few held), and a 20-day backfill batch of the same shape. Per batch the
worker makes these Data API calls: ``audited`` (handler), the context lookup (one call per <= 38 series
INSERTs), ``audited`` and the load (one ``BatchExecuteStatement``), ``audited`` after it. Prints, per batch,
the calls, the statements and SQL bytes of all calls, the statements of the load transaction (target <= 20)
and the largest statement (must be < 100 kB: the Data API's limit).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from bench.load import make_rows
from schemas.arrow import PENDING, QUARANTINED_VITALS, SERIES, TIMESTAMP
from workers.sinks import layout
from workers.warehouse import vitals_sql as sql
from workers.warehouse.redshift.client import MAX_SQL_BYTES, MAX_STATEMENTS
from workers.warehouse.redshift.vitals import context_calls, load_statements
from workers.warehouse.vitals_types import LoadTables

ROLE = "arn:aws:iam::123456789012:role/vitalstream-redshift-copy"
BUCKET = "vitalstream-lake-123456789012"
DEVICES, METRICS = 2000, 7


def _batch(batch_id: str, minutes: int, step_s: int) -> tuple[LoadTables, pa.Table]:
    rows = make_rows(DEVICES * METRICS * minutes, batch_id)
    t0 = pc.min(rows.column("measured_at")).cast(pa.int64()).as_py()
    offset = pc.subtract(rows.column("measured_at").cast(pa.int64()), t0)
    stretched = pc.add(pc.multiply(offset, step_s), t0).cast(TIMESTAMP)
    rows = rows.set_column(rows.schema.get_field_index("measured_at"), "measured_at", stretched)
    spread = pa.array(range(0, rows.num_rows, rows.num_rows // 200)[:200])  # over the whole time range
    quarantined = rows.take(spread).append_column("reason", pa.array(["implausible", "spike"] * 100))
    quarantined = quarantined.append_column("detail", pa.array(["x"] * 200)).cast(QUARANTINED_VITALS)
    pending = rows.slice(1, 50).append_column("source_id", pa.array(["shard-0"] * 50))
    pending = pending.select(PENDING.names).cast(PENDING)
    clean = rows.slice(51)
    days = sorted((r, d) for r, d, _ in layout.partition_by_reason_day(quarantined))
    tables = LoadTables(
        clean, quarantined, pending, rows_in=rows.num_rows, duplicates_dropped=0,
        manifest_url=layout.s3_url(BUCKET, layout.manifest_key(batch_id)),
        quarantine_urls=tuple(layout.s3_url(BUCKET, layout.quarantine_key(batch_id, r, d)) for r, d in days),
        pending_url=layout.s3_url(BUCKET, layout.pending_key(batch_id)),
        quarantine_manifest_url=layout.s3_url(BUCKET, layout.quarantine_manifest_key(batch_id)),
    )  # fmt: skip
    series = rows.group_by(["device_id", "metric"]).aggregate([("measured_at", "min")])
    series = pa.table(
        {"device_id": series["device_id"], "metric": series["metric"], "since": series["measured_at_min"]}
    ).cast(SERIES)
    return tables, series


def measure(batch_id: str, minutes: int, step_s: int) -> dict[str, int]:
    tables, series = _batch(batch_id, minutes, step_s)
    objects = len(tables.quarantine_urls)
    audited = [sql.audited_sql(batch_id)]
    load = load_statements(batch_id, "vitals", tables, ROLE)
    calls = [audited, *context_calls(series, "shard-0", 16), audited, load, audited]
    statements = [s for call in calls for s in call]
    sizes = [len(s.encode()) for s in statements]
    assert max(len(c) for c in calls) <= MAX_STATEMENTS
    assert max(sizes) < MAX_SQL_BYTES
    return {
        "readings": tables.rows_in,
        "quarantine_objects": objects,
        "series": series.num_rows,
        "calls": len(calls),
        "statements": len(statements),
        "bytes": sum(sizes),
        "load_statements": len(load),
        "load_bytes": sum(len(s.encode()) for s in load),
        "largest_statement_bytes": max(sizes),
    }


def run() -> dict[str, int]:
    hour = measure("shard-0-00000000000000000001-00000000000000840000", minutes=60, step_s=60)
    backfill = measure("shard-0-00000000000000000001-00000000000000280000", minutes=20, step_s=86_400)
    for name, figures in (("hour", hour), ("backfill_20_days", backfill)):
        print(
            f"redshift_{name}: readings {figures['readings']:,}, series {figures['series']:,}, "
            f"quarantine objects {figures['quarantine_objects']}, "
            f"{figures['calls']} calls, {figures['statements']} statements, {figures['bytes']:,} bytes"
        )
        print(f"redshift_{name}_load_statements: {figures['load_statements']} ({figures['load_bytes']:,} bytes)")
        print(f"redshift_{name}_largest_statement_bytes: {figures['largest_statement_bytes']:,}")
    return {f"redshift_hour_{k}": v for k, v in hour.items()}


if __name__ == "__main__":
    run()
