"""Redshift loader through the Redshift Data API (aiobotocore ``redshift-data``).

A batch is one ``BatchExecuteStatement`` (one transaction): TEMP staging tables, ``COPY … FORMAT AS PARQUET
MANIFEST`` of the processed files (and plain COPYs of the quarantine and pending objects), then the shared
MERGE/audit statements of :mod:`workers.warehouse.vitals_sql`; it is polled with ``DescribeStatement`` until it
finishes (statement running and URL parsing live in :mod:`workers.warehouse.redshift.client`, shared with the
batch pipelines' loader). Failures are classified: serialization conflicts, throttling and connection trouble
are :class:`TransientError`, everything else :class:`TerminalError`.

``VITALSTREAM_WAREHOUSE_URL`` form: ``redshift-data://WORKGROUP_OR_CLUSTER/DATABASE?iam_role=ARN
[&secret_arn=ARN][&db_user=USER][&kind=workgroup|cluster]`` (``db_user`` implies a provisioned cluster).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AsyncExitStack
from typing import Any

import pyarrow as pa

from common.errors import TerminalError
from schemas.arrow import CONTEXT, PROCESSED_VITALS, QUARANTINED_VITALS
from workers.warehouse import vitals_sql as sql
from workers.warehouse.news2_sql import ALERT_ROWS
from workers.warehouse.redshift import news2 as redshift_news2
from workers.warehouse.redshift.client import RedshiftStatements, RedshiftTarget, parse_warehouse_url, records_to_table
from workers.warehouse.vitals_types import NOT_INSERTED, LoadOutcome, LoadTables

__all__ = ["RedshiftDataLoader", "RedshiftTarget", "parse_warehouse_url", "records_to_table"]

_MAX_SQL_BYTES = 60_000
_SERIES_PER_CALL = 20_000  # ~29 INSERT statements: BatchExecuteStatement takes at most 40


def _series_inserts(series: pa.Table) -> list[str]:
    """``INSERT INTO vs_series VALUES …`` statements of at most ~60 kB each."""
    out: list[str] = []
    values: list[str] = []
    size = 0
    devices, metrics = series.column("device_id").to_pylist(), series.column("metric").to_pylist()
    since = series.column("since").to_pylist()
    for device, metric, moment in zip(devices, metrics, since, strict=True):
        item = f"({sql.literal(device)}, {sql.literal(metric)}, {sql.literal(moment.isoformat(sep=' '))})"
        if values and size + len(item) > _MAX_SQL_BYTES:
            out.append("INSERT INTO vs_series (device_id, metric, since) VALUES " + ", ".join(values))
            values, size = [], 0
        values.append(item)
        size += len(item) + 2
    if values:
        out.append("INSERT INTO vs_series (device_id, metric, since) VALUES " + ", ".join(values))
    return out


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
        role = self.target.iam_role or ""
        already = await self.audited(batch_id) is not None
        statements = [sql.create_staging_sql(t, "redshift") for t in ("vs_clean", "vs_quarantine", "vs_pending")]
        if tables.clean.num_rows:
            if not tables.manifest_url:
                raise TerminalError("clean rows without a COPY manifest")
            statements.append(sql.copy_sql("vs_clean", tables.manifest_url, role, manifest=True))
        if tables.quarantined.num_rows:
            statements += [sql.copy_sql("vs_quarantine", url, role, manifest=False) for url in tables.quarantine_urls]
        if tables.pending.num_rows:
            if not tables.pending_url:
                raise TerminalError("pending rows without a staging object")
            statements.append(sql.copy_sql("vs_pending", tables.pending_url, role, manifest=False))
        counts = sql.LoadCounts(
            rows_in=tables.rows_in,
            duplicates_dropped=tables.duplicates_dropped,
            clean=tables.clean.num_rows,
            quarantined=tables.quarantined.num_rows,
            pending=tables.pending.num_rows,
        )
        load = sql.load_statements(batch_id, pipeline, counts, "redshift")
        news2 = redshift_news2.statements(sql.literal(batch_id), tables.clean)  # before the audit row
        statements += [*load[:-2], *news2, *load[-2:]]
        not_inserted_at = len(statements)
        statements += redshift_news2.result_statements(news2)
        statement_id = await self._run(statements)
        not_inserted = await self._fetch(f"{statement_id}:{not_inserted_at}", NOT_INSERTED)
        raised, scored = None, 0
        if news2:
            counted = await self._fetch(f"{statement_id}:{len(statements) - 1}", redshift_news2.SCORED)
            scored = int(counted.column("n")[0].as_py())
            raised = await self._fetch(f"{statement_id}:{len(statements)}", ALERT_ROWS)
        audit = await self.audited(batch_id)
        if audit is None:
            raise TerminalError(f"batch {batch_id} has no audit row after its load")
        return LoadOutcome(
            audit.rows_in, audit.rows_loaded, audit.rows_quarantined, audit.rows_duplicate,
            already_loaded=already, not_inserted=not_inserted, news2_scored=scored,
            raised=raised,
        )  # fmt: skip

    async def context(self, series: pa.Table, source_id: str, per_series: int) -> pa.Table:
        parts = []
        for start in range(0, max(series.num_rows, 1), _SERIES_PER_CALL):
            chunk = series.slice(start, _SERIES_PER_CALL)
            statements = [sql.series_staging_sql("redshift"), *_series_inserts(chunk)]
            # The source's own held rows once (first call); later calls only those of their series.
            statements.append(sql.context_sql("redshift", source_id if start == 0 else "", per_series))
            parts.append(await self._query(statements, CONTEXT))
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
