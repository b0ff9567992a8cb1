"""Redshift loader through the Redshift Data API (aiobotocore ``redshift-data``).

A batch is one ``BatchExecuteStatement`` (one transaction, a fixed 13-17 statements whatever the batch spans):
``LOCK load_lock`` (loads run one at a time: Redshift's UNIQUE is informational), TEMP staging tables, one
``COPY … FORMAT AS PARQUET MANIFEST`` each for the processed files and the quarantine objects (the batch's two
manifests) and a plain COPY of the pending object, then the shared insert/audit statements of
:mod:`workers.warehouse.vitals_sql` with literal ``measured_at`` bounds; it carries a ``ClientToken`` derived
from the batch id and is polled with ``DescribeStatement`` until it finishes (statement running, limits and
URL parsing live in :mod:`workers.warehouse.redshift.client`, shared with the batch pipelines' loader).
Context lookups stage the series with multi-row INSERTs of < 100 kB, at most 40 statements per call.
Failures are classified: serialization conflicts, throttling and connection trouble are
:class:`TransientError`, everything else :class:`TerminalError`.

``VITALSTREAM_WAREHOUSE_URL`` form: ``redshift-data://WORKGROUP_OR_CLUSTER/DATABASE?iam_role=ARN
[&secret_arn=ARN][&db_user=USER][&kind=workgroup|cluster]`` (``db_user`` implies a provisioned cluster).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AsyncExitStack
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from common.errors import TerminalError
from schemas.arrow import CONTEXT, PROCESSED_VITALS, QUARANTINED_VITALS
from workers.warehouse import vitals_sql as sql
from workers.warehouse.news2_sql import ALERT_ROWS, touched_hours
from workers.warehouse.redshift import news2 as redshift_news2
from workers.warehouse.redshift.client import (
    MAX_SQL_BYTES,
    MAX_STATEMENTS,
    RedshiftStatements,
    RedshiftTarget,
    parse_warehouse_url,
    records_to_table,
)
from workers.warehouse.vitals_types import NOT_INSERTED, LoadOutcome, LoadTables

__all__ = [
    "RedshiftDataLoader",
    "RedshiftTarget",
    "context_calls",
    "load_statements",
    "news2_statements",
    "parse_warehouse_url",
    "records_to_table",
]

_INSERT_BYTES = MAX_SQL_BYTES - 10_000  # room for the statement head
_INSERTS_PER_CALL = MAX_STATEMENTS - 2  # + the staging table and the context query


def _series_inserts(series: pa.Table) -> list[str]:
    """``INSERT INTO vs_series VALUES …`` statements of at most ~90 kB (UTF-8 bytes) each."""
    head = "INSERT INTO vs_series (device_id, metric, since) VALUES "
    out: list[str] = []
    values: list[str] = []
    size = 0
    devices, metrics = series.column("device_id").to_pylist(), series.column("metric").to_pylist()
    since = series.column("since").to_pylist()
    for device, metric, moment in zip(devices, metrics, since, strict=True):
        item = f"({sql.literal(device)}, {sql.literal(metric)}, {sql.literal(moment.isoformat(sep=' '))})"
        length = len(item.encode()) + 2
        if values and size + length > _INSERT_BYTES:
            out.append(head + ", ".join(values))
            values, size = [], 0
        values.append(item)
        size += length
    if values:
        out.append(head + ", ".join(values))
    return out


def _bounds(*tables: pa.Table) -> sql.Bounds | None:
    """Lowest and highest ``measured_at`` over the tables' rows, or ``None`` without rows."""
    lows: list[datetime] = []
    highs: list[datetime] = []
    for table in tables:
        if table.num_rows:
            extremes = pc.min_max(table.column("measured_at"))
            lows.append(extremes["min"].as_py())
            highs.append(extremes["max"].as_py())
    return (min(lows), max(highs)) if lows else None


def load_statements(
    batch_id: str, pipeline: str, tables: LoadTables, iam_role: str, news2: list[str] | None = None
) -> list[str]:
    """Pure: the one transaction that loads ``tables`` (see the module docstring), with the NEWS2 recompute
    ``news2`` (:func:`news2_statements`, computed here when not given) before the audit row."""
    statements = [sql.LOAD_LOCK]
    statements += [sql.create_staging_sql(t, "redshift") for t in ("vs_clean", "vs_quarantine", "vs_pending")]
    if tables.clean.num_rows:
        if not tables.manifest_url:
            raise TerminalError("clean rows without a COPY manifest")
        statements.append(sql.copy_sql("vs_clean", tables.manifest_url, iam_role, manifest=True))
    if tables.quarantined.num_rows:
        if not tables.quarantine_manifest_url:
            raise TerminalError("quarantined rows without a COPY manifest")
        statements.append(sql.copy_sql("vs_quarantine", tables.quarantine_manifest_url, iam_role, manifest=True))
    if tables.pending.num_rows:
        if not tables.pending_url:
            raise TerminalError("pending rows without a staging object")
        statements.append(sql.copy_sql("vs_pending", tables.pending_url, iam_role, manifest=False))
    counts = sql.LoadCounts(
        rows_in=tables.rows_in,
        duplicates_dropped=tables.duplicates_dropped,
        clean=tables.clean.num_rows,
        quarantined=tables.quarantined.num_rows,
        pending=tables.pending.num_rows,
    )
    bounds = _bounds(tables.clean, tables.quarantined, tables.pending)
    load = sql.load_statements(batch_id, pipeline, counts, "redshift", bounds=bounds)
    news2 = news2_statements(batch_id, tables) if news2 is None else news2
    # last: the audit row, then the staged rows not inserted; the NEWS2 recompute (ending with the SELECT of the
    # alerts it raised) just before them
    return [*statements, *load[:-2], *news2, *load[-2:]]


def news2_statements(batch_id: str, tables: LoadTables) -> list[str]:
    """Pure: the NEWS2 recompute of the patient-hours the batch's clean rows touch (``[]`` if none)."""
    return redshift_news2.statements(sql.literal(batch_id), tables.clean)


def context_calls(series: pa.Table, source_id: str, per_series: int) -> list[list[str]]:
    """Pure: the calls (each one transaction within the Data API limits) that read the context of ``series``."""
    inserts = _series_inserts(series)
    floor = pc.min(series.column("since")).as_py() if series.num_rows else None
    calls = []
    for start in range(0, max(len(inserts), 1), _INSERTS_PER_CALL):
        chunk = inserts[start : start + _INSERTS_PER_CALL]
        # The source's own held rows once (first call); later calls only those of their series.
        query = sql.context_sql("redshift", source_id if start == 0 else "", per_series, floor)
        calls.append([sql.series_staging_sql("redshift"), *chunk, query])
    return calls


_SOURCES = pa.schema([pa.field("source_id", pa.string(), nullable=False)])


class RedshiftDataLoader:
    """The vitals warehouse loader on Redshift, through the Data API."""

    dialect: sql.Dialect = "redshift"

    def __init__(
        self,
        client: Any,
        target: RedshiftTarget,
        *,
        poll_seconds: float = 0.05,
        timeout: float = 600,
        stack: AsyncExitStack | None = None,
    ):
        if not target.iam_role:
            raise ValueError(
                "the Redshift loader needs an IAM role for COPY (iam_role= or VITALSTREAM_REDSHIFT_IAM_ROLE)"
            )
        self.client = client
        self.target = target
        self.statements = RedshiftStatements(client, target, poll_seconds=poll_seconds, timeout=timeout)
        self._stack = stack

    @classmethod
    def from_url(cls, url: str, client: Any, *, iam_role: str | None = None) -> RedshiftDataLoader:
        return cls(client, parse_warehouse_url(url, iam_role))

    async def close(self) -> None:
        """Closes the clients this loader was given to own (``stack``), if any."""
        if self._stack is not None:
            await self._stack.aclose()

    async def _run(self, sqls: Sequence[str]) -> str:
        """Run ``sqls`` in one transaction; returns the statement id once FINISHED."""
        return await self.statements.run(sqls)

    async def _fetch(self, statement_id: str, schema: pa.Schema) -> pa.Table:
        return await self.statements.fetch(statement_id, schema)

    async def _query(self, sqls: Sequence[str], schema: pa.Schema) -> pa.Table:
        return await self.statements.query(sqls, schema)

    async def audited(self, batch_id: str) -> LoadOutcome | None:
        schema = pa.schema([(n, pa.int64()) for n in ("rows_in", "rows_loaded", "rows_quarantined", "rows_duplicate")])
        table = await self._query([sql.audited_sql(batch_id)], schema)
        if table.num_rows == 0:
            return None
        row = table.to_pylist()[0]
        return LoadOutcome(
            rows_in=int(row["rows_in"]),
            rows_loaded=int(row["rows_loaded"]),
            rows_quarantined=int(row["rows_quarantined"]),
            rows_duplicate=int(row["rows_duplicate"]),
            already_loaded=True,
            not_inserted=NOT_INSERTED.empty_table(),
        )

    async def load(self, batch_id: str, pipeline: str, tables: LoadTables) -> LoadOutcome:
        already = await self.audited(batch_id) is not None
        news2 = news2_statements(batch_id, tables)
        statements = load_statements(batch_id, pipeline, tables, self.target.iam_role or "", news2)
        statement_id = await self.statements.run(statements, key=batch_id)
        not_inserted = await self._fetch(f"{statement_id}:{len(statements)}", NOT_INSERTED)
        raised, scored = None, 0
        if news2:  # the patient-hours the batch's rows touch (all rescored), and the alerts raised
            scored = touched_hours(tables.clean).num_rows
            raised = await self._fetch(f"{statement_id}:{len(statements) - 2}", ALERT_ROWS)
        audit = await self.audited(batch_id)
        if audit is None:
            raise TerminalError(f"batch {batch_id} has no audit row after its load")
        return LoadOutcome(
            audit.rows_in, audit.rows_loaded, audit.rows_quarantined, audit.rows_duplicate,
            already_loaded=already, not_inserted=not_inserted, news2_scored=scored,
            raised=raised,
        )  # fmt: skip

    async def context(self, series: pa.Table, source_id: str, per_series: int) -> pa.Table:
        parts = [await self._query(call, CONTEXT) for call in context_calls(series, source_id, per_series)]
        return pa.concat_tables(parts)

    async def pending(self, source_id: str) -> pa.Table:
        return await self._query([sql.pending_sql(source_id)], sql.PENDING_VITALS)

    async def stale_pending_sources(self, received_before_us: int) -> list[str]:
        table = await self._query([sql.stale_pending_sources_sql(received_before_us)], _SOURCES)
        return sorted(str(value) for value in table.column("source_id").to_pylist())

    async def batch_rows(self, batch_id: str) -> tuple[pa.Table, pa.Table]:
        clean = await self._query([sql.batch_rows_sql("fact_vitals", batch_id)], PROCESSED_VITALS)
        quarantined = await self._query([sql.batch_rows_sql("vitals_quarantine", batch_id)], QUARANTINED_VITALS)
        return clean, quarantined

    async def record_failed_batch(self, pipeline: str, source_key: str, reason: str, detail: str) -> None:
        await self._run([sql.failed_batch_sql(pipeline, source_key, reason, detail)])
