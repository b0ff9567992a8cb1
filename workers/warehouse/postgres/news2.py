"""NEWS2 on PostgreSQL: the recompute inside a vitals batch's transaction, and the alert outbox.

:func:`recompute` runs :func:`news2_sql.news2_statements` on the loader's connection, inside its open
transaction, for the rows the batch copied into ``fact_vitals``; it returns what the transaction raised.
:class:`PostgresAlertOutbox` reads unpublished alerts and marks alerts published (after the SNS publish).
Alert rows are few (escalations only): they are read with ``fetch``, not through the columnar CSV path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from schemas.news2 import HOUR_US
from workers.warehouse import news2_sql
from workers.warehouse.news2_sql import ALERT_ROWS
from workers.warehouse.postgres.binary_copy import copy_arrow

__all__ = ["NOTHING", "News2Result", "PostgresAlertOutbox", "alerts_table", "recompute"]


@dataclass(frozen=True, slots=True)
class News2Result:
    """Patient-hours scored and alerts raised (``ALERT_ROWS``) by one batch's transaction."""

    scored: int
    raised: pa.Table


NOTHING = News2Result(0, ALERT_ROWS.empty_table())


def alerts_table(records: list[Any]) -> pa.Table:
    """``ALERT_ROWS`` from asyncpg records (or mappings) with those columns."""
    return pa.Table.from_pylist([{name: r[name] for name in ALERT_ROWS.names} for r in records], schema=ALERT_ROWS)


async def recompute(conn: Any, batch_id_literal: str, inserted: pa.Table) -> News2Result:
    """Rescore the patient-hours of ``inserted`` (the rows the batch put into ``fact_vitals``) in ``conn``'s
    transaction: upsert ``news2_hourly`` and raise alerts. Must run before the batch's audit row is written."""
    hours = news2_sql.touched_hours(inserted)
    if hours.num_rows == 0:
        return NOTHING
    lo = int(pc.min(hours.column("hour_start")).cast(pa.int64()).as_py())
    hi = int(pc.max(hours.column("hour_start")).cast(pa.int64()).as_py()) + HOUR_US
    # The touched hours come from the rows the loader copied (no scan of the batch's rows back).
    await conn.execute(news2_sql.hours_staging_sql())
    await copy_arrow(conn, "vs_news2_hours", hours.select(news2_sql.HOURS.names))
    for statement in news2_sql.news2_statements(batch_id_literal, lo, hi, "postgres", hours_staged=True):
        await conn.execute(statement)
    scored = int(await conn.fetchval(news2_sql.scored_count_sql()))
    raised = alerts_table(await conn.fetch(news2_sql.raised_alerts_sql()))
    return News2Result(scored, raised)


class PostgresAlertOutbox:
    """The ``deterioration_alerts`` outbox on PostgreSQL (asyncpg pool)."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool

    async def unpublished(self, raised_before_us: int, limit: int = 500) -> pa.Table:
        async with self.pool.acquire() as conn:
            return alerts_table(await conn.fetch(news2_sql.unpublished_sql(raised_before_us, limit)))

    async def oldest_unpublished(self) -> float | None:
        async with self.pool.acquire() as conn:
            value = await conn.fetchval(news2_sql.oldest_unpublished_sql())
        return None if value is None else float(value)

    async def mark_published(self, alert_ids: list[str]) -> None:
        if not alert_ids:
            return
        async with self.pool.acquire() as conn:
            await conn.execute(news2_sql.mark_published_sql(alert_ids))
